"""How fast the interactive parts answer, on this machine. Writes benchmarks/results/interactive.json.

    .venv/bin/python benchmarks/interactive.py

* ``costs.analyze`` for every preset (the explorers call it on every slider move; goal: under 50 ms).
* Each explorer's live redraw: compute + draw + render the PNG the ipywidgets Output shows (goal: under
  200 ms), median of several settings.
* The static explorers' page weight (bytes of the HTML/JS control with all its frames).
"""

from __future__ import annotations

import io
import json
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cspnet_lab import costs, explore, list_models  # noqa: E402


def _median_ms(fn, repeats=7):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def main() -> None:
    result = {
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "matplotlib": matplotlib.__version__},
        "date": time.strftime("%Y-%m-%d"),
        "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        "command": "python benchmarks/interactive.py",
        "analyze_ms": {}, "explorer_redraw_ms": {}, "static_explorer_bytes": {},
    }
    for name in list_models("densenet"):
        kw = {"fusion": "last", "part_ratio": 0.25} if name.startswith("csp") else {}
        median, times = _median_ms(lambda: costs.analyze(name, 224, **kw))
        result["analyze_ms"][name] = {"median": round(median, 3), "all": [round(t, 3) for t in times]}
    for key, ex in explore.EXPLORERS.items():
        settings = [dict(zip([c.name for c in ex.controls], values)) for values in
                    [tuple(c.grid[i % len(c.grid)] for c in ex.controls) for i in range(5)]]
        times = []
        for s in settings:
            def redraw():
                _, fig = ex.frame(**s)
                fig.savefig(io.BytesIO(), format="png", dpi=72)
                plt.close(fig)
            redraw()  # warm-up
            times.append(_median_ms(redraw, repeats=3)[0])
        result["explorer_redraw_ms"][key] = {"median": round(statistics.median(times), 1),
                                             "max": round(max(times), 1), "settings": len(settings)}
        result["static_explorer_bytes"][key] = len(ex.static_html().encode())
    out = ROOT / "benchmarks" / "results" / "interactive.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(json.dumps({k: result[k] for k in ("explorer_redraw_ms", "static_explorer_bytes")}, indent=1))
    print("analyze, slowest preset (ms):", max(v["median"] for v in result["analyze_ms"].values()))


if __name__ == "__main__":
    main()

"""Time and memory, measured: does a cut in multiply-adds become a cut in time and memory?

* Inference latency/throughput and training-step time (forward + backward + SGD step), after warm-up,
  in interleaved rounds (every model once per round) so drift in the machine's speed is shared; on CUDA
  between synchronised events. Medians, interquartile range and every repetition are kept.
* Memory: the bytes of activations saved for backward (exact, any device, via
  ``torch.autograd.graph.saved_tensors_hooks``) and, on CUDA, the peak allocated memory of a training step.
* Results are JSON files with full provenance (device, versions, date, git commit, exact command,
  settings), written atomically and validated when read (:func:`load_results`).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import costs
from .models import create_model

SCHEMA = "cspnet_lab.bench/1"
MODES = ("inference", "train")


@dataclass(frozen=True)
class ModelSpec:
    """A preset plus overrides, written ``name`` or ``name:key=value,key=value`` on the command line."""

    name: str
    overrides: tuple = ()

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.overrides)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, _, rest = text.partition(":")
        overrides = []
        for item in filter(None, _split_top_level(rest)):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"model spec {text!r}: override {item!r} must be key=value")
            overrides.append((key, _parse_value(value)))
        return cls(name, tuple(overrides))

    def build(self) -> nn.Module:
        return create_model(self.name, **dict(self.overrides))


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: "a=1,block_config=(4,4,4)" -> ["a=1", "block_config=(4,4,4)"]."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _parse_value(v: str):
    """A Python literal (int, float, bool, tuple, None) when it is one, else the string itself."""
    import ast
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


@dataclass
class BenchSettings:
    models: list[str]
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    input_sizes: list[int] = field(default_factory=lambda: [224])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    device: str = "cpu"
    channels_last: bool = False
    bf16: bool = False          # CUDA only: bf16 autocast
    repeats: int = 10           # timed samples per case (interleaved rounds)
    warmup: int = 3             # untimed calls per case first
    min_run_time: float = 1.0   # seconds of timing per case, split over its samples
    threads: int | None = None

    def validate(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available")
        if self.bf16 and self.device != "cuda":
            raise ValueError("bf16 autocast is measured on CUDA only (device='cuda')")
        for m in self.modes:
            if m not in MODES:
                raise ValueError(f"modes must be among {', '.join(MODES)}; got {m!r}")
        for name, values in (("batch_sizes", self.batch_sizes), ("input_sizes", self.input_sizes)):
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")
        for text in self.models:
            spec = ModelSpec.parse(text)
            from .models import model_config
            cfg = model_config(spec.name, **dict(spec.overrides))  # ValueError for bad names/values
            from .densenet import min_input_size
            for size in self.input_sizes:
                if size < min_input_size(cfg):
                    raise ValueError(f"input size {size} is too small for {spec.label}: must be >= {min_input_size(cfg)}")


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command() -> str:
    """The command line as typed: ``python -m cspnet_lab ...`` when run as a module, no local paths."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("cspnet_lab", "__main__.py")):
        argv[0:1] = ["python", "-m", "cspnet_lab"]
    elif argv and argv[0]:
        argv[0:1] = ["python", os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]]
    return " ".join(argv)


def provenance(settings: BenchSettings) -> dict:
    dev = settings.device
    info = {
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else cpu_name(),
        "device_type": dev,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
    }
    try:
        root = pathlib.Path(__file__).resolve().parents[1]
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                            cwd=root, timeout=10).stdout.strip() or None
    except Exception:
        info["git_commit"] = None
    return info


def _summary(times_s: list[float]) -> dict:
    q = statistics.quantiles(times_s, n=4) if len(times_s) >= 2 else [times_s[0]] * 3
    return {"median_s": statistics.median(times_s), "iqr_s": q[2] - q[0], "min_s": min(times_s),
            "reps_s": times_s}


def _sample(fn, device: str, inner: int) -> float:
    """Seconds per call, averaged over ``inner`` back-to-back calls: ``torch.utils.benchmark.Timer`` on CPU,
    synchronised CUDA events on GPU."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0 / inner
    from torch.utils import benchmark
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.timeit(inner).mean


def _calibrate(fn, settings: BenchSettings) -> int:
    """Calls per sample so that one sample lasts about min_run_time / repeats (at least one call)."""
    for _ in range(settings.warmup):
        fn()
    if settings.device == "cuda":
        torch.cuda.synchronize()
    one = _sample(fn, settings.device, 1)
    target = settings.min_run_time / max(settings.repeats, 1)
    return max(1, int(target / max(one, 1e-9)))


class _Case:
    """One (model, batch, size, mode): the model, its inputs, the step to time and the row to fill."""

    def __init__(self, spec: ModelSpec, batch: int, size: int, mode: str, settings: BenchSettings) -> None:
        self.spec, self.batch, self.size, self.mode = spec, batch, size, mode
        dev = torch.device(settings.device)
        torch.manual_seed(0)
        fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = spec.build().to(dev).to(memory_format=fmt)
        cfg = self.model.config
        self.x = torch.randn(batch, cfg.in_channels, size, size, device=dev).to(memory_format=fmt)
        self.y = torch.randint(0, cfg.num_classes, (batch,), device=dev)
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if settings.bf16 else _null
        model, x, y = self.model, self.x, self.y
        if mode == "inference":
            def fn():
                model.eval()
                with torch.no_grad(), self.autocast():
                    model(x)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def fn():
                model.train()
                opt.zero_grad(set_to_none=True)
                with self.autocast():
                    loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
        self.fn = fn
        self.times: list[float] = []

    def row(self, settings: BenchSettings) -> dict:
        row = {"model": self.spec.label, "name": self.spec.name, "overrides": dict(self.spec.overrides),
               "batch": self.batch, "input_size": self.size, "mode": self.mode, **_summary(self.times)}
        row["throughput_per_s"] = self.batch / row["median_s"]
        report = costs.analyze(self.model.config, self.size, batch=self.batch)
        row["params"], row["macs"] = report.params, report.macs
        if self.mode == "train":
            self.model.train()
            with self.autocast():
                row["saved_activation_bytes"] = costs.saved_tensor_bytes(self.model, self.x)
            if settings.device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.fn()
                torch.cuda.synchronize()
                row["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
        return row


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def run(settings: BenchSettings, progress=print) -> dict:
    """Measure every (model, input size, batch size, mode).

    Repetitions are interleaved: each round times every case once, in an order rotated from round to
    round, so a change in the machine's speed during the run (other load, clock changes) is spread over
    all models instead of falling on whichever was measured at that moment.
    """
    settings.validate()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device == "cuda":
        torch.backends.cudnn.benchmark = True
    result = {"schema": SCHEMA, "provenance": provenance(settings), "settings": asdict(settings), "results": []}
    cases = [_Case(ModelSpec.parse(text), batch, size, mode, settings)
             for text in settings.models for size in settings.input_sizes
             for batch in settings.batch_sizes for mode in settings.modes]
    inner = [_calibrate(case.fn, settings) for case in cases]
    for rep in range(settings.repeats):
        shift = rep % len(cases)
        for i in list(range(shift, len(cases))) + list(range(shift)):
            cases[i].times.append(_sample(cases[i].fn, settings.device, inner[i]))
    for case in cases:
        row = case.row(settings)
        row["calls_per_sample"] = inner[cases.index(case)]
        result["results"].append(row)
        if progress:
            progress(f"{case.spec.label:45s} {case.mode:9s} batch {case.batch:3d} {case.size}px: "
                     f"{row['median_s'] * 1000:9.2f} ms (IQR {row['iqr_s'] * 1000:.2f})")
    del cases
    if settings.device == "cuda":
        torch.cuda.empty_cache()
    return result


# --------------------------------------------------------------------------- result files

def save_results(result: dict, path) -> pathlib.Path:
    """Write atomically: a temporary file in the same folder, then a rename. Never a half-written file."""
    validate_results(result, "<in memory>")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


_REQUIRED_ROW = {"model": str, "name": str, "batch": int, "input_size": int, "mode": str, "median_s": float,
                 "iqr_s": float, "reps_s": list, "params": int, "macs": int}


def validate_results(result, source) -> dict:
    """Check a result's structure; ValueError naming the source and the first problem found."""
    def bad(problem):
        raise ValueError(f"{source}: {problem}")
    if not isinstance(result, dict):
        bad("not a JSON object")
    if result.get("schema") != SCHEMA:
        bad(f"schema is {result.get('schema')!r}, expected {SCHEMA!r}")
    prov = result.get("provenance")
    if not isinstance(prov, dict) or not all(k in prov for k in ("device", "torch", "date", "command")):
        bad("provenance must give device, torch, date and command")
    rows = result.get("results")
    if not isinstance(rows, list) or not rows:
        bad("no results")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            bad(f"results[{i}] is not an object")
        for key, typ in _REQUIRED_ROW.items():
            value = row.get(key)
            ok = isinstance(value, typ) or (typ is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok:
                bad(f"results[{i}].{key} is missing or not a {typ.__name__} (got {value!r})")
        if row["mode"] not in MODES:
            bad(f"results[{i}].mode is {row['mode']!r}, expected one of {MODES}")
        if not row["reps_s"] or any(not isinstance(t, (int, float)) or t <= 0 for t in row["reps_s"]):
            bad(f"results[{i}].reps_s must be a non-empty list of positive times")
        if not (min(row["reps_s"]) <= row["median_s"] <= max(row["reps_s"])):
            bad(f"results[{i}].median_s {row['median_s']} is not within its repetitions")
    return result


def load_results(path) -> dict:
    """Read and validate a result file. A truncated or hand-broken file is a ValueError naming it."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such result file") from None
    try:
        result = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (truncated or edited by hand?): {err}") from None
    return validate_results(result, path)


# --------------------------------------------------------------------------- committed results

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def committed_results(pattern: str = "*.json") -> list[pathlib.Path]:
    """The result files committed with the package (cspnet_lab/results/), so a chapter finds them wherever
    the package is installed: in the repository, in a virtual environment, in Colab."""
    return sorted(RESULTS.glob(pattern))


# --------------------------------------------------------------------------- analysis

def speedups(result: dict, baseline: str) -> list[dict]:
    """For every (mode, batch, size), each model's speedup over ``baseline`` and its multiply-add reduction.

    ``realised`` = (speedup - 1) / (MAC reduction factor - 1): 1.0 means the FLOP cut is fully realised
    as time, 0 means none of it. Also reported: ``speedup / mac_ratio`` as the issue defines it
    (time_base/time_model divided by macs_base/macs_model).
    """
    rows = result["results"]
    base = {(r["mode"], r["batch"], r["input_size"]): r for r in rows if r["model"] == baseline}
    out = []
    for r in rows:
        b = base.get((r["mode"], r["batch"], r["input_size"]))
        if b is None or r["model"] == baseline:
            continue
        speedup = b["median_s"] / r["median_s"]
        mac_ratio = b["macs"] / r["macs"]
        entry = dict(model=r["model"], mode=r["mode"], batch=r["batch"], input_size=r["input_size"],
                     speedup=speedup, mac_reduction=mac_ratio, speedup_per_mac_reduction=speedup / mac_ratio,
                     macs_change_pct=100 * (r["macs"] / b["macs"] - 1),
                     time_change_pct=100 * (r["median_s"] / b["median_s"] - 1))
        if "saved_activation_bytes" in r and "saved_activation_bytes" in b:
            entry["activation_change_pct"] = 100 * (r["saved_activation_bytes"] / b["saved_activation_bytes"] - 1)
        if "cuda_peak_allocated_bytes" in r and "cuda_peak_allocated_bytes" in b:
            entry["peak_memory_change_pct"] = 100 * (r["cuda_peak_allocated_bytes"] / b["cuda_peak_allocated_bytes"] - 1)
        out.append(entry)
    return out


# Settings of the committed runs (the GPU script and `bench --preset`).
VARIANTS = [f"cspdensenet121:fusion={f},part_ratio={r}" for f in ("csp", "first", "last") for r in (0.25, 0.5, 0.75)]
PRESETS = {
    "cpu": dict(models=["densenet121", "densenet121:memory_efficient=True", *VARIANTS],
                batch_sizes=[4], input_sizes=[128], modes=["inference", "train"], device="cpu", repeats=15,
                warmup=2, min_run_time=3.0),
    "gpu": dict(models=["densenet121", "densenet121:memory_efficient=True", "densenet169", "densenet201",
                        *VARIANTS, "cspdensenet169", "cspdensenet201"],
                batch_sizes=[32, 128], input_sizes=[224], modes=["inference", "train"], device="cuda",
                repeats=20, warmup=5, min_run_time=1.0),
    "smoke": dict(models=["densenet_cifar:growth_rate=4", "cspdensenet_cifar:growth_rate=4,fusion=last"],
                  batch_sizes=[2], input_sizes=[16],
                  modes=["inference", "train"], device="cpu", repeats=2, warmup=0, min_run_time=0.01),
}

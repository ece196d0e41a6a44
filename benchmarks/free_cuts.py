"""Time each exact inference cut (cspnet_lab.models.inference) against a baseline with the same weights.

Run by the coordinator on a quiet machine, in the torchvision side venv:

    PYTHONPATH=/work/main /work/tv-venv/bin/python benchmarks/free_cuts.py \
        --rounds 30 --processes 3 --out cspnet_lab/results/free_cuts_cpu.json

Each comparison runs in ``--processes`` separate worker processes (alternating which model is built
first); each worker times interleaved rounds and gives a paired-bootstrap interval; the file keeps every
worker's interval and the between-process spread. Before each worker the script waits (up to
``--wait`` seconds) for the 1-minute load average to fall below 1.2, so that the previous worker's own
threads have decayed out of it, and records that load; if any worker starts above 1.5 the run is marked
``quiet: false``. The load after each worker is recorded too, but it includes the benchmark's own
threads (a 2-thread benchmark lifts a 2-core machine's load towards 2), so it does not decide quiet. ``--baseline ours`` (used by ``--dry-run`` and in
the main venv, where torchvision does not import) compares against our own DenseNet with no cut.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cspnet_lab.measure.stats import paired_bootstrap, verdict  # noqa: E402
from cspnet_lab.models.inference import fuse_for_inference  # noqa: E402
from cspnet_lab.models.registry import cspdensenet121, densenet121  # noqa: E402

NONE = dict(pool_first=False, fold_bn=False, concat_buffer=False, channels_last=False)
CUTS = {"pool_first": dict(NONE, pool_first=True), "fold_bn": dict(NONE, fold_bn=True),
        "concat_buffer": dict(NONE, concat_buffer=True), "channels_last": dict(NONE, channels_last=True),
        "all": dict(pool_first=True, fold_bn=True, concat_buffer=True, channels_last=False),
        "pool_fold_cl": dict(pool_first=True, fold_bn=True, concat_buffer=False, channels_last=True)}
MAX_LOAD = 1.5
SETTLED = 1.2   # this VM idles near 1.0; a finished worker's own threads decay below 1.2 in ~100 s


def load() -> float:
    return os.getloadavg()[0]


def baseline_model(kind: str, arch: str, ours):
    if kind == "ours" or arch != "densenet121":
        return fuse_for_inference(ours, **NONE)  # same weights, no cut
    import torchvision  # only in the side venv
    tv = torchvision.models.densenet121()
    tv.load_state_dict(ours.state_dict())
    return tv.eval()


def worker(args) -> dict:
    torch.manual_seed(0)
    ours = (densenet121 if args.arch == "densenet121" else cspdensenet121)().eval()
    models = {}
    order = ["baseline", *CUTS] if args.index % 2 == 0 else [*CUTS, "baseline"]
    for name in order:
        models[name] = (baseline_model(args.baseline, args.arch, ours) if name == "baseline"
                        else fuse_for_inference(ours, **CUTS[name]))
    x = torch.randn(args.batch, 3, args.size, args.size)
    times = {n: [] for n in models}
    with torch.no_grad():
        for n in models:
            models[n](x)  # warm-up
        for _ in range(args.rounds):
            for n in models:
                t = time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - t)
    # training step: only pool-first carries to training (folded BN has no statistics to train)
    train = {}
    for n, pf in (("baseline", False), ("pool_first", True)):
        m = (densenet121 if args.arch == "densenet121" else cspdensenet121)(pool_first=pf).train()
        m.load_state_dict(ours.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=0.0)
        y = torch.zeros(args.batch, dtype=torch.long)
        train[n] = m, opt, y
    ttimes = {n: [] for n in train}
    for _ in range(args.rounds):
        for n, (m, opt, y) in train.items():
            t = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
            ttimes[n].append(time.perf_counter() - t)
    out = {"inference": {}, "train": {}}
    for n in CUTS:
        est, lo, hi = paired_bootstrap(times[n], times["baseline"])
        out["inference"][n] = [est, lo, hi]
    est, lo, hi = paired_bootstrap(ttimes["pool_first"], ttimes["baseline"])
    out["train"]["pool_first"] = [est, lo, hi]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--baseline", choices=["torchvision", "ours"], default="torchvision")
    ap.add_argument("--archs", default="densenet121,cspdensenet121")
    ap.add_argument("--wait", type=float, default=180.0,
                    help="seconds to wait for the load to settle before each worker")
    ap.add_argument("--dry-run", action="store_true", help="tiny run against our own DenseNet")
    ap.add_argument("--out", required=True)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arch", default="densenet121", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1 or args.processes < 1:
        raise SystemExit("--rounds and --processes must be >= 1")
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.dry_run:
        args.rounds, args.processes, args.batch, args.size, args.baseline = 2, 2, 2, 64, "ours"
    import datetime
    import platform

    from cspnet_lab.measure.bench import cpu_name
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    provenance = {"device": cpu_name(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                  "python": platform.python_version(), "commit": commit,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join([pathlib.Path(sys.executable).name, *sys.argv])}
    try:
        import torchvision
        provenance["torchvision"] = torchvision.__version__
    except ImportError:
        provenance["torchvision"] = None
    result = {"settings": vars(args) | {"torch": torch.__version__}, "provenance": provenance,
              "max_load": MAX_LOAD, "quiet": True, "runs": {}}
    for arch in args.archs.split(","):
        runs = []
        for i in range(args.processes):
            deadline = time.monotonic() + (0 if args.dry_run else args.wait)
            while load() >= SETTLED and time.monotonic() < deadline:
                time.sleep(5)
            before = load()
            cmd = [sys.executable, __file__, "--worker", "--arch", arch, "--index", str(i),
                   "--rounds", str(args.rounds), "--batch", str(args.batch), "--size", str(args.size),
                   "--baseline", args.baseline, "--out", "-"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"worker {i} ({arch}) failed:\n{proc.stderr[-2000:]}")
            res = json.loads(proc.stdout)
            after = load()
            res["load"] = [before, after]
            if before > MAX_LOAD:
                result["quiet"] = False
            runs.append(res)
        summary = {}
        for mode in ("inference", "train"):
            for cut in runs[0][mode]:
                ests = [r[mode][cut][0] for r in runs]
                summary[f"{mode}/{cut}"] = {
                    "per_process": [r[mode][cut] for r in runs],
                    "between_process": [min(ests), max(ests)],
                    "verdicts": [verdict(r[mode][cut][1], r[mode][cut][2], args.rounds) for r in runs]}
        result["runs"][arch] = {"processes": runs, "summary": summary}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    if not result["quiet"]:
        print(f"a worker started with load above {MAX_LOAD}: results marked quiet=false",
              file=sys.stderr)


if __name__ == "__main__":
    main()

"""Our DenseNet-121 against torchvision's, same process, same torch, same weights, interleaved timing.

torchvision does not import beside the CPU torch pinned for the book, so run this in a side venv:

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tv/bin/python benchmarks/vs_torchvision.py --device cpu --batch 4 --size 224 \\
        --out benchmarks/results/vs_torchvision_cpu.json

Repetitions alternate between the two models (A B, B A, A B ...), so drift in the machine's speed and
any first-or-second position effect hit both.
The ratio reported is median(ours) / median(torchvision): <= 1.00 means ours is not slower.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch
import torchvision

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cspnet_lab  # noqa: E402
from cspnet_lab.measure.bench import BenchSettings, cpu_name, paired_bootstrap, provenance  # noqa: E402


def step_fn(model, x, y, mode):
    if mode == "inference":
        model.eval()

        def fn():
            with torch.no_grad():
                model(x)
        return fn
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def fn():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return fn


def timed(fn, device, inner):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / inner


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--inner", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    theirs = torchvision.models.densenet121().to(dev)
    ours = cspnet_lab.densenet121().to(dev)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    result = {"provenance": provenance(BenchSettings(models=["densenet121"], device=args.device)),
              "torchvision": torchvision.__version__, "settings": vars(args), "modes": {}}
    result["provenance"]["device"] = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_name()
    for mode in ("inference", "train"):
        fns = {"cspnet_lab": step_fn(ours, x, y, mode), "torchvision": step_fn(theirs, x, y, mode)}
        for fn in fns.values():  # warm-up
            for _ in range(2):
                fn()
        reps = {k: [] for k in fns}
        order = list(fns)
        for i in range(args.repeats):
            for name in (order if i % 2 == 0 else order[::-1]):   # A B, B A, ...: no position bias
                reps[name].append(timed(fns[name], args.device, args.inner))
        med = {k: statistics.median(v) for k, v in reps.items()}
        # Repetition i of both models comes from the same alternation pair: paired 95 % interval.
        _, lo, hi = paired_bootstrap(reps["cspnet_lab"], reps["torchvision"])
        result["modes"][mode] = {"reps_s": reps, "median_s": med, "ratio_ours_over_torchvision":
                                 med["cspnet_lab"] / med["torchvision"], "ratio_interval_95": [lo, hi]}
        print(f"{mode:9s} ours {med['cspnet_lab'] * 1000:8.1f} ms   torchvision {med['torchvision'] * 1000:8.1f} ms"
              f"   ratio {med['cspnet_lab'] / med['torchvision']:.3f}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()

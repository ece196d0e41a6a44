"""Command line: ``python -m cspnet_lab {list,summary,compare,savings} ...``."""

from __future__ import annotations

import argparse
import sys

from . import costs
from .models import list_models


def _model_overrides(args) -> dict:
    out = {}
    for key in ("fusion", "part_ratio", "growth_rate", "partial_transition_ratio"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def cmd_summary(args) -> None:
    report = costs.analyze(args.model, args.input_size, **_model_overrides(args))
    print(f"{args.model} at {args.input_size}x{args.input_size}: {report.params:,} parameters, "
          f"{report.macs:,} multiply-adds (convs + linears)")
    if args.layers:
        rows = [dict(name=r.name, kind=r.kind, cin=r.in_channels, cout=r.out_channels,
                     hw=f"{r.out_hw[0]}x{r.out_hw[1]}", params=r.params, macs=r.macs) for r in report.layers]
        print(costs.format_table(rows, [("name", "layer", ""), ("kind", "kind", ""), ("cin", "in", "d"),
                                        ("cout", "out", "d"), ("hw", "output", ""), ("params", "params", ",d"),
                                        ("macs", "multiply-adds", ",d")]))
    else:
        plans = {f"stage{p.index}": p for p in report.stages}
        rows = []
        for stage, s in report.by_stage().items():
            p = plans.get(stage)
            rows.append(dict(stage=stage, cin=p.in_channels if p else None, cout=p.out_channels if p else None,
                             skip=p.skip_channels if p else None, dense=p.dense_channels if p else None,
                             params=s["params"], macs=s["macs"]))
        print(costs.format_table(rows, [("stage", "stage", ""), ("cin", "in", "d"), ("skip", "skip", "d"),
                                        ("dense", "dense", "d"), ("cout", "out", "d"),
                                        ("params", "params", ",d"), ("macs", "multiply-adds", ",d")]))
    if args.torchinfo:
        import torchinfo
        from .models import create_model
        model = create_model(args.model, **_model_overrides(args))
        print(torchinfo.summary(model, input_size=(1, model.config.in_channels, args.input_size,
                                                     args.input_size), verbose=0, depth=args.depth))


def cmd_compare(args) -> None:
    rows = costs.compare(args.base, args.other, args.input_size, **_model_overrides(args))
    print(f"{args.other} against {args.base} at {args.input_size}x{args.input_size}"
          + "".join(f", {k}={v}" for k, v in _model_overrides(args).items()))
    print(costs.format_table(rows, [("metric", "", ""), ("base", args.base, ",.0f"), ("other", args.other, ",.0f"),
                                    ("change_pct", "change %", "+.1f")]))


def cmd_savings(args) -> None:
    rows = costs.savings_table(args.depths, args.part_ratios, args.fusions, args.input_size)
    print(costs.format_table(rows, [("depth", "depth", "d"), ("fusion", "fusion", ""),
                                    ("part_ratio", "part_ratio", ".2f"), ("params", "params", ",d"),
                                    ("params_change_pct", "params %", "+.1f"), ("macs", "multiply-adds", ",d"),
                                    ("macs_change_pct", "mult-adds %", "+.1f"),
                                    ("io_change_pct", "conv I/O bytes %", "+.1f")]))


def cmd_bench(args) -> None:
    from . import bench

    settings = dict(bench.PRESETS[args.preset]) if args.preset else {"models": []}
    for key in ("models", "batch_sizes", "input_sizes", "modes", "device", "repeats", "warmup", "threads"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.channels_last:
        settings["channels_last"] = True
    if args.bf16:
        settings["bf16"] = True
    if not settings["models"]:
        raise ValueError("give --models or --preset")
    result = bench.run(bench.BenchSettings(**settings))
    if args.out:
        print("wrote", bench.save_results(result, args.out))
    _print_speedups(result, args.baseline or result["results"][0]["model"])


def _print_speedups(result, baseline) -> None:
    from . import bench

    rows = bench.speedups(result, baseline)
    if rows:
        print(f"\nagainst {baseline} on {result['provenance']['device']}:")
        print(costs.format_table(rows, [("model", "model", ""), ("mode", "mode", ""), ("batch", "batch", "d"),
                                        ("macs_change_pct", "mult-adds %", "+.1f"),
                                        ("time_change_pct", "time %", "+.1f"), ("speedup", "speedup", ".3f"),
                                        ("speedup_per_mac_reduction", "speedup / MAC reduction", ".3f")]))


def cmd_bench_report(args) -> None:
    from . import bench

    result = bench.load_results(args.file)
    _print_speedups(result, args.baseline or result["results"][0]["model"])


def cmd_train(args) -> None:
    from .train import main_from_args
    main_from_args(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cspnet_lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the model presets")

    def model_options(p):
        p.add_argument("--input-size", type=int, default=224)
        p.add_argument("--fusion", choices=("csp", "first", "last"))
        p.add_argument("--part-ratio", type=float, dest="part_ratio")
        p.add_argument("--partial-transition-ratio", type=float, dest="partial_transition_ratio")
        p.add_argument("--growth-rate", type=int, dest="growth_rate")

    p = sub.add_parser("summary", help="per-stage (or --layers: per-layer) parameters and multiply-adds")
    p.add_argument("model")
    p.add_argument("--layers", action="store_true", help="one row per layer instead of per stage")
    p.add_argument("--torchinfo", action="store_true", help="also print torchinfo's summary")
    p.add_argument("--depth", type=int, default=2, help="torchinfo depth")
    model_options(p)
    p = sub.add_parser("compare", help="params, multiply-adds and memory traffic of two models")
    p.add_argument("base")
    p.add_argument("other")
    model_options(p)
    p = sub.add_parser("savings", help="savings of every CSP variant against DenseNet")
    p.add_argument("--depths", type=int, nargs="+", default=[121, 169, 201])
    p.add_argument("--part-ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75], dest="part_ratios")
    p.add_argument("--fusions", nargs="+", default=["csp", "first", "last"])
    p.add_argument("--input-size", type=int, default=224)
    p = sub.add_parser("bench", help="time and memory of models (CPU or CUDA); JSON results with provenance")
    p.add_argument("--preset", choices=("cpu", "gpu", "smoke"), help="the settings of a committed run")
    p.add_argument("--models", nargs="+", help="presets, optionally name:key=value,key=value")
    p.add_argument("--batch-sizes", type=int, nargs="+", dest="batch_sizes")
    p.add_argument("--input-sizes", type=int, nargs="+", dest="input_sizes")
    p.add_argument("--modes", nargs="+", choices=("inference", "train"))
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--repeats", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--channels-last", action="store_true", dest="channels_last")
    p.add_argument("--bf16", action="store_true", help="CUDA only: bf16 autocast")
    p.add_argument("--baseline", help="model label to compare against (default: the first)")
    p.add_argument("--out", help="write the results here (JSON, atomically)")
    p = sub.add_parser("train", help="train a model (also under torchrun); history.json + checkpoint.pt")
    p.add_argument("--model", help="preset, optionally name:key=value,...")
    p.add_argument("--dataset", choices=("digits", "cifar10"))
    p.add_argument("--image-size", type=int, dest="image_size")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size", help="global batch size")
    p.add_argument("--optimizer", choices=("sgd", "adamw"))
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float, dest="weight_decay")
    p.add_argument("--schedule", choices=("cosine", "step", "none"))
    p.add_argument("--seed", type=int)
    p.add_argument("--out")
    p.add_argument("--resume", action="store_true", default=None)
    p.add_argument("--max-steps", type=int, dest="max_steps")
    p.add_argument("--bn-eval", action="store_true", default=None, dest="bn_eval")
    p.add_argument("--device")
    p.add_argument("--no-progress", action="store_false", default=None, dest="progress")
    p.add_argument("--data-root", dest="data_root")
    p = sub.add_parser("bench-report", help="validate a result file and print its speedups")
    p.add_argument("file")
    p.add_argument("--baseline")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(list_models()))
        else:
            {"summary": cmd_summary, "compare": cmd_compare, "savings": cmd_savings, "bench": cmd_bench,
             "bench-report": cmd_bench_report, "train": cmd_train}[args.command](args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

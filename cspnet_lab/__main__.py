"""Command line: ``python -m cspnet_lab {list,summary,compare,savings} ...``."""

from __future__ import annotations

import argparse
import math
import os
import sys

from .lab import tables
from .measure import costs
from .measure.bench import DEVICES as BENCH_DEVICES
from .measure.bench import MODES as BENCH_MODES
from .measure.bench import PRESETS as BENCH_PRESETS
from .models.csp import FUSIONS, WIDTHS
from .train.data import DATASETS
from .models.registry import ModelSpec, list_models, model_fields, model_kind
from .train.loop import OPTIMIZERS, SCHEDULES

MODEL_OPTIONS = ("fusion", "part_ratio", "growth_rate", "dense_transition_ratio", "widths", "pool_first")


def _model_overrides(args) -> dict:
    out = {}
    for key in MODEL_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _spec(text: str, args, only_taken: bool = False) -> ModelSpec:
    """``name`` or ``name:key=value,...`` plus the model options given on the command line (--fusion ...).
    A key set both ways is an error; with ``only_taken``, options the model does not take are skipped
    (``compare`` applies --fusion to the CSP model only)."""
    spec = ModelSpec.parse(text)
    given = dict(spec.overrides)
    fields = model_fields(spec.name)
    for key, value in _model_overrides(args).items():
        if only_taken and key not in fields:
            continue
        if key in given and given[key] != value:
            raise ValueError(f"{key} is given twice: {given[key]!r} in the model spec {text!r} and {value!r} as "
                             f"--{key.replace('_', '-')}")
        given[key] = value
    spec = ModelSpec(spec.name, tuple(given.items()))
    if model_kind(spec.name) == "densenet":
        spec.config()                                # ValueError for unknown keys and bad values
    else:
        import torch
        with torch.device("meta"):                   # validates without allocating
            spec.build()
    return spec


def _summary_other(spec: ModelSpec, args) -> None:
    """summary of a PeleeNet, darknet cfg or block: totals, then the stages (or --layers: every layer)."""
    import torch
    counts = costs.count_model(spec.name, args.input_size, **dict(spec.overrides))
    print(f"{args.model} at {args.input_size}x{args.input_size}: {counts['params']:,} parameters, "
          f"{counts['macs']:,} multiply-adds (convs + linears)")
    with torch.device("meta"):
        model = spec.build()
    if args.layers:
        rows = [dict(name=r.name, kind=r.type, out="x".join(map(str, r.out_shape[1:])), params=r.params,
                     macs=r.macs) for r in costs.trace(model, args.input_size)]
        print(tables.format_table(rows, [("name", "layer", ""), ("kind", "kind", ""), ("out", "output", ""),
                                        ("params", "params", ",d"), ("macs", "multiply-adds", ",d")]))
    elif hasattr(model, "feature_info"):
        rows = [dict(module=f["module"], chs=f["num_chs"], red=f["reduction"]) for f in model.feature_info]
        print(tables.format_table(rows, [("module", "stage output", ""), ("chs", "channels", "d"),
                                        ("red", "reduction", "d")]))
    if args.torchinfo:
        raise ValueError("--torchinfo is for the DenseNet and CSPDenseNet presets")


def cmd_summary(args) -> None:
    spec = _spec(args.model, args)
    if model_kind(spec.name) != "densenet":
        return _summary_other(spec, args)
    report = costs.analyze(spec.config(), args.input_size)
    print(f"{args.model} at {args.input_size}x{args.input_size}: {report.params:,} parameters, "
          f"{report.macs:,} multiply-adds (convs + linears)")
    if args.layers:
        rows = [dict(name=r.name, kind=r.kind, cin=r.in_channels, cout=r.out_channels,
                     hw=f"{r.out_hw[0]}x{r.out_hw[1]}", params=r.params, macs=r.macs) for r in report.layers]
        print(tables.format_table(rows, [("name", "layer", ""), ("kind", "kind", ""), ("cin", "in", "d"),
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
        print(tables.format_table(rows, [("stage", "stage", ""), ("cin", "in", "d"), ("skip", "skip", "d"),
                                        ("dense", "dense", "d"), ("cout", "out", "d"),
                                        ("params", "params", ",d"), ("macs", "multiply-adds", ",d")]))
    if args.torchinfo:
        import torchinfo
        model = spec.build()
        print(torchinfo.summary(model, input_size=(1, model.config.in_channels, args.input_size,
                                                     args.input_size), verbose=0, depth=args.depth))


def cmd_compare(args) -> None:
    base, other = (_spec(text, args, only_taken=True) for text in (args.base, args.other))
    rows = costs.compare(base.label, other.label, args.input_size)
    print(f"{args.other} against {args.base} at {args.input_size}x{args.input_size}"
          + "".join(f", {k}={v}" for k, v in _model_overrides(args).items()))
    print(tables.format_table(rows, [("metric", "", ""), ("base", args.base, ",.0f"), ("other", args.other, ",.0f"),
                                    ("change_pct", "change %", "+.1f")]))


def cmd_savings(args) -> None:
    rows = costs.savings_table(args.depths, args.part_ratios, args.fusions, args.input_size, args.widths)
    print(tables.format_table(rows, [("depth", "depth", "d"), ("fusion", "fusion", ""),
                                    ("part_ratio", "part_ratio", ".2f"), ("widths", "widths", ""),
                                    ("params", "params", ",d"),
                                    ("params_change_pct", "params %", "+.1f"), ("macs", "multiply-adds", ",d"),
                                    ("macs_change_pct", "mult-adds %", "+.1f"),
                                    ("io_change_pct", "conv I/O bytes %", "+.1f")]))


def cmd_bench(args) -> None:
    from .measure import bench

    settings = bench.sized_preset(args.preset) if args.preset else {"models": []}
    for key in ("models", "batch_sizes", "input_sizes", "modes", "device", "repeats", "warmup", "threads",
                "min_run_time", "time_cap_s"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.channels_last:
        settings["channels_last"] = True
    if args.bf16:
        settings["bf16"] = True
        _warn_bf16(settings.get("device", "cpu"))
    if args.no_profile:
        settings["profile"] = False
    if not settings["models"]:
        raise ValueError("give --models or --preset")
    if args.resume and not args.out:
        raise ValueError("--resume needs --out (the result file to continue)")
    result = bench.run(bench.BenchSettings(**settings), out=args.out, resume=args.resume,
                       overwrite=args.overwrite)      # --out is checked before anything is measured
    if args.out:
        print("wrote", args.out)
    _print_speedups(result, args.baseline)


def _warn_bf16(device: str) -> None:
    """bf16 is native only on a CUDA GPU of compute capability >= 8.0 (a T4, sm_75, emulates it, slowly, even
    though torch.cuda.is_bf16_supported() says True); anywhere else the run goes on and stderr says so."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        if major >= 8:
            return
        where = f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})"
    else:
        where = "the CPU" if device == "cpu" else f"device {device!r}"
    print(f"warning: --bf16 on {where} is not native bf16 (that needs a CUDA GPU of compute capability >= 8.0): "
          "the times measure an emulation and do not show what bf16 buys", file=sys.stderr)


def _check_baseline(result, baseline) -> str:
    names = list(dict.fromkeys(r["model"] for r in result["results"]))
    if baseline is None:
        return names[0]
    if baseline not in names:
        raise ValueError(f"--baseline {baseline!r} is not a model in this result; the models are: {', '.join(names)}")
    return baseline


def _print_speedups(result, baseline) -> None:
    from .measure import bench

    baseline = _check_baseline(result, baseline)
    rows = bench.speedups(result, baseline)
    for r in rows:
        if r["status"] == "ok":
            r["ratio_ci"] = f"{r['time_ratio']:.3f} [{r['time_ratio_lo']:.3f}, {r['time_ratio_hi']:.3f}]"
            if r["realised"] is not None:
                r["realised_ci"] = f"{r['realised']:+.2f} [{r['realised_lo']:+.2f}, {r['realised_hi']:+.2f}]"
        else:
            r["verdict"] = f"{r['status']}: {r.get('message') or ''}"[:60]
    if rows:
        print(f"\nagainst {baseline} on {result['provenance']['device']} (95 % bootstrap intervals over "
              "paired rounds):")
        print(tables.format_table(rows, [("model", "model", ""), ("mode", "mode", ""), ("batch", "batch", "d"),
                                        ("macs_change_pct", "mult-adds %", "+.1f"),
                                        ("ratio_ci", "time ratio [95 %]", ""), ("verdict", "verdict", ""),
                                        ("realised_ci", "realised fraction of the cut [95 %]", ""),
                                        ("activation_change_pct", "saved activations %", "+.1f")]))


def cmd_bench_report(args) -> None:
    from .measure import bench

    result = bench.load_results(args.file)
    _print_speedups(result, args.baseline)


def cmd_train(args) -> None:
    from .train.loop import main_from_args
    main_from_args(args)


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error on one line (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, low=None, low_open=False):
    """An argparse type: an int or a finite float, >= low (> low when low_open)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or (
                low is not None and (value < low or (low_open and value == low))):
            what = "an integer" if kind is int else "a finite number"
            bound = "" if low is None else f" {'>' if low_open else '>='} {low}"
            raise argparse.ArgumentTypeError(f"must be {what}{bound}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


POSITIVE_INT = _number(int, 1)
NON_NEGATIVE_INT = _number(int, 0)
POSITIVE_FLOAT = _number(float, 0, low_open=True)
NON_NEGATIVE_FLOAT = _number(float, 0)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (tests walk it: every option of every subcommand gets bad values)."""
    parser = _Parser(prog="python -m cspnet_lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the model presets")

    def model_options(p):
        p.add_argument("--input-size", type=POSITIVE_INT, default=224)
        p.add_argument("--fusion", choices=FUSIONS)
        p.add_argument("--widths", choices=WIDTHS,
                       help="narrow: the dense transition compresses; matched: stage outputs as wide as DenseNet's")
        p.add_argument("--pool-first", action="store_true", default=None, dest="pool_first",
                       help="transitions pool before their 1x1 conv (same function, 1/4 of its multiply-adds)")
        p.add_argument("--part-ratio", type=POSITIVE_FLOAT, dest="part_ratio")
        p.add_argument("--dense-transition-ratio", type=POSITIVE_FLOAT, dest="dense_transition_ratio")
        p.add_argument("--growth-rate", type=POSITIVE_INT, dest="growth_rate")

    p = sub.add_parser("summary", help="per-stage (or --layers: per-layer) parameters and multiply-adds")
    p.add_argument("model", help="preset, optionally name:key=value,...")
    p.add_argument("--layers", action="store_true", help="one row per layer instead of per stage")
    p.add_argument("--torchinfo", action="store_true", help="also print torchinfo's summary")
    p.add_argument("--depth", type=POSITIVE_INT, default=2, help="torchinfo depth")
    model_options(p)
    p = sub.add_parser("compare", help="params, multiply-adds and memory traffic of two models")
    p.add_argument("base", help="preset, optionally name:key=value,...")
    p.add_argument("other", help="preset, optionally name:key=value,...")
    model_options(p)
    p = sub.add_parser("savings", help="savings of every CSP variant against DenseNet")
    p.add_argument("--depths", type=POSITIVE_INT, nargs="+", default=[121, 169, 201])
    p.add_argument("--part-ratios", type=POSITIVE_FLOAT, nargs="+", default=[0.25, 0.5, 0.75], dest="part_ratios")
    p.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS)
    p.add_argument("--widths", nargs="+", default=list(WIDTHS), choices=WIDTHS,
                   help="stage-width forms: narrow (the dense transition compresses), matched (DenseNet's widths)")
    p.add_argument("--input-size", type=POSITIVE_INT, default=224)
    p = sub.add_parser("bench", help="time and memory of models (CPU or CUDA); JSON results with provenance")
    p.add_argument("--preset", choices=tuple(BENCH_PRESETS), help="the settings of a committed run")
    p.add_argument("--models", nargs="+", help="presets, optionally name:key=value,key=value")
    p.add_argument("--batch-sizes", type=POSITIVE_INT, nargs="+", dest="batch_sizes")
    p.add_argument("--input-sizes", type=POSITIVE_INT, nargs="+", dest="input_sizes")
    p.add_argument("--modes", nargs="+", choices=BENCH_MODES)
    p.add_argument("--device", choices=BENCH_DEVICES)
    p.add_argument("--repeats", type=POSITIVE_INT)
    p.add_argument("--warmup", type=NON_NEGATIVE_INT)
    p.add_argument("--threads", type=POSITIVE_INT)
    p.add_argument("--min-run-time", type=POSITIVE_FLOAT, dest="min_run_time", help="seconds of timing per case")
    p.add_argument("--channels-last", action="store_true", dest="channels_last")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--baseline", help="model label to compare against (default: the first)")
    p.add_argument("--out", help="write the results here (JSON, atomically, after every case)")
    p.add_argument("--time-cap", type=POSITIVE_FLOAT, dest="time_cap_s",
                   help="seconds: start no new round or group after this")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished cases")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-profile", action="store_true", dest="no_profile",
                   help="skip the torch.profiler breakdown of each case")
    p = sub.add_parser("train", help="train a model (also under torchrun); history.json + checkpoint.pt")
    p.add_argument("--model", help="preset, optionally name:key=value,...")
    p.add_argument("--dataset", choices=DATASETS)
    p.add_argument("--image-size", type=POSITIVE_INT, dest="image_size")
    p.add_argument("--epochs", type=POSITIVE_INT)
    p.add_argument("--batch-size", type=POSITIVE_INT, dest="batch_size", help="global batch size")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=POSITIVE_FLOAT)
    p.add_argument("--momentum", type=NON_NEGATIVE_FLOAT)
    p.add_argument("--weight-decay", type=NON_NEGATIVE_FLOAT, dest="weight_decay")
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--seed", type=NON_NEGATIVE_INT)
    p.add_argument("--out", help="folder for history.json and checkpoint.pt")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace a run already in --out")
    p.add_argument("--max-steps", type=POSITIVE_INT, dest="max_steps", help="optimizer steps in all")
    p.add_argument("--bn-eval", action="store_true", default=None, dest="bn_eval")
    p.add_argument("--device")
    p.add_argument("--no-progress", action="store_false", default=None, dest="progress")
    p.add_argument("--data-root", dest="data_root")
    p = sub.add_parser("bench-report", help="validate a result file and print its speedups")
    p.add_argument("file")
    p.add_argument("--baseline")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:            # usage errors (2) and --help (0) return like every other outcome
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "list":
            print("\n".join(f"{name:22s} {model_kind(name)}" for name in list_models()))
        else:
            {"summary": cmd_summary, "compare": cmd_compare, "savings": cmd_savings, "bench": cmd_bench,
             "bench-report": cmd_bench_report, "train": cmd_train}[args.command](args)
    except BrokenPipeError:              # `... | head`: the reader stopped reading; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as exc:  # what a user can cause: one line naming the argument or file
        print("error: " + " ".join(str(exc).split("\n")), file=sys.stderr)
        return 2
    except ImportError as exc:           # an optional package (--torchinfo's torchinfo) is not installed
        print(f"error: this needs the package {exc.name or exc!s}, which is not installed here: "
              f"pip install {exc.name or 'it'}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The command line, as a careless or hostile user drives it (issues 16 and 25): every subcommand with an
unknown flag and with each bad value of each option (negative, zero, non-numeric, empty, not finite, a missing
file, a folder where a file is expected, ...) exits non-zero with ONE line on stderr and no traceback.

* :func:`test_every_option_of_every_subcommand_refuses_bad_values` walks the real parser
  (``cspnet_lab.__main__.build_parser``), so an option added later is swept too;
* ``CASES`` and ``SEMANTIC``: values the parser accepts but the command refuses (files, folders, specs,
  ranges), each with the words its one line must hold;
* a few runs of the real ``python -m cspnet_lab`` entry point check the same in a fresh process.

Commands run in-process through ``main(argv)``; training uses a tiny random "digits" set (fixture below).
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import tiny_digits
from cspnet_lab import _io, costs, data
from cspnet_lab import __main__ as cli
from cspnet_lab.models import registry as models
from cspnet_lab.train import loop as tr
from cspnet_lab.__main__ import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "densenet_cifar:block_config=(2,2,2),growth_rate=4"


@pytest.fixture(autouse=True)
def _one_thread_tiny_data(monkeypatch):
    before = tiny_digits(monkeypatch)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _one_line_error(capsys, argv, tmp_path=None):
    """Run ``main(argv)``; return its one stderr line (asserting rc 2, one line, no traceback)."""
    capsys.readouterr()
    if tmp_path is not None:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2, (argv, rc, captured.err[-2000:])
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err[-2000:]
    return lines[0]


# ----------------------------------------------------------------------------- the table of user errors

def _finished_run(tmp_path, **kw):
    out = tmp_path / "run"
    tr.train(tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=32, schedule="none", out=str(out),
                            progress=False, **kw))
    return out


def _planted_cifar(tmp_path):
    folder = tmp_path / "cache" / data.CIFAR10_DIR
    folder.mkdir(parents=True)
    for name in data.CIFAR10_FILES:
        (folder / name).write_bytes(pickle.dumps(_Evil(tmp_path / "pwned"), protocol=2))


def _checkpoint(how):
    def setup(tmp_path):
        path = _finished_run(tmp_path) / "checkpoint.pt"
        if how == "malicious":
            torch.save({"model": _Evil(tmp_path / "pwned")}, path)
        elif how == "truncated":
            path.write_bytes(path.read_bytes()[:500])
        elif how == "another model":
            ckpt = torch.load(path, weights_only=True)
            ckpt["model"] = models.create_model("densenet_cifar", block_config=(3,), in_channels=1).state_dict()
            torch.save(ckpt, path)
    return setup


@contextlib.contextmanager
def _locked(tmp_path):
    out = _finished_run(tmp_path)
    with _io.FolderLock(out, tr.LOCK_NAME, what="training run"):
        yield


def _result_file(kind):
    def setup(tmp_path):
        path = tmp_path / "result.json"
        if kind == "directory":
            path.mkdir()
        elif kind == "non-utf8":
            path.write_bytes(b'{"schema": "\xff\xfe"}')
        elif kind == "deeply nested":
            path.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "missing":
            pass
    return setup


TRAIN = ["train", "--model", TINY, "--image-size", "8", "--epochs", "1", "--batch-size", "32", "--no-progress"]
RUN = ["--out", "{tmp}/run"]

# (class, argv, setup, expected in the one-line message); {tmp} is the test's folder.
CASES = [
    # code execution: nothing a file or a spec holds is ever run
    ("code", ["train", "--dataset", "cifar10", "--data-root", "{tmp}/cache", "--no-progress"], _planted_cifar,
     "data_batch_1 is not the published CIFAR-10 file"),
    ("code", [*TRAIN, "--schedule", "none", "--epochs", "2", *RUN, "--resume"], _checkpoint("malicious"),
     "holds objects other than tensors and plain data, and was refused unloaded"),
    ("code", ["summary", "densenet_cifar:growth_rate=__import__('os').system('touch {tmp}/pwned')"], None,
     "growth_rate must be a positive integer"),
    ("code", ["summary", "densenet_cifar:block_config=[i for i in ().__class__.__bases__]"], None, "block_config"),
    # data loss: a run is never replaced unless asked, never shared
    ("loss", [*TRAIN, *RUN], _finished_run, "already holds a training run (checkpoint.pt, history.json); pass "
     "resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it"),
    ("loss", [*TRAIN, *RUN, "--resume"], None, "checkpoint.pt does not exist, so there is nothing to resume"),
    ("loss", [*TRAIN, *RUN, "--overwrite"], _locked, "is in use by another training run"),
    ("loss", [*TRAIN, *RUN, "--resume", "--overwrite"], _finished_run, "contradict each other"),
    ("loss", [*TRAIN, "--out", "{tmp}/file"], lambda t: (t / "file").write_text("x"), "is a file, not a folder"),
    # silently wrong: refused instead
    ("wrong", [*TRAIN, "--schedule", "none", *RUN, "--resume", "--lr", "0.05"], _finished_run,
     "a resumed run keeps its settings, but this call changes lr from 0.1 to 0.05"),
    ("wrong", [*TRAIN, "--schedule", "none", *RUN, "--resume", "--epochs", "3", "--batch-size", "16"],
     _finished_run, "batch_size from 32 to 16"),
    ("wrong", [*TRAIN[:-3], "--batch-size", "5000", "--no-progress"], None, "batch_size 5000 is larger than the "
     "training set (96 items of digits)"),
    ("wrong", ["summary", "densenet_cifar:memory_efficient='false'", "--input-size", "32"], None,
     "memory_efficient must be True or False, got 'false'"),
    ("wrong", ["summary", "densenet_cifar:memory_efficient=false", "--input-size", "32"], None,
     "memory_efficient must be True or False"),
    ("wrong", ["train", "--model", TINY + ",num_classes=5", "--no-progress"], None,
     "sets num_classes=5 but dataset 'digits' has 10"),
    ("wrong", ["train", "--model", TINY + ",in_channels=3", "--no-progress"], None, "sets in_channels=3"),
    # hangs: a deep network's minimum input size is computed, not searched
    ("hang", ["summary", "densenet_cifar:block_config=(" + ",".join(["1"] * 20) + ")", "--input-size", "32"], None,
     "too small"),
    ("hang", ["summary", "densenet_cifar:block_config=(" + ",".join(["1"] * 40) + ")", "--input-size", "224"], None,
     "too small"),
    # clear errors: checkpoints
    ("clear", [*TRAIN, "--schedule", "none", "--epochs", "2", *RUN, "--resume"], _checkpoint("truncated"),
     "checkpoint.pt is corrupt or truncated"),
    ("clear", [*TRAIN, "--schedule", "none", "--epochs", "2", *RUN, "--resume"], _checkpoint("another model"),
     "holds the weights of another model than"),
    ("clear", [*TRAIN, "--schedule", "none", "--epochs", "2", *RUN, "--resume", "--model",
               "densenet_cifar:block_config=(2,2),growth_rate=4"], _finished_run, "changes model from"),
    # clear errors: devices, numbers, folders
    ("clear", ["train", "--device", "gpu", "--no-progress"], None, "device must be one of 'cpu', 'cuda' or 'cuda:N'"),
    ("clear", ["train", "--device", "cuda:7", "--no-progress"], None, "cuda:7"),
    ("clear", ["train", "--device", "", "--no-progress"], None, "device must be one of"),
    ("clear", ["train", "--dataset", "cifar10", "--data-root", "{tmp}/nope", "--no-progress"], None,
     "cache folder {tmp}/nope does not exist"),
    ("clear", ["train", "--lr", "nan"], None, "argument --lr: must be a finite number > 0, got 'nan'"),
    ("clear", ["train", "--lr", "inf"], None, "argument --lr: must be a finite number > 0"),
    ("clear", ["train", "--lr", "0"], None, "argument --lr: must be a finite number > 0"),
    ("clear", ["train", "--epochs", "-1"], None, "argument --epochs: must be an integer >= 1, got '-1'"),
    ("clear", ["train", "--seed", "-1"], None, "argument --seed: must be an integer >= 0"),
    ("clear", ["train", "--momentum", "-0.5"], None, "argument --momentum: must be a finite number >= 0"),
    ("clear", ["train", "--momentum", "1.5", "--no-progress"], None, "momentum must be a finite number in [0, 1)"),
    ("clear", ["train", "--weight-decay", "nan"], None, "argument --weight-decay"),
    ("clear", ["train", "--max-steps", "0"], None, "argument --max-steps: must be an integer >= 1"),
    ("clear", ["train", "--batch-size", "1.5"], None, "argument --batch-size: must be an integer >= 1, got '1.5'"),
    ("clear", ["train", "--dataset", "mnist"], None, "argument --dataset: invalid choice: 'mnist'"),
    ("clear", ["train", "--model", "nosuch", "--no-progress"], None, "unknown model name 'nosuch'"),
    ("clear", ["train", "--model", "densenet_cifar:growth_rate", "--no-progress"], None, "must be key=value"),
    ("clear", ["bench", "--threads", "-1"], None, "argument --threads: must be an integer >= 1, got '-1'"),
    ("clear", ["bench", "--threads", "0"], None, "argument --threads: must be an integer >= 1"),
    ("clear", ["bench", "--min-run-time", "nan"], None, "argument --min-run-time: must be a finite number > 0"),
    ("clear", ["bench", "--min-run-time", "-1"], None, "argument --min-run-time: must be a finite number > 0"),
    ("clear", ["bench", "--repeats", "0"], None, "argument --repeats: must be an integer >= 1"),
    ("clear", ["bench", "--warmup", "-1"], None, "argument --warmup: must be an integer >= 0"),
    ("clear", ["bench", "--batch-sizes", "8", "0"], None, "argument --batch-sizes: must be an integer >= 1"),
    ("clear", ["bench", "--device", "tpu"], None, "argument --device: invalid choice: 'tpu'"),
    ("clear", ["summary", "densenet_cifar", "--input-size", "0"], None, "argument --input-size: must be an integer"),
    ("clear", ["summary", "densenet_cifar", "--input-size", "3"], None, "too small"),
    ("clear", ["summary", "densenet_cifar:growth_rate=4", "--growth-rate", "5"], None,
     "growth_rate is given twice: 4 in the model spec 'densenet_cifar:growth_rate=4' and 5 as --growth-rate"),
    ("clear", ["summary", "densenet_cifar:growth_rate=4,growth_rate=5"], None, "'growth_rate' is given twice"),
    ("clear", ["summary", "densenet_cifar:colour=red"], None, "densenet_cifar does not take colour"),
    ("clear", ["summary", "densenet_cifar", "--fusion", "middle"], None, "argument --fusion: invalid choice"),
    ("clear", ["compare", "densenet_cifar", "nosuch"], None, "unknown model name 'nosuch'"),
    ("clear", ["savings", "--fusions", "middle"], None, "argument --fusions: invalid choice"),
    ("clear", ["savings", "--part-ratios", "nan"], None, "argument --part-ratios: must be a finite number > 0"),
    ("clear", ["nosuch"], None, "argument command: invalid choice: 'nosuch'"),
    ("clear", ["bench-report", "{tmp}/result.json"], _result_file("missing"), "result.json"),
    ("clear", ["bench-report", "{tmp}/result.json"], _result_file("directory"), "result.json: is a folder"),
    ("clear", ["bench-report", "{tmp}/result.json"], _result_file("non-utf8"), "result.json: not a UTF-8"),
    ("clear", ["bench-report", "{tmp}/result.json"], _result_file("deeply nested"), "result.json: nested too deeply"),
]


def _ids():
    seen = {}
    for kind, argv, *_ in CASES:
        key = f"{kind}-{argv[0]}"
        seen[key] = seen.get(key, 0) + 1
        yield f"{key}{seen[key]}"


@pytest.mark.parametrize("kind, argv, setup, expected", CASES, ids=list(_ids()))
def test_every_user_error_is_one_line_and_exit_code_2(tmp_path, capsys, kind, argv, setup, expected):
    with contextlib.ExitStack() as stack:
        if setup is not None:
            made = setup(tmp_path)
            if isinstance(made, contextlib.AbstractContextManager) and not isinstance(made, os.PathLike):
                stack.enter_context(made)
        capsys.readouterr()
        rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected.replace("{tmp}", str(tmp_path)) in lines[0], lines[0]
    assert not (tmp_path / "pwned").exists()                          # nothing was executed


def test_summary_and_compare_accept_specs(capsys):
    assert main(["summary", TINY, "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    report = costs.analyze("densenet_cifar", 32, block_config=(2, 2, 2), growth_rate=4)
    assert f"{report.params:,} parameters" in out


def test_compare_accepts_specs(capsys):
    spec = "cspdensenet_cifar:block_config=(2,2,2),growth_rate=4"
    assert main(["compare", TINY, spec, "--input-size", "32"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    base = costs.analyze("densenet_cifar", 32, block_config=(2, 2, 2), growth_rate=4)
    other = costs.analyze("cspdensenet_cifar", 32, block_config=(2, 2, 2), growth_rate=4)
    assert f"{base.params:,}" in out and f"{other.params:,}" in out


def test_help_and_success_exit_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out
    assert main(["list"]) == 0


# ----------------------------------------------------------------------------- every option, swept from the parser

# Bad values per argument type: what each must refuse (the message names the option).
BAD_VALUES = {
    cli.POSITIVE_INT: ["0", "-1", "abc", "1.5", "", "1e3", "nan"],
    cli.NON_NEGATIVE_INT: ["-1", "abc", "1.5", "", "nan"],
    cli.POSITIVE_FLOAT: ["0", "-1", "abc", "nan", "inf", "-inf", "", "1e400"],
    cli.NON_NEGATIVE_FLOAT: ["-1", "abc", "nan", "inf", "", "-0.5"],
}
# The positionals each subcommand needs before its options are reached.
POSITIONALS = {"summary": ["densenet_cifar"], "compare": ["densenet_cifar", "cspdensenet_cifar"],
               "bench-report": ["{tmp}/result.json"]}


def _subcommands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _sweep():
    """(id, argv, words the error line must hold) for every option of every subcommand."""
    for name, parser in _subcommands().items():
        base = [name, *POSITIONALS.get(name, [])]
        yield f"{name}-unknown-flag", [*base, "--bogus"], ["unrecognized arguments: --bogus"]
        yield f"{name}-unknown-flag-value", [*base, "--bogus=1"], ["unrecognized arguments: --bogus=1"]
        yield f"{name}-unknown-short-flag", [*base, "-z"], ["unrecognized arguments: -z"]
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            opt = action.option_strings[0]
            if action.nargs == 0:                    # a switch given a value
                yield f"{name}{opt}=yes", [*base, f"{opt}=yes"], [opt, "ignored explicit argument"]
                continue
            yield f"{name}{opt}-no-value", [*base, opt], [opt, "expected"]
            for value in BAD_VALUES.get(action.type, []):
                # "-inf" would read as an option of its own: given as --opt=-inf it is the value
                given = [f"{opt}={value}"] if value.startswith("-") else [opt, value]
                yield f"{name}{opt}={value or 'empty'}", [*base, *given], [f"argument {opt}: must be"]
            if action.choices:
                for value in ("nosuch", ""):
                    yield f"{name}{opt}={value or 'empty'}", [*base, opt, value], [f"argument {opt}: invalid choice"]


SWEEP = list(_sweep())


def test_the_sweep_reaches_every_subcommand_and_every_typed_option():
    # what wrong code makes this fail: a subcommand or a numeric option the sweep silently skips
    names = set(_subcommands())
    assert {"list", "summary", "compare", "savings", "bench", "bench-report", "train"} <= names
    swept = {argv[0] for _, argv, _ in SWEEP}
    assert swept == names
    typed = [(n, a.option_strings[0]) for n, p in _subcommands().items() for a in p._actions
             if a.option_strings and a.dest != "help" and a.nargs != 0 and a.type is None and not a.choices]
    # the options that take free text are covered by CASES/SEMANTIC below, by name
    free_text = {opt for _, opt in typed}
    covered = {a for argv in [c[1] for c in CASES] + [c[0] for c in SEMANTIC] for a in argv if a.startswith("--")}
    assert free_text <= covered, free_text - covered
    assert len(SWEEP) > 200


@pytest.mark.parametrize("argv, words", [(argv, words) for _, argv, words in SWEEP],
                         ids=[i for i, _, _ in SWEEP])
def test_every_option_of_every_subcommand_refuses_bad_values(tmp_path, capsys, argv, words):
    line = _one_line_error(capsys, argv, tmp_path)
    assert line.startswith(f"python -m cspnet_lab {argv[0]}: error:") or line.startswith(
        "python -m cspnet_lab: error:"), line
    for w in words:
        assert w in line, line


# ----------------------------------------------------------------------------- values the parser lets through

def _files(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "binary.json").write_bytes(b"\x00\x01\xfe garbage")
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "truncated.json").write_text('{"schema": "cspnet')


BIG = "9" * 30
SEMANTIC = [
    # model specs: names, keys, values
    (["summary", "nosuch"], "unknown model name 'nosuch'"),
    (["summary", ""], "model spec must be a non-empty string"),
    (["summary", "densenet_cifar:=3"], "must be key=value"),
    (["summary", "cspdensenet_cifar", "--part-ratio", "1.5"], "part_ratio must be in (0, 1]"),
    (["summary", "cspdensenet_cifar", "--dense-transition-ratio", "1.5"], "dense_transition_ratio must be in (0, 1]"),
    (["summary", "densenet_cifar", "--growth-rate", BIG], "growth_rate must be a positive integer (>= 1) up to"),
    (["summary", "densenet_cifar", "--input-size", BIG], "input_size must be a positive integer (>= 1) up to"),
    (["summary", "densenet_cifar", "--part-ratio", "0.5"], "densenet_cifar does not take part_ratio"),
    (["summary", "densenet_cifar:block_config=" + "(" * 1000], "block_config must be a non-empty sequence"),
    (["summary", "densenet_cifar:block_config=()"], "block_config must be a non-empty sequence"),
    (["summary", "densenet_cifar:growth_rate=-1"], "growth_rate must be a positive integer"),
    (["summary", "densenet_cifar:compression=10**400"], "compression must be a number in (0, 1]"),
    (["summary", "densenet_cifar:compression=1e400"], "compression must be in (0, 1]"),
    (["summary", "densenet_cifar:in_channels=0"], "in_channels must be a positive integer"),
    (["summary", "peleenet", "--input-size", "30"], "multiples of 4 and at least 32"),
    (["summary", "peleenet:colour=red"], "peleenet does not take colour"),
    (["summary", "peleenet", "--part-ratio", "0.5"], "peleenet does not take part_ratio"),
    (["summary", "peleenet", "--torchinfo"], "--torchinfo is for the DenseNet and CSPDenseNet presets"),
    (["summary", "c3:shortcut='no'"], "shortcut must be True or False"),
    (["summary", "c3:c1=0"], "c1 must be a positive integer"),
    (["summary", "cross_stage:stride=0"], "stride must be one of 1, 2"),
    (["summary", "resnext50:filters=3"], "resnext50 does not take filters"),
    (["bench", "--models", "peleenet:growth_rate=0"], "growth_rate must be a positive integer"),
    (["train", "--model", "c3", "--no-progress"], "c3 is a block model"),
    (["compare", "densenet_cifar", "nosuch"], "unknown model name 'nosuch'"),
    (["compare", "nosuch", "densenet_cifar"], "unknown model name 'nosuch'"),
    (["compare", "densenet_cifar"], "the following arguments are required: other"),
    (["compare", "densenet_cifar", "cspdensenet_cifar", "--input-size", "3"], "too small"),
    (["savings", "--depths", "100"], "unknown model name 'densenet100'"),
    (["savings", "--part-ratios", "1.5"], "part_ratio must be in (0, 1]"),
    (["savings", "--input-size", "3"], "too small"),
    # bench: models, files and folders
    (["bench"], "give --models or --preset"),
    (["bench", "--resume"], "give --models or --preset"),
    (["bench", "--models", "nosuch"], "unknown model name 'nosuch'"),
    (["bench", "--models", ""], "model spec must be a non-empty string"),
    (["bench", "--models", TINY, "--input-sizes", "2"], "input size 2 is too small"),
    (["bench", "--models", TINY, "--out", "{tmp}/folder"], "--out {tmp}/folder: is a folder"),
    (["bench", "--models", TINY, "--out", ""], "is a folder"),
    (["bench", "--models", TINY, "--out", "{tmp}/file/x.json"], "cannot create its folder"),
    (["bench", "--models", TINY, "--out", "{tmp}/file"], "exists; pass resume=True (--resume)"),
    (["bench", "--models", TINY, "--out", "{tmp}/binary.json", "--resume"], "binary.json: not a UTF-8 text file"),
    (["bench", "--models", TINY, "--out", "{tmp}/empty.json", "--resume"], "empty.json: not valid JSON"),
    (["bench", "--models", TINY, "--out", "{tmp}/x.json", "--resume", "--overwrite", "--baseline", "nosuch"],
     "contradict each other"),
    # bench-report: files
    (["bench-report", "{tmp}/nosuch.json"], "nosuch.json: no such result file"),
    (["bench-report", "{tmp}/folder"], "folder: is a folder, not a result file"),
    (["bench-report", ""], "is a folder, not a result file"),
    (["bench-report", "{tmp}/empty.json"], "empty.json: not valid JSON"),
    (["bench-report", "{tmp}/binary.json"], "binary.json: not a UTF-8 text file"),
    (["bench-report", "{tmp}/truncated.json"], "truncated.json: not valid JSON (truncated"),
    (["bench-report", "{tmp}/list.json"], "list.json: not a JSON object"),
    (["bench-report", "{tmp}/file/x.json"], "x.json: cannot be read"),
    # train: folders, data, devices, numbers beyond any run
    (["train", "--model", ""], "model spec must be a non-empty string"),
    (["train", "--out", ""], "out must be a non-empty path"),
    (["train", "--out", "{tmp}/file", "--no-progress"], "out {tmp}/file is a file, not a folder"),
    (["train", "--out", "{tmp}/file/sub", "--no-progress"], "cannot be created or written"),
    (["train", "--resume"], "resume=True needs out"),
    (["train", "--data-root", "{tmp}/nope"], "dataset 'digits' reads no folder"),
    (["train", "--dataset", "cifar10", "--data-root", "{tmp}/file"], "cache folder {tmp}/file does not exist or is "
     "not a folder"),
    (["train", "--dataset", "cifar10", "--data-root", ""], "data_root must be a non-empty path"),
    (["train", "--device", ""], "device must be one of"),
    (["train", "--epochs", BIG], "epochs must be a positive integer (>= 1) up to"),
    (["train", "--seed", BIG], "seed must be an integer in [0, 2**32), got an integer of 30 digits"),
    (["train", "--image-size", "4"], "image_size must be an integer in [8, 256] for dataset 'digits'"),
    (["train", "--batch-size", BIG], "batch_size must be a positive integer (>= 1) up to"),
    (["train", "--max-steps", BIG], "max_steps must be a positive integer (>= 1) up to"),
    (["train", "--momentum", "1"], "momentum must be a finite number in [0, 1)"),
    # the command itself
    ([], "the following arguments are required: command"),
    (["list", "extra"], "unrecognized arguments: extra"),
]


@pytest.mark.parametrize("argv, expected", SEMANTIC, ids=[f"{a[0] if a else 'none'}-{i}" for i, (a, _) in
                                                          enumerate(SEMANTIC)])
def test_values_the_parser_accepts_but_the_command_refuses(tmp_path, capsys, argv, expected):
    _files(tmp_path)
    line = _one_line_error(capsys, argv, tmp_path)
    assert expected.replace("{tmp}", str(tmp_path)) in line, line
    assert not (tmp_path / "x.json").exists()                  # nothing was measured or written


def test_a_resume_that_finds_nothing_leaves_no_folder_behind(tmp_path, capsys):
    # old code created --out before finding that it held no checkpoint
    line = _one_line_error(capsys, [*TRAIN, "--out", "{tmp}/new/run", "--resume"], tmp_path)
    assert "nothing to resume" in line
    assert not (tmp_path / "new").exists()


def test_a_missing_optional_package_is_one_line(capsys, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_torchinfo(name, *a, **k):
        if name == "torchinfo":
            raise ModuleNotFoundError("No module named 'torchinfo'", name="torchinfo")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_torchinfo)
    line = _one_line_error(capsys, ["summary", TINY, "--input-size", "32", "--torchinfo"])
    assert "torchinfo" in line and "pip install torchinfo" in line


# ----------------------------------------------------------------------------- the real entry point

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cspnet_lab", *args], capture_output=True, text=True, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env}, timeout=300)


@pytest.mark.parametrize("args, env, expected", [
    (["summary", "densenet_cifar", "--bogus"], None, "unrecognized arguments: --bogus"),
    (["train", "--epochs", "-3"], None, "argument --epochs: must be an integer >= 1, got '-3'"),
    (["bench-report", "."], None, "is a folder, not a result file"),
    (["train", "--model", TINY, "--no-progress"], {"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' must be an integer"),
])
def test_the_installed_command_gives_one_line_and_no_traceback(args, env, expected):
    proc = _cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert expected in lines[0]
    assert proc.stdout == ""


def test_compare_command_prints_the_change_in_percent():
    out = _cli("compare", "densenet201", "cspdensenet201", "--fusion", "last", "--part-ratio", "0.5")
    assert out.returncode == 0, out.stderr
    base, other = costs.analyze("densenet201"), costs.analyze("cspdensenet201", fusion="last", part_ratio=0.5)
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith("multiply-adds"))
    assert f"{base.macs:,}" in line and f"{other.macs:,}" in line
    assert f"{100 * (other.macs - base.macs) / base.macs:+.1f}" in line
    assert "parameters" in out.stdout and "conv input+output bytes" in out.stdout and "CIO" in out.stdout


def test_summary_command_and_its_errors():
    out = _cli("summary", "densenet121")
    assert out.returncode == 0 and "7,978,856 parameters" in out.stdout and "2,834,161,664" in out.stdout
    bad = _cli("summary", "densenet999")
    assert bad.returncode == 2 and "known models: densenet121" in bad.stderr
    bad = _cli("compare", "densenet121", "cspdensenet121", "--part-ratio", "1.5")
    assert bad.returncode == 2 and "part_ratio must be in (0, 1]" in bad.stderr


def test_bench_command_writes_and_reports(tmp_path):
    out = tmp_path / "cli.json"
    proc = _cli("bench", "--preset", "smoke", "--modes", "inference", "--repeats", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = _cli("bench-report", str(out))
    assert report.returncode == 0 and "time ratio [95 %]" in report.stdout
    again = _cli("bench", "--preset", "smoke", "--out", str(out))
    assert again.returncode == 2 and "exists; pass resume=True (--resume)" in again.stderr
    result = json.loads(out.read_text())
    result["results"][0]["median_s"] = math.inf
    out.write_text(json.dumps(result))
    bad = _cli("bench-report", str(out))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "median_s must be a finite number" in bad.stderr


def test_bench_report_with_an_unknown_baseline_is_an_error_naming_the_models():
    from cspnet_lab.measure import bench
    out = _cli("bench-report", str(bench.RESULTS / "bench_cpu.json"), "--baseline", "nosuch")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--baseline 'nosuch' is not a model in this result" in out.stderr and "densenet121" in out.stderr


def test_bench_bf16_without_native_bf16_says_so_on_stderr(tmp_path):
    out = _cli("bench", "--preset", "smoke", "--bf16", "--modes", "inference", "--out", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    assert "warning: --bf16 on the CPU is not native bf16" in out.stderr

"""Hostile and careless input, class by class (issue 16): nothing executed, nothing lost, nothing silently
wrong, nothing hangs, and every failure a user can cause is one line naming the argument, file or option,
with exit code 2 from the command line.

The table-driven test at the bottom drives ``python -m cspnet_lab`` in-process (``main(argv)``); the

"""

import contextlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from cspnet_lab import _checks, _io, costs, data
from cspnet_lab.models import registry as models
from cspnet_lab.train import loop as tr
from cspnet_lab.__main__ import main

TINY = "densenet_cifar:block_config=(2,2,2),growth_rate=4"


@pytest.fixture(autouse=True)
def _one_thread_tiny_data(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1, 8, 8, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    sets = TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])
    real = tr.load_dataset
    monkeypatch.setattr(tr, "load_dataset", lambda name, **kw: sets if name == "digits" else real(name, **kw))
    yield
    torch.set_num_threads(before)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_write_fsyncs_the_data_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        return real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        return real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _io.atomic_write_text(tmp_path / "a.json", "{}")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "a.json").read_text() == "{}"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "history.json"
    target.write_text("old")

    def write(f):
        f.write(b"half of the new")
        raise error
    with pytest.raises(error):
        _io.atomic_write(target, write)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_atomic_save_torch_round_trips(tmp_path):
    _io.atomic_save_torch(tmp_path / "c.pt", {"w": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(3))


# ----------------------------------------------------------------------------- locks

def test_folder_lock_is_exclusive_and_released(tmp_path):
    with _io.FolderLock(tmp_path, what="training run") as lock:
        with pytest.raises(ValueError, match=rf"{tmp_path} is in use by another training run \(pid {os.getpid()}"):
            _io.FolderLock(tmp_path, what="training run").acquire()
        assert lock.path.exists()
    assert not lock.path.exists()
    with _io.FolderLock(tmp_path):                                     # free again
        pass


def test_a_run_in_another_process_holds_the_folder_until_it_dies(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", code, str(out / tr.LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match="is in use by another training run"):
            tr.train(tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=32, out=str(out), progress=False))
        assert not (out / "history.json").exists()
    finally:
        other.kill()                                                   # killed, as a crashed run would be
        other.wait()
    tr.train(tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=32, out=str(out), progress=False))
    assert (out / "history.json").exists()                             # no stale lock to clean by hand


def test_two_runs_started_together_one_wins_and_its_run_is_intact(tmp_path):
    out = tmp_path / "run"
    results = {}
    barrier = threading.Barrier(2)

    def run(name, lr):
        barrier.wait()
        try:
            results[name] = tr.train(tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=32, lr=lr,
                                                     out=str(out), progress=False))["config"]["lr"]
        except ValueError as err:
            results[name] = str(err)
    threads = [threading.Thread(target=run, args=(n, lr)) for n, lr in (("a", 0.1), ("b", 0.05))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [v for v in results.values() if isinstance(v, float)]
    lost = [v for v in results.values() if isinstance(v, str)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "is in use by another training run" in lost[0] or "already holds a training run" in lost[0]
    assert json.loads((out / "history.json").read_text())["config"]["lr"] == won[0]


# ----------------------------------------------------------------------------- reusable checks

@pytest.mark.parametrize("value", ["false", "False", 0, 1, None, "", [], 0.0])
def test_boolean_accepts_only_real_bools(value):
    with pytest.raises(ValueError, match="must be True or False"):
        _checks.boolean("memory_efficient", value)
    assert _checks.boolean("x", False) is False


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "1", True, None, 0.0, -1])
def test_finite_real_refuses_nan_inf_strings_bools_and_out_of_range(value):
    with pytest.raises(ValueError, match=r"min_run_time must be a (finite )?number in \(0, inf\)"):
        _checks.finite_real("min_run_time", value, 0.0, low_open=True)


@pytest.mark.parametrize("value", ["gpu", "cuda:99", "", 3, None, "cpu:x", "tpu"])
def test_device_refuses_unknown_and_absent_devices(value):
    if value == "cuda:99" and not torch.cuda.is_available():
        match = "no CUDA device is available"
    else:
        match = "device must be one of|CUDA device"
    with pytest.raises(ValueError, match=match):
        _checks.device("device", value)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.int32])
def test_floating_tensor_refuses_integer_images(dtype):
    with pytest.raises(ValueError, match=f"x must be a floating-point tensor .* got dtype {dtype}"):
        _checks.floating_tensor("x", torch.zeros(1, 3, 8, 8, dtype=dtype))


# ----------------------------------------------------------------------------- model-level cases (other owners)

@pytest.mark.parametrize("key, value", [("memory_efficient", "false"), ("memory_efficient", 0),
                                        ("stem_norm", "False"), ("final_norm", None), ("memory_efficient", 1)])
def test_boolean_options_refuse_non_bools(key, value):
    with pytest.raises(ValueError, match=f"{key} must be True or False"):
        models.model_config("densenet_cifar", **{key: value})


def test_a_spec_key_given_twice_is_an_error():
    with pytest.raises(ValueError, match="'growth_rate' is given twice"):
        models.ModelSpec.parse("densenet_cifar:growth_rate=4,growth_rate=5")


@pytest.mark.parametrize("batch", [0, -1, "64", 2.5, True])
def test_costs_analyze_refuses_bad_batches(batch):
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        costs.analyze("densenet_cifar", 32, batch=batch)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_models_refuse_integer_inputs(dtype):
    model = models.create_model("densenet_cifar", block_config=(2, 2, 2), growth_rate=4)
    with pytest.raises(ValueError, match="floating"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype))


@pytest.mark.parametrize("stages", [16, 20, 40])
def test_min_input_size_of_many_stages_returns_at_once(stages):
    from cspnet_lab.models.densenet import min_input_size
    t0 = time.perf_counter()
    config = models.model_config("densenet_cifar", block_config=(1,) * stages)
    size = min_input_size(config)
    assert time.perf_counter() - t0 < 1.0
    assert size == 2 ** (stages - 1)               # densenet_cifar's stem keeps the size; each transition halves
    from cspnet_lab import _checks
    # below the minimum: "too small"; an input side beyond any real image (2**39 px) is refused as such
    with pytest.raises(ValueError, match="too small" if size - 1 <= _checks.MAX_INT else "up to 2,147,483,647"):
        costs.analyze(config, size - 1)


# ----------------------------------------------------------------------------- the command line, table-driven

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


@pytest.mark.parametrize("size", ["64", b"64", (32,), (32, "32"), 0, -8, 2.5])
def test_costs_analyze_refuses_bad_input_sizes(size):
    with pytest.raises(ValueError, match="input"):
        costs.analyze("densenet_cifar", size)


# --------------------------------------------------------------------------- bench: disk full, two writers (issue 25)

def _bench_settings(**kw):
    from cspnet_lab import bench
    return bench.BenchSettings(**{**bench.PRESETS["smoke"], **kw})


def test_a_resume_that_hits_a_full_disk_leaves_the_earlier_file_exactly_as_it_was(tmp_path, monkeypatch):
    # Old code re-saved the finished rows one at a time: the first save held fewer rows than the file did.
    import errno
    from cspnet_lab import bench
    out = tmp_path / "r.json"
    settings = _bench_settings(modes=["inference", "train"])
    real_row = bench._Case.row

    def die_in_train(self):
        if self.mode == "train":
            raise KeyboardInterrupt
        return real_row(self)
    monkeypatch.setattr(bench._Case, "row", die_in_train)
    with pytest.raises(KeyboardInterrupt):
        bench.run(settings, progress=None, out=out)
    monkeypatch.setattr(bench._Case, "row", real_row)
    before = out.read_bytes()
    n_before = len(bench.load_results(out)["results"])
    real_save, saved_rows = bench.save_results, []

    def fills_up(result, path):
        saved_rows.append(len(result["results"]))
        raise OSError(errno.EFBIG, "File too large")
    monkeypatch.setattr(bench, "save_results", fills_up)
    with pytest.raises(OSError, match="File too large"):
        bench.run(settings, progress=None, out=out, resume=True)
    assert min(saved_rows) > n_before                  # no save ever held fewer finished rows than the file
    assert out.read_bytes() == before                  # the failed save was the first: nothing changed


def test_a_resume_under_a_file_size_limit_keeps_every_finished_row(tmp_path):
    # A real "File too large" from the kernel (ulimit -f) in a subprocess: the rows on disk never decrease.
    import resource
    from cspnet_lab import bench
    out = tmp_path / "r.json"
    script = ("import sys; from cspnet_lab import bench; s = bench.BenchSettings(**{**bench.PRESETS['smoke'], "
              "'modes': ['inference', 'train']}); "
              "bench.run(s, progress=None, out=sys.argv[1], resume=len(sys.argv) > 2)")
    first = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    full = json.loads(out.read_text())
    full["results"] = [r for r in full["results"] if r["mode"] == "inference"]   # as if killed in "train"
    bench.save_results(full, out)
    before = out.read_bytes()
    limit = len(before) + 64          # room for one save of the old rows, not for the whole new file

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        import signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # EFBIG as an OSError, not a kill
    second = subprocess.run([sys.executable, "-c", script, str(out), "resume"], capture_output=True, text=True,
                            preexec_fn=cap)
    assert second.returncode != 0
    assert "File too large" in second.stderr
    assert out.read_bytes() == before                  # exactly as it was
    assert not list(tmp_path.glob(".r.json.*.tmp"))     # no temporary left behind


def test_a_second_bench_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    from cspnet_lab import bench
    out = tmp_path / "r.json"
    with _io.FolderLock(tmp_path, name=".r.json.lock", what="bench run", subject=out):
        with pytest.raises(ValueError, match=r"r\.json is in use by another bench run .*choose another file"):
            bench.run(_bench_settings(), progress=None, out=out)
    assert not out.exists()
    bench.run(_bench_settings(), progress=None, out=out)     # released: the next run goes ahead
    assert out.exists() and not (tmp_path / ".r.json.lock").exists()


def test_two_bench_commands_started_together_one_is_refused_with_a_clear_message(tmp_path):
    out = tmp_path / "r.json"
    argv = [sys.executable, "-m", "cspnet_lab", "bench", "--preset", "smoke", "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    codes = sorted(rc for _, _, rc in outs)
    assert codes == [0, 2], outs                        # old code: both exit 0 and one run's rows are lost
    loser = next(err for _, err, rc in outs if rc == 2)
    assert "Traceback" not in loser and ("in use by another bench run" in loser or "exists" in loser)


# --------------------------------------------------------------------------- result files and bench CLI values

def _committed_copy(tmp_path, **row_changes):
    from cspnet_lab.measure import bench
    data = json.loads((bench.RESULTS / "bench_cpu.json").read_text())
    data["results"][0].update(row_changes)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_load_results_refuses_a_count_beyond_any_real_run(tmp_path):
    # 10**400 is a valid JSON integer; the report used to print "-100 %" for it
    from cspnet_lab.measure import bench
    path = _committed_copy(tmp_path, macs=10**400)
    with pytest.raises(ValueError, match=r"edited\.json: results\[0\]\.macs must be a positive integer"):
        bench.load_results(path)


def test_bench_report_with_an_unknown_baseline_is_an_error_naming_the_models():
    from cspnet_lab.measure import bench
    out = subprocess.run([sys.executable, "-m", "cspnet_lab", "bench-report", str(bench.RESULTS / "bench_cpu.json"),
                          "--baseline", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--baseline 'nosuch' is not a model in this result" in out.stderr and "densenet121" in out.stderr


def test_bench_bf16_without_native_bf16_says_so_on_stderr(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cspnet_lab", "bench", "--preset", "smoke", "--bf16",
                          "--modes", "inference", "--out", str(tmp_path / "b.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "warning: --bf16 on the CPU is not native bf16" in out.stderr


# --------------------------------------------------------------------------- the darknet .cfg reader

NET = "[net]\nheight=32\nwidth=32\nchannels=3\n"
CONV = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"


def _darknet():
    from cspnet_lab.models import darknet
    return darknet


@pytest.mark.parametrize("text, match", [
    (NET.replace("height=32", "height=-32") + CONV, r"\[net\] \(line 1\) height must be an integer >= 1"),
    (NET + CONV.replace("filters=8", "filters=0"), "filters must be an integer >= 1"),
    (NET + CONV.replace("filters=8", "filters=-8"), "filters must be an integer >= 1"),
    (NET + CONV.replace("size=3", "size=0"), "size must be an integer >= 1"),
    (NET + CONV.replace("stride=1", "stride=0"), "stride must be an integer >= 1"),
    (NET + CONV + "groups=0\n", "groups must be an integer >= 1"),
    (NET + "[maxpool]\nsize=2\nstride=0\n", "stride must be an integer >= 1"),
    (NET + CONV + "filters=16\n", "gives 'filters' twice"),
    (NET + CONV + "[shortcut]\nfrom=-1\nactivation=swishy\n", "activation 'swishy' is not supported"),
    (NET + CONV + "[route]\nlayers=-5\n", "not an earlier layer"),
    (NET + CONV + "[route]\nlayers=3\n", "not an earlier layer"),
    (NET + CONV + "[yolo]\n", r"section \[yolo\] is not supported"),
    (CONV, r"must start with a \[net\] section"),
    ("", r"must start with a \[net\] section"),
    ("\x00\x01\x02binary", "NUL bytes"),
    (NET + "#" * (2 << 20), "is refused"),
    (NET + CONV.replace("filters=8", "filters=__import__('os').system('touch /tmp/pwned')"),
     "filters must be an integer"),
    (NET.replace("height=32", "height=4").replace("width=32", "width=4")
     + CONV.replace("pad=1", "pad=0").replace("stride=1", "stride=2") * 6, "cannot run on its own input size"),
])
def test_darknet_cfg_hostile_input_is_refused_before_building(text, match):
    with pytest.raises(ValueError, match=match):
        _darknet().build(text)


def test_darknet_values_that_look_like_code_are_never_evaluated(tmp_path, monkeypatch):
    import builtins
    calls = []
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError):
        _darknet().build(NET + CONV.replace("filters=8", "filters=2*4"))
    assert calls == []


def test_darknet_any_nonzero_batch_normalize_switches_batch_norm_on():
    model = _darknet().build(NET + CONV.replace("batch_normalize=1", "batch_normalize=2"))
    assert isinstance(model.layers[0].norm, torch.nn.BatchNorm2d) and model.layers[0].conv.bias is None


def test_darknet_misspelt_key_is_refused_and_only_warns_when_not_strict():
    text = NET + CONV + "filterz=9\n"
    with pytest.raises(ValueError, match="no key 'filterz'"):
        _darknet().build(text)
    with pytest.warns(UserWarning, match="no key 'filterz'"):
        _darknet().build(text, strict=False)


def test_darknet_huge_filters_refused_from_the_estimate_before_allocating():
    from cspnet_lab import _checks
    text = NET + (CONV.replace("filters=8", "filters=1000000").replace("batch_normalize=1", "batch_normalize=0")) * 2
    with pytest.raises(ValueError, match=r"would have about [\d,]+ parameters"):
        _darknet().build(text)
    # the estimate is the convolutions' weights (plus 2 per filter for a norm's affine or a bias pair)
    net, *body = _darknet().parse(NET + CONV)
    assert _darknet()._parameter_estimate(net, body) == 8 * 3 * 9 + 16
    assert _checks.MAX_PARAMETERS == 2**31


def test_the_authors_cfgs_pass_strict():
    d = _darknet()
    for name in d.AUTHORS_CFGS:
        with torch.device("meta"):
            d.build(d.authors_cfg(name), strict=True)


# --------------------------------------------------------------------------- modern blocks

@pytest.mark.parametrize("build, match", [
    (lambda m: m.C3(8, 8, 1, shortcut="no"), "shortcut must be True or False"),
    (lambda m: m.C2f(8, 8, 1, shortcut=None), "shortcut must be True or False"),
    (lambda m: m.BottleneckCSP(8, 8, 1, shortcut=1), "shortcut must be True or False"),
    (lambda m: m.c3_counterpart(8, 8, 1, shortcut="yes"), "shortcut must be True or False"),
    (lambda m: m.CrossStage(8, 8, 1, stride=0), "stride must be one of"),
    (lambda m: m.CrossStage(8, 8, 1, groups=0), "groups must be a positive integer"),
    (lambda m: m.ResBottleneck(8, groups=0), "groups must be a positive integer"),
])
def test_modern_blocks_refuse_non_booleans_and_zero_strides_or_groups(build, match):
    from cspnet_lab.models import modern
    with pytest.raises(ValueError, match=match):
        build(modern)


# --------------------------------------------------------------------------- explorers, figures, experiments (lows)

@pytest.mark.parametrize("call, match", [
    (lambda: __import__("cspnet_lab.lab.explore", fromlist=["x"]).split_compute(0.5, 32, stage=0),
     r"stage must be an integer in \[1, 4\]"),
    (lambda: __import__("cspnet_lab.lab.explore", fromlist=["x"]).split_compute(0.5, 32, stage=-1),
     r"stage must be an integer in \[1, 4\]"),
    (lambda: __import__("cspnet_lab.lab.explore", fromlist=["x"]).split_compute(0.5, 32, stage=5),
     r"stage must be an integer in \[1, 4\]"),
    (lambda: __import__("cspnet_lab.lab.explore", fromlist=["x"]).growth_compute(4.7), "growth_rate"),
    (lambda: __import__("cspnet_lab.lab.explore", fromlist=["x"]).growth_compute(float("nan")), "growth_rate"),
    (lambda: __import__("cspnet_lab.lab.plots", fromlist=["x"]).stage_costs({}), "at least one model"),
    (lambda: __import__("cspnet_lab.lab.experiments", fromlist=["x"]).run_flops(10, 100, 10, 1, 0), "batch_size"),
    (lambda: __import__("cspnet_lab.lab.experiments", fromlist=["x"]).run_flops(10, -1, 10, 1, 8), "n_train"),
    (lambda: __import__("cspnet_lab.lab.experiments", fromlist=["x"]).measure_throughput(
        "densenet_cifar", 8, 1, 0), "batch_size"),
    (lambda: __import__("cspnet_lab.lab.experiments", fromlist=["x"]).mean_curves([], "val_accuracy"),
     "at least one run"),
])
def test_lab_functions_refuse_out_of_range_values_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_static_explorer_escapes_script_closers_in_its_inline_json():
    import json
    from cspnet_lab.lab import explore
    text = explore._script_json({"choice": "a</script><b>", "numbers": "<td>1</td>"})
    assert "</" not in text                                 # nothing in it can end the inline script
    assert json.loads(text) == {"choice": "a</script><b>", "numbers": "<td>1</td>"}   # same data
    import inspect
    src = inspect.getsource(explore.Explorer.static_html)
    assert "json.dumps(" not in src and src.count("_script_json(") == 2

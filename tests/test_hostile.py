"""Hostile and careless input, class by class (issue 16): nothing executed, nothing lost, nothing silently
wrong, nothing hangs, and every failure a user can cause is one line naming the argument, file or option,
with exit code 2 from the command line.

The command line's cases (the table of user errors and the sweep of every option) are in test_cli.py.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import tiny_digits
from cspnet_lab import _checks, _io, costs
from cspnet_lab.models import registry as models
from cspnet_lab.train import loop as tr

TINY = "densenet_cifar:block_config=(2,2,2),growth_rate=4"


@pytest.fixture(autouse=True)
def _one_thread_tiny_data(monkeypatch):
    before = tiny_digits(monkeypatch)
    yield
    torch.set_num_threads(before)


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


# --------------------------------------------------------------------------- environment variables (issue 25)

TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TWO = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}


@pytest.mark.parametrize("env, match", [
    ({"WORLD_SIZE": "abc"}, r"environment variable WORLD_SIZE='abc' must be an integer >= 1"),
    ({"WORLD_SIZE": "0"}, r"WORLD_SIZE='0' must be an integer >= 1"),
    ({"WORLD_SIZE": "-2"}, r"WORLD_SIZE='-2' must be an integer >= 1"),
    ({"WORLD_SIZE": "2.0"}, r"WORLD_SIZE='2.0' must be an integer"),
    ({"WORLD_SIZE": "1_0"}, r"WORLD_SIZE='1_0' must be an integer"),           # int() reads 10
    ({"WORLD_SIZE": "\u0662"}, r"WORLD_SIZE='\u0662' must be an integer"),     # int() reads 2 (Arabic-Indic)
    ({"RANK": "abc"}, r"environment variable RANK='abc' must be an integer >= 0"),
    ({"RANK": "-1"}, r"RANK='-1' must be an integer >= 0"),
    ({"LOCAL_RANK": "gpu0"}, r"LOCAL_RANK='gpu0' must be an integer >= 0"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK=2 must be < WORLD_SIZE=2"),
    ({"WORLD_SIZE": "2", "LOCAL_RANK": "3"}, r"LOCAL_RANK=3 must be < WORLD_SIZE=2"),
    (TWO, r"WORLD_SIZE=2 asks for 2 processes, but MASTER_ADDR is unset or empty"),
    ({**TWO, "MASTER_ADDR": "  "}, r"MASTER_ADDR is unset or empty"),
    ({**TWO, "MASTER_ADDR": "localhost"}, r"MASTER_PORT='' must be a port number in 1\.\.65535"),
    ({**TWO, "MASTER_ADDR": "localhost", "MASTER_PORT": "abc"}, r"MASTER_PORT='abc' must be a port number"),
    ({**TWO, "MASTER_ADDR": "localhost", "MASTER_PORT": "70000"}, r"MASTER_PORT='70000' must be a port number"),
    ({**TWO, "MASTER_ADDR": "localhost", "MASTER_PORT": "0"}, r"MASTER_PORT='0' must be a port number"),
])
def test_torchrun_variables_are_named_before_training_starts(tmp_path, capsys, monkeypatch, env, match):
    # what wrong code makes this fail: int() on the raw text, RANK read after training, torch's own
    # "invalid literal" for MASTER_PORT, or a process group that waits for partners that never come
    import re
    from cspnet_lab.__main__ import main
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = []
    monkeypatch.setattr(tr, "train", lambda *a, **k: started.append("train"))
    monkeypatch.setattr(tr.dist, "init_process_group", lambda *a, **k: started.append("process group"))
    rc = main(["train", "--model", TINY, "--image-size", "8", "--epochs", "1", "--batch-size", "32",
               "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err
    assert started == [] and not (tmp_path / "run").exists()        # nothing ran, no folder was made


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_torchrun_variables_mean_one_process(monkeypatch, value):
    # the documented fallback: unset or blank is one process (rank 0); the rendezvous is not needed then
    for name in TORCHRUN_VARS:
        monkeypatch.setenv(name, value)
    assert tr.distributed_env() == (1, 0, 0)
    monkeypatch.setenv("WORLD_SIZE", " 1 ")
    assert tr.distributed_env() == (1, 0, 0)


def _no_download(monkeypatch):
    from cspnet_lab.train import data as data_module
    monkeypatch.setattr(data_module, "_download", lambda *a, **k: pytest.fail("tried to download"))
    return data_module


@pytest.mark.parametrize("value, match", [
    ("~nosuchuser_cspnet_lab/cache", r"environment variable CSPNET_LAB_CACHE='~nosuchuser_cspnet_lab/cache' "
                                     r"starts with ~ but that home folder cannot be determined"),
    ("{tmp}/file", r"cache folder {tmp}/file \(from CSPNET_LAB_CACHE\) is a file, not a folder"),
    ("{tmp}/file/below", r"cache folder {tmp}/file/below \(from CSPNET_LAB_CACHE\) cannot be created"),
])
def test_a_bad_cache_variable_is_named_and_nothing_is_downloaded(tmp_path, monkeypatch, capsys, value, match):
    import re
    from cspnet_lab.__main__ import main
    _no_download(monkeypatch)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CSPNET_LAB_CACHE", value.replace("{tmp}", str(tmp_path)))
    rc = main(["train", "--dataset", "cifar10", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match.replace("{tmp}", re.escape(str(tmp_path))), err), err


def test_the_cache_variable_blank_missing_or_a_folder(tmp_path, monkeypatch):
    # documented: unset/empty/blank -> ~/.cache/cspnet_lab; a missing folder is created; a folder is used
    data_module = _no_download(monkeypatch)
    for blank in ("", "  \t"):
        monkeypatch.setenv("CSPNET_LAB_CACHE", blank)
        assert data_module.default_cache() == pathlib.Path.home() / ".cache" / "cspnet_lab"
    monkeypatch.setenv("CSPNET_LAB_CACHE", str(tmp_path / "new" / "cache"))
    assert data_module._cache_dir(None) == tmp_path / "new" / "cache" and (tmp_path / "new" / "cache").is_dir()
    monkeypatch.setenv("CSPNET_LAB_CACHE", str(tmp_path))
    assert data_module._cache_dir(None) == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CSPNET_LAB_CACHE", "~/c")
    assert data_module.default_cache() == tmp_path / "c"                  # ~ is expanded


def test_a_blank_source_variable_is_unset_and_the_cell_does_nothing_outside_colab(tmp_path):
    # Old template: "   " counted as set, so the cell tried to pip-install "   " and failed.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import setup_cell
    finally:
        sys.path.pop(0)
    env = dict(os.environ, CSPNET_LAB_SOURCE="   ", PIP_NO_INDEX="1")
    proc = subprocess.run([sys.executable, "-c", setup_cell.source()], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


@pytest.mark.parametrize("value", ["not a url at all", "{tmp}/no-such-folder", "{tmp}"])
def test_a_bad_source_variable_stops_the_setup_cell_naming_it(tmp_path, value):
    # CSPNET_LAB_SOURCE (scripts/setup_cell.py): pip's own error, the origin named, a RuntimeError, no
    # CalledProcessError; a plain folder path (not a pip URL) is refused by pip, never installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import setup_cell
    finally:
        sys.path.pop(0)
    env = dict(os.environ, CSPNET_LAB_SOURCE=value.replace("{tmp}", str(tmp_path)), PIP_NO_INDEX="1")
    proc = subprocess.run([sys.executable, "-c", setup_cell.source()], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "pip could not install cspnet_lab; the end of its output:" in proc.stdout
    assert "(CSPNET_LAB_SOURCE)" in proc.stdout                         # the origin is named
    assert "RuntimeError: installing cspnet_lab failed" in proc.stderr
    assert "CalledProcessError" not in proc.stderr


# --------------------------------------------------------------------------- files: permissions (issue 25)

@contextlib.contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_and_checkpoints_get_the_mode_open_would_give_them(tmp_path, mask, mode):
    # old code: every atomic write left mkstemp's 0o600, whatever the umask (a shared result unreadable)
    from cspnet_lab.lab import experiments
    from cspnet_lab.measure import bench
    with _umask(mask):
        out = tmp_path / "run"
        tr.train(tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=32, out=str(out), progress=False))
        result = bench.save_results(bench.load_results(bench.RESULTS / "bench_cpu.json"), tmp_path / "r.json")
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(40, 1, 8, 8, generator=gen), torch.randint(0, 10, (40,), generator=gen)
        experiments.run_in_folder(tmp_path / "exp", {"a": tr.TrainConfig(
            model=TINY, image_size=8, epochs=1, batch_size=16, progress=False)},
            TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:]), progress=False)
    files = [out / "checkpoint.pt", out / "history.json", result, tmp_path / "exp" / "plan.json",
             tmp_path / "exp" / "a" / "checkpoint.pt"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}


def test_a_rewritten_file_keeps_its_own_mode(tmp_path):
    # as open(path, "w") would: replacing a file never widens (or narrows) what its owner chose
    path = tmp_path / "r.json"
    _io.atomic_write_text(path, "{}")
    path.chmod(0o640)
    with _umask(0o077):
        _io.atomic_write_text(path, '{"a": 1}')
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == '{"a": 1}'


# --------------------------------------------------------------------------- experiments: interruption (issue 25)

def _exp_data():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(80, 1, 8, 8, generator=gen), torch.randint(0, 10, (80,), generator=gen)
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


def _exp_runs(**kw):
    from dataclasses import replace
    cfg = tr.TrainConfig(model=TINY, image_size=8, epochs=2, batch_size=16, schedule="none", progress=False)
    runs = {name: replace(cfg, seed=seed) for seed, name in enumerate(("done", "stopped", "lost", "unsaid"))}
    return {name: replace(c, **kw.get(name, {})) for name, c in runs.items()}


def _tracked(monkeypatch):
    from cspnet_lab.lab import experiments
    calls, real = [], experiments.train_on

    def train_on(cfg, *sets):
        calls.append((pathlib.Path(cfg.out).name, cfg.resume))
        return real(cfg, *sets)
    monkeypatch.setattr(experiments, "train_on", train_on)
    return experiments, calls


def test_an_interrupted_set_of_runs_keeps_what_finished_and_redoes_only_the_rest(tmp_path, monkeypatch):
    experiments, calls = _tracked(monkeypatch)
    sets = _exp_data()
    reference = experiments.run_in_folder(tmp_path / "ref", _exp_runs(), *sets, progress=False)
    folder = tmp_path / "cut"
    # the first session: "stopped" is cut off inside its second epoch (4 steps per epoch, stop at step 6)
    experiments.run_in_folder(folder, _exp_runs(stopped={"max_steps": 6}), *sets, progress=False)
    lost, unsaid = folder / "lost", folder / "unsaid"
    # "lost": killed before its first save (only a temporary file remains);
    # "unsaid": killed between writing its last checkpoint and its history
    for name in ("checkpoint.pt", "history.json"):
        (lost / name).unlink()
    (lost / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half")
    (unsaid / "history.json").unlink()
    done_files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (folder / "done").iterdir()}
    unsaid_ckpt = (unsaid / "checkpoint.pt").read_bytes()
    calls.clear()
    again = experiments.run_in_folder(folder, _exp_runs(), *sets, progress=False)
    # "done" is read back, not trained; "stopped" and "unsaid" resume; "lost" starts afresh
    assert sorted(calls) == [("lost", False), ("stopped", True), ("unsaid", True)], calls
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (folder / "done").iterdir()} == done_files
    assert (unsaid / "checkpoint.pt").read_bytes() == unsaid_ckpt     # finished: nothing trained again
    assert json.loads((unsaid / "history.json").read_text())["epochs"] == again["unsaid"]["epochs"]
    assert len(json.loads((folder / "stopped" / "history.json").read_text())["segments"]) == 2
    for name in ("done", "stopped", "lost", "unsaid"):               # the same numbers as never interrupted
        got, want = again[name]["epochs"], reference[name]["epochs"]
        assert len(got) == 2
        assert [e["val_loss"] for e in got] == pytest.approx([e["val_loss"] for e in want], rel=1e-5), name
    calls.clear()
    experiments.run_in_folder(folder, _exp_runs(), *sets, progress=False)
    assert calls == []           # old code: "unsaid" (no history.json) was taken as unfinished every time


@pytest.mark.parametrize("damage, match", [
    (lambda p: p.write_text(p.read_text()[:40]), r"history\.json is truncated or not valid JSON"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), r"history\.json is not a UTF-8 text file"),
    (lambda p: p.write_text("[1, 2]"), r"history\.json is not a training history"),
    (lambda p: p.write_text('{"epochs": 3}'), r"history\.json is not a training history"),
    (lambda p: (p.unlink(), p.mkdir()), r"history\.json is not a file"),
])
def test_a_damaged_history_is_named_and_nothing_is_overwritten(tmp_path, damage, match):
    # old code: a bare JSONDecodeError ("Expecting value: line 1 column 1") naming no file
    from cspnet_lab.lab import experiments
    sets = _exp_data()
    runs = {"a": tr.TrainConfig(model=TINY, image_size=8, epochs=1, batch_size=16, progress=False)}
    experiments.run_in_folder(tmp_path, runs, *sets, progress=False)
    path = tmp_path / "a" / "history.json"
    damage(path)
    ckpt = (tmp_path / "a" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=match) as err:
        experiments.run_in_folder(tmp_path, runs, *sets, progress=False)
    assert str(path) in str(err.value) and "delete it to redo the run" in str(err.value)
    assert (tmp_path / "a" / "checkpoint.pt").read_bytes() == ckpt


def test_a_damaged_plan_is_named(tmp_path):
    from cspnet_lab.lab import experiments
    (tmp_path / "plan.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"plan\.json is not a UTF-8 text file .*delete it or name another folder"):
        experiments.run_in_folder(tmp_path, {"a": tr.TrainConfig(model=TINY)}, *_exp_data(), progress=False)


# --------------------------------------------------------------------------- figures and explorers: empty or NaN data

def _report(**kw):
    return costs.analyze("cspdensenet_cifar", 32, block_config=(2, 2, 2), growth_rate=4, **kw)


def _no_dense(report):
    from dataclasses import replace
    return replace(report, layers=[r for r in report.layers if r.part != "dense"])


def _empty(report):
    from dataclasses import replace
    return replace(report, layers=[], stages=[])


NAN = float("nan")


def _plots():
    from cspnet_lab.lab import plots
    return plots


@pytest.mark.parametrize("call, error, match", [
    (lambda p: p.channels_per_layer(None), TypeError, "report must be a CostReport"),
    (lambda p: p.channels_per_layer({"macs": 1}), TypeError, "report must be a CostReport"),
    (lambda p: p.channels_per_layer(_empty(_report())), ValueError, "report holds no layers"),
    (lambda p: p.channels_per_layer(_no_dense(_report())), ValueError, "report has no dense layers"),
    (lambda p: p.channels_per_layer(_report(), ax="left"), TypeError, "ax must be a matplotlib Axes"),
    (lambda p: p.channels_per_layer(_report(), label=3), TypeError, "title must be a str"),
    (lambda p: p.macs_per_layer(_empty(_report())), ValueError, "report holds no layers"),
    (lambda p: p.macs_per_layer(_no_dense(_report())), ValueError, "report has no dense layers"),
    (lambda p: p.stage_costs({"a": None}), TypeError, r"reports\['a'\] must be a CostReport"),
    (lambda p: p.stage_costs({"a": _empty(_report())}), ValueError, r"reports\['a'\] holds no layers"),
    (lambda p: p.stage_costs({"a": _report()}, metric="flops"), ValueError, "metric must be 'macs' or 'params'"),
    (lambda p: p.stage_costs([_report()]), ValueError, "reports must map"),
    (lambda p: p.stage_diagram(None), TypeError, "plan must be a StagePlan"),
    (lambda p: p.stage_diagram(_report().stages[0], scale=NAN), ValueError, "scale must be a finite number"),
    (lambda p: p.stage_diagram(_report().stages[0], scale=0), ValueError, "scale must be a finite number > 0"),
    (lambda p: p.stage_diagram(_report().stages[0], scale=-5), ValueError, "scale must be a finite number > 0"),
    (lambda p: p.stage_diagram(_report().stages[0], scale="900"), ValueError, "scale must be a finite number"),
    (lambda p: p.dataflow_diagram("stage 1"), TypeError, "plan must be a StagePlan"),
    (lambda p: p.dataflow_diagram(_report().stages[0], title=["x"]), TypeError, "title must be a str"),
    (lambda p: p.overlap_intervals({}, [0, 10]), ValueError, "series must map at least one model"),
    (lambda p: p.overlap_intervals({"a": []}, []), ValueError, "steps must be a non-empty sequence"),
    (lambda p: p.overlap_intervals({"a": [(NAN, NAN, NAN)]}, [0]), ValueError,
     r"series\['a'\]\[0\] mean must be a finite number, got nan"),
    (lambda p: p.overlap_intervals({"a": [(0.5, 0.4, float("inf"))]}, [0]), ValueError, r"high must be a finite"),
    (lambda p: p.overlap_intervals({"a": [(0.5, 0.4, 0.6)]}, [0, 10]), ValueError,
     r"series\['a'\] must hold one \(mean, low, high\) per step \(2\)"),
    (lambda p: p.overlap_intervals({"a": [0.5]}, [0]), ValueError, r"series\['a'\]\[0\] must be a \(mean, low"),
    (lambda p: p.overlap_intervals({"a": [(0.5, 0.4, 0.6)]}, [NAN]), ValueError, r"steps\[0\] must be a finite"),
    (lambda p: p.overlap_intervals({"a": [(0.5, 0.4, 0.6)]}, "0"), ValueError, "steps must be a non-empty"),
])
def test_figure_functions_refuse_empty_or_nan_data_before_drawing(call, error, match):
    # what wrong code makes this fail: a blank figure returned, or StopIteration/KeyError/AttributeError
    # from inside matplotlib; and no half-made figure is left open either way
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    with pytest.raises(error, match=match):
        call(_plots())
    assert plt.get_fignums() == before


def test_figure_functions_still_draw_their_data():
    import matplotlib.pyplot as plt
    p, report = _plots(), _report()
    for fig in (p.channels_per_layer(report), p.macs_per_layer(report), p.stage_costs({"a": report}),
                p.stage_diagram(report.stages[0]), p.stage_diagram(report.stages[0], scale=100),
                p.dataflow_diagram(report.stages[0]),
                p.overlap_intervals({"a": [(0.5, 0.4, 0.6), (0.6, 0.5, 0.7)]}, [0, 10])):
        assert any(ax.has_data() or ax.texts for ax in fig.axes)
        plt.close(fig)


def _explore():
    from cspnet_lab.lab import explore
    return explore


@pytest.mark.parametrize("call, error, match", [
    (lambda e: e.split_compute(part_ratio="abc"), ValueError, r"part_ratio must be a number in \(0, 1\]"),
    (lambda e: e.split_compute(part_ratio=None), ValueError, r"part_ratio must be a number in \(0, 1\]"),
    (lambda e: e.split_compute(part_ratio=NAN), ValueError, r"part_ratio must be a number in \(0, 1\]"),
    (lambda e: e.split_compute(part_ratio=0.0), ValueError, r"part_ratio must be in \(0, 1\]"),
    (lambda e: e.fusion_compute(fusion="middle"), ValueError, "fusion must be one of 'csp', 'first', 'last'"),
    (lambda e: e.fusion_compute(part_ratio=NAN), ValueError, r"part_ratio must be a number in \(0, 1\]"),
    (lambda e: e.fusion_compute(part_ratio="0.5"), ValueError, r"part_ratio must be a number in \(0, 1\]"),
    (lambda e: e.fusion_compute(depth="999"), ValueError, "depth must be one of 121, 161, 169, 201, 264"),
    (lambda e: e.growth_compute(depth=None), ValueError, "depth must be one of"),
    (lambda e: e.growth_compute(depth=True), ValueError, "depth must be one of"),
    (lambda e: e.growth_compute(growth_rate=0), ValueError, "growth_rate must be a positive integer"),
    (lambda e: e.split_explorer.frame(stages=2), ValueError,
     r"has no setting 'stages'; its settings are 'part_ratio', 'growth_rate', 'stage'"),
    (lambda e: e.Control("a", ()), ValueError, "grid must be a non-empty tuple"),
    (lambda e: e.Control("a", [1, 2]), ValueError, "grid must be a non-empty tuple"),
    (lambda e: e.Control("a", (1, 2), default=5), ValueError, "default 5 is not in its grid"),
    (lambda e: e.Control("a b", (1, 2)), ValueError, "Control name must be an argument name"),
])
def test_explorers_refuse_out_of_range_and_empty_settings_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call(_explore())


def test_growth_explorer_takes_the_depth_as_a_number_too():
    assert _explore().growth_compute(12, 121)["depth"] == "121"


def _toy_explorer(draw_nothing=False):
    import matplotlib.pyplot as plt
    e = _explore()

    def compute(a=1):
        if a == 3:
            raise TypeError("a=3 is not a setting this toy takes")
        return {"a": a}

    def draw(r):
        fig, ax = plt.subplots(figsize=(1, 1))
        if not draw_nothing:
            ax.bar([0], [r["a"]])
        return fig
    return e.Explorer("toy", [e.Control("a", (1, 2), (1, 4, 1), 1)], compute, draw)


def test_an_explorer_that_draws_nothing_says_so_instead_of_a_blank_frame():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    with pytest.raises(ValueError, match=r"'toy' drew nothing for \{'a': 1\}"):
        _toy_explorer(draw_nothing=True).frame(a=1)
    with pytest.raises(ValueError, match="drew nothing"):
        _toy_explorer(draw_nothing=True).static_html(dpi=10)
    assert plt.get_fignums() == before                                # the blank figure was closed


def test_a_live_widget_shows_one_line_for_a_setting_it_cannot_draw(capsys):
    # old code caught ValueError only: a TypeError escaped the slider's callback as a traceback
    box = _toy_explorer().live()
    slider = box.children[0].children[0]
    capsys.readouterr()
    slider.value = 3
    printed = capsys.readouterr().out
    assert "TypeError: a=3 is not a setting this toy takes" in printed and "Traceback" not in printed
    slider.value = 2                                                   # and it goes on drawing

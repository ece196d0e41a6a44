"""Training: resumable without losing or miscounting epochs, an output folder that is never silently
replaced or shared, and N processes train what one process trains.

Most tests train a tiny model on a tiny synthetic set (96 training images of 1x8x8, 3 steps an epoch)
so that the semantics, not the arithmetic, take the time.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from cspnet_lab import _io
from cspnet_lab.train import loop as tr
from conftest import ROOT

TINY = "densenet_cifar:block_config=(2,2,2),growth_rate=4"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_sets(n_train=96, n_val=32, dtype=torch.float32, labels=10):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_val, 1, 8, 8, generator=gen).to(dtype)
    y = torch.randint(0, labels, (n_train + n_val,), generator=gen)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


@pytest.fixture
def tiny(monkeypatch):
    """Replace the dataset by the tiny synthetic one; returns a setter for other shapes and dtypes."""
    def use(**kw):
        monkeypatch.setattr(tr, "load_dataset", lambda name, **_: _tiny_sets(**kw))
    use()
    return use


def _cfg(out, **kw):
    base = dict(model=TINY, dataset="digits", image_size=8, epochs=3, batch_size=32,
                out=None if out is None else str(out), progress=False)
    base.update(kw)
    return tr.TrainConfig(**base)


def _weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def _same_weights(a, b):
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def _without_seconds(epochs):
    return [{k: v for k, v in e.items() if k != "train_seconds"} for e in epochs]


def test_history_and_checkpoint_every_epoch(tmp_path, tiny):
    history = tr.train(_cfg(tmp_path, epochs=2))
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0, 1] == [e["epoch"] for e in history["epochs"]]
    for e in saved["epochs"]:
        assert 0 <= e["val_accuracy"] <= 1 and e["train_seconds"] > 0 and e["steps"] > 0
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)    # loads with weights_only=True
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 * (96 // 32) and ckpt["partial"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.json"]  # no tmp, no lock


def test_interrupted_run_resumes_without_losing_finished_epochs(tmp_path, monkeypatch, tiny):
    straight = tmp_path / "straight"
    tr.train(_cfg(straight))
    # Interrupt the same run at the end of its third epoch, before that epoch is saved.
    interrupted = tmp_path / "interrupted"
    calls = {"n": 0}
    real_evaluate = tr.evaluate

    def evaluate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)
    monkeypatch.setattr(tr, "evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        tr.train(_cfg(interrupted))
    monkeypatch.setattr(tr, "evaluate", real_evaluate)
    kept = json.loads((interrupted / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in kept] == [0, 1]
    assert not (interrupted / tr.LOCK_NAME).exists()                   # the lock went with the exception
    resumed = tr.train(_cfg(interrupted, resume=True))
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2]
    assert resumed["epochs"][:2] == kept                               # finished epochs are not redone
    _same_weights(straight, interrupted)                               # same model as the uninterrupted run


def test_a_stop_inside_an_epoch_is_not_counted_as_a_finished_epoch(tmp_path, tiny):
    straight = tmp_path / "straight"
    full = tr.train(_cfg(straight, epochs=2))
    stopped = tmp_path / "stopped"
    first = tr.train(_cfg(stopped, epochs=2, max_steps=4))             # 3 steps an epoch: 1 into epoch 2
    saved = json.loads((stopped / "history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0]                # only the finished epoch
    assert saved["stopped"]["epoch"] == 1 and saved["stopped"]["batches_done"] == 1
    assert first["stopped"]["steps"] == 4
    ckpt = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["partial"]["batches"] == 1
    resumed = tr.train(_cfg(stopped, epochs=2, resume=True))
    assert "stopped" not in resumed
    assert _without_seconds(resumed["epochs"]) == _without_seconds(full["epochs"])   # same losses, same lr
    _same_weights(straight, stopped)
    assert [s["start_step"] for s in resumed["segments"]] == [0, 4]


def test_resuming_a_stopped_run_with_the_same_max_steps_does_nothing(tmp_path, tiny):
    tr.train(_cfg(tmp_path, max_steps=2))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    history = tr.train(_cfg(tmp_path, max_steps=2, resume=True))       # max_steps counts the whole run
    assert history["stopped"]["steps"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_global_batches_are_seeded_full_and_disjoint():
    batches = tr.global_batches(100, 32, seed=3, epoch=1)
    assert [len(b) for b in batches] == [32, 32, 32]
    flat = torch.cat(batches)
    assert len(set(flat.tolist())) == 96
    assert all(torch.equal(x, y) for x, y in zip(batches, tr.global_batches(100, 32, 3, 1)))
    assert not torch.equal(batches[0], tr.global_batches(100, 32, 3, 2)[0])


@pytest.mark.slow
def test_two_processes_train_the_same_model_as_one(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    args = ["-m", "cspnet_lab", "train", "--model", TINY, "--image-size", "8", "--epochs", "1", "--max-steps", "3",
            "--bn-eval", "--no-progress", "--batch-size", "64"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", *args, "--out", str(tmp_path / "ddp")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "(2 process(es))" in ddp.stdout
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    _same_weights(tmp_path / "ddp", tmp_path / "one")
    a = _weights(tmp_path / "ddp")
    # and the three steps really moved the weights away from the seeded initialisation
    torch.manual_seed(0)
    init = tr.build_model(tr.TrainConfig(model=TINY), in_channels=1, num_classes=10).state_dict()
    assert not torch.allclose(a["classifier.weight"], init["classifier.weight"])


# ----------------------------------------------------------------------------- the output folder

def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_finished_run_is_never_overwritten_unless_asked(tmp_path, tiny):
    tr.train(_cfg(tmp_path, epochs=1))
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=r"already holds a training run \(checkpoint.pt, history.json\); pass "
                                         r"resume=True \(--resume\) .* overwrite=True \(--overwrite\)"):
        tr.train(_cfg(tmp_path, epochs=1, lr=0.05))
    assert _files(tmp_path) == before                                  # byte for byte
    (tmp_path / "checkpoint.pt").unlink()                              # a history alone is a run too
    with pytest.raises(ValueError, match=r"already holds a training run \(history.json\)"):
        tr.train(_cfg(tmp_path, epochs=1))
    tr.train(_cfg(tmp_path, epochs=1, lr=0.05, overwrite=True))
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["config"]["lr"] == 0.05 and len(saved["epochs"]) == 1


def test_overwrite_keeps_the_old_run_until_the_new_one_can_start(tmp_path, tiny):
    tr.train(_cfg(tmp_path, epochs=1))
    before = _files(tmp_path)
    tiny(n_train=16)                                                   # the new run fails before training
    with pytest.raises(ValueError, match="batch_size 32 is larger than the training set"):
        tr.train(_cfg(tmp_path, epochs=1, overwrite=True))
    assert _files(tmp_path) == before


def test_resume_without_a_checkpoint_is_an_error_not_a_restart(tmp_path, tiny):
    with pytest.raises(ValueError, match=r"resume=True but .*checkpoint.pt does not exist"):
        tr.train(_cfg(tmp_path / "new", resume=True))
    tr.train(_cfg(tmp_path, epochs=1))
    (tmp_path / "checkpoint.pt").unlink()
    history = (tmp_path / "history.json").read_bytes()
    with pytest.raises(ValueError, match="nothing to resume"):
        tr.train(_cfg(tmp_path, epochs=1, resume=True))
    assert (tmp_path / "history.json").read_bytes() == history


def test_a_folder_in_use_is_refused(tmp_path, tiny):
    tr.train(_cfg(tmp_path, epochs=2, max_steps=3))                    # one of two epochs done
    before = _files(tmp_path)
    with _io.FolderLock(tmp_path, tr.LOCK_NAME, what="training run"):   # another run holds the folder
        for kw in (dict(resume=True, epochs=2), dict(overwrite=True), {}):
            with pytest.raises(ValueError, match=rf"{tmp_path} is in use by another training run \(pid {os.getpid()}"):
                tr.train(_cfg(tmp_path, **kw))
        assert {k: v for k, v in _files(tmp_path).items() if k != tr.LOCK_NAME} == before
    tr.train(_cfg(tmp_path, epochs=2, resume=True))                    # released: the run continues


def test_the_lock_is_the_kernels_flock(tmp_path, tiny):
    fcntl = pytest.importorskip("fcntl")
    fd = os.open(tmp_path / tr.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)                  # as another process would
        with pytest.raises(ValueError, match="is in use by another training run"):
            tr.train(_cfg(tmp_path, epochs=1))
    finally:
        os.close(fd)
    assert not (tmp_path / "history.json").exists()


def test_a_stale_lock_file_does_not_block(tmp_path, tiny):
    (tmp_path / tr.LOCK_NAME).write_text("pid 999999 on a-machine-that-crashed\n")   # no flock held
    tr.train(_cfg(tmp_path, epochs=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.json"]


def test_out_that_is_a_file(tmp_path, tiny):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"out .*f is a file, not a folder"):
        tr.train(_cfg(tmp_path / "f"))
    with pytest.raises(ValueError, match=r"out folder .*f.*sub cannot be created or written"):
        tr.train(_cfg(tmp_path / "f" / "sub"))


# ----------------------------------------------------------------------------- resume semantics

@pytest.mark.parametrize("change, message", [
    (dict(lr=0.05), "lr from 0.1 to 0.05"),
    (dict(epochs=3), r"epochs from 2 to 3 \(epochs can grow on resume only with schedule='none'\)"),
    (dict(schedule="step"), "schedule from 'cosine' to 'step'"),
    (dict(batch_size=16), "batch_size from 32 to 16"),
    (dict(seed=1), "seed from 0 to 1"),
    (dict(momentum=0.5), "momentum from 0.9 to 0.5"),
    (dict(optimizer="adamw"), "optimizer from 'sgd' to 'adamw'"),
    (dict(model="densenet_cifar:block_config=(2,2,2),growth_rate=6"), "model from"),
    (dict(bn_eval=True), "bn_eval from False to True"),
])
def test_resume_refuses_a_changed_setting(tmp_path, tiny, change, message):
    tr.train(_cfg(tmp_path, epochs=2, max_steps=4))
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=rf"a resumed run keeps its settings, but this call changes {message}"):
        tr.train(_cfg(tmp_path, resume=True, **{"epochs": 2, **change}))
    assert _files(tmp_path) == before


def test_resume_applies_more_epochs_without_a_schedule(tmp_path, tiny):
    straight = tmp_path / "straight"
    full = tr.train(_cfg(straight, epochs=3, schedule="none"))
    grown = tmp_path / "grown"
    tr.train(_cfg(grown, epochs=2, schedule="none"))
    history = tr.train(_cfg(grown, epochs=3, schedule="none", resume=True))
    assert _without_seconds(history["epochs"]) == _without_seconds(full["epochs"])
    _same_weights(straight, grown)
    assert json.loads((grown / "history.json").read_text())["config"]["epochs"] == 3
    with pytest.raises(ValueError, match="epochs=2 is fewer than the 3 epochs"):
        tr.train(_cfg(grown, epochs=2, schedule="none", resume=True))


def test_resuming_a_finished_run_writes_nothing(tmp_path, tiny):
    tr.train(_cfg(tmp_path, epochs=1))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    history = tr.train(_cfg(tmp_path, epochs=1, resume=True, device="cpu", max_steps=100))
    assert [e["epoch"] for e in history["epochs"]] == [0]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


# ----------------------------------------------------------------------------- broken checkpoints

def _break(path, how, tmp_path):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif how == "a directory":
        path.unlink()
        path.mkdir()
    elif how == "malicious pickle":
        class Evil:
            def __reduce__(self):
                return os.system, (f"touch {tmp_path / 'pwned'}",)
        torch.save({"model": Evil()}, path)
    elif how == "plain tensor":
        torch.save(torch.zeros(3), path)
    elif how == "missing keys":
        ckpt = torch.load(path, weights_only=True)
        del ckpt["optimizer"]
        torch.save(ckpt, path)
    elif how == "bad stop position":
        ckpt = torch.load(path, weights_only=True)
        ckpt["partial"] = {"epoch": "one"}
        torch.save(ckpt, path)
    elif how == "bad rng":
        ckpt = torch.load(path, weights_only=True)
        ckpt["rng"] = torch.zeros(3)
        torch.save(ckpt, path)
    elif how == "bad history":
        ckpt = torch.load(path, weights_only=True)
        ckpt["history"] = "{not json"
        torch.save(ckpt, path)
    elif how == "another model's weights":
        ckpt = torch.load(path, weights_only=True)
        ckpt["model"] = tr.build_model(_cfg(None, model="densenet_cifar:block_config=(2,2),growth_rate=6"),
                                       1, 10).state_dict()
        torch.save(ckpt, path)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how, message", [
    ("truncated", "is corrupt or truncated"),
    ("empty", "is corrupt or truncated"),
    ("random bytes", "is corrupt or truncated"),
    ("a directory", "is corrupt or truncated"),
    ("malicious pickle", "holds objects other than tensors and plain data, and was refused unloaded"),
    ("plain tensor", "is not a cspnet_lab training checkpoint"),
    ("missing keys", r"is not a cspnet_lab training checkpoint \(no valid optimizer\)"),
    ("bad history", "holds an unreadable history"),
    ("bad stop position", "its epoch, step or stop position is invalid"),
    ("bad rng", r"invalid random-number state \(rng\)"),
    ("another model's weights",
     r"holds the weights of another model than .*: \d+ missing \(first: .*\d+ of another shape"),
])
def test_broken_checkpoints_are_one_clear_line(tmp_path, tiny, how, message):
    out = tmp_path / "run"
    tr.train(_cfg(out, epochs=1, schedule="none"))
    _break(out / "checkpoint.pt", how, tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        tr.train(_cfg(out, epochs=2, schedule="none", resume=True))
    assert "\n" not in str(info.value) and "checkpoint.pt" in str(info.value)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- bad settings and data

@pytest.mark.parametrize("kw, message", [
    (dict(optimizer="lbfgs"), "optimizer must be one of 'sgd', 'adamw'"),
    (dict(schedule="linear"), "schedule must be one of 'cosine', 'step', 'none'"),
    (dict(batch_size=0), r"batch_size must be a positive integer \(>= 1\)"),
    (dict(batch_size=32.0), r"batch_size must be a positive integer"),
    (dict(epochs=True), r"epochs must be a positive integer"),
    (dict(lr=-1.0), r"lr must be a finite number in \(0, inf\)"),
    (dict(lr=float("nan")), r"lr must be a number in \(0, inf\)"),
    (dict(lr=float("inf")), r"lr must be a finite number in \(0, inf\)"),
    (dict(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    (dict(weight_decay=-1e-4), r"weight_decay must be a finite number in \[0, inf\)"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
    (dict(seed=2**40), r"seed must be an integer in \[0, 2\*\*32\)"),
    (dict(max_steps=0), r"max_steps must be a positive integer"),
    (dict(resume="false"), "resume must be True or False, got 'false'"),
    (dict(bn_eval=1), "bn_eval must be True or False, got 1"),
    (dict(overwrite="yes"), "overwrite must be True or False"),
    (dict(resume=True, overwrite=True), "resume=True and overwrite=True contradict each other"),
    (dict(out=""), "out must be a non-empty path or None"),
    (dict(device="gpu"), "device must be one of 'cpu', 'cuda' or 'cuda:N'"),
    (dict(device="cuda:99"), "cuda:99"),
    (dict(device=0), "device must be one of"),
    (dict(dataset="imagenet"), "dataset must be one of 'digits', 'cifar10'"),
    (dict(model="densenet_cifar:growth_rate=0"), "growth_rate must be a positive integer"),
    (dict(model="nosuch"), "unknown model name 'nosuch'"),
    (dict(model=""), "model spec must be a non-empty string"),
    (dict(model=TINY + ",num_classes=5"), r"sets num_classes=5 but dataset 'digits' has 10"),
    (dict(model=TINY + ",in_channels=3"), r"sets in_channels=3 but dataset 'digits' has 1"),
])
def test_bad_training_settings(tmp_path, kw, message):
    kw.setdefault("out", None if kw.get("resume") and not kw.get("overwrite") else str(tmp_path))
    with pytest.raises(ValueError, match=message):
        tr.train(_cfg(**kw))
    assert list(tmp_path.iterdir()) == []                              # refused before touching the folder


def test_resume_needs_out():
    with pytest.raises(ValueError, match="resume=True needs out"):
        tr.train(_cfg(None, resume=True))


@pytest.mark.parametrize("data, message", [
    (dict(n_train=16), r"batch_size 32 is larger than the training set \(16 items of digits\)"),
    (dict(dtype=torch.uint8), "training set images must be a floating-point tensor .* got dtype torch.uint8"),
    (dict(dtype=torch.int64), "training set images must be a floating-point tensor"),
    (dict(labels=12), r"training set labels must be in 0..9, got 0..11"),
])
def test_data_that_does_not_fit(tmp_path, tiny, data, message):
    tiny(**data)
    with pytest.raises(ValueError, match=message):
        tr.train(_cfg(tmp_path))
    assert not (tmp_path / "history.json").exists()

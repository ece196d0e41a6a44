"""Training: resumable without losing finished epochs, and N processes train what one process trains."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from cspnet_lab import train as tr
from conftest import ROOT

TINY = "densenet_cifar:block_config=(2,2,2),growth_rate=6"


def _cfg(out, **kw):
    base = dict(model=TINY, dataset="digits", image_size=8, epochs=3, batch_size=64,
                out=None if out is None else str(out), progress=False)
    base.update(kw)
    return tr.TrainConfig(**base)


def _weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def test_history_and_checkpoint_every_epoch(tmp_path):
    history = tr.train(_cfg(tmp_path, epochs=2))
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [0, 1] == [e["epoch"] for e in history["epochs"]]
    for e in saved["epochs"]:
        assert 0 <= e["val_accuracy"] <= 1 and e["train_seconds"] > 0 and e["steps"] > 0
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)    # loads with weights_only=True
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 * (1438 // 64)
    assert not list(tmp_path.glob("*.tmp"))


def test_interrupted_run_resumes_without_losing_finished_epochs(tmp_path, monkeypatch):
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
    resumed = tr.train(_cfg(interrupted, resume=True))
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2]
    assert resumed["epochs"][:2] == kept                               # finished epochs are not redone
    a, b = _weights(straight), _weights(interrupted)
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)                  # same model as the uninterrupted run


def test_global_batches_are_seeded_full_and_disjoint():
    batches = tr.global_batches(100, 32, seed=3, epoch=1)
    assert [len(b) for b in batches] == [32, 32, 32]
    flat = torch.cat(batches)
    assert len(set(flat.tolist())) == 96
    assert all(torch.equal(x, y) for x, y in zip(batches, tr.global_batches(100, 32, 3, 1)))
    assert not torch.equal(batches[0], tr.global_batches(100, 32, 3, 2)[0])


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
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # and the three steps really moved the weights away from the seeded initialisation
    torch.manual_seed(0)
    init = tr.build_model(tr.TrainConfig(model=TINY), in_channels=1, num_classes=10).state_dict()
    assert not torch.allclose(a["classifier.weight"], init["classifier.weight"])


@pytest.mark.parametrize("kw, message", [
    (dict(optimizer="lbfgs"), "optimizer must be one of sgd, adamw"),
    (dict(schedule="linear"), "schedule must be one of cosine, step, none"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(resume=True), "resume=True needs out"),
    (dict(dataset="imagenet"), "unknown dataset 'imagenet'"),
    (dict(model="densenet_cifar:growth_rate=0"), "growth_rate must be a positive integer"),
])
def test_bad_training_settings(tmp_path, kw, message):
    out = None if kw.get("resume") else tmp_path
    with pytest.raises(ValueError, match=message):
        tr.train(_cfg(out, **kw))

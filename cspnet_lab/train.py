"""A plain PyTorch training loop, on one process or many (``torchrun``), resumable, with JSON history.

    python -m cspnet_lab train --model cspdensenet_cifar --dataset digits --epochs 5 --out runs/csp
    torchrun --nproc_per_node=2 -m cspnet_lab train --model densenet_cifar --dataset digits --out runs/ddp

Every epoch ends with validation, the history written to ``<out>/history.json`` and a checkpoint written
to ``<out>/checkpoint.pt`` (both atomically: a temporary file, then a rename). ``resume=True`` continues
from the checkpoint (loaded with ``weights_only=True``) without losing the finished epochs.

Data order is fixed by the seed: epoch e shuffles the training set with seed + e and cuts it into global
batches of ``batch_size``; with N processes, rank r trains on items r, r + N, ... of each global batch and
DistributedDataParallel averages the gradients. So N processes see exactly the global batches one process
sees. (Batch-norm statistics in train mode are computed per process; ``bn_eval=True`` freezes them, and
then N processes train exactly the model one process trains, up to float rounding.)
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn

from .bench import ModelSpec
from .data import load_dataset

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "none")


@dataclass
class TrainConfig:
    model: str = "densenet_cifar"          # a preset, optionally name:key=value,...
    dataset: str = "digits"
    image_size: int = 16                   # digits only: resized to this
    epochs: int = 5
    batch_size: int = 64                   # global: split across processes
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    seed: int = 0
    out: str | None = None                 # folder for history.json and checkpoint.pt
    resume: bool = False
    max_steps: int | None = None           # stop after this many optimizer steps (tests, quick looks)
    bn_eval: bool = False                  # freeze batch-norm statistics (eval mode) while training
    device: str = "cpu"
    progress: bool = True                  # tqdm bar (rank 0 only)
    data_root: str | None = None           # CIFAR-10 cache folder

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps!r}")
        if self.resume and not self.out:
            raise ValueError("resume=True needs out (the folder holding checkpoint.pt)")


def _atomic_write(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Epoch ``epoch``'s global batches: a seeded shuffle of range(n) cut into full batches (the last,
    partial one is dropped so every process gets the same number of items)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_model(config: TrainConfig, in_channels: int, num_classes: int) -> nn.Module:
    spec = ModelSpec.parse(config.model)
    overrides = {"in_channels": in_channels, "num_classes": num_classes, **dict(spec.overrides)}
    return ModelSpec(spec.name, tuple(overrides.items())).build()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    model.eval()
    loss = correct = 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i:i + batch_size])
            loss += nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    return {"loss": loss / len(x), "accuracy": correct / len(x)}


def train(config: TrainConfig) -> dict:
    """Train, validate every epoch, write history and checkpoints; return the history."""
    config.validate()
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes ({world})")
    device = torch.device(config.device)
    kwargs = {"size": config.image_size} if config.dataset == "digits" else {"root": config.data_root}
    train_set, val_set = load_dataset(config.dataset, **kwargs)
    xt, yt = train_set.tensors
    xv, yv = val_set.tensors
    num_classes = int(yt.max()) + 1
    torch.manual_seed(config.seed)
    model = build_model(config, xt.shape[1], num_classes).to(device)
    params = list(model.parameters())
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(xt) // config.batch_size
    if config.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    elif config.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, config.epochs // 3) * steps_per_epoch, gamma=0.1)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)

    out = pathlib.Path(config.out) if config.out else None
    history = {"config": asdict(config), "world_size": world, "epochs": []}
    start_epoch, step = 0, 0
    if config.resume and out and (out / "checkpoint.pt").exists():
        ckpt = torch.load(out / "checkpoint.pt", map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch, step = ckpt["epoch"] + 1, ckpt["step"]
        history["epochs"] = json.loads(ckpt["history"])["epochs"]

    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    bar = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=(config.epochs - start_epoch) * steps_per_epoch, desc=config.model, leave=False)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        net.train()
        if config.bn_eval:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        running, seen = 0.0, 0
        for batch in global_batches(len(xt), config.batch_size, config.seed, epoch):
            idx = batch[rank::world]
            x, y = xt[idx].to(device), yt[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
            if config.max_steps and step >= config.max_steps:
                break
        train_seconds = time.perf_counter() - t0
        metrics = evaluate(model, xv.to(device), yv.to(device))
        record = {"epoch": epoch, "steps": step, "train_loss": running / max(seen, 1),
                  "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"],
                  "train_seconds": train_seconds, "lr": sched.get_last_lr()[0]}
        history["epochs"].append(record)
        if rank == 0 and out:
            _atomic_write(out / "history.json", lambda p: pathlib.Path(p).write_text(json.dumps(history, indent=1)))
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "step": step, "history": json.dumps(history)}
            _atomic_write(out / "checkpoint.pt", lambda p: torch.save(state, p))
        if config.max_steps and step >= config.max_steps:
            break
    if bar is not None:
        bar.close()
    history["model_state"] = model.state_dict() if not out else None
    return history


def main_from_args(args) -> dict:
    """Entry point of ``python -m cspnet_lab train`` (also under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None})
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if config.device == "cuda" else "gloo"
        dist.init_process_group(backend)
        if config.device == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            config.device = f"cuda:{local}"
    try:
        history = train(config)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        last = history["epochs"][-1]
        print(f"{config.model}: epoch {last['epoch'] + 1}/{config.epochs}, val accuracy {last['val_accuracy']:.3f}, "
              f"val loss {last['val_loss']:.4f} ({history['world_size']} process(es))")
    return history

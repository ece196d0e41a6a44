"""A plain PyTorch training loop, on one process or many (``torchrun``), resumable, with JSON history.

    python -m cspnet_lab train --model cspdensenet_cifar --dataset digits --epochs 5 --out runs/csp
    torchrun --nproc_per_node=2 -m cspnet_lab train --model densenet_cifar --dataset digits --out runs/ddp

Every epoch ends with validation, then ``<out>/checkpoint.pt`` and ``<out>/history.json`` are written
(each atomically and durably, :mod:`cspnet_lab._io`). The output folder is guarded:

* a folder that holds a run (either file) is never replaced unless ``overwrite=True`` (``--overwrite``);
  the old files are deleted only once the new run has loaded its data and built its model;
* ``resume=True`` (``--resume``) needs ``checkpoint.pt``: a missing checkpoint is an error, not a restart;
* a folder another run is writing into is refused (``<out>/.train.lock``, a kernel ``flock`` that ends
  with its process, so a killed run leaves no stale lock).

Resuming continues the same run exactly, or refuses. Every setting that shapes the run (:data:`TRAJECTORY`:
model, data, batch size, optimizer, learning rate, schedule, seed, ...) must equal the checkpoint's; a
change is refused, because the restored optimizer and schedule would not follow it and ``history.json``
would describe a run that never happened. ``epochs`` may grow only with ``schedule="none"`` (the cosine
and step schedules are laid out over the whole run). ``max_steps``, ``device`` and ``progress`` may change.
``max_steps`` counts every optimizer step of the run, across resumes. A stop inside an epoch (``max_steps``)
is saved as that epoch's position (batches done, loss so far); ``history["epochs"]`` lists finished epochs
only, the stop is ``history["stopped"]``, and a resume finishes the epoch from the next batch. The
random-number state (dropout) is saved and restored too. Each call's start is in ``history["segments"]``.

Data order is fixed by the seed: epoch e shuffles the training set with seed + e and cuts it into global
batches of ``batch_size``; the last, partial batch is dropped (so every process gets an equal share), and a
``batch_size`` larger than the training set is refused. With N processes, rank r trains on items r, r + N,
... of each global batch and DistributedDataParallel averages the gradients. So N processes see exactly
the global batches one process sees. (Batch-norm statistics in train mode are computed per process;
``bn_eval=True`` freezes them, and then N processes train exactly the model one process trains, up to
float rounding.)
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn

from .. import _checks
from .._io import FolderLock, atomic_save_torch, atomic_write_text
from .data import CHANNELS, DATASETS, NUM_CLASSES, load_dataset
from ..models.registry import ModelSpec

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "none")
RUN_FILES = ("checkpoint.pt", "history.json")
LOCK_NAME = ".train.lock"
# The settings that shape a run: a resumed run must keep them (``epochs`` may grow with schedule="none").
TRAJECTORY = ("model", "dataset", "image_size", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
              "schedule", "seed", "bn_eval", "epochs")


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
    resume: bool = False                   # continue the run in out (its checkpoint must exist)
    overwrite: bool = False                # replace a run already in out
    max_steps: int | None = None           # stop after this many optimizer steps in all (tests, quick looks)
    bn_eval: bool = False                  # freeze batch-norm statistics (eval mode) while training
    device: str = "cpu"
    progress: bool = True                  # tqdm bar (rank 0 only)
    data_root: str | None = None           # CIFAR-10 cache folder

    def validate(self) -> None:
        """ValueError naming the first bad setting and what is allowed; nothing is loaded or built."""
        spec = ModelSpec.parse(self.model)
        spec.config()                                       # unknown names, keys and values
        _checks.choice("dataset", self.dataset, DATASETS)
        _checks.positive_int("image_size", self.image_size)
        if self.dataset == "digits" and not 8 <= self.image_size <= 256:   # before any folder is claimed
            raise ValueError(f"image_size must be an integer in [8, 256] for dataset 'digits' (its images are "
                             f"8x8, resized to image_size), got {self.image_size!r}")
        _checks.positive_int("epochs", self.epochs)
        _checks.positive_int("batch_size", self.batch_size)
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        _checks.finite_real("lr", self.lr, 0.0, low_open=True)
        _checks.finite_real("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _checks.finite_real("weight_decay", self.weight_decay, 0.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0 (and < 2**32), got {self.seed!r}")
        if self.seed >= 2**32:          # not _checks.non_negative_int: its cap (2**31 - 1) is not this one
            shown = f"an integer of {len(str(self.seed))} digits" if isinstance(self.seed, int) and \
                abs(self.seed) >= 10**20 else repr(self.seed)
            raise ValueError(f"seed must be an integer in [0, 2**32), got {shown}")
        _checks.path_like("out", self.out, optional=True)
        _checks.path_like("data_root", self.data_root, optional=True)
        if self.data_root is not None and self.dataset == "digits":     # silently ignored otherwise
            raise ValueError(f"data_root={self.data_root!r} is given, but dataset 'digits' reads no folder (it "
                             "ships with scikit-learn); data_root is the CIFAR-10 cache: leave it out, or use "
                             "dataset='cifar10'")
        for name in ("resume", "overwrite", "bn_eval", "progress"):
            _checks.boolean(name, getattr(self, name))
        if self.max_steps is not None:
            _checks.positive_int("max_steps", self.max_steps)
        _checks.device("device", self.device)
        if self.resume and not self.out:
            raise ValueError("resume=True needs out (the folder holding checkpoint.pt)")
        if self.resume and self.overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other: continue the run in out, "
                             "or replace it, not both")
        given = dict(spec.overrides)
        for key, have in (("num_classes", NUM_CLASSES[self.dataset]), ("in_channels", CHANNELS[self.dataset])):
            if key in given and given[key] != have:
                raise ValueError(f"model {self.model!r} sets {key}={given[key]!r} but dataset {self.dataset!r} "
                                 f"has {have}; leave {key} out (it is set from the dataset) or set it to {have}")


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Epoch ``epoch``'s global batches: a seeded shuffle of range(n) cut into full batches (the last,
    partial one is dropped so every process gets the same number of items)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _on_rank0(rank: int, world: int, fn):
    """Run ``fn`` on rank 0 and share its ValueError with every rank, so all fail together, none hangs."""
    result, error = None, None
    if rank == 0:
        try:
            result = fn()
        except ValueError as err:
            error = err
    if world > 1:
        box = [None if error is None else str(error)]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            error = ValueError(box[0])
    if error is not None:
        raise error
    return result


def build_model(config: TrainConfig, in_channels: int, num_classes: int) -> nn.Module:
    spec = ModelSpec.parse(config.model)
    overrides = {**dict(spec.overrides), "in_channels": in_channels, "num_classes": num_classes}
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


def _claim(out: pathlib.Path, config: TrainConfig) -> FolderLock:
    """Create and lock ``out``, and check it holds what ``resume``/``overwrite`` expect."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a folder")
    if config.resume and not (out / "checkpoint.pt").exists():   # checked again under the lock
        raise ValueError(f"resume=True but {out / 'checkpoint.pt'} does not exist, so there is nothing to "
                         f"resume; run without resume to start afresh")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(out, LOCK_NAME, what="training run").acquire()
    except OSError as err:
        raise ValueError(f"out folder {out} cannot be created or written ({err.strerror or err})") from err
    try:
        held = [name for name in RUN_FILES if (out / name).exists()]
        if config.resume and not (out / "checkpoint.pt").exists():
            raise ValueError(f"resume=True but {out / 'checkpoint.pt'} does not exist, so there is nothing to "
                             f"resume; run without resume to start afresh")
        if held and not config.resume and not config.overwrite:
            raise ValueError(f"out folder {out} already holds a training run ({', '.join(held)}); pass "
                             f"resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it")
    except BaseException:
        lock.release()
        raise
    return lock


def _first_line(err: BaseException, limit: int = 160) -> str:
    return _checks.one_line(err, limit, with_type=False)


def _load_checkpoint(path: pathlib.Path, device: torch.device) -> tuple[dict, dict]:
    """The checkpoint and the history inside it; ValueError (one line) for anything unreadable."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():     # not a refused class: plain garbage
            raise ValueError(f"{path} is corrupt or truncated ({_first_line(err)}); delete it or pass "
                             f"overwrite=True to start afresh") from err
        raise ValueError(f"{path} is not a cspnet_lab checkpoint: it holds objects other than tensors and plain "
                         f"data, and was refused unloaded; delete it or pass overwrite=True") from err
    except Exception as err:
        raise ValueError(f"{path} is corrupt or truncated ({_first_line(err)}); delete it or pass "
                         f"overwrite=True to start afresh") from err
    need = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "step": int, "history": str}
    lacking = [k for k, t in need.items() if not isinstance(ckpt, dict) or not isinstance(ckpt.get(k), t)]
    if lacking:
        raise ValueError(f"{path} is not a cspnet_lab training checkpoint (no valid {', '.join(lacking)}); "
                         f"delete it or pass overwrite=True")
    partial = ckpt.get("partial")
    if ckpt["epoch"] < -1 or ckpt["step"] < 0 or (partial is not None and not (
            isinstance(partial, dict) and all(isinstance(partial.get(k), (int, float)) and partial[k] >= 0
                                              for k in ("epoch", "batches", "loss_sum", "seen", "seconds")))):
        raise ValueError(f"{path} is not a cspnet_lab training checkpoint (its epoch, step or stop position "
                         f"is invalid); delete it or pass overwrite=True")
    for key in ("rng", "cuda_rng"):
        if key in ckpt and not (isinstance(ckpt[key], torch.Tensor) and ckpt[key].dtype == torch.uint8):
            raise ValueError(f"{path} holds an invalid random-number state ({key}); delete it or pass overwrite=True")
    try:
        saved = json.loads(ckpt["history"])
        if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("epochs"), list):
            raise ValueError("no config or epochs")
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path} holds an unreadable history ({_first_line(err)}); delete it or pass "
                         f"overwrite=True") from err
    return ckpt, saved


def _check_same_run(saved: dict, config: TrainConfig, path: pathlib.Path, finished: int) -> None:
    def same(key):
        old, new = saved.get(key), getattr(config, key)
        if key == "model":
            try:
                a, b = ModelSpec.parse(old), ModelSpec.parse(new)
            except ValueError:
                return False
            return a.name == b.name and dict(a.overrides) == dict(b.overrides)
        if key == "epochs" and config.schedule == "none":
            return True
        return old == new
    changed = [f"{k} from {saved.get(k)!r} to {getattr(config, k)!r}" for k in TRAJECTORY if not same(k)]
    if changed:
        hint = " (epochs can grow on resume only with schedule='none')" if not same("epochs") else ""
        raise ValueError(f"{path}: a resumed run keeps its settings, but this call changes {'; '.join(changed)}"
                         f"{hint}; resume with the run's settings, or start a new run in another folder")
    if config.epochs < finished:
        raise ValueError(f"epochs={config.epochs} is fewer than the {finished} epochs the run in {path.parent} "
                         f"has already finished")


def _load_weights(model: nn.Module, state: dict, path: pathlib.Path, model_name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
    if missing or extra or shape:
        parts = [f"{len(v)} {what} (first: {v[0]})" for v, what in
                 ((missing, "missing"), (extra, "unexpected"), (shape, "of another shape")) if v]
        raise ValueError(f"{path} holds the weights of another model than {model_name!r}: "
                         f"{', '.join(parts)}; resume with the model that wrote it")
    model.load_state_dict(state)


def _check_split(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    _checks.floating_tensor(f"{name} images", x, ndim=4)
    if y.dtype != torch.long or y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name} labels must be int64 of shape ({len(x)},), got {y.dtype} {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name} labels must be in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")


def train(config: TrainConfig, data: tuple | None = None) -> dict:
    """Train, validate every epoch, write history and checkpoints; return the history.

    ``data``: an optional ``(train_set, val_set)`` pair of TensorDatasets used instead of loading
    ``config.dataset`` (cross-validation folds); they are checked like a loaded dataset.
    """
    config.validate()
    if data is not None and (not isinstance(data, (tuple, list)) or len(data) != 2):
        raise ValueError("data must be a (train_set, val_set) pair of TensorDatasets")
    rank, world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes ({world})")
    out = pathlib.Path(config.out) if config.out else None
    lock = _on_rank0(rank, world, lambda: _claim(out, config)) if out else None
    try:
        return _train(config, out, rank, world, data)
    finally:
        if lock is not None:
            lock.release()


def _train(config: TrainConfig, out: pathlib.Path | None, rank: int, world: int, data=None) -> dict:
    device = torch.device(config.device)
    if data is None:
        kwargs = {"size": config.image_size} if config.dataset == "digits" else {"root": config.data_root}
        data = load_dataset(config.dataset, **kwargs)
    train_set, val_set = data
    xt, yt = train_set.tensors
    xv, yv = val_set.tensors
    num_classes = NUM_CLASSES[config.dataset]
    _check_split("training set", xt, yt, num_classes)
    _check_split("validation set", xv, yv, num_classes)
    if config.batch_size > len(xt):
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({len(xt)} items of "
                         f"{config.dataset}); every step takes a full batch, so batch_size must be <= {len(xt)}")
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

    history = {"config": asdict(config), "world_size": world, "epochs": [], "segments": []}
    start_epoch, step, partial = 0, 0, None
    if config.resume:
        path = out / "checkpoint.pt"
        ckpt, saved = _load_checkpoint(path, device)
        _check_same_run(saved["config"], config, path, len(saved["epochs"]))
        _load_weights(model, ckpt["model"], path, config.model)
        try:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, RuntimeError, TypeError) as err:
            raise ValueError(f"{path} holds an optimizer or schedule state that does not fit this run "
                             f"({_first_line(err)})") from err
        for key in ("epochs", "segments", "stopped"):
            if key in saved:
                history[key] = saved[key]
        start_epoch, step, partial = ckpt["epoch"] + 1, ckpt["step"], ckpt.get("partial")
        if partial:
            start_epoch = partial["epoch"]
        if "rng" in ckpt:
            torch.set_rng_state(ckpt["rng"].cpu())
        if "cuda_rng" in ckpt and device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), device)
    elif out is not None and config.overwrite and rank == 0:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    if start_epoch >= config.epochs or (config.max_steps and step >= config.max_steps):
        if config.resume and rank == 0 and not (out / "history.json").exists():
            # killed between the checkpoint and the history (written in that order): the history is in the
            # checkpoint, so write it back, or every later run_in_folder would take this run as unfinished
            atomic_write_text(out / "history.json", json.dumps(history, indent=1))
        history["model_state"] = None
        return history                                       # nothing left to do: write nothing else
    history["segments"].append({"start_epoch": start_epoch, "start_batch": partial["batches"] if partial else 0,
                                "start_step": step, "world_size": world, "device": str(device),
                                "max_steps": config.max_steps})

    def save(epoch_done: int, partial_state: dict | None) -> None:
        if rank != 0 or out is None:
            return
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch_done, "step": step, "partial": partial_state, "history": json.dumps(history),
                 "rng": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        atomic_save_torch(out / "checkpoint.pt", state)      # the checkpoint first: history never runs ahead
        atomic_write_text(out / "history.json", json.dumps(history, indent=1))

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
        batches = global_batches(len(xt), config.batch_size, config.seed, epoch)
        first, running, seen, seconds = 0, 0.0, 0, 0.0
        if partial and partial["epoch"] == epoch:            # finish the epoch a stop left half done
            first, running, seen, seconds = partial["batches"], partial["loss_sum"], partial["seen"], partial["seconds"]
            if bar is not None:
                bar.update(first)
        stopped_at = None
        for b in range(first, len(batches)):
            if config.max_steps and step >= config.max_steps:
                stopped_at = b
                break
            idx = batches[b][rank::world]
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
        seconds += time.perf_counter() - t0
        metrics = evaluate(model, xv.to(device), yv.to(device))
        if stopped_at is not None:
            history["stopped"] = {"epoch": epoch, "batches_done": stopped_at, "batches_per_epoch": len(batches),
                                  "steps": step, "train_loss": running / max(seen, 1), "val_loss": metrics["loss"],
                                  "val_accuracy": metrics["accuracy"], "lr": sched.get_last_lr()[0]}
            save(epoch - 1, {"epoch": epoch, "batches": stopped_at, "loss_sum": running, "seen": seen,
                             "seconds": seconds})
            break
        history.pop("stopped", None)
        history["epochs"].append({"epoch": epoch, "steps": step, "train_loss": running / max(seen, 1),
                                  "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"],
                                  "train_seconds": seconds, "lr": sched.get_last_lr()[0]})
        save(epoch, None)
        if config.max_steps and step >= config.max_steps:
            break
    if bar is not None:
        bar.close()
    history["model_state"] = model.state_dict() if not out else None
    return history


def _env_int(name: str, default: int, low: int) -> int:
    """An integer environment variable (torchrun's WORLD_SIZE, RANK, LOCAL_RANK); unset or empty: ``default``.
    Anything else than an integer >= ``low`` is a ValueError naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    # ASCII digits only: int() would also take "1_0" (10) and other scripts' digits, which torchrun never writes
    value = int(text) if text.isascii() and text.isdigit() else None
    if value is None or value < low:
        raise ValueError(f"environment variable {name}={os.environ[name]!r} must be an integer >= {low} "
                         f"(torchrun sets it; unset it to train in one process)")
    return value


def distributed_env() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's variables, checked before anything runs.

    With more than one process the rendezvous variables are checked too: ``MASTER_ADDR`` (non-empty) and
    ``MASTER_PORT`` (1..65535), which torch reads without naming them when they are wrong."""
    world = _env_int("WORLD_SIZE", 1, 1)
    rank = _env_int("RANK", 0, 0)
    local = _env_int("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise ValueError(f"environment variable RANK={rank} must be < WORLD_SIZE={world} (ranks count from 0)")
    if local >= world:
        raise ValueError(f"environment variable LOCAL_RANK={local} must be < WORLD_SIZE={world}")
    if world > 1:
        if not os.environ.get("MASTER_ADDR", "").strip():
            raise ValueError(f"environment variable WORLD_SIZE={world} asks for {world} processes, but "
                             f"MASTER_ADDR is unset or empty; start the processes with torchrun, which sets it")
        port = os.environ.get("MASTER_PORT", "").strip()
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"environment variable MASTER_PORT={os.environ.get('MASTER_PORT', '')!r} must be "
                             f"a port number in 1..65535 with WORLD_SIZE={world}; torchrun sets it")
    return world, rank, local


def main_from_args(args) -> dict:
    """Entry point of ``python -m cspnet_lab train`` (also under torchrun)."""
    world, rank, local = distributed_env()     # before any training: a bad variable fails at once
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None})
    config.validate()                  # before any process group: bad settings fail alike on every rank
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if config.device == "cuda" else "gloo"
        dist.init_process_group(backend)
        if config.device == "cuda":
            torch.cuda.set_device(local)
            config.device = f"cuda:{local}"
    try:
        history = train(config)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(describe(history, config))
    return history


def describe(history: dict, config: TrainConfig) -> str:
    """One line: where the run stands (last finished epoch, or where max_steps stopped it)."""
    where = f"({history['world_size']} process(es))"
    stop = history.get("stopped")
    if stop:
        return (f"{config.model}: stopped at step {stop['steps']}, {stop['batches_done']}/{stop['batches_per_epoch']} "
                f"batches into epoch {stop['epoch'] + 1}/{config.epochs}, val accuracy {stop['val_accuracy']:.3f}, "
                f"val loss {stop['val_loss']:.4f} {where}")
    last = history["epochs"][-1]
    return (f"{config.model}: epoch {last['epoch'] + 1}/{config.epochs}, val accuracy {last['val_accuracy']:.3f}, "
            f"val loss {last['val_loss']:.4f} {where}")

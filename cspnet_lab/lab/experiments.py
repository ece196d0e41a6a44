"""Comparisons that can carry a verdict: folds, paired intervals, expected durations, resumable runs.

* :func:`kfold_indices` deals every image into one of k validation folds (seeded, stratified by label),
  so that all 1,797 digits serve as validation data once per seed; :func:`holdout_split` is fold 0 of
  the same dealing (CIFAR-10: a held-out part of the *training* set, never the test set).
* :func:`paired_interval`: a Student-t confidence interval for the mean of paired differences (same seed
  and fold for both models), optionally widened by Nadeau and Bengio's correction for folds that share
  training data. A verdict is "not distinguishable" whenever the interval contains 0.
* :func:`estimate_duration`: training FLOPs counted from the multiply-adds, divided by a throughput that
  is either measured by a short timed warm-up on the device or assumed (a T4, say, from its peak).
* :func:`run_in_folder`: a set of named runs in a folder; finished runs are read back, unfinished ones
  resume from their checkpoint, so a disconnected session loses at most one epoch.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import time
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..train import loop as _train
from .._io import atomic_write_text
from ..measure.costs import analyze
from ..train.data import standardize
from ..models.registry import ModelSpec, model_config
from ..measure.stats import PairedInterval, paired_interval, t_cdf, t_quantile  # noqa: F401 (re-exported)

# NVIDIA's T4 datasheet: 8.1 TFLOP/s peak single precision. DenseNets keep a GPU far from its peak
# (many thin convolutions, batch norms and concatenations); we assume a fifth of it while training.
T4_PEAK_FLOPS = 8.1e12
T4_UTILISATION = 0.2
# FLOPs per multiply-add, and a training step's cost in forward passes (forward, plus a backward pass
# for activations and one for weights, each about as costly as the forward).
FLOPS_PER_MAC = 2
TRAIN_PASSES = 3


# ---------------------------------------------------------------------------------------------------
# Folds and held-out splits


def kfold_indices(labels, k: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k (train, validation) index pairs; every index is in exactly one validation fold.

    Stratified: each class's indices, shuffled with ``seed``, are dealt round-robin over the folds, the
    dealing continuing from class to class, so fold sizes differ by at most one and so do each class's
    counts per fold.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {tuple(labels.shape)}")
    n = len(labels)
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f"k must be an integer in [2, {n}] (the number of labels), got {k!r}")
    gen = torch.Generator().manual_seed(seed)
    fold_of = torch.empty(n, dtype=torch.long)
    dealt = 0
    for c in torch.unique(labels):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        fold_of[idx] = (torch.arange(len(idx)) + dealt) % k
        dealt += len(idx)
    return [((fold_of != f).nonzero().flatten(), (fold_of == f).nonzero().flatten()) for f in range(k)]


def fold_datasets(x: torch.Tensor, y: torch.Tensor, train_idx, val_idx) -> tuple[TensorDataset, TensorDataset]:
    """Training and validation sets for one fold, standardised with the training part's statistics.

    Standardising is per-channel affine, so applying it to already standardised images gives exactly
    the images standardised from scratch (up to float rounding).
    """
    xt, xv = standardize(x[train_idx], x[val_idx])
    return TensorDataset(xt, y[train_idx]), TensorDataset(xv, y[val_idx])


def pooled(*sets: TensorDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of the given sets in one pair of tensors (e.g. digits' train + val)."""
    return torch.cat([s.tensors[0] for s in sets]), torch.cat([s.tensors[1] for s in sets])


def holdout_split(dataset: TensorDataset, k: int = 10, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Hold out 1/k of a training set (stratified fold 0 of :func:`kfold_indices`) for validation."""
    x, y = dataset.tensors
    train_idx, val_idx = kfold_indices(y, k, seed)[0]
    return fold_datasets(x, y, train_idx, val_idx)


# ---------------------------------------------------------------------------------------------------
# Variants and training


def fusion_variants(common: str, part_ratio: float = 0.5) -> dict[str, str]:
    """DenseNet and each fusion at ``part_ratio``, narrow and width-matched, as model specs.

    ``common``: overrides every model shares, e.g. ``"block_config=(4,4,4),growth_rate=12"``. Fusion
    first keeps DenseNet's widths in either form (concat, then DenseNet's transition), so it appears once.
    """
    tail = f",{common}" if common else ""
    specs = {"DenseNet": f"densenet_cifar:{common}" if common else "densenet_cifar"}
    for fusion in ("csp", "first", "last"):
        forms = ("matched",) if fusion == "first" else ("narrow", "matched")
        for widths in forms:
            label = f"{fusion}" if fusion == "first" else f"{fusion}, {widths}"
            specs[label] = f"cspdensenet_cifar:fusion={fusion},part_ratio={part_ratio},widths={widths}{tail}"
    return specs


def macs_per_image(spec: str, image_size: int, in_channels: int, num_classes: int = 10) -> int:
    """Forward multiply-adds of one image, counted from the model's config (no model is built)."""
    parsed = ModelSpec.parse(spec)
    cfg = model_config(parsed.name, **{"in_channels": in_channels, "num_classes": num_classes,
                                       **dict(parsed.overrides)})
    return analyze(cfg, image_size).macs


def train_on(config: _train.TrainConfig, train_set: TensorDataset, val_set: TensorDataset) -> dict:
    """``train.train(config)`` on the given training and validation sets instead of ``config.dataset``'s."""
    return _train.train(config, data=(train_set, val_set))


def final_accuracy(history: dict) -> float:
    return history["epochs"][-1]["val_accuracy"]


def cross_validate(variants: dict[str, str], folds, seeds, progress: bool = True, **config) -> dict:
    """Train every variant on every (seed, fold); return {label: [history, ...]} in (seed, fold) order.

    ``folds``: a list of (train_set, val_set); ``config``: further TrainConfig fields (epochs, lr, ...).
    Item i of every label's list comes from the same seed and fold: the pairs of :func:`paired_interval`.
    """
    jobs = [(label, seed, f) for label in variants for seed in seeds for f in range(len(folds))]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="cross-validation")
    results: dict[str, list] = {label: [] for label in variants}
    for label, seed, f in jobs:
        cfg = _train.TrainConfig(model=variants[label], seed=seed, progress=False, **config)
        history = train_on(cfg, *folds[f])
        history.pop("model_state", None)
        results[label].append(history)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


def mean_curves(histories: list[dict], key: str) -> list[float]:
    """The epoch-by-epoch mean of ``key`` (e.g. ``"val_accuracy"``) over runs of equal length."""
    if not histories:
        raise ValueError("histories must hold at least one run's history, got none")
    rows = [[e[key] for e in h["epochs"]] for h in histories]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("histories must all have the same number of epochs")
    return [sum(col) / len(col) for col in zip(*rows)]


# ---------------------------------------------------------------------------------------------------
# Expected duration


def run_flops(macs: int, n_train: int, n_val: int, epochs: int, batch_size: int) -> float:
    """FLOPs of one training run: full batches trained (3 passes), the validation set evaluated (1)."""
    from .. import _checks
    batch_size = _checks.positive_int("batch_size", batch_size)
    for name, value in (("macs", macs), ("n_train", n_train), ("n_val", n_val), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    trained = (n_train // batch_size) * batch_size
    return epochs * FLOPS_PER_MAC * macs * (TRAIN_PASSES * trained + n_val)


def measure_throughput(spec: str, image_size: int, in_channels: int, batch_size: int,
                       device: str | torch.device = "cpu", num_classes: int = 10,
                       warmup_steps: int = 2, timed_steps: int = 3) -> float:
    """Training FLOP/s reached on ``device``: a few SGD steps on random images, the first untimed."""
    if isinstance(timed_steps, bool) or not isinstance(timed_steps, int) or timed_steps < 1:
        raise ValueError(f"timed_steps must be a positive integer, got {timed_steps!r}")
    from .. import _checks
    _checks.positive_int("batch_size", batch_size)          # 0 would time nothing and return 0 FLOP/s
    device = torch.device(device)
    model = ModelSpec.parse(spec)
    model = ModelSpec(model.name, (("in_channels", in_channels), ("num_classes", num_classes),
                                   *model.overrides)).build().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, in_channels, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    model.train()
    for _ in range(warmup_steps):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(timed_steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / timed_steps
    macs = macs_per_image(spec, image_size, in_channels, num_classes)
    return FLOPS_PER_MAC * TRAIN_PASSES * macs * batch_size / seconds


@dataclass(frozen=True)
class DurationEstimate:
    runs: int
    flops: float             # all runs together
    seconds: float
    basis: str               # where the throughput came from

    def line(self) -> str:
        minutes = self.seconds / 60
        when = (f"{self.seconds:.0f} s" if minutes < 2 else f"{minutes:.0f} min" if minutes < 120
                else f"{minutes / 60:.1f} h")
        return (f"expected duration: about {when} for {self.runs} runs "
                f"({self.flops / 1e15:.2f} PFLOP of training and validation; {self.basis})")


def estimate_duration(variants: dict[str, str], seeds, *, image_size: int, in_channels: int,
                      n_train: int, n_val: int, epochs: int, batch_size: int,
                      device: str | torch.device = "cpu", flops_per_second: float | None = None,
                      timed_steps: int = 3) -> DurationEstimate:
    """Expected time of training every variant once per seed.

    FLOPs come from each model's multiply-adds (:func:`run_flops`). The throughput is measured per
    variant by a short timed warm-up on ``device`` (:func:`measure_throughput`), unless
    ``flops_per_second`` is given (e.g. ``T4_PEAK_FLOPS * T4_UTILISATION`` for a T4 one does not have).
    """
    runs = len(variants) * len(tuple(seeds))
    if runs < 1:
        raise ValueError("estimate_duration needs at least one variant and one seed")
    if flops_per_second is not None and not flops_per_second > 0:
        raise ValueError(f"flops_per_second must be > 0 or None, got {flops_per_second!r}")
    total_flops = total_seconds = 0.0
    speeds = []
    for spec in variants.values():
        flops = run_flops(macs_per_image(spec, image_size, in_channels), n_train, n_val, epochs, batch_size)
        speed = flops_per_second or measure_throughput(spec, image_size, in_channels, batch_size, device,
                                                       timed_steps=timed_steps)
        speeds.append(speed)
        total_flops += flops * runs / len(variants)
        total_seconds += flops / speed * runs / len(variants)
    if flops_per_second is not None:
        basis = f"assuming {flops_per_second / 1e12:.2f} TFLOP/s"
    else:
        basis = (f"measured by a timed warm-up on {torch.device(device).type}: "
                 f"{min(speeds) / 1e12:.3g}-{max(speeds) / 1e12:.3g} TFLOP/s")
    return DurationEstimate(runs, total_flops, total_seconds, basis)


# ---------------------------------------------------------------------------------------------------
# Runs in a folder, resumable


_RUN_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_NOT_PLAN = ("out", "resume", "overwrite", "progress", "device", "data_root", "max_steps")


def run_name(label: str, seed: int) -> str:
    """A folder-safe name for a variant's run: ``"csp, matched"``, 0 -> ``"csp-matched/seed0"``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-").lower() + f"/seed{seed}"


def _read_json(path: pathlib.Path, hint: str):
    """The JSON in ``path``; ValueError naming the file (and ``hint``: what to do) for anything unreadable."""
    if not path.is_file():
        raise ValueError(f"{path} is not a file; {hint}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err.reason} at byte {err.start}); {hint}") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be one of cspnet_lab's files; {hint}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is truncated or not valid JSON ({err.msg} at line {err.lineno}, column "
                         f"{err.colno}); {hint}") from None
    except OSError as err:
        raise ValueError(f"{path} cannot be read ({err.strerror or err}); {hint}") from None


def read_history(path) -> dict | None:
    """A run's ``history.json`` (None when there is none); ValueError naming the file when it is truncated,
    not JSON, or not a training history (a dict with a list of finished ``epochs``)."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    hint = "delete it to redo the run (from its checkpoint.pt when there is one)"
    history = _read_json(path, hint)
    epochs = history.get("epochs") if isinstance(history, dict) else None
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise ValueError(f"{path} is not a training history (no list of finished epochs); {hint}")
    return history


def run_in_folder(folder, runs: dict[str, _train.TrainConfig], train_set: TensorDataset,
                  val_set: TensorDataset, progress: bool = True) -> dict[str, dict]:
    """Train each named run into ``folder/<name>``; skip finished runs, resume unfinished ones.

    ``folder/plan.json`` records the runs' settings; a folder that holds a different plan is refused
    (name a new folder, or delete the old one) rather than mixed with it.
    """
    folder = pathlib.Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"folder {folder} exists and is not a folder")
    for name in runs:
        if not _RUN_NAME.match(name) or ".." in name.split("/"):
            raise ValueError(f"run name {name!r} must be letters, digits, '_', '.', '-' and '/' only")
    plan = {name: {k: v for k, v in asdict(cfg).items() if k not in _NOT_PLAN} for name, cfg in runs.items()}
    plan_file = folder / "plan.json"
    if plan_file.exists():
        old = _read_json(plan_file, "delete it or name another folder")
        if old != json.loads(json.dumps(plan)):
            raise ValueError(f"{folder} holds runs of a different plan; name a new folder or delete this one")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan_file, json.dumps(plan, indent=1))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(runs), desc=f"runs in {folder.name}")
    results = {}
    for name, cfg in runs.items():
        out = folder / name
        history = read_history(out / "history.json")
        if history is None or len(history["epochs"]) < cfg.epochs:
            # A checkpoint means a run to continue; without one, whatever lies there is replaced.
            resume = (out / "checkpoint.pt").exists()
            run = replace(cfg, out=str(out), resume=resume, overwrite=not resume)
            history = train_on(run, train_set, val_set)
        results[name] = history
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results

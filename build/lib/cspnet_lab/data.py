"""Datasets for the training chapters. Nothing is downloaded at import time.

* ``"digits"``: scikit-learn's bundled handwritten digits (1,797 real 8x8 greyscale images, shipped inside
  scikit-learn: no download), resized for the CIFAR-style models, with a fixed, seeded train/validation
  split. Runs anywhere, CI included.
* ``"cifar10"``: CIFAR-10 in its original "python version" format, downloaded on demand into a cache
  folder, checked against the published MD5 before it is ever opened, and read from the real files.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import tarfile
import urllib.request

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

DATASETS = ("digits", "cifar10")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"


def default_cache() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CSPNET_LAB_CACHE", pathlib.Path.home() / ".cache" / "cspnet_lab"))


def _split(x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int):
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def _standardize(train_x: torch.Tensor, *others: torch.Tensor):
    # Per-channel statistics of the training split only.
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train_x, *others)]


def digits(size: int = 16, val_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits, bilinearly resized to size x size, 1 channel, standardised."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (the images are 8x8), got {size!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(bunch.target, dtype=torch.long)
    (xt, yt), (xv, yv) = _split(x, y, val_fraction, seed)
    xt, xv = _standardize(xt, xv)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)


def _md5(path: pathlib.Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_cifar10(root: str | os.PathLike | None = None, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> pathlib.Path:
    """Make sure the verified CIFAR-10 archive is unpacked under ``root``; download it if it is missing.

    The download goes to ``<archive>.part`` and becomes the archive only once complete and matching the
    MD5; a corrupt or partial file is deleted with a clear error, never reused.
    """
    root = _cache_dir(root)
    folder = root / CIFAR10_DIR
    if (folder / "batches.meta").exists():
        return folder
    archive = root / "cifar-10-python.tar.gz"
    if not archive.exists():
        part = archive.with_suffix(archive.suffix + ".part")
        part.unlink(missing_ok=True)
        try:
            urllib.request.urlretrieve(url, part)
        except Exception as err:
            part.unlink(missing_ok=True)
            raise ValueError(f"could not download CIFAR-10 from {url}: {err}") from err
        os.replace(part, archive)
    got = _md5(archive)
    if got != md5:
        archive.unlink()
        raise ValueError(f"{archive} is corrupt or partial (MD5 {got}, expected {md5}); it was deleted, "
                         f"run again to download it afresh")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        if any(n.startswith(("/", "..")) or "/../" in n for n in names) or f"{CIFAR10_DIR}/batches.meta" not in names:
            raise ValueError(f"{archive} does not look like the CIFAR-10 python archive")
        tar.extractall(root, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(root)
    return folder


def _cache_dir(root) -> pathlib.Path:
    if root is None:
        root = default_cache()
        root.mkdir(parents=True, exist_ok=True)
        return root
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ValueError(f"cache folder {root} does not exist; create it or leave root=None for {default_cache()}")
    return root


def read_cifar10(folder: str | os.PathLike) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Read the original batches (data_batch_1..5, test_batch): uint8 images (N, 3, 32, 32) and labels."""
    folder = pathlib.Path(folder)

    def load(name):
        path = folder / name
        if not path.exists():
            raise ValueError(f"{path} is missing: not a complete CIFAR-10 folder")
        with open(path, "rb") as f:
            try:
                batch = pickle.load(f, encoding="bytes")
                data, labels = batch[b"data"], batch[b"labels"]
            except Exception as err:
                raise ValueError(f"{path} is not a CIFAR-10 batch: {err}") from err
        x = torch.as_tensor(data, dtype=torch.uint8)
        if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(labels) != x.shape[0]:
            raise ValueError(f"{path} has data of shape {tuple(x.shape)} and {len(labels)} labels; "
                             f"expected (N, 3072) and N labels")
        return x.view(-1, 3, 32, 32), torch.as_tensor(labels, dtype=torch.long)

    train = [load(f"data_batch_{i}") for i in range(1, 6)]
    test = load("test_batch")
    return (torch.cat([t[0] for t in train]), torch.cat([t[1] for t in train])), test


def cifar10(root=None, download: bool = True) -> tuple[TensorDataset, TensorDataset]:
    """CIFAR-10 train and test sets, float, standardised with the training set's per-channel statistics."""
    folder = fetch_cifar10(root) if download else _cache_dir(root) / CIFAR10_DIR
    (xt, yt), (xv, yv) = read_cifar10(folder)
    xt, xv = _standardize(xt.float() / 255.0, xv.float() / 255.0)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)


def load_dataset(name: str, **kwargs) -> tuple[TensorDataset, TensorDataset]:
    """``"digits"`` or ``"cifar10"``: (train, validation) TensorDatasets."""
    if name == "digits":
        return digits(**kwargs)
    if name == "cifar10":
        return cifar10(**kwargs)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")

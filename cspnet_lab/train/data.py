"""Datasets for the training chapters. Nothing is downloaded at import time.

* ``"digits"``: scikit-learn's bundled handwritten digits (1,797 real 8x8 greyscale images, shipped inside
  scikit-learn: no download), resized for the CIFAR-style models, with a fixed, seeded train/validation
  split. Runs anywhere, CI included.
* ``"cifar10"``: CIFAR-10 in its original "python version" format, downloaded on demand into a cache
  folder and read from the real files. What is checked, and when:

  - the download has a socket timeout (a server that accepts and never answers fails after ``timeout``
    seconds, it cannot hang) and a size limit, and goes to a temporary file that becomes the archive only
    once complete and matching the archive's published MD5;
  - only the archive's eight expected members are unpacked, as regular files, each written atomically,
    ``batches.meta`` last (its presence marks a complete folder); tar paths are never followed;
  - before any batch file is unpickled, its MD5 must match the published MD5 of that file
    (:data:`CIFAR10_FILES`, the values torchvision's ``CIFAR10`` checks): a file planted in the cache or in
    ``--data-root`` is refused unopened;
  - and the unpickler itself admits only what a batch holds (dicts, lists, bytes, str, ints and numpy's
    array reconstruction): any other global in the pickle, the way a malicious pickle runs code, is
    refused. This second check also guards ``read_cifar10(folder, checksums=None)``, which skips the
    MD5s for files you made yourself.
"""

from __future__ import annotations

import hashlib
import math
import os
import pathlib
import pickle
import tarfile
import urllib.request

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .._io import atomic_open, atomic_write_bytes

DATASETS = ("digits", "cifar10")
NUM_CLASSES = {"digits": 10, "cifar10": 10}
CHANNELS = {"digits": 1, "cifar10": 3}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
# MD5 of each file inside the published archive, as torchvision's datasets.CIFAR10 lists them.
CIFAR10_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
_MEMBERS = (*CIFAR10_FILES, "readme.html")
DOWNLOAD_TIMEOUT_S = 60.0          # seconds without a byte from the server before the download fails
DOWNLOAD_MAX_BYTES = 256 * 2**20   # the archive is 170,498,071 bytes; a server sending more is refused


CACHE_ENV = "CSPNET_LAB_CACHE"


def default_cache() -> pathlib.Path:
    """``$CSPNET_LAB_CACHE`` (``~`` expanded), or ``~/.cache/cspnet_lab`` when it is unset, empty or blank."""
    text = os.environ.get(CACHE_ENV, "").strip()
    try:
        return pathlib.Path(text).expanduser() if text else pathlib.Path.home() / ".cache" / "cspnet_lab"
    except (RuntimeError, KeyError) as err:      # "~nosuchuser/...", or no home folder at all
        where = f"environment variable {CACHE_ENV}={text!r} starts with ~ but" if text else \
            f"{CACHE_ENV} is unset and"
        raise ValueError(f"{where} that home folder cannot be determined ({err}); set {CACHE_ENV} to a "
                         f"folder path, or pass root= / --data-root") from None


def _split(x: torch.Tensor, y: torch.Tensor, val_fraction: float, seed: int):
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def standardize(train_x: torch.Tensor, *others: torch.Tensor):
    """(train_x, *others) standardised per channel with the training split's mean and std only."""
    # Per-channel statistics of the training split only.
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train_x, *others)]


def digits(size: int = 16, val_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's 8x8 digits, bilinearly resized to size x size, 1 channel, standardised."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 256:
        raise ValueError(f"size must be an integer in [8, 256] (the images are 8x8), got {size!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(bunch.target, dtype=torch.long)
    (xt, yt), (xv, yv) = _split(x, y, val_fraction, seed)
    xt, xv = standardize(xt, xv)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)


def _md5(path: pathlib.Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, archive: pathlib.Path, md5: str, timeout: float, max_bytes: int) -> None:
    """Stream ``url`` into a temporary file beside ``archive``; it becomes ``archive`` only if complete
    and matching ``md5`` (else it is deleted and ValueError says why)."""
    h = hashlib.md5()
    try:
        with atomic_open(archive) as f:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    size = 0
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        size += len(chunk)
                        if size > max_bytes:
                            raise ValueError(f"could not download CIFAR-10 from {url}: the server sent more "
                                             f"than {max_bytes:,} bytes (the archive is 170,498,071)")
                        h.update(chunk)
                        f.write(chunk)
            except ValueError:
                raise
            except Exception as err:   # URLError, HTTPError, socket timeouts, connection resets, ...
                reason = getattr(err, "reason", None) or err or type(err).__name__
                hint = f" (no answer within {timeout:g} s)" if "timed out" in str(reason) else ""
                raise ValueError(f"could not download CIFAR-10 from {url}: {reason}{hint}") from err
            if h.hexdigest() != md5:
                raise ValueError(f"the download of {url} is corrupt or partial (MD5 {h.hexdigest()}, expected "
                                 f"{md5}); it was deleted, run again to download it afresh")
    except PermissionError as err:
        raise ValueError(f"cache folder {archive.parent} is not writable ({err.strerror}); choose another "
                         f"with root= / --data-root or the CSPNET_LAB_CACHE variable") from err


def fetch_cifar10(root: str | os.PathLike | None = None, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5,
                  timeout: float = DOWNLOAD_TIMEOUT_S, max_bytes: int = DOWNLOAD_MAX_BYTES) -> pathlib.Path:
    """Make sure the CIFAR-10 files are unpacked under ``root``; download the archive if it is missing.

    ``timeout``: seconds the server may stay silent (connecting, or between two reads) before the
    download fails. The archive's MD5 is checked before it is opened, and each batch's MD5 before it is
    unpickled (:func:`read_cifar10`); see the module docstring for everything that is checked.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    root = _cache_dir(root)
    folder = root / CIFAR10_DIR
    if (folder / "batches.meta").exists():
        return folder
    archive = root / "cifar-10-python.tar.gz"
    if not archive.exists():
        _download(url, archive, md5, timeout, max_bytes)
    elif _md5(archive) != md5:
        got = _md5(archive)
        archive.unlink()
        raise ValueError(f"{archive} is corrupt or partial (MD5 {got}, expected {md5}); it was deleted, "
                         f"run again to download it afresh")
    _unpack(archive, folder)
    return folder


def _unpack(archive: pathlib.Path, folder: pathlib.Path) -> None:
    """Write the archive's expected members into ``folder`` (regular files only, batches.meta last)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {}
            for name in _MEMBERS:
                try:
                    member = tar.getmember(f"{CIFAR10_DIR}/{name}")
                except KeyError:
                    member = None
                if member is None or not member.isfile():
                    if name == "readme.html":
                        continue
                    raise ValueError(f"{archive} does not look like the CIFAR-10 python archive: "
                                     f"{CIFAR10_DIR}/{name} is missing or not a regular file")
                members[name] = member
            folder.mkdir(exist_ok=True)
            for name in sorted(members, key=lambda n: n == "batches.meta"):   # the marker last
                atomic_write_bytes(folder / name, tar.extractfile(members[name]).read())
    except (tarfile.TarError, EOFError, OSError) as err:
        if isinstance(err, PermissionError):
            raise ValueError(f"cache folder {archive.parent} is not writable ({err.strerror})") from err
        raise ValueError(f"{archive} could not be unpacked ({err}); delete it to download it afresh") from err


def _cache_dir(root) -> pathlib.Path:
    if root is None:
        root = default_cache()
        origin = f" (from {CACHE_ENV})" if os.environ.get(CACHE_ENV, "").strip() else ""
        if root.exists() and not root.is_dir():
            raise ValueError(f"cache folder {root}{origin} is a file, not a folder; set {CACHE_ENV} to a folder "
                             f"or pass root= / --data-root")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cache folder {root}{origin} cannot be created ({err.strerror}); set {CACHE_ENV} "
                             f"to a folder you can write, or pass root= / --data-root") from err
        return root
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise ValueError(f"root must be a folder path or None (for {default_cache()}), got {root!r}")
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ValueError(f"cache folder {root} does not exist or is not a folder; create it or leave "
                         f"root=None for {default_cache()}")
    return root


class _BatchUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 batch holds: containers, bytes/str/ints, and numpy arrays."""

    def find_class(self, module: str, name: str):
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): core.multiarray._reconstruct,
            ("numpy.core.numeric", "_frombuffer"): core.numeric._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): core.numeric._frombuffer,
            ("_codecs", "encode"): __import__("codecs").encode,   # how protocol 2 spells bytes
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch holds only "
                                         f"dicts, lists, bytes, ints and numpy arrays")
        return allowed[(module, name)]


def load_batch(path: str | os.PathLike, md5: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file: uint8 images (N, 3, 32, 32) and int64 labels. ``md5`` (when given) is checked
    before the file is opened by the unpickler, which admits only a batch's types either way."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing or not a regular file: not a complete CIFAR-10 folder (delete "
                         f"the folder to download CIFAR-10 afresh)")
    if md5 is not None and (got := _md5(path)) != md5:
        raise ValueError(f"{path} is not the published CIFAR-10 file (MD5 {got}, expected {md5}) and was not "
                         f"opened; delete {path.parent} to download CIFAR-10 afresh")
    with open(path, "rb") as f:
        try:
            batch = _BatchUnpickler(f, encoding="bytes").load()
            data, labels = batch[b"data"], batch[b"labels"]
        except Exception as err:
            raise ValueError(f"{path} is not a CIFAR-10 batch: {err}") from err
    import numpy as np

    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32 or not isinstance(labels, list) or len(labels) != data.shape[0] \
            or not all(type(v) is int and 0 <= v < 10 for v in labels):
        shape = getattr(data, "shape", type(data).__name__)
        raise ValueError(f"{path} has data {shape} of dtype {getattr(data, 'dtype', '?')} and "
                         f"{len(labels) if isinstance(labels, list) else labels!r} labels; expected uint8 "
                         f"(N, 3072) and N labels in 0..9")
    x = torch.as_tensor(data).view(-1, 3, 32, 32)
    return x, torch.as_tensor(labels, dtype=torch.long)


def read_cifar10(folder: str | os.PathLike, checksums: dict | None = CIFAR10_FILES
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Read the original batches (data_batch_1..5, test_batch): uint8 images (N, 3, 32, 32) and labels.

    Every file's MD5 is checked against ``checksums`` (default: the published files) before it is
    unpickled; ``checksums=None`` skips that (for files you made), the restricted unpickler still applies.
    """
    folder = pathlib.Path(folder)

    def load(name):
        return load_batch(folder / name, None if checksums is None else checksums[name])

    train = [load(f"data_batch_{i}") for i in range(1, 6)]
    test = load("test_batch")
    return (torch.cat([t[0] for t in train]), torch.cat([t[1] for t in train])), test


def cifar10(root=None, download: bool = True) -> tuple[TensorDataset, TensorDataset]:
    """CIFAR-10 train and test sets, float, standardised with the training set's per-channel statistics."""
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    folder = fetch_cifar10(root) if download else _cache_dir(root) / CIFAR10_DIR
    (xt, yt), (xv, yv) = read_cifar10(folder)
    xt, xv = standardize(xt.float() / 255.0, xv.float() / 255.0)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)


def load_dataset(name: str, **kwargs) -> tuple[TensorDataset, TensorDataset]:
    """``"digits"`` or ``"cifar10"``: (train, validation) TensorDatasets."""
    if name == "digits":
        return digits(**kwargs)
    if name == "cifar10":
        return cifar10(**kwargs)
    raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")

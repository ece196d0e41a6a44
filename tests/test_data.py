"""Datasets: the bundled digits, and CIFAR-10 read from a small fixture in the real on-disk format.

CIFAR-10 is hostile-input territory (a cache folder anyone can write into, a download from a server):
planted pickles must never run, a silent server must not hang the download, and every broken file or
folder is one clear ValueError.
"""

import hashlib
import io
import os
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
import torch

from cspnet_lab import data


def test_digits_split_is_fixed_and_seeded():
    train, val = data.digits(size=16, seed=0)
    assert (len(train), len(val)) == (1438, 359)             # 1,797 images, 20 % held out
    assert train.tensors[0].shape[1:] == (1, 16, 16)
    assert set(train.tensors[1].tolist()) == set(range(10))
    again, _ = data.digits(size=16, seed=0)
    assert torch.equal(train.tensors[1], again.tensors[1])
    other, _ = data.digits(size=16, seed=1)
    assert not torch.equal(train.tensors[1], other.tensors[1])
    assert abs(float(train.tensors[0].mean())) < 1e-5         # standardised on the training split


@pytest.mark.parametrize("kw, message", [
    (dict(size=4), r"size must be an integer in \[8, 256\]"),
    (dict(size=0), r"size must be an integer in \[8, 256\]"),
    (dict(size=16.5), r"size must be an integer in \[8, 256\]"),
    (dict(size=True), r"size must be an integer in \[8, 256\]"),
    (dict(size=100_000), r"size must be an integer in \[8, 256\]"),   # would need 72 TB, refused at once
    (dict(val_fraction=0.0), r"val_fraction must be a number in \(0, 1\)"),
    (dict(val_fraction=1.0), r"val_fraction must be a number in \(0, 1\)"),
    (dict(val_fraction=float("nan")), r"val_fraction must be a number in \(0, 1\)"),
    (dict(val_fraction="0.2"), r"val_fraction must be a number in \(0, 1\)"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*63\)"),
    (dict(seed=1.5), r"seed must be an integer"),
])
def test_digits_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        data.digits(**kw)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known datasets: digits, cifar10"):
        data.load_dataset("mnist")


def _batches(per_batch=3, protocol=pickle.DEFAULT_PROTOCOL):
    """The six batch files and batches.meta in the real format (dicts of bytes keys, a uint8 array)."""
    blobs = {}
    gen = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = torch.randint(0, 256, (per_batch, 3072), generator=gen, dtype=torch.uint8).numpy()
        labels = torch.randint(0, 10, (per_batch,), generator=gen).tolist()
        blobs[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": x,
                                    b"filenames": [b"f.png"] * per_batch}, protocol=protocol)
    blobs["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch},
                                         protocol=protocol)
    return blobs


def _tar(path, blobs, extra=()):
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for info, blob in extra:
            tar.addfile(info, None if blob is None else io.BytesIO(blob))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_archive(path, **kw):
    """A CIFAR-10 'python version' archive in the real format: (archive MD5, per-file MD5s)."""
    blobs = _batches(**kw)
    return _tar(path, blobs), {n: hashlib.md5(b).hexdigest() for n, b in blobs.items()}


def _fetched(tmp_path, **kw):
    """Download the fixture archive into a fresh cache folder: (cache, unpacked folder, per-file MD5s)."""
    src = tmp_path / "source.tar.gz"
    md5, files = _cifar_archive(src, **kw)
    cache = tmp_path / "cache"
    cache.mkdir()
    return cache, data.fetch_cifar10(cache, url=src.as_uri(), md5=md5), files


@pytest.mark.parametrize("protocol", [2, 4, 5])   # 2: the published files (Python 2); 4, 5: numpy's newer forms
def test_cifar10_downloads_verifies_and_reads_the_real_format(tmp_path, protocol):
    cache, folder, files = _fetched(tmp_path, protocol=protocol)
    (xt, yt), (xv, yv) = data.read_cifar10(folder, checksums=files)
    assert xt.shape == (15, 3, 32, 32) and xt.dtype == torch.uint8 and xv.shape == (3, 3, 32, 32)
    # The first image is the first row of data_batch_1, reshaped channel-first.
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(xt[0].flatten(), torch.as_tensor(first[b"data"][0]))
    assert yt[:3].tolist() == first[b"labels"]
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_published_checksums_are_torchvisions():
    assert data.CIFAR10_FILES["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert data.CIFAR10_FILES["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert sorted(data.CIFAR10_FILES) == ["batches.meta", *[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]


def test_files_not_matching_the_published_checksums_are_never_opened(tmp_path, monkeypatch):
    _, folder, _ = _fetched(tmp_path)
    opened = []
    monkeypatch.setattr(data._BatchUnpickler, "load", lambda self: opened.append(1))
    with pytest.raises(ValueError, match=r"data_batch_1 is not the published CIFAR-10 file .* was not opened"):
        data.read_cifar10(folder)                        # default: the published MD5s
    assert opened == []


def test_corrupt_download_is_deleted_with_a_clear_error(tmp_path):
    src = tmp_path / "source.tar.gz"
    _cifar_archive(src)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ValueError, match="corrupt or partial.*deleted"):
        data.fetch_cifar10(cache, url=src.as_uri(), md5="0" * 32)
    assert list(cache.iterdir()) == []                        # nothing half-written is left to reuse


class _Evil:
    """Unpickling this runs ``fn(*args)``: the way a planted pickle executes code."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    from numpy.testing._private.utils import runstring
    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.open": _Evil(open, str(marker), "w"),
        "numpy runstring": _Evil(runstring, f"open({str(marker)!r}, 'w').close()", {}),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "builtins.open", "numpy runstring"])
@pytest.mark.parametrize("where", ["whole file", "inside the labels"])
def test_planted_pickle_never_executes(tmp_path, payload, where):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[payload]
    _, folder, files = _fetched(tmp_path)
    blob = pickle.dumps(evil if where == "whole file" else
                        {b"data": np.zeros((1, 3072), np.uint8), b"labels": [evil]}, protocol=2)
    (folder / "data_batch_2").write_bytes(blob)
    with pytest.raises(ValueError, match="data_batch_2 is not the published CIFAR-10 file"):
        data.read_cifar10(folder, checksums=files)           # first line of defence: the MD5
    with pytest.raises(ValueError, match=r"data_batch_2 is not a CIFAR-10 batch: refused to load"):
        data.read_cifar10(folder, checksums=None)            # second: the restricted unpickler
    assert not marker.exists()
    pickle.loads(blob)                                       # the payload is real: plain pickle runs it
    assert marker.exists()


def test_planted_pickle_in_the_cache_does_not_run_through_cifar10(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    cache = tmp_path / "cache"
    (cache / data.CIFAR10_DIR).mkdir(parents=True)
    for name in data.CIFAR10_FILES:                          # a complete-looking folder, every file planted
        (cache / data.CIFAR10_DIR / name).write_bytes(pickle.dumps(_Evil(os.system, f"touch {marker}")))
    monkeypatch.setenv("CSPNET_LAB_CACHE", str(cache))
    with pytest.raises(ValueError, match="data_batch_1 is not the published CIFAR-10 file"):
        data.load_dataset("cifar10")
    assert not marker.exists()


def _silent_server():
    """A TCP server that accepts connections and never answers: (port, stop)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    def close():
        stop.set()
        thread.join()
        for c in conns:
            c.close()
        srv.close()
    return srv.getsockname()[1], close


def test_a_server_that_never_answers_cannot_hang_the_download(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    port, close = _silent_server()
    try:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"could not download CIFAR-10 .*timed out.*no answer within 0.5 s"):
            data.fetch_cifar10(tmp_path, url=f"http://127.0.0.1:{port}/cifar.tar.gz", timeout=0.5)
        assert time.perf_counter() - t0 < 2.0
    finally:
        close()
    assert list(tmp_path.iterdir()) == []                     # no partial archive left behind
    assert data.DOWNLOAD_TIMEOUT_S == 60.0                    # and the default is finite


def test_a_server_sending_too_much_is_cut_off(tmp_path):
    src = tmp_path / "big"
    src.write_bytes(b"x" * 5000)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ValueError, match="sent more than 1,000 bytes"):
        data.fetch_cifar10(cache, url=src.as_uri(), md5="0" * 32, max_bytes=1000)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_timeout(tmp_path, timeout):
    with pytest.raises(ValueError, match="timeout must be a positive, finite number of seconds"):
        data.fetch_cifar10(tmp_path, url="file:///dev/null", timeout=timeout)


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, None])
def test_bad_max_bytes(tmp_path, max_bytes):
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        data.fetch_cifar10(tmp_path, url="file:///dev/null", max_bytes=max_bytes)


def test_an_empty_cache_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("CSPNET_LAB_CACHE", "")
    assert data.default_cache().parts[-2:] == (".cache", "cspnet_lab")


def _archive_case(tmp_path, kind):
    blobs = _batches()
    src = tmp_path / "source.tar.gz"
    if kind == "not a tar":
        src.write_bytes(b"not a gzip file at all")
        return src, hashlib.md5(src.read_bytes()).hexdigest()
    if kind == "member missing":
        del blobs["test_batch"]
        return src, _tar(src, blobs)
    if kind == "member is a symlink":
        del blobs["test_batch"]
        link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return src, _tar(src, blobs, [(link, None)])
    if kind == "path traversal":
        evil = tarfile.TarInfo("../../escaped")
        evil.size = 3
        return src, _tar(src, blobs, [(evil, b"bad")])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, message", [
    ("not a tar", "could not be unpacked"),
    ("member missing", "does not look like the CIFAR-10 python archive: cifar-10-batches-py/test_batch is missing"),
    ("member is a symlink", "test_batch is missing or not a regular file"),
    ("path traversal", None),                               # unpacked, but only the expected members
])
def test_bad_archives(tmp_path, kind, message):
    src, md5 = _archive_case(tmp_path, kind)
    cache = tmp_path / "a" / "b" / "cache"
    cache.mkdir(parents=True)
    if message is None:
        folder = data.fetch_cifar10(cache, url=src.as_uri(), md5=md5)
        assert sorted(p.name for p in folder.iterdir()) == sorted(data.CIFAR10_FILES)
        assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))
        return
    with pytest.raises(ValueError, match=message):
        data.fetch_cifar10(cache, url=src.as_uri(), md5=md5)
    assert not (cache / data.CIFAR10_DIR / "batches.meta").exists()   # never marked complete


def test_missing_cache_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cache folder .* does not exist"):
        data.fetch_cifar10(tmp_path / "nope", url="file:///dev/null", md5="0" * 32)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cache folder .*file does not exist or is not a folder"):
        data.fetch_cifar10(tmp_path / "file", url="file:///dev/null", md5="0" * 32)


def test_default_cache_that_cannot_be_created(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CSPNET_LAB_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ValueError, match="cache folder .* cannot be created .*CSPNET_LAB_CACHE"):
        data.fetch_cifar10(url="file:///dev/null")


def test_read_only_cache_folder(tmp_path, monkeypatch):
    src = tmp_path / "source.tar.gz"
    md5, _ = _cifar_archive(src)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    if os.geteuid() == 0:                                    # root writes anyway: make the write fail as it would
        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr("tempfile.mkstemp", refuse)
    try:
        with pytest.raises(ValueError, match=r"cache folder .*cache is not writable \(Permission denied\)"):
            data.fetch_cifar10(cache, url=src.as_uri(), md5=md5)
    finally:
        cache.chmod(0o755)


def test_truncated_batch_file_is_reported_by_name(tmp_path):
    _, folder, files = _fetched(tmp_path)
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="data_batch_3 is not the published CIFAR-10 file"):
        data.read_cifar10(folder, checksums=files)
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR-10 batch"):
        data.read_cifar10(folder, checksums=None)


@pytest.mark.parametrize("replace_by", [None, "/dev/zero", "fifo", "folder"])
def test_missing_or_special_batch_file_is_reported_by_name(tmp_path, replace_by):
    _, folder, files = _fetched(tmp_path)
    path = folder / "data_batch_4"
    path.unlink()
    if replace_by == "/dev/zero":              # reading it would never end
        path.symlink_to("/dev/zero")
    elif replace_by == "fifo":                 # opening it would block
        os.mkfifo(path)
    elif replace_by == "folder":
        path.mkdir()
    for checksums in (files, None):
        with pytest.raises(ValueError, match="data_batch_4 is missing or not a regular file: not a complete"):
            data.read_cifar10(folder, checksums=checksums)


@pytest.mark.parametrize("content", [
    {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},      # wrong dtype
    {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},         # wrong shape
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},           # labels do not match
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},       # label out of range
    {b"data": np.zeros((2, 3072), object), b"labels": [0, 1]},          # object array
    {b"labels": [0, 1]},                                                # no data
    [1, 2, 3],                                                          # not a dict
])
def test_batches_with_the_wrong_content(tmp_path, content):
    _, folder, _ = _fetched(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(ValueError, match="test_batch (has data|is not a CIFAR-10 batch)"):
        data.read_cifar10(folder, checksums=None)

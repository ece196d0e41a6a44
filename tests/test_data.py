"""Datasets: the bundled digits, and CIFAR-10 read from a small fixture in the real on-disk format."""

import hashlib
import io
import pickle
import tarfile

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


@pytest.mark.parametrize("size", [4, 0, 16.5])
def test_digits_bad_size(size):
    with pytest.raises(ValueError, match="size must be an integer >= 8"):
        data.digits(size=size)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; known datasets: digits, cifar10"):
        data.load_dataset("mnist")


def _cifar_archive(path, per_batch=3):
    """A CIFAR-10 'python version' archive in the real format, with a few images per batch."""
    buf = {}
    gen = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = torch.randint(0, 256, (per_batch, 3072), generator=gen, dtype=torch.uint8).numpy()
        labels = torch.randint(0, 10, (per_batch,), generator=gen).tolist()
        buf[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": x,
                                  b"filenames": [b"f.png"] * per_batch})
    buf["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in buf.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fetched(tmp_path):
    """Download the fixture archive into a fresh cache folder: (cache, unpacked folder)."""
    src = tmp_path / "source.tar.gz"
    md5 = _cifar_archive(src)
    cache = tmp_path / "cache"
    cache.mkdir()
    return cache, data.fetch_cifar10(cache, url=src.as_uri(), md5=md5)


def test_cifar10_downloads_verifies_and_reads_the_real_format(tmp_path):
    cache, folder = _fetched(tmp_path)
    (xt, yt), (xv, yv) = data.read_cifar10(folder)
    assert xt.shape == (15, 3, 32, 32) and xt.dtype == torch.uint8 and xv.shape == (3, 3, 32, 32)
    # The first image is the first row of data_batch_1, reshaped channel-first.
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(xt[0].flatten(), torch.as_tensor(first[b"data"][0]))
    assert yt[:3].tolist() == first[b"labels"]
    assert not list(cache.glob("*.part"))


def test_corrupt_download_is_deleted_with_a_clear_error(tmp_path):
    src = tmp_path / "source.tar.gz"
    _cifar_archive(src)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ValueError, match="corrupt or partial.*deleted"):
        data.fetch_cifar10(cache, url=src.as_uri(), md5="0" * 32)
    assert list(cache.iterdir()) == []                        # nothing half-written is left to reuse


def test_missing_cache_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cache folder .* does not exist"):
        data.fetch_cifar10(tmp_path / "nope", url="file:///dev/null", md5="0" * 32)


def test_truncated_batch_file_is_reported_by_name(tmp_path):
    _, folder = _fetched(tmp_path)
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR-10 batch"):
        data.read_cifar10(folder)

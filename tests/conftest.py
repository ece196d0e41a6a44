import os
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
HTML = ROOT / "_build" / "html"
EXECUTED = ROOT / "_build" / "jupyter_execute"
# `make test` sets this (and CI sets CI): there, a missing book build is a failure, not a skip.
REQUIRE_BOOK = bool(os.environ.get("CSPNET_LAB_REQUIRE_BOOK") or os.environ.get("CI"))


def require_book(path: pathlib.Path = HTML / "index.html") -> None:
    """Skip the calling test when the book is not built (`make check`, a plain `pytest`); fail under
    `make test` and CI, which build it first."""
    if not path.exists():
        why = f"the book is not built ({path.relative_to(ROOT)} is missing): run `make book` (make test does)"
        if REQUIRE_BOOK:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_digits(monkeypatch):
    """One thread and a tiny stand-in for the digits dataset (128 random 8x8 images, 96/32), so that
    training through the API or the CLI takes well under a second. Returns the thread count to restore.
    Used by the autouse fixtures of test_hostile.py and test_cli.py."""
    from torch.utils.data import TensorDataset
    from cspnet_lab.train import loop as tr

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1, 8, 8, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    sets = TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])
    real = tr.load_dataset
    monkeypatch.setattr(tr, "load_dataset", lambda name, **kw: sets if name == "digits" else real(name, **kw))
    return before

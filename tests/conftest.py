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

"""Argument checks shared by every model: each raises ValueError naming the argument and its range.

They run before any module or tensor is built, so a bad configuration never half-builds a model.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return int(value)


def block_config(value) -> tuple[int, ...]:
    try:
        blocks = tuple(value)
    except TypeError:
        raise ValueError(f"block_config must be a non-empty sequence of positive integers, got {value!r}") from None
    if not blocks or any(isinstance(b, bool) or not isinstance(b, Integral) or b <= 0 for b in blocks):
        raise ValueError(f"block_config must be a non-empty sequence of positive integers, got {value!r}")
    return tuple(int(b) for b in blocks)


def _real(name: str, value, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)


def ratio_open_closed(name: str, value) -> float:
    """A ratio in (0, 1]: 0 excluded, 1 included."""
    v = _real(name, value, "(0, 1]")
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return v


def ratio_closed_open(name: str, value) -> float:
    """A probability in [0, 1): 0 included, 1 excluded."""
    v = _real(name, value, "[0, 1)")
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def scaled_channels(channels: int, ratio: float) -> int:
    """floor(channels x ratio), rounded to 9 decimals first so 0.29 x 100 gives 29, not 28."""
    return int(math.floor(round(channels * ratio, 9)))

"""Argument checks shared by every model: each raises ValueError naming the argument and its range.

They run before any module or tensor is built, so a bad configuration never half-builds a model.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


#: The largest model the constructors build without ``allow_large=True`` (2**31 parameters: 8 GiB of float32
#: weights before gradients and optimiser state). A typo such as ``block_config=(100000,)`` would otherwise
#: allocate until the machine runs out of memory.
MAX_PARAMETERS = 2**31


def parameter_budget(estimate: int, what: str, allow_large: bool = False) -> int:
    """Refuse to build ``what`` when its estimated parameter count exceeds :data:`MAX_PARAMETERS`.

    ``estimate`` is computed from the plan before any module is built (so nothing is allocated yet);
    ``allow_large=True`` is the explicit override for a user who means it. Returns the estimate.
    """
    boolean("allow_large", allow_large)
    if isinstance(estimate, bool) or not isinstance(estimate, Integral) or estimate < 0:
        raise ValueError(f"parameter estimate for {what} must be an integer >= 0, got {estimate!r}")
    if estimate > MAX_PARAMETERS and not allow_large:
        raise ValueError(
            f"{what} would have about {estimate:,} parameters (~{estimate * 4 / 2**30:,.1f} GiB of float32 "
            f"weights), above the limit of {MAX_PARAMETERS:,} (cspnet_lab._checks.MAX_PARAMETERS); "
            f"check the configuration, or pass allow_large=True if you mean it")
    return int(estimate)


#: The largest channel, layer or class count accepted (no real network comes near; an int beyond it would
#: overflow float arithmetic further on).
MAX_INT = 2**31 - 1


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    if value > MAX_INT:
        raise ValueError(f"{name} must be a positive integer (>= 1) up to {MAX_INT:,}, got an integer of "
                         f"{len(str(int(value)))} digits")
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
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    try:
        v = float(value)
    except OverflowError:          # an int beyond float range, e.g. 10**400
        raise ValueError(f"{name} must be a number in {allowed}, got an integer of "
                         f"{len(str(abs(int(value))))} digits") from None
    if math.isnan(v):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return v


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


def boolean(name: str, value) -> bool:
    """A real bool only: the string 'false' is truthy, so strings, ints and None are refused."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if value > MAX_INT:
        raise ValueError(f"{name} must be an integer >= 0 up to {MAX_INT:,}, got an integer of "
                         f"{len(str(int(value)))} digits")
    return int(value)


def finite_real(name: str, value, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite number (not a bool, not NaN or infinity) in the interval given by low/high (None: open-ended)."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    allowed = f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"
    v = _real(name, value, allowed)
    if not math.isfinite(v) or (low is not None and (v < low or (low_open and v == low))) \
            or (high is not None and (v > high or (high_open and v == high))):
        raise ValueError(f"{name} must be a finite number in {allowed}, got {value!r}")
    return v


def path_like(name: str, value, optional: bool = False):
    """A str or os.PathLike that is not empty (None too when optional)."""
    import os
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)).strip():
        raise ValueError(f"{name} must be a non-empty path{' or None' if optional else ''}, got {value!r}")
    return value


def device(name: str, value):
    """A torch device this machine has: 'cpu', 'cuda', 'cuda:N' (N < the number of GPUs) or 'mps'."""
    import torch

    allowed = "'cpu', 'cuda' or 'cuda:N'" + (", 'mps'" if _mps_available() else "")
    if not isinstance(value, (str, torch.device)):
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} is {value!r} but no CUDA device is available here; use 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{name} is {value!r} but this machine has {count} CUDA device(s): "
                             f"'cuda:0'..'cuda:{count - 1}'")
        return dev
    if dev.type == "mps" and _mps_available():
        return dev
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _mps_available() -> bool:
    import torch
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def floating_tensor(name: str, x, ndim: int | None = None, model_dtype=None):
    """A floating-point torch tensor (with ``ndim`` dimensions when given): integer images are refused
    rather than silently cast (a uint8 image in 0..255 is not the standardised input a model expects)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float32, float16, bfloat16 or float64), "
                         f"got dtype {x.dtype}; convert it with .float() (and scale/standardise it) first")
    if model_dtype is not None and x.dtype != model_dtype and not torch.is_autocast_enabled():
        short = lambda d: str(d).replace("torch.", "")
        raise ValueError(f"{name} is {short(x.dtype)}, the model is {short(model_dtype)}: call "
                         f"model.to({x.dtype}) (e.g. model.double()) or x.to({model_dtype}) (e.g. x.float())")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    return x


def image_batch(x, model, in_channels: int, takes: str = "this model takes in_channels") -> None:
    """The checks every model's ``check_input`` starts with: ``x`` is a 4-D floating tensor of the
    model's dtype with ``in_channels`` channels (``takes`` words the last message). ValueError."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"input must be a 4-D batch (N, C, H, W), got shape {tuple(x.shape)}")
    weight = next(model.parameters(), None)
    floating_tensor("input", x, model_dtype=None if weight is None else weight.dtype)
    if x.shape[1] != in_channels:
        raise ValueError(f"input has {x.shape[1]} channels; {takes}={in_channels}")


def one_line(err: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """An exception as one line for a message or a result row: ``Type: text`` (or its first line
    only, without the type), whitespace collapsed, cut at ``limit`` characters."""
    if with_type:
        text = " ".join(f"{type(err).__name__}: {err}".split())
    else:
        text = " ".join((str(err).strip().splitlines() or [type(err).__name__])[0].split())
    return text if len(text) <= limit else text[:limit - 3] + "..."

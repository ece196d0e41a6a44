"""Small helpers the chapters share: which device they run on, and glue that also works in Colab."""

from __future__ import annotations

import torch


def device() -> torch.device:
    """CUDA when present (Colab with a GPU), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(dev: torch.device | None = None) -> str:
    dev = dev or device()
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)} (torch {torch.__version__})"
    from .bench import cpu_name
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def glue(name: str, value, display: bool = False) -> None:
    """``myst_nb.glue`` in the book build; in Colab or Jupyter (no myst_nb) it does nothing.

    The book's prose reads glued values with ``{glue:text}`name```, so numbers in the text always come
    from the code that ran.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)

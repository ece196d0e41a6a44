"""Small helpers the chapters share: which device they run on, and glue that also works in Colab."""

from __future__ import annotations

import os

import torch


def device() -> torch.device:
    """CUDA when present (Colab with a GPU), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(dev: torch.device | None = None) -> str:
    dev = dev or device()
    if dev.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(dev)} (torch {torch.__version__})"
    from ..measure.bench import cpu_name
    return f"CPU: {cpu_name()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


from .._names import BOOK_BUILD_ENV, GLUE_PREFIX  # noqa: E402 (defined once, shared with scripts/)


def glue(name: str, value, display: bool | None = None) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`name``` in the chapter's Markdown.

    Emits the same display data as ``myst_nb.glue`` without importing myst_nb. ``display``: also show the
    value in the cell's output; by default only outside the book build (in Colab the reader sees the value
    their own run computed, as ``name = value``). Outside an IPython kernel it does nothing.
    """
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display as show
    except ImportError:
        return
    if get_ipython() is None:
        return
    bundle, metadata = format_display_data(value)
    metadata = dict(metadata, scrapbook={"name": name, "mime_prefix": GLUE_PREFIX})
    show({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    if display is None:
        display = not os.environ.get(BOOK_BUILD_ENV)
    if display:
        text = bundle.get("text/plain", repr(value))
        if isinstance(value, str):
            text = value
        show({"text/plain": f"{name} = {text}"}, raw=True)

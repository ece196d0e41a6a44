"""Point each chapter's Colab launch button at the chapter's Colab edition, `colab/<chapter>.ipynb`.

Colab renders Markdown without MyST, so the source chapter (`book/<chapter>.ipynb`) would show its glued
numbers, citations and code listings as raw markup there. `scripts/colab_edition.py` writes a copy of
every chapter with those resolved into plain Markdown; this extension makes sphinx-book-theme's Colab
button open that copy. The link is rewritten whether or not the edition exists yet (`make colab` writes it
from this very build); tests/test_book.py fails while a chapter's edition is missing or out of date.
"""

from __future__ import annotations

import pathlib

EDITION = "colab"


def _retarget(app, pagename, templatename, context, doctree):
    source = pathlib.Path(pagename + ".ipynb")           # e.g. book/01_dense_connectivity.ipynb
    edition = pathlib.Path(EDITION) / source.name
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if "colab.research.google.com" in url and url.endswith("/" + source.as_posix()):
                button["url"] = url[: -len(source.as_posix())] + edition.as_posix()


def setup(app):
    # sphinx-book-theme adds the launch buttons at priority 501; rewrite them after.
    app.connect("html-page-context", _retarget, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Names shared by the package and the build scripts, defined once. Standard library only: the build's
``scripts/colab_env.py`` loads this file by path before any venv (or torch) exists."""

# Where the book build runs a chapter, the kernel has this variable set (Makefile's kernelspec): glue then
# only records values for the prose. Anywhere else (Colab, Jupyter) it also shows them in the cell output.
BOOK_BUILD_ENV = "CSPNET_LAB_BOOK_BUILD"
# myst-nb reads glued values from display data whose mimetypes carry this prefix and whose metadata say
# {"scrapbook": {"name": ..., "mime_prefix": ...}} (myst_nb.ext.glue); written here so that the kernel
# needs no myst_nb (Colab has none, and the book is executed in a Colab-like environment).
GLUE_PREFIX = "application/papermill.record/"

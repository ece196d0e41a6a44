# From a fresh clone:
#   make book    set up .venv (when missing) and the Colab-like kernel, build the book into _build/html,
#                every chapter executed once, in that kernel (see scripts/colab_env.py)
#   make test    everything CI checks: the book build with warnings as errors, then every test
#   make check   the fast lane: unit tests only (pytest -m "not slow"), no book build
#   make colab   after `make book`: write the Colab edition colab/*.ipynb from the build (commit it)
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
COLAB  := $(VENV)/colab-venv/.colab-installed
# The two venvs (and chromium) are set up side by side: most of that time is waiting on downloads.
MAKEFLAGS += --jobs=2

.PHONY: setup colab-env book test check colab browser clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The kernel the chapters run in: Colab's package versions, no cspnet_lab until a chapter's setup cell
# installs it from this checkout. The script needs only the standard library (it runs beside $(STAMP)).
$(COLAB): scripts/colab_env.py
	$(PYTHON) scripts/colab_env.py

colab-env: $(COLAB)

# -W: any warning (including a chapter that fails to execute) fails the build; -n: check every reference.
book: $(STAMP) $(COLAB)
	$(PYTHON) scripts/colab_env.py --fresh
	rm -rf build   # setuptools' copy of the package from an earlier install: pip would reuse stale files
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going

colab: $(STAMP)
	$(PY) scripts/colab_edition.py

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test needs Debian's chromium: sudo apt-get install chromium"; exit 1; }

# CSPNET_LAB_REQUIRE_BOOK: the book and browser tests fail (instead of skipping) when the book is not built.
test: book browser
	CSPNET_LAB_REQUIRE_BOOK=1 $(PY) -m pytest

check: $(STAMP)
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf _build

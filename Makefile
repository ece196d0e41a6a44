# Two commands do everything, each from a fresh clone:
#   make book   set up .venv (when missing) and build the book into _build/html, every chapter executed
#   make test   set up .venv, build the book with warnings as errors, then run every test
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup book test browser clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# -W: any warning (including a chapter that fails to execute) fails the build; -n: check every reference.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --all -W -n --keep-going

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "make test needs Debian's chromium: sudo apt-get install chromium"; exit 1; }

test: book browser
	$(PY) -m pytest

clean:
	rm -rf _build

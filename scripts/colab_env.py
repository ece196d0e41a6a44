"""The Colab-like environment the book is executed in (`make book` calls this; tests import the pins).

Creates `.venv/colab-venv`, a virtual environment with Colab's published package versions
(shared/reference/facts.md, "Google Colab's runtime"; torch stays this machine's CPU wheel, and Python is
this machine's), without cspnet_lab, and registers it as the Jupyter kernel `cspnet-colab` in `.venv`
(where `.venv/bin/jupyter-book` finds it). `_config.yml` maps the chapters' `python3` kernel to it
(`nb_kernel_rgx_aliases`), so the book build is the Colab-like run: every chapter's first cell installs
cspnet_lab from this checkout (`CSPNET_LAB_SOURCE`, set in the kernelspec) as it would from the repository
in Colab, and nothing else makes the package importable.

    python scripts/colab_env.py            # create or update (does nothing when the pins are installed)
    python scripts/colab_env.py --print    # the pins, one per line
"""

from __future__ import annotations

import json
import pathlib
import shutil
import importlib.util
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "colab-venv"
PYTHON = VENV / "bin" / "python"
KERNEL_NAME = "cspnet-colab"
KERNEL_DIR = ROOT / ".venv" / "share" / "jupyter" / "kernels" / KERNEL_NAME
STAMP = VENV / ".colab-installed"
# Set in the kernel: glue() records values without printing them, and the setup cell installs this checkout.
# Read from the package's one definition by path: this script runs before any venv (no torch to import).
_spec = importlib.util.spec_from_file_location("_cspnet_lab_names", ROOT / "cspnet_lab" / "_names.py")
_names = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_names)
BOOK_BUILD_ENV = _names.BOOK_BUILD_ENV

# Colab's versions (facts.md, snapshot of 2026-08), all installable on this machine's Python 3.11; torch is
# this machine's CPU wheel (requirements.txt). Colab's Python itself (3.12/3.13) is not reproduced. The book
# build and tests drive this kernel from .venv (jupyter-book, nbclient), as Colab's frontend drives its own.
PINS = [
    "torch==2.13.0",
    "ipywidgets==7.7.1",
    "ipykernel==6.17.1",
    "ipython==7.34.0",
    "traitlets==5.7.1",
    "jupyter_client==7.4.9",
    "matplotlib==3.10.0",
    "numpy==2.1.3",
    "scikit-learn==1.6.1",
    "tqdm==4.67.3",
    # ipywidgets 7 pulls widgetsnbextension, which pulls the classic notebook; Colab has notebook 6, and
    # notebook 7 would drag in JupyterLab (not Colab's, and a large install).
    "notebook<7",
]


def kernelspec() -> dict:
    return {
        "argv": [str(PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab-like, cspnet-lab)",
        "language": "python",
        "env": {
            "CSPNET_LAB_SOURCE": ROOT.as_uri(),
            BOOK_BUILD_ENV: "1",
            # Colab's backend (inline), whatever the caller's MPLBACKEND; nothing of the checkout on the path.
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONPATH": "",
            # ipykernel 6.17's debugger otherwise warns about frozen modules on every kernel start
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        },
    }


def ensure() -> None:
    wanted = "\n".join(PINS)
    if not (STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists()):
        shutil.rmtree(VENV, ignore_errors=True)
        # The system Python, not .venv's, so that nothing of .venv is visible in the kernel.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", *PINS], check=True)
        STAMP.write_text(wanted)
    KERNEL_DIR.mkdir(parents=True, exist_ok=True)
    (KERNEL_DIR / "kernel.json").write_text(json.dumps(kernelspec(), indent=1) + "\n")


def forget_package() -> None:
    """Uninstall cspnet_lab from the venv, so that the next build's setup cells must install it."""
    subprocess.run([str(PYTHON), "-m", "pip", "uninstall", "-y", "-q", "cspnet-lab"], capture_output=True)
    probe = subprocess.run([str(PYTHON), "-c", "import cspnet_lab"], capture_output=True, cwd="/")
    if probe.returncode == 0:
        sys.exit("cspnet_lab is still importable in the Colab-like venv: it must come only from the setup cell")


if __name__ == "__main__":
    if "--print" in sys.argv:
        print("\n".join(PINS))
    else:
        ensure()
        if "--fresh" in sys.argv:
            forget_package()

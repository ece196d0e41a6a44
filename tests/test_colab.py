"""Every chapter runs the way Colab runs it: in a fresh virtual environment outside the repository, with
torch and Colab's other preinstalled packages, where cspnet_lab arrives only through the chapter's own
first cell (pointed at this checkout with CSPNET_LAB_SOURCE instead of the repository URL).

A chapter that silently depends on the repository layout (a relative path, an import of a file that is
not in the package) fails here. The environment is kept in _build/colab-venv between local runs.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for c in TOC["chapters"] if (ROOT / f"{c['file']}.ipynb").exists()]
VENV = ROOT / "_build" / "colab-venv"
# What Colab has before the first cell runs (torch pinned to this machine's CPU wheel).
PREINSTALLED = ["torch==2.13.0", "numpy", "matplotlib", "ipywidgets", "scikit-learn", "tqdm", "ipykernel",
                "nbclient", "nbformat"]

RUNNER = r'''
import sys, nbformat, nbclient
path, workdir = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
nbformat.write(nb, path)
'''


@pytest.fixture(scope="module")
def colab_python():
    py = VENV / "bin" / "python"
    stamp = VENV / ".colab-installed"
    if not stamp.exists() or stamp.read_text() != " ".join(PREINSTALLED):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PREINSTALLED], check=True)
        stamp.write_text(" ".join(PREINSTALLED))
    # Before the first chapter runs, the package is not there.
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "cspnet-lab"], capture_output=True)
    assert subprocess.run([str(py), "-c", "import cspnet_lab"], capture_output=True,
                          cwd="/").returncode != 0, "cspnet_lab must come only from the setup cell"
    return py


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_in_a_fresh_colab_like_environment(colab_python, chapter, tmp_path):
    work = tmp_path / "content"                       # like Colab's /content: no repository around
    work.mkdir()
    nb_path = work / pathlib.Path(chapter).name
    nb_path = nb_path.with_suffix(".ipynb")
    shutil.copy(ROOT / f"{chapter}.ipynb", nb_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(CSPNET_LAB_SOURCE=ROOT.as_uri(), MPLBACKEND="Agg",
               PATH=f"{colab_python.parent}:{env.get('PATH', '')}")
    proc = subprocess.run([str(colab_python), "-c", RUNNER, str(nb_path), str(work)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    nb = json.loads(nb_path.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == []
    # The chapter said which device it ran on, and used the installed package, not the checkout.
    text = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert "running on CPU" in text or "running on GPU" in text
    where = subprocess.run([str(colab_python), "-c", "import cspnet_lab; print(cspnet_lab.__file__)"],
                           capture_output=True, text=True, cwd="/", env=env).stdout
    assert str(VENV) in where and str(ROOT / "cspnet_lab") not in where

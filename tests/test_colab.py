"""The chapters as Colab runs them.

`make book` executes every chapter once, in the Colab-like kernel of scripts/colab_env.py: a venv with
Colab's published package versions (ipywidgets 7.7.1, IPython 7.34, ipykernel 6.17; torch is this
machine's CPU wheel), matplotlib's inline backend, and no cspnet_lab until the chapter's own first cell
installs it (from this checkout, through CSPNET_LAB_SOURCE, as it would from the repository in Colab).
These tests read that build instead of running the chapters a second time, and check the environment
itself: the live explorers under ipywidgets 7, and that installing the package never brings ipywidgets 8.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import EXECUTED, ROOT, require_book

sys.path.insert(0, str(ROOT / "scripts"))
import colab_env  # noqa: E402

pytestmark = pytest.mark.slow

TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for c in TOC["chapters"] if (ROOT / f"{c['file']}.ipynb").exists()]
# The environment of a kernel started by hand: nothing of .venv or the checkout.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MPL"))}


def _executed(chapter):
    path = EXECUTED / f"{chapter}.ipynb"
    require_book(path)
    return json.loads(path.read_text())


def _text(cell):
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))


def _venv_packages():
    out = subprocess.run([str(colab_env.PYTHON), "-m", "pip", "list", "--format", "json"], capture_output=True,
                         text=True, check=True, env=CLEAN_ENV).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_ran_once_in_the_colab_like_kernel_without_errors(chapter):
    nb = _executed(chapter)
    # the build mapped the chapter's python3 kernel to the Colab-like one (_config.yml)
    assert nb["metadata"]["kernelspec"]["name"] == colab_env.KERNEL_NAME
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == [], errors[0]["evalue"] if errors else ""
    # The setup cell installed cspnet_lab and says which versions it ran with: Colab's ipywidgets, so this
    # was the Colab-like venv, not .venv (which has ipywidgets 8).
    setup = _text(nb["cells"][0])
    assert re.search(r"Python 3\.\d+\.\d+, torch [\d.]+\S*, ipywidgets 7\.7\.1, cspnet_lab \d[\w.]*", setup), setup
    assert "pip could not install" not in setup
    everything = "".join(_text(c) for c in nb["cells"] if c["cell_type"] == "code")
    computes = sum(c["cell_type"] == "code" for c in nb["cells"]) > 1    # the glossary has only the setup cell
    assert not computes or "running on CPU" in everything or "running on GPU" in everything


def test_cspnet_lab_came_from_the_setup_cell_into_the_venv_not_from_the_checkout():
    require_book(EXECUTED / f"{CHAPTERS[0]}.ipynb")
    probe = ("import cspnet_lab, importlib.metadata as m; print(cspnet_lab.__file__); "
             "print(m.distribution('cspnet-lab').read_text('direct_url.json'))")
    out = subprocess.run([str(colab_env.PYTHON), "-c", probe], capture_output=True, text=True, cwd="/",
                         env=CLEAN_ENV, check=True).stdout.splitlines()
    assert out[0].startswith(str(colab_env.VENV)) and "site-packages" in out[0], out[0]
    assert not out[0].startswith(str(ROOT / "cspnet_lab"))
    direct = json.loads(out[1])
    # installed (not editable) from this checkout, the way the setup cell does with CSPNET_LAB_SOURCE
    assert direct["url"] == ROOT.as_uri() and not direct.get("dir_info", {}).get("editable", False)


def test_installing_the_package_kept_colabs_versions():
    """pip installing cspnet-lab[lab] (every chapter's setup cell did, during the build) upgraded none of
    Colab's preinstalled packages: a dependency that needed a newer one would have replaced it here."""
    require_book(EXECUTED / f"{CHAPTERS[0]}.ipynb")
    installed = _venv_packages()
    for pin in colab_env.PINS:
        name, op, version = re.match(r"([\w-]+)\s*(==|<)\s*(.+)", pin).groups()
        have = installed[name.lower().replace("_", "-")]
        if op == "==":
            assert have.split("+")[0] == version, f"{name} is {have}, Colab has {version}"
    assert installed["ipywidgets"].startswith("7.")


def test_the_package_never_pulls_ipywidgets_8_into_colab():
    """What pip would add to Colab's environment for `cspnet-lab[lab]` (resolved, not installed)."""
    report = subprocess.run(
        [str(colab_env.PYTHON), "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-",
         f"cspnet-lab[lab] @ {ROOT.as_uri()}"],
        capture_output=True, text=True, env=CLEAN_ENV, cwd="/")
    assert report.returncode == 0, report.stderr[-2000:]
    wanted = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.stdout)["install"]}
    assert "cspnet-lab" in wanted          # the report is about the package, not an empty resolution
    assert "ipywidgets" not in wanted and "widgetsnbextension" not in wanted, wanted
    assert not {"torch", "ipykernel", "ipython", "matplotlib", "numpy"} & set(wanted), wanted


# Runs in the Colab-like kernel: every live explorer, one control moved, what the kernel sent to the page.
LIVE = r'''
import hashlib, json, matplotlib, ipywidgets
from IPython import get_ipython
from cspnet_lab import explore

pub, sent, current = get_ipython().display_pub, [], {}
original = pub.publish
def publish(data, *args, **kwargs):
    out, png = current.get("out"), data.get("image/png", b"")
    png = png if isinstance(png, bytes) else png.encode()
    sent.append({"mime": sorted(data), "in_output_widget": bool(out is not None and out.msg_id),
                 "png": hashlib.sha1(png).hexdigest()})
    return original(data, *args, **kwargs)
pub.publish = publish

report = {"backend": matplotlib.get_backend(), "ipywidgets": ipywidgets.__version__, "explorers": {}}
for name in ("growth_explorer", "split_explorer", "fusion_explorer"):
    sent.clear()
    box = getattr(explore, name).live()
    controls, out = box.children[0].children, box.children[1]
    current["out"] = out
    first = list(sent)
    sent.clear()
    slider = next(c for c in controls if isinstance(c, (ipywidgets.IntSlider, ipywidgets.FloatSlider)))
    before = slider.value
    slider.value = before + slider.step if before + slider.step <= slider.max else before - slider.step
    report["explorers"][name] = {"control": slider.description, "before": before, "after": slider.value,
                                 "first": first, "after_change": list(sent)}
print(json.dumps(report))
'''


def test_live_explorers_redraw_under_colabs_ipywidgets_and_inline_backend():
    """In a real kernel of the Colab-like venv (ipykernel 6.17.1, ipywidgets 7.7.1, no MPLBACKEND): moving a
    slider runs the explorer's callback, which sends a new figure (a different PNG) into its Output widget."""
    require_book(EXECUTED / f"{CHAPTERS[0]}.ipynb")          # the build installed cspnet_lab in the venv
    import nbclient
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(LIVE)])
    saved = os.environ.pop("MPLBACKEND", None)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name=colab_env.KERNEL_NAME,
                                resources={"metadata": {"path": "/"}}).execute()
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    out = [o for o in nb.cells[0].outputs if o.output_type == "stream" and o.name == "stdout"]
    report = json.loads(out[-1].text.strip().splitlines()[-1])
    assert report["backend"] == "module://matplotlib_inline.backend_inline"
    assert report["ipywidgets"] == "7.7.1"
    for name, ex in report["explorers"].items():
        assert ex["after"] != ex["before"], name
        first = [s for s in ex["first"] if "image/png" in s["mime"]]
        redrawn = [s for s in ex["after_change"] if "image/png" in s["mime"]]
        assert first and redrawn, f"{name}: the callback did not send a figure ({ex['after_change']})"
        assert all(s["in_output_widget"] for s in redrawn), f"{name}: the figure went outside the widget"
        assert redrawn[-1]["png"] != first[-1]["png"], f"{name}: the figure did not change"

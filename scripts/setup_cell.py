"""The first cell of every chapter (the Colab setup cell), written in one place.

    python scripts/setup_cell.py book/08_scaling_up.ipynb ...   # rewrite cell 0 of these chapters
    python scripts/setup_cell.py --all                           # every chapter in _toc.yml
    python scripts/setup_cell.py --check                         # exit 1 if a chapter's cell 0 differs

The cell installs cspnet_lab in Colab (or from CSPNET_LAB_SOURCE anywhere), keeps Colab's torch and
ipywidgets, shows pip's error if the install fails, and prints the versions it ended with. The chapters
install `RELEASE = "main"`; the Colab edition (scripts/colab_edition.py) writes in the commit its text was
built from. Only the cell's source changes; its metadata (tags) stay as they are.
"""

from __future__ import annotations

import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]

TEMPLATE = '''\
# Setup. In Colab this installs cspnet_lab (the release below) and keeps Colab's own
# torch; anywhere else it does nothing. CSPNET_LAB_SOURCE (a pip URL: git+https://...,
# file:///path) installs another copy instead.
import os, subprocess, sys
from importlib import metadata
REPOSITORY = "{repository}"
# RELEASE: a branch, tag or commit of REPOSITORY
RELEASE = "{release}"
custom = os.environ.get("CSPNET_LAB_SOURCE", "").strip()  # blank: not set
if "google.colab" in sys.modules or custom:
    source = custom or f"git+{{REPOSITORY}}@{{RELEASE}}"
    command = [sys.executable, "-m", "pip", "install", "-q",
               f"cspnet-lab[lab] @ {{source}}"]
    pip = subprocess.run(command, capture_output=True, text=True)
    if pip.returncode != 0:
        print("pip could not install cspnet_lab; the end of its output:")
        tail = (pip.stdout + pip.stderr).strip().splitlines()[-20:]
        print("\\n".join(tail))

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "missing"
    origin = "CSPNET_LAB_SOURCE" if custom else RELEASE
    print(f"Python {{sys.version.split()[0]}}, torch {{version('torch')}}, "
          f"ipywidgets {{version('ipywidgets')}}, "
          f"cspnet_lab {{version('cspnet-lab')}} ({{origin}})")
    if pip.returncode != 0:
        raise RuntimeError("installing cspnet_lab failed: see pip's output above")
'''


def repository() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def source(release: str = "main") -> str:
    """The setup cell's source, for `release` (a branch, tag or commit)."""
    return TEMPLATE.format(repository=repository(), release=release)


def chapters() -> list[pathlib.Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ROOT / f"{c['file']}.ipynb" for c in toc["chapters"] if (ROOT / f"{c['file']}.ipynb").exists()]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def apply(path: pathlib.Path, release: str = "main") -> bool:
    """Rewrite cell 0 of the notebook at `path`; True if it changed."""
    nb = json.loads(path.read_text())
    cell = nb["cells"][0]
    if cell["cell_type"] != "code" or "import os, subprocess, sys" not in "".join(cell["source"]):
        raise ValueError(f"{path}: cell 0 is not a setup cell")
    new = _lines(source(release).rstrip("\n"))
    if cell["source"] == new:
        return False
    cell["source"] = new
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def main(argv: list[str]) -> int:
    if "--check" in argv:
        wrong = [str(p.relative_to(ROOT)) for p in chapters()
                 if "".join(json.loads(p.read_text())["cells"][0]["source"]) != source().rstrip("\n")]
        if wrong:
            print("cell 0 differs from scripts/setup_cell.py in:", *wrong)
        return 1 if wrong else 0
    paths = chapters() if "--all" in argv else [pathlib.Path(a).resolve() for a in argv]
    if not paths:
        print(__doc__)
        return 2
    for p in paths:
        print(("rewrote " if apply(p) else "unchanged ") + str(p.relative_to(ROOT)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

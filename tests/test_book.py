"""The book: chapters are Colab-launchable notebooks with the right setup cell; the built pages show
the numbers the code computes. `make test` builds the book (warnings as errors) before pytest runs."""

import json
import pathlib
import re

import pytest
import yaml

import cspnet_lab
from cspnet_lab import costs
from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
ENTRIES = [c["file"] for c in TOC["chapters"]]
CHAPTERS = [c for c in ENTRIES if (ROOT / f"{c}.ipynb").exists()]   # the bibliography page is Markdown
HTML = ROOT / "_build" / "html"


def _notebook(chapter):
    return json.loads((ROOT / f"{chapter}.ipynb").read_text())


def test_every_toc_entry_but_the_bibliography_is_a_notebook():
    assert [c for c in ENTRIES if c not in CHAPTERS] == ["book/references"]
    assert len(CHAPTERS) == 8


def test_config_executes_every_chapter_and_builds_only_the_toc():
    assert CONFIG["execute"]["execute_notebooks"] == "force"
    assert CONFIG["execute"]["timeout"] > 0
    assert CONFIG["only_build_toc_files"] is True
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert TOC["root"] == "book/intro"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_is_a_committed_notebook_without_outputs(chapter):
    nb = _notebook(chapter)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit chapters without outputs"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_starts_with_the_colab_setup_cell_pointing_at_the_repository(chapter):
    first = "".join(_notebook(chapter)["cells"][0]["source"])
    assert '"google.colab" in sys.modules' in first
    assert f'REPOSITORY = "{CONFIG["repository"]["url"]}"' in first
    # It must not reinstall torch or ipywidgets (Colab's own are kept).
    code = "\n".join(line for line in first.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"install[^\n]*\b(torch|ipywidgets)\b", code)
    assert "cspnet-lab[lab] @" in first


def _page(chapter):
    path = HTML / f"{chapter}.html"
    assert path.exists(), f"{path} is missing: run `make book` (make test does) before pytest"
    return path.read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_built_page_has_no_error_output_and_a_colab_button_to_an_existing_notebook(chapter):
    page = _page(chapter)
    # myst-nb renders an error output as "output traceback" and stderr (warnings) as "output stderr".
    assert 'class="output traceback' not in page and 'class="output stderr' not in page
    links = re.findall(r'https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/([^"]+)', page)
    assert links, "no Colab launch button"
    for path in links:
        assert (ROOT / path).exists(), path


def test_chapter_one_prose_shows_the_computed_numbers():
    text = re.sub(r"<[^>]+>", "", _page("book/01_dense_connectivity"))
    params = costs.count_params(cspnet_lab.densenet121())
    assert f"Our DenseNet-121 has {params:,} parameters" in text
    assert f"DenseNet-121 costs {costs.analyze('densenet121').macs / 1e9:.3f} G multiply-adds" in text


def _links(page_path):
    html = page_path.read_text()
    return re.findall(r'href="([^"]+)"', html)


def test_internal_links_and_anchors_resolve_and_external_links_are_listed():
    """Every relative link of every built page points at a file that exists (and an anchor that exists);
    external links are collected into _build/external_links.txt, not fetched."""
    pages = sorted(HTML.rglob("*.html"))
    assert pages, "the book is not built: run `make book` (make test does)"
    external, broken = set(), []
    for page in pages:
        if "_static" in page.parts or "reports" in page.parts:
            continue
        for href in _links(page):
            if href.startswith(("http://", "https://")):
                external.add(href.split("#")[0])
                continue
            if href.startswith(("mailto:", "javascript:", "data:")) or href == "#":
                continue
            target, _, anchor = href.partition("#")
            path = (page.parent / target.split("?")[0]).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(HTML)} -> {href}")
            elif anchor and path.suffix == ".html" and f'id="{anchor}"' not in path.read_text():
                broken.append(f"{page.relative_to(HTML)} -> {href} (no such anchor)")
    assert broken == []
    (ROOT / "_build" / "external_links.txt").write_text("\n".join(sorted(external)) + "\n")
    assert all(re.match(r"https?://[\w.-]+/", u) for u in external)


def test_table_of_contents_lists_every_chapter_in_order():
    nav = _page(TOC["root"])
    positions = [nav.find(f'href="{pathlib.Path(c).name}.html"') for c in ENTRIES]
    assert all(p > 0 for p in positions), "a chapter is missing from the navigation"
    assert positions == sorted(positions)

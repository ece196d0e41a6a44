"""The book: chapters are Colab-launchable notebooks with the setup cell of scripts/setup_cell.py; the
Colab edition (colab/, what the Colab buttons open) shows the book's text with no MyST markup; the built
pages show the numbers the code computes. `make test` builds the book (warnings as errors) before pytest
runs; without a build, the tests that read it skip (`make check`)."""

import html
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from markdown_it import MarkdownIt

import cspnet_lab
from cspnet_lab import costs
from conftest import HTML, ROOT, require_book

sys.path.insert(0, str(ROOT / "scripts"))
import colab_edition  # noqa: E402
import setup_cell  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
ENTRIES = [c["file"] for c in TOC["chapters"]]
CHAPTERS = [c for c in ENTRIES if (ROOT / f"{c}.ipynb").exists()]   # the bibliography page is Markdown
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/([^/]+)/([^/]+)/blob/([^/]+)/([^\s\"'`)#?]+)")


def _notebook(chapter):
    return json.loads((ROOT / f"{chapter}.ipynb").read_text())


def test_every_toc_entry_but_the_bibliography_is_a_notebook_and_every_notebook_is_in_the_toc():
    assert [c for c in ENTRIES if c not in CHAPTERS] == ["book/references"]
    on_disk = sorted(f"book/{p.stem}" for p in (ROOT / "book").glob("*.ipynb"))
    assert sorted(CHAPTERS) == on_disk, "a chapter notebook is missing from _toc.yml (or the reverse)"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_is_a_committed_notebook_without_outputs(chapter):
    nb = _notebook(chapter)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "commit chapters without outputs"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_starts_with_the_setup_cell_of_scripts_setup_cell(chapter):
    first = "".join(_notebook(chapter)["cells"][0]["source"])
    assert first == setup_cell.source().rstrip("\n"), "run `python scripts/setup_cell.py --all`"


def test_setup_cell_installs_from_the_configured_repository_and_keeps_colabs_torch_and_ipywidgets():
    text = setup_cell.source("0123abc")
    assert f'REPOSITORY = "{CONFIG["repository"]["url"]}"' in text and 'RELEASE = "0123abc"' in text
    assert 'f"git+{REPOSITORY}@{RELEASE}"' in text and "cspnet-lab[lab] @ {source}" in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"install[^\n]*\b(torch|ipywidgets)\b", code)


def test_setup_cell_shows_pips_error_and_the_versions_when_the_install_fails(tmp_path):
    """The cell, run as Colab would, pointed at a source pip cannot install: it stops with pip's own error
    and the versions it ended with, not a bare CalledProcessError."""
    env = dict(os.environ, CSPNET_LAB_SOURCE=(tmp_path / "no-such-checkout").as_uri())
    proc = subprocess.run([sys.executable, "-c", setup_cell.source()], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "pip could not install cspnet_lab; the end of its output:" in proc.stdout
    assert "no-such-checkout" in proc.stdout                 # pip's own message, naming the source
    assert re.search(r"Python 3\.\d+\.\d+, torch 2\.\d+\S*, ipywidgets \S+, cspnet_lab \S+ "
                     r"\(CSPNET_LAB_SOURCE\)", proc.stdout)
    assert "RuntimeError: installing cspnet_lab failed" in proc.stderr
    assert "CalledProcessError" not in proc.stderr


def _page(chapter):
    path = HTML / f"{chapter}.html"
    require_book(path)
    return path.read_text()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_built_page_has_no_error_output_and_a_colab_button_to_its_colab_edition(chapter):
    page = _page(chapter)
    # myst-nb renders an error output as "output traceback" and stderr (warnings) as "output stderr".
    assert 'class="output traceback' not in page and 'class="output stderr' not in page
    links = [m[3] for m in COLAB_LINK.findall(page)]
    assert links, "no Colab launch button"
    assert set(links) == {f"colab/{pathlib.Path(chapter).name}.ipynb"}, links


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
    require_book()
    pages = sorted(HTML.rglob("*.html"))
    # only the table of contents is built: the Colab edition's notebooks are not pages
    assert not (HTML / "colab").exists()
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


def test_table_of_contents_lists_every_chapter_in_order():
    nav = _page(TOC["root"])
    positions = [nav.find(f'href="{pathlib.Path(c).name}.html"') for c in ENTRIES]
    assert all(p > 0 for p in positions), "a chapter is missing from the navigation"
    assert positions == sorted(positions)


# ----------------------------------------------------------------------------- the Colab edition

def _edition(chapter):
    path = colab_edition.edition_path(chapter)
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `make book` then `make colab`"
    return json.loads(path.read_text())


def _rendered(nb):
    """What Colab shows of a notebook before it runs: Markdown cells through a plain CommonMark renderer
    (no MyST), code cells as code, and any outputs as text."""
    md = MarkdownIt("commonmark")
    parts = []
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            parts.append(md.render(text))
        else:
            parts.append("<pre><code>" + html.escape(text) + "</code></pre>")
            for out in cell.get("outputs", []):
                parts.append(html.escape("".join(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))))
    return "\n".join(parts)


def _visible_text(rendered):
    return html.unescape(re.sub(r"<[^>]+>", "", rendered))


def _source_markdown(chapter):
    return "\n".join("".join(c["source"]) for c in _notebook(chapter)["cells"] if c["cell_type"] == "markdown")


def test_colab_edition_is_up_to_date_with_the_chapters():
    """Same cells, same code, same listings and citations, every glue name resolved; values that change from
    run to run (timings) are taken from the edition itself, so only a structural change fails this."""
    assert colab_edition.check() == [], "the Colab edition is out of date: `make book`, then `make colab`"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_edition_shows_no_myst_markup_and_every_value_citation_and_listing(chapter):
    nb = _edition(chapter)
    rendered = _rendered(nb)
    text = _visible_text(rendered)
    # no role ({glue:text}`x`, {cite:p}`x`), no directive (```{literalinclude}, :::{note}), no label, in what
    # the Markdown cells show (a code cell may hold a Python f-string such as f"`{cmd}`", which is no role)
    prose = _visible_text(_rendered({"cells": [c for c in nb["cells"] if c["cell_type"] == "markdown"]}))
    assert not re.search(r"\{[a-zA-Z][\w:-]*\}`", prose), re.search(r".{60}\{[a-zA-Z][\w:-]*\}`.{20}", prose, re.S)
    assert "language-{" not in rendered and not re.search(r"^\s*(:::|```)\{", text, re.M)
    assert not re.search(r"^\([\w.:-]+\)=\s*$", text, re.M)
    source = _source_markdown(chapter)
    values = nb["metadata"]["cspnet_lab"]["glue"]
    for name, fmt in re.findall(r"\{glue:text\}`([^`:]+):?([^`]*)`", source):
        shown = _visible_text(MarkdownIt("commonmark").render(colab_edition.plain_text(values[name], fmt)))
        assert shown.strip() in text, f"glued value {name} = {shown!r} is not in the Colab edition"
    bib = colab_edition.bibliography()
    for keys in re.findall(r"\{cite:p\}`([^`]+)`", source):
        cited = "; ".join(f"{colab_edition._authors_short(bib[k])}, {bib[k].fields['year']}" for k in keys.split(","))
        assert f"({cited})" in text
    blocks = [html.unescape(b) for b in re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", rendered, re.S)]
    directives = re.findall(r"```\{literalinclude\} (\S+)\n((?::[\w-]+:.*\n)*)```", source)
    assert len(directives) == source.count("{literalinclude}")
    for target, options in directives:
        opts = yaml.safe_load(re.sub(r"^:([\w-]+):", r"\1:", options, flags=re.M)) or {}
        from sphinx.directives.code import LiteralIncludeReader
        from types import SimpleNamespace
        listing, _ = LiteralIncludeReader(str(ROOT / "book" / target), {k: str(v) for k, v in opts.items()},
                                          SimpleNamespace(source_encoding="utf-8")).read()
        assert any(listing.strip() in b for b in blocks), f"the listing of {target} {opts} is not shown as code"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_colab_edition_runs_the_chapters_code_and_installs_the_commit_it_was_built_from(chapter):
    nb, source = _edition(chapter), _notebook(chapter)
    code = [colab_edition.strip_form_title("".join(c["source"])) for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("cspnet_lab") != "hint"]
    assert code[1:] == ["".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code"][1:]
    assert all(c["outputs"] == [] for c in nb["cells"] if c["cell_type"] == "code")
    commit = nb["metadata"]["cspnet_lab"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and code[0] == setup_cell.source(commit).rstrip("\n")
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {commit[:12]} is not in this clone's history (a shallow clone?)")
    # The package at that commit is this checkout's: Colab installs the code the text was built from.
    changed = subprocess.run(["git", "diff", "--stat", commit, "--", "cspnet_lab", "pyproject.toml"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    assert changed == "", f"the package changed since {commit[:12]}: `make book`, then `make colab`\n{changed}"


def test_readme_colab_links_open_the_colab_edition():
    links = COLAB_LINK.findall((ROOT / "README.md").read_text())
    assert links, "README.md has no Colab link"
    org, repo = CONFIG["repository"]["url"].rstrip("/").split("/")[-2:]
    for link_org, link_repo, _, path in links:
        assert (link_org, link_repo) == (org, repo)
        assert path.startswith("colab/") and (ROOT / path).exists(), path


def test_colab_edition_writer_resolves_markup_and_refuses_what_it_does_not_know():
    import types
    ctx = types.SimpleNamespace(chapter="x", glue={"a": "'4.2%'", "n": "1234.5"}, used_glue=set(),
                                bib=colab_edition.bibliography(), cited=[], listings=[])
    out = colab_edition.convert_markdown(
        "Saves {glue:text}`a`, n = {glue:text}`n:,.0f` {cite:p}`wang2020cspnet`; code `{glue:text}` stays.\n"
        "(my-label)=\n```{note}\nA *note*.\n```\n```python\nx = '{glue:text}`a`'\n```", ctx)
    assert out.startswith("Saves 4.2%, n = 1,234 (Wang et al., 2020); code `{glue:text}` stays.\n")
    assert "> **Note**\n>\n> A *note*." in out and "my-label" not in out
    assert "```python\nx = '{glue:text}`a`'\n```" in out             # code blocks are left alone
    with pytest.raises(colab_edition.MystLeft, match="unknowndirective"):
        colab_edition.convert_markdown("```{unknowndirective}\nx\n```", ctx)
    with pytest.raises(colab_edition.MystLeft, match="eq"):
        colab_edition.convert_markdown("see {eq}`x`", ctx)
    with pytest.raises(KeyError, match="missing"):
        colab_edition.convert_markdown("{glue:text}`missing`", ctx)


def test_colab_edition_hides_hints_solutions_and_machinery_in_form_cells():
    """A dropdown (hint) becomes a hidden Colab form cell of its own; a solution (hide-cell) and the glue
    machinery (remove-input) stay code cells that run, hidden behind a #@title; plain cells are untouched."""
    chapter = {"cells": [
        {"cell_type": "code", "id": "setup", "metadata": {"tags": ["hide-cell"]}, "source": ["x = 0"],
         "outputs": [], "execution_count": None},
        {"cell_type": "markdown", "id": "ex", "metadata": {},
         "source": ["Exercise: print {glue:text}`n`.\n\n:::{dropdown} Hint\nUse `print`, n = {glue:text}`n`.\n:::\n"]},
        {"cell_type": "code", "id": "sol", "metadata": {"tags": ["hide-cell"]},
         "source": ["# Solution to the exercise\nprint(n)"], "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "glue", "metadata": {"tags": ["remove-input"]}, "source": ["glue('n', 3)"],
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "plain", "metadata": {}, "source": ["n = 3"], "outputs": [],
         "execution_count": None},
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": ["# Title"]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    nb = colab_edition.build("book/x", chapter, {"n": "3"}, "0" * 40, "2026-12-04")
    by_id = {c.get("id"): c for c in nb["cells"]}
    assert "".join(by_id["ex"]["source"]).strip() == "Exercise: print 3."
    hint = by_id["ex-1"]
    assert hint["cell_type"] == "code" and hint["metadata"] == {"cellView": "form", "cspnet_lab": "hint"}
    assert "".join(hint["source"]) == "#@title Hint (double-click to show)\n# Use `print`, n = 3."
    sol = "".join(by_id["sol"]["source"])
    assert sol == "#@title Solution to the exercise (double-click to show)\n# Solution to the exercise\nprint(n)"
    assert by_id["sol"]["metadata"]["cellView"] == "form"
    assert "".join(by_id["glue"]["source"]).startswith("#@title Book machinery")
    assert colab_edition.strip_form_title("".join(by_id["glue"]["source"])) == "glue('n', 3)"
    assert "".join(by_id["plain"]["source"]) == "n = 3" and "cellView" not in by_id["plain"]["metadata"]
    assert len({c.get("id") for c in nb["cells"]}) == len(nb["cells"])     # ids stay unique
    with pytest.raises(colab_edition.MystLeft, match="never closed"):
        colab_edition.split_dropdowns(":::{dropdown} Hint\ntext")


def _published(monkeypatch, env_value):
    """What cspnet_lab.lab.book.glue and myst_nb.glue send to the page, in an IPython shell."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.testing.globalipapp import get_ipython
    from myst_nb import glue as myst_glue
    from cspnet_lab import book
    if env_value is None:
        monkeypatch.delenv(book.BOOK_BUILD_ENV, raising=False)
    else:
        monkeypatch.setenv(book.BOOK_BUILD_ENV, env_value)
    ip = get_ipython()
    monkeypatch.setattr(ip, "display_pub", CapturingDisplayPublisher())
    book.glue("share", "45%")
    ours = list(ip.display_pub.outputs)
    ip.display_pub.outputs.clear()
    myst_glue("share", "45%", display=False)
    return ours, list(ip.display_pub.outputs)


def test_glue_records_what_myst_nb_reads_without_myst_nb_and_shows_the_value_only_outside_the_build(monkeypatch):
    in_build, theirs = _published(monkeypatch, "1")
    assert [(o["data"], o["metadata"]) for o in in_build] == [(o["data"], o["metadata"]) for o in theirs]
    assert theirs[0]["data"] == {"application/papermill.record/text/plain": "'45%'"}
    in_colab, _ = _published(monkeypatch, None)
    assert in_colab[0]["data"] == theirs[0]["data"]
    assert in_colab[1]["data"] == {"text/plain": "share = 45%"}     # the reader sees their run's value
    assert len(in_colab) == 2 and len(in_build) == 1

"""Chapters 1, 2, 7 and 8 as a student reads them: the code shown is the code that teaches (no glue
machinery in a visible cell, every line fits the rendered cell), every exercise comes with a hint and a
worked solution collapsed by default, and no verdict is said twice. Plus the figure chapter 7 draws."""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cspnet_lab import plots  # noqa: E402
from cspnet_lab.measure.stats import paired_interval  # noqa: E402
from conftest import EXECUTED, ROOT, require_book  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import setup_cell  # noqa: E402

PAGES = ["book/01_dense_connectivity", "book/02_feature_map_growth", "book/07_no_tradeoff",
         "book/08_scaling_up"]
HIDDEN = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
GLUE_CALL = re.compile(r"""\bglue\(\s*(f?)(["'])(.+?)\2""")
GLUE_USE = re.compile(r"\{glue:text\}`([^`:]+)")
ITEM = re.compile(r"^(\d+)\. ", re.M)
HINT = re.compile(r"^:::\{dropdown\} Hint\n(.+?)\n:::$", re.M | re.S)


def _cells(page):
    return json.loads((ROOT / f"{page}.ipynb").read_text())["cells"]


def _source(cell):
    return "".join(cell["source"])


def _tags(cell):
    return set(cell["metadata"].get("tags", []))


def _exercises(cells):
    """(number, markdown cell, the cell after it) for every numbered item from '## Exercises' on."""
    start = next(i for i, c in enumerate(cells)
                 if c["cell_type"] == "markdown" and "## Exercises" in _source(c))
    found = []
    for i in range(start, len(cells)):
        cell = cells[i]
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        if i == start:
            text = text.split("## Exercises", 1)[1]
        for number in ITEM.findall(text):
            found.append((int(number), cell, cells[i + 1] if i + 1 < len(cells) else None))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_page_starts_with_the_setup_cell_collapsed(page):
    first = _cells(page)[0]
    assert _source(first) == setup_cell.source().rstrip("\n")
    assert _tags(first) == {"setup", "hide-cell"}


@pytest.mark.parametrize("page", PAGES)
def test_no_glue_call_in_a_visible_cell(page):
    visible = [c["id"] for c in _cells(page) if c["cell_type"] == "code"
               and re.search(r"\bglue\(", _source(c)) and not _tags(c) & HIDDEN]
    assert visible == []


@pytest.mark.parametrize("page", PAGES)
def test_every_glue_name_the_prose_uses_is_glued_on_the_page(page):
    cells = _cells(page)
    patterns = []
    for cell in cells:
        if cell["cell_type"] == "code":
            for f, _, name in GLUE_CALL.findall(_source(cell)):
                parts = re.split(r"\{[^}]*\}", name) if f else [name]
                patterns.append(re.compile(r"\w+".join(map(re.escape, parts)) + r"\Z"))
    used = {n for c in cells if c["cell_type"] == "markdown" for n in GLUE_USE.findall(_source(c))}
    assert [n for n in sorted(used) if not any(p.match(n) for p in patterns)] == []


def test_chapter_seven_still_glues_the_names_the_overview_reads():
    text = "\n".join(_source(c) for c in _cells("book/07_no_tradeoff") if c["cell_type"] == "code")
    for name in ("ch7_n_distinguishable", "ch7_halfwidth_min", "ch7_halfwidth_max"):
        assert f'glue("{name}"' in text


@pytest.mark.parametrize("page", PAGES)
def test_every_code_line_fits_the_rendered_cell(page):
    long = [(c["id"], ln) for c in _cells(page)[1:] if c["cell_type"] == "code"
            for ln in _source(c).splitlines() if len(ln) > 88]
    assert long == []


@pytest.mark.parametrize("page", PAGES)
def test_every_exercise_has_a_hint_and_a_collapsed_worked_solution(page):
    exercises = _exercises(_cells(page))
    assert [n for n, _, _ in exercises] == list(range(1, len(exercises) + 1)) and exercises
    for number, cell, after in exercises:
        text = _source(cell)
        # one exercise per cell, so that its solution can follow it
        assert len(ITEM.findall(text.split("## Exercises")[-1])) == 1, f"exercise {number}"
        hint = HINT.search(text)
        assert hint and len(hint.group(1).split()) >= 8, f"exercise {number} has no real hint"
        assert text.index(":::{dropdown} Hint") > text.index(f"{number}. ")
        assert after is not None and after["cell_type"] == "code", f"exercise {number}"
        assert "hide-cell" in _tags(after), f"exercise {number}'s solution is not collapsed"
        solution = _source(after)
        assert solution.strip() and "print(" in solution, f"exercise {number} shows nothing"
        # solutions run at build time: no training runs in them
        assert not re.search(r"cross_validate|run_cifar10|run_in_folder|\btrain\(", solution)


@pytest.mark.parametrize("page", PAGES)
def test_no_sentence_or_verdict_is_said_twice(page):
    cells = _cells(page)
    prose = [_source(c) for c in cells if c["cell_type"] == "markdown"]
    text = re.sub(r"\s+", " ", re.sub(r"```.*?```|^:::.*$", " ", "\n".join(prose), flags=re.S | re.M))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 8]
    assert [s for s in set(sentences) if sentences.count(s) > 1] == []
    verdicts = [n for p in prose for n in GLUE_USE.findall(p)
                if re.search(r"verdict|judgement|like_paper|worth|summary|check|fvcore", n)]
    assert [n for n in set(verdicts) if verdicts.count(n) > 1] == []


def _rendered_words(cells, glued):
    """The page's prose as the reader sees it (glue values in place; code, math and directive
    lines out), as lower-case words."""
    prose = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    prose = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|^:::.*$", " ", prose, flags=re.S | re.M)
    prose = GLUE_USE_FULL.sub(lambda m: glued.get(m.group(1), " "), prose)
    return re.findall(r"[a-z0-9'.,%/()\[\]+-]+", prose.lower())


GLUE_USE_FULL = re.compile(r"\{glue:text\}`([^`:]+)[^`]*`")
RUN = 8   # words: a run this long from a glued sentence, found twice, is a repeated verdict


def repeated_glued_text(cells, glued):
    """Runs of RUN words that a glued value (a computed sentence: a verdict, a judgement) puts on
    the page and that the page shows more than once, glued or written."""
    words = _rendered_words(cells, glued)
    runs = {}
    for i in range(len(words) - RUN + 1):
        runs.setdefault(tuple(words[i:i + RUN]), []).append(i)
    used = {n for c in cells if c["cell_type"] == "markdown" for n in GLUE_USE.findall(_source(c))}
    found = set()
    for name in used:
        value = re.findall(r"[a-z0-9'.,%/()\[\]+-]+", glued.get(name, "").lower())
        for i in range(len(value) - RUN + 1):
            if len(runs.get(tuple(value[i:i + RUN]), ())) > 1:
                found.add(" ".join(value[i:i + RUN]))
    return sorted(found)


def test_repeated_glued_text_finds_a_verdict_said_twice():
    cells = [{"cell_type": "markdown", "source": ["{glue:text}`a`. Later: {glue:text}`b`."]}]
    verdict = "no difference this run can resolve, so nothing here repays the compile time"
    assert repeated_glued_text(cells, {"a": verdict, "b": "it costs " + verdict})
    assert repeated_glued_text(cells, {"a": verdict, "b": "1.02 [0.98, 1.05]"}) == []


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_built_page_says_no_glued_verdict_twice(page):
    path = EXECUTED / f"{page}.glue.json"
    require_book(path)
    glued = {k: v["data"]["text/plain"].strip("'\"") for k, v in json.loads(path.read_text()).items()
             if "text/plain" in v["data"]}
    assert repeated_glued_text(_cells(page), glued) == []


def _interval(mean):
    return paired_interval([mean + d for d in (-0.01, 0.0, 0.01, 0.02)], [0.0] * 4)


def test_paired_intervals_draws_one_bar_per_comparison_top_down_and_a_line_at_zero():
    ivs = {"above": _interval(0.05), "across": _interval(0.0), "below": _interval(-0.05)}
    fig = plots.paired_intervals(ivs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(ivs)
    bars = ax.containers
    assert len(bars) == 3
    for i, (bar, iv) in enumerate(zip(bars, ivs.values())):
        (x,), (y,) = bar.lines[0].get_data()
        assert (x, y) == (pytest.approx(100 * iv.mean), i)
        (segment,) = bar.lines[2][0].get_segments()
        assert [p[0] for p in segment] == [pytest.approx(100 * iv.low), pytest.approx(100 * iv.high)]
    low, high = ax.get_ylim()
    assert low > high                                  # the first comparison is drawn on top
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)
    plt.close(fig)


@pytest.mark.parametrize("bad, error", [({}, ValueError), ([], ValueError),
                                        ({"x": (0.0, -1.0, 1.0)}, TypeError)])
def test_paired_intervals_refuses_what_is_not_a_dict_of_intervals(bad, error):
    with pytest.raises(error, match="intervals"):
        plots.paired_intervals(bad)


def test_paired_intervals_refuses_a_bad_scale_or_axes():
    with pytest.raises(ValueError, match="scale"):
        plots.paired_intervals({"a": _interval(0.1)}, scale=float("nan"))
    with pytest.raises(TypeError, match="ax"):
        plots.paired_intervals({"a": _interval(0.1)}, ax="left")

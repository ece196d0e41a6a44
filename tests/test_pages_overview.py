"""The two new pages: "CSPNet in one page" (book/00_overview) and "From the article's code to the
package" (book/from_article). Each test states a fact a page relies on, so a drifting number, a
changed preset or a page edited out of the book's conventions fails here."""

import ast
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import cspnet_lab  # noqa: E402
from cspnet_lab import bench, costs, plots  # noqa: E402
from cspnet_lab.lab.reference import ARTICLE  # noqa: E402
from cspnet_lab.models.csp import split_channels  # noqa: E402
from cspnet_lab.models.layers import DenseBlock  # noqa: E402
from cspnet_lab.models.registry import ModelSpec  # noqa: E402
from conftest import EXECUTED, ROOT, require_book  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import setup_cell  # noqa: E402

PAGES = {"book/00_overview": 750, "book/from_article": 1250}   # page -> prose-word limit
GLUE_CALL = re.compile(r"""\bglue\(\s*(f?)(["'])(.+?)\2""")
GLUE_USE = re.compile(r"\{glue:text\}`([^`:]+)")


def _cells(page):
    return json.loads((ROOT / f"{page}.ipynb").read_text())["cells"]


def _source(cell):
    return "".join(cell["source"])


def _glued_names(cells):
    """The names the page's code cells glue, as regexes (an f-string name matches any word)."""
    names = []
    for cell in cells:
        if cell["cell_type"] == "code":
            for f, _, name in GLUE_CALL.findall(_source(cell)):
                parts = re.split(r"\{[^}]*\}", name) if f else [name]
                names.append(re.compile(r"\w+".join(map(re.escape, parts)) + r"\Z"))
    return names


# ---------------------------------------------------------------- the article's models

def test_article_presets_have_the_counts_counted_from_the_articles_code():
    assert costs.count_params(cspnet_lab.create_model("article_densenet")) == 1_447_470
    assert costs.count_params(cspnet_lab.create_model("article_cspdensenet")) == 1_274_934
    # the page asserts against the package's record of them: it must say the same
    assert {k: v[0] for k, v in ARTICLE.items()} == {"article_densenet": 1_447_470,
                                                      "article_cspdensenet": 1_274_934}


def test_article_preset_stages_have_the_channels_the_articles_notebook_printed():
    # The article's Codeblock 11 output: part1, part2, dense block, first transition, concat,
    # second transition (none in the last stage).
    printed = [(32, 32, 104, 83, 115, 57), (29, 28, 172, 137, 166, 83),
               (42, 41, 329, 263, 305, 152), (76, 76, 268, 214, 290, None)]
    plans = cspnet_lab.model_config("article_cspdensenet").stages()
    assert [(p.skip_channels, p.dense_channels, p.dense_out_channels, p.dense_transition_channels,
             p.concat_channels, p.transition_channels) for p in plans] == printed
    page = "".join(_source(c) for c in _cells("book/from_article"))
    assert "ARTICLE_PRINTED = [(32, 32, 104, 83, 115, 57), (29, 28, 172, 137, 166, 83)," in page


def test_an_odd_split_gives_the_skip_part_the_extra_channel_as_the_article_does():
    assert split_channels(57, 0.5) == (29, 28)
    assert split_channels(83, 0.5) == (42, 41)


def test_a_dense_block_puts_its_input_first_unlike_the_articles_bottleneck():
    block = DenseBlock(2, 4, 4, 3)
    x = torch.randn(1, 4, 8, 8)
    out = block(x)
    assert out.shape[1] == 4 + 2 * 3 and torch.equal(out[:, :4], x)


def test_fusion_first_on_the_article_preset_needs_its_dense_transition_ratio_unset():
    with pytest.raises(ValueError, match="dense_transition_ratio"):
        cspnet_lab.model_config("article_cspdensenet", fusion="first")
    assert costs.analyze("article_cspdensenet", fusion="first", dense_transition_ratio=None).macs


def test_article_fusion_last_is_wider_than_its_densenet_in_every_stage():
    # from_article: "Fusion last has more parameters ... its stages end wider" (no transition)
    last = cspnet_lab.model_config("article_cspdensenet", fusion="last").stages()
    dense = cspnet_lab.model_config("article_densenet").stages()
    assert all(p.transition_channels is None for p in last)
    assert all(a.out_channels > b.out_channels for a, b in zip(last, dense))
    assert costs.analyze("article_cspdensenet", fusion="last").params > 1_447_470


def test_the_bench_command_the_article_page_shows_parses():
    from cspnet_lab.__main__ import build_parser
    args = build_parser().parse_args(["bench", "--models", "article_densenet",
                                      "article_cspdensenet", "--out", "article.json"])
    assert args.models == ["article_densenet", "article_cspdensenet"]
    assert all(ModelSpec.parse(m).config() for m in args.models)


# ---------------------------------------------------------------- what the overview states

def test_a_half_split_halves_only_the_base_reads_which_are_under_a_fifth_of_densenet121():
    # overview sentence 5: halving the base reads saves "far less than half"
    dn = costs.analyze("densenet121")
    first = costs.analyze("cspdensenet121", fusion="first", widths="matched")
    a, b = costs.macs_terms(dn), costs.macs_terms(first)
    assert a["base reads"] / dn.macs < 0.2
    assert {k for k in a if a[k] != b[k]} == {"base reads"}
    assert abs(b["base reads"] / a["base reads"] - 0.5) < 0.01


def test_the_defaults_stages_are_narrower_and_width_matched_csp_costs_more_for_its_transition():
    dn = cspnet_lab.model_config("densenet121").stages()
    narrow = cspnet_lab.model_config("cspdensenet121").stages()
    matched = cspnet_lab.model_config("cspdensenet121", widths="matched").stages()
    assert all(c.out_channels < d.out_channels for c, d in zip(narrow, dn))
    assert all(p.dense_transition_channels == p.dense_out_channels for p in matched)
    matched_macs = costs.analyze("cspdensenet121", widths="matched").macs
    assert matched_macs > costs.analyze("densenet121").macs


def test_the_committed_cpu_run_has_one_training_row_of_the_default_cspdensenet121():
    cpu = bench.load_results(bench.RESULTS / "bench_cpu.json")
    default = cspnet_lab.model_config("cspdensenet121")
    rows = [r for r in bench.speedups(cpu, "densenet121") if r["status"] == "ok"
            and r["mode"] == "train" and ModelSpec.parse(r["model"]).config() == default]
    (row,) = rows
    assert row["time_ratio_lo"] <= row["time_ratio"] <= row["time_ratio_hi"]


def test_the_overview_runs_chapter_sevens_experiment_with_chapter_sevens_settings():
    # The statements that decide the experiment, compared as syntax trees (layout may differ).
    def settings(page):
        found = {}
        for cell in _cells(page)[1:]:
            if cell["cell_type"] != "code":
                continue
            for node in ast.walk(ast.parse(_source(cell))):
                if isinstance(node, ast.Assign):
                    target = ast.unparse(node.targets[0])
                    if target in ("(FOLDS, SEEDS, EPOCHS, IMAGE_SIZE)", "FOLDS, SEEDS, EPOCHS, "
                                  "IMAGE_SIZE", "COMMON", "VARIANTS", "(x, y)", "x, y",
                                  "FOLD_SETS"):
                        found[target] = ast.dump(node.value)
                elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
                        "ex.cross_validate", "ex.paired_interval", "torch.set_num_threads"):
                    found.setdefault(ast.unparse(node.func), set()).add(ast.dump(node))
        return found
    ours, theirs = settings("book/00_overview"), settings("book/07_no_tradeoff")
    assert len(ours) == 8 and ours["ex.cross_validate"]
    for key in ("ex.cross_validate", "torch.set_num_threads"):
        assert ours[key] <= theirs[key], key
    assignments = [k for k in ours if not k.startswith(("ex.", "torch."))]
    assert len(assignments) == 5
    assert {k: ours[k] for k in assignments} == {k: theirs.get(k) for k in assignments}


def test_stage_diagram_draws_no_empty_skip_bar_for_densenet():
    fig, ax = plt.subplots()
    plots.stage_diagram(cspnet_lab.densenet121().plans[1], ax)
    assert "0" not in [t.get_text() for t in ax.texts]
    assert len(ax.patches) == 3 + 2            # input, block, transition + the two bands between
    plt.close(fig)


# ---------------------------------------------------------------- both pages follow the conventions

@pytest.mark.parametrize("page", PAGES)
def test_page_is_a_notebook_without_outputs_that_starts_with_the_setup_cell(page):
    cells = _cells(page)
    assert _source(cells[0]) == setup_cell.source().rstrip("\n")
    assert set(cells[0]["metadata"]["tags"]) == {"setup", "hide-cell"}
    assert all(c["outputs"] == [] and c["execution_count"] is None
               for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_glue_and_glues_every_name_its_prose_uses(page):
    cells = _cells(page)
    for cell in cells:
        if cell["cell_type"] == "code" and "glue(" in _source(cell):
            assert "remove-input" in cell["metadata"].get("tags", []), _source(cell)[:80]
    names = _glued_names(cells)
    used = {n for c in cells if c["cell_type"] == "markdown" for n in GLUE_USE.findall(_source(c))}
    assert used, "the page glues nothing"
    assert [n for n in sorted(used) if not any(p.match(n) for p in names)] == []


@pytest.mark.parametrize("page", PAGES)
def test_page_code_fits_its_cell_links_resolve_and_prose_is_short(page):
    cells = _cells(page)
    code = [ln for c in cells[1:] if c["cell_type"] == "code" for ln in _source(c).splitlines()]
    assert [ln for ln in code if len(ln) > 88] == []
    prose = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    assert not re.search(r"<(/?)(div|span|br|p|img|a|details|summary)\b", prose), "raw HTML"
    for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", prose):
        assert any((ROOT / "book" / f"{target}{ext}").exists() for ext in (".ipynb", ".md"))
    text = re.sub(r"```.*?```|\$[^$]*\$|\{[a-z:]+\}`[^`]*`", " x ", prose, flags=re.S)
    words = len(re.findall(r"[A-Za-z0-9][A-Za-z0-9'.,%/-]*", re.sub(r"[#*|`>\-\[\]()]", " ", text)))
    assert words <= PAGES[page]


# ---------------------------------------------------------------- the built pages (make test)

def _glue(chapter):
    path = EXECUTED / f"{chapter}.glue.json"
    require_book(path)
    return {k: v["data"]["text/plain"].strip("'") for k, v in json.loads(path.read_text()).items()
            if "text/plain" in v["data"]}


@pytest.mark.slow
def test_built_overview_states_the_counts_and_chapter_sevens_verdict():
    ov, ch7 = _glue("book/00_overview"), _glue("book/07_no_tradeoff")
    rows = costs.savings_table(depths=(121,), part_ratios=(0.5,))
    table = {(r["fusion"], r["widths"]): r for r in rows}
    assert ov["ov_first_macs"] == f"{table[('first', 'matched')]['macs_change_pct']:+.1f}"
    assert ov["ov_csp_macs"] == f"{table[('csp', 'narrow')]['macs_change_pct']:+.1f}"
    assert ov["ov_matched_macs"] == f"{table[('csp', 'matched')]['macs_change_pct']:+.1f}"
    # the same experiment, so the same verdict and intervals as chapter 7
    count, total = re.fullmatch(r"(\w+) of (\d+)", ch7["ch7_n_distinguishable"]).groups()
    assert ov["ov_acc_verdict"].startswith(f"{count} of the {total} CSP variants")
    assert ov["ov_hw_min"] == ch7["ch7_halfwidth_min"]
    assert ov["ov_hw_max"] == ch7["ch7_halfwidth_max"]


@pytest.mark.slow
def test_built_article_page_shows_the_article_counts():
    glued = _glue("book/from_article")
    base, csp = costs.analyze("article_densenet"), costs.analyze("article_cspdensenet")
    assert glued["art_csp_params"] == f"{100 * (csp.params / base.params - 1):+.1f}"
    assert glued["art_csp_macs"] == f"{100 * (csp.macs / base.macs - 1):+.1f}"

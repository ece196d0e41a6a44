"""Chapter 4's figures: the multiply-add terms as stacked bars, the savings table as curves."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cspnet_lab import costs, plots  # noqa: E402


def _terms(**values):
    out = dict.fromkeys(costs.MAC_TERMS, 0)
    out.update({k.replace("_", " "): v for k, v in values.items()})
    return out


def test_macs_breakdown_stacks_each_models_terms_in_order_and_labels_the_change():
    terms = {"ref": _terms(stem=10e6, base_reads=40e6, growth_reads=20e6, transitions=30e6),
             "cut": _terms(stem=10e6, base_reads=20e6, growth_reads=20e6, transitions=40e6)}
    fig = plots.macs_breakdown(terms, reference="ref")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(terms) * len(costs.MAC_TERMS)
    # barh draws one container per term (MAC_TERMS order), each with one bar per model
    for t, container in zip(costs.MAC_TERMS, ax.containers):
        assert container.get_label() == t
        for i, (name, bar) in enumerate(zip(terms, container)):
            before = sum(terms[name][k] for k in costs.MAC_TERMS[:costs.MAC_TERMS.index(t)])
            assert bar.get_x() == pytest.approx(before / 1e6)        # stacked, not overlaid
            assert bar.get_width() == pytest.approx(terms[name][t] / 1e6)
            assert bar.get_y() + bar.get_height() / 2 == pytest.approx(i)
    labels = [t.get_text() for t in ax.texts]
    assert labels == [" 100 M (+0.0 %)", " 90 M (-10.0 %)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ref", "cut"]
    plt.close(fig)


def test_macs_breakdown_of_a_real_split_shows_the_base_reads_halved():
    dense, first = costs.analyze("densenet121"), costs.analyze("cspdensenet121", fusion="first",
                                                               widths="matched")
    terms = {"DenseNet-121": costs.macs_terms(dense), "first": costs.macs_terms(first)}
    fig = plots.macs_breakdown(terms)
    ax = fig.axes[0]
    base = ax.containers[costs.MAC_TERMS.index("base reads")]
    growth = ax.containers[costs.MAC_TERMS.index("growth reads")]
    # a half split (stage inputs 64/128/256/512, all even) reads exactly half the base channels
    assert base[1].get_width() == pytest.approx(base[0].get_width() / 2)
    assert growth[1].get_width() == pytest.approx(growth[0].get_width())
    assert not ax.texts                            # no reference: no totals
    plt.close(fig)


def test_macs_breakdown_refuses_incomplete_terms_and_an_unknown_reference():
    with pytest.raises(ValueError, match=r"terms\['a'\] lacks .*'3x3 convs'"):
        plots.macs_breakdown({"a": {"stem": 1}})
    with pytest.raises(ValueError, match="reference must be one of"):
        plots.macs_breakdown({"a": _terms()}, reference="b")
    with pytest.raises(ValueError, match="at least one model"):
        plots.macs_breakdown({})


def _row(widths, fusion, depth, ratio, pct):
    return dict(widths=widths, fusion=fusion, depth=depth, part_ratio=ratio, macs_change_pct=pct)


def test_savings_curves_puts_each_width_form_in_its_own_panel_sorted_by_part_ratio():
    table = [_row("narrow", "csp", 121, 0.75, -30.0), _row("narrow", "csp", 121, 0.25, -10.0),
             _row("matched", "csp", 121, 0.25, 5.0), _row("matched", "csp", 121, 0.75, 1.0),
             _row("narrow", "first", 121, 0.25, -40.0), _row("narrow", "first", 121, 0.75, -2.0),
             _row("matched", "first", 121, 0.25, -40.0), _row("matched", "first", 121, 0.75, -2.0),
             _row("narrow", "csp", 201, 0.25, -12.0), _row("narrow", "csp", 201, 0.75, -33.0)]
    fig = plots.savings_curves(table)
    narrow, matched = fig.axes[:2]
    assert narrow.get_title() == "widths='narrow'" and matched.get_title() == "widths='matched'"
    lines = {ax.get_title(): {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
                              for ln in ax.get_lines() if not ln.get_label().startswith("_")}
             for ax in (narrow, matched)}
    assert lines["widths='narrow'"] == {"csp, 121": ([0.25, 0.75], [-10.0, -30.0]),
                                        "first, 121": ([0.25, 0.75], [-40.0, -2.0]),
                                        "csp, 201": ([0.25, 0.75], [-12.0, -33.0])}
    assert lines["widths='matched'"] == {"csp, 121": ([0.25, 0.75], [5.0, 1.0]),
                                         "first, 121": ([0.25, 0.75], [-40.0, -2.0])}
    # the shaded band spans the paper's 10-20 % cut
    (band,) = narrow.patches
    ys = band.get_patch_transform().transform(band.get_path().vertices)[:, 1]
    assert (min(ys), max(ys)) == (-20.0, -10.0)
    # the two depths of csp differ in line style, the two fusions in colour
    narrow_lines = {ln.get_label(): ln for ln in narrow.get_lines()}
    assert narrow_lines["csp, 121"].get_linestyle() != narrow_lines["csp, 201"].get_linestyle()
    assert narrow_lines["csp, 121"].get_color() != narrow_lines["first, 121"].get_color()
    plt.close(fig)


@pytest.mark.parametrize("table, band, match", [
    ([], (-20.0, -10.0), "non-empty list"),
    ([{"fusion": "csp"}], (-20.0, -10.0), r"table\[0\] lacks"),
    ([_row("narrow", "csp", 121, 0.5, -9.0)], (-10.0, -20.0), "low < high"),
    ([_row("narrow", "csp", 121, 0.5, -9.0)], (float("nan"), -10.0), "band"),
])
def test_savings_curves_refuses_bad_input(table, band, match):
    with pytest.raises(ValueError, match=match):
        plots.savings_curves(table, band=band)

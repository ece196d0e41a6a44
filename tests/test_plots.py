"""lab/plots: the timing figures of chapter 6 (moved from measure/bench). Chapter figures added this
round have their own files (test_plots_ch4, _ch5, _ch9, test_free_cuts_page)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cspnet_lab import bench, plots  # noqa: E402


def _row(model, verdict, t, lo, hi, mac):
    return dict(model=model, mode="train", verdict=verdict, time_ratio=t, time_ratio_lo=lo,
                time_ratio_hi=hi, mac_ratio=mac, status="ok")


def test_time_ratios_draws_each_interval_in_its_verdicts_colour():
    rows = [_row("cspdensenet121:fusion=csp,part_ratio=0.5", "faster", 0.9, 0.85, 0.95, 0.88),
            _row("cspdensenet121:fusion=last,part_ratio=0.5", "not distinguishable", 1.0, 0.9, 1.1, 0.9),
            dict(_row("densenet169", "slower", 1.2, 1.1, 1.3, 1.1), status="error")]
    fig = plots.time_ratios(rows)
    ax = fig.axes[0]
    dots = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == 1]
    assert [d.get_xdata()[0] for d in dots] == [0.9, 1.0]            # the failed row is not drawn
    assert [d.get_color() for d in dots] == ["#1b7837", "#999999"]   # faster green, n.d. grey
    ticks = [line for line in ax.lines if line.get_marker() == "|" and line.get_markersize() == 10]
    assert [t.get_xdata()[0] for t in ticks] == [0.88, 0.9]
    plt.close(fig)


def test_time_breakdown_shares_stack_to_one():
    prof = {"total_s": 2.0, "by_category_s": {"convolution": 1.0, "batch norm": 0.5, "other": 0.5}}
    rows = [dict(model="densenet121", mode="train", profile=prof), dict(model="x", mode="train")]
    fig = plots.time_breakdown(rows, share=True)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    assert len(widths) == len(bench.CATEGORIES)                      # one bar, one segment per category
    assert sum(widths) == pytest.approx(1.0)
    plt.close(fig)


@pytest.mark.parametrize("draw", [plots.time_ratios, plots.time_breakdown])
@pytest.mark.parametrize("rows", [[], {}, None, [dict(model="x", mode="train", status="error")]])
def test_timing_figures_refuse_rows_with_nothing_to_draw(draw, rows):
    # Old code drew an empty figure for [] and {}.
    with pytest.raises(ValueError, match="rows"):
        draw(rows)

"""Claims the book states about the paper's formulas (issue 21 item 6)."""
from cspnet_lab.measure import costs


def test_cio_densenet121_block3_saves_about_a_fifth_not_half():
    # Chapter 3 states 15,744 -> 12,672 (-19.5 %) for c=256, m=24, d=32.
    dense = costs.cio_dense_block(256, 32, 24)
    partial = costs.cio_partial_dense_block(256, 32, 24)
    assert (dense, partial) == (15744, 12672)
    assert round(100 * (partial / dense - 1), 1) == -19.5


def test_cio_saving_near_half_only_when_c_exceeds_growth_term():
    # The saving is c m / 2 out of c m + (m^2 + m) d / 2: near one half only when
    # c >> (m + 1) d / 2, not merely when c > m and c > d.
    def saving(c, d, m):
        return 1 - costs.cio_partial_dense_block(c, d, m) / costs.cio_dense_block(c, d, m)

    d, m = 32, 24
    threshold = (m + 1) * d / 2
    assert abs(saving(threshold, d, m) - 0.25) < 1e-12  # c equal to it: a quarter
    assert saving(100 * threshold, d, m) > 0.49
    assert saving(256, d, m) < 0.25  # c > m and c > d, yet far from half

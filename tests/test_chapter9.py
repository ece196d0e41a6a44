"""Book claims of chapters 7-10 that are computable (BOOK-C)."""
import pytest

from cspnet_lab.lab.reference import PAPER_FUSION_TOP1, paper_drops_inside


def test_paper_fusion_drops_are_the_papers():
    # Figure 4 discussion: fusion last "top-1 only drop 0.1%", fusion first "significantly drops 1.5%".
    assert PAPER_FUSION_TOP1 == {"last": -0.1, "first": -1.5}


def test_an_interval_holding_both_paper_drops_cannot_tell_them_apart():
    # Catches chapter 7's old reading ("consistent with fusion last") for an interval that also holds -1.5.
    assert paper_drops_inside(-2.0, 0.5) == ["last", "first"]
    assert paper_drops_inside(-1.0, 0.5) == ["last"]
    assert paper_drops_inside(-1.6, -1.4) == ["first"]
    assert paper_drops_inside(0.0, 1.0) == []
    assert paper_drops_inside(-1.5, -0.1) == ["last", "first"]    # ends are inside


def test_paper_drops_inside_rejects_bad_input():
    with pytest.raises(ValueError, match="low"):
        paper_drops_inside(1.0, -1.0)
    with pytest.raises(TypeError, match="low and high"):
        paper_drops_inside("a", 1.0)


def test_bottleneck_csp_is_c3_plus_a_block_path_transition():
    # Catches a BottleneckCSP without cv3 (that is C3) or with the wrong widths: its parameters are
    # C3's plus one hidden x hidden 1x1 conv and the concat's BN, minus cv2's own BN.
    import torch
    from cspnet_lab.models.modern import C3, BottleneckCSP
    c1, c2, n = 128, 256, 3
    h = c2 // 2
    b, c = BottleneckCSP(c1, c2, n), C3(c1, c2, n)
    count = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
    assert count(b) - count(c) == h * h + 2 * (2 * h) - 2 * h
    assert b(torch.randn(2, c1, 8, 8)).shape == (2, c2, 8, 8)
    with pytest.raises(ValueError, match="c2"):
        BottleneckCSP(c1, 255)


def test_pelee_bottleneck_is_a_transition_and_full_width_csp_keeps_it():
    # Chapter 9's computational bottleneck.
    # Section 4.5 / Figure 7, counted per conv in a forward pass. Catches a hook count
    # that skips the transitions (PeleeNet's peak would move) and a CSPPeleeNet whose
    # full-width transition after the concat shrank or vanished (its peak would fall);
    # pins fusion last's -23.4 %.
    from cspnet_lab import costs
    from cspnet_lab.models.peleenet import PeleeNet, PeleeNetConfig

    def convs(config):
        rows = costs.trace(PeleeNet(config), 224)
        return {r.name: r.macs for r in rows if r.type == "Conv2d"}

    pelee = convs(PeleeNetConfig())
    top = max(pelee.values())
    assert top == 128 * 128 * 56 * 56
    assert sorted(n for n, m in pelee.items() if m == top) == [
        f"features.transition{i}.conv" for i in (1, 2, 3)]
    for fusion, cut in (("csp", 0.0), ("last", -23.4)):
        layers = convs(PeleeNetConfig(fusion=fusion))
        peak = max(m for n, m in layers.items() if "transition" in n)
        assert peak == max(layers.values())
        assert round(100 * (peak / top - 1), 1) == cut


def test_cio_of_the_authors_cfgs():
    # Chapter 10's memory traffic.
    # Section 4.5: CIO 34.4 M (ResNeXt-50) and 32.6 M (CSPResNeXt-50). Conv input +
    # output elements at the cfgs' 256 x 256, counted on real tensors; the max/avg-pool
    # layers' input + output (from the layer shapes) close the gap. Catches a CIO that
    # drops a conv's input or the pools, or a cfg read at another input size.
    from cspnet_lab import costs, darknet
    conv = {"resnext50": 32_967_656, "csresnext50": 31_198_184}
    paper = {"resnext50": 34.4, "csresnext50": 32.6}
    for name in darknet.AUTHORS_CFGS:
        net = darknet.build(darknet.authors_cfg(name))
        rows = [r for r in costs.trace(net, 256) if r.type == "Conv2d"]
        assert sum(r.io_bytes for r in rows) // 4 == conv[name]
        size = [s.channels * s.height * s.width for s in net.shapes]
        pools = sum(size[i - 1] + size[i] for i, s in enumerate(net.shapes)
                    if s.type in ("maxpool", "avgpool"))
        assert round((conv[name] + pools) / 1e6, 1) == paper[name]
        assert round(conv[name] / 1e6, 1) != paper[name]

"""Chapter 9's code: PeleeNet and its CSP variants, the darknet cfg reader, YOLO's C3/C2f and timm's
CrossStage. Counts are derived here by hand from the architectures, then compared with the code."""

import json
from pathlib import Path

import pytest
import torch

from cspnet_lab import darknet, modern
from cspnet_lab.models.peleenet import (PeleeNet, PeleeNetConfig, analytic_count, bottleneck_channels, count,
                                 params_and_macs, width_search)

FIXTURES = Path(__file__).parent / "fixtures"
CFG = {name: darknet.authors_cfg(name) for name in darknet.AUTHORS_CFGS}


def conv(a, b, k=1, groups=1, bn=True):
    """(parameters, weights) of a conv-BN unit: a b k^2 / groups weights, 2 b BN parameters."""
    w = a * b * k * k // groups
    return w + (2 * b if bn else 0), w


# ---------------------------------------------------------------- PeleeNet

def pelee_by_hand():
    """PeleeNet's parameters and MACs at 224, from the Pelee paper's Table 1 and the bottleneck rule."""
    params = macs = 0

    def add(a, b, k, px):
        nonlocal params, macs
        params += a * b * k * k + 2 * b
        macs += a * b * k * k * px

    add(3, 32, 3, 112 ** 2), add(32, 16, 1, 112 ** 2), add(16, 32, 3, 56 ** 2), add(64, 32, 1, 56 ** 2)
    c = 32
    for layers, width, size in ((3, 1, 56), (4, 2, 28), (8, 4, 14), (6, 4, 7)):
        for i in range(layers):
            cin = c + 32 * i
            inter = min(16 * width // 4 * 4, cin // 8 * 4) if 16 * width > cin / 2 else 16 * width
            add(cin, inter, 1, size ** 2), add(inter, 16, 3, size ** 2)
            add(cin, inter, 1, size ** 2), add(inter, 16, 3, size ** 2), add(16, 16, 3, size ** 2)
        c += 32 * layers
        add(c, c, 1, size ** 2)                  # transition without compression
    return params + 704 * 1000 + 1000, macs + 704 * 1000


def test_peleenet_counts_equal_the_architecture_and_the_published_figures():
    params, macs = pelee_by_hand()
    model = PeleeNet()
    assert sum(p.numel() for p in model.parameters()) == params
    costs = count(PeleeNetConfig())
    assert (costs.params, costs.macs) == (params, macs)
    # The Pelee paper: 2.8 M parameters, 508 M multiply-adds; CSPNet's Table 3: 2.79 M (no BN), 1.017 BFLOPs.
    assert round(params / 1e6, 1) == 2.8 and round(macs / 1e6) == 508
    assert round(costs.weights / 1e6, 2) == 2.79 and abs(costs.bflops - 1.017) < 0.002


def test_peleenet_state_dict_equals_the_authors_pytorch_code():
    reference = json.loads((FIXTURES / "peleenet_reference_shapes.json").read_text())["shapes"]
    ours = {k: list(v.shape) for k, v in PeleeNet().state_dict().items()}
    assert ours == reference


@pytest.mark.parametrize("cin, width, expected", [(32, 1, 16), (128, 2, 32), (256, 4, 64), (40, 4, 20),
                                                  (16, 1, 8)])
def test_bottleneck_rule(cin, width, expected):
    assert bottleneck_channels(cin, 32, width) == expected


@pytest.mark.parametrize("reading, expected", [("dense", (24, 8)), ("bypass", (8, 24))])
def test_the_two_readings_of_gamma(reading, expected):
    plan = PeleeNetConfig(fusion="csp", gamma=0.25, gamma_reading=reading).stages()[0]
    assert (plan.skip_channels, plan.dense_channels) == expected


@pytest.mark.parametrize("overrides", [
    dict(fusion="first", gamma=0.25), dict(fusion="last", gamma_reading="bypass"),
    dict(fusion="csp", dense_transition_ratios=0.5, transition_widths=(96, 200, 400, 800)),
    dict(fusion="last", dense_transition_ratios=(1.5, 1.0, 0.5, 0.25), gamma=0.75),
])
def test_formula_counts_equal_the_modules(overrides):
    cfg = PeleeNetConfig(**overrides)
    assert analytic_count(cfg, 96) == count(cfg, 96)      # the formula's pixels per stage: 24, 12, 6, 3


def test_one_bottleneck_width_for_every_stage():
    assert PeleeNetConfig(bottleneck_width=2).bottleneck_width == (2, 2, 2, 2)


def test_csp_stage_widths_and_forward():
    cfg = PeleeNetConfig(fusion="last", gamma=0.5, dense_transition_ratios=0.5)
    plan = cfg.stages()[0]      # 32 in: 16 skip, 16 dense -> 16 + 3 x 32 = 112 -> dense transition 56
    assert (plan.dense_out_channels, plan.dense_transition_channels, plan.out_channels) == (112, 56, 72)
    model = PeleeNet(cfg).eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
    assert model.classifier.in_features == cfg.stages()[-1].out_channels


def test_fusion_last_pools_after_the_concat_same_as_each_path():
    stage = PeleeNet(fusion="last").features.stage1.eval()
    x = torch.randn(1, 32, 8, 8)
    skip, dense = x.split([16, 16], 1)
    by_path = torch.cat([torch.nn.functional.avg_pool2d(skip, 2),
                         torch.nn.functional.avg_pool2d(stage.dense_transition(stage.block(dense)), 2)], 1)
    torch.testing.assert_close(stage(x), by_path)


@pytest.mark.parametrize("overrides, message", [
    (dict(gamma=0.0), r"gamma must be in \(0, 1\]"), (dict(gamma="half"), "gamma must be a number"),
    (dict(fusion="middle"), "fusion must be one of"), (dict(gamma_reading="both"), "gamma_reading must be"),
    (dict(growth_rate=31), "growth_rate must be even"), (dict(fusion="csp", gamma=1.0), "empties a path"),
    (dict(fusion="csp", gamma=0.01), "a path with no channels"),
    (dict(transition_widths=(1, 2)), "transition_widths must have one entry per stage"),
    (dict(fusion="last", transition_widths=(128, 256, 512, 704)), "does not apply to fusion 'last'"),
    (dict(fusion="csp", dense_transition_ratios=2.5), r"dense_transition_ratios must be in \(0, 2\]"),
    (dict(bottleneck_width=(1, 2)), "bottleneck_width must have one entry per stage"),
    (dict(bottleneck_width=2.5), "bottleneck_width must be a sequence"),
    (dict(fusion="csp", transition_widths="wide"), "transition_widths must be a sequence"),
    (dict(bottleneck_width=(1, 2, 0, 4)), r"bottleneck_width must be a positive integer"),
])
def test_bad_config_is_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        PeleeNetConfig(**overrides)


@pytest.mark.parametrize("size", [97, 30, 0, "224"])
def test_bad_input_size_is_rejected(size):
    with pytest.raises(ValueError, match="input_size must be"):
        analytic_count(PeleeNetConfig(), size)


def test_width_search_ranks_by_distance_to_the_paper():
    rows = width_search("last", dense_ratios=(0.5, 1.0))
    assert [r["score"] for r in rows] == sorted(r["score"] for r in rows) and len(rows) == 4
    best = rows[0]   # full width, bypass reading: cuts 26.1 % and 13.6 % (paper: 21 % and 11 %)
    assert (best["reading"], best["dense_ratio"]) == ("bypass", 1.0)
    assert best["score"] == pytest.approx(abs(best["cut_default"] + 21) + abs(best["cut_g025"] + 11))
    with pytest.raises(ValueError, match="width_scales must be"):
        width_search("last", width_scales=(0.5, 1.0))
    with pytest.raises(ValueError, match="at most 8 scales"):
        width_search("csp", width_scales=tuple(range(1, 10)), per_stage=True)


# ---------------------------------------------------------------- darknet cfgs

@pytest.mark.parametrize("name", sorted(CFG))
def test_cfg_round_trips(name):
    sections = darknet.parse(CFG[name])
    assert darknet.parse(darknet.write(sections)) == sections
    raw_headers = [line.strip() for line in CFG[name].splitlines() if line.startswith("[")]
    assert [f"[{s.type}]" for s in sections] == raw_headers


def resnext_by_hand(csp: bool):
    """(weights without BN, BN parameters, MACs, darknet's other FLOPs) of the authors' (CSP)ResNeXt-50
    at 256 x 256, read off the cfgs' structure: ResNeXt blocks 1x1 -> 3x3 (32 groups) -> 1x1 at widths
    128, 256, 512, 1024. Other FLOPs: the 2x2 max pool (4 per output element of its 64 x 64 x 64 map)
    and one per output element of each [shortcut]."""
    total = [0, 0, 0, 4 * 64 * 64 * 64]

    def add(a, b, k, px, groups=1, bn=True):
        p, w = conv(a, b, k, groups, bn)
        total[0] += w + (0 if bn else b)          # the classifier conv has a bias instead of BN
        total[1] += p - w
        total[2] += w * px

    def resnext(cin, w, out, px, in_px=None):
        add(cin, w, 1, in_px or px), add(w, w, 3, px, groups=32), add(w, out, 1, px)
        total[3] += out * px                         # the block's [shortcut]

    add(3, 64, 7, 128 ** 2)
    px = 64 ** 2                                     # after the 2x2 max pool
    if not csp:
        prev = 64
        for stage, (w, blocks) in enumerate(zip((128, 256, 512, 1024), (3, 4, 6, 3))):
            big, px = px, (px // 4 if stage else px)
            for i in range(blocks):                  # the first block of stages 2-4 has the stride
                resnext(prev if i == 0 else 2 * w, w, 2 * w, px, big if i == 0 else px)
            prev = 2 * w
    else:
        add(64, 128, 1, px), add(64, 64, 1, px)      # stage 1: cross path 128 wide, block path 64
        for i in range(3):
            resnext(64 if i == 0 else 128, 128, 128, px)
        add(128, 128, 1, px), add(256, 256, 1, px)   # transition, concat, transition
        for w, blocks in ((256, 4), (512, 6), (1024, 3)):
            px //= 4
            add(w, w, 3, px, groups=32)              # downsampling 3x3/2 on the last transition's output
            add(w, w, 1, px), add(w, w, 1, px)       # cross path and block path: two 1x1 of one map
            for i in range(blocks - 1):              # the downsampling conv stands for the first block
                resnext(w, w, w, px)
            add(w, w, 1, px), add(2 * w, 2 * w, 1, px)
    add(2048, 1000, 1, 1, bn=False)
    return tuple(total)


# Table 3 (params w/o BN in M, BFLOPs) and the total darknet prints for the cfg (facts.md: 10.12, 7.93).
@pytest.mark.parametrize("name, table3, printed", [("resnext50", (22.19, 10.11), 10.12),
                                                   ("csresnext50", (20.50, 7.93), 7.93)])
def test_resnext_counts_equal_the_cfg_and_table3(name, table3, printed):
    model = darknet.build(CFG[name])
    weights, norm, macs, other = resnext_by_hand(csp=name.startswith("cs"))
    c = darknet.cfg_costs(model)
    assert (c.params, c.macs, c.other_flops) == (weights + norm, macs, other)
    assert (round(weights / 1e6, 2), round(c.bflops, 2)) == table3   # Table 3 counts no BN parameters
    assert round(c.darknet_bflops, 2) == printed                      # convs + max pool + shortcuts
    assert params_and_macs(model, (1, 3, 256, 256)) == (c.params, c.macs)


def test_timm_cspresnext50_differs_from_the_cfg_only_in_stage_1():
    """timm's cspresnext50 (fixture: its state_dict shapes) is the cfg's network except stage 1, where
    the cfg's block path starts 64 wide (its cross path 128) and timm splits one 256-wide 1x1 in halves.
    timm's conv_exp (2w x c) is the cfg's two 1x1 projections of the same map (w x c each)."""
    from collections import Counter
    fixture = json.loads((FIXTURES / "timm_cspresnext50_shapes.json").read_text())

    def normal(shape):                       # a 1x1 conv and a linear layer hold the same matrix
        return tuple(shape[:2]) if all(d == 1 for d in shape[2:]) else tuple(shape)

    theirs = Counter()
    for key, shape in fixture["shapes"].items():
        if len(shape) < 2:
            continue
        if key.endswith("conv_exp.conv.weight"):
            theirs[normal([shape[0] // 2, *shape[1:]])] += 2
        else:
            theirs[normal(shape)] += 1
    with torch.device("meta"):
        model = darknet.build(CFG["csresnext50"])
    ours = Counter(normal(m.conv.weight.shape) for m in model.layers if isinstance(m, torch.nn.Sequential))
    assert ours - theirs == Counter({(64, 64): 1})        # the cfg's 64-wide block-path projection ...
    assert theirs - ours == Counter({(128, 128): 1})      # ... makes the first block's 1x1 read 64, not 128
    # Parameters: timm has 64 x 256 + 128 x 128 weights and 2 x (256 + 128) BN parameters in that place,
    # the cfg 64 x 128 + 64 x 64 + 64 x 128 and 2 x (128 + 64 + 128).
    extra = (64 * 256 + 128 * 128 + 2 * (256 + 128)) - (64 * 128 + 64 * 64 + 64 * 128 + 2 * (128 + 64 + 128))
    assert fixture["parameters"] - darknet.cfg_costs(model).params == extra


def test_cfg_model_runs_and_knows_its_shapes():
    model = darknet.build(CFG["csresnext50"]).eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    route = model.shapes[3]     # [route] layers=-2: back to the max pool's 64 channels
    assert (route.type, route.channels, route.height) == ("route", 64, 64)


def test_shortcut_adds_over_the_flat_prefix_when_shapes_differ():
    s = darknet.Shortcut(0, "linear")
    x, other = torch.zeros(1, 4, 2, 2), torch.arange(8.0).view(1, 2, 2, 2)
    out = s(x, other)
    assert out.flatten().tolist() == list(range(8)) + [0] * 8


@pytest.mark.parametrize("text, message", [
    ("filters=3\n[net]\n", "before any"), ("[convolutional]\nfilters=3\n", "must start with a \\[net\\]"),
    ("[net]\n[yolo]\n", r"\[yolo\] is not supported"), ("[net]\n[route]\nlayers=-1\n", "not an earlier layer"),
    ("[net]\n[convolutional]\nfilters=4\nactivation=mish\n", "activation 'mish' is not supported"),
    ("[net]\nchannels=3\n[convolutional]\nfilters=4\ngroups=2\nactivation=linear\n", "groups=2 must divide"),
    ("[net]\n[conv\n", "unclosed"), ("[net]\nnonsense\n", "expected"),
    ("[net]\n[convolutional]\nfilters=many\n", "filters must be an integer"),
    ("[net]\n[shortcut]\n", "not an integer"),
])
def test_bad_cfg_is_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        darknet.build(text)


# ---------------------------------------------------------------- C3, C2f, CrossStage

def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_c3_and_its_counterpart():
    c1, c2, n, h = 64, 128, 3, 64
    block = conv(h, h, 1)[0] + conv(h, h, 3)[0]
    assert n_params(modern.C3(c1, c2, n)) == 2 * conv(c1, h)[0] + conv(2 * h, c2)[0] + n * block
    full = conv(c2, c2, 1)[0] + conv(c2, c2, 3)[0]
    assert n_params(modern.c3_counterpart(c1, c2, n)) == conv(c1, c2)[0] + n * full
    assert modern.C3(c1, c2, n)(torch.zeros(1, c1, 8, 8)).shape == (1, c2, 8, 8)


def test_c2f_and_its_counterpart():
    c1, c2, n, c = 64, 128, 2, 64
    expected = conv(c1, 2 * c)[0] + conv((2 + n) * c, c2)[0] + n * 2 * conv(c, c, 3)[0]
    assert n_params(modern.C2f(c1, c2, n)) == expected
    assert n_params(modern.c2f_counterpart(c1, c2, n)) == conv(c1, c2)[0] + n * 2 * conv(c2, c2, 3)[0]
    assert modern.C2f(c1, c2, n)(torch.zeros(1, c1, 8, 8)).shape == (1, c2, 8, 8)


def test_cross_stage_and_its_counterpart():
    cin, cout, depth, g = 64, 128, 2, 4
    half = cout // 2
    res = conv(half, half)[0] + conv(half, half, 3, g)[0] + conv(half, half)[0]
    expected = (conv(cin, cout, 3)[0] + conv(cout, cout)[0] + depth * res + conv(half, half)[0]
                + conv(cout, cout)[0])
    stage = modern.CrossStage(cin, cout, depth, 2, 1.0, g)
    assert n_params(stage) == expected
    full = conv(cout, cout)[0] + conv(cout, cout, 3, g)[0] + conv(cout, cout)[0]
    assert n_params(modern.cross_stage_counterpart(cin, cout, depth, 2, 1.0, g)) == (
        conv(cin, cout, 3)[0] + depth * full)
    assert stage(torch.zeros(1, cin, 16, 16)).shape == (1, cout, 8, 8)


def test_counterparts_with_a_half_width_bottleneck():
    """The counterparts whose blocks have bottleneck ratio 0.5 at full width (YOLOv3's residual block,
    a ResNeXt-50 stage): parameters and multiply-adds by hand, MACs = weights x output pixels."""
    c1, c2, n, h, px = 64, 128, 3, 64, 8 * 8
    c3 = conv(c1, c2)[1] + n * (conv(c2, h)[1] + conv(h, c2, 3)[1])            # 1x1 in, (1x1, 3x3) x n
    assert params_and_macs(modern.c3_counterpart(c1, c2, n, e=0.5), (1, c1, 8, 8)) == (
        c3 + 2 * (c2 + n * (h + c2)), c3 * px)
    c2f = conv(c1, c2)[1] + n * (conv(c2, h, 3)[1] + conv(h, c2, 3)[1])         # 1x1 in, (3x3, 3x3) x n
    assert params_and_macs(modern.c2f_counterpart(c1, c2, n, e=0.5), (1, c1, 8, 8)) == (
        c2f + 2 * (c2 + n * (h + c2)), c2f * px)
    cin, cout, depth, g, m = 64, 128, 2, 4, 64                                  # stride 2: 16 -> 8
    res = conv(cout, m)[1] + conv(m, m, 3, g)[1] + conv(m, cout)[1]
    weights = conv(cin, cout, 3)[1] + depth * res
    assert params_and_macs(modern.cross_stage_counterpart(cin, cout, depth, 2, 0.5, g),
                           (1, cin, 16, 16)) == (weights + 2 * (cout + depth * (m + m + cout)), weights * px)


@pytest.mark.parametrize("make, message", [
    (lambda: modern.c3_counterpart(64, 128, e=0.0), r"e must be in \(0, 1\]"),
    (lambda: modern.c2f_counterpart(64, 128, e="half"), "e must be a number"),
    (lambda: modern.c3_counterpart(64, 2, e=0.25), "0 channels"),
    (lambda: modern.cross_stage_counterpart(64, 128, 1, bottle_ratio=1.5), "bottle_ratio must be in"),
    (lambda: modern.CrossStage(64, 128, 1, bottle_ratio=0), "bottle_ratio must be in"),
])
def test_bad_bottleneck_ratio_is_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make", [lambda: modern.C3(64, 127), lambda: modern.C2f(0, 64),
                                  lambda: modern.CrossStage(64, 128, 1, stride=3),
                                  lambda: modern.C3(64, 128, n=True)])
def test_bad_block_widths_are_rejected(make):
    with pytest.raises(ValueError, match="must be"):
        make()

"""CSPDenseNet: the split, every fusion variant's channel counts, the DenseNet equivalence, the article."""

import itertools

import pytest
import torch

import cspnet_lab
from cspnet_lab import CSPDenseNet, DenseNet, costs, split_channels

SMALL = dict(growth_rate=6, block_config=(3, 2, 2), num_init_features=16, bn_size=2, num_classes=5)


# ---------------------------------------------------------------- the split

@pytest.mark.parametrize("channels, ratio, expected", [
    (64, 0.5, (32, 32)), (65, 0.5, (33, 32)),    # odd: the skip part gets the extra channel
    (64, 0.25, (48, 16)), (64, 0.75, (16, 48)),
    (100, 0.29, (71, 29)),                        # 0.29 x 100 is 28.999999999999996 in floats
    (64, 1.0, (0, 64)),                           # no skip path
])
def test_split_rule(channels, ratio, expected):
    assert split_channels(channels, ratio) == expected


@pytest.mark.parametrize("channels, ratio", [(64, 0.01), (3, 0.2), (2, 0.4)])
def test_split_that_empties_the_dense_path_is_rejected(channels, ratio):
    with pytest.raises(ValueError, match=rf"part_ratio={ratio} splits {channels} channels.*a path with no channels"):
        split_channels(channels, ratio)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01, float("nan"), "half"])
def test_part_ratio_outside_range_is_rejected(ratio):
    with pytest.raises(ValueError, match=r"part_ratio must be (a number )?in \(0, 1\]"):
        CSPDenseNet(part_ratio=ratio)


def test_split_sends_the_first_channels_to_the_skip_path():
    stage = cspnet_lab.cspdensenet121(part_ratio=0.25).features.stage1
    assert (stage.skip_channels, stage.dense_channels) == (48, 16)
    # Zero the skip channels of the input: the dense block sees the same input as before.
    seen = []
    stage.dense.register_forward_pre_hook(lambda m, i: seen.append(i[0].clone()))
    x = torch.randn(1, 64, 8, 8)
    stage.eval()(x)
    x[:, :48] = 0
    stage(x)
    torch.testing.assert_close(seen[0], seen[1])
    torch.testing.assert_close(seen[0], x[:, 48:])


# ---------------------------------------------------------------- channel counts from the formulas

def expected_stages(c0, k, blocks, part_ratio, fusion, compression=0.5, pt_ratio=None):
    """Each stage's (in, skip, dense, dense_out, partial_transition, transition, out) from the chapter's
    formulas:  dense = floor(r c), skip = c - dense, d = dense + L k,
    csp:   pt = floor(p d), out = floor(theta (skip + pt))     (last stage: skip + pt)
    first: out = floor(theta (skip + d))                         (last stage: skip + d)
    last:  pt = floor(p d), out = skip + pt
    with r = part_ratio, theta = compression, p = partial_transition_ratio (default theta)."""
    p = compression if pt_ratio is None else pt_ratio
    rows, c = [], c0
    for i, layers in enumerate(blocks):
        last = i == len(blocks) - 1
        dense = int(round(part_ratio * c, 9) // 1)
        skip = c - dense
        d = dense + layers * k
        pt = None if fusion == "first" else int(round(p * d, 9) // 1)
        joined = skip + (d if pt is None else pt)
        t = None if (last or fusion == "last") else int(round(compression * joined, 9) // 1)
        out = joined if t is None else t
        rows.append((c, skip, dense, d, pt, t, out))
        c = out
    return rows


CONFIGS = list(itertools.product(["csp", "first", "last"], [0.25, 0.5, 0.75, 1.0]))


@pytest.mark.parametrize("fusion, ratio", CONFIGS)
@pytest.mark.parametrize("depth", [121, 201])
def test_stage_channels_follow_the_formula(depth, fusion, ratio):
    model = cspnet_lab.create_model(f"cspdensenet{depth}", fusion=fusion, part_ratio=ratio)
    cfg = model.config
    expected = expected_stages(cfg.num_init_features, cfg.growth_rate, cfg.block_config, ratio, fusion)
    for plan, stage, exp in zip(model.plans, [model.features.get_submodule(f"stage{i}") for i in (1, 2, 3, 4)],
                                expected):
        c, skip, dense, d, pt, t, out = exp
        assert (plan.in_channels, plan.skip_channels, plan.dense_channels) == (c, skip, dense)
        # The modules, not just the plan, carry those widths.
        assert stage.dense.denselayer1.conv1.in_channels == dense
        assert stage.dense.out_channels == d
        if pt is None:
            assert isinstance(stage.partial_transition, torch.nn.Identity)
        else:
            assert (stage.partial_transition.conv.in_channels, stage.partial_transition.conv.out_channels) == (d, pt)
        if t is None:
            assert not hasattr(stage.transition, "conv")
        else:
            assert stage.transition.conv.out_channels == t
        assert plan.out_channels == out
    # And the real tensors agree.
    x = torch.randn(1, 3, 64, 64)
    for i, exp in enumerate(expected, start=1):
        x = model.features.get_submodule(f"stage{i}").eval()(x if i > 1 else model.features[:4](x))
        assert x.shape[1] == exp[-1]


def test_partial_transition_ratio_sets_the_partial_transition_width():
    model = cspnet_lab.cspdensenet121(partial_transition_ratio=1.0)
    expected = expected_stages(64, 32, (6, 12, 24, 16), 0.5, "csp", pt_ratio=1.0)
    assert [p.partial_transition_channels for p in model.plans] == [e[4] for e in expected]
    assert [p.out_channels for p in model.plans] == [128, 256, 512, 1024]  # DenseNet-121's widths


# ---------------------------------------------------------------- fusion first, part_ratio 1.0 is DenseNet

@pytest.mark.parametrize("cfg", [
    SMALL,
    dict(growth_rate=4, block_config=(2, 3), num_init_features=10, compression=0.75, num_classes=3),
    dict(growth_rate=12, block_config=(4, 4, 4), num_init_features=24, stem="cifar", stem_norm=False,
         num_classes=10),
    dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
])
def test_fusion_first_with_part_ratio_1_is_densenet(cfg):
    dense, csp = DenseNet(**cfg), CSPDenseNet(**cfg, fusion="first", part_ratio=1.0)
    assert costs.count_params(csp) == costs.count_params(dense)
    dense_sd, csp_sd = dense.state_dict(), csp.state_dict()
    assert [v.shape for v in dense_sd.values()] == [v.shape for v in csp_sd.values()]
    # Same weights, in the same order, under the paper's names:
    csp.load_state_dict(dict(zip(csp_sd, dense_sd.values())), strict=True)
    x = torch.randn(2, cfg.get("in_channels", 3), 40, 40)
    dense.eval(), csp.eval()
    with torch.no_grad():
        torch.testing.assert_close(csp(x), dense(x))


def test_state_dict_names_read_like_the_paper():
    keys = cspnet_lab.cspdensenet121().state_dict().keys()
    assert "features.stage1.dense.denselayer1.conv1.weight" in keys
    assert "features.stage1.partial_transition.conv.weight" in keys
    assert "features.stage1.transition.conv.weight" in keys
    assert "features.stage4.partial_transition.conv.weight" in keys     # kept in the last stage
    assert "features.stage4.transition.conv.weight" not in keys         # no transition after the last concat


# ---------------------------------------------------------------- fusion last and downsampling

@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_fusion_last_pooling_the_skip_part_equals_pooling_after_the_concat(ratio):
    a = CSPDenseNet(**SMALL, fusion="last", part_ratio=ratio, last_downsample="skip")
    b = CSPDenseNet(**SMALL, fusion="last", part_ratio=ratio, last_downsample="concat")
    assert costs.count_params(a) == costs.count_params(b)
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 3, 48, 48)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    assert isinstance(a.features.stage1.skip, torch.nn.AvgPool2d)
    assert isinstance(b.features.stage1.transition, torch.nn.AvgPool2d)


def test_fusion_last_stage_output_halves_the_resolution_on_both_paths():
    stage = cspnet_lab.cspdensenet121(fusion="last").features.stage1.eval()
    y = stage(torch.randn(1, 64, 56, 56))
    assert y.shape == (1, stage.skip_channels + stage.partial_transition.conv.out_channels, 28, 28)


# ---------------------------------------------------------------- the source article's models

def test_article_models_have_the_articles_parameter_counts():
    # facts.md: the article's DenseNet has 1,447,470 parameters, its CSPDenseNet 1,274,934.
    assert costs.count_params(cspnet_lab.create_model("article_densenet")) == 1_447_470
    assert costs.count_params(cspnet_lab.create_model("article_cspdensenet")) == 1_274_934


def test_article_models_fvcore_totals_match_the_article():
    # facts.md: at 224x224 fvcore counts 0.580 G for the article's DenseNet and 0.555 G for its CSPDenseNet.
    from fvcore.nn import FlopCountAnalysis
    for name, expected in (("article_densenet", 0.580), ("article_cspdensenet", 0.555)):
        analysis = FlopCountAnalysis(cspnet_lab.create_model(name).eval(), torch.zeros(1, 3, 224, 224))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        assert round(analysis.total() / 1e9, 3) == expected


# ---------------------------------------------------------------- presets and bad input

def test_csp_presets_default_to_fusion_csp_and_half_split():
    for depth in (121, 161, 169, 201, 264):
        cfg = cspnet_lab.create_model(f"cspdensenet{depth}").config
        assert (cfg.fusion, cfg.part_ratio) == ("csp", 0.5)
    assert cspnet_lab.cspdensenet_cifar().eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fusion="middle"), "fusion must be one of 'csp', 'first', 'last'; got 'middle'"),
    (dict(last_downsample="both"), "last_downsample must be one of 'skip', 'concat'"),
    (dict(part_ratio=0.001), r"part_ratio=0.001 splits 64 channels into skip=64, dense=0"),
    (dict(growth_rate=0), "growth_rate must be a positive integer"),
    (dict(compression=0), r"compression must be in \(0, 1\]"),
    (dict(partial_transition_ratio=0), r"partial_transition_ratio must be in \(0, 1\]"),
    (dict(fusion="first", partial_transition_ratio=0.5), "fusion 'first' has no partial transition"),
])
def test_bad_csp_configuration_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CSPDenseNet(**kwargs)


def test_bad_input_size_for_csp():
    model = cspnet_lab.cspdensenet121(fusion="last").eval()
    with pytest.raises(ValueError, match=">= 29"):
        model(torch.randn(1, 3, 20, 20))

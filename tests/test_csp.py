"""CSPDenseNet: the split, every fusion variant's channel counts, the DenseNet equivalence, the article."""

import dataclasses

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

# Hand-worked DenseNet-121 stages (c0 = 64, k = 32, L = 6/12/24/16, compression 1/2), one row per stage:
# (in c, skip c', dense c'', dense out d = c'' + L k, dense transition, transition, stage out).
# Stage 1 of csp 0.5, narrow: c'' = floor(64/2) = 32, c' = 32, d = 32 + 6 x 32 = 224, dense transition
# floor(224/2) = 112, concat 32 + 112 = 144, transition floor(144/2) = 72. The other rows the same way.
HAND_WORKED = {
    ("csp", 0.5, "narrow"): [(64, 32, 32, 224, 112, 72, 72), (72, 36, 36, 420, 210, 123, 123),
                             (123, 62, 61, 829, 414, 238, 238), (238, 119, 119, 631, 315, None, 434)],
    ("first", 0.25, "narrow"): [(64, 48, 16, 208, None, 128, 128), (128, 96, 32, 416, None, 256, 256),
                                (256, 192, 64, 832, None, 512, 512), (512, 384, 128, 640, None, None, 1024)],
    ("last", 0.5, "narrow"): [(64, 32, 32, 224, 112, None, 144), (144, 72, 72, 456, 228, None, 300),
                              (300, 150, 150, 918, 459, None, 609), (609, 305, 304, 816, 408, None, 713)],
    # widths="matched": every stage out equals DenseNet-121's 128 / 256 / 512 / 1024.
    # csp keeps the dense path's width (dense transition d -> d); last: dense transition = DenseNet's
    # stage out - skip, e.g. stage 1: 128 - 32 = 96.
    ("csp", 0.5, "matched"): [(64, 32, 32, 224, 224, 128, 128), (128, 64, 64, 448, 448, 256, 256),
                              (256, 128, 128, 896, 896, 512, 512), (512, 256, 256, 768, 768, None, 1024)],
    ("last", 0.5, "matched"): [(64, 32, 32, 224, 96, None, 128), (128, 64, 64, 448, 192, None, 256),
                               (256, 128, 128, 896, 384, None, 512), (512, 256, 256, 768, 768, None, 1024)],
    ("first", 0.5, "matched"): [(64, 32, 32, 224, None, 128, 128), (128, 64, 64, 448, None, 256, 256),
                                (256, 128, 128, 896, None, 512, 512), (512, 256, 256, 768, None, None, 1024)],
}


@pytest.mark.parametrize("fusion, ratio, widths", sorted(HAND_WORKED))
def test_stage_channels_equal_hand_worked_densenet121(fusion, ratio, widths):
    model = cspnet_lab.create_model("cspdensenet121", fusion=fusion, part_ratio=ratio, widths=widths)
    for part, exp in zip(model.stage_parts(), HAND_WORKED[fusion, ratio, widths]):
        c, skip, dense, d, pt, t, out = exp
        plan = part.plan
        assert (plan.in_channels, plan.skip_channels, plan.dense_channels, plan.dense_out_channels) == (c, skip, dense, d)
        assert (plan.dense_transition_channels, plan.transition_channels, plan.out_channels) == (pt, t, out)
        # The modules, not just the plan, carry those widths.
        assert part.block.denselayer1.conv1.in_channels == dense and part.block.out_channels == d
        if pt is None:
            assert part.dense_transition is None
        else:
            assert (part.dense_transition.conv.in_channels, part.dense_transition.conv.out_channels) == (d, pt)
        assert (part.transition.conv.out_channels if part.transition is not None else None) == t
    # And the real tensors agree.
    x = model.features[:4](torch.randn(1, 3, 64, 64))
    for part, exp in zip(model.stage_parts(), HAND_WORKED[fusion, ratio, widths]):
        x = part.run.eval()(x)
        assert x.shape[1] == exp[-1]


@pytest.mark.parametrize("fusion", ["csp", "first", "last"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_matched_widths_equal_densenet_at_every_stage(fusion, ratio):
    for depth in (121, 169, 201):
        dense = [p.out_channels for p in cspnet_lab.create_model(f"densenet{depth}").plans]
        csp = cspnet_lab.create_model(f"cspdensenet{depth}", fusion=fusion, part_ratio=ratio, widths="matched")
        assert [p.out_channels for p in csp.plans] == dense
        assert [p.in_channels for p in csp.plans] == [64] + dense[:-1]


def test_dense_transition_ratio_sets_the_dense_transition_width():
    # ratio 1.0 keeps the dense path's width: with the csp fusion that is the matched form.
    model = cspnet_lab.cspdensenet121(dense_transition_ratio=1.0)
    matched = cspnet_lab.cspdensenet121(widths="matched")
    assert [p.dense_transition_channels for p in model.plans] == [224, 448, 896, 768]
    assert model.plans == matched.plans


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
    assert "features.stage1.dense_transition.conv.weight" in keys
    assert "features.stage1.transition.conv.weight" in keys
    assert "features.stage4.dense_transition.conv.weight" in keys     # kept in the last stage
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
    # The plan records where the pooling is, and the modules follow it.
    assert [p.pool for p in a.plans] == ["paths", "paths", None]
    assert [p.pool for p in b.plans] == ["concat", "concat", None]
    assert not hasattr(b.features.stage1.dense_transition, "pool")


def test_fusion_last_stage_output_halves_the_resolution_on_both_paths():
    stage = cspnet_lab.cspdensenet121(fusion="last").features.stage1.eval()
    y = stage(torch.randn(1, 64, 56, 56))
    assert y.shape == (1, stage.skip_channels + stage.dense_transition.conv.out_channels, 28, 28)


# ---------------------------------------------------------------- the source article's models

def test_article_models_have_the_articles_parameter_counts():
    # facts.md: counted from the article's code (the article prints no counts): 1,447,470 and 1,274,934.
    assert costs.count_params(cspnet_lab.create_model("article_densenet")) == 1_447_470
    assert costs.count_params(cspnet_lab.create_model("article_cspdensenet")) == 1_274_934


def test_article_models_fvcore_totals_match_the_articles_code():
    # facts.md: fvcore on the article's code, models in eval(), at 224x224: 0.5797 G and 0.5554 G.
    for name, expected in (("article_densenet", 0.580), ("article_cspdensenet", 0.555)):
        analysis = costs.fvcore_analysis(cspnet_lab.create_model(name).eval(), torch.zeros(1, 3, 224, 224))
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
    (dict(dense_transition_ratio=0), r"dense_transition_ratio must be in \(0, 1\]"),
    (dict(fusion="first", dense_transition_ratio=0.5), "fusion 'first' has no dense transition"),
    (dict(widths="matched", dense_transition_ratio=0.5), "applies to widths='narrow' only"),
    (dict(widths="wide"), "widths must be one of 'narrow', 'matched'"),
    (dict(growth_rate=1, block_config=(1, 1), fusion="last", widths="matched", part_ratio=0.1), "skip part .* already fills DenseNet's stage output"),
    (dict(memory_efficient="false"), "memory_efficient must be True or False, got 'false'"),
    (dict(pool_first=1), "pool_first must be True or False, got 1"),
])
def test_bad_csp_configuration_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CSPDenseNet(**kwargs)


def test_bad_input_size_for_csp():
    model = cspnet_lab.cspdensenet121(fusion="last").eval()
    with pytest.raises(ValueError, match=">= 29"):
        model(torch.randn(1, 3, 20, 20))


# ---------------------------------------------------------------- pooling before the transition's conv

@pytest.mark.parametrize("fusion", ["csp", "first", "last"])
def test_pool_first_is_the_same_function_with_the_same_state_dict(fusion):
    a = CSPDenseNet(**SMALL, fusion=fusion).eval()
    b = CSPDenseNet(**SMALL, fusion=fusion, pool_first=True).eval()
    assert [k for k in a.state_dict()] == [k for k in b.state_dict()]
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-5, atol=1e-5)
    # Not the same computation: in b every pooling transition's conv sees a quarter of the pixels.
    seen = {}
    for name, m in b.named_modules():
        if isinstance(m, cspnet_lab.Transition) and hasattr(m, "pool"):
            m.conv.register_forward_pre_hook(lambda mod, i, n=name: seen.update({n: i[0].shape[-1]}))
    with torch.no_grad():
        b(torch.randn(1, 3, 48, 48))
    # 48 -> stem 12 -> stage 1 pools to 6, stage 2 to 3: the pooled convs see 6 and 3 pixels wide.
    assert sorted(seen.values()) == [3, 6]


def test_pool_first_transition_commutes_by_hand():
    t = cspnet_lab.Transition(3, 2, pool_first=True).eval()
    ref = cspnet_lab.Transition(3, 2).eval()
    ref.load_state_dict(t.state_dict())
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(t(x), ref(x))
    # And by hand: BN (eval, fresh: identity up to eps) -> ReLU -> mean of each 2x2 window -> 1x1 conv.
    h = torch.relu(x / (1 + 1e-5) ** 0.5)
    pooled = h.reshape(1, 3, 2, 2, 2, 2).mean(dim=(3, 5))
    torch.testing.assert_close(t(x), torch.einsum("oc,nchw->nohw", t.conv.weight[:, :, 0, 0], pooled))


# --------------------------------------------------------------------------- fusion last without a highway

def test_no_default_model_has_a_highway_past_stage_1():
    """Stage 1's skip part is stem channels by definition; no later stage and no classifier input may be."""
    from cspnet_lab import gradients
    for name in cspnet_lab.list_models():
        if not name.startswith(("cspdensenet", "article_csp")):
            continue
        for fusion in ("csp", "first", "last"):
            for widths in ("narrow", "matched"):
                try:
                    config = cspnet_lab.model_config(name, fusion=fusion, widths=widths)
                except ValueError:          # e.g. the article's dense_transition_ratio with widths matched
                    continue
                plans = config.stages()
                assert gradients.highway_channels(plans)[1:] == [0] * (len(plans) - 1), (name, fusion, widths)
                assert gradients.head_highway_channels(plans) == 0, (name, fusion, widths)


def test_the_old_fusion_last_carries_32_stem_channels_to_the_classifier():
    from cspnet_lab import gradients
    for widths in ("narrow", "matched"):
        plans = cspnet_lab.model_config("cspdensenet121", fusion="last", widths=widths,
                                        concat_order="skip_dense").stages()
        assert gradients.highway_channels(plans) == [32, 32, 32, 32]
        assert gradients.head_highway_channels(plans) == 32


def test_fusion_last_puts_the_pooled_skip_part_at_the_back_of_its_output():
    torch.manual_seed(0)
    plan = cspnet_lab.model_config("cspdensenet121", fusion="last", block_config=(2, 2)).stages()[0]
    assert plan.concat_order == "dense_skip"
    stage = cspnet_lab.CSPStage(plan, cspnet_lab.DenseBlock(2, plan.dense_channels, 4, 32)).eval()
    x = torch.randn(1, plan.in_channels, 8, 8)
    out = stage(x)
    pooled_skip = torch.nn.functional.avg_pool2d(x[:, :plan.skip_channels], 2)
    torch.testing.assert_close(out[:, -plan.skip_channels:], pooled_skip)
    old = cspnet_lab.CSPStage(dataclasses.replace(plan, concat_order="skip_dense"), stage.dense).eval()
    old.dense_transition.load_state_dict(stage.dense_transition.state_dict())
    torch.testing.assert_close(old(x)[:, :plan.skip_channels], pooled_skip)


def test_concat_order_is_validated_and_csp_keeps_the_skip_part_first():
    assert cspnet_lab.model_config("cspdensenet121").concat_order == "skip_dense"
    with pytest.raises(ValueError, match="concat_order"):
        cspnet_lab.model_config("cspdensenet121", concat_order="backwards")

"""Costs: the analytic count, traced tensors and fvcore agree layer by layer; CIO, MAC terms, pooling."""

import random

import pytest
import torch

import cspnet_lab
from cspnet_lab import costs

ALL = cspnet_lab.list_models("densenet")


def _size(name):
    return 32 if "cifar" in name else 64


def assert_three_way_agreement(model, size):
    report = costs.analyze(model.config, size)
    traced = {r.name: r for r in costs.trace(model, size)}
    fv = costs.fvcore_macs(model, size)
    for row in report.layers:
        t = traced[row.name]                       # the analytic names are the model's module names
        assert (row.params, row.macs) == (t.params, t.macs), row.name
        assert row.out_hw == t.out_shape[-2:] or row.kind == "linear", row.name
        if row.kind in ("conv", "linear"):
            assert fv[row.name] == row.macs, row.name
            assert row.io_bytes == t.io_bytes, row.name
    with_params = {n for n, r in traced.items() if r.params}
    assert with_params == {r.name for r in report.layers}
    assert report.params == costs.count_params(model)
    assert report.macs == sum(fv.values())


@pytest.mark.parametrize("name", ALL)
def test_every_preset_costs_agree_with_trace_and_fvcore(name):
    assert_three_way_agreement(cspnet_lab.create_model(name), _size(name))


@pytest.mark.parametrize("seed", range(8))
def test_random_valid_configurations_agree_with_fvcore(seed):
    rng = random.Random(seed)
    cfg = dict(growth_rate=rng.randint(1, 12),
               block_config=tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 4))),
               num_init_features=rng.randint(4, 24), bn_size=rng.randint(1, 4),
               compression=rng.choice([0.5, 0.75, 1.0]), num_classes=rng.randint(2, 20),
               in_channels=rng.choice([1, 3]), stem=rng.choice(["imagenet", "cifar"]),
               stem_norm=rng.random() < 0.5, final_norm=rng.random() < 0.5,
               pool_first=rng.random() < 0.5)
    if rng.random() < 0.3:
        model = cspnet_lab.DenseNet(**cfg)
    else:
        fusion = rng.choice(["csp", "first", "last"])
        widths = rng.choice(["narrow", "matched"])
        dt = None if fusion == "first" or widths == "matched" else rng.choice([None, 0.5, 0.8, 1.0])
        model = cspnet_lab.CSPDenseNet(**cfg, fusion=fusion, part_ratio=rng.choice([0.5, 0.75, 1.0]),
                                       dense_transition_ratio=dt, widths=widths,
                                       last_downsample=rng.choice(["skip", "concat"]))
    assert_three_way_agreement(model, (rng.randint(40, 72), rng.randint(40, 72)))


def test_densenet121_multiply_adds_equal_torchvisions_gflops_figure():
    # torchvision documents 2.834 GFLOPS for densenet121 at 224x224 (multiply-adds in effect).
    assert round(costs.analyze("densenet121").macs / 1e9, 3) == 2.834
    assert round(costs.analyze("densenet201").macs / 1e9, 3) == 4.291


def test_conv_multiply_adds_by_hand():
    # conv1 of DenseNet-121's first dense layer: 64 -> 128 channels, 1x1, at 56x56.
    layers = costs.analyze("densenet121").layers
    row = next(r for r in layers if r.name == "features.denseblock1.denselayer1.conv1")
    assert (row.params, row.macs, row.out_hw) == (64 * 128, 56 * 56 * 64 * 128, (56, 56))
    assert row.io_bytes == 4 * (64 + 128) * 56 * 56


@pytest.mark.parametrize("name, kwargs", [("densenet121", {}), ("cspdensenet121", dict(fusion="last")),
                                          ("cspdensenet_cifar", {})])
def test_counter_conventions_convert_to_the_same_number(name, kwargs):
    model = cspnet_lab.create_model(name, **kwargs)
    table = costs.counter_table(model, _size(name))
    ours = table[0]["count"]
    assert [row["as_conv_linear_macs"] for row in table] == [ours] * 4
    by_tool = {row["tool"]: row["count"] for row in table}
    assert by_tool["torch FlopCounterMode"] == 2 * ours              # FLOPs = 2 x multiply-adds
    assert by_tool["fvcore FlopCountAnalysis"] > ours               # + batch norm and pooling


def test_cio_per_block_of_densenet121_by_hand():
    # c m + (m^2 + m) d / 2 with c = base channels, d = growth rate 32, m = layers:
    # 64*6 + 42*16, 128*12 + 156*16, 256*24 + 600*16, 512*16 + 272*16.
    assert costs.analyze("densenet121").cio() == {"stage1": 1_056, "stage2": 4_032, "stage3": 15_744,
                                                  "stage4": 12_544}
    assert costs.cio_dense_block(c=64, d=32, m=6) == 1_056
    # the paper's partial formula halves only the c m term: (64*6 + 42*32) / 2 = 192 + 672
    assert costs.cio_partial_dense_block(c=64, d=32, m=6) == 864


@pytest.mark.parametrize("ratio, dense_in, expected", [(0.25, 16, 768), (0.5, 32, 864), (0.75, 48, 960),
                                                       (1.0, 64, 1056)])
def test_cio_follows_the_real_split(ratio, dense_in, expected):
    # stage 1 of CSPDenseNet-121 (c = 64, m = 6, d = 32): dense_in x 6 + 672, by hand
    plan = cspnet_lab.model_config("cspdensenet121", part_ratio=ratio).stages()[0]
    assert plan.dense_channels == dense_in
    assert costs.analyze("cspdensenet121", part_ratio=ratio).cio()["stage1"] == expected


def test_cio_with_bottleneck_times_pixels_is_the_traced_block_traffic():
    # Each dense layer is two convs: 1x1 reads c + (l-1) d, writes 4d; 3x3 reads 4d, writes d.
    assert costs.cio_with_bottleneck(64, 32, 6) == 64 * 6 + 32 * 15 + 6 * 32 * 9
    model = cspnet_lab.cspdensenet121(part_ratio=0.25)
    traced = {r.name: r for r in costs.trace(model, 64)}
    names = dict((id(m), n) for n, m in model.named_modules())
    for parts in model.stage_parts():
        p = parts.plan
        block_bytes = sum(traced[names[id(m)]].io_bytes for m in parts.block.modules()
                          if isinstance(m, torch.nn.Conv2d))
        hw = traced[names[id(next(iter(parts.block.values())).conv1)]].out_shape[-1] ** 2
        exact = costs.cio_with_bottleneck(p.dense_channels, p.growth_rate, p.num_layers, p.bn_size)
        assert block_bytes == exact * hw * 4, p.index


def test_measured_conv_traffic_equals_the_analytic_one():
    model = cspnet_lab.cspdensenet121(fusion="last", pool_first=True)
    measured = costs.measure_conv_io_bytes(model, 64, batch=2)
    report = costs.analyze(model.config, 64, batch=2)
    assert measured == {k: v["io_bytes"] for k, v in report.by_stage().items() if v["io_bytes"]}


def _densenet121_terms_by_hand():
    # (H W, c0, L) per block; 1x1 conv reads c0 + (l-1) k channels and writes 4k.
    blocks, k = [(56 * 56, 64, 6), (28 * 28, 128, 12), (14 * 14, 256, 24), (7 * 7, 512, 16)], 32
    base = sum(hw * c0 * L * 4 * k for hw, c0, L in blocks)
    growth = sum(hw * 4 * k * k * L * (L - 1) // 2 for hw, c0, L in blocks)
    conv3 = sum(hw * 4 * k * k * 9 * L for hw, c0, L in blocks)
    return base, growth, conv3


def test_macs_terms_of_densenet121_by_hand():
    base, growth, conv3 = _densenet121_terms_by_hand()
    terms = costs.macs_terms(costs.analyze("densenet121"))
    assert (terms["base reads"], terms["growth reads"], terms["3x3 convs"]) == (base, growth, conv3)
    assert terms["stem"] == 112 * 112 * 3 * 64 * 49
    assert terms["transitions"] == 3 * 102_760_448          # 56^2 * 256 * 128, and the same at 28, 14


def test_a_width_matched_half_split_halves_only_the_base_reads():
    base, growth, conv3 = _densenet121_terms_by_hand()
    terms = costs.macs_terms(costs.analyze("cspdensenet121", fusion="first", widths="matched"))
    assert (terms["base reads"], terms["growth reads"], terms["3x3 convs"]) == (base // 2, growth, conv3)


def test_the_peak_layer_is_the_stem_which_no_variant_touches():
    stem, conv3 = 112 * 112 * 3 * 64 * 49, 56 * 56 * 128 * 32 * 9     # conv0; a block-1 3x3 conv
    assert costs.layer_balance(costs.analyze("densenet121"))["peak"] == stem
    for fusion, widths in [("csp", "narrow"), ("first", "narrow"), ("last", "narrow"), ("last", "matched")]:
        b = costs.layer_balance(costs.analyze("cspdensenet121", fusion=fusion, widths=widths))
        assert (b["peak"], b["peak_layer"]) == (stem, "features.conv0"), (fusion, widths)
        assert b["top"][1][1] == conv3
    # Width-matched csp keeps the dense path's 32 + 6 x 32 = 224 channels in its dense transition:
    # a 224 -> 224 1x1 conv at 56x56, larger than the stem.
    b = costs.layer_balance(costs.analyze("cspdensenet121", fusion="csp", widths="matched"))
    assert (b["peak"], b["peak_layer"]) == (56 * 56 * 224 * 224, "features.stage1.dense_transition.conv")


@pytest.mark.parametrize("name, kwargs", [("densenet121", {}), ("cspdensenet121", dict(fusion="csp")),
                                          ("cspdensenet121", dict(fusion="first")),
                                          ("cspdensenet121", dict(fusion="last")),
                                          ("cspdensenet121", dict(fusion="csp", widths="matched"))])
def test_pool_first_cuts_exactly_three_quarters_of_the_pooling_convs(name, kwargs):
    # 224 -> 56, 28, 14: every pooled size is even, so a pooled 1x1 conv costs exactly a quarter.
    plain = costs.analyze(name, **kwargs)
    first = costs.analyze(name, pool_first=True, **kwargs)
    pooling = {f"stage{p.index}": p.pool for p in plain.stages}
    pools_in = {"transition": "transition", "dense_transition": "paths"}   # the conv before the pool
    convs = [r for r in plain.layers if r.kind == "conv" and r.part in pools_in
             and pooling[r.stage] == pools_in[r.part]]
    assert plain.macs - first.macs == sum(3 * r.macs // 4 for r in convs) > 0
    assert plain.params == first.params
    if name == "densenet121":
        assert plain.macs - first.macs == 3 * 3 * 102_760_448 // 4   # three transitions, by hand


def test_pool_first_changes_nothing_where_the_pooling_follows_the_concat():
    plain = costs.analyze("cspdensenet121", fusion="last", last_downsample="concat")
    assert costs.analyze("cspdensenet121", fusion="last", last_downsample="concat",
                         pool_first=True).macs == plain.macs


@pytest.mark.parametrize("kwargs", [dict(fusion="csp"), dict(fusion="first"), dict(fusion="last"),
                                    dict(fusion="last", widths="matched")])
def test_pool_first_models_give_the_same_outputs_with_the_same_weights(kwargs):
    torch.manual_seed(0)
    cfg = dict(growth_rate=8, block_config=(2, 3, 2), num_init_features=16, num_classes=5, **kwargs)
    a = cspnet_lab.CSPDenseNet(**cfg).eval()
    b = cspnet_lab.CSPDenseNet(**cfg, pool_first=True).eval()
    b.load_state_dict(a.state_dict())                 # strict: same state_dict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_analyze_rejects_bad_settings_before_any_work():
    with pytest.raises(ValueError, match="fusion must be one of"):
        costs.analyze("cspdensenet121", fusion="sideways")
    with pytest.raises(ValueError, match="input size 16 is too small.*>= 29"):
        costs.analyze("densenet121", 16)


def test_savings_table_covers_every_variant_in_both_width_forms():
    rows = costs.savings_table()
    assert len(rows) == 3 * 3 * 3 * 2
    by = {(r["depth"], r["fusion"], r["part_ratio"], r["widths"]): r for r in rows}
    for depth in (121, 169, 201):
        for ratio in (0.25, 0.5, 0.75):
            # fusion first has no dense transition: both forms are one network
            assert by[depth, "first", ratio, "narrow"]["macs"] == by[depth, "first", ratio, "matched"]["macs"]
    # Routing fewer channels through the dense blocks always saves more.
    for depth in (121, 169, 201):
        for fusion in ("csp", "first", "last"):
            for widths in ("narrow", "matched"):
                macs = [by[depth, fusion, r, widths]["macs"] for r in (0.25, 0.5, 0.75)]
                assert macs == sorted(macs), (depth, fusion, widths)


def test_pool_paths_runs_each_csp_transition_at_a_quarter_of_the_pixels():
    # DenseNet-121's narrow csp: concat 32 + 112 = 144 -> 72 at 56x56, 36 + 210 = 246 -> 123 at 28x28,
    # 62 + 414 = 476 -> 238 at 14x14; pooling both paths first moves these convs to 28, 14 and 7.
    plain, pooled = costs.analyze("cspdensenet121"), costs.pool_paths("cspdensenet121")
    assert plain.macs - pooled.macs == 3 * (56**2 * 144 * 72 + 28**2 * 246 * 123 + 14**2 * 476 * 238) // 4
    assert pooled.params == plain.params
    assert [p.pool for p in pooled.stages] == ["paths", "paths", "paths", None]
    # with pool_first the dense transitions (224 -> 112, 420 -> 210, 829 -> 414) pool first too
    both = costs.pool_paths("cspdensenet121", pool_first=True)
    assert pooled.macs - both.macs == 3 * (56**2 * 224 * 112 + 28**2 * 420 * 210 + 14**2 * 829 * 414) // 4
    for name, kw in [("densenet121", {}), ("cspdensenet121", dict(fusion="first"))]:
        with pytest.raises(ValueError, match="fusion='csp'"):
            costs.pool_paths(name, **kw)


def test_rounding_the_split_up_gives_stage_3s_odd_channel_to_the_dense_part():
    plain, up = costs.analyze("cspdensenet121"), costs.split_rounded_up("cspdensenet121")
    # only stage 3 has an odd input (123): 62 + 61 becomes 61 + 62, the block outputs 830, not 829,
    # and the dense transition keeps floor(830 / 2) = 415; the concat stays 61 + 415 = 62 + 414.
    assert [(p.skip_channels, p.dense_channels, p.dense_transition_channels, p.out_channels)
            for p in up.stages] == [(32, 32, 112, 72), (36, 36, 210, 123), (61, 62, 415, 238),
                                    (119, 119, 315, 434)]
    # 24 1x1 convs read one more channel (to 128 at 14x14), and the dense transition grows
    assert up.macs - plain.macs == 24 * 14**2 * 128 + 14**2 * (830 * 415 - 829 * 414)
    assert up.params - plain.params == 24 * (128 + 2) + 2 + (830 * 415 - 829 * 414)
    even = dict(fusion="first", widths="matched")          # widths 64, 128, 256, 512: nothing is odd
    assert costs.split_rounded_up("cspdensenet121", **even).macs == costs.analyze(
        "cspdensenet121", **even).macs
    with pytest.raises(ValueError, match="split"):
        costs.split_rounded_up("densenet121")


def test_analyze_refuses_plans_that_do_not_fit_the_config():
    plans = costs.analyze("cspdensenet121").stages
    with pytest.raises(ValueError, match="plans"):
        costs.analyze("cspdensenet121", plans=plans[:3])


def test_pool_paths_counts_what_a_model_with_pooled_paths_runs():
    # The package builds no such model, but CSPStage follows its plan: rebuild each stage from the
    # pooled-paths plan and trace it; every layer's count must match the analytic one.
    from cspnet_lab.models.csp import CSPStage

    model = cspnet_lab.CSPDenseNet(growth_rate=8, block_config=(2, 3, 2), num_init_features=16,
                                   num_classes=5)
    report = costs.pool_paths(model.config, 64)
    for plan in report.stages:
        stage = model.features.get_submodule(f"stage{plan.index}")
        model.features.add_module(f"stage{plan.index}", CSPStage(plan, stage.dense))
    traced = {r.name: r for r in costs.trace(model, 64)}
    for row in report.layers:
        assert (row.params, row.macs, row.io_bytes) == (traced[row.name].params, traced[row.name].macs,
                                                        traced[row.name].io_bytes), row.name
    assert report.macs < costs.analyze(model.config, 64).macs


def test_transition_peaks_paper_bottleneck():
    # DenseNet-121's transition1 is a 1x1 conv 256 -> 128 at 56x56: 256 * 128 * 56 * 56 MACs; the
    # default csp's stage-1 transition is a 1x1 conv 144 -> 72 at 56x56: 144 * 72 * 56 * 56.
    # Catches: a peak taken over all convs (conv0 wins), transitions missed, dense transitions mixed in.
    dn = costs.transition_peaks(costs.analyze("densenet121"))
    assert dn["transition"] == ("features.transition1.conv", 256 * 128 * 56 * 56)
    assert dn["any_transition"] == dn["transition"]
    csp = costs.transition_peaks(costs.analyze("cspdensenet121"))
    assert csp["transition"] == ("features.stage1.transition.conv", 144 * 72 * 56 * 56)
    assert csp["any_transition"][0] == "features.stage1.dense_transition.conv"
    assert csp["transition"][1] < csp["any_transition"][1] < dn["transition"][1]

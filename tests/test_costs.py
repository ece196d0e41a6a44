"""Costs: the analytic count, hook-traced tensors and fvcore agree layer by layer; the counters' conventions."""

import random
import subprocess
import sys

import pytest

import cspnet_lab
from cspnet_lab import costs
from conftest import ROOT

ALL = cspnet_lab.list_models()


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
    cfg = dict(growth_rate=rng.randint(1, 12), block_config=tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 4))),
               num_init_features=rng.randint(4, 24), bn_size=rng.randint(1, 4),
               compression=rng.choice([0.5, 0.75, 1.0]), num_classes=rng.randint(2, 20),
               in_channels=rng.choice([1, 3]), stem=rng.choice(["imagenet", "cifar"]),
               stem_norm=rng.random() < 0.5, final_norm=rng.random() < 0.5)
    if rng.random() < 0.3:
        model = cspnet_lab.DenseNet(**cfg)
    else:
        fusion = rng.choice(["csp", "first", "last"])
        pt = None if fusion == "first" else rng.choice([None, 0.5, 0.8, 1.0])
        model = cspnet_lab.CSPDenseNet(**cfg, fusion=fusion, part_ratio=rng.choice([0.5, 0.75, 1.0]),
                                       partial_transition_ratio=pt,
                                       last_downsample=rng.choice(["skip", "concat"]))
    assert_three_way_agreement(model, (rng.randint(40, 72), rng.randint(40, 72)))


def test_densenet121_multiply_adds_equal_torchvisions_gflops_figure():
    # torchvision documents 2.834 GFLOPS for densenet121 at 224x224 (multiply-adds in effect).
    assert round(costs.analyze("densenet121").macs / 1e9, 3) == 2.834
    assert round(costs.analyze("densenet201").macs / 1e9, 3) == 4.291


def test_conv_multiply_adds_by_hand():
    # conv1 of DenseNet-121's first dense layer: 64 -> 128 channels, 1x1, at 56x56.
    row = next(r for r in costs.analyze("densenet121").layers if r.name == "features.denseblock1.denselayer1.conv1")
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


def test_cio_formulas_are_the_papers():
    c, m, d = 64, 32, 6
    assert costs.cio_dense_block(c, m, d) == c * m + (m * m + m) * d / 2
    assert costs.cio_partial_dense_block(c, m, d) == (c * m + (m * m + m) * d) / 2
    # "a partial dense block saves at most half of the memory traffic"
    for c, m, d in [(64, 32, 6), (256, 32, 24), (24, 12, 16)]:
        assert costs.cio_partial_dense_block(c, m, d) >= costs.cio_dense_block(c, m, d) / 2


def test_measured_conv_traffic_equals_the_analytic_one():
    model = cspnet_lab.cspdensenet121(fusion="csp")
    measured = costs.measure_conv_io_bytes(model, 64, batch=2)
    report = costs.analyze(model.config, 64, batch=2)
    assert measured == {k: v["io_bytes"] for k, v in report.by_stage().items() if v["io_bytes"]}


def test_per_stage_sums_add_up():
    report = costs.analyze("cspdensenet201", fusion="last", part_ratio=0.25)
    stages = report.by_stage()
    assert list(stages) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(s["params"] for s in stages.values()) == report.params
    assert sum(s["macs"] for s in stages.values()) == report.macs


def test_analyze_rejects_bad_settings_before_any_work():
    with pytest.raises(ValueError, match="fusion must be one of"):
        costs.analyze("cspdensenet121", fusion="sideways")
    with pytest.raises(ValueError, match="input_size 16x16 is too small.*>= 29"):
        costs.analyze("densenet121", 16)


def test_savings_table_covers_every_variant_against_its_densenet():
    rows = costs.savings_table()
    assert len(rows) == 3 * 3 * 3
    for row in rows:
        base = costs.analyze(f"densenet{row['depth']}")
        ours = costs.analyze(f"cspdensenet{row['depth']}", fusion=row["fusion"], part_ratio=row["part_ratio"])
        assert row["macs_change_pct"] == pytest.approx(100 * (ours.macs - base.macs) / base.macs)
        assert row["params"] == ours.params
    # Routing fewer channels through the dense blocks always saves more.
    for depth in (121, 169, 201):
        for fusion in ("csp", "first", "last"):
            macs = [r["macs"] for r in rows if r["depth"] == depth and r["fusion"] == fusion]
            assert macs == sorted(macs)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cspnet_lab", *args], capture_output=True, text=True, cwd=ROOT)


def test_compare_command_prints_the_change_in_percent():
    out = _cli("compare", "densenet201", "cspdensenet201", "--fusion", "last", "--part-ratio", "0.5")
    assert out.returncode == 0, out.stderr
    base, other = costs.analyze("densenet201"), costs.analyze("cspdensenet201", fusion="last", part_ratio=0.5)
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith("multiply-adds"))
    assert f"{base.macs:,}" in line and f"{other.macs:,}" in line
    assert f"{100 * (other.macs - base.macs) / base.macs:+.1f}" in line
    assert "parameters" in out.stdout and "conv input+output bytes" in out.stdout and "CIO" in out.stdout


def test_summary_command_and_its_errors():
    out = _cli("summary", "densenet121")
    assert out.returncode == 0 and "7,978,856 parameters" in out.stdout and "2,834,161,664" in out.stdout
    bad = _cli("summary", "densenet999")
    assert bad.returncode == 2 and "known models: densenet121" in bad.stderr
    bad = _cli("compare", "densenet121", "cspdensenet121", "--part-ratio", "1.5")
    assert bad.returncode == 2 and "part_ratio must be in (0, 1]" in bad.stderr

"""Explorers without a browser: a setting in, the right numbers out; the static control's frames."""

import itertools
import json
import re

import pytest

import cspnet_lab
from cspnet_lab import costs, explore
from cspnet_lab.lab.explore import Control, Explorer


def test_growth_explorer_numbers_follow_the_formula():
    r = explore.growth_compute(growth_rate=12, depth="169")
    c, outs = 64, []
    for i, layers in enumerate((6, 12, 32, 32)):
        outs.append(c + layers * 12)
        c = (c + layers * 12) // 2
    assert r["block_out"] == outs
    assert r["params"] == costs.count_params(cspnet_lab.densenet169(growth_rate=12))
    assert r["cio"]["stage1"] == 64 * 6 + 42 * 12 / 2      # c m + (m^2 + m) d / 2, c=64, d=12, m=6


def test_split_explorer_numbers_for_a_setting_worked_by_hand():
    r = explore.split_compute(part_ratio=0.25, growth_rate=32, stage=1)
    # stage 1 of CSPDenseNet-121: c = 64 -> dense 16, skip 48; block 16 + 6 x 32 = 208; dense transition
    # 104; out (48+104)/2. Width-matched: DenseNet's 128.
    assert (r["skip"], r["dense"], r["block_out"], r["dense_transition"], r["out"]) == (48, 16, 208, 104, 76)
    assert r["matched_out"] == 128
    assert r["params"] == costs.count_params(cspnet_lab.cspdensenet121(part_ratio=0.25))
    assert r["matched_params"] == costs.count_params(cspnet_lab.cspdensenet121(part_ratio=0.25,
                                                                                widths="matched"))
    assert r["base_params"] == 7_978_856


@pytest.mark.parametrize("fusion, ratio, depth", [("last", 0.25, "201"), ("first", 0.75, "121")])
def test_fusion_explorer_numbers_are_the_models(fusion, ratio, depth):
    r = explore.fusion_compute(fusion=fusion, part_ratio=ratio, depth=depth)
    model = cspnet_lab.create_model(f"cspdensenet{depth}", fusion=fusion, part_ratio=ratio)
    assert r["params"] == costs.count_params(model)
    matched = cspnet_lab.create_model(f"cspdensenet{depth}", fusion=fusion, part_ratio=ratio, widths="matched")
    assert r["matched_params"] == costs.count_params(matched)
    # torchvision documents 2.834 / 4.291 GFLOPS (multiply-adds) for DenseNet-121 / 201
    assert round(r["base_macs"] / 1e9, 3) == {"121": 2.834, "201": 4.291}[depth]


def test_explorer_rejects_a_setting_that_empties_a_path():
    with pytest.raises(ValueError, match="part_ratio"):
        explore.split_compute(part_ratio=0.001)


def _toy():
    calls = []

    def compute(a=1, b="x"):
        calls.append((a, b))
        return {"a": a, "b": b}

    def draw(r):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.bar([0], [r["a"]])
        return fig
    ex = Explorer("toy", [Control("a", (1, 2, 3), (1, 5, 1), 2), Control("b", ("x", "y"), ("x", "y", "z"), "x")],
                  compute, draw, lambda r: [("a times 10", str(10 * r["a"])), ("b", r["b"])])
    return ex, calls


def test_static_control_has_one_frame_per_grid_point_and_no_network():
    ex, calls = _toy()
    page = ex.static_html(dpi=20, element_id="toy")
    frames = json.loads(re.search(r'<script type="application/json" class="cspnet-frames">(.*?)</script>', page, re.S).group(1))
    assert set(frames) == {f"{a}|{b}" for a, b in itertools.product((1, 2, 3), ("x", "y"))}
    assert "<td>30</td>" in frames["3|y"]["numbers"] and "<td>y</td>" in frames["3|y"]["numbers"]
    assert len({f["png"] for f in frames.values()}) == 3          # the picture depends on a only
    assert not re.search(r"(src|href)=\"https?://", page)           # nothing is fetched
    assert 'value="1"' in page                                    # the slider starts at a=2 (index 1)
    assert frames["2|x"]["png"] in page.split('class="cspnet-frames"')[0]  # and shows that frame first


def test_live_widgets_call_the_same_compute_on_every_change():
    ex, calls = _toy()
    box = ex.live()
    a, b = box.children[0].children
    assert (a.min, a.max, a.value) == (1, 5, 2) and b.options == ("x", "y", "z")
    calls.clear()
    a.value = 5
    b.value = "z"
    assert calls == [(5, "x"), (5, "z")]


@pytest.mark.parametrize("last_downsample", ["skip", "concat"])
def test_dataflow_diagram_draws_pooling_where_the_plan_says(last_downsample):
    import matplotlib.pyplot as plt
    from cspnet_lab import plots

    plan = cspnet_lab.model_config("cspdensenet121", fusion="last",
                                   last_downsample=last_downsample).stages()[0]
    fig = plots.dataflow_diagram(plan)
    texts = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    dense_transition = next(t for t in texts if t.startswith("dense transition"))
    pools = [t for t in texts if t == plots.POOL]
    if last_downsample == "skip":      # pool="paths": in the dense transition and on x0'
        assert plots.POOL in dense_transition and len(pools) == 1
        assert texts.index(pools[0]) < texts.index("concat")
    else:                              # pool="concat": one pooling, after the concat
        assert plots.POOL not in dense_transition and len(pools) == 1
        assert texts.index(pools[0]) > texts.index("concat")
    # the last stage has no pooling at all
    last = cspnet_lab.model_config("cspdensenet121", fusion="last",
                                   last_downsample=last_downsample).stages()[-1]
    fig = plots.dataflow_diagram(last)
    assert not any("pool" in t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)


def test_dataflow_diagram_names_xT_only_for_a_dense_transitions_output():
    import matplotlib.pyplot as plt
    from cspnet_lab import plots

    def labels(**kw):
        plan = cspnet_lab.model_config(**kw).stages()[1]
        fig = plots.dataflow_diagram(plan)
        texts = [t.get_text().split("\n")[0] for t in fig.axes[0].texts]
        plt.close(fig)
        return texts
    # csp: xT after the dense transition, xU after the transition; fusion first has no dense
    # transition, so its transition's output is xU (not xT); DenseNet's stage output is "out".
    assert {"xT", "xU"} <= set(labels(name="cspdensenet121", fusion="csp"))
    first = labels(name="cspdensenet121", fusion="first")
    assert "xU" in first and "xT" not in first
    assert "out" in labels(name="densenet121") and "xU" not in labels(name="densenet121")

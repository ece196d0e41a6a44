"""Chapter 5's figures draw what the plans say: the layer graph's arrows and route counts, the
highway channels per stage."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

import cspnet_lab  # noqa: E402
from cspnet_lab import gradients, plots  # noqa: E402

SMALL = dict(block_config=(3, 3, 3), in_channels=1)


def _drawn(fig):
    ax = fig.axes[0]
    arrows = {p.get_gid()[len("edge:"):]: p for p in ax.patches
              if isinstance(p, FancyArrowPatch)}
    nodes = {t.get_gid()[len("node:"):]: t.get_text() for t in ax.texts
             if (t.get_gid() or "").startswith("node:")}
    return ax, arrows, nodes


@pytest.mark.parametrize("name, kw, layers", [
    ("densenet_cifar", SMALL, 3),
    ("cspdensenet_cifar", dict(SMALL, fusion="csp"), 3),
    ("cspdensenet_cifar", dict(SMALL, fusion="first"), 3),
    ("cspdensenet_cifar", dict(block_config=(4, 2, 2), in_channels=1, fusion="last"), 4),
])
def test_gradient_path_graph_draws_every_arrow_of_the_layer_graph_and_its_route_counts(
        name, kw, layers):
    plan = cspnet_lab.model_config(name, **kw).stages()[0]
    assert plan.num_layers == layers
    fig = plots.gradient_path_graph(plan)
    ax, arrows, nodes = _drawn(fig)
    title = ax.get_title()
    plt.close(fig)
    # One arrow per "is read by" edge, no more, no fewer.
    edges = gradients.stage_graph(plan)
    assert set(arrows) == {f"{a}->{b}" for a, outs in edges.items() for b in outs}
    # x0'' (DenseNet: x0) is read by every dense layer and by the block's output: L + 1 arrows,
    # the ones drawn in the dense colour; x0' has exactly one (to the concat) where it exists.
    dense = [k for k, p in arrows.items()
             if matplotlib.colors.same_color(p.get_edgecolor(), plots.DENSE_COLOR)]
    assert len(dense) == layers + 1 and all(k.startswith("x0''->") for k in dense)
    skip = [k for k, p in arrows.items()
            if matplotlib.colors.same_color(p.get_edgecolor(), plots.SKIP_COLOR)]
    assert skip == (["x0'->concat"] if plan.skip_channels else [])
    # Each box shows its routes from the input: 2^(l-1) for dense layer l (derived by hand).
    for l in range(1, layers + 1):
        assert nodes[f"h{l}"].split("\n") == [f"x{l}", f"{2 ** (l - 1):,}"]
    total = 2 ** layers + (1 if plan.skip_channels else 0)
    assert nodes["output"].endswith(f"\n{total}") and f"{total:,} routes" in title


def test_gradient_path_graph_refuses_what_is_not_a_plan():
    with pytest.raises(TypeError, match="plan must be a StagePlan"):
        plots.gradient_path_graph(cspnet_lab.model_config("densenet_cifar"))


def _bars(fig, prefix, label):
    return [p.get_height() for p in fig.axes[0].patches if p.get_gid() == f"{prefix}:{label}"]


def test_highway_bars_fill_the_highway_counts_and_outline_the_skip_parts():
    cfg = dict(SMALL, widths="matched", fusion="last")
    forms = {
        "last": cspnet_lab.model_config("cspdensenet_cifar", **cfg).stages(),
        "last, old form": cspnet_lab.model_config("cspdensenet_cifar", **cfg,
                                                  concat_order="skip_dense").stages(),
        "csp": cspnet_lab.model_config("cspdensenet_cifar", **dict(cfg, fusion="csp")).stages(),
    }
    fig = plots.highway_bars(forms)
    drawn = {label: (_bars(fig, "highway", label), _bars(fig, "room", label)) for label in forms}
    counts = {label: [t.get_text() for t in fig.axes[0].texts if t.get_gid() == f"count:{label}"]
              for label in forms}
    plt.close(fig)
    # Worked by hand (tests/test_gradients.py): the old form passes stage 1's 12 stem channels on
    # as every later skip part (stages 2, 3: 15 and 17 skip channels) and to the classifier; the
    # default and csp have none after stage 1.
    assert drawn["last, old form"][0] == [12, 12, 12, 12]
    assert drawn["last"][0] == [12, 0, 0, 0] and drawn["csp"][0] == [12, 0, 0, 0]
    for label, plans in forms.items():
        highway, room = drawn[label]
        assert highway == gradients.highway_channels(plans) + [
            gradients.head_highway_channels(plans)]
        assert room == [p.skip_channels for p in plans] + [plans[-1].out_channels]
        assert room[:3] == [12, 15, 17]
        assert counts[label] == [str(int(h)) for h in highway]


@pytest.mark.parametrize("forms, error", [({}, ValueError), ([1], ValueError),
                                          ({"x": []}, ValueError), ({"x": [3]}, TypeError)])
def test_highway_bars_refuse_bad_input(forms, error):
    with pytest.raises(error, match="forms"):
        plots.highway_bars(forms)

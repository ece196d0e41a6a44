"""plots.csp_diagrams (chapters 9 and 10): every channel label it draws is the channel count of the
tensor it names, measured in a real forward pass of the design it draws."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from cspnet_lab.lab import plots  # noqa: E402
from cspnet_lab.models import modern  # noqa: E402
from cspnet_lab.models.peleenet import PeleeNet, PeleeNetConfig  # noqa: E402


def drawn_labels(fig):
    """{tensor name: channel counts drawn for it}, from the text artists the figure holds."""
    labels = {}
    for ax in fig.axes:
        for text in ax.texts:
            if text.get_gid():
                labels.setdefault(text.get_gid(), set()).add(int(text.get_text()))
    return labels


def measured(root, x, names, cross):
    """Channels of each named tensor in a forward pass of ``root`` on ``x``: "a.b" is submodule
    a.b's output, "a.b:in" its input, "input"/"output" the root's; "cross" is
    ``cross[0]`` minus ``cross[1]`` (the part the split sends past the blocks)."""
    seen, hooks = {}, []
    for name in set(names) | set(cross):
        if name in ("input", "output", "cross"):
            continue
        path, _, side = name.partition(":")
        module = root.get_submodule(path)
        if side == "in":
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, n=name: seen.__setitem__(n, args[0].shape[1])))
        else:
            hooks.append(module.register_forward_hook(
                lambda m, args, out, n=name: seen.__setitem__(n, out.shape[1])))
    with torch.no_grad():
        out = root.eval()(x)
    for h in hooks:
        h.remove()
    seen["input"], seen["output"] = x.shape[1], out.shape[1]
    if cross:
        seen["cross"] = seen[cross[0]] - seen[cross[1]]
    return {n: {seen[n]} for n in names}


# Widths unlike the chapters' (128/256), so labels typed in by hand for those would fail.
MODERN = [
    (modern.C3(48, 96, 2), ()),
    (modern.BottleneckCSP(40, 72, 1), ()),
    (modern.C2f(48, 80, 3), ("cv1", "m.0:in")),
    (modern.CrossStage(32, 64, 2, 2, 1.0, 4), ("conv_exp", "blocks:in")),
    (modern.CrossStage(64, 48, 1, 1, 0.5, 1), ("conv_exp", "blocks:in")),     # no downsampling
]


@pytest.mark.parametrize("block, cross", MODERN, ids=lambda v: type(v).__name__)
def test_each_channel_label_equals_the_modules_channels(block, cross):
    labels = drawn_labels(plots.csp_diagrams({"block": block}))
    c1 = next(m for m in block.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    assert labels == measured(block, torch.randn(1, c1, 16, 16), labels, cross)
    # every tensor between the input and the output is labelled: the split, the blocks, the concat
    assert {"input", "output"} < set(labels) and len(labels) >= 6


@pytest.mark.parametrize("fusion", [None, "first", "last", "csp"])
@pytest.mark.parametrize("gamma_reading", ["dense", "bypass"])
def test_pelee_stage_labels_equal_a_forward_pass(fusion, gamma_reading):
    # gamma 0.25 makes the two paths unequal, so a label that swaps skip and dense fails.
    config = PeleeNetConfig(fusion=fusion, gamma=0.25 if fusion else 0.5,
                            gamma_reading=gamma_reading)
    model = PeleeNet(config)
    labels = drawn_labels(plots.csp_diagrams({"stage 3": (model, 3)}))
    cross = ("features.stage3:in", "features.stage3.block:in") if fusion else ()
    names = {n for n in labels if n not in ("input", "output")}
    assert labels == measured(model, torch.randn(1, 3, 64, 64), names, cross)
    skip, dense = config.split(config.stages()[2].in_channels)
    if fusion:
        assert labels["cross"] == {skip} and labels["features.stage3.block:in"] == {dense}
        assert skip != dense


def test_one_row_per_design_and_bad_designs_are_refused():
    with torch.device("meta"):     # counts only: the layout reads module attributes
        fig = plots.csp_diagrams({"a": modern.C3(64, 128), "b": (PeleeNet(), 1)})
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["a", "b"]
    with pytest.raises(TypeError, match="design must be"):
        plots.csp_diagrams({"a": torch.nn.Conv2d(3, 3, 1)})
    with pytest.raises(ValueError, match="index"):
        plots.csp_diagrams({"a": (PeleeNet(), 9)})
    with pytest.raises(ValueError, match="designs"):
        plots.csp_diagrams({})

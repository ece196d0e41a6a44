"""Gradient measures on blocks and graphs small enough to work out by hand."""

import math

import pytest
import torch
from torch import nn

import cspnet_lab
from cspnet_lab import gradients as g


def all_paths(edges, node, target):
    """Brute force: list every route (for the hand check)."""
    if node == target:
        return [[node]]
    return [[node] + rest for nxt in edges[node] for rest in all_paths(edges, nxt, target)]


def test_two_layer_block_has_the_four_routes_listed_by_hand():
    routes = all_paths(g.dense_block_graph(2), "x0", "out")
    assert sorted(routes) == sorted([["x0", "out"], ["x0", "h1", "out"], ["x0", "h2", "out"],
                                     ["x0", "h1", "h2", "out"]])


@pytest.mark.parametrize("layers", range(1, 9))
def test_dense_block_paths_closed_form(layers):
    edges = g.dense_block_graph(layers)
    assert g.count_paths(edges, "x0", "out") == len(all_paths(edges, "x0", "out")) == 2 ** layers
    assert g.dense_block_paths(layers) == 2 ** layers


def _cfg(layers):
    return dict(growth_rate=4, block_config=(layers, 2), num_init_features=8, num_classes=3)


def test_split_merge_routes_of_a_csp_stage_listed_by_hand():
    # Figure 3b: the skip part goes straight to the concat; the dense part through block and
    # dense transition. Two routes: the split doubles DenseNet's one.
    plan = cspnet_lab.CSPDenseNet(**_cfg(3), fusion="csp").plans[0]
    assert sorted(all_paths(g.split_merge_graph(plan), "input", "output")) == sorted([
        ["input", "x0'", "concat", "transition", "output"],
        ["input", "x0''", "dense_block", "dense_transition", "concat", "transition", "output"]])
    dense_plan = cspnet_lab.DenseNet(**_cfg(3)).plans[0]
    assert all_paths(g.split_merge_graph(dense_plan), "input", "output") == [
        ["input", "x0''", "dense_block", "transition", "output"]]


@pytest.mark.parametrize("fusion,modules", [("csp", {"dense_transition", "concat", "transition"}),
                                            ("first", {"concat", "transition"}),
                                            ("last", {"dense_transition", "concat"})])
def test_stage_graph_has_exactly_the_modules_of_the_fusion(fusion, modules):
    plan = cspnet_lab.CSPDenseNet(**_cfg(2), fusion=fusion).plans[0]
    nodes = set(g.stage_graph(plan)) - {"input", "x0'", "x0''", "h1", "h2", "output"}
    assert nodes == modules


@pytest.mark.parametrize("fusion", ["csp", "first", "last"])
@pytest.mark.parametrize("layers", [1, 3, 6])
def test_stage_paths_both_ways_against_enumeration(fusion, layers):
    dense_plan = cspnet_lab.DenseNet(**_cfg(layers)).plans[0]
    csp_plan = cspnet_lab.CSPDenseNet(**_cfg(layers), fusion=fusion).plans[0]
    no_skip = cspnet_lab.CSPDenseNet(**_cfg(layers), fusion=fusion, part_ratio=1.0).plans[0]
    expected = {dense_plan: (1, 2 ** layers), csp_plan: (2, 2 ** layers + 1), no_skip: (1, 2 ** layers)}
    for plan, (split_merge, layer_graph) in expected.items():
        for graph, count in ((g.split_merge_graph(plan), split_merge), (g.stage_graph(plan), layer_graph)):
            assert g.count_paths(graph, "input", "output") == len(all_paths(graph, "input", "output")) == count
        closed = g.stage_paths(plan)
        assert (closed["split_merge"], closed["layer_graph"]) == (split_merge, layer_graph)
    assert g.count_paths(g.stage_graph(csp_plan), "x0'", "output") == 1      # the skip part's own route
    assert g.count_paths(g.stage_graph(csp_plan), "x0''", "output") == 2 ** layers


def _chain(graphs):
    """Stages in a row: stage i's "output" is stage i+1's "input"."""
    edges = {}
    for i, graph in enumerate(graphs):
        name = lambda n, i=i: "end" if (n == "output" and i == len(graphs) - 1) else \
            (f"s{i + 1}:input" if n == "output" else f"s{i}:{n}")
        for node, outs in graph.items():
            if node != "output":
                edges[name(node)] = [name(o) for o in outs]
    edges["end"] = []
    return edges


@pytest.mark.parametrize("name,fusion", [("densenet_cifar", None), ("cspdensenet_cifar", "last"),
                                         ("cspdensenet_cifar", "first")])
def test_network_paths_multiply_over_stages(name, fusion):
    kw = dict(fusion=fusion) if fusion else {}
    plans = cspnet_lab.model_config(name, block_config=(2, 3, 1), **kw).stages()
    skip = 1 if fusion else 0
    for how, graph_fn, per_stage in (("split_merge", g.split_merge_graph, lambda p: 1 + skip),
                                     ("layer_graph", g.stage_graph, lambda p: 2 ** p.num_layers + skip)):
        edges = _chain([graph_fn(p) for p in plans])
        brute = len(all_paths(edges, "s0:input", "end"))
        assert g.network_paths(plans)[how] == brute == math.prod(per_stage(p) for p in plans)


# --------------------------------------------------------------------------- per-consumer terms

def scalar_block(a, b):
    """A dense block with growth 1, bottleneck 1, 1x1 inputs and identity batch norm (eval mode): layer l
    computes h_l = b_l * a_l * relu(sum of its inputs). With positive inputs and weights it is linear."""
    block = cspnet_lab.DenseBlock(len(a), 1, growth_rate=1, bn_size=1).eval()
    for layer, al, bl in zip(block.values(), a, b):
        layer.norm1.eps = layer.norm2.eps = 0.0    # running mean 0, var 1: exactly the identity
        nn.init.constant_(layer.conv1.weight, al)
        nn.init.zeros_(layer.conv2.weight)
        layer.conv2.weight.data[0, 0, 1, 1] = bl   # 3x3 conv on a 1x1 map: only the centre weight acts
    return block


def test_contributions_match_the_hand_derivation():
    a, b = (2.0, 3.0), (0.5, 0.25)
    block = scalar_block(a, b)
    x = torch.rand(4, 1, 1, 1) + 0.5
    g0, g1, g2 = 1.0, -2.0, 4.0
    grad_out = torch.tensor([g0, g1, g2]).view(1, 3, 1, 1).expand(4, 3, 1, 1)
    terms = g.gradient_contributions(block, x, grad_output=grad_out)
    # out = [x0, h1, h2]; h1 = a1 b1 x0; h2 = a2 b2 (x0 + h1).
    dh2 = g2
    dh1 = g1 + dh2 * a[1] * b[1]
    expected_x0 = {"out": g0, "layer1": dh1 * a[0] * b[0], "layer2": dh2 * a[1] * b[1]}
    for consumer, value in expected_x0.items():
        torch.testing.assert_close(terms[0][consumer], torch.full((4, 1, 1, 1), value))
    torch.testing.assert_close(terms[1]["layer2"], torch.full((4, 1, 1, 1), dh2 * a[1] * b[1]))
    assert set(terms[2]) == {"out"}
    # Signs by hand: "out" and "layer2" send back +, "layer1" sends back (-2 + 0.75 * 4) * 1 = +1.
    names, sim = g.contribution_similarity(terms[0])
    assert names == ["layer1", "layer2", "out"]
    torch.testing.assert_close(sim, torch.ones(3, 3, dtype=torch.float64))
    assert all(p.grad is None for p in block.parameters())      # the measure leaves .grad alone


def test_opposite_contributions_have_similarity_minus_one_and_full_overlap():
    block = scalar_block((1.0, 1.0), (1.0, 1.0))
    x = torch.rand(3, 1, 1, 1) + 0.5
    grad_out = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(3, 3, 1, 1)
    terms = g.gradient_contributions(block, x, grad_output=grad_out)[0]
    names, sim = g.contribution_similarity(terms)
    # out sends -1 back; layer2 sends +1; layer1 sends +1 (through layer2). Equal sizes, one direction:
    i = {n: k for k, n in enumerate(names)}
    assert sim[i["out"], i["layer1"]] == pytest.approx(-1.0)
    assert sim[i["layer1"], i["layer2"]] == pytest.approx(1.0)
    assert g.mean_offdiagonal(sim) == pytest.approx(-1 / 3)     # signed cosines cancel...
    assert g.overlap(list(terms.values())) == pytest.approx(1.0)  # ...the overlap does not


def test_contributions_sum_to_autograds_gradient_on_a_real_block():
    block = cspnet_lab.DenseBlock(4, 8, growth_rate=4, bn_size=2).eval()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    grad_out = torch.randn(2, 8 + 16, 6, 6)
    block(x).backward(grad_out)
    terms = g.gradient_contributions(block, x, grad_output=grad_out)
    torch.testing.assert_close(sum(terms[0].values()), x.grad)
    assert len(terms[0]) == 5 and len(terms[4]) == 1
    assert g.mean_duplication(terms)[4] == 0.0                 # a single consumer duplicates nothing


@pytest.mark.parametrize("name", ["densenet_cifar", "cspdensenet_cifar"])
def test_stage_contributions_use_the_real_downstream_gradient(name):
    model = cspnet_lab.create_model(name, block_config=(3, 3, 3), in_channels=1)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    terms = g.stage_contributions(model, x, y, stage=2)
    # Autograd on the whole model: the terms of the block's input sum to its gradient.
    block = model.stage_parts()[1].block
    captured = {}
    handle = block.register_forward_pre_hook(lambda m, i: captured.update(x=i[0]))
    loss = nn.functional.cross_entropy(model.eval()(x), y)
    handle.remove()
    (expected,) = torch.autograd.grad(loss, captured["x"])
    torch.testing.assert_close(sum(terms[0].values()), expected, rtol=1e-4, atol=1e-6)


def test_stage_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="stage must be in 1..3"):
        g.stage_contributions(cspnet_lab.densenet_cifar(in_channels=1), torch.randn(1, 1, 8, 8),
                              torch.tensor([0]), stage=4)


# --------------------------------------------------------------------------- overlap

@pytest.mark.parametrize("terms,expected", [
    ([[1.0, 2.0], [1.0, 2.0]], 1.0),            # identical: all duplicated
    ([[1.0, 2.0], [-1.0, -2.0]], 1.0),          # opposite: the same information, opposite sign
    ([[1.0, 0.0], [0.0, 3.0]], 0.0),            # orthogonal: nothing shared
    ([[1.0, 0.0], [0.0, 0.0]], 0.0),            # one route sends nothing
    ([[1.0, 0.0], [2.0, 0.0]], 0.8),            # parallel, unequal: 2 x 2 / (1 + 4)
    ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], 0.5),  # 2 x (0 + 1 + 1) / (2 x (1 + 1 + 2))
    ([[3.0, 4.0]], 0.0),                        # a single term
])
def test_overlap_by_hand(terms, expected):
    assert g.overlap([torch.tensor(t) for t in terms]) == pytest.approx(expected)


def test_overlap_bad_input():
    assert math.isnan(g.overlap([torch.zeros(3), torch.zeros(3)]))
    with pytest.raises(ValueError, match="at least one"):
        g.overlap([])
    with pytest.raises(ValueError, match="same number of elements"):
        g.overlap([torch.ones(2), torch.ones(3)])


@pytest.mark.parametrize("u2,expected", [
    ([0.0, 1.0, 0.0], 0.0),     # u2 orthogonal to u1
    ([1.0, 0.0, 2.0], 0.8),     # u2 = u1: 2 |<2 u1, u1>| / (||2 u1||^2 + ||u1||^2) = 2 x 10 / (20 + 5)
    ([-2.0, 0.0, -4.0], 1.0),   # u2 = -2 u1: 2 |<2 u1, -2 u1>| / (20 + 20)
])
def test_route_components_two_consumers_by_hand(u2, expected):
    # x0 has two channels that read the same weights w: x0 = [<w, u1>, <w, u2>]. A gradient (2, 1) at
    # x0 reaches w as 2 u1 through channel 1 (the "skip" channel) and 1 u2 through channel 2.
    w = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    u1, u2 = torch.tensor([1.0, 0.0, 2.0]), torch.tensor(u2)
    x0 = torch.stack([w @ u1, w @ u2]).view(1, 2)
    (skip,), (dense,) = g.route_components(x0, [w], torch.tensor([[2.0, 1.0]]), skip_channels=1)
    torch.testing.assert_close(skip, 2.0 * u1)
    torch.testing.assert_close(dense, 1.0 * u2)
    assert g.overlap([skip, dense]) == pytest.approx(expected)
    # The same overlap as direction x size: |cos| x 2r / (1 + r^2), r = ||2 u1|| / ||u2||.
    cos, r = g.route_factors(skip, dense)
    assert r == pytest.approx(2 * math.sqrt(5) / float(u2.norm()))
    assert cos * 2 * r / (1 + r * r) == pytest.approx(expected)
    with pytest.raises(ValueError, match="skip_channels must be in 1..1"):
        g.route_components(x0, [w], torch.ones(1, 2), skip_channels=2)


@pytest.mark.parametrize("a,b,cos,ratio", [
    ([1.0, 0.0], [10.0, 0.0], 1.0, 0.1),        # aligned, 10x apart: O = 20 / 101 although cos = 1
    ([3.0, 4.0], [-6.0, -8.0], 1.0, 0.5),       # opposite, half the size
    ([1.0, 0.0], [0.0, 2.0], 0.0, 0.5),         # orthogonal
    ([1.0, 1.0], [1.0, 0.0], 1 / math.sqrt(2), math.sqrt(2)),  # 45 degrees
])
def test_route_factors_by_hand(a, b, cos, ratio):
    a, b = torch.tensor(a), torch.tensor(b)
    assert g.route_factors(a, b) == pytest.approx((cos, ratio))
    # Two terms: O = 2 |<a, b>| / (||a||^2 + ||b||^2) = |cos| x 2 ||a|| ||b|| / (||a||^2 + ||b||^2).
    assert g.overlap([a, b]) == pytest.approx(cos * 2 * ratio / (1 + ratio ** 2))


def test_route_factors_of_a_silent_route():
    zero, one = torch.zeros(2), torch.tensor([1.0, 0.0])
    cos, r = g.route_factors(zero, one)
    assert math.isnan(cos) and r == 0.0                 # no direction to compare; sends nothing
    cos, r = g.route_factors(one, zero)
    assert math.isnan(cos) and r == math.inf
    assert all(math.isnan(v) for v in g.route_factors(zero, zero))
    with pytest.raises(ValueError, match="same number of elements"):
        g.route_factors(torch.ones(2), torch.ones(3))


def _small(name, **kw):
    torch.manual_seed(0)
    return cspnet_lab.create_model(name, block_config=(2, 2, 2), growth_rate=4, num_init_features=8,
                                   in_channels=1, **kw)


@pytest.mark.parametrize("name,kw", [("densenet_cifar", {}), ("cspdensenet_cifar", dict(fusion="csp")),
                                     ("cspdensenet_cifar", dict(fusion="first")),
                                     ("cspdensenet_cifar", dict(fusion="last"))])
def test_route_gradients_sum_to_the_weights_gradient(name, kw):
    model = _small(name, **kw)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    routes = g.route_gradients(model, x, y)
    assert set(routes) == {2, 3}
    # Every earlier dense layer's two convs, and nothing else: stage 2 sees stage 1's, stage 3 both.
    assert len(routes[2]) == 2 * 2 and len(routes[3]) == 2 * 2 * 2
    loss = nn.functional.cross_entropy(model.eval()(x), y)
    layers = [p.block for p in model.stage_parts()[:2]]
    weights = [getattr(l, c).weight for b in layers for l in b.values() for c in ("conv1", "conv2")]
    total = dict(zip([n for n in routes[3]], torch.autograd.grad(loss, weights)))
    for s, per_weight in routes.items():
        for wname, (skip, dense) in per_weight.items():
            # Stage-1 weights reach the loss only through stage 2's input, and through stage 3's.
            torch.testing.assert_close(skip + dense, total[wname], rtol=1e-4, atol=1e-7)
            assert skip.abs().sum() > 0 or kw.get("fusion") == "last"
    assert all(p.grad is None for p in model.parameters())


def test_fusion_last_skip_route_bypasses_every_earlier_dense_layer():
    # growth 4, 8 stem channels, half split, widths matched: stage 1 of fusion last outputs
    # [pool(x0'), dense transition] = [4 channels, DenseNet's 8 minus 4 = 4 channels], so stage 2's skip
    # part (the first 8 - floor(8 / 2) = 4 channels) is exactly stage 1's skip part, pooled. Its gradient reaches the stem
    # and never a dense layer: the overlap is exactly 0. Fusion first mixes both parts in its transition.
    last = _small("cspdensenet_cifar", fusion="last", widths="matched", concat_order="skip_dense")
    p1, p2 = last.plans[0], last.plans[1]
    assert p2.in_channels == p1.skip_channels + p1.dense_transition_channels
    assert p2.skip_channels == p1.skip_channels                 # derived from the plans, not a run
    assert g.highway_channels(last.plans)[1] == p2.skip_channels
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    for wname, (skip, dense) in g.route_gradients(last, x, y)[2].items():
        assert skip.abs().max() == 0 and dense.abs().max() > 0, wname
    assert g.route_overlap(last, x, y)[2] == 0.0
    # The same silence in the factors: no direction to compare (NaN is left out: a mean of nothing),
    # and a skip route of size 0.
    measures = g.route_measures(last, x, y)[2]
    assert measures["overlap"] == 0.0 and measures["norm_ratio"] == 0.0
    assert math.isnan(measures["cosine"])
    first = _small("cspdensenet_cifar", fusion="first", widths="matched")
    assert g.route_overlap(first, x, y)[2] > 0.0
    assert 0.0 < g.route_measures(first, x, y)[2]["cosine"] <= 1.0


@pytest.mark.parametrize("fusion", ["last", "first"])
def test_highway_channels_send_nothing_to_earlier_dense_layers(fusion):
    # Fusion last in its highway form (concat_order="skip_dense"); the default has no highway.
    # The chapter's model (24 stem channels, growth 12, 3 layers, widths matched): stage 2's x0' has 15
    # channels, of which 12 are highway channels with fusion last (test below). Their gradient reaches
    # the stem only, so dropping them from the skip route leaves its gradient unchanged; the 3 others
    # do carry gradient. Fusion first mixes every channel in its transition: its first 12 carry some.
    torch.manual_seed(0)
    model = cspnet_lab.create_model("cspdensenet_cifar", block_config=(3, 3, 3), in_channels=1,
                                    widths="matched", fusion=fusion, concat_order="skip_dense").eval()
    parts = model.stage_parts()
    assert isinstance(parts[1].run, cspnet_lab.models.csp.CSPStage)
    highway, skip = g.highway_channels(model.plans)[1], parts[1].plan.skip_channels
    assert (highway, skip) == ((12, 15) if fusion == "last" else (0, 15))
    captured = {}
    handle = parts[1].run.register_forward_pre_hook(lambda m, i: captured.update(x=i[0]))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    handle.remove()
    (grad_x0,) = torch.autograd.grad(loss, captured["x"], retain_graph=True)
    weights = [getattr(l, c).weight for l in parts[0].block.values() for c in ("conv1", "conv2")]
    first12, _ = g.route_components(captured["x"], weights, grad_x0, skip_channels=12)
    whole, _ = g.route_components(captured["x"], weights, grad_x0, skip_channels=skip)
    if fusion == "last":
        assert all(t.abs().max() == 0 for t in first12)
    else:
        assert all(t.abs().max() > 0 for t in first12)
    assert all(t.abs().max() > 0 for t in whole)


@pytest.mark.parametrize("name", ["densenet_cifar", "cspdensenet_cifar"])
@pytest.mark.parametrize("training", [True, False])
def test_gradient_measures_restore_train_or_eval_mode(name, training):
    model = _small(name).train(training)
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 10, (2,))
    g.stage_contributions(model, x, y, stage=2)
    assert all(m.training == training for m in model.modules())
    g.route_measures(model, x, y)
    assert all(m.training == training for m in model.modules())


@pytest.mark.parametrize("fusion,order,expected", [("last", "skip_dense", [12, 12, 12]),
                                                   ("last", "dense_skip", [12, 0, 0]),
                                                   ("first", "skip_dense", [12, 0, 0]),
                                                   ("csp", "skip_dense", [12, 0, 0])])
def test_highway_channels_follow_the_concat_layout(fusion, order, expected):
    # 24 stem channels, growth 12, 3 layers, widths matched. Stage 1: x0' = 12 stem channels. Fusion last
    # outputs [pool(x0') (12), xT (30 - 12 = 18)]; stage 2 splits 30 into x0' = 15 = the 12 old skip
    # channels + 3 of xT. Stage 3: 33 channels, x0' = 17 = stage 2's 15 (12 of them highway) + 2 of xT.
    # With "dense_skip" (fusion last's default) stage 1 outputs [xT (18), pool(x0') (12)]: stage 2's
    # x0' is 15 channels of xT. csp and first end with a transition that mixes every channel.
    plans = cspnet_lab.model_config("cspdensenet_cifar", block_config=(3, 3, 3), fusion=fusion,
                                    widths="matched", concat_order=order).stages()
    assert [p.skip_channels for p in plans] == [12, 15, 17]
    assert g.highway_channels(plans) == expected
    dense_plans = cspnet_lab.model_config("densenet_cifar", block_config=(3, 3, 3)).stages()
    assert g.highway_channels(dense_plans) == [0, 0, 0]


def test_route_measures_bad_input():
    one_stage = cspnet_lab.create_model("densenet_cifar", block_config=(2,), in_channels=1)
    with pytest.raises(ValueError, match="at least 2 stages"):
        g.route_gradients(one_stage, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    model = _small("densenet_cifar")
    batches = iter([(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))] * 3)
    for kw, match in ((dict(steps=0, every=1), "steps must be a positive integer"),
                      (dict(steps=2, every=3), "every must be in 1..steps=2"),
                      (dict(steps=2, every=True), "every must be a positive integer")):
        with pytest.raises(ValueError, match=match):
            g.overlap_during_training(model, batches, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), **kw)


def test_overlap_during_training_records_every_nth_step():
    model = _small("cspdensenet_cifar", fusion="csp")
    batches = iter([(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))] * 4)
    rows = g.overlap_during_training(model, batches, torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)),
                                     steps=4, every=2)
    assert [r["step"] for r in rows] == [2, 4]
    assert all(set(r["stages"]) == {2, 3} and 0.0 <= r["mean"] <= 1.0 for r in rows)
    for r in rows:
        assert set(r["measures"]) == {2, 3} and r["means"]["overlap"] == r["mean"]
        assert 0.0 <= r["means"]["cosine"] <= 1.0 and r["means"]["norm_ratio"] > 0.0


def test_overlap_during_training_uses_the_momentum_it_is_given():
    # One step is the same with any momentum (the buffer starts at the gradient); the second is not.
    batches = [(torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))] * 2
    x_eval, y_eval = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    trained = []
    for momentum in (0.0, 0.5):
        model = _small("cspdensenet_cifar", fusion="csp")
        g.overlap_during_training(model, iter(batches), x_eval, y_eval, steps=2, every=2,
                                  momentum=momentum)
        trained.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(*trained)
    model = _small("cspdensenet_cifar", fusion="csp")
    for kw, match in ((dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
                      (dict(momentum=True), "momentum must be in"),
                      (dict(lr=0.0), "lr must be a number > 0")):
        with pytest.raises(ValueError, match=match):
            g.overlap_during_training(model, iter(batches), x_eval, y_eval, steps=2, every=1, **kw)


def test_mean_interval_is_students_t():
    mean, low, high = g.mean_interval([1.0, 2.0, 3.0])
    # sd 1, n 3, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4841 (a normal 1.96 would be 1.13).
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - 2.4841, 2.0 + 2.4841), abs=1e-4)
    assert g.separated((1.0, 0.9, 1.1), (2.0, 1.9, 2.1))
    assert not g.separated((1.0, 0.5, 1.5), (2.0, 1.4, 2.6))
    with pytest.raises(ValueError, match="at least 2 finite"):
        g.mean_interval([1.0])


def test_layer_gradient_norms_cover_every_dense_layer():
    model = cspnet_lab.cspdensenet_cifar(block_config=(2, 2, 2), in_channels=1)
    batches = [(torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))) for _ in range(2)]
    history = g.layer_gradient_norms(model, batches, steps=2)
    assert len(history) == 2 and len(history[0]) == 6
    assert all(v > 0 for v in history[0].values())

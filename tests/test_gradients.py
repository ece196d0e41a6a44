"""Gradient measures on blocks small enough to work out by hand."""

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


@pytest.mark.parametrize("fusion", ["csp", "first", "last"])
@pytest.mark.parametrize("layers", [1, 3, 6])
def test_stage_paths_closed_form(fusion, layers):
    cfg = dict(growth_rate=4, block_config=(layers, 2), num_init_features=8, num_classes=3)
    dense_plan = cspnet_lab.DenseNet(**cfg).plans[0]
    assert g.count_paths(g.stage_graph(dense_plan), "input", "output") == 2 ** layers
    assert g.stage_paths(dense_plan) == {"dense_part": 2 ** layers, "skip_part": 0, "total": 2 ** layers}
    csp_plan = cspnet_lab.CSPDenseNet(**cfg, fusion=fusion).plans[0]
    edges = g.stage_graph(csp_plan)
    assert g.count_paths(edges, "input", "output") == len(all_paths(edges, "input", "output")) == 2 ** layers + 1
    assert g.count_paths(edges, "x0'", "output") == 1          # the skip part has one route, its own
    no_skip = cspnet_lab.CSPDenseNet(**cfg, fusion=fusion, part_ratio=1.0).plans[0]
    assert g.count_paths(g.stage_graph(no_skip), "input", "output") == 2 ** layers


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


def test_opposite_contributions_have_similarity_minus_one():
    block = scalar_block((1.0, 1.0), (1.0, 1.0))
    x = torch.rand(3, 1, 1, 1) + 0.5
    grad_out = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(3, 3, 1, 1)
    names, sim = g.contribution_similarity(g.gradient_contributions(block, x, grad_output=grad_out)[0])
    # out sends -1 back; layer2 sends +1; layer1 sends +1 (through layer2).
    i = {n: k for k, n in enumerate(names)}
    assert sim[i["out"], i["layer1"]] == pytest.approx(-1.0)
    assert sim[i["layer1"], i["layer2"]] == pytest.approx(1.0)
    assert g.mean_offdiagonal(sim) == pytest.approx(-1 / 3)


def test_a_consumer_that_ignores_the_map_gives_nan_not_a_number():
    block = scalar_block((0.0, 1.0), (1.0, 1.0))           # layer 1's weights are zero
    x = torch.rand(2, 1, 1, 1) + 0.5
    names, sim = g.contribution_similarity(g.gradient_contributions(block, x)[0])
    assert math.isnan(sim[names.index("layer1"), names.index("out")])


def test_contributions_sum_to_autograds_gradient_on_a_real_block():
    block = cspnet_lab.DenseBlock(4, 8, growth_rate=4, bn_size=2).eval()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    grad_out = torch.randn(2, 8 + 16, 6, 6)
    block(x).backward(grad_out)
    terms = g.gradient_contributions(block, x, grad_output=grad_out)
    torch.testing.assert_close(sum(terms[0].values()), x.grad)
    assert len(terms[0]) == 5 and len(terms[4]) == 1


@pytest.mark.parametrize("name", ["densenet_cifar", "cspdensenet_cifar"])
def test_stage_contributions_use_the_real_downstream_gradient(name):
    model = cspnet_lab.create_model(name, block_config=(3, 3, 3), in_channels=1)
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    terms = g.stage_contributions(model, x, y, stage=2)
    # Compare with autograd on the whole model: the terms of the block's input sum to its gradient.
    block, block_in = _block_and_input(model, x, 2)
    block_in.requires_grad_(True)
    handle = block.register_forward_pre_hook(lambda m, i: (block_in,))
    nn.functional.cross_entropy(model.eval()(x), y).backward()
    handle.remove()
    torch.testing.assert_close(sum(terms[0].values()), block_in.grad, rtol=1e-4, atol=1e-6)


def _block_and_input(model, x, stage):
    model.eval()
    with torch.no_grad():
        for name, module in model.features.named_children():
            if name in (f"denseblock{stage}", f"stage{stage}"):
                if name.startswith("stage"):
                    return module.dense, x[:, module.skip_channels:].clone()
                return module, x.clone()
            x = module(x)


def test_stage_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="stage must be in 1..3"):
        g.stage_contributions(cspnet_lab.densenet_cifar(in_channels=1), torch.randn(1, 1, 8, 8),
                              torch.tensor([0]), stage=4)


def test_layer_gradient_norms_cover_every_dense_layer():
    model = cspnet_lab.cspdensenet_cifar(block_config=(2, 2, 2), in_channels=1)
    batches = [(torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))) for _ in range(2)]
    history = g.layer_gradient_norms(model, batches, steps=2)
    assert len(history) == 2 and len(history[0]) == 6
    assert all(v > 0 for v in history[0].values())

"""DenseNet: exactly torchvision's (counts, names, shapes, logits), and its bad inputs."""

import json

import pytest
import torch
from torch import nn

import cspnet_lab
from cspnet_lab import DenseNet, costs
from conftest import FIXTURES

# torchvision's published parameter counts (its model docs; ../shared/reference/facts.md).
TORCHVISION_PARAMS = {"densenet121": 7_978_856, "densenet161": 28_681_000,
                      "densenet169": 14_149_480, "densenet201": 20_013_928}


def densenet_params(growth_rate, block_config, num_init_features, bn_size=4, num_classes=1000, in_channels=3):
    """Parameter count from the architecture alone (torchvision's layout): no model is built."""
    k, c = growth_rate, num_init_features
    total = in_channels * c * 7 * 7 + 2 * c                       # conv0, norm0
    for i, layers in enumerate(block_config):
        for l in range(layers):
            cin = c + l * k
            total += 2 * cin + cin * bn_size * k + 2 * bn_size * k + bn_size * k * k * 9
        c += layers * k
        if i < len(block_config) - 1:
            total += 2 * c + c * (c // 2)                             # transition: norm, 1x1 conv
            c //= 2
    return total + 2 * c + c * num_classes + num_classes             # norm5, classifier


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision_published(name):
    model = cspnet_lab.create_model(name)
    assert costs.count_params(model) == TORCHVISION_PARAMS[name]
    cfg = cspnet_lab.models.registry.PRESETS[name][1]
    assert densenet_params(**cfg) == TORCHVISION_PARAMS[name]


def test_densenet264_matches_the_architecture_formula():
    # DenseNet paper Table 1: growth 32, blocks (6, 12, 64, 48).
    assert costs.count_params(cspnet_lab.densenet264()) == densenet_params(32, (6, 12, 64, 48), 64)


@pytest.mark.parametrize("name", [n for n in cspnet_lab.list_models() if "densenet" in n and "csp" not in n])
def test_every_dense_block_outputs_c0_plus_L_times_k(name):
    model = cspnet_lab.create_model(name)
    cfg = model.config
    c0 = cfg.num_init_features
    blocks = [part.block for part in model.stage_parts()]
    assert len(blocks) == len(cfg.block_config)
    for block, layers in zip(blocks, cfg.block_config):
        assert block.out_channels == c0 + layers * cfg.growth_rate
        # The last layer's first conv really sees c0 + (L-1) k channels.
        assert list(block.values())[-1].conv1.in_channels == c0 + (layers - 1) * cfg.growth_rate
        c0 = int((c0 + layers * cfg.growth_rate) * cfg.compression)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_state_dict_keys_and_shapes_are_torchvisions(name):
    reference = json.loads((FIXTURES / "torchvision_densenet_keys.json").read_text())[name]
    ours = [[k, list(v.shape)] for k, v in cspnet_lab.create_model(name).state_dict().items()]
    assert ours == reference["state_dict"]


def test_torchvision_checkpoint_loads_strict_and_gives_the_same_logits():
    # Written by scripts/torchvision_fixtures.py with a real torchvision DenseNet (see the script).
    fx = torch.load(FIXTURES / "torchvision_tiny_densenet.pt", weights_only=True)
    model = DenseNet(**fx["config"]).eval()
    model.load_state_dict(fx["state_dict"], strict=True)
    with torch.no_grad():
        logits = model(fx["input"])
    torch.testing.assert_close(logits, fx["logits"], rtol=1e-5, atol=1e-5)


def test_initialisation_follows_torchvision():
    # BatchNorm's weight 1 / bias 0 is PyTorch's own default, so it is not checked: only what our init
    # changes. A Linear's default bias is uniform, not 0; a conv's default is Kaiming-uniform with a=sqrt(5).
    model = DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=5)
    assert torch.all(model.classifier.bias == 0)
    # Kaiming normal, fan_in, gain sqrt(2): std = sqrt(2 / fan_in).
    conv = cspnet_lab.densenet121().features.denseblock3.denselayer20.conv1
    fan_in = conv.in_channels
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.03)


def test_memory_efficient_gives_the_same_outputs_and_gradients():
    cfg = dict(growth_rate=6, block_config=(3, 2), num_init_features=8, bn_size=2, num_classes=4, drop_rate=0.0)
    plain = DenseNet(**cfg)
    efficient = DenseNet(**cfg, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(3, 3, 32, 32)
    out_a, out_b = plain(x), efficient(x)
    torch.testing.assert_close(out_a, out_b)
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    for (name, pa), pb in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_memory_efficient_really_checkpoints():
    # Checkpointing drops each layer's concatenation and BN-ReLU output from the saved activations.
    cfg = dict(growth_rate=8, block_config=(6, 6), num_init_features=16, num_classes=4)
    x = torch.randn(2, 3, 32, 32)
    plain = costs.saved_tensor_bytes(DenseNet(**cfg), x)
    efficient = costs.saved_tensor_bytes(DenseNet(**cfg, memory_efficient=True), x)
    assert efficient < 0.7 * plain  # DenseNet-121 at 224x224: 0.48 (the book measures it)


def test_dropout_is_active_only_in_training():
    model = DenseNet(growth_rate=4, block_config=(2,), num_init_features=8, drop_rate=0.5, num_classes=3)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_cifar_stem_keeps_resolution_and_takes_tiny_inputs():
    model = cspnet_lab.densenet_cifar()
    assert model.min_input_size == 4  # two transitions halve 4 -> 2 -> 1
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(growth_rate=0), "growth_rate must be a positive integer"),
    (dict(growth_rate=-4), "growth_rate must be a positive integer"),
    (dict(growth_rate=2.5), "growth_rate must be a positive integer"),
    (dict(block_config=()), "block_config must be a non-empty sequence"),
    (dict(block_config=(6, 0, 3)), "block_config must be a non-empty sequence"),
    (dict(block_config=(6, -1)), "block_config must be a non-empty sequence"),
    (dict(compression=0.0), r"compression must be in \(0, 1\]"),
    (dict(compression=1.5), r"compression must be in \(0, 1\]"),
    (dict(compression=float("nan")), r"compression must be a number in \(0, 1\]"),
    (dict(bn_size=0), "bn_size must be a positive integer"),
    (dict(drop_rate=1.0), r"drop_rate must be in \[0, 1\)"),
    (dict(drop_rate=-0.1), r"drop_rate must be in \[0, 1\)"),
    (dict(stem="resnet"), "stem must be one of 'imagenet', 'cifar'"),
    (dict(num_classes=-1), "num_classes must be an integer >= 0"),
    (dict(memory_efficient="false"), "memory_efficient must be True or False, got 'false'"),
    (dict(stem_norm=0), "stem_norm must be True or False, got 0"),
    (dict(final_norm=None), "final_norm must be True or False, got None"),
])
def test_bad_configuration_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseNet(**kwargs)


def test_compression_that_empties_a_transition_is_rejected():
    with pytest.raises(ValueError, match="leaves transition1 with 0 channels"):
        DenseNet(growth_rate=2, block_config=(1, 1), num_init_features=2, compression=0.1)


def test_input_too_small_for_downsampling():
    model = cspnet_lab.densenet121().eval()
    # stem: ceil(H/2) twice, then three 2x2 poolings: H >= 29 leaves 1 pixel.
    assert model.min_input_size == 29
    assert model(torch.randn(1, 3, 29, 29)).shape == (1, 1000)
    with pytest.raises(ValueError, match="input size 28x28 is too small.*>= 29"):
        model(torch.randn(1, 3, 28, 28))


def test_input_with_wrong_channels_or_rank():
    model = cspnet_lab.densenet121(in_channels=1).eval()
    with pytest.raises(ValueError, match="input has 3 channels; this model takes in_channels=1"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="4-D batch"):
        model(torch.randn(1, 64, 64))


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model name 'densenet999'; known models: densenet121,"):
        cspnet_lab.create_model("densenet999")


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="densenet121 does not take fusion"):
        cspnet_lab.create_model("densenet121", fusion="csp")


def test_presets_are_one_line_constructors_with_overrides():
    model = cspnet_lab.densenet121(num_classes=10, growth_rate=16)
    assert model.classifier.out_features == 10
    assert model.features.denseblock1.denselayer1.conv2.out_channels == 16
    assert set(cspnet_lab.list_models()) >= {"densenet121", "densenet161", "densenet169", "densenet201",
                                              "densenet264", "densenet_cifar"}


# ---------------------------------------------------------------- torchvision's call forms

def test_torchvision_positional_order():
    # torchvision: DenseNet(growth_rate, block_config, num_init_features, bn_size, drop_rate, num_classes,
    # memory_efficient); DenseNet(32, (6, 12, 24, 16), 64, 4, 0.2) has drop_rate 0.2 there, so here.
    cfg = DenseNet(32, (6, 12, 24, 16), 64, 4, 0.2, 10, True).config
    assert (cfg.drop_rate, cfg.num_classes, cfg.memory_efficient, cfg.compression) == (0.2, 10, True, 0.5)
    with pytest.raises(TypeError):
        DenseNet(32, (6, 12, 24, 16), 64, 4, 0.2, 10, True, 0.5)  # compression is keyword-only
    # torchvision's _DenseBlock(num_layers, num_input_features, bn_size, growth_rate, drop_rate)
    block = cspnet_lab.DenseBlock(3, 16, 2, 8, 0.1)
    assert (block.denselayer1.conv1.out_channels, block.denselayer1.conv2.out_channels) == (16, 8)
    assert block.out_channels == 16 + 3 * 8 and block.denselayer3.drop_rate == 0.1
    # torchvision's _DenseLayer(num_input_features, growth_rate, bn_size, drop_rate) and
    # _Transition(num_input_features, num_output_features)
    layer = cspnet_lab.DenseLayer(16, 8, 2, 0.1)
    assert (layer.conv1.out_channels, layer.conv2.out_channels, layer.drop_rate) == (16, 8, 0.1)
    assert cspnet_lab.Transition(16, 8).conv.out_channels == 8


def test_config_object_builds_the_same_model():
    cfg = cspnet_lab.model_config("cspdensenet121", fusion="last", part_ratio=0.25)
    a, b = cspnet_lab.CSPDenseNet(config=cfg), cspnet_lab.create_model("cspdensenet121", fusion="last",
                                                                         part_ratio=0.25)
    assert a.config == b.config == cfg
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    with pytest.raises(ValueError, match="pass either config= or arguments, not both"):
        cspnet_lab.CSPDenseNet(growth_rate=12, config=cfg)
    with pytest.raises(ValueError, match="config must be a DenseNetConfig"):
        DenseNet(config=cfg.as_dict())


@pytest.mark.parametrize("name", ["densenet121", "densenet_cifar", "article_densenet"])
@pytest.mark.parametrize("blocks", [(2,), (2, 2), (1, 1, 1, 1, 1)])
def test_min_input_size_closed_form_equals_the_smallest_working_size(name, blocks):
    cfg = cspnet_lab.model_config(name, block_config=blocks)
    from cspnet_lab.models.densenet import min_input_size, stem_output_size
    smallest = next(s for s in range(1, 300)
                    if all(stem_output_size(s, cfg.stem) // 2 ** j >= 1 for j in range(len(blocks))))
    assert min_input_size(cfg) == smallest


def test_min_input_size_of_a_very_deep_network_is_instant():
    import time
    start = time.perf_counter()
    cfg = cspnet_lab.model_config("densenet_cifar", block_config=(1,) * 40, growth_rate=2,
                                  num_init_features=4, compression=1.0)
    from cspnet_lab.models.densenet import min_input_size
    assert min_input_size(cfg) == 2 ** 39
    assert time.perf_counter() - start < 1.0


def test_feature_sizes_rejects_a_too_small_input():
    from cspnet_lab.models.densenet import feature_sizes
    cfg = cspnet_lab.model_config("densenet121")
    assert feature_sizes(cfg, 224) == [56, 28, 14, 7, 7]
    with pytest.raises(ValueError, match="input size 28 is too small.*>= 29"):
        feature_sizes(cfg, 28)
    with pytest.raises(ValueError, match="input size must be a positive integer"):
        feature_sizes(cfg, "64")

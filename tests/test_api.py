"""The model API (issue 20): explicit arguments beside config=, ..."""
import pytest
import torch

from cspnet_lab.models.csp import CSPDenseNet, CSPDenseNetConfig
from cspnet_lab.models.densenet import DenseNet, DenseNetConfig
from cspnet_lab.models.registry import create_model


@pytest.mark.parametrize("cls, cfg_cls", [(DenseNet, DenseNetConfig), (CSPDenseNet, CSPDenseNetConfig)])
def test_explicit_default_beside_config_is_refused(cls, cfg_cls):
    # Old code compared arguments with their defaults: growth_rate=32 (the default) was dropped silently
    # and the model built growth 4 from the config.
    cfg = cfg_cls(growth_rate=4, block_config=(1, 1), num_init_features=8, stem="cifar")
    with pytest.raises(ValueError, match="growth_rate"):
        cls(32, config=cfg)
    with pytest.raises(ValueError, match="num_classes"):
        cls(num_classes=1000, config=cfg)
    assert cls(config=cfg).config is cfg


def test_arguments_alone_still_build_with_config_defaults():
    m = DenseNet(4, (1, 1), 8, stem="cifar")
    assert m.config == DenseNetConfig(growth_rate=4, block_config=(1, 1), num_init_features=8, stem="cifar")
    assert DenseNet(4, (1, 1), 8, 4, 0.2, stem="cifar").config.drop_rate == 0.2   # torchvision's positions


def _tiny(cls=DenseNet):
    return cls(4, (1, 1), 8, stem="cifar", num_classes=3)


@pytest.mark.parametrize("cls", [DenseNet, CSPDenseNet])
def test_forward_is_head_of_features(cls):
    import torch
    m = _tiny(cls).eval()
    x = torch.randn(2, 3, 8, 8)
    feats = m.forward_features(x)
    assert feats.shape[1] == m.num_features
    assert torch.equal(m(x), m.forward_head(feats))
    assert m.forward_head(feats, pre_logits=True).shape == (2, m.num_features)
    assert m.get_classifier() is m.classifier


@pytest.mark.parametrize("cls", [DenseNet, CSPDenseNet])
def test_reset_classifier_updates_config(cls):
    # Old code: replacing model.classifier left config.num_classes stale, so costs reported the old count.
    from cspnet_lab.measure import costs
    m = _tiny(cls)
    m.reset_classifier(10)
    assert m.classifier.out_features == 10 and m.config.num_classes == 10
    assert costs.analyze(m.config, input_size=8).params == sum(p.numel() for p in m.parameters())
    with pytest.raises(ValueError, match="num_classes"):
        m.reset_classifier(0)


def test_feature_info_from_plans():
    m = _tiny()
    assert [f["num_chs"] for f in m.feature_info] == [p.out_channels for p in m.plans]
    assert [f["reduction"] for f in m.feature_info] == [2, 2]
    assert m.feature_info[0]["module"] == "features.denseblock1"


def test_fx_symbolic_trace_and_jit_trace():
    # Old code ran check_input on an fx Proxy and failed ("input must be a torch.Tensor").
    import torch
    m = _tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    gm = torch.fx.symbolic_trace(m)
    assert torch.allclose(gm(x), m(x), atol=1e-6)
    traced = torch.jit.trace(m, x)
    assert torch.allclose(traced(x), m(x), atol=1e-6)


def test_channels_last_equal():
    import torch
    m = _tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(m(x.to(memory_format=torch.channels_last)), m(x), atol=1e-5)


def test_export_dynamic_batch_and_size():
    import torch
    from torch.export import Dim
    m = _tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    dyn = {"x": {0: Dim("batch", min=1, max=64), 2: Dim("h", min=4, max=512), 3: Dim("w", min=4, max=512)}}
    ep = torch.export.export(m, (x,), dynamic_shapes=dyn)
    y = torch.randn(3, 3, 12, 16)
    assert torch.allclose(ep.module()(y), m(y), atol=1e-5)


# --------------------------------------------------------------------------- coordinator additions

def test_parameter_estimate_is_exact_and_refuses_huge_models_before_building():
    from cspnet_lab import _checks, create_model
    from cspnet_lab.measure.costs import count_params
    from cspnet_lab.models.densenet import parameter_estimate
    for name, kw in [("densenet121", {}), ("densenet_cifar", {}), ("cspdensenet121", {}),
                     ("cspdensenet121", {"fusion": "last"}), ("cspdensenet201", {"fusion": "first",
                                                                                   "widths": "matched"}),
                     ("cspdensenet121", {"stem_norm": False, "final_norm": False})]:
        model = create_model(name, **kw)
        assert parameter_estimate(model.config) == count_params(model), (name, kw)
    with pytest.raises(ValueError, match=r"DenseNet would have about [\d,]+ parameters.*allow_large=True"):
        DenseNet(block_config=(100000,))
    with pytest.raises(ValueError, match="CSPDenseNet would have about"):
        CSPDenseNet(growth_rate=4096)
    assert _checks.MAX_PARAMETERS == 2**31


def test_out_of_range_numbers_of_any_size_are_a_value_error_naming_the_argument():
    for kw, name in [({"compression": 10**400}, "compression"), ({"drop_rate": float("inf")}, "drop_rate"),
                     ({"compression": float("nan")}, "compression"), ({"growth_rate": 10**400}, "growth_rate")]:
        with pytest.raises(ValueError, match=name):
            DenseNet(**kw)


def test_input_dtype_other_than_the_models_says_how_to_convert():
    model = create_model("densenet_cifar").eval()
    with pytest.raises(ValueError, match=r"input is float64, the model is float32: call model\.to"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got dtype torch\.uint8; convert it with \.float\(\)"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert model.double()(torch.zeros(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_create_model_names_the_accepted_types():
    with pytest.raises(TypeError, match="model name must be a str"):
        create_model(["densenet121"])


def test_fx_tracing_check_logs_nothing(capfd):
    model = create_model("densenet_cifar").eval()
    model(torch.zeros(1, 3, 32, 32))
    torch.fx.symbolic_trace(model)
    assert "is_fx_tracing" not in capfd.readouterr().err


def test_fuse_for_inference_method_is_the_modules_function():
    model = create_model("densenet_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    fused = model.fuse_for_inference(fold_bn=True)
    assert fused is not model and torch.allclose(fused(x), model(x), atol=1e-4)

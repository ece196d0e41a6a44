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
        m.reset_classifier(-1)


@pytest.mark.parametrize("cls", [DenseNet, CSPDenseNet])
def test_reset_classifier_zero_is_timms_feature_model(cls):
    # timm's convention: reset_classifier(0) leaves no classifier; forward returns the pooled features.
    from cspnet_lab.measure import costs
    m = _tiny(cls).eval()
    m.reset_classifier(0)
    x = torch.randn(2, 3, 8, 8)
    assert isinstance(m.get_classifier(), torch.nn.Identity)
    assert torch.equal(m(x), m.forward_head(m.forward_features(x), pre_logits=True))
    assert m(x).shape == (2, m.num_features)
    assert costs.analyze(m.config, input_size=8).params == sum(p.numel() for p in m.parameters())


def _feature_outputs(model, x):
    """What each feature_info module really outputs, by forward hooks."""
    modules, seen = dict(model.named_modules()), {}
    hooks = [modules[f["module"]].register_forward_hook(
        lambda mod, i, o, name=f["module"]: seen.__setitem__(name, o)) for f in model.feature_info]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _check_feature_info(model, x):
    outs = _feature_outputs(model, x)
    for f in model.feature_info:
        out = outs[f["module"]]
        assert out.shape[1] == f["num_chs"], f
        assert x.shape[-1] // out.shape[-1] == f["reduction"], f


@pytest.mark.parametrize("name", ["densenet121", "cspdensenet121", "peleenet", "csppeleenet"])
def test_feature_info_says_what_each_module_outputs(name):
    # Old code gave DenseNet's dense blocks the transition's width and the pooled reduction
    # (128 channels at /8 for features.denseblock1, which outputs 256 at /4).
    m = create_model(name).eval()
    with torch.no_grad():
        _check_feature_info(m, torch.randn(1, 3, 64, 64))
    reductions = [f["reduction"] for f in m.feature_info]
    assert reductions == sorted(reductions) and reductions[-1] == 32


def test_feature_info_of_densenet_is_timms():
    m = create_model("densenet121")
    assert m.feature_info[0] == {"num_chs": 256, "reduction": 4, "module": "features.denseblock1"}
    assert [f["num_chs"] for f in m.feature_info] == [256, 512, 1024, 1024]


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


# --------------------------------------------------------------------------- every model, one API

def _tiny_pelee(**kw):
    from cspnet_lab.models.peleenet import PeleeNet, PeleeNetConfig
    return PeleeNet(PeleeNetConfig(growth_rate=8, block_config=(1, 1), num_init_features=16,
                                   bottleneck_width=(1, 1), num_classes=3, **kw))


@pytest.mark.parametrize("fusion", [None, "first", "last", "csp"])
def test_peleenet_has_the_model_api(fusion):
    m = _tiny_pelee(fusion=fusion).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape[1] == m.num_features == m.plans[-1].out_channels
    assert torch.equal(m(x), m.forward_head(feats))
    assert m.forward_head(feats, pre_logits=True).shape == (2, m.num_features)
    _check_feature_info(m, x)
    m.reset_classifier(5)
    assert m(x).shape == (2, 5) and m.config.num_classes == 5
    from cspnet_lab.models.peleenet import count
    assert count(m.config, 32).params == sum(p.numel() for p in m.parameters())
    m.reset_classifier(0)
    assert m(x).shape == (2, m.num_features)


def test_peleenet_refuses_inputs_it_cannot_take_before_tensor_work():
    m = _tiny_pelee()
    with pytest.raises(ValueError, match="multiples of 4"):
        m(torch.randn(1, 3, 34, 34))           # old code: a tensor-size mismatch inside the stem
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        m(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="float64"):
        m(torch.randn(1, 3, 32, 32, dtype=torch.float64))


def test_peleenet_zero_wide_bottleneck_is_refused_by_config_so_both_counters_agree():
    # Old code: analytic_count returned costs for this config while count() failed to build it.
    from cspnet_lab.models.peleenet import PeleeNetConfig
    with pytest.raises(ValueError, match="0 channels"):
        PeleeNetConfig(growth_rate=2, bottleneck_width=1)


def test_peleenet_stage_plans_are_stage_plans():
    from cspnet_lab.models.densenet import StagePlan
    from cspnet_lab.models.peleenet import PeleeNetConfig
    for fusion in (None, "first", "last", "csp"):
        plans = PeleeNetConfig(fusion=fusion).stages()
        assert all(isinstance(p, StagePlan) for p in plans)
        assert [p.downsample for p in plans] == [True, True, True, False]
        assert plans[0].bottleneck_width == 1 and plans[2].bottleneck_width == 4


def test_pelee_fusions_are_csp_fusions():
    from cspnet_lab.models import csp, peleenet
    assert peleenet.FUSIONS == (None, *csp.FUSIONS)


def _tiny_darknet():
    from cspnet_lab.models import darknet
    return darknet.build("""[net]
height=32
width=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[shortcut]
from=-1
activation=linear

[avgpool]

[convolutional]
filters=5
size=1
stride=1
pad=1
activation=linear

[softmax]
groups=1
""")


def test_darknet_model_has_the_model_api():
    m = _tiny_darknet().eval()
    x = torch.randn(2, 3, 32, 32)
    feats = m.forward_features(x)
    assert feats.shape[1] == m.num_features == 16
    assert torch.allclose(m(x), m.forward_head(feats))
    assert m(x).shape == (2, 5)
    assert m.forward_head(feats, pre_logits=True).shape == (2, 16)
    _check_feature_info(m, x)
    assert [f["reduction"] for f in m.feature_info] == [2, 4]
    m.reset_classifier(7)
    assert m(x).shape == (2, 7) and m.get_classifier().conv.out_channels == 7
    m.reset_classifier(0)
    assert m(x).shape == (2, 16)
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 4, 32, 32))


def test_authors_cfgs_have_the_model_api():
    m = create_model("cspresnext50")
    info = m.feature_info
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    assert info[-1]["num_chs"] == m.num_features == 2048
    assert m.get_classifier().conv.out_channels == 1000


@pytest.mark.parametrize("name", ["densenet121", "cspdensenet121"])
def test_torch_compile_fullgraph_captures_one_graph(name):
    # The eager-mode input check must not break the graph (torch.compiler.is_compiling()).
    m = create_model(name, block_config=(1, 1), num_init_features=8, growth_rate=4, stem="cifar",
                     num_classes=3).eval()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x), m(x), atol=1e-6)


def test_fx_traces_peleenet_and_darknet_models():
    for m in (_tiny_pelee().eval(), _tiny_darknet().eval()):
        x = torch.randn(2, 3, 32, 32)
        gm = torch.fx.symbolic_trace(m)
        assert torch.allclose(gm(x), m(x), atol=1e-6)


# --------------------------------------------------------------------------- torchvision's extractor

def test_create_feature_extractor_fixture_matches_feature_info():
    """tests/fixtures/feature_extractor_densenet121.json was written in the torchvision side venv by
    scripts/feature_extractor_check.py: torchvision's create_feature_extractor on our DenseNet-121 and
    on torchvision's with the same weights. Equal stage outputs there; here, the shapes it saw must be
    the ones our feature_info states today (a change to either fails)."""
    import json
    from conftest import ROOT
    fix = json.loads((ROOT / "tests/fixtures/feature_extractor_densenet121.json").read_text())
    size = fix["input"][-1]
    ours = create_model("densenet121")
    assert [r["module"] for r in fix["densenet121"]] == [f["module"] for f in ours.feature_info]
    for row, f in zip(fix["densenet121"], ours.feature_info):
        assert row["max_abs_diff"] <= 1e-5
        assert row["shape"][1] == f["num_chs"] and size // row["shape"][-1] == f["reduction"]
    for arch, shapes in fix["others"].items():
        info = create_model(arch).feature_info
        assert [s[1] for s in shapes] == [f["num_chs"] for f in info]


def _side_venv_python():
    import os
    import pathlib
    path = os.environ.get("CSPNET_LAB_TV_PYTHON") or "/work/tv-venv/bin/python"
    return path if pathlib.Path(path).is_file() else None


@pytest.mark.skipif(_side_venv_python() is None, reason="no torchvision side venv (CSPNET_LAB_TV_PYTHON)")
def test_create_feature_extractor_in_the_torchvision_side_venv():
    import os
    import subprocess
    from conftest import ROOT
    proc = subprocess.run([_side_venv_python(), "scripts/feature_extractor_check.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")

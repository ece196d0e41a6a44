"""Exactness of the inference cuts (cspnet_lab.models.inference): outputs, originals untouched."""
import pytest
import torch

from cspnet_lab.models.inference import fold_bn_into_conv, fuse_for_inference
from cspnet_lab.models.registry import cspdensenet121, densenet121

CUTS = [dict(pool_first=True, fold_bn=False, concat_buffer=False),
        dict(pool_first=False, fold_bn=True, concat_buffer=False),
        dict(pool_first=False, fold_bn=False, concat_buffer=True),
        dict(pool_first=False, fold_bn=False, concat_buffer=False, channels_last=True),
        dict(pool_first=True, fold_bn=True, concat_buffer=True, channels_last=True)]


def _randomise_bn(model):
    # non-trivial running statistics and affine terms, else folding is tested on identities
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {"densenet121": _randomise_bn(densenet121()).eval(),
            "cspdensenet121": _randomise_bn(cspdensenet121()).eval()}


@pytest.mark.parametrize("name", ["densenet121", "cspdensenet121"])
@pytest.mark.parametrize("cut", CUTS, ids=lambda c: "+".join(k for k, v in c.items() if v))
def test_each_cut_keeps_outputs(nets, name, cut):
    model = nets[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fused = fuse_for_inference(model, **cut)
        out = fused(x)
    assert (out - ref).abs().max().item() < 1e-4
    # the original is untouched: same state_dict values, same modules
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(hasattr(m, "norm2") and isinstance(m.norm2, torch.nn.BatchNorm2d) for m in model.modules())


def test_fold_bn_really_folds(nets):
    fused = fuse_for_inference(nets["densenet121"], pool_first=False, concat_buffer=False)
    assert not any(isinstance(getattr(m, "norm2", None), torch.nn.BatchNorm2d) for m in fused.modules())
    conv = torch.nn.Conv2d(4, 6, 1, bias=False)
    bn = _randomise_bn(torch.nn.Sequential(torch.nn.BatchNorm2d(6)))[0].eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        assert torch.allclose(fold_bn_into_conv(conv, bn)(x), bn(conv(x)), atol=1e-6)


def test_fused_refuses_training(nets):
    fused = fuse_for_inference(nets["densenet121"])
    assert not fused.training
    with pytest.raises(RuntimeError, match="inference-only"):
        fused.train()
    fused.eval()  # eval stays allowed


def test_bad_arguments():
    with pytest.raises(TypeError, match="model"):
        fuse_for_inference("densenet121")
    with pytest.raises(TypeError, match="fold_bn"):
        fuse_for_inference(torch.nn.Linear(1, 1), fold_bn=1)
    with pytest.raises(ValueError, match="out_channels"):
        fold_bn_into_conv(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(4))


def test_defaults_are_the_combination_measured_fastest():
    # The committed CPU result decides the defaults: the cut set with the lowest worst-process ratio.
    import inspect

    from cspnet_lab.measure import bench
    data = bench.load_free_cuts()
    runs = data["runs"]["densenet121"]["processes"]
    worst = {cut: max(p["inference"][cut][0] for p in runs) for cut in runs[0]["inference"]}
    fastest = min(worst, key=worst.get)
    chosen = set(bench.FREE_CUT_OPTIONS[fastest])
    defaults = {k for k, p in inspect.signature(fuse_for_inference).parameters.items()
                if p.default is True}
    assert defaults == chosen, (fastest, worst)

"""The registry (issue 20): every model the book builds is reachable by name, from Python and the CLI."""
import pytest
import torch

import cspnet_lab
from cspnet_lab import costs
from cspnet_lab.__main__ import main
from cspnet_lab.models import registry

BOOK_MODELS = {"densenet121", "cspdensenet121", "peleenet", "csppeleenet", "resnext50", "cspresnext50",
               "c3", "c2f", "bottleneck_csp", "cross_stage"}


def test_every_model_the_book_builds_is_listed():
    # Old code: create_model("peleenet"), the darknet cfgs and the blocks were "unknown model".
    assert BOOK_MODELS <= set(cspnet_lab.list_models())
    assert set(cspnet_lab.list_models("densenet")) == set(registry.PRESETS) - {"peleenet", "csppeleenet"}
    assert cspnet_lab.list_models("peleenet") == ["peleenet", "csppeleenet"]


@pytest.mark.parametrize("name", cspnet_lab.list_models())
def test_every_listed_name_builds_and_counts(name):
    with torch.device("meta"):
        model = cspnet_lab.create_model(name)
    counts = costs.count_model(name, 64)
    assert counts["params"] == sum(p.numel() for p in model.parameters()) > 0
    assert counts["macs"] > 0


@pytest.mark.parametrize("name", ["densenet121", "cspdensenet121", "densenet_cifar"])
def test_hook_counter_equals_the_canonical_analytic_count(name):
    report = costs.analyze(name, 64)
    assert costs.count_model(name, 64) == {"params": report.params, "macs": report.macs}


def test_darknet_hook_count_equals_the_cfg_walk():
    from cspnet_lab.models import darknet
    model = cspnet_lab.create_model("cspresnext50")
    walk = darknet.cfg_costs(model)
    assert costs.count_model("cspresnext50", 256) == {"params": walk.params, "macs": walk.macs}


def test_pelee_hook_count_equals_the_analytic_count():
    from cspnet_lab.models import peleenet
    exact = peleenet.analytic_count(peleenet.PeleeNetConfig(fusion="csp"), 224)
    assert costs.count_model("csppeleenet", 224) == {"params": exact.params, "macs": exact.macs}


def test_overrides_reach_every_kind_and_unknown_ones_are_named():
    assert cspnet_lab.create_model("csppeleenet", fusion="last").config.fusion == "last"
    assert cspnet_lab.create_model("c3", c1=16, c2=32, n=1).cv1.conv.in_channels == 16
    with pytest.raises(ValueError, match="does not take depth"):
        cspnet_lab.create_model("c3", depth=2)
    with pytest.raises(ValueError, match="does not take fusion"):
        cspnet_lab.create_model("resnext50", fusion="csp")
    with pytest.raises(ValueError, match="no config"):
        cspnet_lab.model_config("c2f")
    with pytest.raises(ValueError, match="count_model"):
        costs.analyze("peleenet")


def test_cli_summary_and_compare_take_every_kind(capsys):
    assert main(["summary", "peleenet"]) == 0
    out = capsys.readouterr().out
    assert "2,802,248 parameters" in out and "features.transition3_pool" in out
    assert main(["compare", "resnext50", "cspresnext50", "--input-size", "256"]) == 0
    out = capsys.readouterr().out
    theirs = [costs.count_model(n, 256) for n in ("resnext50", "cspresnext50")]
    assert f"{theirs[0]['params']:,}" in out and f"{theirs[1]['macs']:,}" in out
    assert main(["summary", "c3", "--layers"]) == 0
    assert "cv1.conv" in capsys.readouterr().out
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "peleenet" in listed and "block" in listed


def test_cli_refuses_densenet_options_on_other_models(capsys):
    assert main(["summary", "c3", "--fusion", "csp"]) == 2
    err = capsys.readouterr().err
    assert "fusion" in err and "Traceback" not in err

"""torchvision's create_feature_extractor on our DenseNet-121 and on torchvision's, with the same weights.

Needs torchvision, so it runs in the side venv (README, "Checks against torchvision"):

    PYTHONPATH=. /work/tv-venv/bin/python scripts/feature_extractor_check.py           # check only
    PYTHONPATH=. /work/tv-venv/bin/python scripts/feature_extractor_check.py --write   # and the fixture

The return nodes are our models' ``feature_info`` modules. It checks that the stage outputs are equal
(max absolute difference <= 1e-5), that each has the channels and reduction ``feature_info`` states, and
that the CSPDenseNet and PeleeNet presets work with the extractor too (torch.fx, with the eager input
check skipped while tracing). ``--write`` stores what it saw in
tests/fixtures/feature_extractor_densenet121.json, which tests/test_api.py checks in the main venv.
"""

from __future__ import annotations

import json
import pathlib
import sys

import torch
import torchvision
from torchvision.models import densenet121
from torchvision.models.feature_extraction import create_feature_extractor

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cspnet_lab  # noqa: E402

SIZE = 128
FIXTURE = ROOT / "tests" / "fixtures" / "feature_extractor_densenet121.json"


def stage_outputs(model, nodes: dict, x):
    with torch.no_grad():
        return create_feature_extractor(model.eval(), return_nodes=nodes)(x)


def main() -> int:
    torch.manual_seed(0)
    theirs = densenet121()
    ours = cspnet_lab.create_model("densenet121")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    nodes = {f["module"]: f"stage{i + 1}" for i, f in enumerate(ours.feature_info)}
    x = torch.randn(2, 3, SIZE, SIZE)
    a, b = stage_outputs(theirs, nodes, x), stage_outputs(ours, nodes, x)
    result = {"torch": torch.__version__, "torchvision": torchvision.__version__, "input": [2, 3, SIZE, SIZE],
              "densenet121": [], "others": {}}
    ok = True
    for f, name in zip(ours.feature_info, nodes.values()):
        diff = (a[name] - b[name]).abs().max().item()
        shape = list(b[name].shape)
        good = diff <= 1e-5 and shape[1] == f["num_chs"] and SIZE // shape[-1] == f["reduction"]
        ok &= good
        result["densenet121"].append({"module": f["module"], "shape": shape, "max_abs_diff": diff})
        print(f"densenet121 {f['module']}: {shape}, max |ours - torchvision| = {diff:.3g}"
              + ("" if good else "  <-- MISMATCH"))
    for arch in ("cspdensenet121", "peleenet", "csppeleenet"):
        model = cspnet_lab.create_model(arch)
        size = 128
        feats = stage_outputs(model, {f["module"]: f["module"] for f in model.feature_info},
                              torch.randn(1, 3, size, size))
        shapes = [list(feats[f["module"]].shape) for f in model.feature_info]
        good = all(s[1] == f["num_chs"] and size // s[-1] == f["reduction"]
                   for s, f in zip(shapes, model.feature_info))
        ok &= good
        result["others"][arch] = shapes
        print(f"{arch}: {shapes}" + ("" if good else "  <-- MISMATCH"))
    if "--write" in sys.argv:
        FIXTURE.write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", FIXTURE.relative_to(ROOT))
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

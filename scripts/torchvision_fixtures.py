"""Write the torchvision fixtures the tests compare against. Needs torchvision (a side venv):

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tv/bin/python scripts/torchvision_fixtures.py          # from the repository root

Writes tests/fixtures/torchvision_densenet_keys.json (state_dict keys and shapes of torchvision's
densenet121/161/169/201) and tests/fixtures/torchvision_tiny_densenet.pt (a small torchvision DenseNet's
state_dict, an input and torchvision's logits for it), and with --full also checks the full-size
models in this venv: torchvision weights load into cspnet_lab's with strict=True, same logits.
"""

from __future__ import annotations

import json
import pathlib
import sys

import torch
import torchvision
from torchvision.models import densenet as tv

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
TINY = dict(growth_rate=8, block_config=(2, 3, 2), num_init_features=16, bn_size=2, num_classes=7)


def main() -> None:
    FIX.mkdir(parents=True, exist_ok=True)
    keys = {}
    for name in ("densenet121", "densenet161", "densenet169", "densenet201"):
        model = getattr(tv, name)()
        keys[name] = {
            "torchvision": torchvision.__version__,
            "params": sum(p.numel() for p in model.parameters()),
            "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
    (FIX / "torchvision_densenet_keys.json").write_text(json.dumps(keys, indent=0) + "\n")

    torch.manual_seed(0)
    model = tv.DenseNet(**TINY)
    # Non-trivial BN statistics so eval-mode logits exercise every buffer.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        logits = model(x)
    torch.save({"config": TINY, "torchvision": torchvision.__version__, "state_dict": model.state_dict(),
                "input": x, "logits": logits}, FIX / "torchvision_tiny_densenet.pt")
    print("wrote fixtures with torchvision", torchvision.__version__)

    if "--full" in sys.argv:
        sys.path.insert(0, str(ROOT))
        import cspnet_lab
        for name in ("densenet121", "densenet161", "densenet169", "densenet201"):
            torch.manual_seed(1)
            theirs = getattr(tv, name)().eval()
            ours = cspnet_lab.create_model(name).eval()
            ours.load_state_dict(theirs.state_dict(), strict=True)
            x = torch.randn(2, 3, 224, 224)
            with torch.no_grad():
                diff = (theirs(x) - ours(x)).abs().max().item()
            print(f"{name}: strict load ok, max |logit difference| = {diff:.3g}")


if __name__ == "__main__":
    main()

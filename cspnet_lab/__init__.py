"""cspnet_lab: DenseNet and CSPDenseNet built step by step, with exact cost accounting.

Layout (the arrows point one way: models -> measure -> train -> lab -> the command line):

* ``cspnet_lab.models``: layers, DenseNet, CSPDenseNet, PeleeNet, darknet cfg models, modern CSP blocks,
  and the registry (``create_model``, ``list_models``);
* ``cspnet_lab.measure``: costs, gradients, bench (timing and memory), stats;
* ``cspnet_lab.train``: data and the training loop;
* ``cspnet_lab.lab``: what the chapters show (plots, explorers, tables, glue, reference, experiments).

The submodules are also reachable by their short names, loaded on first use (``from cspnet_lab import
costs, plots``), so ``import cspnet_lab`` stays light: no matplotlib, no scikit-learn.
"""

import importlib

from .models.csp import CSPDenseNet, CSPDenseNetConfig, CSPStage, split_channels
from .models.densenet import DenseNet, DenseNetConfig, StagePlan, StageParts
from .models.layers import DenseBlock, DenseLayer, Transition
from .models.registry import (create_model, cspdensenet121, cspdensenet161, cspdensenet169, cspdensenet201,
                              cspdensenet264, cspdensenet_cifar, densenet121, densenet161, densenet169,
                              densenet201, densenet264, densenet_cifar, list_models, model_config, model_kind,
                              ModelSpec)

__version__ = "0.1.0"

# Short name -> module, for `from cspnet_lab import costs` (PEP 562: imported on first access).
_SUBMODULES = {
    "layers": "models.layers", "densenet": "models.densenet", "csp": "models.csp",
    "peleenet": "models.peleenet", "darknet": "models.darknet", "modern": "models.modern",
    "registry": "models.registry", "counting": "models.counting", "inference": "models.inference",
    "costs": "measure.costs", "gradients": "measure.gradients", "bench": "measure.bench",
    "data": "train.data",
    "plots": "lab.plots", "explore": "lab.explore", "tables": "lab.tables", "book": "lab.book",
    "reference": "lab.reference", "experiments": "lab.experiments",
}


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'cspnet_lab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


__all__ = ["CSPDenseNet", "CSPDenseNetConfig", "CSPStage", "split_channels", "DenseNet", "DenseNetConfig",
           "StagePlan", "StageParts", "ModelSpec", "DenseBlock", "DenseLayer", "Transition", "create_model",
           "list_models", "model_config", "model_kind", "densenet121", "densenet161", "densenet169", "densenet201",
           "densenet264", "densenet_cifar", "cspdensenet121", "cspdensenet161", "cspdensenet169",
           "cspdensenet201", "cspdensenet264", "cspdensenet_cifar"]

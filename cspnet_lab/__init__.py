"""cspnet_lab: DenseNet and CSPDenseNet built step by step, with exact cost accounting."""

from . import costs
from .csp import CSPDenseNet, CSPDenseNetConfig, CSPStage, split_channels
from .densenet import DenseNet, DenseNetConfig, StagePlan, StageParts
from .layers import DenseBlock, DenseLayer, Transition
from .models import (create_model, cspdensenet121, cspdensenet161, cspdensenet169, cspdensenet201,
                     cspdensenet264, cspdensenet_cifar, densenet121, densenet161, densenet169, densenet201,
                     densenet264, densenet_cifar, list_models, model_config, ModelSpec)

__version__ = "0.1.0"

__all__ = ["costs", "CSPDenseNet", "CSPDenseNetConfig", "CSPStage", "split_channels", "DenseNet", "DenseNetConfig",
           "StagePlan", "StageParts", "ModelSpec", "DenseBlock", "DenseLayer", "Transition", "create_model", "list_models", "model_config",
           "densenet121", "densenet161", "densenet169", "densenet201", "densenet264", "densenet_cifar",
           "cspdensenet121", "cspdensenet161", "cspdensenet169", "cspdensenet201", "cspdensenet264",
           "cspdensenet_cifar"]

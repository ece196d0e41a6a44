"""DenseNet's three building blocks, named exactly as torchvision names them.

The submodule names (``norm1``, ``relu1``, ``conv1``, ``denselayer1``, ``norm``, ``conv``, ``pool``)
are the state_dict keys, so they are an interface: a torchvision DenseNet checkpoint loads into ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to ``bn_size * growth_rate``), then BN-ReLU-3x3 conv (to
    ``growth_rate``).

    The input is the list of every earlier feature map of the block; the layer
    concatenates them itself, so that ``memory_efficient=True`` can recompute that
    concatenation (and the BN, ReLU and 1x1 conv after it) in the backward pass instead
    of storing it (Pleiss et al. 2017; torchvision does the same).
    """

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        super().__init__()
        inter = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, inter, kernel_size=1, stride=1,
                               bias=False)
        self.norm2 = nn.BatchNorm2d(inter)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inter, growth_rate, kernel_size=3, stride=1, padding=1,
                               bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: Tensor) -> Tensor:
        # concat -> BN -> ReLU -> 1x1 conv: the part memory_efficient recomputes.
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: Tensor | list[Tensor]) -> Tensor:
        if isinstance(features, Tensor):
            features = [features]
        if self.memory_efficient and any(f.requires_grad for f in features):
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=False)
        else:
            out = self.bottleneck(*features)
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; layer l sees the block input and the outputs of layers 1..l-1.

    Output channels: ``num_input_features + num_layers * growth_rate`` (c0 + L x k).
    """

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float = 0.0, memory_efficient: bool = False) -> None:
        # torchvision's _DenseBlock order: (num_layers, num_input_features, bn_size, growth_rate, ...).
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(num_input_features + i * growth_rate, growth_rate,
                                                    bn_size, drop_rate, memory_efficient)
        self.out_channels = num_input_features + num_layers * growth_rate

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv, then (when ``pool``) 2x2 average pooling with stride 2.

    DenseNet's transition compresses channels and halves the resolution. With ``pool=False`` it only
    changes the channel count: CSPDenseNet's *dense transition*, the 1x1 conv on the dense path before
    the concat (one step of what the paper calls the partial transition layer, not the whole of it).

    ``pool_first=True`` pools before the conv (BN-ReLU-pool-conv). A bias-free 1x1 conv and average
    pooling are both linear and act on different axes (channels vs pixels), so they commute: same
    output up to float rounding, same parameters and state_dict, and the conv runs on a quarter of
    the pixels. Off by default so the torchvision path stays bit-for-bit.
    """

    def __init__(self, num_input_features: int, num_output_features: int, *, pool: bool = True,
                 pool_first: bool = False) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        if pool:
            self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.pool_first = bool(pool_first) and pool

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.norm(x))
        if self.pool_first:
            return self.conv(self.pool(x))
        x = self.conv(x)
        return self.pool(x) if hasattr(self, "pool") else x

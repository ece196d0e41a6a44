"""The one multiply-add rule of the package, and the forward-hook counter built on it.

Every count in the book follows the papers' convention: a convolution costs *output elements x
in_channels / groups x kernel area* multiply-adds, a linear layer *rows x in x out*; bias, batch norm,
activations, pooling, concatenation and additions count 0. Each counter uses the functions here:

- the analytic counters, which read a plan or a parsed cfg and build nothing
  (:func:`cspnet_lab.measure.costs.analyze` for DenseNet and CSPDenseNet,
  :func:`cspnet_lab.models.peleenet.analytic_count`, :func:`cspnet_lab.models.darknet.cfg_costs`);
- the forward-hook counter :func:`hook_count` (on the ``meta`` device: no arithmetic) and the per-layer
  trace :func:`cspnet_lab.measure.costs.trace`, which read the real modules.

:func:`cspnet_lab.measure.costs.counter_table` sets these beside fvcore, torchinfo and torch's
FlopCounterMode; the analytic counts are the canonical ones (the tests hold the hook counts equal to them).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


def percent_change(new: float, old: float) -> float:
    """``100 * (new / old - 1)``: -25.0 when ``new`` is three quarters of ``old``; the one definition of a
    change in percent (re-exported by :mod:`cspnet_lab.measure.stats`)."""
    if old == 0:
        raise ValueError("old must be non-zero (a change relative to 0 is undefined)")
    return 100.0 * (new / old - 1.0)


def conv_weights(in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 1,
                 groups: int = 1) -> int:
    """Weights of a bias-free convolution."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return out_channels * (in_channels // groups) * kh * kw


def conv_macs(in_channels: int, out_channels: int, kernel: int | tuple[int, int], out_pixels: int,
              groups: int = 1) -> int:
    """Multiply-adds of a convolution producing ``out_pixels`` pixels per output channel (one image)."""
    return conv_weights(in_channels, out_channels, kernel, groups) * out_pixels


def module_macs(module: nn.Module, output: Tensor) -> int:
    """Multiply-adds of one call of a leaf module that produced ``output`` (0 for anything but a conv or
    a linear layer): the rule every hook-based count uses."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def hook_count(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, multiply-adds) of one forward pass of ``model`` on an input of ``input_shape``,
    read off the real modules with forward hooks, on a ``meta`` copy (no arithmetic, no memory)."""
    params = sum(p.numel() for p in model.parameters())
    macs = 0

    def hook(module, inputs, output):
        nonlocal macs
        macs += module_macs(module, output)

    meta = model if all(p.device.type == "meta" for p in model.parameters()) else copy.deepcopy(model)
    meta = meta.to("meta")
    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            meta.eval()(torch.empty(*input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return params, macs

"""Exact inference cuts: the same weights, the same outputs up to float rounding, less time.

``fuse_for_inference(model)`` returns an eval-mode *copy* of a DenseNet or CSPDenseNet (the original
and its state_dict are untouched) with each exact cut switched on or off by its own option, so each can
be timed alone:

- ``pool_first``: every pooling transition pools before its 1x1 conv (the conv and the average pool are
  both linear on different axes, so they commute).
- ``fold_bn``: each dense layer's ``norm2`` folded into ``conv1``. ``conv1`` is a bias-free conv whose
  output goes straight into ``norm2``; in eval mode BN is ``y = s * z + t`` per channel, so
  ``s * (W x) + t = (s W) x + t``: new weight ``s W``, new bias ``t``. ``norm1`` and each transition's
  ``norm`` cannot fold into the following conv: between them sits a ReLU, and
  ``relu(s x + t)`` is not ``s relu(x) + t`` (it is not even a per-channel affine map of ``relu(x)``),
  so no conv weight and bias reproduce it. Nor can they fold backwards: their input is a concat of
  earlier layers' outputs, and each of those (a 3x3 ``conv2`` output) feeds *every* later layer's
  ``norm1`` with different statistics, so one conv cannot carry them all.
- ``concat_buffer``: a dense block writes each layer's output into a slice of one preallocated buffer
  instead of growing a list that every layer concatenates again (``torch.cat`` per layer).
- ``channels_last``: the model's weights in channels-last memory format (pass inputs in any format).

The fused copy refuses training mode: calling ``.train()`` on it raises, because a folded BN no longer
has running statistics to update.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .layers import DenseBlock, DenseLayer, Transition

__all__ = ["fuse_for_inference", "fold_bn_into_conv", "BufferedDenseBlock"]


def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` in eval mode (BN after the conv)."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError("fold_bn_into_conv: conv must be nn.Conv2d and bn nn.BatchNorm2d")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fold_bn_into_conv: bn.num_features={bn.num_features} must equal "
                         f"conv.out_channels={conv.out_channels}")
    with torch.no_grad():
        w = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
        b = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        scale = w / torch.sqrt(bn.running_var + bn.eps)
        bias0 = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          padding_mode=conv.padding_mode).to(conv.weight.device, conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias0 - bn.running_mean) * scale + b)
    return fused


class BufferedDenseBlock(nn.Module):
    """A dense block whose layers read a prefix of one buffer and write their slice of it."""

    def __init__(self, block: DenseBlock, in_channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(block.values())
        self.in_channels = in_channels
        self.out_channels = block.out_channels
        self.growth = [layer.conv2.out_channels for layer in self.layers]

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous() else torch.contiguous_format
        buf = torch.empty(n, self.out_channels, h, w, dtype=x.dtype, device=x.device,
                          memory_format=fmt)
        buf[:, :c].copy_(x)
        for layer, g in zip(self.layers, self.growth):
            # the layer's own ops on the prefix view: no torch.cat, not even of one tensor
            h_ = layer.conv1(layer.relu1(layer.norm1(buf[:, :c])))
            buf[:, c:c + g] = layer.conv2(layer.relu2(layer.norm2(h_)))
            c += g
        return buf


def _refuse_train(self, mode: bool = True):
    if mode:
        raise RuntimeError("a model from fuse_for_inference is inference-only; build or keep the "
                           "original model to train")
    return nn.Module.train(self, False)


def fuse_for_inference(model: nn.Module, *, pool_first: bool = True, fold_bn: bool = True,
                       concat_buffer: bool = False, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` with the chosen exact cuts; ``model`` is not changed.

    The defaults are the combination measured fastest on CPU (cspnet_lab/results/free_cuts_cpu.json,
    chapter 6): pool-first, BN folding and channels-last; the concat buffer measured no faster (slower
    on CSPDenseNet-121), so it is off unless asked for.

    The copy's outputs equal ``model.eval()(x)`` up to float rounding. Its state_dict differs where a cut
    changes modules (``fold_bn``: ``conv1`` gains a bias, ``norm2`` disappears; ``concat_buffer``: block
    keys gain ``layers.N`` in place of ``denselayerN+1``). ``.train()`` on the copy raises RuntimeError.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_for_inference: model must be an nn.Module, got {type(model).__name__}")
    for name, v in (("pool_first", pool_first), ("fold_bn", fold_bn),
                    ("concat_buffer", concat_buffer), ("channels_last", channels_last)):
        if not isinstance(v, bool):
            raise TypeError(f"fuse_for_inference: {name} must be True or False, got {v!r}")
    fused = copy.deepcopy(model).eval()
    for p in fused.parameters():
        p.requires_grad_(False)
    for m in fused.modules():
        if pool_first and isinstance(m, Transition) and hasattr(m, "pool"):
            m.pool_first = True
        if fold_bn and isinstance(m, DenseLayer):
            m.conv1 = fold_bn_into_conv(m.conv1, m.norm2)
            m.norm2 = nn.Identity()
    if concat_buffer:
        for parent in list(fused.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, DenseBlock):
                    first = next(iter(child.values()))
                    setattr(parent, name, BufferedDenseBlock(child, first.norm1.num_features))
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    fused.train = _refuse_train.__get__(fused)
    return fused

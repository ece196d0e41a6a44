"""CSP in today's models, rebuilt from one part (:class:`~cspnet_lab.peleenet.ConvNormAct`), each beside
the same stage without the split at equal input and output widths.

Sources (read, not copied; module names are ours):

- YOLOv5's ``C3`` (repository ultralytics/yolov5, ``models/common.py``; also in ultralytics/ultralytics,
  ``ultralytics/nn/modules/block.py``): two 1x1 projections of the input, residual bottlenecks on one,
  concat, one 1x1 conv. In Figure 3 of the CSPNet paper: *fusion first* (3c), with a projection
  instead of a channel slice on each path, as in the CSPNet authors' own cfgs.
- YOLOv8's ``C2f`` (ultralytics/ultralytics, ``ultralytics/nn/modules/block.py``): one 1x1 conv, a
  channel slice in two halves, bottlenecks chained on the second half (each reads only the previous
  one's output), every block's output concatenated once at the end (one-shot aggregation, not a
  dense block: no block reads the earlier ones), then one 1x1 conv: *fusion first* (3c).
- timm's ``CrossStage`` (huggingface/pytorch-image-models, ``timm/models/cspnet.py``): downsample conv
  first, 1x1 expand, slice in half, blocks, 1x1 transition on the block path, concat, 1x1 transition:
  the paper's CSPDenseNet fusion (3b) with residual blocks. Downsampling at the start of the stage
  means both paths are already at the lower resolution when they meet, so no path needs pooling
  (fusion last's problem in a DenseNet stage, where the transition pools).

Every block here uses SiLU (YOLO) or LeakyReLU with slope 0.1 (darknet's, and timm's CSP models');
activations and batch norm change no count of multiply-adds. Widths are the blocks' own defaults
(hidden = half the output).

Each block has a counterpart without the split (Figure 3a) at the same input and output widths. Its
blocks run at the full output width with a bottleneck ratio of choice (``e`` in YOLO's terms,
``bottle_ratio`` in timm's): 1.0, the ratio the CSP blocks use on their half, or 0.5, the ratio of
YOLOv3/darknet's residual stages and of a ResNeXt-50 stage. The saving a CSP block shows depends on
this choice: with 1.0 it includes the cost of running full-width blocks with no bottleneck at all.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from .peleenet import ConvNormAct


def _leaky(inplace: bool = True) -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace)     # darknet's and timm's CSP models' slope


def _widths(c1, c2, n) -> tuple[int, int, int]:
    c1, c2, n = (_checks.positive_int(k, v) for k, v in (("c1", c1), ("c2", c2), ("n", n)))
    if c2 % 2:
        raise ValueError(f"c2 must be even (it is split in two halves), got {c2}")
    return c1, c2, n


class YoloBottleneck(nn.Module):
    """YOLO's ``Bottleneck``: conv k1 -> conv k2, plus the input when ``shortcut`` and widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, kernels=(1, 3), e: float = 0.5,
                 act=nn.SiLU) -> None:
        super().__init__()
        _checks.boolean("shortcut", shortcut)     # "no" is truthy: it would switch the residual add on
        hidden = int(c2 * e)
        self.cv1 = ConvNormAct(c1, hidden, kernels[0], act=act)
        self.cv2 = ConvNormAct(hidden, c2, kernels[1], act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """YOLOv5's C3: ``cv3(cat(m(cv1(x)), cv2(x)))``, hidden width ``c2 / 2``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        c1, c2, n = _widths(c1, c2, n)
        hidden = c2 // 2
        self.cv1 = ConvNormAct(c1, hidden, 1, act=nn.SiLU)      # the block path's projection
        self.cv2 = ConvNormAct(c1, hidden, 1, act=nn.SiLU)      # the bypass's projection
        self.cv3 = ConvNormAct(2 * hidden, c2, 1, act=nn.SiLU)  # transition after the concat
        self.m = nn.Sequential(*(YoloBottleneck(hidden, hidden, shortcut, (1, 3), 1.0) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class C2f(nn.Module):
    """YOLOv8's C2f: ``cv1`` to ``c2`` channels, slice in halves, chain ``n`` bottlenecks on the second
    half keeping every output, concat all ``2 + n`` pieces, ``cv2``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        c1, c2, n = _widths(c1, c2, n)
        self.c = c2 // 2
        self.cv1 = ConvNormAct(c1, 2 * self.c, 1, act=nn.SiLU)
        self.cv2 = ConvNormAct((2 + n) * self.c, c2, 1, act=nn.SiLU)
        self.m = nn.ModuleList(YoloBottleneck(self.c, self.c, shortcut, (3, 3), 1.0) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class ResBottleneck(nn.Module):
    """timm's ``BottleneckBlock`` (ResNet/ResNeXt): 1x1 -> 3x3 (grouped) -> 1x1 linear, add, activation."""

    def __init__(self, channels: int, bottle_ratio: float = 1.0, groups: int = 1, act=_leaky) -> None:
        super().__init__()
        _checks.positive_int("groups", groups)    # 0 would divide by zero below
        mid = int(round(channels * _checks.ratio_open_closed("bottle_ratio", bottle_ratio)))
        if mid < 1:
            raise ValueError(f"bottle_ratio={bottle_ratio} leaves {channels} channels a 0-wide bottleneck")
        if mid % groups:
            raise ValueError(f"groups={groups} must divide the bottleneck width {mid}")
        self.conv1 = ConvNormAct(channels, mid, 1, act=act)
        self.conv2 = ConvNormAct(mid, mid, 3, groups=groups, act=act)
        self.conv3 = ConvNormAct(mid, channels, 1, act=None)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv3(self.conv2(self.conv1(x))))


class CrossStage(nn.Module):
    """timm's CrossStage (``expand_ratio=1``, blocks at half the output width): downsample, expand,
    split, blocks, transition, concat, transition."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, stride: int = 2, bottle_ratio: float = 1.0,
                 groups: int = 1) -> None:
        super().__init__()
        in_chs, out_chs, depth = _widths(in_chs, out_chs, depth)
        _checks.choice("stride", stride, (1, 2))
        _checks.ratio_open_closed("bottle_ratio", bottle_ratio)
        _checks.positive_int("groups", groups)
        half = out_chs // 2
        self.conv_down = ConvNormAct(in_chs, out_chs, 3, stride, act=_leaky) if stride == 2 else None
        self.conv_exp = ConvNormAct(out_chs if stride == 2 else in_chs, out_chs, 1, act=_leaky)
        self.blocks = nn.Sequential(*(ResBottleneck(half, bottle_ratio, groups) for _ in range(depth)))
        self.conv_transition_b = ConvNormAct(half, half, 1, act=_leaky)
        self.conv_transition = ConvNormAct(out_chs, out_chs, 1, act=_leaky)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_down(x) if self.conv_down is not None else x
        xs, xb = self.conv_exp(x).chunk(2, 1)
        xb = self.conv_transition_b(self.blocks(xb))
        return self.conv_transition(torch.cat([xs, xb], 1))


class SinglePath(nn.Module):
    """The counterpart without the split (Figure 3a): an optional downsampling conv or a 1x1 conv to
    the output width, then the same blocks at the full output width.

    For CrossStage this is timm's ``DarkStage`` (``conv_down``, then the blocks); for C3 and C2f it is
    our choice of counterpart (a 1x1 conv from ``c1`` to ``c2``, then the blocks), since YOLO has none.
    """

    def __init__(self, entry: nn.Module, blocks: nn.Module) -> None:
        super().__init__()
        self.entry, self.blocks = entry, blocks

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.entry(x))


def _yolo_counterpart(c1, c2, n, shortcut, kernels, e) -> SinglePath:
    c1, c2, n = _widths(c1, c2, n)
    e = _checks.ratio_open_closed("e", e)
    if int(c2 * e) < 1:
        raise ValueError(f"e={e} leaves the blocks' hidden width int(c2 x e) = 0 channels (c2={c2})")
    return SinglePath(ConvNormAct(c1, c2, 1, act=nn.SiLU),
                      nn.Sequential(*(YoloBottleneck(c2, c2, shortcut, kernels, e) for _ in range(n))))


def c3_counterpart(c1: int, c2: int, n: int = 1, shortcut: bool = True, *, e: float = 1.0) -> SinglePath:
    """C3 without the split: 1x1 conv ``c1 -> c2``, then ``n`` bottlenecks (1x1, 3x3) at width ``c2``
    with hidden width ``int(c2 x e)``: ``e=1.0`` as C3's own blocks, ``e=0.5`` as YOLOv3's."""
    return _yolo_counterpart(c1, c2, n, shortcut, (1, 3), e)


def c2f_counterpart(c1: int, c2: int, n: int = 1, shortcut: bool = False, *, e: float = 1.0) -> SinglePath:
    """C2f without the split: 1x1 conv ``c1 -> c2``, then ``n`` bottlenecks (3x3, 3x3) at width ``c2``
    with hidden width ``int(c2 x e)``: ``e=1.0`` as C2f's own blocks, ``e=0.5`` as the class default."""
    return _yolo_counterpart(c1, c2, n, shortcut, (3, 3), e)


def cross_stage_counterpart(in_chs: int, out_chs: int, depth: int, stride: int = 2,
                            bottle_ratio: float = 1.0, groups: int = 1) -> SinglePath:
    """timm's ``DarkStage``: 3x3 conv (stride ``stride``), then ``depth`` residual bottlenecks at the
    full output width ``out_chs`` with ``bottle_ratio`` (0.5: a ResNeXt-50 stage)."""
    in_chs, out_chs, depth = _widths(in_chs, out_chs, depth)
    _checks.choice("stride", stride, (1, 2))
    _checks.ratio_open_closed("bottle_ratio", bottle_ratio)
    entry = ConvNormAct(in_chs, out_chs, 3, stride, act=_leaky)
    return SinglePath(entry, nn.Sequential(*(ResBottleneck(out_chs, bottle_ratio, groups)
                                             for _ in range(depth))))


# Figure 3 of the CSPNet paper: which fusion each block is, in the paper's terms.
FIGURE3 = {"C3": "fusion first (3c), projections instead of a slice",
           "C2f": "fusion first (3c), a slice, blocks chained, every block output concatenated once",
           "CrossStage": "CSPDenseNet's fusion (3b): transition, concat, transition"}


class BottleneckCSP(nn.Module):
    """YOLOv4/v5's ``BottleneckCSP`` (ultralytics/yolov5, ``models/common.py``), Figure 3b exactly:
    ``cv4(act(bn(cat(cv3(m(cv1(x))), cv2(x)))))``; ``cv2`` and ``cv3`` are plain 1x1 convs (no BN of
    their own: one BN over the concat), ``cv3`` is the transition on the block path. Hidden ``c2 / 2``."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        c1, c2, n = _widths(c1, c2, n)
        hidden = c2 // 2
        self.cv1 = ConvNormAct(c1, hidden, 1, act=nn.SiLU)            # the block path's projection
        self.cv2 = nn.Conv2d(c1, hidden, 1, bias=False)                # the cross path's projection
        self.cv3 = nn.Conv2d(hidden, hidden, 1, bias=False)            # transition on the block path
        self.cv4 = ConvNormAct(2 * hidden, c2, 1, act=nn.SiLU)        # transition after the concat
        self.bn = nn.BatchNorm2d(2 * hidden)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(YoloBottleneck(hidden, hidden, shortcut, (1, 3), 1.0) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        return self.cv4(self.act(self.bn(torch.cat([y1, self.cv2(x)], 1))))

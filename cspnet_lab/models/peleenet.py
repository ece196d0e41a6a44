"""PeleeNet (Wang, Li and Ling, NeurIPS 2018) and the CSP variants of the CSPNet paper's ablation.

PeleeNet is the network the CSPNet paper runs its ablation on (its Table 1 and Figure 4). It differs
from DenseNet in five ways, all from the Pelee paper (section 2.1, Table 1):

- a *stem block*: 3x3/2 conv, then two branches (1x1 conv -> 3x3/2 conv, and 2x2 max pool), concat,
  1x1 conv; 224 -> 56 pixels, 32 channels;
- *two-way dense layers*: growth ``k`` = 32 split into two branches of ``k/2`` channels, one with one
  3x3 conv and one with two stacked 3x3 convs (a 5x5 receptive field);
- a *bottleneck width* per stage (1, 2, 4, 4) instead of DenseNet's fixed 4: the 1x1 conv of each
  branch has ``width x k/2`` channels (rounded down to a multiple of 4), and never more than half the
  layer's input (the authors' code then uses ``4 x floor(input / 8)``);
- transitions *without compression* (1x1 conv keeps the width, then 2x2 average pooling);
- *post-activation*: every conv is conv -> BN -> ReLU (:class:`ConvNormAct`), not BN -> ReLU -> conv.

Module names follow the authors' PyTorch code (repository Robert-JunWang/PeleeNet, ``peleenet.py``):
``features.stemblock.stem1.conv``, ``features.denseblock1.denselayer1.branch1a.norm``,
``features.transition1.conv``, ``classifier``, so their state_dict keys and ours are the same list.

The CSP variants (``fusion`` = "first", "last", "csp", Figure 3 c, d, b) split each stage's base feature
map by channels. The paper names a "partial ratio" gamma but never defines it, so the split has two
readings here, named for what they are: ``gamma_reading="dense"`` (gamma = share of channels that enter
the dense block) and ``"bypass"`` (gamma = share that bypasses it). Which one the authors meant, and which
transition widths they used, are unknown; chapter 9 searches both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from .. import _checks
from .counting import conv_weights, hook_count, percent_change
from .csp import FUSIONS as CSP_FUSIONS
from .densenet import StagePlan

FUSIONS = (None, *CSP_FUSIONS)        # None: PeleeNet itself; the CSP variants are CSPDenseNet's
GAMMA_READINGS = ("dense", "bypass")


class ConvNormAct(nn.Sequential):
    """conv (no bias) -> BN -> activation: the post-activation unit of PeleeNet, YOLO and timm.

    ``act`` is a module class (``nn.ReLU``, ``nn.SiLU``, ...), a function that returns a module, or None
    for conv -> BN only.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, act=nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.act = act(inplace=True) if act in (nn.ReLU, nn.SiLU, nn.LeakyReLU) else act()


def bottleneck_channels(in_channels: int, growth_rate: int, bottleneck_width: int) -> int:
    """Width of each branch's 1x1 conv in a two-way dense layer (the authors' rule).

    ``4 x floor(k/2 x width / 4)``; when that exceeds half the layer's input, ``4 x floor(input / 8)``
    (the Pelee paper: the bottleneck "varies according to the input shape").
    """
    inter = (growth_rate // 2 * bottleneck_width) // 4 * 4
    if inter > in_channels / 2:
        inter = in_channels // 8 * 4
    return inter


class StemBlock(nn.Module):
    """Pelee paper Figure 2 (a): 3x3/2 conv; [1x1 conv -> 3x3/2 conv] beside [2x2 max pool]; concat; 1x1."""

    def __init__(self, in_channels: int, num_init_features: int) -> None:
        super().__init__()
        half = num_init_features // 2
        self.stem1 = ConvNormAct(in_channels, num_init_features, 3, stride=2)
        self.stem2a = ConvNormAct(num_init_features, half, 1)
        self.stem2b = ConvNormAct(half, num_init_features, 3, stride=2)
        self.stem3 = ConvNormAct(2 * num_init_features, num_init_features, 1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem1(x)
        return self.stem3(torch.cat([self.pool(x), self.stem2b(self.stem2a(x))], 1))


class TwoWayDenseLayer(nn.Module):
    """Pelee paper Figure 2 (b): two branches of k/2 channels each, concatenated onto
    the input."""

    def __init__(self, in_channels: int, growth_rate: int,
                 bottleneck_width: int) -> None:
        super().__init__()
        half = growth_rate // 2
        inter = bottleneck_channels(in_channels, growth_rate, bottleneck_width)
        self.branch1a = ConvNormAct(in_channels, inter, 1)
        self.branch1b = ConvNormAct(inter, half, 3)
        self.branch2a = ConvNormAct(in_channels, inter, 1)
        self.branch2b = ConvNormAct(inter, half, 3)
        self.branch2c = ConvNormAct(half, half, 3)

    def forward(self, x: Tensor) -> Tensor:
        one = self.branch1b(self.branch1a(x))                      # 3x3 receptive field
        two = self.branch2c(self.branch2b(self.branch2a(x)))       # 5x5 receptive field
        return torch.cat([x, one, two], 1)


class PeleeDenseBlock(nn.Sequential):
    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck_width: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            TwoWayDenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck_width))
        self.out_channels = in_channels + num_layers * growth_rate


@dataclass(frozen=True)
class PeleeStagePlan(StagePlan):
    """A :class:`~cspnet_lab.models.densenet.StagePlan` of a PeleeNet stage: the same channel counts
    (PeleeNet: skip 0, fusion None, no dense transition), so the cost, plot and gradient code that reads
    DenseNet's plans reads these too.

    ``bn_size`` holds PeleeNet's *bottleneck width* (each branch's 1x1 conv has ``width x k/2`` channels,
    rounded down to a multiple of 4 and capped: :func:`bottleneck_channels`), also readable as
    ``bottleneck_width``. ``pool`` is "transition" (after the transition, or after the concat and
    transition of fusion first and csp), "concat" (fusion last: after the concat) or None (last stage).
    """

    @property
    def bottleneck_width(self) -> int:
        return self.bn_size


def _sequence(name: str, value) -> tuple:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers, one per stage, got {value!r}")
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of numbers, one per stage, got {value!r}") from None


@dataclass(frozen=True)
class PeleeNetConfig:
    """What a PeleeNet (or CSPPeleeNet variant) is. Defaults: PeleeNet as published.

    ``transition_widths``: each stage's output width (the 1x1 conv after the concat; PeleeNet: after the
    block). None keeps PeleeNet's (no compression: ``c + m k``: 128, 256, 512, 704).
    ``dense_transition_ratios``: width of the 1x1 conv on the dense path (fusion "last" and "csp") as a
    fraction of the dense path's output, in (0, 2]; 1.0 (default) keeps it. With "last" the stage
    output is that conv's width plus the skip part, so ``transition_widths`` does not apply.
    ``bottleneck_width``: one per stage, or one number for all (as the authors' code allows).
    """

    growth_rate: int = 32
    block_config: tuple[int, ...] = (3, 4, 8, 6)
    num_init_features: int = 32
    bottleneck_width: tuple[int, ...] = (1, 2, 4, 4)
    num_classes: int = 1000
    in_channels: int = 3
    fusion: str | None = None
    gamma: float = 0.5
    gamma_reading: str = "dense"
    transition_widths: tuple[int, ...] | None = None
    dense_transition_ratios: tuple[float, ...] | float = 1.0

    def __post_init__(self) -> None:
        _checks.positive_int("growth_rate", self.growth_rate)
        if self.growth_rate % 2:
            raise ValueError(f"growth_rate must be even (two branches of k/2), got {self.growth_rate}")
        blocks = _checks.block_config(self.block_config)
        _checks.positive_int("num_init_features", self.num_init_features)
        _checks.non_negative_int("num_classes", self.num_classes)
        _checks.positive_int("in_channels", self.in_channels)
        widths = self.bottleneck_width
        widths = (widths,) * len(blocks) if isinstance(widths, int) else _sequence("bottleneck_width", widths)
        if len(widths) != len(blocks):
            raise ValueError(f"bottleneck_width must have one entry per stage ({len(blocks)}), got {widths}")
        for w in widths:
            _checks.positive_int("bottleneck_width", w)
        _checks.choice("fusion", self.fusion, FUSIONS)
        _checks.ratio_open_closed("gamma", self.gamma)
        if self.gamma == 1.0 and self.fusion is not None:
            raise ValueError("gamma must be in (0, 1) for a CSP variant (1.0 empties a path), got 1.0")
        _checks.choice("gamma_reading", self.gamma_reading, GAMMA_READINGS)
        if self.transition_widths is not None:
            if self.fusion == "last":
                raise ValueError("transition_widths does not apply to fusion 'last' (its stage width is the "
                                 "dense transition's plus the skip part's): use dense_transition_ratios")
            tw = _sequence("transition_widths", self.transition_widths)
            if len(tw) != len(blocks):
                raise ValueError(f"transition_widths must have one entry per stage ({len(blocks)}), got {tw}")
            for w in tw:
                _checks.positive_int("transition_widths", w)
        ratios = self.dense_transition_ratios
        ratios = (ratios,) * len(blocks) if isinstance(ratios, (int, float)) else _sequence(
            "dense_transition_ratios", ratios)
        if len(ratios) != len(blocks):
            raise ValueError(f"dense_transition_ratios must be a number or one per stage, got {ratios}")
        for r in ratios:   # > 1 widens the dense path's output (the search tries it)
            v = _checks._real("dense_transition_ratios", r, "(0, 2]")
            if not 0.0 < v <= 2.0:
                raise ValueError(f"dense_transition_ratios must be in (0, 2], got {r!r}")
        object.__setattr__(self, "block_config", blocks)
        object.__setattr__(self, "bottleneck_width", widths)
        object.__setattr__(self, "dense_transition_ratios", ratios)
        self.stages()   # every path non-empty: fail here, before any module exists

    def split(self, channels: int) -> tuple[int, int]:
        """(skip, dense) channels of a stage's base feature map under this config's reading of gamma."""
        if self.fusion is None:
            return 0, channels
        share = _checks.scaled_channels(channels, self.gamma)
        skip, dense = (channels - share, share) if self.gamma_reading == "dense" else (share, channels - share)
        if skip < 1 or dense < 1:
            raise ValueError(f"gamma={self.gamma} ({self.gamma_reading} share) splits {channels} channels "
                             f"into skip={skip}, dense={dense}: a path with no channels")
        return skip, dense

    def stages(self) -> list[PeleeStagePlan]:
        plans, c = [], self.num_init_features
        for i, (m, width) in enumerate(zip(self.block_config, self.bottleneck_width)):
            skip, dense = self.split(c)
            for j in range(m):        # a 0-wide 1x1 bottleneck cannot be built: refuse it here, once
                cin = dense + j * self.growth_rate
                if bottleneck_channels(cin, self.growth_rate, width) < 1:
                    raise ValueError(
                        f"stage {i + 1}, layer {j + 1}: its 1x1 bottleneck would have 0 channels "
                        f"({cin} input channels, growth_rate={self.growth_rate}, bottleneck_width={width}); "
                        f"each branch needs growth_rate/2 x bottleneck_width >= 4 and >= 8 input channels")
            dense_out = dense + m * self.growth_rate
            full = c + m * self.growth_rate                        # PeleeNet: no compression
            out = self.transition_widths[i] if self.transition_widths else full
            dt = None
            if self.fusion in ("last", "csp"):
                dt = _checks.scaled_channels(dense_out, self.dense_transition_ratios[i])
                if dt < 1:
                    raise ValueError(f"dense_transition_ratios[{i}] leaves stage {i + 1} no channels")
            pooled = i < len(self.block_config) - 1
            plans.append(PeleeStagePlan(
                index=i + 1, in_channels=c, skip_channels=skip, dense_channels=dense, num_layers=m,
                growth_rate=self.growth_rate, bn_size=width, fusion=self.fusion,
                dense_transition_channels=dt,
                transition_channels=None if self.fusion == "last" else out,
                pool=("concat" if self.fusion == "last" else "transition") if pooled else None,
                concat_order="skip_dense"))
            c = plans[-1].out_channels
        return plans

    @property
    def num_features(self) -> int:
        return self.stages()[-1].out_channels


class PeleeStage(nn.Module):
    """One CSP stage on PeleeNet (Figure 3 of the CSPNet paper, with a two-way dense block):

    - "first" (3c): concat(skip, dense block output) -> transition -> pool
    - "last"  (3d): dense block -> dense transition -> concat(skip) -> pool
    - "csp"   (3b): dense block -> dense transition -> concat(skip) -> transition -> pool

    Pooling after the concat is the same as pooling each path (average pooling acts per channel).
    """

    def __init__(self, plan: PeleeStagePlan) -> None:
        super().__init__()
        self.plan = plan
        self.block = PeleeDenseBlock(plan.num_layers, plan.dense_channels, plan.growth_rate,
                                     plan.bottleneck_width)
        dense_out = self.block.out_channels
        self.dense_transition = (ConvNormAct(dense_out, plan.dense_transition_channels)
                                 if plan.dense_transition_channels else None)
        fused = plan.skip_channels + (plan.dense_transition_channels or dense_out)
        self.transition = ConvNormAct(fused, plan.transition_channels) if plan.transition_channels else None
        self.pool = nn.AvgPool2d(2, 2) if plan.pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        skip, dense = x.split([self.plan.skip_channels, self.plan.dense_channels], 1)
        dense = self.block(dense)
        if self.dense_transition is not None:
            dense = self.dense_transition(dense)
        x = torch.cat([skip, dense], 1)
        if self.transition is not None:
            x = self.transition(x)
        return self.pool(x)


class PeleeNet(nn.Module):
    """PeleeNet, or one of its CSP variants when ``config.fusion`` is set.

    ``PeleeNet()`` is the published network: 2,802,248 parameters, 508 M multiply-adds at 224 x 224
    (the Pelee paper: 2.8 M and 508 M). The model API is timm's and torchvision's, as on
    :class:`~cspnet_lab.models.densenet.DenseNet`: ``forward == forward_head(forward_features(x))``,
    ``num_features``, ``feature_info``, ``get_classifier()``, ``reset_classifier(n)``.
    """

    def __init__(self, config: PeleeNetConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is not None and not isinstance(config, PeleeNetConfig):
            raise ValueError(f"config must be a PeleeNetConfig, got {type(config).__name__}")
        config = replace(config or PeleeNetConfig(), **overrides) if overrides else (config or PeleeNetConfig())
        self.config = config
        self.plans = config.stages()
        self.features = nn.Sequential()
        self.features.add_module("stemblock", StemBlock(config.in_channels, config.num_init_features))
        for plan in self.plans:
            i = plan.index
            if plan.fusion is None:    # the authors' layout: denseblockN, transitionN, transitionN_pool
                self.features.add_module(f"denseblock{i}", PeleeDenseBlock(
                    plan.num_layers, plan.in_channels, plan.growth_rate, plan.bottleneck_width))
                self.features.add_module(f"transition{i}",
                                         ConvNormAct(plan.dense_out_channels, plan.transition_channels))
                if plan.pool:
                    self.features.add_module(f"transition{i}_pool", nn.AvgPool2d(2, 2))
            else:
                self.features.add_module(f"stage{i}", PeleeStage(plan))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = _classifier(config.num_features, config.num_classes, zero_bias=False)

    def check_input(self, x: Tensor) -> None:
        """ValueError, before any tensor work, for an input the network cannot take: the stem's two
        branches meet only when height and width are multiples of 4 (and >= 32)."""
        _checks.image_batch(x, self, self.config.in_channels)
        h, w = int(x.shape[2]), int(x.shape[3])
        if h % 4 or w % 4 or min(h, w) < 32:
            raise ValueError(f"input size {h}x{w}: PeleeNet's height and width must be multiples of 4 and "
                             "at least 32 (the stem's two branches meet only then)")

    @property
    def num_features(self) -> int:
        """Channels of the pooled features the classifier reads."""
        return self.plans[-1].out_channels

    @property
    def feature_info(self) -> list[dict]:
        """One dict per stage, from the plans: ``num_chs``, ``reduction``, ``module`` (timm's keys)."""
        info, reduction = [], 4                  # the stem block: two stride-2 steps
        for plan in self.plans:
            reduction *= 2 if plan.downsample else 1
            if plan.fusion is not None:
                module = f"features.stage{plan.index}"
            else:
                module = f"features.transition{plan.index}" + ("_pool" if plan.pool else "")
            info.append({"num_chs": plan.out_channels, "reduction": reduction, "module": module})
        return info

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """A new zero-bias classifier for ``num_classes`` (0: none, ``forward`` returns the pooled
        features, as in timm); ``self.config`` follows, so the counts stay right."""
        config = replace(self.config, num_classes=num_classes)     # validates: an integer >= 0
        self.classifier = _classifier(self.num_features, config.num_classes)
        self.config = config

    def forward_features(self, x: Tensor) -> Tensor:
        from .densenet import _tracing
        if not _tracing():
            self.check_input(x)
        return self.features(x)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        pooled = torch.flatten(self.pool(features), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _classifier(features: int, num_classes: int, zero_bias: bool = True) -> nn.Module:
    """timm's convention: ``num_classes=0`` means no classifier (an identity on the pooled features)."""
    if num_classes == 0:
        return nn.Identity()
    linear = nn.Linear(features, num_classes)
    if zero_bias:
        nn.init.constant_(linear.bias, 0)
    return linear


def peleenet(**overrides) -> PeleeNet:
    return PeleeNet(PeleeNetConfig(**overrides))


def params_and_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, multiply-adds) of one forward pass: :func:`cspnet_lab.models.counting.hook_count`,
    the package's one forward-hook counter (on the ``meta`` device, no arithmetic)."""
    return hook_count(model, input_shape)


def check_input_size(input_size) -> int:
    """The stem's two branches meet only when its first conv gives an even size: a multiple of 4 (>= 32)."""
    size = _checks.positive_int("input_size", input_size)
    if size % 4 or size < 32:
        raise ValueError(f"input_size must be a multiple of 4 and at least 32, got {input_size!r}")
    return size


def count(config: PeleeNetConfig, input_size: int = 224) -> PeleeCosts:
    """Costs of the network ``config`` describes, read off its real modules (built on ``meta``: fast)."""
    check_input_size(input_size)
    with torch.device("meta"):
        model = PeleeNet(config)
    params, macs = params_and_macs(model, (1, config.in_channels, input_size, input_size))
    norm = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    return PeleeCosts(params, norm, macs)


def _conv_out(size: int, k: int, s: int) -> int:
    return (size + 2 * (k // 2) - k) // s + 1


@dataclass(frozen=True)
class PeleeCosts:
    """Parameters (all, and those of batch norm) and multiply-adds of one forward pass."""

    params: int
    norm_params: int
    macs: int

    @property
    def weights(self) -> int:
        """Parameters without batch norm's: the convention of the CSPNet paper's Table 3 (darknet's)."""
        return self.params - self.norm_params

    @property
    def bflops(self) -> float:
        """darknet's unit: 2 FLOPs per multiply-add, in billions."""
        return 2 * self.macs / 1e9


def analytic_count(config: PeleeNetConfig, input_size: int = 224) -> PeleeCosts:
    """Parameters and multiply-adds from the stage plans alone, by formula: no module is built.

    A conv-BN unit with ``a`` inputs, ``b`` outputs and kernel ``k`` has ``a b k^2`` conv weights, ``2b``
    BN parameters and ``a b k^2`` multiply-adds per output pixel. Fast enough for the chapter's width
    search; the tests check it against :func:`count`, which reads the real modules.
    """
    check_input_size(input_size)
    weights = norm = macs = 0

    def unit(a: int, b: int, k: int, pixels: int) -> None:
        nonlocal weights, norm, macs
        w = conv_weights(a, b, k)          # the package's one rule (cspnet_lab.models.counting)
        weights += w
        norm += 2 * b
        macs += w * pixels

    c0, half = config.num_init_features, config.num_init_features // 2
    s1 = _conv_out(input_size, 3, 2)
    s2 = _conv_out(s1, 3, 2)
    unit(config.in_channels, c0, 3, s1 * s1)
    unit(c0, half, 1, s1 * s1)
    unit(half, c0, 3, s2 * s2)
    unit(2 * c0, c0, 1, s2 * s2)
    size = s2
    plans = config.stages()    # once: the width search calls this function thousands of times
    for plan in plans:
        px, k2 = size * size, plan.growth_rate // 2
        for i in range(plan.num_layers):
            cin = plan.dense_channels + i * plan.growth_rate
            inter = bottleneck_channels(cin, plan.growth_rate, plan.bottleneck_width)
            unit(cin, inter, 1, px), unit(inter, k2, 3, px)                           # branch 1
            unit(cin, inter, 1, px), unit(inter, k2, 3, px), unit(k2, k2, 3, px)      # branch 2
        fused = plan.dense_out_channels
        if plan.dense_transition_channels:
            unit(plan.dense_out_channels, plan.dense_transition_channels, 1, px)
            fused = plan.dense_transition_channels
        if plan.transition_channels:
            unit(plan.skip_channels + fused, plan.transition_channels, 1, px)
        size = size // 2 if plan.pool else size
    features = plans[-1].out_channels    # config.num_features, without planning the stages again
    weights += features * config.num_classes + config.num_classes
    macs += features * config.num_classes
    return PeleeCosts(weights + norm, norm, macs)


# The CSPNet paper's figures for its PeleeNet ablation: change in computation against PeleeNet, in %
# (section 4.2), at its default split (which it does not state) and at gamma = 0.25; and Table 3's
# PeleeNet / CSPPeleeNet (parameters, BFLOPs). Theirs, quoted; every reading of them is ours, including
# the key "last": section 4.2 credits -21 % and -11 % to "the partial transition layer" without naming
# the fusion; we file them under fusion last because the paper's Figure 4 discussion ties the same
# -0.1 % top-1 to fusion last (an inference).
PAPER_CUTS = {"last": {"default": -21.0, 0.25: -11.0}, "csp": {"default": -13.0, 0.25: -3.0}}
PAPER_TABLE3 = {"PeleeNet": (2.79e6, 1.017), "CSPPeleeNet": (2.83e6, 0.888)}


_change = percent_change


def width_search(fusion: str, default_gamma: float = 0.5, dense_ratios=(0.25, 0.5, 0.75, 1.0),
                 width_scales=(1.0,), per_stage: bool = False, input_size: int = 224) -> list[dict]:
    """Every (reading of gamma, dense transition ratio, transition widths) in the grid, scored against
    the paper's cuts for ``fusion`` ("last" or "csp"); best first.

    ``width_scales`` multiply PeleeNet's stage widths (128, 256, 512, 704): one scale for all stages, or,
    with ``per_stage``, every combination. The score is the sum of the absolute differences, in
    percentage points, between our computation changes and the paper's (at the default split and at
    gamma = 0.25), plus, for "csp", the difference in parameter change against Table 3 (2.83 M vs 2.79 M,
    counted without batch norm as Table 3 is). A low score says a setting fits; not that it is theirs.
    """
    _checks.choice("fusion", fusion, tuple(PAPER_CUTS))
    if fusion == "last" and (per_stage or tuple(width_scales) != (1.0,)):
        raise ValueError("width_scales must be (1.0,) for fusion 'last': its stage width is the dense "
                         "transition's plus the skip part's")
    if per_stage and len(width_scales) ** 4 > 5000:
        raise ValueError(f"per_stage with {len(width_scales)} width_scales is {len(width_scales) ** 4} "
                         "settings per ratio; at most 8 scales (4096)")
    import itertools
    base = analytic_count(PeleeNetConfig(), input_size)
    full = [p.transition_channels for p in PeleeNetConfig().stages()]
    grid = itertools.product(width_scales, repeat=4) if per_stage else ((s,) * 4 for s in width_scales)
    target = PAPER_CUTS[fusion]
    t_params = _change(*(PAPER_TABLE3[k][0] for k in ("CSPPeleeNet", "PeleeNet")))
    rows = []
    for scales in list(grid):
        widths = None if fusion == "last" else tuple(int(round(w * s)) for w, s in zip(full, scales))
        for reading in GAMMA_READINGS:
            for ratio in dense_ratios:
                row = {"fusion": fusion, "reading": reading, "dense_ratio": ratio, "widths": widths,
                       "scales": scales}
                for key, gamma in (("default", default_gamma), ("g025", 0.25)):
                    cfg = PeleeNetConfig(fusion=fusion, gamma=gamma, gamma_reading=reading,
                                         dense_transition_ratios=ratio, transition_widths=widths)
                    c = analytic_count(cfg, input_size)
                    row[f"macs_{key}"], row[f"weights_{key}"] = c.macs, c.weights
                    row[f"cut_{key}"] = _change(c.macs, base.macs)
                row["param_change"] = _change(row["weights_default"], base.weights)
                score = abs(row["cut_default"] - target["default"]) + abs(row["cut_g025"] - target[0.25])
                if fusion == "csp":
                    score += abs(row["param_change"] - t_params)
                row["score"] = score
                rows.append(row)
    return sorted(rows, key=lambda r: r["score"])

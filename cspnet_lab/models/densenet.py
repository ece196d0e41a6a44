"""DenseNet (Huang et al. 2017) exactly as torchvision builds it, plus the options the book needs.

A model is described by a frozen config (what the network *is*), turned into a list of
:class:`StagePlan` (the channel count at every point, pure Python), and only then into modules.
The cost functions in :mod:`cspnet_lab.costs` read the same plans without building anything.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from .layers import DenseBlock, Transition

STEMS = ("imagenet", "cifar")


POOL_PLACES = (None, "transition", "paths", "concat")
CONCAT_ORDERS = ("skip_dense", "dense_skip")


@dataclass(frozen=True)
class StagePlan:
    """Channel counts of one stage, and where its pooling happens: the one description of a stage
    that the modules, the cost model, the plots and the gradient code all read.

    For DenseNet ``skip_channels`` is 0, ``fusion`` is None and the stage is dense block -> transition.
    CSPDenseNet stages fill in the rest (see :mod:`cspnet_lab.csp`).
    """

    index: int                     # 1-based, as in denseblock1
    in_channels: int               # c: the stage's base feature map x0
    skip_channels: int             # x0': goes straight to the fusion
    dense_channels: int            # x0'': enters the dense block
    num_layers: int                # L (the CSPNet paper's k, or m in its CIO paragraph)
    growth_rate: int               # DenseNet's k (the CSPNet paper's d)
    bn_size: int
    fusion: str | None = None      # None (DenseNet), "csp", "first" or "last"
    dense_transition_channels: int | None = None  # 1x1 conv on the dense path, before the concat
    transition_channels: int | None = None        # 1x1 conv after the concat (DenseNet: after the block)
    # Where the stage's 2x2 average pooling runs: None (no pooling, the last stage), "transition" (in
    # the transition after the concat; DenseNet's transition), "paths" (in the dense transition and on
    # the skip part: fusion last's default; costs.pool_paths also counts csp this way), "concat"
    # (fusion last: after the concat).
    pool: str | None = None
    # Order of the concat that joins the two paths: "skip_dense" = concat(x0', xT), "dense_skip" =
    # concat(xT, x0'). It matters only when no transition follows the concat (fusion last): the next
    # stage's split takes its skip part from the front of this stage's output.
    concat_order: str = "skip_dense"

    def __post_init__(self) -> None:
        if self.pool not in POOL_PLACES:
            raise ValueError(f"pool must be one of {POOL_PLACES}, got {self.pool!r}")
        if self.concat_order not in CONCAT_ORDERS:
            raise ValueError(f"concat_order must be one of {CONCAT_ORDERS}, got {self.concat_order!r}")

    @property
    def downsample(self) -> bool:
        """Does this stage halve the resolution?"""
        return self.pool is not None

    @property
    def dense_out_channels(self) -> int:
        """c'' + L x k: the dense block's output."""
        return self.dense_channels + self.num_layers * self.growth_rate

    @property
    def concat_channels(self) -> int:
        """Channels right after the skip part and the dense path are joined."""
        dense_path = self.dense_transition_channels or self.dense_out_channels
        return self.skip_channels + dense_path

    @property
    def out_channels(self) -> int:
        return self.transition_channels or self.concat_channels


@dataclass(frozen=True)
class DenseNetConfig:
    """Everything that defines a DenseNet. Validated on creation: a bad value never builds a model."""

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 1000
    memory_efficient: bool = False
    # Ours, beyond torchvision's arguments:
    compression: float = 0.5       # transition width = floor(compression x its input)
    in_channels: int = 3
    stem: str = "imagenet"         # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": 3x3/1 conv
    stem_norm: bool = True         # norm0 + relu0 after conv0 (torchvision: yes; the source article: no)
    final_norm: bool = True        # norm5 + ReLU before pooling (torchvision: yes; the source article: no)
    pool_first: bool = False       # transitions pool before their 1x1 conv (same function, 1/4 the MACs)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("growth_rate", _checks.positive_int("growth_rate", self.growth_rate))
        set_("block_config", _checks.block_config(self.block_config))
        set_("num_init_features", _checks.positive_int("num_init_features", self.num_init_features))
        set_("bn_size", _checks.positive_int("bn_size", self.bn_size))
        set_("compression", _checks.ratio_open_closed("compression", self.compression))
        set_("drop_rate", _checks.ratio_closed_open("drop_rate", self.drop_rate))
        # 0: no classifier (timm's convention; forward returns the pooled features)
        set_("num_classes", _checks.non_negative_int("num_classes", self.num_classes))
        set_("in_channels", _checks.positive_int("in_channels", self.in_channels))
        for name in ("memory_efficient", "stem_norm", "final_norm", "pool_first"):
            _checks.boolean(name, getattr(self, name))
        _checks.choice("stem", self.stem, STEMS)
        self.stages()  # a compression that leaves a transition with 0 channels fails here

    def _transition_width(self, channels: int, where: str) -> int:
        t = _checks.scaled_channels(channels, self.compression)
        if t < 1:
            raise ValueError(f"compression={self.compression} leaves {where} with 0 channels; "
                             f"compression must be >= 1/{channels}")
        return t

    def stages(self) -> list[StagePlan]:
        plans, c = [], self.num_init_features
        last = len(self.block_config)
        for i, num_layers in enumerate(self.block_config, start=1):
            out = c + num_layers * self.growth_rate
            # every block but the last is followed by a transition, which pools
            t = self._transition_width(out, f"transition{i}") if i < last else None
            plan = StagePlan(index=i, in_channels=c, skip_channels=0, dense_channels=c, num_layers=num_layers,
                             growth_rate=self.growth_rate, bn_size=self.bn_size, transition_channels=t,
                             pool="transition" if i < last else None)
            plans.append(plan)
            c = plan.out_channels
        return plans

    def as_dict(self) -> dict:
        return asdict(self)


def stem_output_size(size: int, stem: str) -> int:
    """Spatial size after the stem: conv0 7x7/2 pad 3 then maxpool 3x3/2 pad 1 (= ceil(size / 4)),
    or a 3x3/1 conv."""
    if stem == "cifar":
        return size
    size = (size + 2 * 3 - 7) // 2 + 1
    return (size + 2 * 1 - 3) // 2 + 1


def feature_sizes(config, size: int) -> list[int]:
    """Spatial size entering each stage, then the final one.

    ValueError when ``size`` is not a positive integer or leaves any stage with no pixels.
    """
    size = _checks.positive_int("input size", size)
    need = min_input_size(config)
    if size < need:
        raise ValueError(f"input size {size} is too small for this network's downsampling: it must be "
                         f">= {need} (stem={config.stem!r}, {_num_pools(config)} transitions that pool)")
    sizes = [stem_output_size(size, config.stem)]
    for plan in config.stages():
        sizes.append(sizes[-1] // 2 if plan.downsample else sizes[-1])
    return sizes


def _num_pools(config) -> int:
    return sum(plan.downsample for plan in config.stages())


def min_input_size(config) -> int:
    """The smallest height/width that leaves every stage at least 1 pixel, in closed form.

    n poolings (each floor(s / 2)) need s >= 2^n after the stem; the ImageNet stem maps a size to
    ceil(size / 4), so the input needs size >= 4 (2^n - 1) + 1. The CIFAR stem keeps the size.
    """
    need = 2 ** _num_pools(config)
    return need if config.stem == "cifar" else 4 * (need - 1) + 1


@dataclass(frozen=True)
class StageParts:
    """One stage of a built model: its plan, its state_dict prefix and its real submodules.

    ``run(x)`` runs the whole stage (DenseNet: block then transition; CSPDenseNet: the CSPStage).
    Code that needs a model's structure asks for these instead of parsing module names.
    """

    plan: StagePlan
    prefix: str                         # "features.denseblock2" or "features.stage2"
    block: DenseBlock
    dense_transition: Transition | None
    transition: Transition | None
    skip_pool: nn.Module | None         # fusion last, pool="paths": the pooling of the skip part
    run: object                         # callable: stage input -> stage output


def parameter_estimate(config) -> int:
    """Parameters of the network a config describes, from its plans alone (nothing is built), in closed
    form per stage so that a typo such as ``block_config=(100000,)`` is priced instantly. Exact for DenseNet
    and CSPDenseNet (the tests hold it equal to the built model's count)."""
    c0 = config.num_init_features
    total = config.in_channels * c0 * (49 if config.stem == "imagenet" else 9)
    total += 2 * c0 if getattr(config, "stem_norm", True) else 0
    for p in config.stages():
        L, k, width = p.num_layers, p.growth_rate, p.bn_size * p.growth_rate
        reads = L * p.dense_channels + k * L * (L - 1) // 2        # sum of every layer's input channels
        total += 2 * reads + reads * width + L * (2 * width + width * k * 9)
        if p.dense_transition_channels:
            total += 2 * p.dense_out_channels + p.dense_out_channels * p.dense_transition_channels
        if p.transition_channels:
            total += 2 * p.concat_channels + p.concat_channels * p.transition_channels
    out = config.stages()[-1].out_channels
    total += 2 * out if config.final_norm else 0
    return total + out * config.num_classes + config.num_classes


class DenseNetBase(nn.Module):
    """Stem, head, input checks and torchvision's initialisation, shared by DenseNet and CSPDenseNet."""

    def __init__(self, config, allow_large: bool = False) -> None:
        _checks.parameter_budget(parameter_estimate(config), type(self).__name__, allow_large)
        super().__init__()
        self.config = config
        self.plans = config.stages()
        self.min_input_size = min_input_size(config)
        self.features = nn.Sequential(self._stem())
        for plan in self.plans:
            for name, module in self._stage(plan):
                self.features.add_module(name, module)
        out = self.plans[-1].out_channels
        if config.final_norm:
            self.features.add_module("norm5", nn.BatchNorm2d(out))
        self.classifier = nn.Linear(out, config.num_classes) if config.num_classes else nn.Identity()
        self._init_weights()

    def _stem(self) -> OrderedDict:
        c, k = self.config, self.config.num_init_features
        if c.stem == "imagenet":
            layers = [("conv0", nn.Conv2d(c.in_channels, k, kernel_size=7, stride=2, padding=3, bias=False))]
        else:
            layers = [("conv0", nn.Conv2d(c.in_channels, k, kernel_size=3, stride=1, padding=1, bias=False))]
        if c.stem_norm:
            layers += [("norm0", nn.BatchNorm2d(k)), ("relu0", nn.ReLU(inplace=True))]
        if c.stem == "imagenet":
            layers.append(("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
        return OrderedDict(layers)

    def _stage(self, plan: StagePlan):
        raise NotImplementedError

    def _dense_block(self, plan: StagePlan) -> DenseBlock:
        c = self.config
        return DenseBlock(plan.num_layers, plan.dense_channels, plan.bn_size, plan.growth_rate,
                          c.drop_rate, c.memory_efficient)

    def stage_parts(self) -> list[StageParts]:
        """Every stage's plan and modules (see :class:`StageParts`)."""
        raise NotImplementedError

    def _init_weights(self) -> None:
        # torchvision's scheme: Kaiming-normal convs, BN weight 1 / bias 0, Linear bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def check_input(self, x: Tensor) -> None:
        """ValueError, before any tensor work, for an input the network cannot take."""
        c = self.config
        _checks.image_batch(x, self, c.in_channels)
        h, w = int(x.shape[2]), int(x.shape[3])
        if min(h, w) < self.min_input_size:
            raise ValueError(f"input size {h}x{w} is too small for this network's downsampling: height and "
                             f"width must be >= {self.min_input_size} (stem={c.stem!r}, "
                             f"{len(self.plans) - 1} transitions)")

    # The model API of timm and torchvision: forward == forward_head(forward_features(x)).
    @property
    def num_features(self) -> int:
        """Channels of the pooled features the classifier reads."""
        return self.plans[-1].out_channels

    @property
    def feature_info(self) -> list[dict]:
        """One dict per stage, from the plans: ``module`` (a name ``create_feature_extractor`` and forward
        hooks take), the ``num_chs`` that module outputs and its ``reduction`` (input px per output px).

        DenseNet: each dense block (timm's and torchvision's feature points), before its transition
        pools. CSPDenseNet: each whole stage (``features.stageN``), after its pooling.
        """
        info, reduction = [], 1 if self.config.stem == "cifar" else 4
        for part in self.stage_parts():
            whole_stage = part.transition is None or not part.prefix.endswith(f"denseblock{part.plan.index}")
            if whole_stage:
                reduction *= 2 if part.plan.downsample else 1
                info.append({"num_chs": part.plan.out_channels, "reduction": reduction, "module": part.prefix})
            else:
                info.append({"num_chs": part.plan.dense_out_channels, "reduction": reduction,
                             "module": part.prefix})
                reduction *= 2 if part.plan.downsample else 1
        return info

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """A new zero-bias classifier for ``num_classes`` (0: none, and ``forward`` returns the pooled
        features, as in timm); ``self.config`` follows, so costs stay right."""
        config = replace(self.config, num_classes=num_classes)     # validates: an integer >= 0
        if config.num_classes:
            self.classifier = nn.Linear(self.num_features, config.num_classes)
            nn.init.constant_(self.classifier.bias, 0)
        else:
            self.classifier = nn.Identity()
        self.config = config

    def fuse_for_inference(self, **cuts) -> nn.Module:
        """An eval-mode copy with exact inference cuts (same outputs up to float rounding); this model is
        unchanged. See :func:`cspnet_lab.models.inference.fuse_for_inference` for the cuts."""
        from .inference import fuse_for_inference
        return fuse_for_inference(self, **cuts)

    def forward_features(self, x: Tensor) -> Tensor:
        if not _tracing():
            self.check_input(x)
        return self.features(x)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """ReLU (after norm5), global average pooling, then the classifier unless ``pre_logits``."""
        if self.config.final_norm:
            features = F.relu(features)
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, (1, 1)), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _tracing() -> bool:
    """True under torch.jit.trace, torch.fx, torch.compile/export: the input check runs in eager mode only."""
    import torch.fx._symbolic_trace as fx_trace
    # is_fx_tracing() logs a warning on every call in recent torch; read its flag (present since torch 1.x)
    fx = getattr(fx_trace, "is_fx_symbolic_tracing", None)
    fx_active = fx() if fx is not None else bool(getattr(fx_trace, "_is_fx_tracing_flag", False))
    return bool(torch.jit.is_tracing() or fx_active or torch.compiler.is_compiling())


class _Unset:
    """The default of every model argument: "not given", so the config's own default applies."""

    def __repr__(self) -> str:
        return "<config default>"


UNSET = _Unset()


def _from_args(config_cls, config, args: dict):
    """The config a model is built from: ``config`` as given, or one made from the arguments.

    Giving both is an error: a config is the whole description of a network. An argument counts as
    given when it is not ``UNSET`` (a sentinel, so ``growth_rate=32`` beside ``config=`` is refused
    even though 32 is the default).
    """
    given = {k: v for k, v in args.items() if v is not UNSET}
    if config is None:
        return config_cls(**given)
    if not isinstance(config, config_cls):
        raise ValueError(f"config must be a {config_cls.__name__}, got {type(config).__name__}")
    if given:
        raise ValueError(f"pass either config= or arguments, not both (got config and {', '.join(sorted(given))})")
    return config


class DenseNet(DenseNetBase):
    """DenseNet-BC. Same module names, parameter count and initialisation as torchvision's DenseNet.

    The positional parameters are torchvision's, in torchvision's order
    (``DenseNet(32, (6, 12, 24, 16), 64, 4, 0.2)`` means ``drop_rate=0.2`` in both); everything we add
    is keyword-only (see :class:`DenseNetConfig`), or pass a whole ``config=DenseNetConfig(...)``.
    ``memory_efficient=True`` checkpoints each layer's concat + BN-ReLU-1x1 conv: same outputs and
    gradients, less activation memory, more compute.
    """

    def __init__(self, growth_rate: int = UNSET, block_config=UNSET, num_init_features: int = UNSET,
                 bn_size: int = UNSET, drop_rate: float = UNSET, num_classes: int = UNSET,
                 memory_efficient: bool = UNSET, *, compression: float = UNSET, in_channels: int = UNSET,
                 stem: str = UNSET, stem_norm: bool = UNSET, final_norm: bool = UNSET,
                 pool_first: bool = UNSET, config: DenseNetConfig | None = None,
                 allow_large: bool = False) -> None:
        args = {k: v for k, v in locals().items() if k not in ("self", "config", "__class__", "allow_large")}
        super().__init__(_from_args(DenseNetConfig, config, args), allow_large=allow_large)

    def _stage(self, plan: StagePlan):
        yield f"denseblock{plan.index}", self._dense_block(plan)
        if plan.transition_channels:
            yield f"transition{plan.index}", Transition(plan.dense_out_channels, plan.transition_channels,
                                                        pool=plan.pool == "transition",
                                                        pool_first=self.config.pool_first)

    def stage_parts(self) -> list[StageParts]:
        parts = []
        for plan in self.plans:
            block = self.features.get_submodule(f"denseblock{plan.index}")
            transition = getattr(self.features, f"transition{plan.index}", None)
            run = nn.Sequential(block, transition) if transition is not None else block
            parts.append(StageParts(plan, f"features.denseblock{plan.index}", block, None, transition, None, run))
        return parts

"""CSPDenseNet (Wang et al. 2019): DenseNet whose stages split their channels in two.

One stage, with c channels in (the paper's base feature map x0):

* **split**: the first ``c - floor(part_ratio * c)`` channels are the skip part x0', the remaining
  ``floor(part_ratio * c)`` the dense part x0''. ``part_ratio`` is the fraction routed through the dense
  block (the paper's gamma, which it never defines precisely). With an odd split the skip part gets
  the extra channel, as in the source article. ``part_ratio=1.0`` means no skip part.
* **dense block** on x0'': c'' + L x k channels out.
* **fusion** (the paper's Figure 3):

  ========== ============================================================================
  ``"csp"``  (b) dense -> partial transition (1x1 conv) -> concat with x0' -> transition
  ``"first"`` (c) concat(x0', dense) -> transition
  ``"last"``  (d) dense -> partial transition (the stage's transition) -> concat with x0'
  ========== ============================================================================

Transitions are DenseNet's: BN-ReLU-1x1 conv, then 2x2 average pooling in every stage but the last.
As in DenseNet, the last stage has no transition after its concat (the head follows); a partial
transition on the dense path stays, without pooling.

Fusion "last" with downsampling pools the dense path, so the skip part must shrink too.
``last_downsample="skip"`` (default) average-pools x0' beside the partial transition's pooling;
``"concat"`` moves the pooling after the concat. Average pooling acts on each channel alone, so the
two give the same output; they differ only in where the pooling runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import _checks
from .densenet import DenseNetBase, DenseNetConfig, StagePlan
from .layers import Transition

FUSIONS = ("csp", "first", "last")
LAST_DOWNSAMPLE = ("skip", "concat")


def split_channels(channels: int, part_ratio: float) -> tuple[int, int]:
    """(skip, dense) channel counts: dense = floor(part_ratio x channels), skip gets the rest.

    ValueError when a path would be empty, except part_ratio=1.0 (no skip path by design).
    """
    part_ratio = _checks.ratio_open_closed("part_ratio", part_ratio)
    dense = _checks.scaled_channels(channels, part_ratio)
    skip = channels - dense
    if dense < 1 or (skip < 1 and part_ratio < 1.0):
        lo, hi = 1 / channels, (channels - 1) / channels
        raise ValueError(f"part_ratio={part_ratio} splits {channels} channels into skip={skip}, dense={dense}: "
                         f"a path with no channels. For {channels} channels part_ratio must be in "
                         f"[{lo:.4g}, {hi:.4g}] or exactly 1.0 (no skip path)")
    return skip, dense


@dataclass(frozen=True)
class CSPDenseNetConfig(DenseNetConfig):
    """DenseNetConfig plus the cross-stage partial settings.

    ``partial_transition_ratio``: output channels of the partial transition as a fraction of the dense
    block's output, floor(ratio x (c'' + L x k)). Default (None): ``compression``. One rule for both
    variants that have a partial transition: it is DenseNet's transition on the dense path. In "last"
    it is the stage's transition, pooling included; in "csp" its pooling moves to the transition after
    the concat. (1.0 keeps the dense path's width, so the stage keeps DenseNet's widths, but its extra
    (c'' + L x k)^2 conv makes the model *more* expensive than DenseNet: the book measures this.)
    Not used by "first", which has no partial transition.
    """

    part_ratio: float = 0.5
    fusion: str = "csp"
    partial_transition_ratio: float | None = None
    last_downsample: str = "skip"

    def __post_init__(self) -> None:
        _checks.choice("fusion", self.fusion, FUSIONS)
        _checks.choice("last_downsample", self.last_downsample, LAST_DOWNSAMPLE)
        object.__setattr__(self, "part_ratio", _checks.ratio_open_closed("part_ratio", self.part_ratio))
        if self.partial_transition_ratio is not None:
            if self.fusion == "first":
                raise ValueError("partial_transition_ratio applies to fusion 'csp' or 'last' only; "
                                 "fusion 'first' has no partial transition (leave it None)")
            object.__setattr__(self, "partial_transition_ratio", _checks.ratio_open_closed(
                "partial_transition_ratio", self.partial_transition_ratio))
        super().__post_init__()

    @property
    def effective_partial_transition_ratio(self) -> float | None:
        if self.fusion == "first":
            return None
        if self.partial_transition_ratio is not None:
            return self.partial_transition_ratio
        return self.compression

    def stages(self) -> list[StagePlan]:
        plans, c = [], self.num_init_features
        last = len(self.block_config)
        pt_ratio = self.effective_partial_transition_ratio
        for i, num_layers in enumerate(self.block_config, start=1):
            skip, dense = split_channels(c, self.part_ratio)
            d_out = dense + num_layers * self.growth_rate
            pt = None
            if pt_ratio is not None:
                pt = _checks.scaled_channels(d_out, pt_ratio)
                if pt < 1:
                    raise ValueError(f"partial_transition_ratio={pt_ratio} leaves stage {i}'s partial transition "
                                     f"with 0 channels; it must be >= 1/{d_out}")
            t = None
            if i < last and self.fusion != "last":
                t = _checks.scaled_channels(skip + (pt or d_out), self.compression)
                if t < 1:
                    raise ValueError(f"compression={self.compression} leaves stage {i}'s transition with 0 channels")
            plan = StagePlan(i, c, skip, dense, num_layers, self.growth_rate, self.bn_size, self.fusion,
                             pt, t, downsample=i < last)
            plans.append(plan)
            c = plan.out_channels
        return plans


class CSPStage(nn.Module):
    """One cross-stage partial stage; ``forward`` follows the paper's Figure 3 top to bottom."""

    def __init__(self, plan: StagePlan, dense: nn.Module, last_downsample: str = "skip") -> None:
        super().__init__()
        self.skip_channels, self.dense_channels = plan.skip_channels, plan.dense_channels
        pool_skip = plan.fusion == "last" and plan.downsample and last_downsample == "skip"
        pool_after = plan.fusion == "last" and plan.downsample and last_downsample == "concat"
        self.skip = nn.AvgPool2d(2, 2) if pool_skip and plan.skip_channels else nn.Identity()
        self.dense = dense
        if plan.partial_transition_channels:
            self.partial_transition = Transition(plan.dense_out_channels, plan.partial_transition_channels,
                                                 pool=pool_skip)
        else:
            self.partial_transition = nn.Identity()
        if plan.transition_channels:
            self.transition = Transition(plan.concat_channels, plan.transition_channels, pool=plan.downsample)
        elif pool_after:
            self.transition = nn.AvgPool2d(2, 2)
        else:
            self.transition = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x_skip, x_dense = torch.split(x, [self.skip_channels, self.dense_channels], dim=1)  # x0', x0''
        y = self.partial_transition(self.dense(x_dense))
        if self.skip_channels:
            y = torch.cat([self.skip(x_skip), y], dim=1)
        return self.transition(y)


class CSPDenseNet(DenseNetBase):
    """DenseNet with cross-stage partial stages. ``features.stageN.{skip,dense,partial_transition,transition}``.

    ``fusion="first", part_ratio=1.0`` is DenseNet: same parameters in the same order, same outputs.
    """

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), part_ratio: float = 0.5,
                 fusion: str = "csp", num_init_features: int = 64, bn_size: int = 4,
                 compression: float = 0.5, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3, memory_efficient: bool = False, stem: str = "imagenet",
                 stem_norm: bool = True, final_norm: bool = True,
                 partial_transition_ratio: float | None = None, last_downsample: str = "skip") -> None:
        super().__init__(CSPDenseNetConfig(growth_rate, block_config, num_init_features, bn_size, compression,
                                           drop_rate, num_classes, in_channels, stem, stem_norm, final_norm,
                                           memory_efficient, part_ratio, fusion, partial_transition_ratio,
                                           last_downsample))

    def _stage(self, plan: StagePlan):
        yield f"stage{plan.index}", CSPStage(plan, self._dense_block(plan), self.config.last_downsample)


__all__ = ["CSPDenseNet", "CSPDenseNetConfig", "CSPStage", "FUSIONS", "split_channels"]

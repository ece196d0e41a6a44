"""CSPDenseNet (Wang et al. 2019): DenseNet whose stages split their channels in two.

One stage, with c channels in (the paper's base feature map x0):

* **split**: the first ``c - floor(part_ratio * c)`` channels are the skip part x0', the remaining
  ``floor(part_ratio * c)`` the dense part x0''. ``part_ratio`` is *our* parameter: the fraction routed
  through the dense block. The paper's gamma ("partial ratio") is never defined there; it may be this
  share or the share that bypasses the block (chapter 3 shows both readings). With an odd split the skip
  part gets the extra channel, as in the source article. ``part_ratio=1.0`` means no skip part.
* **dense block** on x0'': c'' + L x k channels out.
* **fusion** (the paper's Figure 3), which the paper calls the stage's *partial transition layer*:

  =========== ===========================================================================
  ``"csp"``   (b) dense -> dense transition (1x1 conv) -> concat with x0' -> transition
  ``"first"`` (c) concat(x0', dense) -> transition
  ``"last"``  (d) dense -> dense transition (which pools here) -> concat with x0'
  =========== ===========================================================================

  The *dense transition* is our name for the BN-ReLU-1x1 conv on the dense path before the concat
  (the paper's first transition, whose output it calls xT); the *transition* is the one after the
  concat (its output xU).

Transitions are DenseNet's: BN-ReLU-1x1 conv, then 2x2 average pooling in every stage but the last.
As in DenseNet, the last stage has no transition after its concat (the head follows); a dense
transition on the dense path stays, without pooling.

Widths (``widths``): ``"narrow"`` (default) sizes the dense transition as floor(ratio x its input), ratio
``dense_transition_ratio`` or else ``compression``, so stage outputs are narrower than DenseNet's and part
of any saving comes from the narrowing. ``"matched"`` makes every stage's output exactly DenseNet's, so the
stage widths no longer differ: csp keeps the dense path's full width in its dense transition (an extra
conv DenseNet does not have); first is already matched, and then only the split differs; last sizes its
dense transition to DenseNet's stage output minus the skip part.

Concat order (``concat_order``): ``"skip_dense"`` joins concat(x0', xT), ``"dense_skip"`` concat(xT, x0').
The paper does not say which. Behind fusions csp and first a transition mixes every channel, so the
order only permutes that conv's input channels; they default to ``"skip_dense"`` (timm's CrossStage and
the source article). Fusion last has no transition after the concat, and the next stage's split takes
its skip part from the *front* of this stage's output: with ``"skip_dense"`` that is this stage's x0'
again, so the same stem channels are the skip part of every stage and reach the classifier without
entering any dense layer (a *highway*: ``gradients.highway_channels``). Fusion last therefore defaults
to ``"dense_skip"``: the next skip part is taken from xT, which the dense block computed. We keep the
split (skip part first) the same in every fusion and change only the concat, so chapter 3's split and
every parameter and multiply-add count stay as they were; ``concat_order="skip_dense"`` keeps the
highway form for comparison.

Fusion "last" with downsampling pools the dense path, so the skip part must shrink too.
``last_downsample="skip"`` (default) average-pools x0' beside the dense transition's pooling;
``"concat"`` moves the pooling after the concat. Average pooling acts on each channel alone, so the
two give the same output; they differ only in where the pooling runs (``StagePlan.pool``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import _checks
from .densenet import CONCAT_ORDERS, UNSET, DenseNetBase, DenseNetConfig, StagePlan, StageParts, _from_args
from .layers import Transition

FUSIONS = ("csp", "first", "last")
# The default concat order per fusion (see the module docstring): fusion last puts the dense path first.
DEFAULT_CONCAT_ORDER = {"csp": "skip_dense", "first": "skip_dense", "last": "dense_skip"}
LAST_DOWNSAMPLE = ("skip", "concat")
WIDTHS = ("narrow", "matched")


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

    ``dense_transition_ratio`` (``widths="narrow"`` only): output channels of the dense transition as a
    fraction of the dense block's output, floor(ratio x (c'' + L x k)). Default (None): ``compression``,
    i.e. DenseNet's transition on the dense path. In "last" it pools (there is no transition after the
    concat); in "csp" the pooling is in the transition after the concat. Not used by "first",
    which has no dense transition. ``widths="matched"``: see the module docstring.
    """

    part_ratio: float = 0.5
    fusion: str = "csp"
    dense_transition_ratio: float | None = None
    last_downsample: str = "skip"
    widths: str = "narrow"
    concat_order: str | None = None    # None: DEFAULT_CONCAT_ORDER[fusion]

    def __post_init__(self) -> None:
        _checks.choice("fusion", self.fusion, FUSIONS)
        if self.concat_order is None:
            object.__setattr__(self, "concat_order", DEFAULT_CONCAT_ORDER[self.fusion])
        _checks.choice("concat_order", self.concat_order, CONCAT_ORDERS)
        _checks.choice("last_downsample", self.last_downsample, LAST_DOWNSAMPLE)
        _checks.choice("widths", self.widths, WIDTHS)
        object.__setattr__(self, "part_ratio", _checks.ratio_open_closed("part_ratio", self.part_ratio))
        if self.dense_transition_ratio is not None:
            if self.fusion == "first":
                raise ValueError("dense_transition_ratio applies to fusion 'csp' or 'last' only; "
                                 "fusion 'first' has no dense transition (leave it None)")
            if self.widths == "matched":
                raise ValueError("dense_transition_ratio applies to widths='narrow' only; widths='matched' "
                                 "sets the dense transition so that stage outputs equal DenseNet's")
            object.__setattr__(self, "dense_transition_ratio", _checks.ratio_open_closed(
                "dense_transition_ratio", self.dense_transition_ratio))
        super().__post_init__()

    @property
    def effective_dense_transition_ratio(self) -> float | None:
        """The narrow form's ratio (None for fusion first and for matched widths)."""
        if self.fusion == "first" or self.widths == "matched":
            return None
        return self.compression if self.dense_transition_ratio is None else self.dense_transition_ratio

    def _dense_transition_width(self, i: int, c: int, skip: int, d_out: int, last: bool) -> int | None:
        if self.fusion == "first":
            return None
        if self.widths == "matched":
            if self.fusion == "csp":
                return d_out                    # keep the dense path's width: concat = c + L x k
            densenet_out = c + (d_out - (c - skip))     # DenseNet's block output, c + L x k
            target = densenet_out if last else self._transition_width(densenet_out, f"transition{i}")
            pt = target - skip
            if pt < 1:
                raise ValueError(f"widths='matched' with fusion 'last': stage {i}'s skip part ({skip} channels) "
                                 f"already fills DenseNet's stage output ({target}); use a larger part_ratio")
            return pt
        ratio = self.effective_dense_transition_ratio
        pt = _checks.scaled_channels(d_out, ratio)
        if pt < 1:
            raise ValueError(f"dense_transition_ratio={ratio} leaves stage {i}'s dense transition "
                             f"with 0 channels; it must be >= 1/{d_out}")
        return pt

    def stages(self) -> list[StagePlan]:
        plans, c = [], self.num_init_features
        last = len(self.block_config)
        for i, num_layers in enumerate(self.block_config, start=1):
            skip, dense = split_channels(c, self.part_ratio)
            d_out = dense + num_layers * self.growth_rate
            pt = self._dense_transition_width(i, c, skip, d_out, i == last)
            t = None
            if i < last and self.fusion != "last":
                t = self._transition_width(skip + (pt or d_out), f"stage {i}'s transition")
            pool = None
            if i < last:
                pool = "transition" if self.fusion != "last" else \
                    ("paths" if self.last_downsample == "skip" else "concat")
            plan = StagePlan(index=i, in_channels=c, skip_channels=skip, dense_channels=dense,
                             num_layers=num_layers, growth_rate=self.growth_rate, bn_size=self.bn_size,
                             fusion=self.fusion, dense_transition_channels=pt, transition_channels=t, pool=pool,
                             concat_order=self.concat_order)
            plans.append(plan)
            c = plan.out_channels
        return plans


class CSPStage(nn.Module):
    """One cross-stage partial stage; ``forward`` follows the paper's Figure 3 top to bottom.

    Built from its :class:`StagePlan` alone: the plan's ``pool`` says where the 2x2 pooling runs.
    """

    def __init__(self, plan: StagePlan, dense: nn.Module, *, pool_first: bool = False) -> None:
        super().__init__()
        self.plan = plan
        self.skip_channels, self.dense_channels = plan.skip_channels, plan.dense_channels
        self.dense_first = plan.concat_order == "dense_skip"
        pool_paths = plan.pool == "paths"
        self.skip = nn.AvgPool2d(2, 2) if pool_paths and plan.skip_channels else nn.Identity()
        self.dense = dense
        if plan.dense_transition_channels:
            self.dense_transition = Transition(plan.dense_out_channels, plan.dense_transition_channels,
                                               pool=pool_paths, pool_first=pool_first)
        else:
            self.dense_transition = nn.Identity()
        if plan.transition_channels:
            self.transition = Transition(plan.concat_channels, plan.transition_channels,
                                         pool=plan.pool == "transition", pool_first=pool_first)
        elif plan.pool == "concat":
            self.transition = nn.AvgPool2d(2, 2)
        else:
            self.transition = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # x0' (the skip part) and x0'' (the dense part)
        sizes = [self.skip_channels, self.dense_channels]
        x_skip, x_dense = torch.split(x, sizes, dim=1)
        y = self.dense_transition(self.dense(x_dense))          # xT
        if self.skip_channels:
            skip = self.skip(x_skip)
            y = torch.cat([y, skip] if self.dense_first else [skip, y], dim=1)
        return self.transition(y)   # xU (fusion last: the concat itself, or pooled)


class CSPDenseNet(DenseNetBase):
    """DenseNet with cross-stage partial stages. ``features.stageN.{skip,dense,dense_transition,transition}``.

    Positional parameters are DenseNet's (torchvision's order); the CSP settings are keyword-only, or pass
    ``config=CSPDenseNetConfig(...)``. ``fusion="first", part_ratio=1.0`` is DenseNet: same parameters in
    the same order, same outputs.
    """

    def __init__(self, growth_rate: int = UNSET, block_config=UNSET, num_init_features: int = UNSET,
                 bn_size: int = UNSET, drop_rate: float = UNSET, num_classes: int = UNSET,
                 memory_efficient: bool = UNSET, *, part_ratio: float = UNSET, fusion: str = UNSET,
                 compression: float = UNSET, in_channels: int = UNSET, stem: str = UNSET,
                 stem_norm: bool = UNSET, final_norm: bool = UNSET, pool_first: bool = UNSET,
                 dense_transition_ratio: float | None = UNSET, last_downsample: str = UNSET,
                 widths: str = UNSET, concat_order: str | None = UNSET,
                 config: CSPDenseNetConfig | None = None, allow_large: bool = False) -> None:
        args = {k: v for k, v in locals().items() if k not in ("self", "config", "__class__", "allow_large")}
        super().__init__(_from_args(CSPDenseNetConfig, config, args), allow_large=allow_large)

    def _stage(self, plan: StagePlan):
        yield f"stage{plan.index}", CSPStage(plan, self._dense_block(plan), pool_first=self.config.pool_first)

    def stage_parts(self) -> list[StageParts]:
        parts = []
        for plan in self.plans:
            stage = self.features.get_submodule(f"stage{plan.index}")
            opt = lambda m, cls: m if isinstance(m, cls) else None  # noqa: E731
            parts.append(StageParts(plan, f"features.stage{plan.index}", stage.dense,
                                    opt(stage.dense_transition, Transition), opt(stage.transition, Transition),
                                    opt(stage.skip, nn.AvgPool2d), stage))
        return parts


__all__ = ["CSPDenseNet", "CSPDenseNetConfig", "CSPStage", "DEFAULT_CONCAT_ORDER", "FUSIONS", "LAST_DOWNSAMPLE", "WIDTHS",
           "split_channels"]

"""What a model costs: parameters, multiply-adds, memory traffic. Counted three ways that must agree.

* :func:`analyze` derives every conv/BN/linear layer's parameters and multiply-adds from a model's
  config alone (pure Python, no modules built): fast enough for an explorer to call on every slider move.
* :func:`trace` runs a real model with forward hooks and reads the same numbers off the tensors.
* :func:`fvcore_macs` asks fvcore; the tests hold all three equal, layer by layer.

"Multiply-adds" (MACs) here means those of convolutions and linear layers, bias excluded: one
multiply-add per weight per output position, fvcore's convention for these ops. FLOP counters differ by
design (see :func:`counter_table`).

Notation of the CSPNet paper's CIO paragraph (section 3.1): c = a dense block's base channels,
d = growth rate, m = number of dense layers (DenseNet's paper calls the growth rate k).
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import _checks
from ..models.counting import module_macs, percent_change
from ..models.csp import WIDTHS
from ..models.densenet import DenseNetConfig, StagePlan, feature_sizes


BYTES_PER_ELEMENT = 4  # float32


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or not (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def _pair(size) -> tuple[int, int]:
    """(height, width) from an int or a pair of ints; ValueError otherwise (the string '64' is not 6 x 4)."""
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (_checks.positive_int("input height", size[0]), _checks.positive_int("input width", size[1]))
    if isinstance(size, (str, bytes)) or isinstance(size, (tuple, list)):
        raise ValueError(f"input_size must be a positive integer or a (height, width) pair, got {size!r}")
    size = _checks.positive_int("input_size", size)
    return size, size


# --------------------------------------------------------------------------- the paper's CIO

def cio_dense_block(c: int, d: int, m: int) -> float:
    """CSPNet paper, section 3.1: CIO of a dense block, (c x m) + ((m^2 + m) x d) / 2.

    c: base channels, d: growth rate, m: number of dense layers. It is the sum over the m layers of
    input plus output channels (layer l reads c + (l - 1) d and writes d), per pixel: HarDNet's CIO
    with each dense layer taken as one convolution.
    """
    return (c * m) + ((m ** 2 + m) * d) / 2


def cio_partial_dense_block(c: int, d: int, m: int) -> float:
    """CSPNet paper, section 3.1: CIO of a partial dense block, ((c x m) + (m^2 + m) x d) / 2.

    Equal to ``cio_dense_block(c / 2, d, m)``: only the base-channel term halves, so the saving tends
    to one half as c grows against m and d ("at most half of the memory traffic").
    """
    return ((c * m) + (m ** 2 + m) * d) / 2


def cio_with_bottleneck(c: int, d: int, m: int, bn_size: int = 4) -> int:
    """The exact per-pixel channel count of a DenseNet-BC block's convolutions, inputs plus outputs.

    Each layer is two convs: 1x1 (reads c + (l - 1) d, writes bn_size d) and 3x3 (reads bn_size d,
    writes d). Times H x W x batch x 4 bytes it is the block's measured conv input+output bytes.
    """
    return c * m + d * m * (m - 1) // 2 + m * d * (2 * bn_size + 1)


# --------------------------------------------------------------------------- analytic, from the config

@dataclass(frozen=True)
class LayerCost:
    """One layer with parameters: its name in the model, where it sits, channels, output size, costs.

    ``stage`` is "stem", "stageN" or "head"; ``part`` is "stem", "dense" (a dense layer's conv or BN),
    "dense_transition", "transition" or "head"; ``layer`` is the dense layer's number in its block
    (1-based; 0 elsewhere). All three are set where the row is made, from the plan.
    """

    name: str
    kind: str               # "conv", "bn" or "linear"
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    params: int
    macs: int               # multiply-adds of convs and linears (0 for BN)
    io_bytes: int = 0       # convs: bytes of input + output feature maps (the measured memory traffic)
    stage: str = "stem"
    part: str = "stem"
    layer: int = 0
    kernel: int = 0         # convs: kernel size (1 or 3 in a dense layer, 7 or 3 in the stem)


@dataclass
class CostReport:
    """Every layer's cost for one config at one input size, with totals and per-stage sums."""

    config: DenseNetConfig
    input_size: tuple[int, int]
    batch: int
    layers: list[LayerCost]
    stages: list[StagePlan]
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def conv_io_bytes(self) -> int:
        return sum(r.io_bytes for r in self.layers)

    def by_stage(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.layers:
            s = out.setdefault(r.stage, {"params": 0, "macs": 0, "io_bytes": 0})
            s["params"] += r.params
            s["macs"] += r.macs
            s["io_bytes"] += r.io_bytes
        return out

    def cio(self) -> dict[str, float]:
        """Each stage's dense-block CIO at the split the model really makes (channel units).

        The paper's dense-block formula with c = the channels that enter the dense block (x0''):
        for DenseNet the paper's dense formula, for a half split its partial formula, and the same
        count for any other ``part_ratio``.
        """
        return {f"stage{p.index}": cio_dense_block(p.dense_channels, p.growth_rate, p.num_layers)
                for p in self.stages}

    def cio_table(self) -> list[dict]:
        """Per stage: the paper's two formulas at the stage's c, the count at the real split, the exact
        count with the bottleneck convs (channels per pixel) and the block's conv input+output bytes."""
        rows = []
        for p in self.stages:
            block = [r for r in self.layers if r.stage == f"stage{p.index}" and r.part == "dense"]
            rows.append(dict(stage=p.index, c=p.in_channels, c_dense=p.dense_channels, d=p.growth_rate,
                             m=p.num_layers,
                             paper_dense=cio_dense_block(p.in_channels, p.growth_rate, p.num_layers),
                             paper_partial=cio_partial_dense_block(p.in_channels, p.growth_rate,
                                                                   p.num_layers),
                             at_split=cio_dense_block(p.dense_channels, p.growth_rate, p.num_layers),
                             with_bottleneck=cio_with_bottleneck(p.dense_channels, p.growth_rate,
                                                                 p.num_layers, p.bn_size),
                             io_bytes=sum(r.io_bytes for r in block)))
        return rows


class _Rows:
    """Collects LayerCost rows while walking a plan."""

    def __init__(self, batch: int) -> None:
        self.batch, self.rows = batch, []

    def conv(self, name, cin, cout, k, hw_in, hw_out, **where):
        h, w = hw_out
        macs = self.batch * h * w * cin * cout * k * k
        io = self.batch * BYTES_PER_ELEMENT * (cin * hw_in[0] * hw_in[1] + cout * h * w)
        self.rows.append(LayerCost(name, "conv", cin, cout, hw_out, cin * cout * k * k, macs, io,
                                   kernel=k, **where))

    def bn(self, name, c, hw, **where):
        self.rows.append(LayerCost(name, "bn", c, c, hw, 2 * c, 0, **where))

    def transition(self, prefix, cin, cout, hw, **where):
        """BN at the input's resolution, then the 1x1 conv at ``hw`` (pooled first or not)."""
        bn_hw, conv_hw = hw
        self.bn(f"{prefix}.norm", cin, bn_hw, **where)
        self.conv(f"{prefix}.conv", cin, cout, 1, conv_hw, conv_hw, **where)


def _load_config(config_or_name, overrides) -> DenseNetConfig:
    if isinstance(config_or_name, str):
        from ..models.registry import model_config, model_kind
        if model_kind(config_or_name) != "densenet":
            raise ValueError(f"analyze() counts DenseNet and CSPDenseNet from their plans; "
                             f"{config_or_name!r} is a {model_kind(config_or_name)} model: use "
                             f"costs.count_model({config_or_name!r}) (any model, by forward hooks)")
        return model_config(config_or_name, **overrides)
    return config_or_name


def count_model(model_or_name, input_size=224, **overrides) -> dict:
    """Parameters and multiply-adds of any model (a module, or any name of ``list_models()``), read off
    its modules by forward hooks on the ``meta`` device (:func:`cspnet_lab.models.counting.hook_count`:
    the rule every counter here shares). For DenseNet and CSPDenseNet presets the plan-based
    :func:`analyze` is the canonical count; the tests hold the two equal."""
    from ..models.counting import hook_count
    from ..models.registry import create_model, input_channels
    if isinstance(model_or_name, str):
        with torch.device("meta"):
            model = create_model(model_or_name, **overrides)
        in_channels = input_channels(model_or_name, **overrides)
    else:
        if overrides:
            raise ValueError("overrides apply to a model name, not to a built model")
        model = model_or_name
        in_channels = _first_conv(model).in_channels
    h, w = _pair(input_size)
    params, macs = hook_count(model, (1, in_channels, h, w))
    return {"params": params, "macs": macs}


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{type(model).__name__} has no Conv2d: count_model needs an image model")


def analyze(config_or_name, input_size=224, batch: int = 1, *, plans=None, **overrides) -> CostReport:
    """Parameters and multiply-adds of every layer, from the config alone (no model is built).

    ``config_or_name``: a DenseNetConfig / CSPDenseNetConfig, or a preset name (with ``overrides``).
    Raises ValueError for an input too small for the network's downsampling. With ``pool_first`` a
    transition's 1x1 conv runs at the pooled resolution; where it pools is read off ``StagePlan.pool``.
    ``plans``: stage plans to count instead of ``config.stages()`` (the forms the package does not
    build: :func:`pool_paths`, :func:`split_rounded_up`); each must pool where the config's does.
    """
    start = time.perf_counter()
    batch = _checks.positive_int("batch", batch)
    config = _load_config(config_or_name, overrides)
    h, w = _pair(input_size)
    hs, ws = feature_sizes(config, h), feature_sizes(config, w)  # ValueError for a too small input
    if plans is None:
        plans = config.stages()
    elif [p.downsample for p in plans] != [p.downsample for p in config.stages()]:
        raise ValueError(f"plans must have one plan per stage ({len(config.block_config)}), each "
                         f"pooling where the config's stage pools")
    csp = any(p.fusion for p in plans)
    rows, c0 = _Rows(batch), config.num_init_features
    stem_hw = (hs[0], ws[0])
    conv0_hw = stem_hw if config.stem == "cifar" else ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
    rows.conv("features.conv0", config.in_channels, c0, 7 if config.stem == "imagenet" else 3, (h, w),
              conv0_hw)
    if config.stem_norm:
        rows.bn("features.norm0", c0, conv0_hw)
    pool_first = getattr(config, "pool_first", False)
    for plan, hh, ww in zip(plans, hs, ws):
        hw, i, stage = (hh, ww), plan.index, f"stage{plan.index}"
        pooled = (hh // 2, ww // 2)
        block = f"features.stage{i}.dense" if csp else f"features.denseblock{i}"
        inter = plan.bn_size * plan.growth_rate
        for j in range(1, plan.num_layers + 1):
            cin = plan.dense_channels + (j - 1) * plan.growth_rate
            layer, where = f"{block}.denselayer{j}", dict(stage=stage, part="dense", layer=j)
            rows.bn(f"{layer}.norm1", cin, hw, **where)
            rows.conv(f"{layer}.conv1", cin, inter, 1, hw, hw, **where)
            rows.bn(f"{layer}.norm2", inter, hw, **where)
            rows.conv(f"{layer}.conv2", inter, plan.growth_rate, 3, hw, hw, **where)
        if plan.dense_transition_channels:
            conv_hw = pooled if pool_first and plan.pool == "paths" else hw
            rows.transition(f"features.stage{i}.dense_transition", plan.dense_out_channels,
                            plan.dense_transition_channels, (hw, conv_hw),
                            stage=stage, part="dense_transition")
        if plan.transition_channels:
            name = f"features.stage{i}.transition" if csp else f"features.transition{i}"
            conv_hw = pooled if pool_first and plan.pool == "transition" else hw
            bn_hw = hw
            if plan.pool == "paths":    # csp with both paths pooled (pool_paths): the concat is pooled
                bn_hw = conv_hw = pooled
            rows.transition(name, plan.concat_channels, plan.transition_channels, (bn_hw, conv_hw),
                            stage=stage, part="transition")
    c_out = plans[-1].out_channels
    head = dict(stage="head", part="head")
    if config.final_norm:
        rows.bn("features.norm5", c_out, (hs[-1], ws[-1]), **head)
    rows.rows.append(LayerCost("classifier", "linear", c_out, config.num_classes, (1, 1),
                               c_out * config.num_classes + config.num_classes,
                               batch * c_out * config.num_classes, **head))
    return CostReport(config, (h, w), batch, rows.rows, plans, time.perf_counter() - start)


def pool_paths(config_or_name, input_size=224, batch: int = 1, **overrides) -> CostReport:
    """The cost of a csp model whose stages pool both paths before the concat, as fusion last does:
    the dense transition pools and the skip part is pooled, so the transition after the concat runs
    at a quarter of the pixels. The package builds no such model (its csp pools in the transition
    after the concat); this counts one. Not the same function: the transition's BN and ReLU then see
    pooled values. ValueError unless the config has ``fusion="csp"``.
    """
    from dataclasses import replace

    config = _load_config(config_or_name, overrides)
    if getattr(config, "fusion", None) != "csp":
        raise ValueError(f"config_or_name must be a CSPDenseNet config with fusion='csp', got "
                         f"fusion={getattr(config, 'fusion', None)!r}")
    plans = [replace(p, pool="paths") if p.pool == "transition" else p for p in config.stages()]
    return analyze(config, input_size, batch, plans=plans)


def split_rounded_up(config_or_name, input_size=224, batch: int = 1, **overrides) -> CostReport:
    """The cost of a CSP model whose splits round the other way: the skip part gets
    floor((1 - part_ratio) x c) channels and the dense part the rest, so an odd half split gives its
    extra channel to the dense part (:func:`cspnet_lab.csp.split_channels` gives it to the skip part).
    Every width after the split follows the config's own rules. ValueError for a config without a
    split, or one that this rounding leaves with an empty path.
    """
    from dataclasses import replace

    config = _load_config(config_or_name, overrides)
    if getattr(config, "fusion", None) is None:
        raise ValueError("config_or_name must be a CSPDenseNet config (one with a split)")
    plans, c, last = [], config.num_init_features, len(config.block_config)
    for p in config.stages():
        skip = _checks.scaled_channels(c, 1 - config.part_ratio)
        dense = c - skip
        if skip < 1 and config.part_ratio < 1.0:
            raise ValueError(f"part_ratio={config.part_ratio} rounded up leaves stage {p.index}'s skip "
                             f"part ({c} channels in) empty")
        d_out = dense + p.num_layers * p.growth_rate
        td = config._dense_transition_width(p.index, c, skip, d_out, p.index == last)
        t = None if p.transition_channels is None else \
            config._transition_width(skip + (td or d_out), f"stage {p.index}'s transition")
        plans.append(replace(p, in_channels=c, skip_channels=skip, dense_channels=dense,
                             dense_transition_channels=td, transition_channels=t))
        c = plans[-1].out_channels
    return analyze(config, input_size, batch, plans=plans)


MAC_TERMS = ("stem", "base reads", "growth reads", "3x3 convs", "dense transitions", "transitions",
             "classifier")


def macs_terms(report: CostReport) -> dict[str, int]:
    """The multiply-adds split into the terms a split can and cannot touch.

    A dense layer's 1x1 conv reads the block's base channels c'' and the growth channels of the layers
    before it: "base reads" is the part of its multiply-adds that comes from c'', "growth reads" the
    rest. A half split halves only the base reads; the growth reads and the 3x3 convs stay as they are.
    """
    out = dict.fromkeys(MAC_TERMS, 0)
    plans = {f"stage{p.index}": p for p in report.stages}
    for r in report.layers:
        if r.kind == "bn":
            continue
        if r.part == "dense" and r.kernel == 1:
            base = r.macs * plans[r.stage].dense_channels // r.in_channels
            out["base reads"] += base
            out["growth reads"] += r.macs - base
        elif r.part == "dense":
            out["3x3 convs"] += r.macs
        else:
            out[{"stem": "stem", "dense_transition": "dense transitions", "transition": "transitions",
                 "head": "classifier"}[r.part]] += r.macs
    return out


def layer_balance(report: CostReport, top: int = 3) -> dict:
    """How evenly the multiply-adds spread over the conv layers (the paper's "balance computation").

    ``peak``: the largest conv's multiply-adds, ``peak_layer``/``peak_part``: which one; ``cv``: the
    standard deviation over the mean; ``max_over_mean``; ``top``: the ``top`` largest (name, MACs).
    """
    convs = sorted((r for r in report.layers if r.kind == "conv"), key=lambda r: -r.macs)
    macs = [r.macs for r in convs]
    mean = statistics.fmean(macs)
    return dict(peak=convs[0].macs, peak_layer=convs[0].name, peak_part=convs[0].part,
                mean=mean, cv=statistics.pstdev(macs) / mean, max_over_mean=convs[0].macs / mean,
                count=len(convs), top=[(r.name, r.macs) for r in convs[:top]])


def transition_peaks(report: CostReport) -> dict:
    """The largest transition convs, the bottleneck as the paper's section 4.5 and Figure 7 place it.

    ``transition``: the largest conv of a stage's transition (DenseNet's transitionN, CSP's
    stageN.transition), as (name, MACs); ``any_transition``: the largest over transitions and dense
    transitions together (a CSP stage's 1x1 conv on the dense path counts as a transition layer too).
    """
    convs = [r for r in report.layers if r.kind == "conv"]
    trans = [r for r in convs if r.part == "transition"]
    both = [r for r in convs if r.part in ("transition", "dense_transition")]
    if not trans:
        raise ValueError("report has no transition conv")
    top = lambda rows: max(rows, key=lambda r: r.macs)      # noqa: E731
    return dict(transition=(top(trans).name, top(trans).macs),
                any_transition=(top(both).name, top(both).macs))

# --------------------------------------------------------------------------- measured, on a real model

@dataclass(frozen=True)
class TracedLayer:
    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    io_bytes: int


def _input(model: nn.Module, input_size, batch: int) -> torch.Tensor:
    """A zero batch on the model's device (``meta`` works: shapes only), with its input channels."""
    h, w = _pair(input_size)
    config = getattr(model, "config", None)
    in_channels = config.in_channels if config is not None else _first_conv(model).in_channels
    param = next(model.parameters(), None)
    return torch.zeros(batch, in_channels, h, w, device=param.device if param is not None else "cpu")


def trace(model: nn.Module, input_size=224, batch: int = 1) -> list[TracedLayer]:
    """Run ``model`` once (eval mode, no grad) and record every leaf module's shapes and costs.

    MACs are read off the real tensors: conv = output elements x in_channels/groups x kernel area,
    linear = batch x in x out. ``io_bytes`` of a conv = bytes of its input plus its output.
    """
    rows: list[TracedLayer] = []

    def hook(module, inputs, output, name):
        x = inputs[0] if isinstance(inputs[0], torch.Tensor) else torch.cat(inputs[0], 1)
        macs = module_macs(module, output)      # the package's one rule (cspnet_lab.models.counting)
        io = (x.numel() + output.numel()) * x.element_size() if isinstance(module, nn.Conv2d) else 0
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(TracedLayer(name, type(module).__name__, tuple(x.shape), tuple(output.shape),
                                params, macs, io))

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
               for n, m in model.named_modules() if len(list(m.children())) == 0 and n]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(_input(model, input_size, batch))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows


def fvcore_analysis(model: nn.Module, x: torch.Tensor):
    """fvcore's FlopCountAnalysis of ``model`` on ``x``, with its warnings off: the one place the
    package calls fvcore. fvcore counts multiply-adds, batch norm included (2 per element in eval)."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return analysis


_FVCORE_CONV_LINEAR = ("conv", "linear", "addmm", "matmul")


def fvcore_macs(model: nn.Module, input_size=224, batch: int = 1) -> dict[str, int]:
    """fvcore's conv + linear counts per module (name -> multiply-adds), leaf modules only."""
    model = model.eval()
    counts = fvcore_analysis(model, _input(model, input_size, batch)).by_module_and_operator()
    return {name: sum(v for k, v in counts.get(name, {}).items() if k in _FVCORE_CONV_LINEAR)
            for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}


def counter_table(model: nn.Module, input_size=224) -> list[dict]:
    """The same model's total from fvcore, torch's FlopCounterMode and torchinfo, with each convention.

    ``as_conv_linear_macs`` converts each tool's number to conv + linear multiply-adds (bias excluded),
    our convention, using only what that tool itself reports. The tests hold all of them equal.
    """
    from torch.utils.flop_counter import FlopCounterMode
    import torchinfo

    model = model.eval()
    x = _input(model, input_size, 1)

    fv = fvcore_analysis(model, x)
    fv_total = fv.total()
    fv_convlin = sum(v for k, v in fv.by_operator().items() if k in _FVCORE_CONV_LINEAR)

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    fc_total = counter.get_total_flops()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = torchinfo.summary(model, input_data=x, verbose=0)
    ti_total = stats.total_mult_adds
    # torchinfo adds, per BN layer, its parameter count (2c); per Linear, its bias; per conv, its bias
    # (none here). Those are read off the model, so the conversion uses no other tool's number.
    ti_extra = sum(m.weight.numel() + m.bias.numel() for m in model.modules()
                   if isinstance(m, nn.BatchNorm2d))
    ti_extra += sum(m.bias.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                    and m.bias is not None)

    ours = analyze(model.config, tuple(x.shape[-2:])).macs if hasattr(model, "config") else None
    return [
        dict(tool="cspnet_lab.costs.analyze", count=ours, as_conv_linear_macs=ours,
             convention="CANONICAL: multiply-adds of convs and linears, bias excluded, from the config "
                        "(the rule of cspnet_lab.models.counting, which every counter of the package uses)"),
        dict(tool="fvcore FlopCountAnalysis", count=fv_total, as_conv_linear_macs=fv_convlin,
             convention="multiply-adds; also counts batch norm and the final adaptive average "
                        f"pooling (here {fv_total - fv_convlin:,} of them); max and average pooling "
                        "are 'unsupported' (0); ignores cat and relu"),
        dict(tool="torch FlopCounterMode", count=fc_total, as_conv_linear_macs=fc_total // 2,
             convention="FLOPs = 2 x multiply-adds, convolutions and matrix products only"),
        dict(tool="torchinfo total_mult_adds", count=ti_total, as_conv_linear_macs=ti_total - ti_extra,
             convention="multiply-adds incl. bias, plus each batch-norm layer's parameter count"),
    ]


def module_stages(model: nn.Module) -> dict[int, str]:
    """id(module) -> "stem", "stageN" or "head", asked of the model (``stage_parts()``), not its names.

    Every module of a stage's parts is that stage's; the features before the first stage are the stem,
    those after the last (norm5) and the classifier are the head.
    """
    out: dict[int, str] = {}
    for parts in model.stage_parts():
        for part in (parts.block, parts.dense_transition, parts.transition, parts.skip_pool):
            if part is not None:
                out.update((id(m), f"stage{parts.plan.index}") for m in part.modules())
    seen_stage = False
    for child in model.features.children():
        if any(id(m) in out for m in child.modules()):   # a stage, or the container of one
            seen_stage = True
            continue
        out.update((id(m), "head" if seen_stage else "stem") for m in child.modules())
    out.update((id(m), "head") for m in model.classifier.modules())
    return out


def measure_conv_io_bytes(model: nn.Module, input_size=224, batch: int = 1) -> dict[str, int]:
    """Bytes of every conv's input and output on one forward pass, per stage (the measured traffic)."""
    stages = module_stages(model)
    modules = dict(model.named_modules())
    out: dict[str, int] = {}
    for row in trace(model, input_size, batch):
        if row.type == "Conv2d":
            stage = stages[id(modules[row.name])]
            out[stage] = out.get(stage, 0) + row.io_bytes
    return out


# --------------------------------------------------------------------------- comparisons

def _pct(new: float, old: float) -> float:
    return percent_change(new, old)


def _analyze_taking(model, input_size, overrides: dict) -> CostReport:
    """analyze() of a config, preset name or ``name:key=value`` spec, with the ``overrides`` its config
    takes (``fusion`` only reaches CSP presets)."""
    from dataclasses import replace

    from ..models.registry import ModelSpec, model_config

    if isinstance(model, DenseNetConfig):
        taken = {k: v for k, v in overrides.items() if k in type(model).__dataclass_fields__}
        return analyze(replace(model, **taken), input_size)
    spec = ModelSpec.parse(model)
    fields = type(model_config(spec.name)).__dataclass_fields__
    taken = {k: v for k, v in overrides.items() if k in fields}
    return analyze(model_config(spec.name, **{**dict(spec.overrides), **taken}), input_size)


def compare(base: str, other: str, input_size=224, **overrides) -> list[dict]:
    """Params, multiply-adds and memory traffic of two models and the change in percent.

    ``base``/``other``: configs, preset names or ``name:key=value`` specs. ``overrides`` apply to
    every model that takes them (``fusion``, ``part_ratio`` and ``widths`` only reach CSP presets).
    """
    from ..models.registry import ModelSpec, model_kind
    kinds = [model_kind(ModelSpec.parse(m).name) if isinstance(m, str) else "densenet" for m in (base, other)]
    if kinds != ["densenet", "densenet"]:     # PeleeNet, the darknet cfgs, the blocks: params and MACs
        specs = [ModelSpec.parse(m) for m in (base, other)]
        a, b = (count_model(s.name, input_size, **dict(s.overrides)) for s in specs)
        return [dict(metric=m, base=a[k], other=b[k], change_pct=_pct(b[k], a[k]))
                for m, k in (("parameters", "params"), ("multiply-adds", "macs"))]
    a, b = (_analyze_taking(name, input_size, overrides) for name in (base, other))
    rows = [
        ("parameters", a.params, b.params),
        ("multiply-adds", a.macs, b.macs),
        ("conv input+output bytes", a.conv_io_bytes, b.conv_io_bytes),
        ("CIO at the real split (channels)", sum(a.cio().values()), sum(b.cio().values())),
    ]
    return [dict(metric=m, base=x, other=y, change_pct=_pct(y, x)) for m, x, y in rows]


def savings_table(depths=(121, 169, 201), part_ratios=(0.25, 0.5, 0.75), fusions=("csp", "first", "last"),
                  input_size=224, widths=WIDTHS) -> list[dict]:
    """Every CSP variant's change in params, multiply-adds and conv memory traffic against its DenseNet,
    in each stage-width form: "narrow" (the dense transition compresses) and "matched" (stage outputs
    as wide as DenseNet's; csp still adds its dense transition, see :mod:`cspnet_lab.csp`)."""
    rows = []
    for depth in depths:
        base = analyze(f"densenet{depth}", input_size)
        for fusion in fusions:
            for ratio in part_ratios:
                for form in widths:
                    r = analyze(f"cspdensenet{depth}", input_size, fusion=fusion, part_ratio=ratio,
                                widths=form)
                    rows.append(dict(depth=depth, fusion=fusion, part_ratio=ratio, widths=form,
                                     params=r.params, macs=r.macs,
                                     params_change_pct=_pct(r.params, base.params),
                                     macs_change_pct=_pct(r.macs, base.macs),
                                     io_change_pct=_pct(r.conv_io_bytes, base.conv_io_bytes),
                                     base_params=base.params, base_macs=base.macs))
    return rows


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the activations autograd keeps for backward on one training forward pass.

    Measured with ``torch.autograd.graph.saved_tensors_hooks``: exact and machine-independent. Each
    storage counts once (a tensor saved by several ops, or views of one buffer, are one allocation);
    parameters are not activations and are left out.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())

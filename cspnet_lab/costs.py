"""What a model costs: parameters, multiply-adds, memory traffic. Counted three ways that must agree.

* :func:`analyze` derives every conv/BN/linear layer's parameters and multiply-adds from a model's
  config alone (pure Python, no modules built): fast enough for an explorer to call on every slider move.
* :func:`trace` runs a real model with forward hooks and reads the same numbers off the tensors.
* :func:`fvcore_macs` asks fvcore; the tests hold all three equal, layer by layer.

"Multiply-adds" (MACs) here means those of convolutions and linear layers, bias excluded: one
multiply-add per weight per output position, fvcore's convention for these ops. FLOP counters differ by
design (see :func:`counter_table`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .csp import CSPDenseNetConfig
from .densenet import DenseNetConfig, StagePlan, feature_sizes

BYTES_PER_ELEMENT = 4  # float32


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


# --------------------------------------------------------------------------- analytic, from the config

def stage_of(name: str) -> str:
    """The part of the network a module belongs to, from its name: "stem", "stageN" or "head"
    ("features.denseblock2.denselayer1.conv1" and "features.stage2.dense..." are both "stage2")."""
    parts = name.split(".")
    if parts[0] == "classifier" or parts[1] == "norm5":
        return "head"
    if parts[1].startswith(("conv0", "norm0", "relu0", "pool0")):
        return "stem"
    return "stage" + "".join(ch for ch in parts[1] if ch.isdigit())


@dataclass(frozen=True)
class LayerCost:
    """One layer with parameters: its name in the model, kind, channels, output size and costs."""

    name: str
    kind: str               # "conv", "bn" or "linear"
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    params: int
    macs: int               # multiply-adds of convs and linears (0 for BN)
    io_bytes: int = 0       # convs: bytes of input + output feature maps (the measured memory traffic)

    @property
    def stage(self) -> str:
        return stage_of(self.name)

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
        """The paper's CIO formula for each stage's (partial) dense block, in channel units."""
        out = {}
        for p in self.stages:
            if p.skip_channels == 0 and p.fusion is None:
                out[f"stage{p.index}"] = cio_dense_block(p.in_channels, p.growth_rate, p.num_layers)
            else:
                out[f"stage{p.index}"] = cio_partial_dense_block(p.in_channels, p.growth_rate, p.num_layers)
        return out


def cio_dense_block(c: int, m: int, d: int) -> float:
    """CSPNet paper, section 3.1: memory traffic of a dense block, (c x m) + ((m^2 + m) x d) / 2.

    c: base feature map channels, m: growth rate, d: number of dense layers. The paper's formula, as
    printed; it counts channels, not bytes, and the paper uses it only to compare the two blocks.
    """
    return (c * m) + ((m ** 2 + m) * d) / 2


def cio_partial_dense_block(c: int, m: int, d: int) -> float:
    """CSPNet paper, section 3.1: memory traffic of a partial dense block, ((c x m) + (m^2 + m) x d) / 2."""
    return ((c * m) + (m ** 2 + m) * d) / 2


class _Rows:
    """Collects LayerCost rows while walking a plan."""

    def __init__(self, batch: int) -> None:
        self.batch, self.rows = batch, []

    def conv(self, name, cin, cout, k, hw_in, hw_out):
        h, w = hw_out
        macs = self.batch * h * w * cin * cout * k * k
        io = self.batch * BYTES_PER_ELEMENT * (cin * hw_in[0] * hw_in[1] + cout * h * w)
        self.rows.append(LayerCost(name, "conv", cin, cout, hw_out, cin * cout * k * k, macs, io))

    def bn(self, name, c, hw):
        self.rows.append(LayerCost(name, "bn", c, c, hw, 2 * c, 0))

    def transition(self, prefix, cin, cout, hw):
        self.bn(f"{prefix}.norm", cin, hw)
        self.conv(f"{prefix}.conv", cin, cout, 1, hw, hw)


def analyze(config_or_name, input_size=224, batch: int = 1, **overrides) -> CostReport:
    """Parameters and multiply-adds of every layer, from the config alone (no model is built).

    ``config_or_name``: a DenseNetConfig / CSPDenseNetConfig, or a preset name (with ``overrides``).
    Raises ValueError for an input too small for the network's downsampling.
    """
    start = time.perf_counter()
    if isinstance(config_or_name, str):
        from .models import model_config
        config = model_config(config_or_name, **overrides)
    else:
        config = config_or_name
    h, w = _pair(input_size)
    hs, ws = feature_sizes(config, h), feature_sizes(config, w)
    if min(hs + ws) < 1:
        from .densenet import min_input_size
        raise ValueError(f"input_size {h}x{w} is too small for this network's downsampling: height and width "
                         f"must be >= {min_input_size(config)}")
    csp = isinstance(config, CSPDenseNetConfig)
    rows, c0 = _Rows(batch), config.num_init_features
    stem_hw = (hs[0], ws[0])
    conv0_hw = stem_hw if config.stem == "cifar" else ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
    rows.conv("features.conv0", config.in_channels, c0, 7 if config.stem == "imagenet" else 3, (h, w), conv0_hw)
    if config.stem_norm:
        rows.bn("features.norm0", c0, conv0_hw)
    plans = config.stages()
    for plan, hh, ww in zip(plans, hs, ws):
        hw, i = (hh, ww), plan.index
        block = f"features.stage{i}.dense" if csp else f"features.denseblock{i}"
        inter = plan.bn_size * plan.growth_rate
        for j in range(plan.num_layers):
            cin = plan.dense_channels + j * plan.growth_rate
            layer = f"{block}.denselayer{j + 1}"
            rows.bn(f"{layer}.norm1", cin, hw)
            rows.conv(f"{layer}.conv1", cin, inter, 1, hw, hw)
            rows.bn(f"{layer}.norm2", inter, hw)
            rows.conv(f"{layer}.conv2", inter, plan.growth_rate, 3, hw, hw)
        if plan.partial_transition_channels:
            rows.transition(f"features.stage{i}.partial_transition", plan.dense_out_channels,
                            plan.partial_transition_channels, hw)
        if plan.transition_channels:
            name = f"features.stage{i}.transition" if csp else f"features.transition{i}"
            rows.transition(name, plan.concat_channels, plan.transition_channels, hw)
    c_out = plans[-1].out_channels
    if config.final_norm:
        rows.bn("features.norm5", c_out, (hs[-1], ws[-1]))
    rows.rows.append(LayerCost("classifier", "linear", c_out, config.num_classes, (1, 1),
                               c_out * config.num_classes + config.num_classes,
                               batch * c_out * config.num_classes))
    return CostReport(config, (h, w), batch, rows.rows, plans, time.perf_counter() - start)


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


def trace(model: nn.Module, input_size=224, batch: int = 1) -> list[TracedLayer]:
    """Run ``model`` once (eval mode, no grad) and record every leaf module's shapes and costs.

    MACs are read off the real tensors: conv = output elements x in_channels/groups x kernel area,
    linear = batch x in x out. ``io_bytes`` of a conv = bytes of its input plus its output.
    """
    h, w = _pair(input_size)
    in_channels = getattr(getattr(model, "config", None), "in_channels", 3)
    rows: list[TracedLayer] = []

    def hook(module, inputs, output, name):
        x = inputs[0] if isinstance(inputs[0], torch.Tensor) else torch.cat(inputs[0], 1)
        macs = io = 0
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
            io = (x.numel() + output.numel()) * x.element_size()
        elif isinstance(module, nn.Linear):
            macs = x.numel() // module.in_features * module.in_features * module.out_features
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(TracedLayer(name, type(module).__name__, tuple(x.shape), tuple(output.shape),
                                params, macs, io))

    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
               for n, m in model.named_modules() if len(list(m.children())) == 0 and n]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(batch, in_channels, h, w))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows


def fvcore_macs(model: nn.Module, input_size=224, batch: int = 1) -> dict[str, int]:
    """fvcore's conv + linear counts per module (name -> multiply-adds), leaf modules only."""
    from fvcore.nn import FlopCountAnalysis

    h, w = _pair(input_size)
    in_channels = getattr(getattr(model, "config", None), "in_channels", 3)
    model = model.eval()
    analysis = FlopCountAnalysis(model, torch.zeros(batch, in_channels, h, w))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    counts = analysis.by_module_and_operator()
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            ops = counts.get(name, {})
            out[name] = sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul"))
    return out


def counter_table(model: nn.Module, input_size=224) -> list[dict]:
    """The same model's total from fvcore, torch's FlopCounterMode and torchinfo, with each convention.

    ``as_conv_linear_macs`` converts each tool's number to conv + linear multiply-adds (bias excluded),
    our convention, using only what that tool itself reports. The tests hold all of them equal.
    """
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode
    import torchinfo

    h, w = _pair(input_size)
    in_channels = getattr(getattr(model, "config", None), "in_channels", 3)
    model = model.eval()
    x = torch.zeros(1, in_channels, h, w)

    fv = FlopCountAnalysis(model, x)
    fv.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    fv_ops = fv.by_operator()
    fv_total = fv.total()
    fv_convlin = sum(v for k, v in fv_ops.items() if k in ("conv", "linear", "addmm", "matmul"))

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
    ti_extra = sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    ti_extra += sum(m.bias.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                    and m.bias is not None)

    ours = analyze(model.config, (h, w)).macs if hasattr(model, "config") else None
    return [
        dict(tool="cspnet_lab.costs.analyze", count=ours, as_conv_linear_macs=ours,
             convention="multiply-adds of convs and linears, bias excluded, from the config"),
        dict(tool="fvcore FlopCountAnalysis", count=fv_total, as_conv_linear_macs=fv_convlin,
             convention="multiply-adds; also counts batch norm and pooling (here "
                        f"{fv_total - fv_convlin:,} of them); ignores cat and relu"),
        dict(tool="torch FlopCounterMode", count=fc_total, as_conv_linear_macs=fc_total // 2,
             convention="FLOPs = 2 x multiply-adds, convolutions and matrix products only"),
        dict(tool="torchinfo total_mult_adds", count=ti_total, as_conv_linear_macs=ti_total - ti_extra,
             convention="multiply-adds incl. bias, plus each batch-norm layer's parameter count"),
    ]


def measure_conv_io_bytes(model: nn.Module, input_size=224, batch: int = 1) -> dict[str, int]:
    """Bytes of every conv's input and output on one forward pass, per stage (the measured memory traffic)."""
    out: dict[str, int] = {}
    for row in trace(model, input_size, batch):
        if row.type == "Conv2d":
            stage = stage_of(row.name)
            out[stage] = out.get(stage, 0) + row.io_bytes
    return out


# --------------------------------------------------------------------------- comparisons

def _pct(new: float, old: float) -> float:
    return 100.0 * (new - old) / old


def compare(base: str, other: str, input_size=224, **overrides) -> list[dict]:
    """Params, multiply-adds and memory traffic of two presets and the change in percent.

    ``overrides`` apply to every model that takes them (e.g. ``fusion`` and ``part_ratio`` only reach
    CSPDenseNet presets).
    """
    from .models import _CONFIGS, _preset

    reports = []
    for name in (base, other):
        cls, _ = _preset(name)
        fields = _CONFIGS[cls].__dataclass_fields__
        reports.append(analyze(name, input_size, **{k: v for k, v in overrides.items() if k in fields}))
    a, b = reports
    cio_a, cio_b = sum(a.cio().values()), sum(b.cio().values())
    rows = [
        ("parameters", a.params, b.params),
        ("multiply-adds", a.macs, b.macs),
        ("conv input+output bytes", a.conv_io_bytes, b.conv_io_bytes),
        ("CIO (paper's formula)", cio_a, cio_b),
    ]
    return [dict(metric=m, base=x, other=y, change_pct=_pct(y, x)) for m, x, y in rows]


def savings_table(depths=(121, 169, 201), part_ratios=(0.25, 0.5, 0.75), fusions=("csp", "first", "last"),
                  input_size=224) -> list[dict]:
    """Every CSP variant's change in params, multiply-adds and conv memory traffic against its DenseNet."""
    rows = []
    for depth in depths:
        base = analyze(f"densenet{depth}", input_size)
        for fusion in fusions:
            for ratio in part_ratios:
                r = analyze(f"cspdensenet{depth}", input_size, fusion=fusion, part_ratio=ratio)
                rows.append(dict(depth=depth, fusion=fusion, part_ratio=ratio,
                                 params=r.params, macs=r.macs,
                                 params_change_pct=_pct(r.params, base.params),
                                 macs_change_pct=_pct(r.macs, base.macs),
                                 io_change_pct=_pct(r.conv_io_bytes, base.conv_io_bytes),
                                 base_params=base.params, base_macs=base.macs))
    return rows


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: columns are (key, header, format spec)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([("-" if row.get(k) is None else format(row[k], f)) for k, _, f in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)




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


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """The same table as :func:`format_table`, in Markdown (the chapters display it rendered)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---:" if f else ":---" for _, _, f in columns) + "|"
    body = ["| " + " | ".join("-" if row.get(k) is None else format(row[k], f) for k, _, f in columns) + " |"
            for row in rows]
    return "\n".join([head, rule, *body])

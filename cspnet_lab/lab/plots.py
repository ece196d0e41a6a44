"""The matplotlib figures the chapters show. Each takes computed numbers and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ..measure import bench as _bench
from ..measure.costs import CostReport

STAGE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


# Checks every figure function makes first: bad input is a ValueError/TypeError naming the argument,
# never a traceback from inside matplotlib, a hang or a blank figure.

def _check_ax(ax) -> None:
    from matplotlib.axes import Axes
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")


def _check_report(name: str, report) -> CostReport:
    if not isinstance(report, CostReport):
        raise TypeError(f"{name} must be a CostReport (cspnet_lab.costs.analyze(...)), got "
                        f"{type(report).__name__}")
    if not report.layers:
        raise ValueError(f"{name} holds no layers: there is nothing to draw")
    return report


def _check_plan(plan) -> None:
    from ..models.densenet import StagePlan
    if not isinstance(plan, StagePlan):
        raise TypeError(f"plan must be a StagePlan (model.plans[i] or config.stages()[i]), got "
                        f"{type(plan).__name__}")


def _check_title(title) -> None:
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")


def _finite(name: str, value) -> float:
    import math
    from numbers import Real
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _dense_layers(report: CostReport):
    """(stage index, layer index, channels in, multiply-adds) for every dense layer, in order."""
    index = {f"stage{p.index}": p.index for p in report.stages}
    out: dict[tuple[int, int], list] = {}
    for r in report.layers:
        if r.part == "dense" and r.kind == "conv":
            row = out.setdefault((index[r.stage], r.layer), [index[r.stage], r.layer, 0, 0])
            row[3] += r.macs
            if r.kernel == 1:
                row[2] = r.in_channels      # the 1x1 conv reads the whole concatenation
    return [tuple(v) for v in out.values()]


def _stage_stairs(ax, layers, column: int, scale: float = 1.0, legend: bool = True):
    """One filled step outline per stage (one artist each: much faster to draw than a bar per layer)."""
    for stage in sorted({row[0] for row in layers}):
        xs = [i for i, row in enumerate(layers) if row[0] == stage]
        ax.stairs([layers[i][column] * scale for i in xs], [x - 0.5 for x in xs] + [xs[-1] + 0.5], fill=True,
                  color=STAGE_COLORS[(stage - 1) % 6], label=f"stage {stage}" if legend else None)
    ax.set_xlim(-1, len(layers))
    ax.set_ylim(0, None)


def channels_per_layer(report: CostReport, ax=None, label: str | None = None):
    """Channels each dense layer reads (c0 + (l-1) k), layer by layer through the network."""
    _check_ax(ax)
    _check_title(label)
    layers = _dense_layers(_check_report("report", report))
    if not layers:
        raise ValueError("report has no dense layers: there is nothing to draw")
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    _stage_stairs(ax, layers, 2, legend=label is None)
    ax.set_xlabel("dense layer (through the whole network)")
    ax.set_ylabel("input channels")
    ax.set_title(label or "Channels each dense layer reads")
    if label is None:
        ax.legend(frameon=False, ncol=4, fontsize=8, loc="upper left")
    if own:
        fig.tight_layout()
    return fig


def macs_per_layer(report: CostReport, ax=None):
    """Multiply-adds of each dense layer (both convs)."""
    _check_ax(ax)
    layers = _dense_layers(_check_report("report", report))
    if not layers:
        raise ValueError("report has no dense layers: there is nothing to draw")
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    _stage_stairs(ax, layers, 3, scale=1e-6)
    ax.set_xlabel("dense layer (through the whole network)")
    ax.set_ylabel("multiply-adds (millions)")
    ax.set_title("Cost of each dense layer")
    ax.legend(frameon=False, ncol=4, fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def stage_costs(reports: dict[str, CostReport], metric: str = "macs"):
    """Grouped bars: per-stage params or multiply-adds of several models."""
    import numpy as np

    if not isinstance(reports, dict) or not reports:
        raise ValueError("reports must map at least one model name to its cost report, got "
                         f"{reports!r}")
    for name, report in reports.items():
        _check_report(f"reports[{name!r}]", report)
    if metric not in ("macs", "params"):
        raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")
    names = list(reports)
    stages = list(next(iter(reports.values())).by_stage())
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        by = reports[name].by_stage()
        ax.bar(np.arange(len(stages)) + i * width, [by.get(s, {}).get(metric, 0) / 1e6 for s in stages],
               width, label=name, color=STAGE_COLORS[i % 6])
    ax.set_xticks(np.arange(len(stages)) + width * (len(names) - 1) / 2, stages)
    ax.set_ylabel({"macs": "multiply-adds (millions)", "params": "parameters (millions)"}[metric])
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


SKIP_COLOR, DENSE_COLOR, JOINED_COLOR = "#8DA0CB", "#FC8D62", "#66C2A5"


def _stage_columns(plan):
    """The stage as columns of stacked segments (name, channels, colour, names it flows from).

    Where the pooling runs is read off ``plan.pool``, never re-derived."""
    cols = [("stage input x0", [("skip", plan.skip_channels, SKIP_COLOR, ()),
                                ("dense", plan.dense_channels, DENSE_COLOR, ())])]
    skip = [("skip", plan.skip_channels, SKIP_COLOR, ("skip",))] if plan.skip_channels else []
    cols.append((f"dense block\n{plan.num_layers} layers, k={plan.growth_rate}",
                 skip + [("dense", plan.dense_out_channels, DENSE_COLOR, ("dense",))]))
    if plan.dense_transition_channels:
        pool = " + pool" if plan.pool == "paths" else ""
        cols.append((f"dense transition\n1x1 conv{pool}",
                     skip + [("dense", plan.dense_transition_channels, DENSE_COLOR, ("dense",))]))
    if plan.skip_channels:
        cols.append(("concat", [("joined", plan.concat_channels, JOINED_COLOR, ("skip", "dense"))]))
    if plan.transition_channels:
        cols.append(("transition\n1x1 conv" + (" + pool" if plan.pool == "transition" else ""),
                     [("joined", plan.transition_channels, JOINED_COLOR, ("joined", "dense"))]))
    elif plan.pool == "concat":
        cols.append(("2x2 avg pool", [("joined", plan.concat_channels, JOINED_COLOR, ("joined",))]))
    return cols


def stage_diagram(plan, ax=None, title: str | None = None, scale: float | None = None):
    """Where every channel of one stage goes: bar heights are channel counts, read off the stage's plan.

    ``plan`` is a :class:`~cspnet_lab.densenet.StagePlan` (``model.plans[i]``). Blue: the skip part x0',
    orange: the dense path, green: after the concat.
    """
    from matplotlib.patches import Polygon

    _check_plan(plan)
    _check_ax(ax)
    _check_title(title)
    if scale is not None and not _finite("scale", scale) > 0:
        raise ValueError(f"scale must be a finite number > 0 (channels at full height) or None, got {scale!r}")
    cols = _stage_columns(plan)
    scale = scale or max(sum(seg[1] for seg in segs) for _, segs in cols)
    if not scale > 0:
        raise ValueError(f"plan has no channels (stage {plan.index}): there is nothing to draw")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.6))
    width, gap = 0.5, 1.0
    prev = None
    for i, (label, segs) in enumerate(cols):
        x, y, spans = i * (width + gap), 0.0, {}
        for name, c, color, sources in segs:
            if c == 0:          # DenseNet's stage input has no skip part: no bar, no "0"
                continue
            h = c / scale
            ax.add_patch(plt.Rectangle((x, y), width, h, color=color, ec="white"))
            if h > 0.04:
                ax.text(x + width / 2, y + h / 2, str(c), ha="center", va="center", fontsize=8)
            else:  # too thin to hold its label: write it beside the bar
                ax.text(x + width + 0.03, y + h / 2, str(c), ha="left", va="center", fontsize=7)
            if prev is not None:  # a band from the segments this one is made of
                px, pspans = prev
                src = [pspans[n] for n in sources if n in pspans]
                if src:
                    y0, y1 = min(v[0] for v in src), max(v[1] for v in src)
                    ax.add_patch(Polygon([(px + width, y0), (px + width, y1), (x, y + h), (x, y)],
                                         closed=True, color=color, alpha=0.25, lw=0))
            spans[name] = (y, y + h)
            y += h
        ax.text(x + width / 2, -0.04, label, ha="center", va="top", fontsize=7.5)
        prev = (x, spans)
    ax.set_xlim(-0.2, len(cols) * (width + gap) - gap + 0.2)
    ax.set_ylim(-0.22, 1.05)
    ax.axis("off")
    ax.set_title(title or f"stage {plan.index}: {plan.in_channels} channels in, {plan.out_channels} out"
                 + (f" (fusion {plan.fusion!r})" if plan.fusion else " (DenseNet)"), fontsize=10)
    return fig


POOL = "2x2 avg pool"


def _dataflow_nodes(plan):
    """Figure 2/3 of the paper as nodes: (column, lane, kind, text); lanes 1 = skip, 0 = dense,
    0.5 = joined. Tensors carry the paper's names; pooling sits where ``plan.pool`` says."""
    dense_name = "x0''" if plan.fusion else "x0"
    nodes = [(0, 0.5 if plan.fusion else 0, "tensor", f"x0\n{plan.in_channels}")]
    col = 1
    if plan.fusion:
        if plan.skip_channels:
            nodes.append((1, 1, "tensor", f"x0'\n{plan.skip_channels}"))
        nodes.append((1, 0, "tensor", f"x0''\n{plan.dense_channels}"))
        col = 2
    nodes.append((col, 0, "op", f"dense block\n{plan.num_layers} layers, growth {plan.growth_rate}"))
    nodes.append((col + 1, 0, "tensor",
                  f"[{dense_name}, x1, ..., x{plan.num_layers}]\n{plan.dense_out_channels}"))
    col += 2
    if plan.dense_transition_channels:
        pool = f"\n+ {POOL}" if plan.pool == "paths" else ""
        nodes.append((col, 0, "op", f"dense transition\n1x1 conv{pool}"))
        nodes.append((col + 1, 0, "tensor", f"xT\n{plan.dense_transition_channels}"))
        col += 2
    if plan.skip_channels:
        if plan.pool == "paths":
            nodes.append((col - 1, 1, "op", POOL))
        nodes.append((col, 0.5, "op", "concat"))
        ends = not plan.transition_channels and plan.pool != "concat"
        nodes.append((col + 1, 0.5, "tensor", ("out\n" if ends else "") + f"{plan.concat_channels}"))
        col += 2
    if plan.transition_channels:
        pool = f"\n+ {POOL}" if plan.pool == "transition" else ""
        lane = 0.5 if plan.skip_channels else 0
        name = "xU" if plan.fusion else "out"    # xT is the dense transition's output only
        nodes.append((col, lane, "op", f"transition\n1x1 conv{pool}"))
        nodes.append((col + 1, lane, "tensor", f"{name}\n{plan.transition_channels}"))
    elif plan.pool == "concat":
        nodes.append((col, 0.5, "op", POOL))
        nodes.append((col + 1, 0.5, "tensor", f"out\n{plan.concat_channels}"))
    return nodes


def dataflow_diagram(plan, ax=None, title: str | None = None):
    """The paper's Figures 2 and 3 redrawn from one stage's plan: boxes are operations, plain labels
    are tensors (x0, x0', x0'', xT, xU as in the paper) with their channel counts.

    Blue: the skip part, orange: the dense path, green: after the concat. Pooling is drawn where
    ``plan.pool`` puts it.
    """
    _check_plan(plan)
    _check_ax(ax)
    _check_title(title)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(10, 2.4))
    nodes = _dataflow_nodes(plan)
    color = {1: SKIP_COLOR, 0: DENSE_COLOR, 0.5: JOINED_COLOR}
    xy = {}
    for i, (col, lane, kind, text) in enumerate(nodes):
        x, y = col * 1.2, lane
        box = dict(boxstyle="round,pad=0.3", fc=color[lane], ec="none", alpha=0.9) if kind == "op" else \
            dict(boxstyle="square,pad=0.2", fc="white", ec="none")
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, bbox=box, zorder=3)
        xy[i] = (x, y)
    # Each node feeds the next node in its own lane (the joined lane feeds on); the split feeds
    # both lanes, and both lanes feed the concat.
    last_in_lane: dict[float, int] = {}
    for i, (col, lane, kind, text) in enumerate(nodes):
        sources = []
        if text == "concat":
            sources = [last_in_lane[k] for k in (1, 0) if k in last_in_lane]
        elif lane in last_in_lane:
            sources = [last_in_lane[lane]]
        elif i > 0:
            sources = [0]                                  # from x0 (the split)
        for j in sources:
            ax.annotate("", xy=(xy[i][0] - 0.45, xy[i][1]), xytext=(xy[j][0] + 0.45, xy[j][1]),
                        arrowprops=dict(arrowstyle="->", color="#555555", lw=0.9), zorder=1)
        last_in_lane[lane] = i
        if lane == 0.5 and i > 0:
            last_in_lane.pop(1, None), last_in_lane.pop(0, None)
    ax.set_xlim(-0.6, max(c for c, *_ in nodes) * 1.2 + 0.6)
    ax.set_ylim(-0.45, 1.45)
    ax.axis("off")
    kind = {None: "DenseNet (Figure 2a / 3a)", "csp": "CSPDenseNet (Figure 3b)",
            "first": "fusion first (Figure 3c)", "last": "fusion last (Figure 3d)"}[plan.fusion]
    ax.set_title(title or f"stage {plan.index}, {kind}", fontsize=9)
    return fig


def overlap_intervals(series: dict[str, list[tuple[float, float, float]]], steps: list[int], ax=None,
                      ylabel: str = "overlap of the two routes' gradients", legend: bool = True):
    """A route measure (:func:`cspnet_lab.gradients.route_measures`; by default the overlap) per model
    against training step: the mean over seeds with its confidence interval as a band, one colour per
    model. Pass ``ax`` and ``ylabel`` to draw several measures side by side (``legend`` on one)."""
    _check_ax(ax)
    if not isinstance(series, dict) or not series:
        raise ValueError(f"series must map at least one model name to its points, got {series!r}")
    if isinstance(steps, (str, bytes)) or not hasattr(steps, "__len__") or len(steps) == 0:
        raise ValueError(f"steps must be a non-empty sequence of training steps, got {steps!r}")
    for i, s in enumerate(steps):
        _finite(f"steps[{i}]", s)
    for label, points in series.items():
        if isinstance(points, (str, bytes)) or not hasattr(points, "__len__") or len(points) != len(steps):
            raise ValueError(f"series[{label!r}] must hold one (mean, low, high) per step ({len(steps)}), "
                             f"got {points!r}")
        for i, point in enumerate(points):
            if isinstance(point, (str, bytes)) or not hasattr(point, "__len__") or len(point) != 3:
                raise ValueError(f"series[{label!r}][{i}] must be a (mean, low, high) triple, got {point!r}")
            for part, v in zip(("mean", "low", "high"), point):
                _finite(f"series[{label!r}][{i}] {part}", v)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3.4))
    for i, (label, points) in enumerate(series.items()):
        mean, low, high = zip(*points)
        color = STAGE_COLORS[i % len(STAGE_COLORS)]
        ax.plot(steps, mean, marker="o", ms=3, label=label, color=color)
        ax.fill_between(steps, low, high, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if legend:
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


VERDICT_COLORS = {"faster": "#1b7837", "slower": "#b2182b", "not distinguishable": "#999999"}


def free_cut_intervals(rows: list[dict], ax=None, title: str = ""):
    """Each free cut's time ratio against its baseline: one dot and 95 % interval per worker process,
    side by side in the cut's row, coloured by the verdict across processes
    (:func:`cspnet_lab.bench.free_cut_verdicts` rows); the multiply-add ratio as a black tick (where
    the time would be if the cut were fully realised), 1 dashed, a row's goal (where it has one) as
    a dotted line at its ratio."""
    _check_ax(ax)
    _check_title(title)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("rows must be a non-empty list of cspnet_lab.bench.free_cut_verdicts rows")
    for i, r in enumerate(rows):
        missing = [k for k in ("cut", "mode", "verdict", "per_process", "mac_ratio") if k not in r]
        if missing:
            raise ValueError(f"rows[{i}] lacks {missing}: not a free_cut_verdicts row")
        for k, interval in enumerate(r["per_process"]):
            for v in interval:
                _finite(f"rows[{i}].per_process[{k}]", v)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 0.4 * len(rows) + 1.3))
    modes = {r["mode"] for r in rows}
    for y, r in enumerate(rows):
        n = len(r["per_process"])
        color = VERDICT_COLORS.get(r["verdict"], "#cccccc")
        for k, (est, lo, hi) in enumerate(r["per_process"]):
            dy = 0.5 * (k - (n - 1) / 2) / max(n, 2)
            ax.errorbar(est, y + dy, xerr=[[est - lo], [hi - est]], fmt="o", ms=3.5, capsize=2,
                        color=color, zorder=3)
        ax.plot(r["mac_ratio"], y, marker="|", color="black", ms=12, mew=1.5, zorder=2)
        if r.get("goal"):            # the goal of this row's mode, across its row only
            ax.plot([r["goal"][0]] * 2, [y - 0.4, y + 0.4], color="#1b7837", lw=1, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    goals = sorted({r["goal"][0] for r in rows if r.get("goal")})
    labels = [r["cut"] if len(modes) == 1 else f"{r['cut']} ({r['mode']})" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("time / baseline's time, one interval per process; | = multiply-adds"
                  + (f"; dotted: goal {', '.join(f'{g:g}' for g in goals)}" if goals else ""),
                  fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v)
               for v, c in VERDICT_COLORS.items()]
    ax.legend(handles=handles, frameon=False, fontsize=7, ncol=3, loc="upper center",
              bbox_to_anchor=(0.5, -0.13))
    ax.set_title(title, fontsize=9)
    return fig


# Chapters 9 and 10: one row per CSP design, beside Figure 3 of the CSPNet paper. Boxes are
# operations, arrows the tensors between them, each labelled with the channels it carries; every
# count is read off the design's own modules. Lanes: the cross path (the part that bypasses the
# blocks, blue) on top, the block path (orange) below, the joined map (green) between.
CROSS, BLOCK, JOINED = 1.0, 0.0, 0.5
_LANE_COLOR = {CROSS: SKIP_COLOR, BLOCK: DENSE_COLOR, JOINED: JOINED_COLOR}
_LINE_COLOR = {CROSS: "#3F63A8", BLOCK: "#C8582A", JOINED: "#2B8C6E"}   # darker, for thin lines


def _out(module) -> int:
    """Output channels of a conv or of a conv-BN-activation unit."""
    return (module.conv if hasattr(module, "conv") else module).out_channels


def _pelee_layout(model, index: int):
    """Stage ``index`` of a PeleeNet (or CSP variant) as (nodes, edges), read off its modules."""
    from torch import nn

    from .. import _checks

    _checks.positive_int("index", index)
    features = model.features
    stage = getattr(features, f"stage{index}", None)
    plain = getattr(features, f"denseblock{index}", None)
    if stage is None and plain is None:
        raise ValueError(f"index must name one of the model's stages, got {index}")
    if stage is None:      # PeleeNet's own stage (Figure 3a): dense block, transition, pool
        block, dense_tr = plain, None
        transition = getattr(features, f"transition{index}")
        pool = hasattr(features, f"transition{index}_pool")
        path = f"features.denseblock{index}"
    else:
        block, dense_tr, transition = stage.block, stage.dense_transition, stage.transition
        pool = isinstance(stage.pool, nn.AvgPool2d)
        path = f"features.stage{index}.block"
    layer = block.denselayer1
    dense_in = layer.branch1a.conv.in_channels
    text = f"dense block\n{len(block)} layers, k={2 * _out(layer.branch1b)}"
    pooled = "\n+ 2x2 pool" if pool else ""
    if stage is None:
        nodes = [("in", 0, JOINED, "x0"), ("block", 1, JOINED, text),
                 ("transition", 2, JOINED, "transition\n1x1" + pooled), ("out", 3, JOINED, "out")]
        edges = [("in", "block", dense_in, f"{path}:in"),
                 ("block", "transition", block.out_channels, path),
                 ("transition", "out", _out(transition), f"features.transition{index}")]
        return nodes, edges
    skip = stage.plan.skip_channels
    stage_path = f"features.stage{index}"
    nodes = [("in", 0, JOINED, "x0"), ("split", 1, JOINED, "split"), ("block", 2, BLOCK, text)]
    edges = [("in", "split", skip + dense_in, f"{stage_path}:in"),
             ("split", "block", dense_in, f"{path}:in")]
    last, width, name, col = "block", block.out_channels, path, 3
    if dense_tr is not None:
        nodes.append(("dense_transition", 3, BLOCK, "dense\ntransition 1x1"))
        edges.append(("block", "dense_transition", width, path))
        last, width, col = "dense_transition", _out(dense_tr), 4
        name = f"{stage_path}.dense_transition"
    nodes.append(("concat", col, JOINED, "concat" + ("" if transition is not None else pooled)))
    edges += [("split", "concat", skip, "cross", CROSS), (last, "concat", width, name)]
    if transition is not None:
        nodes.append(("transition", col + 1, JOINED, "transition\n1x1" + pooled))
        edges.append(("concat", "transition", transition.conv.in_channels,
                      f"{stage_path}.transition:in"))
        last, width, col = "transition", _out(transition), col + 1
    else:
        last, width = "concat", skip + width
    nodes.append(("out", col + 1, JOINED, "out"))
    edges.append((last, "out", width, stage_path))
    return nodes, edges


def _yolo_layout(block):
    """C3 or BottleneckCSP: two 1x1 projections of the input (the split), blocks, concat,
    transition."""
    from ..models import modern

    csp = isinstance(block, modern.BottleneckCSP)
    n = len(block.m)
    nodes = [("in", 0, JOINED, "x"), ("cv2", 1, CROSS, "cv2\n1x1 conv"),
             ("cv1", 1, BLOCK, "cv1\n1x1 conv"), ("m", 2, BLOCK, f"m: {n} bottlenecks")]
    c1 = block.cv1.conv.in_channels
    edges = [("in", "cv2", c1, "input"), ("in", "cv1", c1, "input"),
             ("cv1", "m", _out(block.cv1), "cv1")]
    last, col, final = "m", 3, "cv3"
    if csp:    # BottleneckCSP: a transition on the block path, and BN + activation after the concat
        nodes.append(("cv3", 3, BLOCK, "cv3\ntransition 1x1"))
        edges.append(("m", "cv3", _out(block.m[-1].cv2), "m"))
        last, col, final = "cv3", 4, "cv4"
    nodes += [("concat", col, JOINED, "concat"),
              (final, col + 1, JOINED, f"{'BN, act, ' if csp else ''}{final}\ntransition 1x1"),
              ("out", col + 2, JOINED, "out")]
    edges += [(last, "concat", _out(block.cv3 if csp else block.m[-1].cv2), last),
              ("cv2", "concat", _out(block.cv2), "cv2"),
              ("concat", final, getattr(block, final).conv.in_channels, f"{final}:in"),
              (final, "out", _out(getattr(block, final)), "output")]
    return nodes, edges


def _c2f_layout(block):
    """C2f: one 1x1 conv, split in halves, blocks chained on one half, every piece concatenated."""
    n, c = len(block.m), block.m[0].cv1.conv.in_channels
    nodes = [("in", 0, JOINED, "x"), ("cv1", 1, JOINED, "cv1\n1x1 conv"),
             ("split", 2, JOINED, "split")]
    edges = [("in", "cv1", block.cv1.conv.in_channels, "input"),
             ("cv1", "split", _out(block.cv1), "cv1"),
             ("split", "concat", _out(block.cv1) - c, "cross", CROSS),
             ("split", "m.0", c, "m.0:in"), ("split", "concat", None, None)]
    for i, m in enumerate(block.m):
        nodes.append((f"m.{i}", 3 + i, BLOCK, f"bottleneck\nm.{i}"))
        last = i == n - 1
        edges.append((f"m.{i}", "concat", _out(m.cv2) if last else None, f"m.{i}" if last else None,
                      JOINED))
        if not last:
            edges.append((f"m.{i}", f"m.{i + 1}", _out(m.cv2), f"m.{i}"))
    nodes += [("concat", 3 + n, JOINED, "concat"), ("cv2", 4 + n, JOINED, "cv2\ntransition 1x1"),
              ("out", 5 + n, JOINED, "out")]
    edges += [("concat", "cv2", block.cv2.conv.in_channels, "cv2:in"),
              ("cv2", "out", _out(block.cv2), "output")]
    return nodes, edges


def _cross_stage_layout(block):
    """timm's CrossStage: downsample, expand, split, blocks, transition, concat, transition."""
    half = block.blocks[0].conv1.conv.in_channels
    nodes, edges, col, prev = [("in", 0, JOINED, "x")], [], 1, "in"
    first = block.conv_down if block.conv_down is not None else block.conv_exp
    channels, name = first.conv.in_channels, "input"
    if block.conv_down is not None:
        k, s = block.conv_down.conv.kernel_size[0], block.conv_down.conv.stride[0]
        nodes.append(("conv_down", col, JOINED, f"conv_down\n{k}x{k}/{s}"))
        edges.append((prev, "conv_down", channels, name))
        prev, channels, name, col = "conv_down", _out(block.conv_down), "conv_down", col + 1
    nodes += [("conv_exp", col, JOINED, "conv_exp\n1x1"), ("split", col + 1, JOINED, "split"),
              ("blocks", col + 2, BLOCK, f"blocks: {len(block.blocks)}\nres. bottlenecks"),
              ("conv_transition_b", col + 3, BLOCK, "transition\n1x1"),
              ("concat", col + 4, JOINED, "concat"),
              ("conv_transition", col + 5, JOINED, "transition\n1x1"),
              ("out", col + 6, JOINED, "out")]
    edges += [(prev, "conv_exp", channels, name),
              ("conv_exp", "split", _out(block.conv_exp), "conv_exp"),
              ("split", "concat", _out(block.conv_exp) - half, "cross", CROSS),
              ("split", "blocks", half, "blocks:in"),
              ("blocks", "conv_transition_b", _out(block.blocks[-1].conv3), "blocks"),
              ("conv_transition_b", "concat", _out(block.conv_transition_b), "conv_transition_b"),
              ("concat", "conv_transition", block.conv_transition.conv.in_channels,
               "conv_transition:in"),
              ("conv_transition", "out", _out(block.conv_transition), "output")]
    return nodes, edges


def csp_layout(design):
    """(nodes, edges) of one design: a block of :mod:`cspnet_lab.models.modern` (C3, C2f,
    BottleneckCSP, CrossStage) or ``(PeleeNet model, stage index)``.

    A node is ``(key, column, lane, text)``; an edge ``(from, to, channels, what, via lane)``, where
    ``what`` names the tensor (``"cv1"``: cv1's output, ``"cv3:in"``: cv3's input, ``"input"`` and
    ``"output"``: the design's, ``"cross"``: the part that bypasses the blocks) and ``channels`` is
    None for an edge drawn without a label (the same tensor is labelled on another edge).
    """
    from ..models import modern
    from ..models.peleenet import PeleeNet

    if isinstance(design, tuple) and len(design) == 2 and isinstance(design[0], PeleeNet):
        nodes, edges = _pelee_layout(*design)
    elif isinstance(design, (modern.C3, modern.BottleneckCSP)):
        nodes, edges = _yolo_layout(design)
    elif isinstance(design, modern.C2f):
        nodes, edges = _c2f_layout(design)
    elif isinstance(design, modern.CrossStage):
        nodes, edges = _cross_stage_layout(design)
    else:
        raise TypeError("design must be a C3, C2f, BottleneckCSP or CrossStage module, or "
                        f"(PeleeNet, stage index), got {type(design).__name__}")
    return nodes, [tuple(e) + (None,) * (5 - len(e)) for e in edges]


def _draw_layout(ax, nodes, edges, renderer):
    boxes = {}
    for key, col, lane, text in nodes:
        end = key in ("in", "out")
        style = (dict(boxstyle="square,pad=0.15", fc="white", ec="none") if end else
                 dict(boxstyle="round,pad=0.3", fc=_LANE_COLOR[lane], ec="none", alpha=0.9))
        boxes[key] = ax.text(col, lane, text, ha="center", va="center", fontsize=7, bbox=style,
                             zorder=3)
    inverse = ax.transData.inverted()
    extent = {}
    for key, artist in boxes.items():    # each box's left and right edge, in data coordinates
        artist.update_bbox_position_size(renderer)     # the box is sized at draw time otherwise
        bb = artist.get_bbox_patch().get_window_extent(renderer)
        (x0, _), (x1, _) = inverse.transform([(bb.x0, bb.y0), (bb.x1, bb.y1)])
        extent[key] = (x0, x1)
    lane_of = {key: lane for key, _, lane, _ in nodes}
    for src, dst, channels, what, via in edges:
        xr, xl = extent[src][1], extent[dst][0]
        ys, yd = lane_of[src], lane_of[dst]
        d = min(0.12, (xl - xr) / 3)
        if via is not None and not ys == yd == via:
            pts = [(xr, ys), (xr + d, ys), (xr + d, via), (xl - d, via), (xl - d, yd), (xl, yd)]
            seg = (xr + d, xl - d, via)
        elif ys == yd:
            pts, seg = [(xr, ys), (xl, yd)], (xr, xl, ys)
        elif ys == JOINED:      # a fork: bend next to the source
            pts, seg = [(xr, ys), (xr + d, ys), (xr + d, yd), (xl, yd)], (xr + d, xl, yd)
        else:                   # a join (or any other step): bend next to the destination
            pts, seg = [(xr, ys), (xl - d, ys), (xl - d, yd), (xl, yd)], (xr, xl - d, ys)
        # coloured by the path it runs along: the via lane, else the lane a fork leads to
        color = _LINE_COLOR[via if via is not None else yd if ys == JOINED else ys]
        xs, ys_ = zip(*pts)
        ax.plot(xs[:-1], ys_[:-1], color=color, lw=0.9, zorder=1, solid_joinstyle="miter")
        ax.annotate("", xy=pts[-1], xytext=pts[-2], zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9, shrinkA=0,
                                    shrinkB=0, mutation_scale=7))
        if channels is not None:
            label = ax.text((seg[0] + seg[1]) / 2, seg[2] + 0.05, f"{channels}", ha="center",
                            va="bottom", fontsize=6.5, color="#222222", zorder=4)
            label.set_gid(what)


def csp_diagrams(designs: dict, width: float = 10.0, row_height: float = 1.2):
    """One row per design (title -> what :func:`csp_layout` takes), drawn to one scale: boxes are
    operations, arrows are tensors labelled with their channel counts, read off the modules.

    Blue: the skip part or cross path (what bypasses the blocks), orange: the dense or block
    path, green: the whole map (before the split, after the concat). Each arrow label's ``gid``
    names its tensor (see :func:`csp_layout`), so a test can compare the labels with a forward
    pass.
    """
    from matplotlib.patches import Patch

    if not isinstance(designs, dict) or not designs:
        raise ValueError("designs must be a non-empty dict: title -> design")
    layouts = {title: csp_layout(design) for title, design in designs.items()}
    columns = max(col for nodes, _ in layouts.values() for _, col, _, _ in nodes)
    fig, axes = plt.subplots(len(layouts), 1, figsize=(width, row_height * len(layouts) + 0.4),
                             squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.35 / (row_height * len(layouts) + 0.4),
                        bottom=0.01, hspace=0.35)
    get = getattr(fig.canvas, "get_renderer", None)
    renderer = get() if get else fig._get_renderer()    # to measure the boxes before drawing
    for ax, (title, (nodes, edges)) in zip(axes[:, 0], layouts.items()):
        ax.set_xlim(-0.5, columns + 0.5)
        ax.set_ylim(-0.3, 1.3)
        ax.axis("off")
        ax.set_title(title, fontsize=8.5, loc="left")
        _draw_layout(ax, nodes, edges, renderer)
    labels = {SKIP_COLOR: "skip part or cross path (bypasses the blocks)",
              DENSE_COLOR: "dense or block path",
              JOINED_COLOR: "whole map: before the split, after the concat"}
    fig.legend(handles=[Patch(color=c, label=text) for c, text in labels.items()],
               loc="upper center", ncol=3, frameon=False, fontsize=7.5)
    return fig


TERM_COLORS = {"stem": "#937860", "base reads": "#4C72B0", "growth reads": "#8DA0CB",
               "3x3 convs": "#55A868", "dense transitions": "#DD8452", "transitions": "#C44E52",
               "classifier": "#8172B3"}


def macs_breakdown(terms: dict[str, dict[str, int]], reference: str | None = None, ax=None):
    """Stacked horizontal bars: each model's multiply-adds split into the terms of
    :func:`cspnet_lab.costs.macs_terms` (millions), one bar per model from the top in the dict's order,
    the segments in ``costs.MAC_TERMS`` order. With ``reference`` (a key of ``terms``) each bar ends
    with its total and the total's change against that model."""
    from ..measure.costs import MAC_TERMS

    if not isinstance(terms, dict) or not terms:
        raise ValueError(f"terms must map at least one model name to its macs_terms, got {terms!r}")
    for name, t in terms.items():
        missing = [k for k in MAC_TERMS if not isinstance(t, dict) or k not in t]
        if missing:
            raise ValueError(f"terms[{name!r}] lacks the term(s) {missing}: pass costs.macs_terms(report)")
    if reference is not None and reference not in terms:
        raise ValueError(f"reference must be one of {list(terms)}, got {reference!r}")
    names = list(terms)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8.5, 0.45 * len(names) + 1.4))
    left = [0.0] * len(names)
    for term in MAC_TERMS:
        widths = [terms[n][term] / 1e6 for n in names]
        ax.barh(range(len(names)), widths, left=left, label=term, color=TERM_COLORS[term], height=0.7)
        left = [a + b for a, b in zip(left, widths)]
    if reference is not None:
        ref = sum(terms[reference][k] for k in MAC_TERMS)
        for i, n in enumerate(names):
            total = sum(terms[n][k] for k in MAC_TERMS)
            ax.text(left[i], i, f" {total / 1e6:,.0f} M ({100 * (total / ref - 1):+.1f} %)",
                    va="center", fontsize=8)
        ax.set_xlim(0, max(left) * 1.22)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("multiply-adds (millions)")
    ax.legend(frameon=False, fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    return fig


FUSION_COLORS = {"csp": "#4C72B0", "first": "#55A868", "last": "#DD8452"}
_DEPTH_STYLES = ("-", "--", ":", "-.")


def savings_curves(table: list[dict], band: tuple[float, float] | None = (-20.0, -10.0), axes=None):
    """The savings table (:func:`cspnet_lab.costs.savings_table`) as curves: the change in
    multiply-adds (%) against ``part_ratio``, one panel per width form (in the table's order), one
    colour per fusion, one line style per depth. ``band`` (low, high), in percent, is shaded: by
    default the paper's claimed cut, "from 10% to 20%". Returns the Figure."""
    import math

    from matplotlib.lines import Line2D

    need = ("depth", "fusion", "part_ratio", "widths", "macs_change_pct")
    if not isinstance(table, list) or not table:
        raise ValueError(f"table must be a non-empty list of savings_table rows, got {table!r}")
    for i, row in enumerate(table):
        missing = [k for k in need if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"table[{i}] lacks {missing}: pass costs.savings_table()")
    if band is not None and not (len(band) == 2 and all(math.isfinite(b) for b in band)
                                 and band[0] < band[1]):
        raise ValueError(f"band must be (low, high) finite percentages with low < high, got {band!r}")
    forms = list(dict.fromkeys(r["widths"] for r in table))
    fusions = list(dict.fromkeys(r["fusion"] for r in table))
    depths = list(dict.fromkeys(r["depth"] for r in table))
    if axes is None:
        fig, axes = plt.subplots(1, len(forms), figsize=(4.6 * len(forms), 3.4), sharey=True,
                                 squeeze=False)
        axes = list(axes[0])
    fig = axes[0].figure
    for ax, form in zip(axes, forms):
        if band is not None:
            ax.axhspan(band[0], band[1], color="0.85", lw=0, zorder=0)
        ax.axhline(0, color="0.4", lw=0.8)
        for fusion in fusions:
            for j, depth in enumerate(depths):
                pts = sorted((r["part_ratio"], r["macs_change_pct"]) for r in table
                             if (r["widths"], r["fusion"], r["depth"]) == (form, fusion, depth))
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, _DEPTH_STYLES[j % 4], marker="o", ms=3, label=f"{fusion}, {depth}",
                            color=FUSION_COLORS.get(fusion, STAGE_COLORS[fusions.index(fusion) % 6]))
        ax.set_title(f"widths={form!r}", fontsize=9)
        ax.set_xlabel("part_ratio")
    axes[0].set_ylabel("change in multiply-adds (%)")
    handles = [Line2D([], [], color=FUSION_COLORS.get(f, STAGE_COLORS[i % 6]), label=f"fusion {f}")
               for i, f in enumerate(fusions)]
    handles += [Line2D([], [], color="0.3", ls=_DEPTH_STYLES[j % 4], label=f"depth {d}")
                for j, d in enumerate(depths)]
    if band is not None:
        from matplotlib.patches import Patch
        handles.append(Patch(color="0.85", label=f"{-band[1]:g} to {-band[0]:g} % cut"))
    axes[-1].legend(handles=handles, frameon=False, fontsize=8, loc="center left",
                    bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- chapter 5: gradient paths

EDGE_COLOR = "#888888"
_GRAPH_NAMES = {"input": "input", "x0'": "x0'", "dense_transition": "dense\ntransition",
                "concat": "concat", "transition": "transition", "output": "output"}


def _graph_layout(plan, edges):
    """(x, y) of every node of a stage's layer graph: reading order left to right; the skip part
    x0' on the upper lane (y = 1), the dense path on the lower (y = 0), the joined path between."""
    xy = {"input": (0.0, 0.5 if plan.skip_channels else 0.0)}
    if "x0'" in edges:
        xy["x0'"] = (1.0, 1.0)
    xy["x0''"] = (1.0, 0.0)
    col = 1.0
    for l in range(1, plan.num_layers + 1):
        col += 1
        xy[f"h{l}"] = (col, 0.0)
    joined = False
    for node in ("dense_transition", "concat", "transition", "output"):
        if node in edges:
            col += 1
            joined = joined or node == "concat"
            xy[node] = (col, 0.5 if joined else 0.0)
    return xy


def gradient_path_graph(plan, ax=None, title: str | None = None):
    """One stage's *layer graph* (:func:`cspnet_lab.gradients.stage_graph`) drawn from its plan.

    Nodes are the stage's feature maps and modules, arrows say "is read by"; the gradient runs back
    along every arrow, so a node with n arrows out receives a gradient that is a sum of n terms. Each
    node is labelled with its number of routes from the stage input
    (:func:`~cspnet_lab.gradients.count_paths`). The arrows out of the dense part x0'' (DenseNet: the
    whole input x0) are drawn in the dense colour: one per dense layer that reads it, plus the block's
    output, the fan-out behind the paper's Eq. 2; the split keeps it. The skip part's arrow is blue.
    """
    from matplotlib.patches import FancyArrowPatch

    from ..measure import gradients

    _check_plan(plan)
    _check_ax(ax)
    _check_title(title)
    edges = gradients.stage_graph(plan)
    xy = _graph_layout(plan, edges)
    routes = {n: gradients.count_paths(edges, "input", n) for n in xy}
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(10, 2.2))
    lane_color = {1.0: SKIP_COLOR, 0.0: DENSE_COLOR, 0.5: JOINED_COLOR}
    for node, (x, y) in xy.items():
        if node == "x0''":
            name = "x0''" if plan.skip_channels else "x0"
        elif node.startswith("h"):
            name = "x" + node[1:]                        # the paper's x_l (Eq. 1)
        else:
            name = _GRAPH_NAMES[node]
        fc = "white" if node == "input" else lane_color[y]
        ax.text(x, y, f"{name}\n{routes[node]:,}", ha="center", va="center", fontsize=7.5,
                zorder=3, gid=f"node:{node}",
                bbox=dict(boxstyle="round,pad=0.3", fc=fc, ec="#555555", lw=0.5))
    longest = 1.0
    for a, outs in edges.items():
        for b in outs:
            (x1, y1), (x2, y2) = xy[a], xy[b]
            span = x2 - x1
            longest = max(longest, span)
            rad = 0.0 if span <= 1 or y1 != y2 else 0.3      # long hops bow below the lane
            color, lw = {"x0''": (DENSE_COLOR, 1.6), "x0'": (SKIP_COLOR, 1.6)}.get(
                a, (EDGE_COLOR, 0.8))
            ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}",
                                         arrowstyle="-|>", mutation_scale=8, color=color, lw=lw,
                                         shrinkA=14, shrinkB=14, zorder=2, clip_on=False,
                                         gid=f"edge:{a}->{b}"))
    ax.set_xlim(-0.6, max(x for x, _ in xy.values()) + 0.6)
    ax.set_ylim(-0.2 * longest - 0.3, 1.35 if plan.skip_channels else 0.6)
    ax.axis("off")
    kind = {None: "DenseNet", "csp": "fusion csp", "first": "fusion first",
            "last": "fusion last"}[plan.fusion]
    total = routes["output"]
    ax.set_title(f"{title or f'stage {plan.index}, {kind}'}: {total:,} routes from input to "
                 "output (number in each box: routes reaching it)", fontsize=9)
    return fig


def highway_bars(forms: dict, ax=None):
    """Highway channels per stage (:func:`cspnet_lab.gradients.highway_channels`) for several models.

    ``forms`` maps a label to a model's plans (``model.plans`` or ``config.stages()``). For every stage
    an outlined bar is its skip part x0' and a filled bar the highway channels in it, those that no
    dense layer has computed; the last group is the classifier's input (outline: the last stage's
    output; filled: :func:`~cspnet_lab.gradients.head_highway_channels`).
    """
    import numpy as np

    from ..measure import gradients
    from ..models.densenet import StagePlan

    if not isinstance(forms, dict) or not forms:
        raise ValueError(f"forms must map at least one label to a model's plans, got {forms!r}")
    for label, plans in forms.items():
        if isinstance(plans, (str, bytes)) or not hasattr(plans, "__len__") or not plans:
            raise ValueError(f"forms[{label!r}] must hold at least one StagePlan, got {plans!r}")
        for plan in plans:
            if not isinstance(plan, StagePlan):
                raise TypeError(f"forms[{label!r}] must hold StagePlans (model.plans), got "
                                f"{type(plan).__name__}")
    _check_ax(ax)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    groups = max(len(plans) for plans in forms.values()) + 1
    width = 0.8 / len(forms)
    for i, (label, plans) in enumerate(forms.items()):
        color = STAGE_COLORS[i % len(STAGE_COLORS)]
        highway = gradients.highway_channels(plans) + [gradients.head_highway_channels(plans)]
        room = [p.skip_channels for p in plans] + [plans[-1].out_channels]
        xs = [p.index - 1 for p in plans] + [groups - 1]
        xs = np.array(xs) + (i - (len(forms) - 1) / 2) * width
        ax.bar(xs, room, width * 0.9, fill=False, edgecolor=color, lw=1.0, gid=f"room:{label}")
        ax.bar(xs, highway, width * 0.9, color=color, label=label, gid=f"highway:{label}")
        for x, h in zip(xs, highway):
            ax.text(x, h, str(h), ha="center", va="bottom", fontsize=7, gid=f"count:{label}")
    ax.set_xticks(range(groups), [f"stage {s}\nskip part x0'" for s in range(1, groups)]
                  + ["classifier\ninput"])
    ax.set_ylabel("channels")
    ax.set_title("Highway channels (filled): never computed by a dense layer; outline: "
                 "all channels there", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# Chapter 7: paired differences against a baseline, one row per comparison.

def paired_intervals(intervals: dict, ax=None, scale: float = 100.0,
                     xlabel: str = "accuracy minus DenseNet's (points), corrected 95 % CI"):
    """Each comparison's mean difference as a dot with its interval as an error bar, one row per
    entry of ``intervals`` (label -> :class:`cspnet_lab.measure.stats.PairedInterval`, in order, top
    to bottom), a grey line at 0: a bar that crosses it is "not distinguishable". ``scale``
    multiplies every value (100: fractions to points)."""
    from ..measure.stats import PairedInterval
    _check_ax(ax)
    scale = _finite("scale", scale)
    if not isinstance(xlabel, str):
        raise TypeError(f"xlabel must be a str, got {type(xlabel).__name__}")
    if not isinstance(intervals, dict) or not intervals:
        raise ValueError("intervals must be a non-empty dict: label -> PairedInterval")
    for label, iv in intervals.items():
        if not isinstance(iv, PairedInterval):
            raise TypeError(f"intervals[{label!r}] must be a PairedInterval "
                            f"(cspnet_lab.experiments.paired_interval), got {type(iv).__name__}")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 3))
    labels = list(intervals)
    for i, label in enumerate(labels):
        iv = intervals[label]
        mean, low, high = (scale * v for v in (iv.mean, iv.low, iv.high))
        ax.errorbar(mean, i, xerr=[[mean - low], [high - mean]], fmt="o", capsize=4,
                    color=STAGE_COLORS[i % len(STAGE_COLORS)], label=label)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)           # the first entry on top
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- chapter 6: timing figures
# (moved here from measure/bench.py: figures live in lab/plots)

def time_ratios(rows: list[dict], ax=None, title: str = "", legend_loc: str = "best"):
    """Time ratio against the baseline with its interval, one line per model, for one mode; the multiply-add
    ratio beside it (where the time would be if the cut were fully realised). Models whose interval
    contains 1 are drawn grey: not distinguishable from the baseline."""
    import matplotlib.pyplot as plt
    _result_rows("rows", rows)
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    if not rows:
        raise ValueError("rows has no measured row (every status is an error or oom): nothing to draw")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2))
    colors = {"faster": "#1b7837", "slower": "#b2182b", "not distinguishable": "#999999"}
    color = [colors.get(r["verdict"], "#cccccc") for r in rows]
    for y, r in enumerate(rows):
        est, lo, hi = r["time_ratio"], r["time_ratio_lo"], r["time_ratio_hi"]
        ax.errorbar(est, y, xerr=[[est - lo], [hi - est]], fmt="o", color=color[y], capsize=3,
                    ms=4, zorder=3)
        ax.plot(r["mac_ratio"], y, marker="|", color="black", ms=10, mew=1.5, zorder=2)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [_bench.short_label(r["model"]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time / DenseNet's time (95 % interval); | = multiply-adds / DenseNet's")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=v) for v, c in colors.items()]
    ax.legend(handles=handles, frameon=False, fontsize=7, loc=legend_loc)
    ax.set_title(title, fontsize=10)
    return fig


CATEGORY_COLORS = dict(zip(_bench.CATEGORIES, ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                                        "#bbbbbb"]))


def time_breakdown(rows: list[dict], ax=None, title: str = "", share: bool = False):
    """Stacked bars: where a step's time goes, by operator category, one bar per result row with a
    profile (milliseconds per step on the profiler's clock, or with ``share`` the fraction of the step)."""
    import matplotlib.pyplot as plt
    _result_rows("rows", rows)
    rows = [r for r in rows if r.get("profile")]
    if not rows:
        raise ValueError("rows has no row with a profile (bench ran without --profile?): nothing to draw")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    left = [0.0] * len(rows)
    for cat in _bench.CATEGORIES:
        vals = []
        for r in rows:
            p = r["profile"]
            v = p["by_category_s"].get(cat, 0.0)
            vals.append(v / p["total_s"] if share else 1000 * v)
        ax.barh(range(len(rows)), vals, left=left, color=CATEGORY_COLORS[cat], label=cat, height=0.7)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(rows)), [f"{_bench.short_label(r['model'])}, {r['mode']}" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the step" if share else "ms per step (profiler's clock)")
    ax.legend(frameon=False, fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax.set_title(title, fontsize=10)
    return fig


def _result_rows(name: str, rows) -> None:
    if not isinstance(rows, (list, tuple)) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{name} must be a non-empty list of result rows (dicts, as bench.load_results "
                         f"gives), got {type(rows).__name__} {rows!r:.60}")

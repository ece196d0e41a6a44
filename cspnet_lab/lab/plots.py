"""The matplotlib figures the chapters show. Each takes computed numbers and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ..measure.costs import CostReport

STAGE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


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
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    layers = _dense_layers(report)
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
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    layers = _dense_layers(report)
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

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.6))
    cols = _stage_columns(plan)
    scale = scale or max(sum(seg[1] for seg in segs) for _, segs in cols)
    width, gap = 0.5, 1.0
    prev = None
    for i, (label, segs) in enumerate(cols):
        x, y, spans = i * (width + gap), 0.0, {}
        for name, c, color, sources in segs:
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

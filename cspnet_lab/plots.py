"""The matplotlib figures the chapters show. Each takes computed numbers and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .costs import CostReport

STAGE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def _dense_layers(report: CostReport):
    """(stage index, layer index, channels in, multiply-adds) for every dense layer, in order."""
    rows = {r.name: r for r in report.layers}
    out = []
    for plan in report.stages:
        for j in range(plan.num_layers):
            prefix = next(n for n in rows if n.endswith(f"denselayer{j + 1}.conv1") and
                          (f"stage{plan.index}." in n or f"denseblock{plan.index}." in n))[:-len(".conv1")]
            conv1, conv2 = rows[prefix + ".conv1"], rows[prefix + ".conv2"]
            out.append((plan.index, j + 1, conv1.in_channels, conv1.macs + conv2.macs))
    return out


def channels_per_layer(report: CostReport, ax=None, label: str | None = None):
    """Channels each dense layer reads (c0 + (l-1) k), layer by layer through the network."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    layers = _dense_layers(report)
    for stage in sorted({s for s, *_ in layers}):
        xs = [i for i, row in enumerate(layers) if row[0] == stage]
        ax.bar(xs, [layers[i][2] for i in xs], color=STAGE_COLORS[(stage - 1) % 6], width=0.9,
               label=f"stage {stage}" if label is None else None)
    ax.set_xlabel("dense layer (through the whole network)")
    ax.set_ylabel("input channels")
    ax.set_title(label or "Channels each dense layer reads")
    ax.legend(frameon=False, ncol=4, fontsize=8)
    fig.tight_layout()
    return fig


def macs_per_layer(report: CostReport, ax=None):
    """Multiply-adds of each dense layer (both convs)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.2))
    layers = _dense_layers(report)
    for stage in sorted({s for s, *_ in layers}):
        xs = [i for i, row in enumerate(layers) if row[0] == stage]
        ax.bar(xs, [layers[i][3] / 1e6 for i in xs], color=STAGE_COLORS[(stage - 1) % 6], width=0.9,
               label=f"stage {stage}")
    ax.set_xlabel("dense layer (through the whole network)")
    ax.set_ylabel("multiply-adds (millions)")
    ax.set_title("Cost of each dense layer")
    ax.legend(frameon=False, ncol=4, fontsize=8)
    fig.tight_layout()
    return fig


def stage_costs(reports: dict[str, CostReport], metric: str = "macs"):
    """Grouped bars: per-stage params or multiply-adds of several models."""
    import numpy as np

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

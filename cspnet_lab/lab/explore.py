"""Interactive explorers: move a setting, watch the numbers and the picture change.

One :class:`Explorer` serves two places:

* **live** (Jupyter, Colab): :meth:`Explorer.live` returns ipywidgets sliders whose callback recomputes
  the numbers (:mod:`cspnet_lab.costs`, pure Python, a few ms) and redraws the figure.
* **static** (the rendered book, no kernel): :meth:`Explorer.static_html` precomputes one frame (figure
  + numbers) for every point of a grid of settings and returns a self-contained HTML/JS control that
  switches between them. Nothing is fetched from a network; the frames are inline PNGs.

``Explorer.compute(**settings)`` is the callback logic: settings in, numbers out. It is what the tests
check, and what both the live and the static versions call.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

import matplotlib
import matplotlib.pyplot as plt

from .. import _checks
from ..measure import costs
from . import plots
from ..models.registry import model_config


@dataclass(frozen=True)
class Control:
    """One setting: its name (an argument of compute), the grid the static explorer precomputes, and the
    live widget's range ((min, max, step) for a number, or a list of choices)."""

    name: str
    grid: tuple
    live: tuple | None = None
    default: object = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Control name must be an argument name of compute, got {self.name!r}")
        if not isinstance(self.grid, tuple) or not self.grid:
            raise ValueError(f"Control {self.name!r}: grid must be a non-empty tuple of values, got {self.grid!r}")
        if self.default is not None and self.default not in self.grid:
            raise ValueError(f"Control {self.name!r}: default {self.default!r} is not in its grid {self.grid!r} "
                             "(the static explorer starts there)")

    @property
    def start(self):
        return self.default if self.default is not None else self.grid[len(self.grid) // 2]


@dataclass
class Explorer:
    title: str
    controls: list[Control]
    compute: Callable[..., dict]
    draw: Callable[[dict], "matplotlib.figure.Figure"]
    numbers: Callable[[dict], list[tuple[str, str]]] = field(default=lambda r: [])

    # ------------------------------------------------------------------ shared
    def frame(self, **settings) -> tuple[dict, "matplotlib.figure.Figure"]:
        """``compute(**settings)`` and its figure. Unknown settings and a figure with nothing drawn on it
        are a ValueError naming them, never a blank picture."""
        names = [c.name for c in self.controls]
        unknown = [k for k in settings if k not in names]
        if unknown:
            raise ValueError(f"{self.title!r} has no setting {', '.join(map(repr, unknown))}; its settings are "
                             f"{', '.join(map(repr, names)) or 'none'}")
        result = self.compute(**settings)
        fig = self.draw(result)
        if not any(ax.has_data() or ax.texts for ax in fig.axes):
            plt.close(fig)
            raise ValueError(f"{self.title!r} drew nothing for {settings!r}")
        return result, fig

    def numbers_html(self, result: dict) -> str:
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in self.numbers(result))
        return f'<table class="cspnet-numbers">{rows}</table>'

    # ------------------------------------------------------------------ live
    def live(self):
        """ipywidgets controls + output; each change recomputes and redraws (needs a running kernel)."""
        import ipywidgets as widgets
        from IPython.display import HTML, display

        inputs = {}
        for c in self.controls:
            spec = c.live or c.grid
            if isinstance(spec[0], str) or len(spec) != 3:
                inputs[c.name] = widgets.Dropdown(options=list(spec), value=c.start, description=c.name)
            elif all(isinstance(v, int) for v in spec):
                inputs[c.name] = widgets.IntSlider(value=c.start, min=spec[0], max=spec[1], step=spec[2],
                                                   description=c.name, continuous_update=False)
            else:
                inputs[c.name] = widgets.FloatSlider(value=c.start, min=spec[0], max=spec[1], step=spec[2],
                                                     description=c.name, continuous_update=False)
        out = widgets.Output()

        def redraw(_=None):
            settings = {name: w.value for name, w in inputs.items()}
            with out:
                out.clear_output(wait=True)
                try:
                    result, fig = self.frame(**settings)
                except (ValueError, TypeError) as err:  # e.g. a part ratio that empties a path
                    print(f"{type(err).__name__}: {err}")   # one line in the output, never a traceback
                    return
                display(fig)
                plt.close(fig)
                display(HTML(self.numbers_html(result)))

        for w in inputs.values():
            w.observe(redraw, names="value")
        redraw()
        return widgets.VBox([widgets.HBox(list(inputs.values())), out])

    # ------------------------------------------------------------------ static
    def frames(self, dpi: int = 64) -> dict[str, dict]:
        """Every grid point's frame: key "v1|v2|..." -> {"png": base64, "numbers": html}."""
        out = {}
        with matplotlib.rc_context({"figure.dpi": dpi}):
            for values in itertools.product(*(c.grid for c in self.controls)):
                settings = dict(zip((c.name for c in self.controls), values))
                result, fig = self.frame(**settings)
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=dpi)
                plt.close(fig)
                out["|".join(map(str, values))] = {"png": base64.b64encode(buf.getvalue()).decode(),
                                                   "numbers": self.numbers_html(result)}
        return out

    def static_html(self, dpi: int = 64, element_id: str | None = None) -> str:
        """A self-contained control (HTML + inline JS + inline PNG frames) for pages without a kernel."""
        eid = element_id or "cspnet-explorer-" + uuid.uuid4().hex[:8]
        frames = self.frames(dpi)
        controls = []
        for i, c in enumerate(self.controls):
            start = c.grid.index(c.start)
            if isinstance(c.grid[0], str):
                opts = "".join(f'<option value="{j}"{" selected" if j == start else ""}>{html.escape(str(v))}</option>'
                               for j, v in enumerate(c.grid))
                widget = f'<select data-control="{i}">{opts}</select>'
            else:
                widget = (f'<input type="range" data-control="{i}" min="0" max="{len(c.grid) - 1}" step="1" '
                          f'value="{start}"> <output>{html.escape(str(c.grid[start]))}</output>')
            controls.append(f'<label style="margin-right:1.5em">{html.escape(c.name)} {widget}</label>')
        grids = _script_json([[str(v) for v in c.grid] for c in self.controls])
        first = frames["|".join(str(c.start) for c in self.controls)]
        return f"""<div class="cspnet-explorer" id="{eid}" style="border:1px solid #ddd;padding:.6em;border-radius:6px">
<div style="font-weight:600;margin-bottom:.3em">{html.escape(self.title)}</div>
<div class="cspnet-controls" style="margin-bottom:.4em">{''.join(controls)}</div>
<img class="cspnet-frame" alt="{html.escape(self.title)}" style="max-width:100%" src="data:image/png;base64,{first['png']}">
<div class="cspnet-numbers-box">{first['numbers']}</div>
<script type="application/json" class="cspnet-frames">{_script_json(frames)}</script>
<script>
(function () {{
  var root = document.getElementById("{eid}");
  var grids = {grids};
  var frames = JSON.parse(root.querySelector(".cspnet-frames").textContent);
  var inputs = root.querySelectorAll("[data-control]");
  function update() {{
    var key = [];
    inputs.forEach(function (el) {{
      var v = grids[+el.dataset.control][+el.value];
      key.push(v);
      var out = el.parentNode.querySelector("output");
      if (out) out.textContent = v;
    }});
    var f = frames[key.join("|")];
    if (!f) return;
    root.querySelector(".cspnet-frame").src = "data:image/png;base64," + f.png;
    root.querySelector(".cspnet-numbers-box").innerHTML = f.numbers;
    root.dataset.key = key.join("|");
  }}
  inputs.forEach(function (el) {{ el.addEventListener("input", update); el.addEventListener("change", update); }});
}})();
</script>
</div>"""

    def show(self):
        """In a notebook: the static control (it works with or without a kernel, in the book and in Colab)."""
        from IPython.display import HTML
        return HTML(self.static_html())


# ====================================================================== the book's explorers

def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def _pct(a: float, b: float) -> str:
    from ..measure.stats import percent_change
    return f"{percent_change(a, b):+.1f} %"


# --- chapter 2: feature-map growth ------------------------------------------------------------

def _script_json(obj) -> str:
    """JSON for an inline <script>: ``</`` is written ``<\\/`` (the same string to JSON) so that no value,
    e.g. a control's choice, can close the script element."""
    return json.dumps(obj).replace("</", "<\\/")


DEPTHS = ("121", "161", "169", "201", "264")


def _depth(depth) -> str:
    """A DenseNet depth as the explorers name it ("121" or 121); anything else names the allowed ones."""
    text = str(depth) if isinstance(depth, (str, int)) and not isinstance(depth, bool) else None
    if text not in DEPTHS:
        raise ValueError(f"depth must be one of {', '.join(DEPTHS)}; got {depth!r}")
    return text


def growth_compute(growth_rate: int = 32, depth: str = "121") -> dict:
    growth_rate = _checks.positive_int("growth_rate", growth_rate)     # 4.7 or nan: an error, not truncated
    depth = _depth(depth)
    report = costs.analyze(f"densenet{depth}", 224, growth_rate=int(growth_rate))
    cio = report.cio()
    return dict(growth_rate=int(growth_rate), depth=str(depth), report=report, params=report.params,
                macs=report.macs, io_bytes=report.conv_io_bytes, cio=cio,
                block_out=[p.dense_out_channels for p in report.stages])


def growth_draw(r: dict):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    plots.channels_per_layer(r["report"], axes[0], label=f"DenseNet-{r['depth']}, k={r['growth_rate']}: channels read")
    plots.macs_per_layer(r["report"], axes[1])
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.25)  # fixed: faster than tight_layout
    return fig


def growth_numbers(r: dict) -> list[tuple[str, str]]:
    return [("parameters", _fmt(r["params"])), ("multiply-adds (224x224)", _fmt(r["macs"])),
            ("dense block outputs (c0 + L k)", ", ".join(map(str, r["block_out"]))),
            ("CIO per block, c m + (m\u00b2 + m) d / 2", ", ".join(_fmt(v) for v in r["cio"].values())),
            ("conv input+output bytes", _fmt(r["io_bytes"]))]


growth_explorer = Explorer(
    "Feature-map growth: DenseNet's channels and cost per dense layer",
    [Control("growth_rate", (12, 16, 24, 32, 48), (4, 64, 4), 32),
     Control("depth", ("121", "169", "201", "264"), ("121", "161", "169", "201", "264"), "121")],
    growth_compute, growth_draw, growth_numbers)


# --- chapter 3: the cross-stage split ----------------------------------------------------------

def split_compute(part_ratio: float = 0.5, growth_rate: int = 32, stage: int = 2) -> dict:
    """One stage's plan and the network's savings in both width forms ("narrow": the dense transition
    compresses; "matched": every stage output as wide as DenseNet's)."""
    k = _checks.positive_int("growth_rate", growth_rate)
    part_ratio = _checks.ratio_open_closed("part_ratio", part_ratio)    # "abc", None, nan: named
    cfg = model_config("cspdensenet121", part_ratio=float(part_ratio), growth_rate=k)
    n = len(cfg.stages())
    if isinstance(stage, bool) or not isinstance(stage, int) or not 1 <= stage <= n:
        raise ValueError(f"stage must be an integer in [1, {n}] (stages count from 1), got {stage!r}")
    base = costs.analyze("densenet121", 224, growth_rate=k)
    report = costs.analyze(cfg, 224)
    matched = costs.analyze("cspdensenet121", 224, part_ratio=float(part_ratio), growth_rate=k,
                            widths="matched")
    plan = cfg.stages()[int(stage) - 1]
    return dict(part_ratio=float(part_ratio), growth_rate=k, stage=int(stage), plan=plan,
                params=report.params, macs=report.macs, base_params=base.params, base_macs=base.macs,
                matched_params=matched.params, matched_macs=matched.macs,
                matched_out=matched.stages[int(stage) - 1].out_channels,
                skip=plan.skip_channels, dense=plan.dense_channels, block_out=plan.dense_out_channels,
                dense_transition=plan.dense_transition_channels, out=plan.out_channels)


def split_draw(r: dict):
    fig, ax = plt.subplots(figsize=(9, 3.4))
    plots.stage_diagram(r["plan"], ax, scale=900,
                        title=f"CSPDenseNet-121 stage {r['stage']}: part_ratio={r['part_ratio']}, "
                              f"k={r['growth_rate']} (narrow widths)")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
    return fig


def split_numbers(r: dict) -> list[tuple[str, str]]:
    vs = lambda a, b: f"{_fmt(a)} ({_pct(a, b)})"  # noqa: E731
    return [("skip x0' / dense x0''", f"{r['skip']} / {r['dense']}"),
            ("dense block output", str(r["block_out"])),
            ("dense transition", str(r["dense_transition"])),
            ("stage output: narrow / matched", f"{r['out']} / {r['matched_out']}"),
            ("parameters, narrow (vs DenseNet-121, same k)", vs(r["params"], r["base_params"])),
            ("parameters, width-matched", vs(r["matched_params"], r["base_params"])),
            ("multiply-adds, narrow", vs(r["macs"], r["base_macs"])),
            ("multiply-adds, width-matched", vs(r["matched_macs"], r["base_macs"]))]


split_explorer = Explorer(
    "The cross-stage split: where every channel of a stage goes",
    [Control("part_ratio", (0.25, 0.5, 0.75, 1.0), (0.05, 1.0, 0.05), 0.5),
     Control("growth_rate", (12, 32, 48), (4, 64, 4), 32),
     Control("stage", (1, 2, 3, 4), (1, 4, 1), 2)],
    split_compute, split_draw, split_numbers)


# --- chapter 4: fusion strategies ----------------------------------------------------------------

def fusion_compute(fusion: str = "csp", part_ratio: float = 0.5, depth: str = "121") -> dict:
    from ..models.csp import FUSIONS
    _checks.choice("fusion", fusion, FUSIONS)
    part_ratio = _checks.ratio_open_closed("part_ratio", part_ratio)
    depth = _depth(depth)
    base = costs.analyze(f"densenet{depth}", 224)
    cfg = model_config(f"cspdensenet{depth}", fusion=fusion, part_ratio=float(part_ratio))
    report = costs.analyze(cfg, 224)
    matched = costs.analyze(f"cspdensenet{depth}", 224, fusion=fusion, part_ratio=float(part_ratio),
                            widths="matched")
    return dict(fusion=fusion, part_ratio=float(part_ratio), depth=str(depth), base=base, report=report,
                matched=matched, plan=cfg.stages()[1], params=report.params, macs=report.macs,
                io=report.conv_io_bytes, matched_params=matched.params, matched_macs=matched.macs,
                base_params=base.params, base_macs=base.macs, base_io=base.conv_io_bytes)


def fusion_draw(r: dict):
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1.3, 1]})
    plots.stage_diagram(r["plan"], axes[0], scale=700,
                        title=f"stage 2, fusion {r['fusion']!r}, part_ratio={r['part_ratio']}")
    stages = list(r["base"].by_stage())
    series = [(f"DenseNet-{r['depth']}", r["base"]), (f"{r['fusion']}, narrow", r["report"]),
              (f"{r['fusion']}, matched", r["matched"])]
    for i, (label, rep) in enumerate(series):
        by = rep.by_stage()
        axes[1].bar([x + (i - 1) * 0.27 for x in range(len(stages))],
                    [by[s]["macs"] / 1e6 for s in stages], 0.27, label=label, color=plots.STAGE_COLORS[i])
    axes[1].set_xticks(list(range(len(stages))), stages, fontsize=8)
    axes[1].set_ylabel("multiply-adds (millions)")
    axes[1].legend(frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.12, top=0.9, wspace=0.15)
    return fig


def fusion_numbers(r: dict) -> list[tuple[str, str]]:
    vs = lambda a, b: f"{_fmt(a)} ({_pct(a, b)})"  # noqa: E731
    return [("parameters, narrow", vs(r["params"], r["base_params"])),
            ("parameters, width-matched", vs(r["matched_params"], r["base_params"])),
            ("multiply-adds, narrow", vs(r["macs"], r["base_macs"])),
            ("multiply-adds, width-matched", vs(r["matched_macs"], r["base_macs"])),
            ("conv input+output bytes, narrow", vs(r["io"], r["base_io"]))]


fusion_explorer = Explorer(
    "Fusion strategies: one variant against its DenseNet",
    [Control("fusion", ("csp", "first", "last"), ("csp", "first", "last"), "csp"),
     Control("part_ratio", (0.25, 0.5, 0.75), (0.05, 1.0, 0.05), 0.5),
     Control("depth", ("121", "169", "201"), ("121", "161", "169", "201", "264"), "121")],
    fusion_compute, fusion_draw, fusion_numbers)

EXPLORERS = {"growth": growth_explorer, "split": split_explorer, "fusion": fusion_explorer}

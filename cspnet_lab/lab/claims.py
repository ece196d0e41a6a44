"""The claims ledger: every checkable claim of the CSPNet paper, what this book measured, and a verdict.

Each :class:`Claim` holds the paper's own words (``quote``, verbatim from its text; the test suite checks
each against ``tests/fixtures/paper_quotes.txt``), the section they come from, a ``measured`` callable that
computes, from package calls, what the book finds, a ``verdict`` and the chapter that earns it.
:func:`ledger` evaluates every claim (counts only: no training, a few seconds on a CPU);
:func:`markdown_ledger` renders it as the table of ``book/claims.ipynb``.

A verdict is the book's judgement of the claim as the paper states it:

* ``holds``: what we count or measure agrees with the claim;
* ``does not hold``: it contradicts the claim as written;
* ``cannot be tested here``: the claim needs something this book does not have (ImageNet training, a
  detector, a network whose widths were never published);
* ``ambiguous``: the paper's words allow readings that we can check and that disagree, so the verdict
  depends on the reading (the measured text shows them side by side).

Where a chapter's number comes from a training run made at build time and no result is committed, the
measured text names the chapter and gives no number.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

VERDICTS = ("holds", "does not hold", "cannot be tested here", "ambiguous")

# Chapter file stems (book/<stem>.ipynb or .md) and how the ledger names them.
CHAPTERS = {
    "intro": "introduction",
    "03_cross_stage_split": "chapter 3",
    "04_fusion_strategies": "chapter 4",
    "05_gradient_paths": "chapter 5",
    "06_measuring": "chapter 6",
    "07_no_tradeoff": "chapter 7",
    "09_beyond_densenet": "chapter 9",
    "10_csp_in_practice": "chapter 10",
}
CLOSE = 3.0   # percentage points: chapter 9's "close" to one of the paper's percentages


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: where it is, its words, what we measured, our verdict and why.

    ``anchor`` is the heading, in ``chapter``, of the section that computes the measurement.
    """

    key: str
    section: str
    quote: str
    measured: Callable[[], str]
    verdict: str
    chapter: str
    anchor: str
    why: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.chapter not in CHAPTERS:
            raise ValueError(f"chapter must be one of {tuple(CHAPTERS)}, got {self.chapter!r}")
        if not self.quote.strip():
            raise ValueError(f"claim {self.key!r} needs the paper's words in quote")


def _pct(new: float, old: float) -> float:
    from ..measure.stats import percent_change
    return percent_change(new, old)


# --------------------------------------------------------------------------- shared measurements

@functools.lru_cache(maxsize=None)
def savings() -> tuple[dict, ...]:
    """``costs.savings_table()``: every CSPDenseNet variant against its DenseNet (chapter 4)."""
    from ..measure import costs
    return tuple(costs.savings_table())


def cio_block(c: int, d: int, m: int) -> dict:
    """The paper's CIO of a dense block and of its partial dense block (c base channels, growth d,
    m layers), the saving in percent and the threshold (m + 1) d / 2 that c must far exceed."""
    from ..measure import costs
    dense, partial = costs.cio_dense_block(c, d, m), costs.cio_partial_dense_block(c, d, m)
    return dict(dense=dense, partial=partial, saving_pct=100 * (1 - partial / dense),
                threshold=(m + 1) * d / 2)


def densenet121_blocks() -> list[dict]:
    """(c, d, m) of DenseNet-121's four dense blocks, from its stage plans."""
    import cspnet_lab
    cfg = cspnet_lab.model_config("densenet121")
    return [dict(c=p.in_channels, d=cfg.growth_rate, m=p.num_layers) for p in cfg.stages()]


@functools.lru_cache(maxsize=None)
def resnext() -> dict:
    """The authors' ResNeXt-50 and CSPResNeXt-50 cfgs (chapter 9): parameters without batch norm,
    conv BFLOPs, and CIO (elements read plus written, batch 1) over convs, and over convs and pools."""
    import torch
    from ..models import darknet
    out = {}
    for name in darknet.AUTHORS_CFGS:
        text = darknet.authors_cfg(name)
        with torch.device("meta"):
            net = darknet.build(text)
        c = darknet.cfg_costs(net)
        norm = sum(p.numel() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
                   for p in m.parameters())
        head = darknet.parse(text)[0]
        image = math.prod(head.number(k) for k in ("channels", "height", "width"))
        size = [s.channels * s.height * s.width for s in net.shapes]

        def cio(types):
            return sum((size[i - 1] if i else image) + size[i]
                       for i, s in enumerate(net.shapes) if s.type in types)

        out[name] = dict(weights=c.params - norm, bflops=c.bflops, macs=c.macs,
                         cio_conv=cio({"convolutional"}),
                         cio_pool=cio({"convolutional", "maxpool", "avgpool"}))
    return out


@functools.lru_cache(maxsize=None)
def pelee_cuts() -> dict:
    """Computation change (%) against PeleeNet of each fusion with full-width transitions (chapter 9),
    keyed (fusion, gamma, reading), plus PeleeNet's own weights and BFLOPs."""
    from ..models.peleenet import PeleeNetConfig, analytic_count
    base = analytic_count(PeleeNetConfig())
    out = {"base": base}
    for fusion in ("first", "last", "csp"):
        for gamma, reading in ((0.5, "dense"), (0.25, "bypass"), (0.25, "dense")):
            c = analytic_count(PeleeNetConfig(fusion=fusion, gamma=gamma, gamma_reading=reading))
            out[fusion, gamma, reading] = _pct(c.macs, base.macs)
    return out


@functools.lru_cache(maxsize=None)
def pelee_last_fit() -> dict:
    """Chapter 9's width search for fusion last: the best setting's score under each reading of gamma."""
    from ..models.peleenet import GAMMA_READINGS, width_search
    rows = width_search("last", dense_ratios=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5))
    return {reading: min(r["score"] for r in rows if r["reading"] == reading)
            for reading in GAMMA_READINGS}


@functools.lru_cache(maxsize=None)
def pelee_csp_fit() -> dict:
    """Chapter 9's width search for CSPPeleeNet (per-stage widths, the chapter's grid): per reading of
    gamma the best score and how many settings come within :data:`CLOSE` points; and the best setting."""
    from ..models.peleenet import GAMMA_READINGS, width_search
    rows = width_search("csp", dense_ratios=(0.25, 0.5, 0.75, 1.0),
                        width_scales=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5), per_stage=True)
    out = {reading: dict(best=min(r["score"] for r in rows if r["reading"] == reading),
                         close=sum(r["score"] <= CLOSE for r in rows if r["reading"] == reading),
                         tried=sum(r["reading"] == reading for r in rows))
           for reading in GAMMA_READINGS}
    out["top"] = rows[0]
    return out


def _top_fit_config():
    from ..models.peleenet import PeleeNetConfig
    top = pelee_csp_fit()["top"]
    return PeleeNetConfig(fusion="csp", gamma_reading=top["reading"],
                          dense_transition_ratios=top["dense_ratio"], transition_widths=top["widths"])


@functools.lru_cache(maxsize=None)
def pelee_transition_peaks() -> dict:
    """Largest transition conv (multiply-adds) of PeleeNet and its CSP forms, and its change in %:
    the bottleneck as section 4.5 places it, counted per conv layer as chapter 9 counts it."""
    import torch
    from ..measure import costs
    from ..models.peleenet import PeleeNet, PeleeNetConfig
    configs = {"PeleeNet": PeleeNetConfig(), "CSPPeleeNet": PeleeNetConfig(fusion="csp"),
               "fusion last": PeleeNetConfig(fusion="last"), "best fit": _top_fit_config()}
    peak = {}
    for name, cfg in configs.items():
        with torch.device("meta"):
            model = PeleeNet(cfg)
        convs = {r.name: r.macs for r in costs.trace(model, 224) if r.type == "Conv2d"}
        peak[name] = max(m for n, m in convs.items() if "transition" in n)
    return {name: dict(macs=m, change_pct=_pct(m, peak["PeleeNet"])) for name, m in peak.items()}


@functools.lru_cache(maxsize=None)
def densenet_balance() -> dict:
    """Chapter 4's balance measures on DenseNet-121 and CSPDenseNet-121 (six variants)."""
    from ..measure import costs
    models = {"DenseNet": costs.analyze("densenet121")}
    for f in ("csp", "first", "last"):
        for form in ("narrow", "matched"):
            models[f, form] = costs.analyze("cspdensenet121", fusion=f, widths=form)
    dn = models["DenseNet"]
    peak = {k: costs.layer_balance(r)["peak"] for k, r in models.items()}
    trans = {k: costs.transition_peaks(models[k])["transition"][1]   # fusion last has none
             for k in ("DenseNet", ("csp", "narrow"), ("csp", "matched"))}
    base_reads = {k: costs.macs_terms(r)["base reads"] for k, r in models.items()}
    return dict(peak=peak, transition=trans, base_reads=base_reads,
                macs={k: r.macs for k, r in models.items()}, dn_macs=dn.macs)


def weight_update_sources(layers: int = 3) -> dict[int, list[int]]:
    """Which layers' gradients reach each dense layer's weights, by autograd on a small dense block.

    The upstream gradient is put on one slot of the block's output at a time (slot 0 is the block's
    input x0, slot j the output x_j of layer j); the result maps each layer l to the slots whose gradient
    reaches its conv weights. Batch norm runs in eval mode, so nothing mixes the batch.
    """
    import torch
    from ..models.layers import DenseBlock
    torch.manual_seed(0)
    growth, c0 = 2, 2
    block = DenseBlock(layers, c0, bn_size=1, growth_rate=growth).eval()
    x = torch.randn(2, c0, 4, 4)
    out = block(x)
    starts = [0] + [c0 + i * growth for i in range(layers)]
    widths = [c0] + [growth] * layers
    reach = {l: [] for l in range(1, layers + 1)}
    for slot, (start, width) in enumerate(zip(starts, widths)):
        grad = torch.zeros_like(out)
        grad[:, start:start + width] = torch.randn(out.shape[0], width, *out.shape[2:])
        block.zero_grad(set_to_none=True)
        out.backward(grad, retain_graph=True)
        for l, layer in enumerate(block.values(), start=1):
            g = [p.grad for p in (layer.conv1.weight, layer.conv2.weight)]
            if any(t is not None and bool(t.abs().sum() > 0) for t in g):
                reach[l].append(slot)
    return reach


@functools.lru_cache(maxsize=None)
def cpu_speed() -> dict:
    """Verdict counts of the nine CSP variants against DenseNet-121 in the committed CPU benchmark
    (chapter 6), per mode, and the file's provenance line."""
    from ..measure import bench
    result = bench.load_results(bench.RESULTS / "bench_cpu.json")
    rows = [r for r in bench.speedups(result, "densenet121")
            if r["model"].startswith("csp") and r["status"] == "ok"]
    counts = {mode: {v: sum(r["mode"] == mode and r["verdict"] == v for r in rows)
                     for v in ("faster", "slower", "not distinguishable")}
              for mode in ("inference", "train")}
    prov, settings = result["provenance"], result["settings"]
    return dict(counts=counts, n=sum(r["mode"] == "inference" for r in rows),
                device=f"{prov['device']}, {settings['threads'] or prov['cpu_threads']} threads",
                setting=f"batch {settings['batch_sizes'][0]}, {settings['input_sizes'][0]} px")


# --------------------------------------------------------------------------- the measured texts

def _f(x: float, spec: str = "+.1f") -> str:
    return format(x, spec)


def _pick(depth: int, fusion: str, ratio: float, form: str) -> dict:
    return next(r for r in savings() if (r["depth"], r["fusion"], r["part_ratio"], r["widths"])
                == (depth, fusion, ratio, form))


def _resnext_cut() -> float:
    r = resnext()
    return _pct(r["csresnext50"]["macs"], r["resnext50"]["macs"])


def m_compute_cut() -> str:
    rows = savings()
    parts = []
    for form, label in (("narrow", "narrow"), ("matched", "at DenseNet's widths")):
        cuts = [r["macs_change_pct"] for r in rows if r["widths"] == form]
        inside = sum(-20 <= c <= -10 for c in cuts)
        parts.append(f"{_f(min(cuts))} to {_f(max(cuts))} % {label} "
                     f"({inside} of {len(cuts)} between -10 and -20 %)")
    first = _pick(121, "first", 0.5, "matched")["macs_change_pct"]
    return (f"CSPResNeXt-50 against ResNeXt-50, counted from the authors' cfgs: "
            f"{_f(_resnext_cut())} % multiply-adds. Our CSPDenseNets (3 depths, 3 part ratios, "
            f"3 fusions): {'; '.join(parts)}; the half split alone on DenseNet-121 (fusion first): "
            f"{_f(first)} %.")


def m_accuracy() -> str:
    return ("Needs ImageNet training, which this book does not do. Chapter 7 trains every variant on "
            "handwritten digits at build time and reports its paired intervals on its page.")


def m_cio_at_most_half() -> str:
    blocks = densenet121_blocks()
    saves = [cio_block(**b)["saving_pct"] for b in blocks]
    return (f"The saving is c/(2c + (m+1)d), below one half for every c. DenseNet-121's four blocks: "
            + ", ".join(f"{s:.1f} %" for s in saves) + " (per block, from the paper's formulas).")


def m_cio_condition() -> str:
    b = cio_block(256, 32, 24)
    return (f"DenseNet-121 block 3 (c = 256, m = 24, d = 32): m and d are far smaller than c, yet "
            f"(m+1)d/2 = {b['threshold']:.0f} exceeds c, and the CIO goes {b['dense']:,.0f} -> "
            f"{b['partial']:,.0f} ({-b['saving_pct']:+.1f} %). Close to half needs c >> (m+1)d/2.")


def _fusion_compute(fusion: str) -> str:
    p = pelee_cuts()
    n = _pick(121, fusion, 0.5, "narrow")["macs_change_pct"]
    m = _pick(121, fusion, 0.5, "matched")["macs_change_pct"]
    dn = f"{_f(m)} %" if fusion == "first" else f"{_f(n)} % narrow, {_f(m)} % at DenseNet's widths"
    pelee = _f(p[fusion, 0.5, "dense"])
    return f"Multiply-adds, half split: PeleeNet with full-width transitions {pelee} %; DenseNet-121 {dn}."


def m_fusion_last_compute() -> str:
    return _fusion_compute("last")


def m_fusion_first_compute() -> str:
    return _fusion_compute("first")


def m_pelee_partial_transition() -> str:
    p, fit = pelee_cuts(), pelee_last_fit()
    ratio = p["last", 0.25, "bypass"] / p["last", 0.5, "dense"]
    return (f"Fusion last, full-width transitions: {_f(p['last', 0.5, 'dense'])} % at a half split; "
            f"at gamma = 0.25 {_f(p['last', 0.25, 'bypass'])} % (bypass reading) or "
            f"{_f(p['last', 0.25, 'dense'])} % (dense reading); ratio {ratio:.2f} against the "
            f"paper's {11 / 21:.2f}. Best width fit to both cuts: {fit['bypass']:.1f} points off "
            f"(bypass), {fit['dense']:.1f} (dense).")


def m_csppeleenet() -> str:
    from ..lab.reference import PAPER_IMAGENET
    p = pelee_cuts()
    t3 = {r["model"]: r for r in PAPER_IMAGENET}
    base = p["base"]
    fit = pelee_csp_fit()
    from ..models.peleenet import analytic_count
    top = analytic_count(_top_fit_config())
    return (f"Our PeleeNet: {base.weights / 1e6:.2f} M parameters without BN, {base.bflops:.3f} BFLOPs "
            f"(Table 3: {t3['PeleeNet']['params_m']} M, {t3['PeleeNet']['bflops']}). CSPPeleeNet with "
            f"full-width transitions: {_f(p['csp', 0.5, 'dense'])} % at a half split, "
            f"{_f(p['csp', 0.25, 'bypass'])} % at gamma = 0.25 (bypass reading). Of chapter 9's "
            f"{fit['bypass']['tried']:,} width settings per reading, {fit['bypass']['close']} come within "
            f"{CLOSE:g} points of the paper's cuts and parameters under the bypass reading (best "
            f"{fit['bypass']['best']:.1f}), {fit['dense']['close']} under the dense reading (best "
            f"{fit['dense']['best']:.1f}); the best gives {top.weights / 1e6:.2f} M and "
            f"{top.bflops:.3f} BFLOPs (Table 3: {t3['CSPPeleeNet']['params_m']} M, "
            f"{t3['CSPPeleeNet']['bflops']}).")


def m_elastic() -> str:
    from ..lab.reference import PAPER_IMAGENET
    t3 = {r["model"]: r for r in PAPER_IMAGENET}
    a, b = t3["DenseNet-201-Elastic"], t3["CSPDenseNet-201-Elastic"]
    n, m = _pick(201, "csp", 0.5, "narrow"), _pick(201, "csp", 0.5, "matched")
    return (f"Table 3: {a['params_m']} -> {b['params_m']} M parameters "
            f"({_f(_pct(b['params_m'], a['params_m']))} %), {a['bflops']} -> {b['bflops']} BFLOPs "
            f"({_f(_pct(b['bflops'], a['bflops']))} %). Our plain CSPDenseNet-201 (csp, half split): "
            f"{_f(n['params_change_pct'])} % parameters, {_f(n['macs_change_pct'])} % multiply-adds "
            f"narrow; {_f(m['params_change_pct'])} % and {_f(m['macs_change_pct'])} % at DenseNet's "
            f"widths.")


def m_resnext() -> str:
    r = resnext()
    a, b = r["resnext50"], r["csresnext50"]
    return (f"Counted from the authors' cfgs at 256 x 256: {a['weights'] / 1e6:.2f} -> "
            f"{b['weights'] / 1e6:.2f} M parameters without BN, {a['bflops']:.2f} -> {b['bflops']:.2f} "
            f"BFLOPs (Table 3: 22.19 -> 20.50 M, 10.11 -> 7.93): {_f(_resnext_cut())} % computation.")


def m_resnext_cio() -> str:
    r = resnext()
    a, b = r["resnext50"], r["csresnext50"]
    return (f"From the cfgs' layer shapes, batch 1: conv layers {a['cio_conv'] / 1e6:.2f} M -> "
            f"{b['cio_conv'] / 1e6:.2f} M; conv and pooling layers {a['cio_pool'] / 1e6:.2f} M -> "
            f"{b['cio_pool'] / 1e6:.2f} M.")


def m_bottleneck_44() -> str:
    pk, bal = pelee_transition_peaks(), densenet_balance()
    dn, csp = bal["transition"]["DenseNet"], bal["transition"]["csp", "narrow"]
    matched = bal["transition"]["csp", "matched"]
    return (f"Largest transition conv, PeleeNet {pk['PeleeNet']['macs'] / 1e6:.1f} M multiply-adds: "
            f"CSPPeleeNet with full-width transitions {_f(pk['CSPPeleeNet']['change_pct'])} %, fusion "
            f"last {_f(pk['fusion last']['change_pct'])} %, chapter 9's best width fit "
            f"{_f(pk['best fit']['change_pct'])} %. DenseNet-121's: {dn / 1e6:.1f} M -> "
            f"{csp / 1e6:.1f} M with the default csp ({_f(_pct(csp, dn), '+.0f')} %, mostly the "
            f"narrowing), {matched / 1e6:.1f} M ({_f(_pct(matched, dn), '+.0f')} %) at DenseNet's widths.")


def m_balance_half() -> str:
    bal = densenet_balance()
    base = bal["base_reads"]["DenseNet"]
    first = bal["base_reads"]["first", "matched"]
    total = _pct(bal["macs"]["first", "matched"], bal["dn_macs"])
    dn_peak = bal["peak"]["DenseNet"]
    same = sum(v == dn_peak for k, v in bal["peak"].items() if k != "DenseNet")
    worst_key, worst = max(((k, v) for k, v in bal["peak"].items() if k != "DenseNet"),
                           key=lambda kv: kv[1])
    rise = "" if worst <= dn_peak else (
        f"; {worst_key[0]} {worst_key[1]} raises it to {worst / 1e6:.1f} M (its dense transition)")
    return (f"The base-read term of DenseNet-121 at DenseNet's widths (fusion first): "
            f"{first / base:.2f} of DenseNet's, while the total changes {_f(total)} %. The largest "
            f"conv is the stem's ({dn_peak / 1e6:.1f} M), which CSP never touches: unchanged in "
            f"{same} of {len(bal['peak']) - 1} CSP variants{rise}.")


def m_gradient_paths() -> str:
    import cspnet_lab
    from ..measure import gradients
    dn = gradients.stage_paths(cspnet_lab.model_config("densenet121").stages()[0])
    csp = gradients.stage_paths(cspnet_lab.model_config("cspdensenet121").stages()[0])
    return (f"DenseNet-121 stage 1 (6 layers): split-and-merge graph {dn['split_merge']} -> "
            f"{csp['split_merge']} routes with the split; layer graph {dn['layer_graph']:,} -> "
            f"{csp['layer_graph']:,}.")


def m_duplicate_gradient() -> str:
    return ("The paper defines no measure of duplicate gradient information. Chapter 5's route overlap "
            "is this book's reading of it; it comes from a short training run at build time (five "
            "seeds, Holm-corrected intervals, on its page), so no number is quoted here.")


def m_weight_update_indices() -> str:
    reach = weight_update_sources(3)
    text = "; ".join(f"w{l} from g{', g'.join(map(str, s))}" for l, s in reach.items())
    none = 0 not in {s for v in reach.values() for s in v}
    return (f"Autograd on a 3-layer dense block, a gradient g_j placed on one output x_j at a time "
            f"(g0 on the block's input x0): "
            f"{text}" + ("; g0 reaches no weight" if none else "") +
            ". The weights of layer k take the gradients of layers k and after, not g0 ... g(k-1).")


def m_speed() -> str:
    s = cpu_speed()
    inf, tr = s["counts"]["inference"], s["counts"]["train"]
    return (f"Committed CPU benchmark ({s['device']}, {s['setting']}), {s['n']} CSP variants against "
            f"DenseNet-121: inference {inf['faster']} faster, {inf['slower']} slower, "
            f"{inf['not distinguishable']} not distinguishable; training step {tr['faster']} faster, "
            f"{tr['slower']} slower, {tr['not distinguishable']} not distinguishable.")


def m_detector() -> str:
    return "The book builds no detector (no feature pyramid, no EFM, no COCO)."


# --------------------------------------------------------------------------- the claims

CLAIMS = (
    Claim("compute_20", "Abstract",
          "reduces computations by 20%", m_compute_cut, "ambiguous", "04_fusion_strategies",
          "The savings, beside the paper",
          "It holds for the one pair whose networks the authors published (the ResNeXt cfgs); on "
          "DenseNet the cut depends on transition widths the paper does not give."),
    Claim("accuracy_same", "Abstract",
          "with equivalent or even superior accuracy on the ImageNet dataset", m_accuracy,
          "cannot be tested here", "07_no_tradeoff", "Paired differences and their intervals",
          "No ImageNet training here; the digits run tests the idea on other data, not the claim."),
    Claim("speed", "1, Introduction (Figure 1)",
          "but also benefit on inference speed and accuracy", m_speed, "cannot be tested here",
          "06_measuring", "Committed CPU results",
          "The paper's speeds are of whole detectors (GTX 1080 Ti, Jetson TX2, and a Core i9-9900K CPU "
          "through OpenCV), not of backbones; on this CPU no inference difference is resolved, which "
          "neither confirms nor refutes them."),
    Claim("memory_75", "1, Introduction",
          "can cut down 75% memory usage on PeleeNet when generating feature pyramids", m_detector,
          "cannot be tested here", "intro", "What the book tests",
          "A claim about the detector's feature pyramid, not the backbone."),
    Claim("cio_at_most_half", "3.1, Partial Dense Block",
          "a partial dense block is able to save at most half of the memory traffic of a network",
          m_cio_at_most_half, "holds", "03_cross_stage_split", "What CSPDenseNet-121 saves",
          "Only the base-channel term halves, so the saving never reaches one half; the formula is "
          "per block, not per network."),
    Claim("cio_condition", "3.1, Partial Dense Block",
          "While m and d are usually far smaller than c", m_cio_condition, "ambiguous",
          "03_cross_stage_split", "What CSPDenseNet-121 saves",
          "Read as a fact about DenseNet it holds (m and d are each far smaller than c); read as the "
          "condition that brings the saving near half it is too weak: that needs c >> (m+1)d/2."),
    Claim("balance_half", "3.1, Partial Dense Block",
          "it can effectively solve nearly half of the computational bottleneck", m_balance_half,
          "ambiguous", "04_fusion_strategies", "Balance computation: the paper's second goal",
          "Read as the base-layer term it halves; read as the most expensive layer it does not fall."),
    Claim("paths_doubled", "3.1, Partial Dense Block",
          "Through the split and merge strategy, the number of gradient paths can be doubled.",
          m_gradient_paths, "ambiguous", "05_gradient_paths", "Counting gradient paths, two ways",
          "Doubled with the dense block drawn as one node; one route more when every layer is a node."),
    Claim("update_indices", "3.1, DenseNet (Eq. 2)",
          "$g_i$ represents the gradient propagated to the ith dense layer", m_weight_update_indices,
          "does not hold", "05_gradient_paths", "The paper's argument",
          "Eq. 2's indices are those of each layer's inputs in Eq. 1; back-propagation runs the other "
          "way. The reuse it argues for survives with the indices reversed."),
    Claim("no_duplicate", "3.1, Cross Stage Partial DenseNet",
          "both sides do not contain duplicate gradient information that belongs to other sides",
          m_duplicate_gradient, "ambiguous", "05_gradient_paths",
          "The book's test of the fusion argument",
          "Not defined as a quantity; the book tests one operationalisation of it."),
    Claim("last_compute", "3.1, Partial Transition Layer (Figure 4)",
          "if one adopts the CSP (fusion last) strategy to perform image classification, the "
          "computation cost is significantly dropped", m_fusion_last_compute, "holds",
          "04_fusion_strategies", "The savings, beside the paper",
          "Every form we count cuts computation; how much depends on widths the paper does not give."),
    Claim("last_top1", "3.1, Partial Transition Layer (Figure 4)",
          "the top-1 accuracy only drop 0.1%", m_accuracy, "cannot be tested here",
          "07_no_tradeoff", "The ranking, against the paper's",
          "An ImageNet accuracy on PeleeNet; this book trains on digits only."),
    Claim("first_compute", "3.1, Partial Transition Layer (Figure 4)",
          "the CSP (fusion first) strategy does help the significant drop in computation cost",
          m_fusion_first_compute, "holds", "04_fusion_strategies",
          "The savings, beside the paper", "Every form we count cuts computation."),
    Claim("first_top1", "3.1, Partial Transition Layer (Figure 4)",
          "the top-1 accuracy significantly drops 1.5%", m_accuracy, "cannot be tested here",
          "07_no_tradeoff", "The ranking, against the paper's",
          "An ImageNet accuracy on PeleeNet; this book trains on digits only."),
    Claim("pelee_partial_transition", "4.2, Ablation",
          "when the computation is cut down by 21%, the accuracy only degrades by 0.1%. One thing to "
          "be noted is that when γ = 0.25, the computation is cut down by 11%",
          m_pelee_partial_transition, "ambiguous", "09_beyond_densenet",
          "The paper's ablation on PeleeNet",
          "The paper names neither the fusion nor what γ measures nor the widths; no width we "
          "tried gives both cuts."),
    Claim("csppeleenet", "4.2, Ablation; Table 3",
          "it can cut down 13% computation, but at the same time upgrade the accuracy by 0.2%. If we "
          "adjust the partial ratio to γ = 0.25, we are able to upgrade the accuracy by 0.8% and at "
          "the same time cut down 3% computation", m_csppeleenet, "ambiguous",
          "09_beyond_densenet", "Which widths come closest",
          "Our PeleeNet matches Table 3; CSPPeleeNet's widths are not published, and whether any "
          "width fits depends on the reading of γ."),
    Claim("elastic", "4.3, ImageNet; Table 3",
          "CSPPeleeNet and CSPDenseNet-201-Elastic can respectively cut down 13% and 19% computation",
          m_elastic, "cannot be tested here", "04_fusion_strategies",
          "The savings, beside the paper",
          "Elastic is another paper's network, with no cfg; ours is plain DenseNet-201."),
    Claim("resnext_table3", "4.3, ImageNet; Table 3",
          "As to the case of ResNeXt-50, CSPResNeXt-50 can cut down 22% computation", m_resnext,
          "holds", "10_csp_in_practice", "CSPResNeXt-50 from the authors' configuration files",
          "The authors' own cfgs give Table 3's parameters and BFLOPs at its rounding."),
    Claim("resnext_cio", "4.5, Memory Traffic",
          "The CIO of the proposed CSPResNeXt (32.6M) is lower than that of the original ResNeXt50 "
          "(34.4M).", m_resnext_cio, "holds", "10_csp_in_practice",
          "CSPResNeXt-50 from the authors' configuration files",
          "Counting pooling layers too gives the paper's two figures at its rounding."),
    Claim("bottleneck_44", "4.5, Computational Bottleneck",
          "which reduces the PeleeNet backbone 44% computational bottleneck", m_bottleneck_44,
          "cannot be tested here", "09_beyond_densenet",
          "The computational bottleneck",
          "The figure depends on CSPPeleeNet-EFM's transition widths, which are not published; none "
          "of our readings comes near it (the introduction rounds it to \"cut into half\")."),
)


def ledger(claims=CLAIMS) -> list[dict]:
    """Every claim evaluated: its fields with ``measured`` computed as text (counts only: seconds)."""
    rows = []
    for c in claims:
        rows.append(dict(key=c.key, section=c.section, quote=c.quote, measured=c.measured(),
                         verdict=c.verdict, chapter=c.chapter, anchor=c.anchor, why=c.why))
    return rows


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_ledger(rows: list[dict] | None = None) -> str:
    """The ledger as a Markdown table (no HTML, no pandas): claim, measured, verdict, chapter link."""
    rows = ledger() if rows is None else rows
    head = "| the paper says | measured here | verdict | where |\n|:---|:---|:---|:---|"
    body = []
    for r in rows:
        link = f"[{CHAPTERS[r['chapter']]}]({r['chapter']}.{'md' if r['chapter'] == 'intro' else 'ipynb'})"
        claim = f"{r['section']}: \"{r['quote']}\""
        body.append("| " + " | ".join(_cell(x) for x in (
            claim, r["measured"], f"**{r['verdict']}**: {r['why']}",
            f"{link}, *{r['anchor']}*")) + " |")
    return "\n".join([head, *body])


def verdict_counts(rows: list[dict] | None = None) -> dict[str, int]:
    """How many claims have each verdict, in the order of :data:`VERDICTS`."""
    rows = ledger() if rows is None else rows
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}

"""The paper's gradient argument, made measurable: how gradients travel back through a stage.

CSPNet's first stated purpose of the split (Wang et al. 2019, section 3.1): "increase gradient path:
Through the split and merge strategy, the number of gradient paths can be doubled". Its Eqs. 1-4 argue
that a dense block reuses the same gradient information to update many layers, and that the split, with
fusion "last", truncates the gradient flow so that the two parts do not share it. Measures here:

* **Gradient paths, counted two ways** (:func:`path_counts`). In the *split-and-merge graph* the dense
  block is one node: a DenseNet stage has one route from input to output, a CSP stage two (skip part and
  dense part), so the split doubles the count, as the paper says. In the *layer graph* every dense layer
  is a node: a block of L layers has 2^L routes and the split adds one, the skip part's. Both counts come
  from the same graphs (:func:`split_merge_graph`, :func:`stage_graph`), by dynamic programming
  (:func:`count_paths`) and in closed form; the tests enumerate every route to check both.
* **Per-consumer gradient terms** (:func:`gradient_contributions`): the gradient reaching a feature map
  x_j of a dense block is a sum, one term per consumer (every later layer that reads x_j, and the block's
  output concat); each term is captured separately.
* **Gradient overlap** (:func:`overlap`, :func:`route_overlap`): the book's operationalisation of
  "duplicate gradient information", not the paper's (it defines none). The gradient reaching a stage's
  input x0 = [x0', x0''] is split into the part that arrives through the skip part x0' and the part that
  arrives through the dense part x0''; each is carried back to the weights of every dense layer before the
  stage, which receive both. The overlap of the two weight gradients is
  sum_{c != d} |<g_c, g_d>| / ((n - 1) sum_c ||g_c||^2): 1 when the routes push those weights in the same
  (or opposite) direction by the same amount, 0 when their pushes are orthogonal or one route sends none.
  For two routes it is the product of a direction and a size factor, |cos| x 2r / (1 + r^2) with r the
  ratio of their norms (:func:`route_factors`); :func:`route_measures` reports all three, so that a
  route that sends little (fusion last's highway channels send nothing) is not read as a difference
  of direction.
* **Gradient norms per layer** (:func:`layer_gradient_norms`) after a few training steps.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import torch
from torch import Tensor, nn

from ..models.csp import CSPStage, split_channels
from .stats import mean_interval, separated  # noqa: F401 (re-exported)
from ..models.densenet import StagePlan
from ..models.layers import DenseBlock

# --------------------------------------------------------------------------- counting paths


def dense_block_graph(num_layers: int) -> dict[str, list[str]]:
    """Edges of a dense block's graph of feature maps: x0 -> every layer, each layer -> every later layer,
    and every feature map -> the block's output concat ("out")."""
    nodes = ["x0"] + [f"h{l}" for l in range(1, num_layers + 1)]
    edges = {n: nodes[j + 1:] + ["out"] for j, n in enumerate(nodes)}
    edges["out"] = []
    return edges


def _fusion_chain(plan: StagePlan, entry: str) -> dict[str, list[str]]:
    """Edges after the dense path's ``entry`` node: dense transition, concat with the skip part,
    transition, each only where the plan has it, ending at "output"."""
    chain = []
    if plan.dense_transition_channels:
        chain.append("dense_transition")
    if plan.skip_channels:
        chain.append("concat")
    if plan.transition_channels:
        chain.append("transition")
    chain.append("output")
    edges = {entry: [chain[0]]}
    for a, b in zip(chain, chain[1:]):
        edges[a] = [b]
    edges["output"] = []
    if plan.skip_channels:
        edges["input"] = ["x0'", "x0''"]
        edges["x0'"] = ["concat"]
    else:
        edges["input"] = ["x0''"]
    return edges


def stage_graph(plan: StagePlan) -> dict[str, list[str]]:
    """A stage's *layer graph*: the split, every dense layer's output, the dense transition, concat and
    transition (each only where the plan has it). Nodes: "input", "x0'" (skip part), "x0''" (dense part;
    the whole input in DenseNet), "h1".."hL", "dense_transition", "concat", "transition", "output".

    Chains of single modules do not change the count of routes; they are kept so the graph reads like
    the paper's Figure 3.
    """
    edges = _fusion_chain(plan, "out")
    after_block = edges.pop("out")
    for node, outs in dense_block_graph(plan.num_layers).items():
        if node == "out":
            continue
        edges["x0''" if node == "x0" else node] = [after_block[0] if o == "out" else o for o in outs]
    return edges


def split_merge_graph(plan: StagePlan) -> dict[str, list[str]]:
    """A stage's *split-and-merge graph*: the same as :func:`stage_graph` with the dense block drawn as
    one node ("dense_block"), as the paper's Figure 3 draws its "Dense Block" box (its Figure 2 draws
    every dense layer)."""
    edges = _fusion_chain(plan, "dense_block")
    edges["x0''"] = ["dense_block"]
    return edges


def count_paths(edges: dict[str, list[str]], source: str, target: str) -> int:
    """Number of distinct routes from source to target in a DAG (dynamic programming in topological order)."""
    order, seen = [], set()

    def visit(n):
        if n in seen:
            return
        seen.add(n)
        for m in edges.get(n, []):
            visit(m)
        order.append(n)
    visit(source)
    paths = {n: 0 for n in order}
    paths[source] = 1
    for n in reversed(order):
        for m in edges.get(n, []):
            paths[m] += paths[n]
    return paths.get(target, 0)


def dense_block_paths(num_layers: int) -> int:
    """Closed form: routes from a dense block's input to its output. P(h_l) = sum of P over earlier maps
    = 2^(l-1), and the output concat collects 1 + sum_l 2^(l-1) = 2^L."""
    return 2 ** num_layers


def stage_paths(plan: StagePlan) -> dict[str, int]:
    """Closed form for a stage, counted both ways.

    * ``split_merge``: routes in the split-and-merge graph, 1 for DenseNet, 2 with a skip part (doubled).
    * ``layer_graph``: routes in the layer graph, 2^L for DenseNet, 2^L + 1 with a skip part.
    * ``dense_part`` / ``skip_part``: layer-graph routes that each channel of x0'' / x0' has (2^L / 1).
    """
    dense = dense_block_paths(plan.num_layers)
    skip = 1 if plan.skip_channels else 0
    return {"split_merge": 1 + skip, "layer_graph": dense + skip, "dense_part": dense, "skip_part": skip}


def network_paths(plans: Sequence[StagePlan]) -> dict[str, int]:
    """Routes from the first stage's input to the last stage's output, both ways: stages run one after
    another, so the counts multiply (2^S split-and-merge routes for S CSP stages)."""
    counts = {"split_merge": 1, "layer_graph": 1}
    for plan in plans:
        per_stage = stage_paths(plan)
        for key in counts:
            counts[key] *= per_stage[key]
    return counts


# --------------------------------------------------------------------------- per-consumer terms

def gradient_contributions(block: DenseBlock, x: Tensor, grad_output: Tensor | None = None,
                           loss_fn=None) -> dict[int, dict[str, Tensor]]:
    """For each feature map x_j of the block (j=0: the block input), the gradient each consumer sends back.

    Returns ``{j: {consumer: gradient}}`` where consumer is ``"layer{c}"`` (a later layer reading x_j) or
    ``"out"`` (the block's output concat). The terms sum to the total gradient of x_j. The block is run
    layer by layer with a separate view of x_j for every consumer, so autograd keeps the terms apart.
    ``grad_output`` (the gradient arriving at the block's output) defaults to that of ``loss_fn(out)``,
    and to a fixed random direction when neither is given. No parameter's ``.grad`` is touched.
    """
    feats = [x.detach().requires_grad_(True)]
    views: dict[int, dict[str, Tensor]] = {0: {}}
    for c, layer in enumerate(block.values(), start=1):
        inputs = []
        for j, f in enumerate(feats):
            views[j][f"layer{c}"] = v = f.view_as(f)
            inputs.append(v)
        feats.append(layer(inputs))
        views[len(feats) - 1] = {}
    for j, f in enumerate(feats):
        views[j]["out"] = f.view_as(f)
    out = torch.cat([vs["out"] for vs in views.values()], 1)
    flat = [(j, name, v) for j, vs in views.items() for name, v in vs.items()]
    if loss_fn is not None:
        grads = torch.autograd.grad(loss_fn(out), [v for _, _, v in flat])
    else:
        if grad_output is None:
            grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
        grads = torch.autograd.grad(out, [v for _, _, v in flat], grad_output)
    result: dict[int, dict[str, Tensor]] = {j: {} for j in views}
    for (j, name, _), grad in zip(flat, grads):
        result[j][name] = grad.detach()
    return result


def _cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def contribution_similarity(contributions: dict[str, Tensor]) -> tuple[list[str], Tensor]:
    """Signed cosine similarity between every pair of consumers' gradient terms for one feature map.

    Returns (consumer names, a square matrix). A zero term (a consumer that ignores x_j) gives NaN.
    """
    names = list(contributions)
    m = torch.eye(len(names), dtype=torch.float64)
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        m[i, j] = m[j, i] = _cosine(contributions[a], contributions[b])
    return names, m


def overlap(components: Sequence[Tensor]) -> float:
    """How much n gradient terms of the same tensor duplicate each other, in [0, 1]:

    sum over pairs c != d of |<g_c, g_d>|, divided by (n - 1) x sum_c ||g_c||^2.

    1 when every term is the same vector up to sign, 0 when the terms are pairwise orthogonal (a zero
    term is orthogonal to everything: a route that sends no gradient duplicates nothing). Unlike a mean
    of signed cosines, opposite pairs do not cancel aligned ones; unlike a cosine, it is defined when a
    term is zero. A single term overlaps with nothing (0.0); all-zero terms give NaN (nothing to compare).
    """
    flat = [c.detach().flatten().double() for c in components]
    if not flat:
        raise ValueError("components must hold at least one tensor, got none")
    if any(f.shape != flat[0].shape for f in flat):
        raise ValueError(f"components must all have the same number of elements, got {[f.numel() for f in flat]}")
    energy = sum(float(f @ f) for f in flat)
    if energy == 0:
        return float("nan")
    if len(flat) == 1:
        return 0.0
    cross = sum(abs(float(a @ b)) for a, b in combinations(flat, 2))
    return 2 * cross / ((len(flat) - 1) * energy)


def mean_duplication(contributions: dict[int, dict[str, Tensor]]) -> list[float]:
    """For each feature map x_j of a block, the :func:`overlap` of its consumers' gradient terms
    (0.0 where it has a single consumer)."""
    return [overlap(list(terms.values())) for terms in contributions.values()]


def mean_offdiagonal(matrix: Tensor) -> float:
    """Mean of a similarity matrix's off-diagonal entries, NaNs ignored (NaN if none are left)."""
    n = matrix.shape[0]
    off = matrix[~torch.eye(n, dtype=torch.bool)]
    off = off[~off.isnan()]
    return float(off.mean()) if off.numel() else float("nan")


# --------------------------------------------------------------------------- stages of a real model

def _stage_parts(model: nn.Module, stage: int):
    parts = model.stage_parts()
    if isinstance(stage, bool) or not isinstance(stage, int) or not 1 <= stage <= len(parts):
        raise ValueError(f"stage must be in 1..{len(parts)}, got {stage!r}")
    return parts[stage - 1]


def _stage_entry(parts) -> nn.Module:
    """The module whose input is the stage's base feature map x0 (CSP: the CSPStage; DenseNet: the block)."""
    return parts.run if isinstance(parts.run, CSPStage) else parts.block


def stage_contributions(model: nn.Module, x: Tensor, yb: Tensor, stage: int) -> dict[int, dict[str, Tensor]]:
    """:func:`gradient_contributions` for the dense block of ``stage`` (1-based) of a DenseNet or
    CSPDenseNet, with the real gradient of the cross-entropy loss on the batch (x, yb) arriving at the
    block's output through the rest of the network. Batch norm runs in eval mode (fixed statistics), so
    the measure does not depend on how the batch is split."""
    block = _stage_parts(model, stage).block
    was_training = model.training
    model.eval()
    captured = {}
    handle = block.register_forward_pre_hook(lambda m, inputs: captured.update(x=inputs[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()

    def rest(out: Tensor) -> Tensor:
        # The whole network again, with the block's output replaced by ``out``: the fusion and every
        # later module are the model's own code.
        handle = block.register_forward_hook(lambda m, inputs, output: out)
        try:
            return nn.functional.cross_entropy(model(x), yb)
        finally:
            handle.remove()

    try:
        return gradient_contributions(block, captured["x"], loss_fn=rest)
    finally:
        model.train(was_training)


def route_gradients(model: nn.Module, x: Tensor, yb: Tensor, part_ratio: float = 0.5
                    ) -> dict[int, dict[str, tuple[Tensor, Tensor]]]:
    """For every stage s >= 2, the gradient of the cross-entropy loss on (x, yb) that the conv weights
    of each earlier dense layer receive through stage s's skip part x0' and through its dense part x0''.

    Returns ``{s: {weight name: (through x0', through x0'')}}``; the two sum to the gradient those
    weights receive through stage s's input. The split is the stage's own; a stage with no skip part
    (DenseNet, ``part_ratio=1.0``) is split at ``part_ratio`` for the measure only, as a control.
    Batch norm runs in eval mode; no parameter's ``.grad`` is touched.
    """
    parts = model.stage_parts()
    if len(parts) < 2:
        raise ValueError(f"route_gradients needs a model with at least 2 stages, got {len(parts)}")
    was_training = model.training
    model.eval()
    inputs: dict[int, Tensor] = {}
    handles = [_stage_entry(p).register_forward_pre_hook(
        lambda m, args, s=p.plan.index: inputs.update({s: args[0]})) for p in parts[1:]]
    try:
        loss = nn.functional.cross_entropy(model(x), yb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    stages = sorted(inputs)
    grads_x0 = torch.autograd.grad(loss, [inputs[s] for s in stages], retain_graph=True)
    result = {}
    for s, g in zip(stages, grads_x0):
        plan = parts[s - 1].plan
        skip = plan.skip_channels or split_channels(plan.in_channels, part_ratio)[0]
        names, weights = [], []
        for p in parts[:s - 1]:
            for layer_name, layer in p.block.items():
                for conv in ("conv1", "conv2"):
                    names.append(f"{p.prefix}.{layer_name}.{conv}.weight")
                    weights.append(getattr(layer, conv).weight)
        result[s] = dict(zip(names, zip(*route_components(inputs[s], weights, g, skip))))
    return result


def _pure_positions(plans: Sequence[StagePlan]) -> list[tuple[int, set[int]]]:
    """Per stage: (its highway count, the positions in its *output* of channels no dense layer computed).

    A channel is "pure" when it went from the stem to here through splits, pooling and concats only.
    Stage 1's x0' comes straight from the stem. A transition after the concat (fusions csp and first,
    and DenseNet) is a 1x1 conv that mixes every channel, so nothing behind it is pure. Fusion last
    ends with a concat: its skip part lands at the front ("skip_dense") or at the back ("dense_skip").
    """
    result, pure_out = [], None        # None: the stem's output, every channel pure
    for plan in plans:
        if pure_out is None:
            pure_in = set(range(plan.in_channels))
        else:
            pure_in = pure_out
        skip_pure = {p for p in pure_in if p < plan.skip_channels}
        if plan.transition_channels or not plan.skip_channels:
            pure_out = set()
        else:
            offset = 0 if plan.concat_order == "skip_dense" else \
                (plan.dense_transition_channels or plan.dense_out_channels)
            pure_out = {offset + p for p in skip_pure}
        result.append((len(skip_pure), pure_out))
    return result


def highway_channels(plans: Sequence[StagePlan]) -> list[int]:
    """Per stage: how many channels of its skip part x0' have passed through no dense layer at all.

    Stage 1's x0' comes from the stem. Fusion last ends a stage with a concat and no transition; with
    ``concat_order="skip_dense"``, concat(x0', xT), the first channels of the next stage's input are this
    stage's x0' again (pooled, channel by channel), and the next split takes its x0' from the front: the
    same stem channels skip every stage (a highway). With ``"dense_skip"`` (fusion last's default) the
    front is xT, which the dense block computed. Fusions "csp" and "first" (and DenseNet) end with a
    transition, a 1x1 conv that mixes every channel. A highway channel's gradient reaches the stem and
    no earlier dense layer, so leaving highway channels out of x0' changes neither route's gradient at
    those layers; what they change is how many of x0's channels the skip route's gradient comes from,
    hence its size (:func:`route_factors`). When a stage's x0' is all highway channels, its
    :func:`route_overlap` is exactly 0.
    """
    return [count for count, _ in _pure_positions(plans)]


def head_highway_channels(plans: Sequence[StagePlan]) -> int:
    """How many channels of the last stage's output (what the classifier reads) no dense layer computed.

    0 for every default model; fusion last with ``concat_order="skip_dense"`` gives its stage 1 skip
    part (32 channels for CSPDenseNet-121), which reaches the classifier without entering a dense layer.
    """
    return len(_pure_positions(plans)[-1][1]) if plans else 0


def route_components(x0: Tensor, weights: Sequence[Tensor], grad_x0: Tensor, skip_channels: int,
                     retain_graph: bool = True) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Carry the gradient ``grad_x0`` of a feature map x0 back to ``weights`` twice: once only its first
    ``skip_channels`` channels (x0'), once only the rest (x0''). Backpropagation is linear in the
    gradient it starts from, so the two results sum to the weights' gradient through x0."""
    if not 0 < skip_channels < x0.shape[1]:
        raise ValueError(f"skip_channels must be in 1..{x0.shape[1] - 1} (x0 has {x0.shape[1]} channels), "
                         f"got {skip_channels}")
    mask = torch.zeros_like(grad_x0)
    mask[:, :skip_channels] = 1
    kw = dict(retain_graph=True, allow_unused=True)
    skip = torch.autograd.grad(x0, weights, grad_x0 * mask, **kw)
    dense = torch.autograd.grad(x0, weights, grad_x0 * (1 - mask), retain_graph=retain_graph,
                                allow_unused=True)
    fill = lambda gs: tuple(torch.zeros_like(w) if g is None else g for g, w in zip(gs, weights))  # noqa: E731
    return fill(skip), fill(dense)


def route_factors(skip: Tensor, dense: Tensor) -> tuple[float, float]:
    """The two factors of the :func:`overlap` of two routes' gradients a (skip) and b (dense):
    (|cos theta|, r = ||a|| / ||b||), with O = |cos theta| x 2r / (1 + r^2).

    The first says whether the routes push the same way, the second how much each pushes: O is 1 only
    when both are 1, and two aligned terms 10x apart give O = 20 / 101. |cos theta| is NaN when either
    term is zero; r is 0 when a is zero, inf when only b is, NaN when both are.
    """
    a, b = skip.detach().flatten().double(), dense.detach().flatten().double()
    if a.shape != b.shape:
        raise ValueError(f"skip and dense must have the same number of elements, got {a.numel()} "
                         f"and {b.numel()}")
    na, nb = float(a.norm()), float(b.norm())
    cos = abs(_cosine(a, b))
    if nb == 0:
        return cos, float("nan") if na == 0 else float("inf")
    return cos, na / nb


ROUTE_MEASURES = ("overlap", "cosine", "norm_ratio")


def _finite_mean(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else float("nan")


def route_measures(model: nn.Module, x: Tensor, yb: Tensor, part_ratio: float = 0.5
                   ) -> dict[int, dict[str, float]]:
    """Per stage s >= 2, means over the earlier dense layers' conv weights of three measures of the
    gradients they receive through stage s's skip part and through its dense part: ``"overlap"``
    (:func:`overlap`), ``"cosine"`` (|cos theta|) and ``"norm_ratio"`` (||skip|| / ||dense||), the last two
    from :func:`route_factors`. Values that are not finite (a route that sends nothing) are left out of
    the means; a mean of nothing is NaN. One :func:`route_gradients` call serves all three."""
    result = {}
    for s, per_weight in route_gradients(model, x, yb, part_ratio).items():
        rows = [(overlap(pair), *route_factors(*pair)) for pair in per_weight.values()]
        result[s] = {k: _finite_mean(r[i] for r in rows) for i, k in enumerate(ROUTE_MEASURES)}
    return result


def route_overlap(model: nn.Module, x: Tensor, yb: Tensor, part_ratio: float = 0.5) -> dict[int, float]:
    """Per stage s >= 2: the mean, over the earlier dense layers' conv weights, of the :func:`overlap`
    between the gradient they receive through stage s's skip part and through its dense part."""
    return {s: m["overlap"] for s, m in route_measures(model, x, yb, part_ratio).items()}


def overlap_during_training(model: nn.Module, batches, x_eval: Tensor, y_eval: Tensor, steps: int,
                            every: int, lr: float = 0.05, part_ratio: float = 0.5,
                            momentum: float = 0.9) -> list[dict]:
    """Train ``steps`` SGD steps (learning rate ``lr``, ``momentum``) on ``batches`` (an iterable of
    (x, y)) and, after every ``every``-th step, record :func:`route_measures` on the fixed evaluation
    batch (x_eval, y_eval).

    Returns one row per measurement: ``{"step": n, "stages": {s: overlap}, "mean": mean overlap over
    stages, "measures": {s: {measure: value}}, "means": {measure: mean over stages}}`` for the measures
    of :data:`ROUTE_MEASURES` (stages whose value is not finite are left out of a mean).
    """
    for name, v in (("steps", steps), ("every", every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if every > steps:
        raise ValueError(f"every must be in 1..steps={steps}, got {every}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    rows, it = [], iter(batches)
    for step in range(1, steps + 1):
        xb, yb = next(it)
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        if step % every == 0:
            measures = route_measures(model, x_eval, y_eval, part_ratio)
            means = {k: _finite_mean(m[k] for m in measures.values()) for k in ROUTE_MEASURES}
            rows.append({"step": step, "stages": {s: m["overlap"] for s, m in measures.items()},
                         "mean": means["overlap"], "measures": measures, "means": means})
    return rows


# --------------------------------------------------------------------------- norms during training

def layer_gradient_norms(model: nn.Module, batches, steps: int = 3, lr: float = 0.05) -> list[dict]:
    """Train ``steps`` SGD steps on ``batches`` (an iterable of (x, y)) and record, after each backward,
    the gradient norm of every dense layer's convolution weights (conv1 and conv2 together)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    it = iter(batches)
    for _ in range(steps):
        x, y = next(it)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        row = {}
        for parts in model.stage_parts():
            for layer_name, layer in parts.block.items():
                g = torch.cat([layer.conv1.weight.grad.flatten(), layer.conv2.weight.grad.flatten()])
                row[f"{parts.prefix}.{layer_name}"] = float(g.norm())
        history.append(row)
        opt.step()
    return history

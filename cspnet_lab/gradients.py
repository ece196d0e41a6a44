"""The paper's second argument, made measurable: how gradients travel back through a stage.

Three measures, each defined precisely here and in chapter 5:

* **Gradient paths** (:func:`count_paths`, :func:`dense_block_paths`, :func:`stage_paths`): the number of
  distinct routes from a stage's input to its output in the stage's graph of feature maps. Layer l of a
  dense block reads every earlier feature map, so a block of L layers has 2^L routes from its input to its
  output; a CSP stage adds one, the skip part's, and the skip part's channels have that route alone.
* **Contribution similarity** (:func:`gradient_contributions`, :func:`contribution_similarity`): the
  gradient reaching a feature map x_j of a dense block is a sum, one term per consumer (every later layer
  that reads x_j, and the block's output concat). We capture each term separately and report the cosine
  similarity between every pair: 1 means two consumers send back the same direction (duplicated
  gradient information, the paper's complaint), 0 unrelated ones.
* **Gradient norms per layer** (:func:`layer_gradient_norms`) after a few training steps.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn

from .densenet import StagePlan
from .layers import DenseBlock


# --------------------------------------------------------------------------- counting paths

def dense_block_graph(num_layers: int) -> dict[str, list[str]]:
    """Edges of a dense block's graph of feature maps: x0 -> every layer, each layer -> every later layer,
    and every feature map -> the block's output concat ("out")."""
    nodes = ["x0"] + [f"h{l}" for l in range(1, num_layers + 1)]
    edges = {n: [] for n in nodes}
    for j, n in enumerate(nodes):
        edges[n] = nodes[j + 1:] + ["out"]
    edges["out"] = []
    return edges


def stage_graph(plan: StagePlan) -> dict[str, list[str]]:
    """A stage's graph: the split, the dense block (on x0''), the partial transition, concat and transition.

    Chains of single layers (partial transition, transition) do not change the count of routes, but they
    are kept so the graph reads like the paper's figure.
    """
    block = dense_block_graph(plan.num_layers)
    edges = {"input": []}
    if plan.skip_channels:
        edges["input"].append("x0'")
        edges["x0'"] = ["concat"]
    edges["input"].append("x0")
    after_block = "partial_transition" if plan.partial_transition_channels else \
        ("concat" if plan.skip_channels else "transition")
    for node, outs in block.items():
        edges[node] = [after_block if o == "out" else o for o in outs]
    if plan.partial_transition_channels:
        edges["partial_transition"] = ["concat" if plan.skip_channels else "transition"]
    if plan.skip_channels:
        edges["concat"] = ["transition"]
    edges["transition"] = ["output"]
    edges["output"] = []
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
    """Closed form for a stage: routes reaching the stage output from its dense part, its skip part, total.

    DenseNet: every input channel has 2^L routes. CSP (any fusion): the dense part's channels have 2^L,
    the skip part's exactly 1; the gradient of a skip channel is never a sum of duplicated terms.
    """
    dense = dense_block_paths(plan.num_layers)
    skip = 1 if plan.skip_channels else 0
    return {"dense_part": dense, "skip_part": skip, "total": dense + skip}


# --------------------------------------------------------------------------- contributions

def gradient_contributions(block: DenseBlock, x: Tensor, grad_output: Tensor | None = None,
                           loss_fn=None) -> dict[int, dict[str, Tensor]]:
    """For each feature map x_j of the block (j=0: the block input), the gradient each consumer sends back.

    Returns ``{j: {consumer: gradient}}`` where consumer is ``"layer{c}"`` (a later layer reading x_j) or
    ``"out"`` (the block's output concat). The terms sum to the total gradient of x_j. The block is run
    layer by layer with a separate view of x_j for every consumer, so autograd keeps the terms apart.
    ``grad_output`` (the gradient arriving at the block's output) defaults to that of ``loss_fn(out)``,
    and to a fixed random direction when neither is given.
    """
    feats = [x.detach().requires_grad_(True)]
    views: dict[int, dict[str, Tensor]] = {0: {}}
    for c, layer in enumerate(block.values(), start=1):
        inputs = []
        for j, f in enumerate(feats):
            v = f.view_as(f)
            v.retain_grad()
            views[j][f"layer{c}"] = v
            inputs.append(v)
        feats.append(layer(inputs))
        views[len(feats) - 1] = {}
    outs = []
    for j, f in enumerate(feats):
        v = f.view_as(f)
        v.retain_grad()
        views[j]["out"] = v
        outs.append(v)
    out = torch.cat(outs, 1)
    if loss_fn is not None:
        loss_fn(out).backward()
    else:
        if grad_output is None:
            grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
        out.backward(grad_output)
    return {j: {name: v.grad.detach().clone() for name, v in vs.items()} for j, vs in views.items()}


def _cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def contribution_similarity(contributions: dict[str, Tensor]) -> tuple[list[str], Tensor]:
    """Cosine similarity between every pair of consumers' gradient terms for one feature map.

    Returns (consumer names, a square matrix). A zero term (a consumer that ignores x_j) gives NaN.
    """
    names = list(contributions)
    m = torch.eye(len(names), dtype=torch.float64)
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        m[i, j] = m[j, i] = _cosine(contributions[a], contributions[b])
    return names, m


def mean_duplication(contributions: dict[int, dict[str, Tensor]]) -> list[float]:
    """For each feature map x_j, the mean pairwise cosine similarity of its consumers' gradient terms
    (NaN where it has a single consumer). High = the same gradient direction arrives many times."""
    return [mean_offdiagonal(contribution_similarity(terms)[1]) for terms in contributions.values()]


def stage_contributions(model: nn.Module, x: Tensor, yb: Tensor, stage: int) -> dict[int, dict[str, Tensor]]:
    """:func:`gradient_contributions` for the dense block of ``stage`` (1-based) of a DenseNet or
    CSPDenseNet, with the real gradient of the cross-entropy loss on the batch (x, yb) arriving at the
    block's output through the rest of the network. Batch norm runs in eval mode (fixed statistics), so
    the measure does not depend on how the batch is split."""
    model.eval()
    children = list(model.features.named_children())
    names = [n for n, _ in children]
    key = f"denseblock{stage}" if f"denseblock{stage}" in names else f"stage{stage}"
    if key not in names:
        raise ValueError(f"stage must be in 1..{len(model.plans)}, got {stage}")
    at = names.index(key)
    with torch.no_grad():
        for _, module in children[:at]:
            x = module(x)
    stage_input, module = x, children[at][1]
    if key.startswith("stage"):
        block = module.dense
        x = torch.split(x, [module.skip_channels, module.dense_channels], dim=1)[1]   # x0''
    else:
        block = module

    def rest(out: Tensor) -> Tensor:
        # The rest of the network, from the block's output on: run the stage as it is, with the block's
        # output replaced by ``out`` (so the fusion code is the model's own), then every later module.
        handle = block.register_forward_hook(lambda m, i, o: out)
        try:
            y = module(stage_input)
        finally:
            handle.remove()
        for _, later in children[at + 1:]:
            y = later(y)
        return nn.functional.cross_entropy(model.head(y), yb)

    return gradient_contributions(block, x, loss_fn=rest)


def mean_offdiagonal(matrix: Tensor) -> float:
    """Mean of a similarity matrix's off-diagonal entries, NaNs ignored (NaN if none are left)."""
    n = matrix.shape[0]
    off = matrix[~torch.eye(n, dtype=torch.bool)]
    off = off[~off.isnan()]
    return float(off.mean()) if off.numel() else float("nan")


# --------------------------------------------------------------------------- norms during training

def layer_gradient_norms(model: nn.Module, batches, steps: int = 3, lr: float = 0.05) -> list[dict]:
    """Train ``steps`` SGD steps on ``batches`` (an iterable of (x, y)) and record, after each backward,
    the gradient norm of every dense layer's convolution weights (conv1 and conv2 together)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    it = iter(batches)
    for step in range(steps):
        x, y = next(it)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        row = {}
        for name, module in model.named_modules():
            if name.split(".")[-1].startswith("denselayer"):
                g = torch.cat([module.conv1.weight.grad.flatten(), module.conv2.weight.grad.flatten()])
                row[name] = float(g.norm())
        history.append(row)
        opt.step()
    return history

"""The FAQ page (book/faq.ipynb): every number it glues equals a fresh computation with the package
(and, where one exists, a closed form derived from the architecture); every link is a public issue
thread or a chapter of the book; the setup cell is the generated one and no glue call is visible."""

import json
import re
import sys

import pytest
import torch

import cspnet_lab
from cspnet_lab import bench, costs, modern
from cspnet_lab.lab import book, claims
from cspnet_lab.measure.stats import percent_change
from cspnet_lab.models.layers import DenseBlock
from cspnet_lab.models.peleenet import params_and_macs
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import setup_cell  # noqa: E402

PAGE = ROOT / "book" / "faq.ipynb"
NB = json.loads(PAGE.read_text())
MARKDOWN = "\n".join("".join(c["source"]) for c in NB["cells"] if c["cell_type"] == "markdown")
ISSUE = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/issues/(\d+)$")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def change(new, old):
    return f"{percent_change(new, old):+.1f} %"


@pytest.fixture(scope="module")
def page():
    """The page's code cells run in order, as the book runs them, with every glue call recorded:
    (glued values, the cells' namespace)."""
    glued, real = {}, book.glue
    book.glue = lambda name, value, display=None: glued.__setitem__(name, value)
    namespace = {"display": lambda *args, **kwargs: None}
    try:
        for cell in NB["cells"][1:]:                       # the setup cell does nothing here
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), f"faq:{cell['id']}", "exec"), namespace)
    finally:
        book.glue = real
    return glued, namespace


# ----------------------------------------------------------------------------- form

def test_page_starts_with_the_setup_cell_of_scripts_setup_cell():
    first = NB["cells"][0]
    assert "".join(first["source"]) == setup_cell.source().rstrip("\n")
    assert first["metadata"]["tags"] == ["setup", "hide-cell"]
    assert all(c["outputs"] == [] for c in NB["cells"] if c["cell_type"] == "code")


def test_no_glue_call_is_visible_and_every_glued_name_in_the_prose_is_glued(page):
    glued, _ = page
    for cell in NB["cells"]:
        if cell["cell_type"] == "code" and "glue(" in "".join(cell["source"]):
            assert "remove-input" in cell["metadata"].get("tags", []), cell["id"]
    used = set(re.findall(r"\{glue:text\}`([^`]+)`", MARKDOWN))
    assert used == set(glued), (used - set(glued), set(glued) - used)
    # glued text is inserted as plain text: math in a value would show its dollar signs
    assert not [k for k, v in glued.items() if "$" in str(v)]


def test_every_link_is_a_github_issue_thread_named_by_repository_and_number_or_a_chapter():
    links = LINK.findall(MARKDOWN)
    threads = [(text, url) for text, url in links if url.startswith("http")]
    assert len(threads) >= 7
    for text, url in threads:
        match = ISSUE.match(url)
        assert match, url
        owner, repo, number = match.groups()
        assert text == f"{owner}/{repo}#{number}", (text, url)
    for text, url in links:
        if not url.startswith("http"):
            assert re.fullmatch(r"[a-z0-9_]+\.ipynb", url) and (ROOT / "book" / url).exists(), url
    # no bare address outside a link, and no raw HTML (the Colab edition renders plain Markdown)
    assert MARKDOWN.count("http") == len(threads)
    assert not re.search(r"</?[A-Za-z][^>]*>", MARKDOWN)


def test_every_question_links_at_least_one_thread():
    sections = re.split(r"^## ", MARKDOWN, flags=re.M)[1:]
    assert len(sections) == 7
    for section in sections:
        assert re.search(r"\]\(https://github\.com/[^)]+/issues/\d+\)", section), section[:40]


# ----------------------------------------------------------------------------- the numbers

def test_q1_the_cspdensenet121_counts_equal_the_built_model(page):
    glued, _ = page
    built, base = cspnet_lab.cspdensenet121(), cspnet_lab.densenet121()
    assert glued["faq_csp_params"] == f"{costs.count_params(built):,}"
    _, csp_macs = params_and_macs(built, (1, 3, 224, 224))      # forward hooks, not the analyser
    _, dense_macs = params_and_macs(base, (1, 3, 224, 224))
    assert glued["faq_csp_macs"] == change(csp_macs, dense_macs)


def test_q2_the_projections_share_equals_the_closed_form(page):
    glued, _ = page
    _, c3 = params_and_macs(modern.C3(256, 256, 3), (1, 256, 40, 40))
    projections = 2 * 256 * 128 * 40 * 40                  # cv1 and cv2: 256 -> 128, 1x1
    assert glued["faq_proj_share"] == f"{100 * projections / c3:.1f} %"
    _, stage = params_and_macs(modern.CrossStage(256, 512, 4, 2, 1.0, 32), (1, 256, 64, 64))
    expand = 512 * 512 * 32 * 32                            # conv_exp after the stride-2 conv
    assert glued["faq_exp_share"] == f"{100 * expand / stage:.1f} %"


def test_q3_the_range_of_cspdensenet121s_and_the_two_readings_of_gamma(page):
    glued, _ = page
    dense = costs.analyze("densenet121").macs
    cuts = [percent_change(costs.analyze("cspdensenet121", fusion=f, part_ratio=r, widths=w).macs,
                           dense)
            for f in ("csp", "first", "last") for r in (0.25, 0.5, 0.75)
            for w in ("narrow", "matched")]
    assert glued["faq_variants"] == "18"
    assert glued["faq_cut_lo"] == f"{min(cuts):+.1f} %"
    assert glued["faq_cut_hi"] == f"{max(cuts):+.1f} %"
    assert glued["faq_costlier"] == f"{sum(c > 0 for c in cuts)}"
    assert min(cuts) < 0 < max(cuts)               # "not always" fewer multiply-adds: both signs
    g_dense = costs.analyze("cspdensenet121", part_ratio=0.25).macs
    g_bypass = costs.analyze("cspdensenet121", part_ratio=0.75).macs
    assert glued["faq_g_dense"] == change(g_dense, dense)
    assert glued["faq_g_bypass"] == change(g_bypass, dense)
    assert g_dense < g_bypass                      # a smaller dense share cuts more


def test_q4_the_committed_cpu_run_and_the_quoted_frame_rates(page):
    glued, _ = page
    default = cspnet_lab.model_config("cspdensenet121")     # the page calls this the default
    assert (default.fusion, default.part_ratio, default.widths) == ("csp", 0.5, "narrow")
    result = bench.load_results(bench.RESULTS / "bench_cpu.json")
    rows = {r["mode"]: r for r in bench.speedups(result, "densenet121")
            if r["model"] == "cspdensenet121:fusion=csp,part_ratio=0.5"}
    assert set(rows) == {"train", "inference"}
    assert glued["faq_bench_device"] == result["provenance"]["device"]
    assert glued["faq_m"] == f"{rows['train']['mac_ratio']:.2f}"
    for mode, r in rows.items():
        assert glued[f"faq_t_{mode}"] == (f"{r['time_ratio']:.2f} [{r['time_ratio_lo']:.2f}, "
                                          f"{r['time_ratio_hi']:.2f}]")
        assert glued[f"faq_v_{mode}"] == r["verdict"]
    # the figures of the threads, entered a second time here: a typo in either fails
    assert glued["faq_bflops"] == change(13.07, 18.57)
    assert glued["faq_fps"] == ", ".join(f"{percent_change(c, d):+.1f} %"
                                         for c, d in ((101, 113), (57, 56))) + \
        f" and {percent_change(41, 38):+.1f} %"
    assert glued["faq_fps_where"] == "slower at 256 pixels; faster at 512 and 608"


def test_q5_own_convolutions_and_multiply_adds_of_the_blocks(page):
    glued, _ = page
    # BottleneckCSP: cv1..cv4; C3: cv1, cv2, cv3; C2f: cv1, cv2 (the numbers in the names)
    assert [glued[f"faq_convs_{k}"] for k in ("bcsp", "c3", "c2f")] == ["4", "3", "2"]
    for key, cls in (("bcsp", modern.BottleneckCSP), ("c3", modern.C3), ("c2f", modern.C2f)):
        _, macs = params_and_macs(cls(128, 256, 3), (1, 128, 40, 40))
        assert glued[f"faq_macs_{key}"] == f"{macs / 1e6:.0f} M"
    # C3 is BottleneckCSP without the 128 -> 128 transition on the block path
    _, bcsp = params_and_macs(modern.BottleneckCSP(128, 256, 3), (1, 128, 40, 40))
    _, c3 = params_and_macs(modern.C3(128, 256, 3), (1, 128, 40, 40))
    assert bcsp - c3 == 128 * 128 * 40 * 40


def test_q6_the_weight_of_layer_k_takes_the_gradients_of_layers_k_and_after(page):
    glued, _ = page
    assert glued["faq_reach"] == "w₁ from g₁, g₂ and g₃; w₂ from g₂ and g₃; w₃ from g₃"
    assert glued["faq_g0"] == "reaches no weight of the block"
    assert glued["faq_indices_verdict"] == {c.key: c for c in claims.CLAIMS}["update_indices"].verdict
    # the same fact by autograd here, on another block: the gradient on output x_j reaches the
    # weights of layer l exactly when j >= l (never for the block's input x_0)
    torch.manual_seed(1)
    layers, c0, k = 4, 3, 2
    block = DenseBlock(layers, c0, bn_size=2, growth_rate=k).eval()
    x = torch.randn(2, c0, 5, 5)
    out = block(x)
    slots = [(0, c0)] + [(c0 + i * k, k) for i in range(layers)]
    for j, (start, width) in enumerate(slots):
        grad = torch.zeros_like(out)
        grad[:, start:start + width] = torch.randn(2, width, 5, 5)
        block.zero_grad(set_to_none=True)
        out.backward(grad, retain_graph=True)
        for l, layer in enumerate(block.values(), start=1):
            w = layer.conv2.weight.grad
            assert (w is not None and bool(w.abs().sum() > 0)) == (j >= l), (j, l)


def _resnet18_layer_macs(c_in, c_out, stride, size):
    """Multiply-adds of torchvision's ResNet-18 layer: two basic blocks, the first strided with a
    1x1 shortcut conv when the shape changes."""
    out = (size // stride) ** 2
    first = 9 * c_in * c_out * out + 9 * c_out * c_out * out
    if stride != 1 or c_in != c_out:
        first += c_in * c_out * out
    return first + 2 * 9 * c_out * c_out * out


def _csp_layer_macs(c_in, c_out, stride, size):
    """The CrossStage form: 3x3 stride-2 downsample, 1x1 expand, two basic blocks on half the
    channels, 1x1 transition on that path, 1x1 transition after the concat."""
    out, half = (size // stride) ** 2, c_out // 2
    down = 9 * c_in * c_out * out if stride == 2 else 0
    expand = (c_out if stride == 2 else c_in) * c_out * out
    return down + expand + 2 * 2 * 9 * half * half * out + half * half * out + c_out * c_out * out


def test_q7_resnet18_and_its_csp_form_equal_their_closed_forms(page):
    glued, namespace = page
    layers = [(64, 64, 1, 56), (64, 128, 2, 56), (128, 256, 2, 28), (256, 512, 2, 14)]
    assert namespace["LAYERS"] == layers
    plain = sum(_resnet18_layer_macs(*layer) for layer in layers)
    csp = sum(_csp_layer_macs(*layer) for layer in layers)
    # torchvision's ResNet-18 is 1,814,073,344 multiply-adds at 224: these layers, the 7x7 stem
    # conv and the classifier
    assert plain + 64 * 3 * 49 * 112 * 112 + 512 * 1000 == 1_814_073_344
    assert namespace["r18"]["ResNet-18"][1] == plain
    assert namespace["r18"]["CSP"][1] == csp
    assert glued["faq_r18_macs"] == change(csp, plain)
    params = {name: sum(sum(p.numel() for p in build(i, o, s).parameters())
                        for i, o, s, _ in layers)
              for name, build in (("ResNet-18", namespace["resnet_layer"]),
                                  ("CSP", namespace["csp_layer"]))}
    # torchvision's ResNet-18 has 11,689,512 parameters: these layers, the stem's conv and batch
    # norm (9,408 + 128) and the classifier (513,000)
    assert params["ResNet-18"] + 9_408 + 128 + 513_000 == 11_689_512
    assert glued["faq_r18_params"] == change(params["CSP"], params["ResNet-18"])

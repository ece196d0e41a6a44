"""Figures published by others, quoted beside our measurements. Never our own numbers.

Sources: torchvision's densenet.py and model docs; Wang et al. 2019 (CSPNet), Tables 1 and 3 as listed in
the README of the paper's code repository (WongKinYiu/CrossStagePartialNetworks).
"""

TORCHVISION = {
    # name: (parameters, GFLOPS as torchvision documents them at 224x224 (multiply-adds in effect), acc@1)
    "densenet121": (7_978_856, 2.834, 74.434),
    "densenet161": (28_681_000, 7.728, 77.138),
    "densenet169": (14_149_480, 3.36, 75.600),
    "densenet201": (20_013_928, 4.291, 76.896),
}

# The CSPNet paper's ImageNet results (Table 3; darknet BFLOPs = 2 x multiply-adds; ResNeXt rows at 256x256,
# PeleeNet at 224x224 (facts.md); the Elastic rows are quoted from another paper, input size unknown).
PAPER_IMAGENET = [
    dict(model="PeleeNet", params_m=2.79, bflops=1.017, top1=70.7),
    dict(model="CSPPeleeNet", params_m=2.83, bflops=0.888, top1=70.9),
    dict(model="DenseNet-201-Elastic", params_m=19.48, bflops=8.77, top1=77.9),
    dict(model="CSPDenseNet-201-Elastic", params_m=20.17, bflops=7.13, top1=77.9),
    dict(model="ResNeXt-50", params_m=22.19, bflops=10.11, top1=77.8),
    dict(model="CSPResNeXt-50", params_m=20.50, bflops=7.93, top1=77.9),
]

# Changes against the baseline that the paper reports, in percent. Section 4.2 attributes the -21 % to
# "the partial transition layer"; its discussion of Figure 4 ties the -0.1 point to fusion last.
PAPER_SAVINGS = [
    dict(source="paper, Table 3", comparison="CSPDenseNet-201-Elastic vs DenseNet-201-Elastic",
         flops_change_pct=-19.0, params_change_pct=round(100 * (20.17 - 19.48) / 19.48, 1), top1_change=0.0),
    dict(source="paper, section 4.2 (PeleeNet)", comparison="partial transition layer (fusion last?)",
         flops_change_pct=-21.0, params_change_pct=None, top1_change=-0.1),
    dict(source="paper, section 4.2 (PeleeNet)", comparison="CSPPeleeNet vs PeleeNet",
         flops_change_pct=-13.0, params_change_pct=round(100 * (2.83 - 2.79) / 2.79, 1), top1_change=0.2),
    dict(source="paper, Figure 4 discussion", comparison="fusion first vs PeleeNet",
         flops_change_pct=None, params_change_pct=None, top1_change=-1.5),
]

# The paper's gamma = 0.25 results (section 4.2, PeleeNet), beside its default (gamma not stated).
PAPER_GAMMA = [
    dict(model="PeleeNet + partial transition layer", default_flops_pct=-21.0, gamma025_flops_pct=-11.0,
         default_top1=-0.1, gamma025_top1=+0.1),
    dict(model="CSPPeleeNet", default_flops_pct=-13.0, gamma025_flops_pct=-3.0,
         default_top1=+0.2, gamma025_top1=+0.8),
]

# The source article (facts.md) prints no counts: these were counted from its code (parameters, and
# fvcore's totals at 224x224 with the models in eval()).
ARTICLE = {"article_densenet": (1_447_470, 0.580), "article_cspdensenet": (1_274_934, 0.555)}

# The paper's Figure 4 discussion, in top-1 points against PeleeNet: fusion last "top-1 only drop 0.1%",
# fusion first "significantly drops 1.5%".
PAPER_FUSION_TOP1 = {"last": -0.1, "first": -1.5}


def paper_drops_inside(low: float, high: float) -> list[str]:
    """The fusions of PAPER_FUSION_TOP1 whose drop (points) lies in [low, high], in the dict's order.

    When both lie inside, the interval cannot tell the paper's fusion-last drop from its fusion-first one.
    """
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))):
        raise TypeError(f"low and high must be numbers, got {type(low).__name__}, {type(high).__name__}")
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    return [name for name, drop in PAPER_FUSION_TOP1.items() if low <= drop <= high]

"""Named presets: data, not code. ``create_model(name, **overrides)`` builds any of them.

A model on the command line, in a benchmark or in a result file is a :class:`ModelSpec`: a preset name,
optionally with overrides, written ``name`` or ``name:key=value,key=value``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .. import _checks
from . import modern
from .csp import CSPDenseNet, CSPDenseNetConfig
from .densenet import DenseNet, DenseNetConfig
from .peleenet import PeleeNet, PeleeNetConfig

# torchvision's four (growth_rate, block_config, num_init_features), and the DenseNet paper's 264.
_IMAGENET = {
    "121": dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "161": dict(growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96),
    "169": dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    "201": dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
    "264": dict(growth_rate=32, block_config=(6, 12, 64, 48), num_init_features=64),
}
# DenseNet-BC for CIFAR (Huang et al. 2017): depth 100 = 3 blocks x 16 bottleneck layers x 2 convs + 4,
# growth 12, a 3x3 stem conv to 2k channels, 10 classes.
_CIFAR = dict(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, stem="cifar",
              stem_norm=False, num_classes=10)
# The source article's models (facts.md): growth 12, dropout 0.2, no norm0 or norm5.
_ARTICLE = dict(growth_rate=12, block_config=(6, 12, 24, 16), num_init_features=64, drop_rate=0.2,
                stem_norm=False, final_norm=False)

PRESETS: dict[str, tuple[type, dict]] = {
    **{f"densenet{d}": (DenseNet, cfg) for d, cfg in _IMAGENET.items()},
    "densenet_cifar": (DenseNet, _CIFAR),
    **{f"cspdensenet{d}": (CSPDenseNet, dict(cfg, fusion="csp", part_ratio=0.5)) for d, cfg in _IMAGENET.items()},
    "cspdensenet_cifar": (CSPDenseNet, dict(_CIFAR, fusion="csp", part_ratio=0.5)),
    "article_densenet": (DenseNet, _ARTICLE),
    "article_cspdensenet": (CSPDenseNet, dict(_ARTICLE, fusion="csp", part_ratio=0.5, dense_transition_ratio=0.8)),
    # PeleeNet as published, and our CSP reading of it (chapter 9: the paper's CSPPeleeNet widths are
    # unpublished; fusion, gamma and its reading are overrides: create_model("csppeleenet", fusion="last"))
    "peleenet": (PeleeNet, {}),
    "csppeleenet": (PeleeNet, dict(fusion="csp", gamma=0.5, gamma_reading="dense")),
}

# The CSPNet authors' darknet cfgs (cspnet_lab/models/cfg, copied from their repository): name -> file.
# Their file for CSPResNeXt-50 is "csresnext50.cfg"; both spellings build it.
DARKNET_MODELS = {"resnext50": "resnext50", "cspresnext50": "csresnext50", "csresnext50": "csresnext50"}

# The modern CSP blocks of chapter 9, at the widths chapter 9 uses (overrides change them).
BLOCKS: dict[str, tuple[type, dict]] = {
    "c3": (modern.C3, dict(c1=128, c2=256, n=3)),
    "c2f": (modern.C2f, dict(c1=128, c2=256, n=3)),
    "bottleneck_csp": (modern.BottleneckCSP, dict(c1=128, c2=256, n=3)),
    "cross_stage": (modern.CrossStage, dict(in_chs=256, out_chs=512, depth=4, stride=2)),
}

_CONFIGS = {DenseNet: DenseNetConfig, CSPDenseNet: CSPDenseNetConfig, PeleeNet: PeleeNetConfig}
KINDS = ("densenet", "peleenet", "darknet", "block")


def model_kind(name: str) -> str:
    """"densenet" (DenseNet and CSPDenseNet presets), "peleenet", "darknet" (the authors' cfgs) or
    "block" (a single CSP block of chapter 9)."""
    _check_name(name)
    if name in PRESETS:
        return "peleenet" if PRESETS[name][0] is PeleeNet else "densenet"
    return "darknet" if name in DARKNET_MODELS else "block"


def list_models(kind: str | None = None) -> list[str]:
    """Every name ``create_model`` builds, or those of one ``kind`` (see :func:`model_kind`)."""
    if kind is not None:
        _checks.choice("kind", kind, KINDS)
    names = [*PRESETS, *DARKNET_MODELS, *BLOCKS]
    return [n for n in names if kind is None or model_kind(n) == kind]


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str (a preset name such as 'densenet121'; see list_models()), "
                        f"got {type(name).__name__}; for a config, build the class: DenseNet(config=...)")
    if name not in PRESETS and name not in DARKNET_MODELS and name not in BLOCKS:
        known = ", ".join([*PRESETS, *DARKNET_MODELS, *BLOCKS])
        raise ValueError(f"unknown model name {name!r}; known models: {known}")


def _preset(name: str) -> tuple[type, dict]:
    _check_name(name)
    if name not in PRESETS:
        raise ValueError(f"{name} is a {model_kind(name)} model: it has no config (build it with "
                         f"create_model({name!r}))")
    return PRESETS[name]


def model_fields(name: str) -> tuple[str, ...]:
    """The overrides ``create_model(name, ...)`` accepts."""
    kind = model_kind(name)
    if kind in ("densenet", "peleenet"):
        return tuple(_CONFIGS[PRESETS[name][0]].__dataclass_fields__)
    if kind == "darknet":
        return ("strict", "allow_large")
    import inspect
    return tuple(p for p in inspect.signature(BLOCKS[name][0]).parameters)


def model_config(name: str, **overrides):
    """The validated config of a preset with overrides, without building any module (fast).
    DenseNet and CSPDenseNet presets give a DenseNetConfig, PeleeNet ones a PeleeNetConfig; the darknet
    cfgs and the blocks have no config (ValueError)."""
    cls, cfg = _preset(name)
    fields = _CONFIGS[cls].__dataclass_fields__
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it takes: {', '.join(fields)}")
    return _CONFIGS[cls](**{**cfg, **overrides})


def create_model(name: str, **overrides):
    """Build any model by name, e.g. ``create_model("cspdensenet201", fusion="last", part_ratio=0.25)``,
    ``create_model("peleenet")``, ``create_model("cspresnext50")`` (the authors' cfg),
    ``create_model("c3", c1=64, c2=64, n=1)``. ``list_models()`` names them all."""
    kind = model_kind(name)
    if kind in ("densenet", "peleenet"):
        cls, _ = _preset(name)
        return cls(config=model_config(name, **overrides))
    allowed = model_fields(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it takes: {', '.join(allowed)}")
    if kind == "darknet":
        from .darknet import authors_cfg, build
        return build(authors_cfg(DARKNET_MODELS[name]), **overrides)
    cls, defaults = BLOCKS[name]
    return cls(**{**defaults, **overrides})


def input_channels(name: str, **overrides) -> int:
    """Channels of the input the named model takes (for counting it on a dummy input)."""
    kind = model_kind(name)
    if kind in ("densenet", "peleenet"):
        return model_config(name, **overrides).in_channels
    if kind == "darknet":
        return 3
    args = {**BLOCKS[name][1], **overrides}
    return args.get("c1", args.get("in_chs"))


@dataclass(frozen=True)
class ModelSpec:
    """A preset plus overrides, written ``name`` or ``name:key=value,key=value``.

    Values are Python literals (``ast.literal_eval``: numbers, bools, tuples, None), else strings; never
    evaluated as code. A key given twice is an error.
    """

    name: str
    overrides: tuple = ()

    @property
    def label(self) -> str:
        if not self.overrides:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.overrides)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"model spec must be a non-empty string like 'name' or 'name:key=value', got {text!r}")
        name, _, rest = text.strip().partition(":")
        overrides, seen = [], set()
        for item in filter(None, _split_top_level(rest)):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ValueError(f"model spec {text!r}: override {item!r} must be key=value")
            if key in seen:
                raise ValueError(f"model spec {text!r}: {key!r} is given twice")
            seen.add(key)
            overrides.append((key, _parse_value(value.strip())))
        return cls(name, tuple(overrides))

    def config(self):
        """The validated config (ValueError for an unknown name, key or value, and for a model with no
        config: a darknet cfg or a block); builds nothing."""
        return model_config(self.name, **dict(self.overrides))

    def build(self):
        return create_model(self.name, **dict(self.overrides))


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: "a=1,block_config=(4,4,4)" -> ["a=1", "block_config=(4,4,4)"]."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _parse_value(v: str):
    """A Python literal (int, float, bool, tuple, None) when it is one, else the string itself."""
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return v


def densenet121(**kw) -> DenseNet: return create_model("densenet121", **kw)  # noqa: E704
def densenet161(**kw) -> DenseNet: return create_model("densenet161", **kw)  # noqa: E704
def densenet169(**kw) -> DenseNet: return create_model("densenet169", **kw)  # noqa: E704
def densenet201(**kw) -> DenseNet: return create_model("densenet201", **kw)  # noqa: E704
def densenet264(**kw) -> DenseNet: return create_model("densenet264", **kw)  # noqa: E704
def densenet_cifar(**kw) -> DenseNet: return create_model("densenet_cifar", **kw)  # noqa: E704
def cspdensenet121(**kw) -> CSPDenseNet: return create_model("cspdensenet121", **kw)  # noqa: E704
def cspdensenet161(**kw) -> CSPDenseNet: return create_model("cspdensenet161", **kw)  # noqa: E704
def cspdensenet169(**kw) -> CSPDenseNet: return create_model("cspdensenet169", **kw)  # noqa: E704
def cspdensenet201(**kw) -> CSPDenseNet: return create_model("cspdensenet201", **kw)  # noqa: E704
def cspdensenet264(**kw) -> CSPDenseNet: return create_model("cspdensenet264", **kw)  # noqa: E704
def cspdensenet_cifar(**kw) -> CSPDenseNet: return create_model("cspdensenet_cifar", **kw)  # noqa: E704

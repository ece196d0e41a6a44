"""Named presets: data, not code. ``create_model(name, **overrides)`` builds any of them.

A model on the command line, in a benchmark or in a result file is a :class:`ModelSpec`: a preset name,
optionally with overrides, written ``name`` or ``name:key=value,key=value``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .csp import CSPDenseNet, CSPDenseNetConfig
from .densenet import DenseNet, DenseNetConfig

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
}

_CONFIGS = {DenseNet: DenseNetConfig, CSPDenseNet: CSPDenseNetConfig}


def list_models() -> list[str]:
    return list(PRESETS)


def _preset(name: str) -> tuple[type, dict]:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str (a preset name such as 'densenet121'; see list_models()), "
                        f"got {type(name).__name__}; for a config, build the class: DenseNet(config=...)")
    if name not in PRESETS:
        raise ValueError(f"unknown model name {name!r}; known models: {', '.join(PRESETS)}")
    return PRESETS[name]


def model_config(name: str, **overrides) -> DenseNetConfig:
    """The validated config of a preset with overrides, without building any module (fast)."""
    cls, cfg = _preset(name)
    fields = _CONFIGS[cls].__dataclass_fields__
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(unknown)}; it takes: {', '.join(fields)}")
    return _CONFIGS[cls](**{**cfg, **overrides})


def create_model(name: str, **overrides):
    """Build a preset, e.g. ``create_model("cspdensenet201", fusion="last", part_ratio=0.25)``."""
    cls, _ = _preset(name)
    return cls(config=model_config(name, **overrides))


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

    def config(self) -> DenseNetConfig:
        """The validated config (ValueError for an unknown name, key or value); builds nothing."""
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

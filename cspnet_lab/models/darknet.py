"""A small reader for darknet ``.cfg`` files: the layer types of the CSPNet authors' ResNeXt-50 and
CSPResNeXt-50 (repository WongKinYiu/CrossStagePartialNetworks, ``cfg/resnext50.cfg`` and
``cfg/csresnext50.cfg``), enough to build them as an ``nn.Module`` and count them.

A cfg is a list of ``[section]`` blocks of ``key=value`` lines; the first is ``[net]`` (input size,
training settings), every later one is a layer, numbered from 0. Layers refer to earlier layers by
relative (``-4``) or absolute index. Supported: ``convolutional`` (``batch_normalize``, ``filters``,
``size``, ``stride``, ``pad``, ``groups``, ``activation`` leaky or linear), ``maxpool``, ``route``
(concatenate the listed layers' outputs), ``shortcut`` (add an earlier layer's output), ``avgpool``
(global) and ``softmax``. Anything else raises ValueError naming the section.

Counting follows darknet: a conv's BFLOPs are ``2 x weights x output pixels / 1e9`` (2 FLOPs per
multiply-add), so :func:`cfg_costs` reports multiply-adds and ``bflops = 2 x macs / 1e9``. The total that
darknet prints (AlexeyAB/darknet, ``src/parser.c``: the sum of every layer's ``l.bflops``) also counts a
``[maxpool]`` as ``size^2 x channels x output pixels`` and a ``[shortcut]`` as one FLOP per output
element (``src/maxpool_layer.c``, ``src/shortcut_layer.c``); ``[route]``, ``[avgpool]`` and
``[softmax]`` count nothing. :attr:`DarknetCosts.darknet_bflops` is that total.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from .counting import conv_weights

LAYER_TYPES = ("convolutional", "maxpool", "route", "shortcut", "avgpool", "softmax")
ACTIVATIONS = {"leaky": lambda: nn.LeakyReLU(0.1), "linear": nn.Identity, "relu": nn.ReLU}


#: The keys each layer type reads; anything else in a layer section is a misspelling or a feature this
#: reader does not build (darknet itself prints such "unused" fields). [net] also holds training settings
#: (batch, momentum, policy, ...) that a model builder does not read, so only its sizes are checked.
KNOWN_KEYS = {
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "groups", "activation"},
    "maxpool": {"size", "stride"},
    "route": {"layers"},
    "shortcut": {"from", "activation"},
    "avgpool": set(),
    "softmax": {"groups"},
}
MAX_CFG_BYTES = 1 << 20   # the authors' cfgs are ~10 KB; a megabyte of text is not a network description
MAX_VALUE = 1 << 20       # no size, stride, group or filter count of a real network comes near 2**20


@dataclass
class Section:
    """One ``[type]`` block: its options in file order, values as written (strings); ``line`` is the line of
    its header in the file (0 when built by hand), for messages."""

    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = field(default=0, compare=False)

    def _where(self) -> str:
        return f"[{self.type}]" + (f" (line {self.line})" if self.line else "")

    def number(self, key: str, default: int | None = None, low: int | None = None) -> int:
        """The integer value of ``key`` (``default`` when absent), at least ``low``. Values are parsed with
        ``int()`` only: nothing in a cfg is ever evaluated."""
        if key not in self.options:
            if default is None:
                raise ValueError(f"{self._where()} needs '{key}'")
            return default
        text = self.options[key]
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"{self._where()} {key} must be an integer, got {text!r}") from None
        if (low is not None and value < low) or abs(value) > MAX_VALUE:
            bound = f">= {low} and " if low is not None else ""
            raise ValueError(f"{self._where()} {key} must be an integer {bound}<= {MAX_VALUE:,}, got {text!r}")
        return value

    def text(self, key: str, default: str) -> str:
        return self.options.get(key, default)


def parse(text: str, strict: bool = True) -> list[Section]:
    """Sections of a cfg file, in order. Comments (``#``, ``;``) and blank lines are dropped.

    A key given twice in one section is refused (darknet's ``option_find`` silently keeps the first).
    A key the layer type does not read (``filterz=9``) is a ValueError (``strict``, the default), or a warning
    with ``strict=False``.
    """
    import warnings

    if not isinstance(text, str):
        raise TypeError(f"text must be the cfg's text (str), got {type(text).__name__}")
    if len(text) > MAX_CFG_BYTES:
        raise ValueError(f"a darknet cfg of {len(text):,} characters is refused (limit {MAX_CFG_BYTES:,})")
    if "\x00" in text:
        raise ValueError("the cfg text contains NUL bytes: a binary file, not a darknet cfg")
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError(f"line {number}: unclosed section header {raw!r}")
            sections.append(Section(line[1:-1].strip(), line=number))
        elif "=" in line:
            if not sections:
                raise ValueError(f"line {number}: option {raw!r} before any [section]")
            key, value = (part.strip() for part in line.split("=", 1))
            here = sections[-1]
            if key in here.options:
                raise ValueError(f"line {number}: [{here.type}] gives {key!r} twice (darknet would keep the "
                                 f"first, {here.options[key]!r}, silently); remove one")
            known = KNOWN_KEYS.get(here.type)
            if known is not None and key not in known:
                message = (f"line {number}: [{here.type}] has no key {key!r} (known: {', '.join(sorted(known))}); "
                           "it is ignored")
                if strict:
                    raise ValueError(message)
                warnings.warn(message, stacklevel=2)
            here.options[key] = value
        else:
            raise ValueError(f"line {number}: expected '[section]' or 'key=value', got {raw!r}")
    if not sections or sections[0].type not in ("net", "network"):
        raise ValueError("a darknet cfg must start with a [net] section")
    return sections


def write(sections: list[Section]) -> str:
    """The cfg text of ``sections`` (canonical form: no comments, ``key=value``, one blank line apart)."""
    blocks = [f"[{s.type}]\n" + "".join(f"{k}={v}\n" for k, v in s.options.items()) for s in sections]
    return "\n".join(blocks)


def _index(ref: str, here: int) -> int:
    try:
        i = int(ref)
    except ValueError:
        raise ValueError(f"layer {here} refers to layer {ref.strip()!r}: not an integer") from None
    i = here + i if i < 0 else i
    if not 0 <= i < here:
        raise ValueError(f"layer {here} refers to layer {ref.strip()}, which is not an earlier layer")
    return i


class Shortcut(nn.Module):
    """darknet's ``[shortcut]``: previous output + an earlier layer's output, then the activation.

    When the two shapes differ (the authors' cfgs add a 64-channel map onto a 256-channel one, and
    across a stride-2 block), the darknet fork the authors' README points to (AlexeyAB/darknet,
    ``src/blas.c``, ``shortcut_multilayer_cpu``) adds element-wise over the flattened per-image tensors,
    up to the shorter one's length. We do the same.
    """

    def __init__(self, source: int, activation: str, same_shape: bool | None = None) -> None:
        super().__init__()
        self.source = source
        self.act = ACTIVATIONS[activation]()
        # Known when the model is built from a cfg (its layer shapes); then forward has no branch on a
        # tensor's shape, so torch.fx and torch.export can trace it.
        self.same_shape = same_shape

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        if self.same_shape if self.same_shape is not None else x.shape == other.shape:
            return self.act(x + other)
        n = min(x[0].numel(), other[0].numel())
        flat = x.flatten(1).clone()
        flat[:, :n] += other.flatten(1)[:, :n]
        return self.act(flat.view_as(x))


class Route(nn.Module):
    """darknet's ``[route]``: concatenate the listed layers' outputs along channels."""

    def __init__(self, sources: list[int]) -> None:
        super().__init__()
        self.sources = sources

    def forward(self, *inputs: Tensor) -> Tensor:
        return torch.cat(inputs, 1)


class DarknetMaxPool(nn.Module):
    """darknet's ``[maxpool]``: default padding ``size - 1``, all of it on the right and bottom for size 2."""

    def __init__(self, size: int, stride: int) -> None:
        super().__init__()
        self.size, self.stride, self.pad = size, stride, size - 1

    def forward(self, x: Tensor) -> Tensor:
        left = self.pad // 2
        x = F.pad(x, (left, self.pad - left, left, self.pad - left), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


@dataclass(frozen=True)
class LayerShape:
    index: int
    type: str
    channels: int
    height: int
    width: int


class DarknetModel(nn.Module):
    """The network of a parsed cfg; ``layers[i]`` is the cfg's layer i (``[net]`` not counted)."""

    def __init__(self, sections: list[Section], allow_large: bool = False) -> None:
        super().__init__()
        net, body = sections[0], sections[1:]
        self.in_channels = net.number("channels", 3, low=1)
        self.input_size = (net.number("height", 224, low=1), net.number("width", 224, low=1))
        _checks.parameter_budget(_parameter_estimate(net, body), "this darknet cfg", allow_large)
        self.layers = nn.ModuleList()
        self.shapes: list[LayerShape] = []
        c, h, w = self.in_channels, *self.input_size
        for i, s in enumerate(body):
            if s.type not in LAYER_TYPES:
                raise ValueError(f"layer {i}: section [{s.type}] is not supported; supported: {LAYER_TYPES}")
            if s.type == "convolutional":
                layer, (c, h, w) = self._conv(s, c, h, w)
            elif s.type == "maxpool":
                size, stride = s.number("size", 2, low=1), s.number("stride", 2, low=1)
                layer = DarknetMaxPool(size, stride)
                h, w = (h + size - 1 - size) // stride + 1, (w + size - 1 - size) // stride + 1
            elif s.type == "route":
                sources = [_index(r, i) for r in s.text("layers", "").split(",")]
                sizes = {(self.shapes[j].height, self.shapes[j].width) for j in sources}
                if len(sizes) != 1:
                    raise ValueError(f"layer {i}: [route] joins layers of different sizes {sorted(sizes)}")
                layer, c = Route(sources), sum(self.shapes[j].channels for j in sources)
                h, w = sizes.pop()
            elif s.type == "shortcut":
                activation = s.text("activation", "linear")
                if activation not in ACTIVATIONS:
                    raise ValueError(f"layer {i}: [shortcut] activation {activation!r} is not supported; "
                                     f"supported: {tuple(ACTIVATIONS)}")
                source = _index(s.text("from", ""), i)
                there, here = self.shapes[source], (c, h, w)
                layer = Shortcut(source, activation,
                                 same_shape=(there.channels, there.height, there.width) == here)
            elif s.type == "avgpool":
                layer, h, w = nn.AdaptiveAvgPool2d(1), 1, 1
            else:
                layer = nn.Softmax(dim=1)
            if h < 1 or w < 1:
                before = self.shapes[-1] if self.shapes else None
                size = f"{before.height}x{before.width}" if before else f"{self.input_size[0]}x{self.input_size[1]}"
                raise ValueError(f"layer {i} ([{s.type}]) shrinks its {size} input to {h}x{w}: the cfg cannot run "
                                 f"on its own input size {self.input_size[0]}x{self.input_size[1]}")
            self.layers.append(layer)
            self.shapes.append(LayerShape(i, s.type, c, h, w))
        self._find_head()

    def _find_head(self) -> None:
        """Split the layers at the first global [avgpool]: before it, the features; from it, the head
        (pooling, the 1x1 classifier conv, softmax), as a classification cfg lays them out."""
        pools = [i for i, layer in enumerate(self.layers) if isinstance(layer, nn.AdaptiveAvgPool2d)]
        self.head_index = pools[0] if pools else None
        if self.head_index is not None and any(
                isinstance(layer, (Route, Shortcut)) for layer in self.layers[self.head_index:]):
            self.head_index = None       # a head that reads earlier layers is not a classifier head
        self.num_classes = self.shapes[-1].channels if self.head_index is not None else None

    def _require_head(self, what: str) -> int:
        if self.head_index is None:
            raise ValueError(f"{what} needs a classification cfg (layers, then [avgpool], then the "
                             "classifier): this cfg has no [avgpool] head")
        return self.head_index

    def check_input(self, x: Tensor) -> None:
        """ValueError, before any tensor work, for an input the network cannot take."""
        _checks.image_batch(x, self, self.in_channels, takes="this cfg takes channels")

    # The model API of timm and torchvision, as on DenseNet: forward == forward_head(forward_features(x)).
    @property
    def num_features(self) -> int:
        """Channels entering the head's global average pooling."""
        return self.shapes[self._require_head("num_features") - 1].channels

    @property
    def feature_info(self) -> list[dict]:
        """The last layer at each resolution before the head: ``num_chs``, ``reduction``, ``module``."""
        stop = self.head_index if self.head_index is not None else len(self.layers)
        info = []
        for i in range(stop):
            here, nxt = self.shapes[i], self.shapes[i + 1] if i + 1 < stop else None
            if nxt is None or (nxt.height, nxt.width) != (here.height, here.width):
                info.append({"num_chs": here.channels, "reduction": self.input_size[0] // here.height,
                             "module": f"layers.{i}"})
        return info

    def get_classifier(self) -> nn.Module:
        """The head's 1x1 conv (darknet's classifier; identity after ``reset_classifier(0)``)."""
        head = self._require_head("get_classifier")
        for layer in self.layers[head + 1:]:
            if isinstance(layer, nn.Sequential) or isinstance(layer, nn.Identity):
                return layer
        raise ValueError("this cfg's head has no classifier conv after its [avgpool]")

    def reset_classifier(self, num_classes: int) -> None:
        """A new 1x1 classifier conv for ``num_classes`` (0: none; ``forward`` then returns the pooled
        features, as in timm)."""
        num_classes = _checks.non_negative_int("num_classes", num_classes)
        head = self._require_head("reset_classifier")
        for j in range(head + 1, len(self.layers)):
            if isinstance(self.layers[j], (nn.Sequential, nn.Identity)):
                break
        else:
            raise ValueError("this cfg's head has no classifier conv after its [avgpool]")
        if num_classes == 0:
            self.layers[j] = nn.Identity()
        else:
            old = self.layers[j]
            act = old.act if isinstance(old, nn.Sequential) else nn.Identity()
            conv = nn.Conv2d(self.num_features, num_classes, 1, bias=True)
            nn.init.constant_(conv.bias, 0)
            self.layers[j] = nn.Sequential()
            self.layers[j].add_module("conv", conv)
            self.layers[j].add_module("act", act)
        self.shapes[j] = replace(self.shapes[j], channels=num_classes or self.num_features)
        for k in range(j + 1, len(self.shapes)):
            self.shapes[k] = replace(self.shapes[k], channels=self.shapes[j].channels)
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        from .densenet import _tracing
        if not _tracing():
            self.check_input(x)
        stop = self.head_index if self.head_index is not None else len(self.layers)
        return self._run(x, self.layers[:stop])

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling, then (unless ``pre_logits``) the classifier conv and softmax."""
        head = self._require_head("forward_head")
        pooled = self.layers[head](features)
        if pre_logits or self.num_classes == 0:
            return pooled.flatten(1)
        return self._run(pooled, self.layers[head + 1:]).flatten(1)

    @staticmethod
    def _conv(s: Section, c: int, h: int, w: int):
        n, k, stride = s.number("filters", low=1), s.number("size", 1, low=1), s.number("stride", 1, low=1)
        groups = s.number("groups", 1, low=1)
        bn = s.number("batch_normalize", 0) != 0          # darknet: any non-zero value switches it on
        pad = k // 2 if s.number("pad", 0) else s.number("padding", 0, low=0)
        activation = s.text("activation", "logistic")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not supported; supported: {tuple(ACTIVATIONS)}")
        if c % groups or n % groups:
            raise ValueError(f"groups={groups} must divide input channels {c} and filters {n}")
        layer = nn.Sequential()
        layer.add_module("conv", nn.Conv2d(c, n, k, stride, pad, groups=groups, bias=not bn))
        if bn:
            layer.add_module("norm", nn.BatchNorm2d(n))
        layer.add_module("act", ACTIVATIONS[activation]())
        return layer, (n, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)

    @staticmethod
    def _run(x: Tensor, layers) -> Tensor:
        outputs: list[Tensor] = []
        for layer in layers:
            if isinstance(layer, Route):
                x = layer(*(outputs[j] for j in layer.sources))
            elif isinstance(layer, Shortcut):
                x = layer(x, outputs[layer.source])
            else:
                x = layer(x)
            outputs.append(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        if self.head_index is None:
            from .densenet import _tracing
            if not _tracing():
                self.check_input(x)
            return self._run(x, self.layers).flatten(1)
        return self.forward_head(self.forward_features(x))


AUTHORS_CFGS = ("resnext50", "csresnext50")


def authors_cfg(name: str) -> str:
    """The text of one of the CSPNet authors' cfgs shipped with the package (``cspnet_lab/cfg``):
    copies of WongKinYiu/CrossStagePartialNetworks ``cfg/<name>.cfg`` (source commit in ``cfg/SOURCE.md``)."""
    from importlib import resources
    _checks.choice("name", name, AUTHORS_CFGS)
    return resources.files("cspnet_lab.models").joinpath("cfg", f"{name}.cfg").read_text()


def _parameter_estimate(net: Section, body: list[Section]) -> int:
    """The convolutions' weights, from the sections alone (nothing allocated): a walk of channels only."""
    c, channels, total = net.number("channels", 3, low=1), [], 0
    for i, s in enumerate(body):
        if s.type == "convolutional":
            n, k = s.number("filters", low=1), s.number("size", 1, low=1)
            groups = s.number("groups", 1, low=1)
            total += conv_weights(c, n, k, groups) + 2 * n
            c = n
        elif s.type == "route":
            try:
                c = sum(channels[_index(r, i)] for r in s.text("layers", "").split(","))
            except (ValueError, IndexError):
                pass                     # the build names the bad reference
        channels.append(c)
    return total


def build(text: str, strict: bool = True, allow_large: bool = False) -> DarknetModel:
    """The model of a cfg's text. ``strict`` (default): an unknown key is an error (``False``: a warning); ``allow_large``: build
    past :data:`cspnet_lab._checks.MAX_PARAMETERS` (estimated from the sections before anything is allocated)."""
    return DarknetModel(parse(text, strict=strict), allow_large=allow_large)


@dataclass(frozen=True)
class DarknetCosts:
    params: int
    macs: int                # convolutions only
    other_flops: int = 0     # what darknet also counts: max pooling and shortcut additions

    @property
    def bflops(self) -> float:
        """The convolutions' BFLOPs: 2 FLOPs per multiply-add, in billions."""
        return 2 * self.macs / 1e9

    @property
    def darknet_bflops(self) -> float:
        """The total darknet prints: the convolutions plus max pooling and shortcut additions."""
        return (2 * self.macs + self.other_flops) / 1e9


def cfg_costs(model: DarknetModel) -> DarknetCosts:
    """Trainable parameters, conv multiply-adds and darknet's other FLOPs (max pooling, shortcut
    additions) at the cfg's own input size, from the layer shapes."""
    macs = other = 0
    for layer, shape in zip(model.layers, model.shapes):
        pixels = shape.height * shape.width
        if isinstance(layer, nn.Sequential):
            conv = layer.conv            # the package's one rule (cspnet_lab.models.counting)
            macs += conv_weights(conv.in_channels, conv.out_channels, conv.kernel_size, conv.groups) * pixels
        elif isinstance(layer, DarknetMaxPool):
            other += layer.size * layer.size * shape.channels * pixels
        elif isinstance(layer, Shortcut):
            other += shape.channels * pixels
    return DarknetCosts(sum(p.numel() for p in model.parameters()), macs, other)

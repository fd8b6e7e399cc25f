"""The NAS-RL chain-structured CNN space (Zoph & Le, "Neural Architecture Search with
Reinforcement Learning", ICLR 2017, Sec. 3.1, 3.3 and 4.1).

A child network is a chain of convolutional layers. For every layer the controller emits, in
this order (Sec. 4.1): filter height, filter width, number of filters, optionally the stride,
and -- with skip connections -- an anchor point (Sec. 3.3) whose ``i`` bits say which earlier
layers feed layer ``i``. The paper's rules make every sampled string a valid network (Sec. 3.3):

* a layer that is connected to no earlier layer reads the image;
* several inputs are concatenated along the depth (channel) dimension;
* inputs of different spatial sizes are zero-padded to the largest size before concatenation;
* all layer outputs that no later layer consumes are concatenated (same padding) and sent to
  the classifier.

Without skip connections the space is a plain chain: layer ``i`` reads layer ``i - 1`` and
layer 0 reads the image.

The RL search grows depth during the search (Sec. 4.1: starting at 6 layers, +2 layers every
1,600 sampled architectures): the controller is declared at the maximum depth and samples only
the first ``k`` layers' decisions, so :meth:`ChainSpace.decode` accepts any prefix that covers
a whole number of layers (:meth:`ChainSpace.num_decisions` gives its length).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_bool, check_int
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, layers_json, validate_actions
from lit_automl.spaces.networks import check_image_input

__all__ = [
    "ChainLayer",
    "ChainArchitecture",
    "ChainSpace",
    "ChainNetwork",
    "pad_concat",
    "same_padding",
    "conv_output_size",
]

_LAYER_KEYS = ("filter_height", "filter_width", "num_filters", "stride", "inputs")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choices(name: str, values: Any) -> Tuple[int, ...]:
    """A non-empty tuple of unique positive ints (one search-space choice list)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    for v in values:
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name}: {v!r} is not allowed; every entry must be a positive int, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value (each choice is one controller token), got {values!r}")
    return values


# --------------------------------------------------------------------------- #
# Architecture description
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ChainLayer:
    """One convolutional layer of a chain network.

    ``inputs`` are indices of earlier layers whose outputs are concatenated (after zero padding
    to a common size) to form this layer's input; ``()`` means the layer reads the image
    (Zoph & Le Sec. 3.3). Indices are strictly increasing; that they point to *earlier* layers
    is checked by :class:`ChainArchitecture`, which knows each layer's position.
    """

    filter_height: int
    filter_width: int
    num_filters: int
    stride: int = 1
    inputs: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("filter_height", "filter_width", "num_filters", "stride"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=1, allowed="a positive int"))
        inputs = self.inputs
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise ValueError(f"inputs must be a sequence of earlier layer indices, got {inputs!r}")
        inputs = tuple(inputs)
        for j in inputs:
            if not _is_int(j) or j < 0:
                raise ValueError(f"inputs: {j!r} is not a layer index; indices must be ints >= 0, got {inputs!r}")
        if any(b <= a for a, b in zip(inputs, inputs[1:])):
            raise ValueError(f"inputs must be strictly increasing layer indices (no repeats), got {inputs!r}")
        object.__setattr__(self, "inputs", inputs)

    def to_json(self) -> Dict[str, Any]:
        return {
            "filter_height": self.filter_height,
            "filter_width": self.filter_width,
            "num_filters": self.num_filters,
            "stride": self.stride,
            "inputs": list(self.inputs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ChainLayer":
        if not isinstance(data, Mapping):
            raise ValueError(f"a chain layer must be a JSON object with keys {list(_LAYER_KEYS)}, got {data!r}")
        missing = [k for k in _LAYER_KEYS if k not in data]
        unknown = sorted(k for k in data if k not in _LAYER_KEYS)
        if missing or unknown:
            raise ValueError(
                f"chain layer {dict(data)!r}: missing keys {missing}, unknown keys {unknown}; "
                f"allowed keys are {list(_LAYER_KEYS)}"
            )
        return cls(**{k: data[k] for k in _LAYER_KEYS})


@dataclass(frozen=True)
class ChainArchitecture:
    """A chain network: its layers in order (Zoph & Le Sec. 3.1 / 3.3)."""

    layers: Tuple[ChainLayer, ...]

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise ValueError(f"layers must be a non-empty sequence of ChainLayer, got {layers!r}")
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must be a non-empty sequence of ChainLayer, got ()")
        for i, layer in enumerate(layers):
            if not isinstance(layer, ChainLayer):
                raise ValueError(f"layer {i} must be a ChainLayer, got {layer!r}")
            bad = [j for j in layer.inputs if j >= i]
            if bad:
                raise ValueError(
                    f"layer {i} reads layers {bad}; a layer may only read earlier layers (indices 0..{i - 1})"
                    if i else f"layer 0 reads layers {bad}; the first layer can only read the image (inputs ())"
                )
        object.__setattr__(self, "layers", layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def output_layers(self) -> Tuple[int, ...]:
        """Layers no later layer consumes; concatenated for the classifier (Sec. 3.3)."""
        consumed = {j for layer in self.layers for j in layer.inputs}
        return tuple(i for i in range(self.num_layers) if i not in consumed)

    def __str__(self) -> str:
        outputs = set(self.output_layers)
        lines = []
        for i, layer in enumerate(self.layers):
            if not layer.inputs:
                src = "image"
            else:
                src = ("layers " if len(layer.inputs) > 1 else "layer ") + ", ".join(map(str, layer.inputs))
            line = (
                f"layer {i}: conv {layer.filter_height}x{layer.filter_width}, {layer.num_filters} filters, "
                f"stride {layer.stride}, input: {src}"
            )
            lines.append(line + (" -> classifier" if i in outputs else ""))
        return "\n".join(lines)

    def to_json(self) -> Dict[str, Any]:
        """Plain-JSON record: ``{"layers": [{filter_height, filter_width, num_filters, stride, inputs}, ...]}``."""
        return {"layers": [layer.to_json() for layer in self.layers]}

    @classmethod
    def from_json(cls, data: Union[Mapping[str, Any], str]) -> "ChainArchitecture":
        """Inverse of :meth:`to_json`; also accepts the JSON text."""
        return cls(tuple(ChainLayer.from_json(d) for d in layers_json(data, "chain architecture")))


# --------------------------------------------------------------------------- #
# Search space
# --------------------------------------------------------------------------- #
class ChainSpace(SequentialSpace):
    """NAS-RL's chain CNN space as a :class:`~lit_automl.spaces.decisions.SequentialSpace`.

    Args:
        num_layers: maximum depth the controller is declared for; ``decode`` also accepts the
            first ``k`` layers' actions. Default 6, the starting depth of Sec. 4.1.
        filter_heights, filter_widths: choices (1, 3, 5, 7) and num_filters: (24, 36, 48, 64)
            (Sec. 4.1).
        strides: ``None`` fixes stride 1 and emits no stride decision (the first set of
            experiments, Sec. 4.1); the other set predicts strides in ``(1, 2, 3)``. One square
            stride per layer (Fig. 2 draws separate stride height / width tokens; Sec. 4.1
            describes a single stride choice, which we follow).
        skip_connections: emit an anchor-point decision per layer (Sec. 3.3); without it the
            network is a plain chain.
        batch_norm: conv -> BN -> ReLU per layer (Sec. 4.1 lists batch normalisation and ReLU
            in the search space); ``False`` gives conv (with bias) -> ReLU.
    """

    def __init__(
        self,
        num_layers: int = 6,
        filter_heights: Sequence[int] = (1, 3, 5, 7),
        filter_widths: Sequence[int] = (1, 3, 5, 7),
        num_filters: Sequence[int] = (24, 36, 48, 64),
        strides: Optional[Sequence[int]] = None,
        skip_connections: bool = True,
        batch_norm: bool = True,
    ) -> None:
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.filter_heights = _choices("filter_heights", filter_heights)
        self.filter_widths = _choices("filter_widths", filter_widths)
        self.num_filters = _choices("num_filters", num_filters)
        self.strides: Optional[Tuple[int, ...]] = None if strides is None else _choices("strides", strides)
        self.skip_connections = check_bool("skip_connections", skip_connections)
        self.batch_norm = check_bool("batch_norm", batch_norm)

    def __repr__(self) -> str:
        return (
            f"ChainSpace(num_layers={self.num_layers}, filter_heights={self.filter_heights}, "
            f"filter_widths={self.filter_widths}, num_filters={self.num_filters}, strides={self.strides}, "
            f"skip_connections={self.skip_connections}, batch_norm={self.batch_norm})"
        )

    # ---------------------------------------------------------------- decisions
    @property
    def decisions_per_layer(self) -> int:
        """Tokens per layer: height, width, filters, [stride], [anchor]."""
        return 3 + (self.strides is not None) + self.skip_connections

    def num_decisions(self, layers: Optional[int] = None) -> int:
        """Length of the action sequence for the first ``layers`` layers (all when ``None``)."""
        if layers is None:
            layers = self.num_layers
        if not _is_int(layers) or not 1 <= layers <= self.num_layers:
            raise ValueError(f"layers must be an int in 1..{self.num_layers} (the space's num_layers), got {layers!r}")
        return layers * self.decisions_per_layer

    def layer_decisions(self, i: int) -> List[Decision]:
        """The decisions of layer ``i``, in the paper's order (Sec. 4.1, Sec. 3.3)."""
        out = [
            Decision.categorical(f"layer{i}.filter_height", len(self.filter_heights)),
            Decision.categorical(f"layer{i}.filter_width", len(self.filter_widths)),
            Decision.categorical(f"layer{i}.num_filters", len(self.num_filters)),
        ]
        if self.strides is not None:
            out.append(Decision.categorical(f"layer{i}.stride", len(self.strides)))
        if self.skip_connections:
            out.append(Decision.anchor(f"layer{i}.anchor"))
        return out

    def decisions(self) -> List[Decision]:
        """All decisions for ``num_layers`` layers; the anchor of layer ``i`` carries ``i`` bits."""
        return [d for i in range(self.num_layers) for d in self.layer_decisions(i)]

    # ---------------------------------------------------------------- decode / encode
    def decode(self, actions: Sequence[Action]) -> ChainArchitecture:
        """Actions (a whole number of layers, up to ``num_layers``) -> architecture.

        Anchor bit ``j`` of layer ``i`` set means layer ``j`` feeds layer ``i`` (Sec. 3.3).
        """
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence):
            raise ValueError(f"actions must be a list with one entry per decision, got {actions!r}")
        actions = list(actions)
        per = self.decisions_per_layer
        n = len(actions)
        if n == 0 or n % per or n > self.num_decisions():
            raise ValueError(
                f"got {n} actions; this space takes a whole number of layers: a multiple of "
                f"{per} decisions per layer, from {per} (1 layer) to {self.num_decisions()} ({self.num_layers} layers)"
            )
        validate_actions(self.decisions(), actions)
        layers = []
        for i in range(n // per):
            a = actions[i * per:(i + 1) * per]
            stride = 1 if self.strides is None else self.strides[a[3]]
            if self.skip_connections:
                inputs = tuple(j for j, bit in enumerate(a[-1]) if bit == 1)
            else:
                inputs = (i - 1,) if i else ()
            layers.append(ChainLayer(
                filter_height=self.filter_heights[a[0]],
                filter_width=self.filter_widths[a[1]],
                num_filters=self.num_filters[a[2]],
                stride=stride,
                inputs=inputs,
            ))
        return ChainArchitecture(tuple(layers))

    def encode(self, architecture: ChainArchitecture) -> List[Action]:
        """Architecture -> actions (inverse of :meth:`decode`); raises if it is not in this space."""
        if not isinstance(architecture, ChainArchitecture):
            raise ValueError(f"architecture must be a ChainArchitecture, got {architecture!r}")
        if architecture.num_layers > self.num_layers:
            raise ValueError(
                f"architecture has {architecture.num_layers} layers; this space allows at most {self.num_layers}"
            )

        def index(i: int, name: str, value: int, allowed: Tuple[int, ...]) -> int:
            if value not in allowed:
                raise ValueError(f"layer {i}: {name} {value!r} is not in this space; allowed values are {list(allowed)}")
            return allowed.index(value)

        actions: List[Action] = []
        for i, layer in enumerate(architecture.layers):
            actions.append(index(i, "filter_height", layer.filter_height, self.filter_heights))
            actions.append(index(i, "filter_width", layer.filter_width, self.filter_widths))
            actions.append(index(i, "num_filters", layer.num_filters, self.num_filters))
            if self.strides is None:
                if layer.stride != 1:
                    raise ValueError(f"layer {i}: stride {layer.stride!r} is not in this space; strides are fixed to 1")
            else:
                actions.append(index(i, "stride", layer.stride, self.strides))
            if self.skip_connections:
                actions.append([int(j in layer.inputs) for j in range(i)])
            else:
                chain = (i - 1,) if i else ()
                if layer.inputs != chain:
                    raise ValueError(
                        f"layer {i}: inputs {list(layer.inputs)} are not allowed without skip connections; "
                        f"allowed: {list(chain)}"
                    )
        return actions

    # ---------------------------------------------------------------- records / networks
    def to_json(self, architecture: ChainArchitecture) -> Dict[str, Any]:
        return architecture.to_json()

    def from_json(self, data: Union[Mapping[str, Any], str]) -> ChainArchitecture:
        """Read a record; structural validity only (use :meth:`encode` to check membership)."""
        return ChainArchitecture.from_json(data)

    def build(
        self, architecture: ChainArchitecture, in_channels: int, num_classes: int, image_size: Union[int, Tuple[int, int]]
    ) -> "ChainNetwork":
        return ChainNetwork(architecture, in_channels, num_classes, image_size, batch_norm=self.batch_norm)


# --------------------------------------------------------------------------- #
# Network
# --------------------------------------------------------------------------- #
def same_padding(kernel_size: int) -> Tuple[int, int]:
    """(before, after) zero padding of ``kernel_size - 1`` in total, the extra pixel after.

    With it a conv of stride ``s`` maps size ``n`` to ``ceil(n / s)`` for any kernel size
    (odd kernels pad ``k // 2`` on both sides, the usual "same" padding).
    """
    return (kernel_size - 1) // 2, kernel_size // 2


def conv_output_size(size: int, kernel_size: int, stride: int) -> int:
    """Output size of a conv with :func:`same_padding` (the conv arithmetic; equals ``ceil(size / stride)``)."""
    before, after = same_padding(kernel_size)
    return (size + before + after - kernel_size) // stride + 1


def pad_concat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Zero-pad (N, C_i, H_i, W_i) tensors at the bottom / right to the largest H and W, then
    concatenate along channels (Zoph & Le Sec. 3.3; where the padding goes is our choice)."""
    if len(tensors) == 1:
        return tensors[0]
    H = max(t.shape[-2] for t in tensors)
    W = max(t.shape[-1] for t in tensors)
    return torch.cat([F.pad(t, (0, W - t.shape[-1], 0, H - t.shape[-2])) for t in tensors], dim=1)


class ChainNetwork(nn.Module):
    """The child network of a :class:`ChainArchitecture` (Zoph & Le Sec. 3.3, 4.1).

    Each layer is conv(kh x kw, num_filters, stride) -> BN -> ReLU. The paper's space uses
    batch normalisation and ReLU (Sec. 4.1); their order, conv bias only without BN, and the
    "same" padding of ``k - 1`` pixels (:func:`same_padding`) are ours. The classifier is
    global average pooling + linear over the concatenated unconsumed outputs; the paper only
    says they are "sent to the classifier" (Sec. 3.3), so the head is ours.

    Shapes are computed statically for ``image_size``: ``layer_in_channels[i]``,
    ``layer_shapes[i]`` = (C, H, W) of layer ``i``'s output and ``feature_shape`` of the
    classifier input. ``forward`` pads dynamically, so other input sizes also work.
    """

    def __init__(
        self,
        architecture: ChainArchitecture,
        in_channels: int,
        num_classes: int,
        image_size: Union[int, Tuple[int, int]],
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(architecture, ChainArchitecture):
            raise ValueError(f"architecture must be a ChainArchitecture, got {architecture!r}")
        self.in_channels = check_int("in_channels", in_channels, low=1, allowed="a positive int")
        self.num_classes = check_int("num_classes", num_classes, low=1, allowed="a positive int")
        if _is_int(image_size):
            image_size = (image_size, image_size)
        if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(_is_int(s) and s >= 1 for s in image_size)):
            raise ValueError(f"image_size must be a positive int or an (H, W) pair of positive ints, got {image_size!r}")
        check_bool("batch_norm", batch_norm)
        self.architecture = architecture
        self.image_size: Tuple[int, int] = (int(image_size[0]), int(image_size[1]))
        self.output_layers = architecture.output_layers

        self.layer_in_channels: List[int] = []
        self.layer_shapes: List[Tuple[int, int, int]] = []
        blocks = []
        for layer in architecture.layers:
            if layer.inputs:
                srcs = [self.layer_shapes[j] for j in layer.inputs]
                c_in = sum(s[0] for s in srcs)
                h_in, w_in = max(s[1] for s in srcs), max(s[2] for s in srcs)
            else:
                c_in, (h_in, w_in) = in_channels, self.image_size
            kh, kw, s = layer.filter_height, layer.filter_width, layer.stride
            self.layer_in_channels.append(c_in)
            self.layer_shapes.append(
                (layer.num_filters, conv_output_size(h_in, kh, s), conv_output_size(w_in, kw, s))
            )
            blocks.append(self._block(c_in, layer, batch_norm))
        self.layers = nn.ModuleList(blocks)
        outs = [self.layer_shapes[j] for j in self.output_layers]
        self.feature_shape: Tuple[int, int, int] = (
            sum(o[0] for o in outs), max(o[1] for o in outs), max(o[2] for o in outs)
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.feature_shape[0], num_classes)

    @staticmethod
    def _block(c_in: int, layer: ChainLayer, batch_norm: bool) -> nn.Sequential:
        kh, kw = layer.filter_height, layer.filter_width
        (top, bottom), (left, right) = same_padding(kh), same_padding(kw)
        mods: List[nn.Module] = []
        if top == bottom and left == right:
            padding: Tuple[int, int] = (top, left)
        else:  # even kernel: asymmetric padding, the extra pixel at the bottom / right
            mods.append(nn.ZeroPad2d((left, right, top, bottom)))
            padding = (0, 0)
        mods.append(nn.Conv2d(c_in, layer.num_filters, (kh, kw), stride=layer.stride, padding=padding, bias=not batch_norm))
        if batch_norm:
            mods.append(nn.BatchNorm2d(layer.num_filters))
        mods.append(nn.ReLU(inplace=False))
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels)
        outs: List[torch.Tensor] = []
        for layer, block in zip(self.architecture.layers, self.layers):
            inp = pad_concat([outs[j] for j in layer.inputs]) if layer.inputs else x
            outs.append(block(inp))
        features = pad_concat([outs[j] for j in self.output_layers])
        return self.classifier(self.global_pooling(features).flatten(1))

"""The ENAS macro search space: a whole CNN of ``L`` layers (Pham, Guan, Zoph, Le & Dean, "Efficient
Neural Architecture Search via Parameter Sharing", ICML 2018, Sec. 2.2 "Designing Convolutional Networks").

For each layer the controller picks one of six operations, then which earlier layers feed it through
skip connections (an attention anchor, one bit per earlier state, as NAS-RL's Sec. 3.3). We follow the
authors' code (``src/cifar10/general_child.py``, ``general_controller.py``, whole-channels mode):

* op tokens, in their order: 0 conv 3x3, 1 sep conv 3x3, 2 conv 5x5, 3 sep conv 5x5, 4 avg pool 3x3,
  5 max pool 3x3 (:data:`ENAS_MACRO_OPS`). Every op first maps its input with conv 1x1-BN-ReLU; a conv
  then applies conv kxk-BN-ReLU, a sep conv one depthwise-pointwise pair-BN-ReLU, a pool a 3x3 stride-1
  pooling;
* states: ``s_0`` is the stem (conv 3x3-BN), ``s_{l+1}`` the output of layer ``l``. Layer ``l`` reads
  ``s_l`` (the previous layer) and its ``l`` skip bits select among ``s_0 .. s_{l-1}`` -- the stem and
  every layer but the previous one. Layer 0's anchor therefore has no bits (the controller still adds
  layer 0's hidden state to its anchors), so the space declares ``L`` ops and ``L`` anchors;
* the fixed child (``_fixed_layer``) concatenates the skip states and the op output, then applies
  ReLU-conv 1x1-BN; the search-time supernet instead adds them and applies BN (``skip_combine="add"``);
* after layers ``L // 3 - 1`` and ``2 L // 3 - 1`` every state is halved by a factorized reduction and
  the filters double (fixed child); the head is global average pooling and a linear classifier.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl._checks import check_choice, check_int
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, layers_json, validate_actions
from lit_automl.spaces.networks import check_image_input
from lit_automl.spaces.ops import ConvBN, DilConv, FactorizedReduce, ReLUConvBN, get_op

__all__ = ["ENAS_MACRO_OPS", "ENASMacroArchitecture", "ENASMacroLayer", "ENASMacroNetwork", "ENASMacroSpace",
           "ENASMacroSupernet", "macro_pool_layers"]

ENAS_MACRO_OPS: Tuple[str, ...] = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")
"""The six macro operations in the authors' token order (``general_child.py``, branches 0-5)."""

SKIP_COMBINE = ("concat", "add")


def macro_pool_layers(num_layers: int) -> Tuple[int, ...]:
    """Layers after which every state is reduced: ``L // 3 - 1`` and ``2 L // 3 - 1`` (authors' code)."""
    d = check_int("num_layers", num_layers, low=1) // 3
    return tuple(p for p in (d - 1, 2 * d - 1) if p >= 0)


@dataclass(frozen=True)
class ENASMacroLayer:
    """One macro layer: its operation and its skip sources (state indices: 0 = stem, ``j`` = layer ``j - 1``)."""

    op: str
    skips: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_choice("op", self.op, ENAS_MACRO_OPS)
        skips = self.skips
        if isinstance(skips, (str, bytes)) or not isinstance(skips, Sequence):
            raise ValueError(f"skips must be a sequence of state indices, got {skips!r}")
        skips = tuple(skips)
        for j in skips:
            check_int("skip source", j, low=0, allowed="a state index >= 0 (0 = stem, j = layer j - 1)")
        if any(b <= a for a, b in zip(skips, skips[1:])):
            raise ValueError(f"skips must be strictly increasing state indices (no repeats), got {list(skips)}")
        object.__setattr__(self, "skips", skips)


@dataclass(frozen=True)
class ENASMacroArchitecture:
    """A macro network: its layers in order; layer ``l`` may skip from states ``0 .. l - 1``."""

    layers: Tuple[ENASMacroLayer, ...]

    def __post_init__(self) -> None:
        layers = self.layers
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
            raise ValueError(f"layers must be a non-empty sequence of ENASMacroLayer, got {layers!r}")
        layers = tuple(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, ENASMacroLayer):
                raise ValueError(f"layer {i} must be an ENASMacroLayer, got {layer!r}")
            bad = [j for j in layer.skips if j >= i]
            if bad:
                raise ValueError(f"layer {i} skips from states {bad}; allowed are states 0..{i - 1} "
                                 f"(0 = stem, j = layer j - 1; state {i} is its input already)")
        object.__setattr__(self, "layers", layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_json(self) -> Dict[str, Any]:
        """``{"layers": [{"op": name, "skips": [state, ...]}, ...]}``."""
        return {"layers": [{"op": layer.op, "skips": list(layer.skips)} for layer in self.layers]}

    @classmethod
    def from_json(cls, data: Union[Mapping[str, Any], str, os.PathLike]) -> "ENASMacroArchitecture":
        """Inverse of :meth:`to_json`; also accepts the JSON text or the path of a file holding it."""
        layers = []
        for i, d in enumerate(layers_json(data, "ENAS macro architecture")):
            if not isinstance(d, Mapping) or set(d) != {"op", "skips"}:
                raise ValueError(f"layer {i}: expected an object with keys ['op', 'skips'], got {d!r}")
            layers.append(ENASMacroLayer(d["op"], d["skips"]))
        return cls(tuple(layers))


class ENASMacroSpace(SequentialSpace):
    """The ENAS macro space as a :class:`~lit_automl.spaces.decisions.SequentialSpace`.

    Args:
        num_layers: ``L`` (12, the paper's and the authors' search setting, Sec. 3.2).
        out_filters: channels of the stem and the first stage; they double at each pooling (36 in the
            authors' macro search script; small values for CPU tests).
        skip_combine: ``"concat"`` (the authors' fixed child: concat, ReLU-conv 1x1-BN) or ``"add"``
            (their search-time layer: sum, BN).
    """

    def __init__(self, num_layers: int = 12, out_filters: int = 36, skip_combine: str = "concat") -> None:
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.out_filters = check_int("out_filters", out_filters, low=2, allowed="an even int >= 2")
        if self.out_filters % 2:
            raise ValueError(f"out_filters must be even (factorized reductions split it in two halves), got {out_filters}")
        self.skip_combine = check_choice("skip_combine", skip_combine, SKIP_COMBINE)
        self._decisions = [d for i in range(self.num_layers)
                           for d in (Decision.categorical(f"layer{i}.op", len(ENAS_MACRO_OPS)), Decision.anchor(f"layer{i}.skip"))]

    def __repr__(self) -> str:
        return f"ENASMacroSpace(num_layers={self.num_layers}, out_filters={self.out_filters}, skip_combine={self.skip_combine!r})"

    def decisions(self) -> List[Decision]:
        """Per layer, the controller's order: ``layer{l}.op`` (6 choices), then ``layer{l}.skip`` (``l`` bits)."""
        return list(self._decisions)

    def decode(self, actions: Sequence[Action]) -> ENASMacroArchitecture:
        """Tokens ``[op_0, [], op_1, [b0], op_2, [b0, b1], ...]`` -> architecture; bit ``j`` set = state ``j`` feeds."""
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence):
            raise ValueError(f"actions must be a list with one entry per decision, got {actions!r}")
        actions = list(actions)
        if len(actions) != len(self._decisions):
            raise ValueError(f"expected {len(self._decisions)} actions ({self.num_layers} layers x [op, skip bits]), "
                             f"got {len(actions)}")
        for i in range(self.num_layers):
            op = actions[2 * i]
            if not isinstance(op, int) or isinstance(op, bool) or not 0 <= op < len(ENAS_MACRO_OPS):
                raise ValueError(f"layer {i}: op token {op!r} is out of range; allowed: an int in "
                                 f"[0, {len(ENAS_MACRO_OPS)}) = {list(ENAS_MACRO_OPS)}")
        actions = validate_actions(self._decisions, actions)
        return ENASMacroArchitecture(tuple(
            ENASMacroLayer(ENAS_MACRO_OPS[actions[2 * i]], tuple(j for j, b in enumerate(actions[2 * i + 1]) if b))
            for i in range(self.num_layers)))

    def encode(self, architecture: ENASMacroArchitecture) -> List[Action]:
        """Inverse of :meth:`decode`; the architecture must have exactly ``num_layers`` layers."""
        if not isinstance(architecture, ENASMacroArchitecture):
            raise ValueError(f"architecture must be an ENASMacroArchitecture, got {architecture!r}")
        if architecture.num_layers != self.num_layers:
            raise ValueError(f"architecture has {architecture.num_layers} layers; this space has num_layers={self.num_layers}")
        out: List[Action] = []
        for i, layer in enumerate(architecture.layers):
            out += [ENAS_MACRO_OPS.index(layer.op), [int(j in layer.skips) for j in range(i)]]
        return out

    def to_json(self, architecture: ENASMacroArchitecture) -> Dict[str, Any]:
        return architecture.to_json()

    def from_json(self, data: Union[Mapping[str, Any], str]) -> ENASMacroArchitecture:
        """Read a record (structure only; :meth:`encode` checks it fits this space)."""
        return ENASMacroArchitecture.from_json(data)

    def build(self, architecture: ENASMacroArchitecture, in_channels: int, num_classes: int,
              image_size: Any = None) -> "ENASMacroNetwork":
        """The fixed child network (``image_size`` unused: the network is fully convolutional)."""
        self.encode(architecture)  # membership check
        return ENASMacroNetwork(architecture, in_channels, num_classes, self.out_filters, self.skip_combine)

    def supernet(self, in_channels: int, num_classes: int) -> "ENASMacroSupernet":
        """The weight-shared network every child of this space runs on (ENAS search)."""
        return ENASMacroSupernet(self.num_layers, self.out_filters, in_channels, num_classes)


def _macro_op(name: str, C_in: int, C: int) -> nn.Sequential:
    """One macro branch (authors' ``_conv_branch`` / ``_pool_branch``): conv 1x1-BN-ReLU, then the op.

    The leading ReLU of ConvBN / DilConv acts on a ReLU output, so it changes nothing."""
    head = [nn.Conv2d(C_in, C, 1, bias=False), BatchNorm2d(C), nn.ReLU(inplace=False)]
    if name.startswith("conv_"):
        k = int(name[-1])
        return nn.Sequential(*head, ConvBN(C, k, 1), nn.ReLU(inplace=False))
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return nn.Sequential(*head, DilConv(C, C, k, 1, k // 2, 1), nn.ReLU(inplace=False))
    return nn.Sequential(*head, get_op(name, C, 1))


class _MacroFrame(nn.Module):
    """What the fixed child and the supernet share: stem, skip combination, reductions, head and the layer loop."""

    def _build_frame(self, num_layers: int, in_channels: int, num_classes: int, out_filters: int, skip_combine: str,
                     skip_counts: Sequence[int], make_ops: Any) -> None:
        """``make_ops(i, C)`` builds layer ``i``'s op module(s) at ``C`` channels; ``skip_counts[i]`` is how many
        skip states layer ``i`` concatenates (``"concat"`` only)."""
        self.in_channels = check_int("in_channels", in_channels, low=1, allowed="a positive int")
        check_int("num_classes", num_classes, low=1, allowed="a positive int")
        C = check_int("out_filters", out_filters, low=2, allowed="an even int >= 2")
        if C % 2:
            raise ValueError(f"out_filters must be even (factorized reductions split it in two halves), got {C}")
        self.skip_combine = check_choice("skip_combine", skip_combine, SKIP_COMBINE)
        self.pool_layers = macro_pool_layers(num_layers)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), BatchNorm2d(C))
        self.ops = nn.ModuleList()
        self.combine = nn.ModuleList()
        self.reduce = nn.ModuleDict()
        for i in range(num_layers):
            self.ops.append(make_ops(i, C))
            if i == 0:  # no skip decision: the op output is the layer output
                self.combine.append(nn.Identity())
            elif skip_combine == "concat":
                self.combine.append(ReLUConvBN((skip_counts[i] + 1) * C, C, 1, 1, 0))
            else:
                self.combine.append(BatchNorm2d(C))
            if i in self.pool_layers:
                self.reduce[str(i)] = nn.ModuleList(FactorizedReduce(C, 2 * C) for _ in range(i + 2))
                C *= 2
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def layer_op(self, i: int, layer: ENASMacroLayer) -> nn.Module:
        """The module that runs layer ``i``'s operation."""
        raise NotImplementedError(f"{type(self).__name__} must define layer_op()")

    def run_layers(self, x: torch.Tensor, architecture: ENASMacroArchitecture) -> torch.Tensor:
        check_image_input(x, self.in_channels, reductions=len(self.pool_layers))
        if architecture.num_layers != len(self.ops):
            raise ValueError(f"the architecture has {architecture.num_layers} layers; this network has {len(self.ops)}")
        states: List[torch.Tensor] = [self.stem(x)]
        for i, layer in enumerate(architecture.layers):
            out = self.layer_op(i, layer)(states[-1])
            skips = [states[j] for j in layer.skips]
            if self.skip_combine == "concat":
                out = self.combine[i](torch.cat(skips + [out], dim=1))
            else:
                out = self.combine[i](sum(skips, out))
            states.append(out)
            if str(i) in self.reduce:
                states = [fr(s) for fr, s in zip(self.reduce[str(i)], states)]
        return self.classifier(self.global_pooling(states[-1]).flatten(1))


class ENASMacroNetwork(_MacroFrame):
    """The child CNN of an :class:`ENASMacroArchitecture` (Pham et al. Sec. 2.2; authors' ``general_child.py``).

    ``architecture``: the architecture, its JSON record or text, or the path of an ``architecture.json``
    written by the ENAS search, so a recipe can retrain a found network with
    :class:`~lit_automl.nas.ChildClassifier`. ``out_filters=36`` as the authors' search; their final
    macro network has 24 layers of 96 filters (``cifar10_macro_final.sh``)."""

    def __init__(self, architecture: Union[ENASMacroArchitecture, Mapping[str, Any], str, os.PathLike],
                 in_channels: int, num_classes: int, out_filters: int = 36, skip_combine: str = "concat") -> None:
        super().__init__()
        if not isinstance(architecture, ENASMacroArchitecture):
            if not isinstance(architecture, (Mapping, str, os.PathLike)):
                raise ValueError(f"architecture must be an ENASMacroArchitecture, its JSON record or text, or an "
                                 f"architecture.json path, got {architecture!r}")
            architecture = ENASMacroArchitecture.from_json(architecture)
        self.architecture = architecture
        layers = architecture.layers
        self._build_frame(len(layers), in_channels, num_classes, out_filters, skip_combine,
                          [len(layer.skips) for layer in layers], lambda i, C: _macro_op(layers[i].op, C, C))

    def layer_op(self, i: int, layer: ENASMacroLayer) -> nn.Module:
        return self.ops[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_layers(x, self.architecture)


class ENASMacroSupernet(_MacroFrame):
    """The ENAS macro search network: every layer holds all six ops; ``forward(x, architecture)`` runs the
    child's op in each layer and adds its skip states, then batch-normalises (the authors' search-time
    layer, ``general_child.py`` ``_enas_layer``), so an op never sampled receives no gradient."""

    def __init__(self, num_layers: int = 12, out_filters: int = 36, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        num_layers = check_int("num_layers", num_layers, low=1)
        self._build_frame(num_layers, in_channels, num_classes, out_filters, "add", [0] * num_layers,
                          lambda i, C: nn.ModuleList(_macro_op(name, C, C) for name in ENAS_MACRO_OPS))

    def layer_op(self, i: int, layer: ENASMacroLayer) -> nn.Module:
        return self.ops[i][ENAS_MACRO_OPS.index(layer.op)]

    def forward(self, x: torch.Tensor, architecture: ENASMacroArchitecture) -> torch.Tensor:
        return self.run_layers(x, architecture)

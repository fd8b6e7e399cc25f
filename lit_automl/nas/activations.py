"""The activation-function language of activation search, and a module that runs any activation of it.

Ramachandran, Zoph & Le, "Searching for Activation Functions", ICLR workshop 2018 (arXiv:1710.05941), Sec. 2: an
activation is built by composing *core units* ``b(u1(x1), u2(x2))``: two inputs, a unary function applied to each,
a binary function combining them. The inputs of a core unit are the preactivation ``x`` or the output of an earlier
core unit (``o1`` for unit 1, ...); the last unit's output is the activation. The RNN controller emits each core
unit's tokens in the order input1, input2, unary1, unary2, binary (Fig. 2, as we read it), the same five-token shape
as the update rules of Bello et al. 2017, so the language shares :mod:`lit_automl.nas.unit_programs` with
:mod:`lit_automl.nas.update_rules`. A string is ``"in1 in2 u1 u2 b ; in1 in2 u1 u2 b"``.

Unary functions (:data:`UNARIES`, Sec. 2 list, in its order): ``identity`` x, ``neg`` -x, ``abs`` |x|, ``square``
x^2, ``cube`` x^3, ``sqrt`` sqrt(x), ``mul_beta`` beta x, ``add_beta`` x + beta, ``log_abs`` log(|x| + eps),
``exp``, ``sin``, ``cos``, ``sinh``, ``cosh``, ``tanh``, ``asinh``, ``atan``, ``sinc`` (sin(x) / x, 1 at 0),
``max0`` max(x, 0), ``min0`` min(x, 0), ``sigmoid``, ``softplus`` log(1 + e^x), ``gauss`` exp(-x^2), ``erf`` and
``beta`` (the constant beta). Binary functions (:data:`BINARIES`): ``add`` x1 + x2, ``mul`` x1 x2, ``sub`` x1 - x2,
``div`` x1 / (x2 + eps), ``max``, ``min``, ``sigmoid_mul`` sigmoid(x1) x2, ``gauss_dist`` exp(-beta (x1 - x2)^2),
``laplace_dist`` exp(-beta |x1 - x2|) and ``mix`` beta x1 + (1 - beta) x2. The paper lists no other constants (no
0 or 1): the constant it has is ``beta``.

``beta`` is a trainable per-channel parameter (Sec. 2): every occurrence of a beta-reading function (``mul_beta``,
``add_beta``, ``beta``, ``gauss_dist``, ``laplace_dist``, ``mix``) in a program has its own beta in
:class:`Activation`, of shape ``(num_channels,)`` over dimension 1 of the input (``(N, C)`` or ``(N, C, H, W)``).

Expressible activations (:data:`ACTIVATIONS`, tested): ReLU ``x x max0 max0 max`` (max(max(x, 0), max(x, 0))),
Swish ``x x mul_beta identity sigmoid_mul`` (sigmoid(beta x) x, Sec. 4), Swish-1 = SiLU (beta fixed at 1: ``x x
identity identity sigmoid_mul``), and the paper's top functions of Fig. 3 as we recall them (one core unit:
max(x, sigmoid(x)), cos(x) - x, min(x, sin(x)), max(x, tanh(x)), sinc(x) + x; two core units: x asinh(x)^2,
atan(x)^2 - x).

Sources: the full paper text could not be retrieved while this was written (only its abstract and Swish's
definition x sigmoid(beta x) were checked, the latter against framework docs that cite the paper: Chainer's
``F.swish``, ``scirs2_neural::Swish``); the function lists, the token order and Fig. 3's functions follow our
reading of Sec. 2-3 and the brief of this work, so compare before relying on an exact entry.

Choices of ours: ``eps = 1e-7`` in ``log_abs`` and ``div`` (the paper names no value); ``sqrt`` takes
``sqrt(max(|x|, 1e-12))`` (the paper writes sqrt(x), undefined for the negative preactivations every network has;
the floor keeps its gradient finite at 0); ``sinc`` is the unnormalised sin(x) / x (``torch.sinc`` is
sin(pi x) / (pi x)); every beta starts at 1 (``beta_init``), so Swish starts as Swish-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import UnknownNameError, check_int, check_real, lookup
from lit_automl.nas.unit_programs import UnitLanguage, UnitProgram, substitute

__all__ = ["ACTIVATIONS", "BETA_FUNCTIONS", "BINARIES", "EPS", "INPUTS", "UNARIES", "Activation", "ActivationProgram",
           "parse_activation"]

EPS = 1e-7
"""``eps`` of ``log(|x| + eps)`` and ``x1 / (x2 + eps)`` (ours; the paper names no value)."""

INPUTS = ("x",)
"""Input tokens of every core unit: the preactivation (earlier units' outputs ``o1 ..`` are added per unit)."""

Beta = Optional[torch.Tensor]

UNARIES: Dict[str, Callable[[torch.Tensor, Beta], torch.Tensor]] = {
    "identity": lambda x, b: x,
    "neg": lambda x, b: -x,
    "abs": lambda x, b: x.abs(),
    "square": lambda x, b: x ** 2,
    "cube": lambda x, b: x ** 3,
    "sqrt": lambda x, b: x.abs().clamp_min(1e-12).sqrt(),
    "mul_beta": lambda x, b: b * x,
    "add_beta": lambda x, b: x + b,
    "log_abs": lambda x, b: torch.log(x.abs() + EPS),
    "exp": lambda x, b: torch.exp(x),
    "sin": lambda x, b: torch.sin(x),
    "cos": lambda x, b: torch.cos(x),
    "sinh": lambda x, b: torch.sinh(x),
    "cosh": lambda x, b: torch.cosh(x),
    "tanh": lambda x, b: torch.tanh(x),
    "asinh": lambda x, b: torch.asinh(x),
    "atan": lambda x, b: torch.atan(x),
    "sinc": lambda x, b: torch.sinc(x / math.pi),
    "max0": lambda x, b: x.clamp_min(0),
    "min0": lambda x, b: x.clamp_max(0),
    "sigmoid": lambda x, b: torch.sigmoid(x),
    "softplus": lambda x, b: F.softplus(x),
    "gauss": lambda x, b: torch.exp(-x ** 2),
    "erf": lambda x, b: torch.erf(x),
    "beta": lambda x, b: torch.zeros_like(x) + b,
}
"""Unary functions ``u(x, beta)`` (Sec. 2; ``beta`` is ``None`` for those that read none)."""

BINARIES: Dict[str, Callable[[torch.Tensor, torch.Tensor, Beta], torch.Tensor]] = {
    "add": lambda x1, x2, b: x1 + x2,
    "mul": lambda x1, x2, b: x1 * x2,
    "sub": lambda x1, x2, b: x1 - x2,
    "div": lambda x1, x2, b: x1 / (x2 + EPS),
    "max": lambda x1, x2, b: torch.maximum(x1, x2),
    "min": lambda x1, x2, b: torch.minimum(x1, x2),
    "sigmoid_mul": lambda x1, x2, b: torch.sigmoid(x1) * x2,
    "gauss_dist": lambda x1, x2, b: torch.exp(-b * (x1 - x2) ** 2),
    "laplace_dist": lambda x1, x2, b: torch.exp(-b * (x1 - x2).abs()),
    "mix": lambda x1, x2, b: b * x1 + (1 - b) * x2,
}
"""Binary functions ``b(x1, x2, beta)`` (Sec. 2)."""

BETA_FUNCTIONS = frozenset({"mul_beta", "add_beta", "beta", "gauss_dist", "laplace_dist", "mix"})
"""The functions that read a trainable beta (each occurrence has its own)."""

_FORMULA = {"identity": "{}", "neg": "-{}", "abs": "|{}|", "square": "{}^2", "cube": "{}^3", "sqrt": "sqrt({})",
            "mul_beta": "beta*{}", "add_beta": "({} + beta)", "log_abs": "log(|{}| + eps)", "exp": "exp({})",
            "sin": "sin({})", "cos": "cos({})", "sinh": "sinh({})", "cosh": "cosh({})", "tanh": "tanh({})",
            "asinh": "asinh({})", "atan": "atan({})", "sinc": "sinc({})", "max0": "max({}, 0)", "min0": "min({}, 0)",
            "sigmoid": "sigmoid({})", "softplus": "softplus({})", "gauss": "exp(-{}^2)", "erf": "erf({})",
            "beta": "beta",
            "add": "({} + {})", "mul": "{} * {}", "sub": "({} - {})", "div": "{} / ({} + eps)", "max": "max({}, {})",
            "min": "min({}, {})", "sigmoid_mul": "sigmoid({}) * {}", "gauss_dist": "exp(-beta ({} - {})^2)",
            "laplace_dist": "exp(-beta |{} - {}|)", "mix": "(beta*{} + (1 - beta)*{})"}
"""How each function prints in :meth:`ActivationProgram.formula`."""

_LANGUAGE = UnitLanguage("activation", INPUTS, tuple(UNARIES), tuple(BINARIES),
                         positions=("input1", "input2", "unary1", "unary2", "binary"), layout="in1 in2 u1 u2 b")


@dataclass(frozen=True)
class ActivationProgram(UnitProgram):
    """A parsed activation: its core units, the last one's output being the activation (Sec. 2)."""

    language: ClassVar[UnitLanguage] = _LANGUAGE

    def formula(self) -> str:
        """The activation as a formula, earlier units substituted (e.g. ``sigmoid(beta*x) * x`` for Swish)."""
        return substitute(self.units, {}, _FORMULA, wrap_unary=("neg", "square", "cube", "mul_beta", "gauss"),
                          wrap_binary=("mul",))

    def beta_slots(self) -> list:
        """Names of the betas the program reads, one per beta-reading function: ``unit<k>_<position>``."""
        return [f"unit{k + 1}_{position}" for k, u in enumerate(self.units)
                for position, token in zip(("unary1", "unary2", "binary"), (u.u1, u.u2, u.b)) if token in BETA_FUNCTIONS]


ACTIVATIONS = {
    "relu": "x x max0 max0 max",
    "swish": "x x mul_beta identity sigmoid_mul",
    "swish_1": "x x identity identity sigmoid_mul",
    "max_x_sigmoid": "x x identity sigmoid max",
    "cos_minus_x": "x x cos identity sub",
    "min_x_sin": "x x identity sin min",
    "max_x_tanh": "x x identity tanh max",
    "sinc_plus_x": "x x sinc identity add",
    "x_asinh_squared": "x x asinh asinh mul ; x o1 identity identity mul",
    "atan_squared_minus_x": "x x atan atan mul ; o1 x identity identity sub",
}
"""Named activations written in the language: ReLU, Swish (trainable beta), Swish-1 (= SiLU) and the paper's top
functions of Fig. 3 as we recall them (not re-checked against the paper)."""


def parse_activation(text: Union[str, ActivationProgram]) -> ActivationProgram:
    """The :class:`ActivationProgram` of a token string ``"in1 in2 u1 u2 b ; ..."`` (Sec. 2) or of a name of
    :data:`ACTIVATIONS`.

    A single word is looked up by name (a miss lists the valid names); errors of a token string name the unit, the
    position and the bad token, and list the allowed tokens.
    """
    if isinstance(text, ActivationProgram):
        return text
    if isinstance(text, str) and len(text.split()) == 1 and ";" not in text:
        try:
            text = lookup(ACTIVATIONS, text.strip(), "activation")
        except UnknownNameError as err:
            raise UnknownNameError(f"{err}; or give a token string 'in1 in2 u1 u2 b [; ...]'") from None
    return ActivationProgram.from_string(text)


class Activation(nn.Module):
    """An activation of the language as a module, with its trainable per-channel betas (Ramachandran et al. 2018,
    Sec. 2).

    Args:
        function: a token string, an :class:`ActivationProgram` or a name of :data:`ACTIVATIONS` (e.g. ``"swish"``).
        num_channels: the channels of the input (dimension 1), each with its own beta (per channel, Sec. 2); ``None``
            gives every beta a single value shared by all channels (ours, for inputs of unknown width). We take the
            count rather than infer it lazily so that the betas exist, and load from checkpoints, before the first
            forward.
        beta_init: every beta's initial value (1: ours, Swish starting as Swish-1).
        trainable_beta: ``False`` keeps the betas at ``beta_init`` (buffers; e.g. Swish-1 as ``swish`` with
            ``beta_init=1``).
    """

    def __init__(self, function: Union[str, ActivationProgram] = "relu", num_channels: Optional[int] = None,
                 beta_init: float = 1.0, trainable_beta: bool = True) -> None:
        super().__init__()
        self.program = parse_activation(function)
        self.num_channels = check_int("num_channels", num_channels, low=1, allow_none=True)
        check_real("beta_init", beta_init)
        shape = () if num_channels is None else (num_channels,)
        self.trainable_beta = bool(trainable_beta)
        self.betas = nn.ParameterDict()
        for name in self.program.beta_slots():
            value = torch.full(shape, float(beta_init))
            if self.trainable_beta:
                self.betas[name] = nn.Parameter(value)
            else:
                self.register_buffer(f"beta_{name}", value)

    def beta(self, slot: str) -> torch.Tensor:
        """The beta of ``slot`` (``unit<k>_<position>``)."""
        return self.betas[slot] if self.trainable_beta else getattr(self, f"beta_{slot}")

    def _shaped(self, beta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.num_channels is None:
            return beta
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"Activation {str(self.program)!r} has betas for {self.num_channels} channels (dimension "
                             f"1); got an input of shape {tuple(x.shape)}")
        return beta.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The activation of ``x`` (elementwise; betas broadcast over dimension 1)."""
        outputs: Dict[str, torch.Tensor] = {"x": x}
        for k, u in enumerate(self.program.units):
            slot = f"unit{k + 1}_"
            b1, b2, bb = (self._shaped(self.beta(slot + p), x) if token in BETA_FUNCTIONS else None
                          for p, token in (("unary1", u.u1), ("unary2", u.u2), ("binary", u.b)))
            outputs[f"o{k + 1}"] = BINARIES[u.b](UNARIES[u.u1](outputs[u.op1], b1), UNARIES[u.u2](outputs[u.op2], b2),
                                                 bb)
        return outputs[f"o{len(self.program.units)}"]

    def extra_repr(self) -> str:
        return f"{self.program.formula()}, num_channels={self.num_channels}"

    def get_extra_state(self) -> Dict[str, Any]:
        """The program travels in the state dict, so a state of another activation is refused on load."""
        return {"activation": str(self.program)}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        saved = state.get("activation") if isinstance(state, dict) else None
        if saved is not None and saved != str(self.program):
            raise ValueError(f"this state was saved by the activation {saved!r}; this module runs {str(self.program)!r}")

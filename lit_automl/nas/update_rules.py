"""The update-rule language of neural optimiser search, and an optimiser that runs any rule.

Bello, Zoph, Vasudevan & Le, "Neural Optimizer Search with Reinforcement Learning", ICML 2017, Sec. 3.1: an
update rule is built from units of five tokens ``op1 op2 u1 u2 b`` (two operands, two unary functions, one binary
function) computing ``b(u1(op1), u2(op2))``; the output of a unit is an operand of the later units (``o1`` is the
output of unit 1, ...), and the last unit's output is the update: ``w <- w - lr * b(u1(op1), u2(op2))``.

Operands (:data:`OPERANDS`, Sec. 3.1): ``g``, ``g2`` (g^2), ``g3`` (g^3), ``m``, ``v``, ``y`` (running averages
of g, g^2 and g^3 with decays ``beta1 = 0.9``, ``beta2 = beta3 = 0.999``), ``sign_g``, ``sign_m``, the constants
``1`` and ``2``, ``noise`` (eps ~ N(0, 0.01): variance 0.01, std 0.1), the weight-decay terms ``wd4`` .. ``wd1``
(10^-4 w .. 10^-1 w), ``adam`` (Kingma & Ba's bias-corrected update m_hat / (sqrt(v_hat) + eps)) and ``rmsprop``
(g / (sqrt(v) + eps)). We add the three sign-decay schedules of Sec. 5 as operands ``ld``, ``cd``, ``rd`` (linear,
cosine, restart decay, :func:`~lit_automl.meta.sign_optimizers.sign_decay`) so the decayed PowerSign / AddSign are
rules too; they need the optimiser's ``decay_steps``.

Unary functions (:data:`UNARIES`): ``identity``, ``neg``, ``exp``, ``log`` (log|x|), ``sqrt`` (sqrt|x|),
``clip5`` / ``clip4`` / ``clip3`` (clip to [-l, l], l = 10^-5, 10^-4, 10^-3), ``drop1`` / ``drop3`` / ``drop5``
(set each entry to 0 with probability 0.1, 0.3, 0.5; not rescaled) and ``sign``. Binary functions
(:data:`BINARIES`): ``add``, ``sub``, ``mul``, ``div`` (x / (y + delta)), ``pow`` (x^y) and ``keep`` (keep left).

The unit shape, the parsing and the token checks are :mod:`lit_automl.nas.unit_programs`'s, shared with the
activation language of :mod:`lit_automl.nas.activations`.

Choices of ours: the running averages ``m``, ``v``, ``y`` start at 0 and are not bias corrected (as ``m`` in the
authors' PowerSign / AddSign kernels, ``tf.contrib.opt``); ``delta = 1e-8`` in ``div`` and ``log`` takes
``log(max(|x|, 1e-30))`` so an exact zero does not give ``-inf``; ``t`` of the decays is 0 at the first update.

Sources: the five-token units and the reuse of earlier outputs follow the caption of the paper's Fig. 3; the
operand and function lists are the paper's Sec. 3.1 lists as we read them (the paper text could not be re-checked
while this was written: compare before relying on an exact entry); PowerSign / AddSign and their decays follow the
authors' ``tf.contrib.opt`` kernels and ``sign_decay.py``, which we did check.

Expressible rules (tested against ``torch.optim`` and :mod:`lit_automl.meta.sign_optimizers`):

* SGD: ``g 1 identity identity mul``;
* momentum (``torch.optim.SGD(momentum=beta1)`` at ``lr``): ``m 1 identity identity mul`` at ``lr / (1 - beta1)``;
* Adam: ``adam 1 identity identity mul``; RMSProp: ``rmsprop 1 identity identity mul``;
* PowerSign: ``sign_g sign_m identity identity mul ; o1 g exp identity mul``;
* AddSign: ``sign_g sign_m identity identity mul ; o1 1 identity identity add ; o2 g identity identity mul``;
* with a sign decay, e.g. linear: ``sign_g sign_m identity identity mul ; o1 ld identity identity mul ; ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterable, Optional, Union

import torch

from lit_automl._checks import check_int, check_real
from lit_automl.meta.sign_optimizers import ElementwiseOptimizer, sign_decay
from lit_automl.nas.unit_programs import Unit, UnitLanguage, UnitProgram, substitute

__all__ = ["BINARIES", "DECAY_OPERANDS", "OPERANDS", "RULES", "UNARIES", "Unit", "UpdateRule", "UpdateRuleOptimizer",
           "parse_rule"]

OPERANDS = ("g", "g2", "g3", "m", "v", "y", "sign_g", "sign_m", "1", "2", "noise", "wd4", "wd3", "wd2", "wd1",
            "adam", "rmsprop", "ld", "cd", "rd")
"""Operand tokens (Sec. 3.1, plus the sign-decay operands ``ld``, ``cd``, ``rd`` of Sec. 5)."""

DECAY_OPERANDS = {"ld": "linear", "cd": "cosine", "rd": "restart"}
"""Decay operand -> its schedule in :func:`~lit_automl.meta.sign_optimizers.sign_decay`."""

_AVERAGES = {"m": ("beta1", 1, {"m", "sign_m", "adam"}), "v": ("beta2", 2, {"v", "adam", "rmsprop"}),
             "y": ("beta3", 3, {"y"})}
"""Running average -> (its decay's name, the power of g it averages, the operands that read it)."""

DELTA = 1e-8
"""``delta`` of the division ``x / (y + delta)`` (ours; the paper names no value)."""


def _drop(p: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x * (torch.rand_like(x) >= p).to(x.dtype)


UNARIES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "neg": lambda x: -x,
    "exp": torch.exp,
    "log": lambda x: torch.log(x.abs().clamp_min(1e-30)),
    "sqrt": lambda x: x.abs().sqrt(),
    "clip5": lambda x: x.clamp(-1e-5, 1e-5),
    "clip4": lambda x: x.clamp(-1e-4, 1e-4),
    "clip3": lambda x: x.clamp(-1e-3, 1e-3),
    "drop1": _drop(0.1),
    "drop3": _drop(0.3),
    "drop5": _drop(0.5),
    "sign": torch.sign,
}
"""Unary functions (Sec. 3.1)."""

BINARIES: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": lambda x, y: x / (y + DELTA),
    "pow": torch.pow,
    "keep": lambda x, y: x,
}
"""Binary functions (Sec. 3.1)."""

_FORMULA = {"identity": "{}", "neg": "-{}", "exp": "exp({})", "log": "log|{}|", "sqrt": "sqrt|{}|",
            "clip5": "clip({}, 1e-5)", "clip4": "clip({}, 1e-4)", "clip3": "clip({}, 1e-3)",
            "drop1": "drop({}, 0.1)", "drop3": "drop({}, 0.3)", "drop5": "drop({}, 0.5)", "sign": "sign({})",
            "add": "({} + {})", "sub": "({} - {})", "mul": "{} * {}", "div": "{} / ({} + delta)", "pow": "{}^{}",
            "keep": "{}"}
"""How each function prints in :meth:`UpdateRule.formula` (``keep`` prints its left argument only)."""


_LANGUAGE = UnitLanguage("update rule", OPERANDS, tuple(UNARIES), tuple(BINARIES))
"""The language's vocabularies (:mod:`lit_automl.nas.unit_programs`): the five-token unit shape it shares with the
activation language."""

_NAMES = {"g2": "g^2", "g3": "g^3", "sign_g": "sign(g)", "sign_m": "sign(m)", "wd4": "1e-4 w", "wd3": "1e-3 w",
          "wd2": "1e-2 w", "wd1": "1e-1 w", "adam": "Adam", "rmsprop": "RMSProp"}


@dataclass(frozen=True)
class UpdateRule(UnitProgram):
    """A parsed update rule: its units, the last one's output being the update (Sec. 3.1)."""

    language: ClassVar[UnitLanguage] = _LANGUAGE

    def formula(self) -> str:
        """The update as a formula, earlier units substituted (e.g. ``exp(sign(g) * sign(m)) * g``)."""
        return substitute(self.units, _NAMES, _FORMULA, wrap_unary=("neg",), wrap_binary=("pow",))

    def operands(self) -> set:
        """The operand tokens the rule reads (earlier-unit outputs excluded)."""
        return self.inputs()


def parse_rule(text: Union[str, UpdateRule]) -> UpdateRule:
    """The :class:`UpdateRule` of a token string ``"op1 op2 u1 u2 b ; op1 op2 u1 u2 b ; ..."`` (Sec. 3.1).

    Errors name the unit, the position and the bad token, and list the allowed tokens.
    """
    if isinstance(text, UpdateRule):
        return text
    return UpdateRule.from_string(text)


RULES = {
    "sgd": "g 1 identity identity mul",
    "momentum": "m 1 identity identity mul",
    "adam": "adam 1 identity identity mul",
    "rmsprop": "rmsprop 1 identity identity mul",
    "powersign": "sign_g sign_m identity identity mul ; o1 g exp identity mul",
    "addsign": "sign_g sign_m identity identity mul ; o1 1 identity identity add ; o2 g identity identity mul",
    "powersign_ld": "sign_g sign_m identity identity mul ; o1 ld identity identity mul ; o2 g exp identity mul",
    "addsign_ld": ("sign_g sign_m identity identity mul ; o1 ld identity identity mul ; o2 1 identity identity add ; "
                   "o3 g identity identity mul"),
}
"""Hand-designed optimisers written in the language (momentum takes ``lr / (1 - beta1)``, see the module docstring)."""


class UpdateRuleOptimizer(ElementwiseOptimizer):
    """Runs an update rule of the language: ``w <- w - lr * rule(g, m, v, ...)`` (Bello et al. 2017, Sec. 3.1).

    Args:
        params: parameters or parameter groups.
        rule: a token string (:func:`parse_rule`), an :class:`UpdateRule`, or a name of :data:`RULES`.
        lr: learning rate (> 0; 0.01 is ours, the paper tunes it per rule).
        beta1, beta2, beta3: decays of the running averages of g, g^2, g^3 (0.9, 0.999, 0.999, Sec. 3.1).
        eps: epsilon of the Adam and RMSProp operands (1e-8, Kingma & Ba's).
        decay_steps: ``T`` of the decay operands ``ld``, ``cd``, ``rd`` (required when the rule reads one).
    """

    def __init__(self, params: Iterable[Any], rule: Union[str, UpdateRule], lr: float = 0.01, beta1: float = 0.9,
                 beta2: float = 0.999, beta3: float = 0.999, eps: float = 1e-8,
                 decay_steps: Optional[int] = None) -> None:
        if isinstance(rule, str) and rule in RULES:
            rule = RULES[rule]
        self.rule = parse_rule(rule)
        check_real("lr", lr, low=0, low_open=True)
        for name, value in (("beta1", beta1), ("beta2", beta2), ("beta3", beta3)):
            check_real(name, value, low=0, high=1, high_open=True)
        check_real("eps", eps, low=0)
        operands = self.rule.operands()  # fixed with the rule: which running averages to keep is decided once
        self._averages = [(key, beta, power) for key, (beta, power, readers) in _AVERAGES.items() if operands & readers]
        decays = sorted(operands & set(DECAY_OPERANDS))
        if decays:
            check_int("decay_steps", decay_steps, low=1, hint=f"T of the decay operands {decays} the rule reads")
        defaults = dict(lr=float(lr), beta1=float(beta1), beta2=float(beta2), beta3=float(beta3), eps=float(eps),
                        decay_steps=decay_steps, rule=str(self.rule))
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a state saved by an optimiser running the same rule (the rule travels in every param group)."""
        for group in state_dict.get("param_groups", []):
            if group.get("rule", str(self.rule)) != str(self.rule):
                raise ValueError(f"this state was saved by the rule {group['rule']!r}; this optimiser runs "
                                 f"{str(self.rule)!r}")
        super().load_state_dict(state_dict)

    def _operand(self, name: str, p: torch.Tensor, g: torch.Tensor, state: Dict[str, Any],
                 group: Dict[str, Any]) -> torch.Tensor:
        """The value of operand ``name`` for parameter ``p`` at this step (Sec. 3.1)."""
        t = state["step"]  # updates taken before this one
        if name == "g":
            return g
        if name in ("g2", "g3"):
            return g ** int(name[1])
        if name in ("m", "v", "y"):
            return state[name]
        if name == "sign_g":
            return torch.sign(g)
        if name == "sign_m":
            return torch.sign(state["m"])
        if name in ("1", "2"):
            return torch.full_like(g, float(name))
        if name == "noise":
            return torch.randn_like(g) * 0.1
        if name.startswith("wd"):
            return p.detach() * 10.0 ** -int(name[2])
        if name == "adam":
            m_hat = state["m"] / (1 - group["beta1"] ** (t + 1))
            v_hat = state["v"] / (1 - group["beta2"] ** (t + 1))
            return m_hat / (v_hat.sqrt() + group["eps"])
        if name == "rmsprop":
            return g / (state["v"].sqrt() + group["eps"])
        return torch.full_like(g, sign_decay(DECAY_OPERANDS[name], t, group["decay_steps"]))

    def update(self, p: torch.Tensor, group: Dict[str, Any]) -> torch.Tensor:
        """The rule's output for parameter ``p`` (its running averages updated with this gradient first)."""
        g = p.grad
        state = self.state[p]
        if not state:
            state["step"] = 0
        for key, beta, power in self._averages:
            avg = state.setdefault(key, torch.zeros_like(p, memory_format=torch.preserve_format))
            avg.mul_(group[beta]).add_(g ** power, alpha=1 - group[beta])
        outputs: Dict[str, torch.Tensor] = {}
        for k, u in enumerate(self.rule.units):
            x = outputs[u.op1] if u.op1 in outputs else self._operand(u.op1, p, g, state, group)
            y = outputs[u.op2] if u.op2 in outputs else self._operand(u.op2, p, g, state, group)
            outputs[f"o{k + 1}"] = BINARIES[u.b](UNARIES[u.u1](x), UNARIES[u.u2](y))
        state["step"] += 1
        return outputs[f"o{len(self.rule.units)}"]

    direction = update  # the step is ElementwiseOptimizer's: w <- w - lr * rule(...) (Sec. 3.1)

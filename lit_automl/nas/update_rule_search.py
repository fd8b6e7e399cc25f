"""Neural optimiser search: the controller samples update rules, a small CNN trained with each scores it.

Bello, Zoph, Vasudevan & Le, "Neural Optimizer Search with Reinforcement Learning", ICML 2017, Sec. 3-4: the
controller emits units of five tokens (operand, operand, unary, unary, binary; Fig. 3), later units may read the
outputs of earlier ones, and each sampled rule trains a small ConvNet for a few epochs; the validation accuracy is
the reward (PPO in the paper, REINFORCE or PPO here through :class:`~lit_automl.nas.rl_search.RLSearch`).

* :class:`UpdateRuleSpace`: the :class:`~lit_automl.spaces.decisions.DecisionSpace` of rules of ``num_units`` units
  over chosen operand / unary / binary vocabularies (the language of :mod:`lit_automl.nas.update_rules`);
* :class:`UpdateRuleEvaluator`: trains the paper's child, a two-layer 3x3 ConvNet (32 filters, batch norm, ReLU;
  Sec. 4 as we read it) followed by global average pooling and a linear classifier, for ``budget`` epochs with the
  rule as its optimiser, through the child machinery of :mod:`lit_automl.nas.evaluator`
  (:class:`~lit_automl.nas.child.ChildClassifier`, :func:`~lit_automl.nas.evaluator.fit_child`).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import pytorch_lightning as pl
from torch import nn

from lit_automl._checks import check_int, check_real, check_sequence
from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.evaluator import DataModuleFactory, Evaluator, build_datamodule, check_trainer_kwargs, fit_child
from lit_automl.nas.update_rules import BINARIES, OPERANDS, UNARIES, UpdateRule, UpdateRuleOptimizer, parse_rule
from lit_automl.spaces.decisions import Action, Decision, DecisionSpace, check_tokens, read_json_record
from lit_automl.spaces.networks import count_parameters

__all__ = ["RuleChild", "UpdateRuleEvaluator", "UpdateRuleSpace", "rule_cnn"]


def _vocabulary(name: str, values: Optional[Sequence[str]], full: Sequence[str]) -> tuple:
    if values is None:
        return tuple(full)

    def item(n: str, v: Any) -> str:
        if v not in full:
            raise ValueError(f"{n} must be one of {list(full)}, got {v!r}")
        return v

    out = check_sequence(name, values, item, allowed=f"tokens of {list(full)}", min_len=1)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a token, got {list(values)!r}")
    return out


class UpdateRuleSpace(DecisionSpace):
    """Update rules of ``num_units`` five-token units as controller decisions (Bello et al. 2017, Sec. 3.1, Fig. 3).

    Args:
        num_units: units per rule (1: ``b(u1(op1), u2(op2))``; the paper also samples longer rules whose later units
            read the earlier outputs ``o1``, ``o2``, ...).
        operands, unaries, binaries: the vocabularies (default: all of :data:`~lit_automl.nas.update_rules.OPERANDS`,
            ``UNARIES``, ``BINARIES``); an empty one is refused.
    """

    def __init__(self, num_units: int = 1, operands: Optional[Sequence[str]] = None,
                 unaries: Optional[Sequence[str]] = None, binaries: Optional[Sequence[str]] = None) -> None:
        self.num_units = check_int("num_units", num_units, low=1)
        self.operands = _vocabulary("operands", operands, OPERANDS)
        self.unaries = _vocabulary("unaries", unaries, list(UNARIES))
        self.binaries = _vocabulary("binaries", binaries, list(BINARIES))

    def _operands(self, unit: int) -> List[str]:
        return [*self.operands, *(f"o{k + 1}" for k in range(unit))]

    def decisions(self) -> List[Decision]:
        """Per unit: operand1, operand2, unary1, unary2, binary (Fig. 3); unit ``k`` may also read ``o1 .. ok``."""
        out = []
        for k in range(self.num_units):
            n_ops = len(self._operands(k))
            out += [Decision.categorical(f"unit{k + 1}.operand1", n_ops),
                    Decision.categorical(f"unit{k + 1}.operand2", n_ops),
                    Decision.categorical(f"unit{k + 1}.unary1", len(self.unaries)),
                    Decision.categorical(f"unit{k + 1}.unary2", len(self.unaries)),
                    Decision.categorical(f"unit{k + 1}.binary", len(self.binaries))]
        return out

    def decode(self, actions: Sequence[Action]) -> UpdateRule:
        """The rule of one token sequence."""
        tokens = check_tokens(self.decisions(), actions, "an update rule",
                              "operand1 operand2 unary1 unary2 binary per unit")
        units = []
        for k in range(self.num_units):
            a = tokens[5 * k:5 * k + 5]
            ops = self._operands(k)
            units.append(" ".join((ops[a[0]], ops[a[1]], self.unaries[a[2]], self.unaries[a[3]], self.binaries[a[4]])))
        return parse_rule(" ; ".join(units))

    def encode(self, architecture: Union[str, UpdateRule]) -> List[Action]:
        """The token sequence of a rule (inverse of :meth:`decode`); a rule outside this space is refused."""
        rule = parse_rule(architecture)
        if len(rule.units) != self.num_units:
            raise ValueError(f"rule {str(rule)!r} has {len(rule.units)} units; this space's rules have {self.num_units}")
        out: List[Action] = []
        for k, u in enumerate(rule.units):
            for token, vocab in zip(u.tokens(), (self._operands(k),) * 2 + (self.unaries,) * 2 + (self.binaries,)):
                if token not in vocab:
                    raise ValueError(f"rule {str(rule)!r}: token {token!r} of unit {k + 1} is not in this space's "
                                     f"vocabulary {list(vocab)}")
                out.append(list(vocab).index(token))
        return out

    def to_json(self, architecture: Union[str, UpdateRule]) -> Dict[str, Any]:
        """``{"rule": token string, "formula": the update}``."""
        rule = parse_rule(architecture)
        return {"rule": str(rule), "formula": rule.formula()}

    def from_json(self, data: Any) -> UpdateRule:
        """The rule of a :meth:`to_json` record (or its JSON text, or a file holding it), or of a token string."""
        record = read_json_record(data)
        if record is None:
            if isinstance(data, (str, UpdateRule)):
                return parse_rule(data)
            raise ValueError(f'an update-rule record must be {{"rule": "<tokens>"}} or a token string, got {data!r}')
        if "rule" not in record:
            raise ValueError(f'an update-rule record must hold a "rule" entry, got {record!r}')
        return parse_rule(record["rule"])


def rule_cnn(in_channels: int, num_classes: int, filters: int = 32, layers: int = 2) -> nn.Sequential:
    """The child ConvNet: ``layers`` x (3x3 conv, ``filters``, batch norm, ReLU), global average pooling, linear
    (Bello et al. 2017, Sec. 4: two layers of 32 filters; the pooling head is ours)."""
    check_int("filters", filters, low=1)
    check_int("layers", layers, low=1)
    body: List[nn.Module] = []
    for i in range(layers):
        body += [nn.Conv2d(in_channels if i == 0 else filters, filters, 3, padding=1, bias=False),
                 nn.BatchNorm2d(filters), nn.ReLU()]
    return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(filters, num_classes))


class RuleChild(ChildClassifier):
    """A :class:`~lit_automl.nas.child.ChildClassifier` trained by an update rule at a constant learning rate.

    Args:
        network: the child network.
        rule: the update rule (token string or :class:`~lit_automl.nas.update_rules.UpdateRule`).
        num_classes: classes of the data.
        lr: the rule's learning rate.
        decay_steps: ``T`` of the decay operands (``None``: the Trainer's estimated total steps).
    """

    def __init__(self, network: nn.Module, rule: Union[str, UpdateRule], num_classes: int = 10, lr: float = 0.01,
                 decay_steps: Optional[int] = None) -> None:
        super().__init__(network, num_classes=num_classes, lr=lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                         schedule="constant")
        self.rule = parse_rule(rule)
        self.decay_steps = check_int("decay_steps", decay_steps, low=1, allow_none=True)

    def configure_optimizers(self) -> UpdateRuleOptimizer:
        """The rule's optimiser (Sec. 3.1) over the network's parameters."""
        steps = self.decay_steps or max(1, int(self.trainer.estimated_stepping_batches))
        return UpdateRuleOptimizer(self.parameters(), self.rule, lr=self.settings["lr"], decay_steps=steps)


class UpdateRuleEvaluator(Evaluator):
    """Scores an update rule by training :func:`rule_cnn` with it for ``budget`` epochs (Bello et al. 2017, Sec. 4).

    Args:
        space: the :class:`UpdateRuleSpace` searched.
        datamodule: a factory of the data (its validation split gives the reward), as for
            :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        lr: every rule's learning rate (0.01 is ours: the paper picks each rule's from a grid, which multiplies the
            cost of a child).
        filters, layers: the child ConvNet (32 and 2, Sec. 4).
        trainer_kwargs, run_dir, seed: as :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        num_classes, in_channels: override the datamodule's attributes.
    """

    def __init__(self, space: UpdateRuleSpace, datamodule: DataModuleFactory, lr: float = 0.01, filters: int = 32,
                 layers: int = 2, trainer_kwargs: Optional[Dict[str, Any]] = None, run_dir: Optional[str] = None,
                 num_classes: Optional[int] = None, in_channels: Optional[int] = None, seed: Optional[int] = 0) -> None:
        if not isinstance(space, UpdateRuleSpace):
            raise ValueError(f"space must be an UpdateRuleSpace, got {type(space).__name__}")
        self.space = space
        self.lr = check_real("lr", lr, low=0, low_open=True)
        rule_cnn(1, 2, filters, layers)  # validates filters / layers here rather than in the first child
        self.filters, self.layers = filters, layers
        self.datamodule = build_datamodule(datamodule)
        self.num_classes = check_int("num_classes", num_classes or getattr(self.datamodule, "num_classes", None), low=2)
        self.in_channels = check_int("in_channels", in_channels or getattr(self.datamodule, "in_channels", None), low=1)
        self.trainer_kwargs = check_trainer_kwargs(trainer_kwargs)
        self.run_dir = run_dir
        self.seed = check_int("seed", seed, allow_none=True)

    def evaluate(self, architecture: Union[str, UpdateRule], budget: int, key: Optional[str] = None) -> Dict[str, Any]:
        """Train the child with the rule for ``budget`` epochs; per-epoch validation accuracy, parameters, time."""
        check_int("budget (epochs)", budget, low=1)
        rule = parse_rule(architecture)
        if self.seed is not None:  # the same initial weights and data order for every rule
            pl.seed_everything(self.seed, workers=True, verbose=False)
        network = rule_cnn(self.in_channels, self.num_classes, self.filters, self.layers)
        module = RuleChild(network, rule, num_classes=self.num_classes, lr=self.lr)
        seconds, _ = fit_child(module, self.datamodule, budget, callbacks=[], run_dir=self.run_dir, key=key,
                               trainer_kwargs=self.trainer_kwargs)
        history = list(module.val_acc_history)
        if not history:
            raise RuntimeError(f"the child trained {budget} epoch(s) but recorded no validation accuracy: the "
                               "datamodule needs a val_dataloader")
        if not all(math.isfinite(a) for a in history):
            raise FloatingPointError(f"child validation accuracy is not finite: {history}")
        return {"val_acc_history": history, "val_acc": history[-1], "max_val_acc_last5": max(history[-5:]),
                "params": count_parameters(network, exclude_auxiliary=False), "train_seconds": seconds,
                "epochs": budget, "rule": str(rule), "formula": rule.formula()}

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

Both are the shared five-token-unit machinery of :mod:`lit_automl.nas.unit_programs` (also used by the activation
search, :mod:`lit_automl.nas.activation_search`) over the update-rule language.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from torch import nn

from lit_automl._checks import check_int, check_real, check_sequence
from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.evaluator import DataModuleFactory
from lit_automl.nas.unit_programs import UnitProgramEvaluator, UnitSpace
from lit_automl.nas.update_rules import UpdateRule, UpdateRuleOptimizer, parse_rule

__all__ = ["RuleChild", "UpdateRuleEvaluator", "UpdateRuleSpace", "rule_cnn"]


class UpdateRuleSpace(UnitSpace):
    """Update rules of ``num_units`` five-token units as controller decisions (Bello et al. 2017, Sec. 3.1, Fig. 3).

    Args:
        num_units: units per rule (1: ``b(u1(op1), u2(op2))``; the paper also samples longer rules whose later units
            read the earlier outputs ``o1``, ``o2``, ...).
        operands, unaries, binaries: the vocabularies (default: all of :data:`~lit_automl.nas.update_rules.OPERANDS`,
            ``UNARIES``, ``BINARIES``); an empty one is refused.
    """

    program = UpdateRule
    record_key = "rule"

    def __init__(self, num_units: int = 1, operands: Optional[Sequence[str]] = None,
                 unaries: Optional[Sequence[str]] = None, binaries: Optional[Sequence[str]] = None) -> None:
        super().__init__(num_units, operands, unaries, binaries, names=("operands", "unaries", "binaries"))
        self.operands = self._inputs

    def parse(self, text: Union[str, UpdateRule]) -> UpdateRule:
        """The rule of a token string (:func:`~lit_automl.nas.update_rules.parse_rule`)."""
        return parse_rule(text)


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


class UpdateRuleEvaluator(UnitProgramEvaluator):
    """Scores an update rule by training :func:`rule_cnn` with it for ``budget`` epochs (Bello et al. 2017, Sec. 4).

    Args:
        space: the :class:`UpdateRuleSpace` searched.
        datamodule: a factory of the data (its validation split gives the reward), as for
            :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        lr: the rules' learning rate (0.01, ours), or a grid of them: each rule's child is then trained once per
            learning rate (from the same initial weights) and scored by its best, as the paper tunes each rule's
            learning rate (which multiplies the cost of a child by the grid's length); the record holds the chosen
            ``"lr"`` and every grid point's ``"lr_val_acc"`` (``None`` where the child diverged).
        filters, layers: the child ConvNet (32 and 2, Sec. 4).
        trainer_kwargs, run_dir, seed: as :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        num_classes, in_channels: override the datamodule's attributes.
    """

    space_type = UpdateRuleSpace

    def __init__(self, space: UpdateRuleSpace, datamodule: DataModuleFactory, lr: Union[float, Sequence[float]] = 0.01,
                 filters: int = 32,
                 layers: int = 2, trainer_kwargs: Optional[Dict[str, Any]] = None, run_dir: Optional[str] = None,
                 num_classes: Optional[int] = None, in_channels: Optional[int] = None, seed: Optional[int] = 0) -> None:
        if not isinstance(space, UpdateRuleSpace):
            raise ValueError(f"space must be an UpdateRuleSpace, got {type(space).__name__}")
        if isinstance(lr, Sequence) and not isinstance(lr, str):
            self.lrs = list(check_sequence("lr", lr, lambda n, v: check_real(n, v, low=0, low_open=True), min_len=1,
                                           allowed="learning rates > 0"))
            if len(set(self.lrs)) != len(self.lrs):
                raise ValueError(f"lr must not repeat a learning rate, got {list(lr)!r}")
        else:
            self.lrs = [check_real("lr", lr, low=0, low_open=True)]
        self.lr = self.lrs[0]
        rule_cnn(1, 2, filters, layers)  # validates filters / layers here rather than in the first child
        self.filters, self.layers = filters, layers
        super().__init__(space, datamodule, trainer_kwargs, run_dir, num_classes, in_channels, seed)

    def child(self, program: UpdateRule, lr: Optional[float] = None) -> Tuple[nn.Module, RuleChild]:
        """:func:`rule_cnn` trained by the rule at ``lr`` (default: the first of the evaluator's learning rates)."""
        network = rule_cnn(self.in_channels, self.num_classes, self.filters, self.layers)
        return network, RuleChild(network, program, num_classes=self.num_classes, lr=self.lr if lr is None else lr)

    def evaluate(self, architecture: Union[str, UpdateRule], budget: int, key: Optional[str] = None) -> Dict[str, Any]:
        """Train the child with the rule for ``budget`` epochs at each learning rate of the grid; the best one's
        per-epoch validation accuracy, parameters, time, the rule (``"rule"``, ``"formula"``), its ``"lr"`` and
        every grid point's ``"lr_val_acc"``. Raises ``FloatingPointError`` when the child diverges at every one."""
        rule = self.space.parse(architecture)
        best: Optional[Dict[str, Any]] = None
        scores: Dict[float, Optional[float]] = {}
        errors = []
        for lr in self.lrs:
            child_key = key if len(self.lrs) == 1 or key is None else f"{key}_lr{lr:g}"
            try:
                out = self.train_child(rule, budget, child_key, lambda p, lr=lr: self.child(p, lr))
            except FloatingPointError as err:
                if len(self.lrs) == 1:
                    raise
                scores[lr] = None
                errors.append(f"lr {lr:g}: {err}")
                continue
            scores[lr] = out["val_acc"]
            if best is None or out["val_acc"] > best["val_acc"]:
                best = {**out, "lr": lr}
        if best is None:
            raise FloatingPointError(f"rule {str(rule)!r} diverged at every learning rate: {'; '.join(errors)}")
        return {**best, "lr_val_acc": {f"{lr:g}": v for lr, v in scores.items()}}

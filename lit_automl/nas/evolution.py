"""Random search and regularized (aging) evolution over any decision space, on the shared child record.

* Random search: every child's tokens drawn uniformly, decision by decision (categorical: uniform over
  the choices; anchor: each bit a fair coin) — the baseline every comparison needs (Li & Talwalkar 2019;
  the lectures' "RL vs. evolution vs. random search", Real et al. 2019, Fig. 3).
* Regularized evolution (Real, Aggarwal, Huang & Le, "Regularized Evolution for Image Classifier
  Architecture Search", AAAI 2019, Algorithm 1): a population of ``P`` random models; each cycle samples
  ``S`` population members uniformly WITH replacement, the one with the highest reward is the parent, its
  child is one mutation away; the child joins the population and the OLDEST member dies (aging). With
  ``aging=False`` the WORST member dies instead: the non-regularized variant the paper compares against
  (Sec. 3.2). Paper settings: ``P = 100``, ``S = 25`` (Sec. 4, the CIFAR-10 search); children trained
  for 25 epochs (the evaluator's ``budget``), reward the validation accuracy.

Mutation (:func:`mutate`): one decision, chosen uniformly among those that can change, takes a different
value, uniformly among the others (an anchor decision flips one of its bits). On the NASNet cell
tokens (two inputs, two ops per block) a changed input is the paper's hidden-state mutation (the choices
are the states before the block, so no loop can form) and a changed op its op mutation, each half the time
in the paper's space (``NASNetCellSpace(combine=("add",))``, whose one-choice combine decision cannot
change; NASNet's add/concat space also mutates the combination, a fifth of the time); on NAS-Bench-201 tokens it is the op swap on one edge. The paper's identity mutation (no change) is not
applied: a child equal to its parent would spend an evaluation on a known result.

Batches: ``children_per_step`` children are proposed per training step (1 is Algorithm 1 exactly; more
keep several workers busy, each child a tournament of the population as it stood at the step's start).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

from lit_automl._checks import check_bool, check_int
from lit_automl.nas.child_search import Actions, ChildSearch
from lit_automl.nas.evaluator import Evaluator
from lit_automl.spaces.decisions import ANCHOR, Action, Decision

__all__ = ["RandomSearch", "RegularizedEvolution", "mutate", "random_actions"]


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=generator))


def random_actions(decisions: Sequence[Decision], generator: torch.Generator) -> List[Action]:
    """One action sequence drawn uniformly (categorical: uniform; anchor: each earlier-anchor bit a fair coin)."""
    actions: List[Action] = []
    anchors = 0
    for d in decisions:
        if d.kind == ANCHOR:
            actions.append([_randint(2, generator) for _ in range(anchors)])
            anchors += 1
        else:
            actions.append(_randint(int(d.num_choices), generator))
    return actions


def mutate(decisions: Sequence[Decision], actions: Sequence[Action], generator: torch.Generator) -> List[Action]:
    """``actions`` with exactly one decision changed (module docstring); refused when nothing can change."""
    mutable = [i for i, (d, a) in enumerate(zip(decisions, actions))
               if (d.kind == ANCHOR and len(a) > 0) or (d.kind != ANCHOR and int(d.num_choices) > 1)]
    if not mutable:
        raise ValueError("no decision of this space can change (every one has a single choice): nothing to mutate")
    child = [list(a) if isinstance(a, list) else a for a in actions]
    i = mutable[_randint(len(mutable), generator)]
    if decisions[i].kind == ANCHOR:
        bit = _randint(len(child[i]), generator)
        child[i][bit] = 1 - child[i][bit]
    else:
        other = _randint(int(decisions[i].num_choices) - 1, generator)
        child[i] = other if other < child[i] else other + 1  # uniform over the values other than the current one
    return child


class RandomSearch(ChildSearch):
    """Random search: children drawn uniformly (:func:`random_actions`), evaluated on the child record.

    Arguments are :class:`~lit_automl.nas.child_search.ChildSearch`'s; ``children_per_step`` children are
    drawn per training step (8 by default: nothing is learnt between them)."""

    def propose(self, n: int) -> Actions:
        return [random_actions(self.decisions, self.generator) for _ in range(n)]

    def observe(self, actions: Actions, rewards: List[float]) -> Dict[str, float]:
        return {}


class RegularizedEvolution(ChildSearch):
    """Regularized (aging) evolution (Real et al., AAAI 2019, Algorithm 1; module docstring).

    Args:
        evaluator: scores children (``evaluator.space`` is the search space).
        population_size: ``P`` (100, the paper's).
        sample_size: ``S``, members sampled per tournament (25, the paper's); at most ``P``.
        aging: remove the oldest member each cycle (True, regularized) or the worst (False).
        children_per_step: children per training step (1: Algorithm 1 exactly).
        budget: the evaluator's budget per child (25 epochs, the paper's search-time training).
        reward: the child reward (``"final"``: the validation accuracy at the end of training).
        Other arguments: :class:`~lit_automl.nas.child_search.ChildSearch`'s.

    Documented attributes: ``population`` (list of ``(actions, reward)`` from oldest to youngest).
    """

    checkpoint_key = "evolution"

    def __init__(self, evaluator: Evaluator, population_size: int = 100, sample_size: int = 25, aging: bool = True,
                 children_per_step: int = 1, budget: int = 25, reward: str = "final", **kwargs: Any) -> None:
        check_int("population_size", population_size, low=1)
        check_int("sample_size", sample_size, low=1)
        if sample_size > population_size:
            raise ValueError(f"sample_size must be at most population_size={population_size} (a tournament samples "
                             f"the population), got {sample_size}")
        check_bool("aging", aging)
        super().__init__(evaluator, children_per_step=children_per_step, budget=budget, reward=reward, **kwargs)
        self.population: List[Tuple[List[Action], float]] = []

    @property
    def initializing(self) -> bool:
        """Whether the population is still being filled with random models."""
        return len(self.population) < self.hparams.population_size

    def tournament(self) -> List[Action]:
        """The parent: the highest reward among ``S`` members sampled uniformly with replacement (the first
        sampled wins ties)."""
        picks = [self.population[_randint(len(self.population), self.generator)] for _ in range(self.hparams.sample_size)]
        return max(picks, key=lambda member: member[1])[0]

    def propose(self, n: int) -> Actions:
        children: Actions = []
        random_slots = max(0, self.hparams.population_size - len(self.population))
        for k in range(n):
            if k < random_slots or not self.population:
                children.append(random_actions(self.decisions, self.generator))
            else:
                children.append(mutate(self.decisions, self.tournament(), self.generator))
        return children

    def observe(self, actions: Actions, rewards: List[float]) -> Dict[str, float]:
        """Add the children (youngest last); past ``P`` members, remove the oldest (aging) or the worst."""
        for a, r in zip(actions, rewards):
            self.population.append(([list(x) if isinstance(x, list) else x for x in a], float(r)))
            if len(self.population) > self.hparams.population_size:
                if self.hparams.aging:
                    self.population.pop(0)
                else:
                    worst = min(range(len(self.population)), key=lambda i: self.population[i][1])
                    self.population.pop(worst)
        scores = torch.tensor([r for _, r in self.population], dtype=torch.float64)
        return {"evolution/population": float(len(self.population)),
                "evolution/population_best": float(scores.max()), "evolution/population_mean": float(scores.mean())}

    def strategy_state(self) -> Dict[str, Any]:
        return {"population": [[a, r] for a, r in self.population]}

    def load_strategy_state(self, state: Dict[str, Any]) -> None:
        self.population = [(list(a), float(r)) for a, r in state["population"]]

"""A cheap, deterministic evaluator for search-loop tests: the reward is how many categorical
decisions match a target sequence (a bandit over architectures with a known best)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from lit_automl.nas.evaluator import Evaluator
from lit_automl.spaces.chain import ChainSpace
from lit_automl.spaces.decisions import CATEGORICAL


def tiny_chain_space(num_layers: int = 3) -> ChainSpace:
    return ChainSpace(num_layers=num_layers, filter_heights=(1, 3), filter_widths=(1, 3), num_filters=(4, 8))


class MatchEvaluator(Evaluator):
    """Score = fraction of categorical decisions equal to ``target`` (the same token index everywhere).

    ``fail_when`` makes architectures whose first decision equals it raise, to test failure handling.
    """

    def __init__(self, space: Any, target: int = 1, fail_when: Optional[int] = None) -> None:
        self.space = space
        self.target = target
        self.fail_when = fail_when
        self.calls = 0

    def evaluate(self, architecture: Any, budget: int) -> Dict[str, Any]:
        self.calls += 1
        actions = self.space.encode(architecture)
        cats: List[int] = [a for d, a in zip(self.space.decisions(), actions) if d.kind == CATEGORICAL]
        if self.fail_when is not None and cats[0] == self.fail_when:
            raise ValueError(f"synthetic failure: first decision is {cats[0]}")
        score = sum(int(c == self.target) for c in cats) / len(cats)
        return {"val_acc_history": [score] * budget, "val_acc": score, "params": len(cats)}

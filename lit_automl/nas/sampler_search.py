"""Bayesian optimisation over architectures: an Optuna sampler proposes every child's decisions.

The decisions of a space are categorical parameters (one per categorical decision, one 0/1 parameter per
anchor bit: :func:`~lit_automl.nas.workqueue.actions_to_params`, the same encoding the child record stores),
so any Optuna sampler searches architectures: TPE (Bergstra et al., NeurIPS 2011; Optuna's
``TPESampler``, the default) or this project's GP sampler (``lit_automl.hpo.GPSampler``: a GP over the
one-hot encoding with expected improvement, Snoek et al. 2012) — the model-based entries of the lectures'
comparison of search strategies. The sampler works on its own in-memory study of the children evaluated
so far (rebuilt from the search record after a resume); the children themselves are trials of the shared
child record like every other strategy's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from optuna.samplers import BaseSampler

from lit_automl._checks import ArgumentTypeError
from lit_automl.nas.child_search import Actions, ChildSearch
from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.workqueue import decision_distributions, actions_to_params, params_to_actions

__all__ = ["SamplerSearch"]


class SamplerSearch(ChildSearch):
    """Children proposed by an Optuna sampler (module docstring).

    Args:
        evaluator: scores children (``evaluator.space`` is the search space).
        sampler: an Optuna sampler (``optuna.samplers.TPESampler``, ``lit_automl.hpo.GPSampler``, ...);
            ``None``: ``TPESampler(seed=seed)``. In a recipe: ``class_path`` / ``init_args``.
        children_per_step: children proposed per step (1: every proposal sees every earlier result).
        Other arguments: :class:`~lit_automl.nas.child_search.ChildSearch`'s.

    The sampler is not saved in checkpoints: a resumed search rebuilds it from the recipe and replays the
    record's children into it (a sampler's internal random state restarts).
    """

    unsaved_arguments = ("evaluator", "sampler")

    def __init__(self, evaluator: Evaluator, sampler: Optional[BaseSampler] = None, children_per_step: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(evaluator, children_per_step=children_per_step, **kwargs)
        if sampler is not None and not isinstance(sampler, BaseSampler):
            raise ArgumentTypeError(f"sampler must be an Optuna sampler (e.g. optuna.samplers.TPESampler, "
                                    f"lit_automl.hpo.GPSampler), got {type(sampler).__name__}")
        if sampler is None:
            from optuna.samplers import TPESampler

            sampler = TPESampler(seed=self.hparams.seed)
        self.sampler = sampler
        self._study: Any = None  # the sampler's in-memory study, made when first needed (not pickled)
        self._asked: List[Any] = []

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state["_study"], state["_asked"] = None, []  # an in-memory study holds a lock; it is rebuilt from the record
        return state

    def sampler_study(self) -> Any:
        """The sampler's study, holding every child of the record so far as a finished trial."""
        if self._study is None:
            import optuna

            self._study = optuna.create_study(direction="maximize", sampler=self.sampler)
            distributions = decision_distributions(self.decisions, len(self.decisions))
            for record in self.history:
                actions = self.space.encode(self.space.from_json(record["architecture"]))
                self._study.add_trial(optuna.trial.create_trial(
                    params=actions_to_params(self.decisions, actions), distributions=distributions,
                    value=float(record["reward"])))
        return self._study

    def propose(self, n: int) -> Actions:
        study = self.sampler_study()
        distributions = decision_distributions(self.decisions, len(self.decisions))
        self._asked = [study.ask(distributions) for _ in range(n)]
        return [params_to_actions(self.decisions, trial.params, len(self.decisions)) for trial in self._asked]

    def observe(self, actions: Actions, rewards: List[float]) -> Dict[str, float]:
        """Tell the sampler's study the rewards (rank 0, which asked; other ranks hold no study)."""
        for trial, reward in zip(self._asked, rewards):
            self.sampler_study().tell(trial, float(reward))
        self._asked = []
        return {}

"""An Optuna sampler whose proposals come from a meta-trained query LSTM (Chen et al., ICML 2017).

The LSTM of :mod:`lit_automl.meta.blackbox_rnn` proposes the next query from the history of queries
and observations; this sampler feeds it the study's completed trials in trial order and returns its
next query, scaled from the training domain [0, 1]^d to the parameters' boxes (a log-scaled float in
log space). The hidden state is rebuilt from the completed trials at every suggestion, so a resumed
study (same storage) proposes exactly what the uninterrupted one would. It needs no GP fit: one
forward pass of the LSTM over the history, which is the method's point against BO's inference.

It is not in ``lit_automl.hpo.registry.SAMPLERS`` (those are built from a name and a seed, and this
one needs a trained network): pass it to Optuna directly,
``optuna.create_study(sampler=RNNSampler("runs/blackbox_rnn_gp_prior/search/checkpoints/last.ckpt"))``
(a ``BlackBoxRNN`` checkpoint of ``recipes/blackbox_rnn_gp_prior.yaml``, or a ``BlackBoxRNN.save_rnn`` file).

Ours, not the paper's: the first trial (Optuna learns the search space from it) is drawn uniformly
at random, matching the random x_0 of meta-training; the objective values enter the network raw and it
standardises them causally (:func:`~lit_automl.meta.blackbox_rnn.causal_standardise`, exactly as in
meta-training, so Branin's hundreds look like the GP prior's units); ``direction="maximize"`` studies feed -y.
A network with ``query="sample"`` draws its query's noise from ``keyed_generator(seed, trial.number)``, so a
resumed study with the same seed proposes what the uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from lit_automl._checks import check_instance, check_int
from lit_automl.meta.blackbox_rnn import QueryLSTM, load_query_lstm
from lit_automl.rng import keyed_generator

__all__ = ["RNNSampler"]


def _float_distribution(name: str, dist: BaseDistribution) -> FloatDistribution:
    """``dist`` when the sampler can propose it: a float without ``step`` (``_checks.check_instance``)."""
    return check_instance(f"RNNSampler proposes continuous floats only: parameter {name!r}", dist, FloatDistribution,
                          allowed="a FloatDistribution without step (suggest_float; use another sampler for integer, "
                                  "stepped or categorical parameters)", condition=lambda d: d.step is None)


class RNNSampler(BaseSampler):
    """Relative sampling by a trained :class:`~lit_automl.meta.blackbox_rnn.QueryLSTM` (Chen et al. 2017, Sec. 2).

    Args:
        model: the trained network, or a path to :meth:`BlackBoxRNN.save_rnn`'s file or a
            ``BlackBoxRNN`` Lightning checkpoint.
        seed: seed of the random first trial and of the queries' noise (None: drawn at random).

    Every parameter must be a float without ``step`` (log or linear); a study of more than the
    network's ``max_dim`` parameters, or any other distribution, raises a ``ValueError``.
    """

    def __init__(self, model: Union[QueryLSTM, str], seed: Optional[int] = None) -> None:
        if isinstance(model, str):
            model = load_query_lstm(model)
        if not isinstance(model, QueryLSTM):
            raise ValueError(f"model must be a QueryLSTM or a path to a saved one, got {type(model).__name__}")
        self.model = model.eval()
        self.seed = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else check_int("seed", seed, low=0)
        self._random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        space = {name: _float_distribution(name, dist) for name, dist in self._space.calculate(study).items()}
        if len(space) > self.model.max_dim:
            raise ValueError(f"the study has {len(space)} parameters ({sorted(space)}); this RNN serves at most "
                             f"{self.model.max_dim}: meta-train one with a larger max_dim")
        return space

    @staticmethod
    def _to_unit(value: float, dist: FloatDistribution) -> float:
        if dist.log:
            return (math.log(value) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
        return (value - dist.low) / (dist.high - dist.low) if dist.high > dist.low else 0.5

    @staticmethod
    def _from_unit(u: float, dist: FloatDistribution) -> float:
        u = min(max(u, 0.0), 1.0)
        if dist.log:
            value = math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low)))
        else:
            value = dist.low + u * (dist.high - dist.low)
        return min(max(value, dist.low), dist.high)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        if not search_space:
            return {}
        names = sorted(search_space)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if all(n in t.params for n in names) and t.value is not None and math.isfinite(t.value)]
        if not done:
            return {}  # the first trial of the space: random (see the module docstring)
        done.sort(key=lambda t: t.number)
        x = torch.tensor([[self._to_unit(t.params[n], search_space[n]) for n in names] for t in done],
                         dtype=torch.float64)
        y = np.array([t.value for t in done], dtype=np.float64)
        if study.direction == StudyDirection.MAXIMIZE:
            y = -y
        with torch.no_grad():
            u = self.model.replay(x[None], torch.as_tensor(y)[None], keyed_generator(self.seed, trial.number))
        u = u[0].double().tolist()
        return {n: self._from_unit(ui, search_space[n]) for n, ui in zip(names, u)}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        _float_distribution(param_name, param_distribution)
        return self._random.sample_independent(study, trial, param_name, param_distribution)


"""GPSampler: Gaussian-process Bayesian optimisation as an Optuna sampler.

Orchestration only: the encoding is in search_space.py, the regressor and its hyperparameters in
gp.py (priors stated there), the kernels (the arc kernel for conditional parameters among them) in
kernels.py, activity patterns and their deciders in conditional.py, the acquisitions and
pending-evaluation strategies in acquisition.py, their maximisation in optimize.py.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from torch import Tensor

from lit_automl._checks import check_choice
from lit_automl.threads import single_threaded
from lit_automl.hpo.gp.acquisition import (ACQUISITIONS, PENDING_STRATEGIES, XI_SCHEDULES, Acquisition,
                                           ExpectedImprovementPerSecond, gp_ucb_kappa)
from lit_automl.hpo.gp.conditional import PatternSpace, allowed_values, decider_rules, patterns, union_search_space
from lit_automl.hpo.gp.gp import GPParams, GPRegressor, fit_map, sample_hyperparameters
from lit_automl.hpo.gp.kernels import KERNELS, ArcKernel, Kernel
from lit_automl.hpo.gp.optimize import OPTIMIZERS, maximize_acquisition
from lit_automl.hpo.gp.search_space import DTYPE, SearchSpace

__all__ = ["CONDITIONAL_MODES", "GPSampler", "UnmodelledParameterWarning", "HYPERPARAMETER_METHODS",
           "RELATIVE_PARAMS_KEY"]

HYPERPARAMETER_METHODS = ("map", "mcmc")
CONDITIONAL_MODES = ("independent", "arc")
RELATIVE_PARAMS_KEY = "lit_automl.gp:relative_params"
DEFAULT_XI = {"pi": 0.01, "ei": 0.0, "ei_per_second": 0.0, "ucb": 0.0}  # ucb takes no margin




class UnmodelledParameterWarning(UserWarning):
    """A parameter was sampled by the independent sampler, not by the GP."""


def _choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {sorted(allowed)}")


def _positive_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def _standardise(values: Tensor) -> Tuple[Tensor, float, float]:
    """(values - mean) / std; std = 1 when all values are equal (or there is one)."""
    loc = float(values.mean())
    scale = float(values.std(unbiased=False)) if values.shape[0] > 1 else 0.0
    scale = scale if scale > 0 else 1.0
    return (values - loc) / scale, loc, scale


class GPSampler(BaseSampler):
    """Gaussian-process Bayesian optimisation (Brochu, Cora & de Freitas 2010; Snoek, Larochelle &
    Adams 2012) for single-objective studies, minimisation or maximisation.

    Model: GP with a constant mean, amplitude and noise (gp.py, priors stated there) on inputs in
    the unit cube (search_space.py: log parameters in log space, ints relaxed then rounded,
    categoricals one-hot) and standardised outputs. Failed and pruned trials are not observations;
    a completed trial with a non-finite value raises ``ValueError`` (Optuna itself turns a NaN
    objective value into a failed trial).

    Modelled parameters, ``conditional="independent"`` (default): the relative search space is
    Optuna's intersection search space, i.e. the parameters present with the same distribution in
    every completed trial. Every other parameter (conditional ones, changing ranges) is drawn by
    ``independent_sampler`` and, once the startup trials are done, each such draw emits an
    :class:`UnmodelledParameterWarning` naming it.

    ``conditional="arc"`` (Swersky et al. 2013): the relative search space is the union of the
    completed trials' parameters (conditional.py), each trial encoded with NaN in the columns of
    the parameters it lacks, and the kernel is the arc kernel on the columns that are inactive
    somewhere (kernels.py; the always-active columns keep the ordinary kernel, so a space without
    conditional parameters is modelled exactly as under "independent"). Its omega and rho are
    fitted with the other hyperparameters (MAP or slice sampling; priors in gp.py). A proposal
    needs a definite activity pattern: the acquisition is maximised once per pattern seen in the
    completed trials, over that pattern's parameters, with the parameters found to decide activity
    held to the values consistent with the pattern (conditional.py), each with
    ceil(n_candidates / G) Sobol candidates and ceil(n_starts / G) local starts for G patterns
    (ours: one suggestion costs about what one maximisation costs today); the pattern with the
    best acquisition value is returned. A parameter the objective then asks for outside that
    pattern is drawn by ``independent_sampler`` with the warning. RUNNING trials count as pending
    when they carry this sampler's suggestion (their pattern is the one chosen for them); other
    RUNNING trials are left out, since their pattern is not known until they finish. "independent"
    stays the default: it keeps today's results for existing studies, and "arc" costs one
    maximisation per pattern.

    Pending evaluations: RUNNING trials of other workers whose modelled parameters are known (this
    sampler stores its suggestion in the trial's system attribute ``RELATIVE_PARAMS_KEY``) are
    integrated out (acquisition.py).

    Args (paper defaults marked "paper", our choices "ours"):
        acquisition: ``"ei"`` (default, Snoek Sec. 3), ``"pi"``, ``"ucb"`` or ``"ei_per_second"``
            (Snoek Sec. 3.2; a second GP, MAP, on log trial duration
            ``datetime_complete - datetime_start``).
        kernel: ``"matern52"`` (paper: Snoek Sec. 3.1), ``"matern32"``, ``"matern12"`` or ``"se"``.
        ard: one lengthscale per input column (True, paper) or one shared lengthscale.
        hyperparameters: ``"map"`` (type-II MAP by L-BFGS-B with restarts, warm-started from the
            previous trial's estimate; default, ours) or ``"mcmc"`` (slice sampling, Neal 2003, and
            the integrated acquisition, Snoek Sec. 3.1, which is the paper's choice).
        xi: PI / EI margin in standardised units. None (default) takes 0.01 for PI (Lizotte 2008,
            Brochu Sec. 2.3.1) and 0 for EI and EI per second (Jones et al. 1998; Snoek et al.
            2012): on Branin after 40 trials EI's median regret over 4 seeds was 0.02 with
            xi = 0.01 and 2e-4 with xi = 0.
        xi_schedule: ``"constant"`` or ``"kushner"`` (xi_t = xi / sqrt(t), t = number of
            observations + 1; ours: the tutorial gives no formula). Give it a starting xi > 0
            (e.g. 1.0): EI's default xi is 0.
        kappa: fixed UCB kappa; None (default) uses GP-UCB's kappa_t = sqrt(nu tau_t),
            tau_t = 2 log(t^(d/2+2) pi^2 / (3 delta)), t = number of observations + 1,
            d = number of modelled parameters (Srinivas et al. 2010; Brochu Sec. 2.3.2).
        nu: GP-UCB's nu (1.0, paper).
        delta: GP-UCB's delta (0.1, ours; the theorem holds for any delta in (0, 1)).
        pending: ``"fantasies"`` (Monte Carlo, Snoek Sec. 3.3; default), ``"kriging_believer"``
            (the posterior mean as the single fantasy) or ``"ignore"``.
        n_fantasies: Monte Carlo fantasies per hyperparameter setting (16, ours).
        n_hyper_samples: slice samples for ``"mcmc"`` (10, ours).
        mcmc_burnin: sweeps discarded when a chain starts (at the MAP estimate; 10, ours). Later
            trials continue the chain from its last state after one discarded sweep.
        map_restarts: prior draws added as L-BFGS-B starts (2, ours). The first fit of a search
            space starts from the prior mean and all draws; later fits start from the previous
            trial's estimate and only the draws whose objective is already lower
            (:func:`~lit_automl.hpo.gp.gp.fit_map`).
        optimizer: ``"lbfgsb"`` (Sobol screening + multistart L-BFGS-B and discrete local search;
            default) or ``"direct"`` (optimize.py).
        n_candidates: Sobol candidates screened (2048, ours).
        n_starts: local searches (10, ours).
        n_startup_trials: completed trials sampled by ``independent_sampler`` before the GP is used
            (10, ours).
        conditional: ``"independent"`` (default) or ``"arc"`` (see above).
        independent_sampler: sampler for the startup trials and the unmodelled parameters
            (default ``RandomSampler(seed=seed)``).
        seed: seed of this sampler's random numbers (and of the default independent sampler).
    """

    def __init__(self, *, acquisition: str = "ei", kernel: str = "matern52", ard: bool = True,
                 hyperparameters: str = "map", xi: Optional[float] = None, xi_schedule: str = "constant",
                 kappa: Optional[float] = None, nu: float = 1.0, delta: float = 0.1, pending: str = "fantasies",
                 n_fantasies: int = 16, n_hyper_samples: int = 10, mcmc_burnin: int = 10, map_restarts: int = 2,
                 optimizer: str = "lbfgsb", n_candidates: int = 2048, n_starts: int = 10,
                 n_startup_trials: int = 10, independent_sampler: Optional[BaseSampler] = None,
                 seed: Optional[int] = None, conditional: str = "independent") -> None:
        _choice("acquisition", acquisition, ACQUISITIONS)
        _choice("kernel", kernel, KERNELS)
        _choice("hyperparameters", hyperparameters, HYPERPARAMETER_METHODS)
        _choice("xi_schedule", xi_schedule, XI_SCHEDULES)
        _choice("pending", pending, PENDING_STRATEGIES)
        _choice("optimizer", optimizer, OPTIMIZERS)
        self.conditional = check_choice("conditional", conditional, CONDITIONAL_MODES)
        if not isinstance(ard, bool):
            raise ValueError(f"ard={ard!r} must be True or False")
        if xi is not None and not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
            raise ValueError(f"xi={xi!r} must be None (the acquisition's default) or a finite number >= 0")
        if kappa is not None and not (isinstance(kappa, (int, float)) and math.isfinite(kappa) and kappa >= 0):
            raise ValueError(f"kappa={kappa!r} must be None (GP-UCB schedule) or a finite number >= 0")
        if not (isinstance(nu, (int, float)) and math.isfinite(nu) and nu > 0):
            raise ValueError(f"nu={nu!r} must be a finite number > 0")
        if not (isinstance(delta, (int, float)) and 0 < delta < 1):
            raise ValueError(f"delta={delta!r} must be in (0, 1)")
        if acquisition == "ucb" and (xi is not None or xi_schedule != "constant"):
            raise ValueError(f"xi={xi!r}, xi_schedule={xi_schedule!r}: a margin applies to 'pi', 'ei' and "
                             "'ei_per_second', not to acquisition='ucb' (which takes kappa, or nu and delta)")
        if acquisition != "ucb" and kappa is not None:
            raise ValueError(f"kappa={kappa!r} applies to acquisition='ucb' only, not {acquisition!r}")
        _positive_int("n_fantasies", n_fantasies, 1)
        _positive_int("n_hyper_samples", n_hyper_samples, 1)
        _positive_int("mcmc_burnin", mcmc_burnin, 0)
        _positive_int("map_restarts", map_restarts, 0)
        _positive_int("n_candidates", n_candidates, 1)
        _positive_int("n_starts", n_starts, 1)
        _positive_int("n_startup_trials", n_startup_trials, 1)
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise ValueError(f"independent_sampler={independent_sampler!r} must be an optuna BaseSampler or None")
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed={seed!r} must be an integer or None")

        self.acquisition, self.hyperparameters, self.pending = acquisition, hyperparameters, pending
        self.kernel = Kernel(kernel, ard)
        self.xi = float(xi) if xi is not None else DEFAULT_XI[acquisition]
        self.xi_schedule, self.kappa, self.nu, self.delta = xi_schedule, kappa, nu, delta
        self.n_fantasies, self.n_hyper_samples, self.mcmc_burnin = n_fantasies, n_hyper_samples, mcmc_burnin
        self.map_restarts, self.optimizer = map_restarts, optimizer
        self.n_candidates, self.n_starts, self.n_startup_trials = n_candidates, n_starts, n_startup_trials
        self._rng = np.random.default_rng(seed)
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._intersection = optuna.search_space.IntersectionSearchSpace()
        self._fit = {"map": self._fit_map, "mcmc": self._fit_mcmc}[hyperparameters]
        self._warm: Dict[Tuple[str, Tuple], Tensor] = {}  # (model, (search space, kernel)) -> theta (P,)
        self._model_based: Dict[int, bool] = {}  # trial id -> past the startup trials

    # -- Optuna's sampler interface --------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent_sampler.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if study._is_multi_objective():
            raise ValueError(f"GPSampler is single-objective, but the study has {len(study.directions)} "
                             "objectives; use optuna.samplers.TPESampler or optuna.samplers.NSGAIISampler")
        self._independent_sampler.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[Sequence[float]]) -> None:
        self._model_based.pop(trial._trial_id, None)
        self._independent_sampler.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        if self.conditional == "arc":
            return union_search_space(self._completed(study))
        return self._intersection.calculate(study)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        model_based = self._model_based.get(trial._trial_id)
        if model_based is None:
            model_based = len(self._completed(study)) >= self.n_startup_trials
        if model_based:
            why = ("it is not in the activity pattern proposed for this trial (patterns of the completed trials, "
                   "over the parameters they have with one distribution)" if self.conditional == "arc" else
                   "it is not in the relative search space (the parameters present with the same distribution in "
                   "every completed trial)")
            warnings.warn(f"GPSampler does not model parameter {param_name!r} (trial {trial.number}): {why}; "
                          f"{type(self._independent_sampler).__name__} samples it",
                          UnmodelledParameterWarning, stacklevel=2)
        return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        completed = self._completed(study)
        self._model_based[trial._trial_id] = len(completed) >= self.n_startup_trials
        if not self._model_based[trial._trial_id] or not search_space:
            return {}
        # all maths on the CPU even under torch.set_default_device("cuda") (the mode costs ~30%
        # per suggestion in dispatch, so it is entered only when needed)
        on_cpu = torch.get_default_device().type == "cpu"
        with contextlib.nullcontext() if on_cpu else torch.device("cpu"), single_threaded():
            params = self._suggest(study, trial, completed, SearchSpace(search_space))
        study._storage.set_trial_system_attr(trial._trial_id, RELATIVE_PARAMS_KEY, params)
        return params

    # -- steps -----------------------------------------------------------------------------------

    @staticmethod
    def _completed(study: Study) -> List[FrozenTrial]:
        return study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)

    def _suggest(self, study: Study, trial: FrozenTrial, completed: List[FrozenTrial],
                 space: SearchSpace) -> Dict[str, Any]:
        if space.dim == 0:
            return dict(space.fixed)
        arc = self.conditional == "arc"
        x = (torch.stack([space.encode_active(t.params) for t in completed]) if arc
             else space.encode_many([t.params for t in completed]))  # (N, D), NaN where inactive
        values = []
        for t in completed:
            if t.value is None or not math.isfinite(t.value):
                raise ValueError(f"trial {t.number} completed with value {t.value!r}; GPSampler needs finite "
                                 "values (return a finite number, or let the trial fail or be pruned)")
            values.append(t.value)
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0  # minimise sign * value
        y, _, _ = _standardise(sign * torch.tensor(values, dtype=DTYPE))  # (N,)
        xp = self._pending_inputs(study, trial, space)  # (P, D)
        kernel = self._kernel_for(space, torch.cat([x, xp]))
        key = (tuple((name, repr(dist)) for name, dist in space.distributions.items()), repr(kernel))
        gp = GPRegressor(kernel, x, y, self._fit(kernel, ("objective", key), x, y))

        if xp.shape[0] > 0:
            generator = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
            gp = PENDING_STRATEGIES[self.pending](gp, xp, self.n_fantasies, generator)

        acq = self._acquisition(gp, kernel, completed, x, key, t=len(completed) + 1, d=space.n_params)
        if isinstance(kernel, ArcKernel):
            return self._maximize_over_patterns(acq, space, completed, y)
        order = torch.argsort(y)[: self.n_starts]  # the best observed inputs join the candidates
        row, _ = maximize_acquisition(acq, space, self._rng, method=self.optimizer, n_candidates=self.n_candidates,
                                      n_starts=self.n_starts, extra_candidates=x[order])
        return space.decode(row)

    def _kernel_for(self, space: SearchSpace, x: Tensor) -> Kernel:
        """The arc kernel on the columns that are NaN (inactive) in some row of x (N, D), or the
        configured kernel where there are none."""
        inactive = torch.isnan(x).any(dim=0).tolist()
        if not any(inactive):
            return self.kernel
        onehot = {c for coord in space.categorical for c in coord.columns}
        return ArcKernel(self.kernel.name, self.kernel.ard, dim=space.dim,
                         arc_columns=[c for c in range(space.dim) if inactive[c] and c not in onehot],
                         onehot_columns=[c for c in range(space.dim) if inactive[c] and c in onehot])

    def _maximize_over_patterns(self, acq: Acquisition, space: SearchSpace, completed: List[FrozenTrial],
                                y: Tensor) -> Dict[str, Any]:
        """One maximisation per activity pattern of the completed trials, over that pattern's
        parameters with its deciders restricted (conditional.py); the best acquisition value wins."""
        params = [{n: t.params[n] for n in space.distributions if n in t.params} for t in completed]
        rules = decider_rules(params, space.distributions)
        groups = patterns(params)
        n_candidates = math.ceil(self.n_candidates / len(groups))
        n_starts = math.ceil(self.n_starts / len(groups))
        best_value, best_params = -math.inf, None
        for pattern in groups:
            sub = PatternSpace(space, pattern, allowed_values(rules, pattern))
            if sub.space.dim == 0:  # every active parameter fixed: a single point
                row = torch.zeros(0, dtype=DTYPE)
                with torch.no_grad():
                    value = float(acq(sub.to_full(row[None]))[0])
            else:
                members = [i for i in torch.argsort(y).tolist() if frozenset(params[i]) == pattern][:n_starts]
                row, value = maximize_acquisition(
                    lambda z, sub=sub: acq(sub.to_full(z)), sub.space, self._rng, method=self.optimizer,
                    n_candidates=n_candidates, n_starts=n_starts,
                    extra_candidates=sub.encode_many([params[i] for i in members]))
            if best_params is None or value > best_value:
                best_value, best_params = value, sub.decode(row)
        return best_params

    def _fit_map(self, kernel: Kernel, key: Tuple[str, Tuple], x: Tensor, y: Tensor) -> GPParams:
        params = fit_map(kernel, x, y, self._rng, init=self._warm.get(key), n_restarts=self.map_restarts)
        self._warm[key] = params.to_theta()[0]
        return params

    def _fit_mcmc(self, kernel: Kernel, key: Tuple[str, Tuple], x: Tensor, y: Tensor) -> GPParams:
        if key in self._warm:
            init, burnin = self._warm[key], 1
        else:
            init = fit_map(kernel, x, y, self._rng, n_restarts=self.map_restarts).to_theta()[0]
            burnin = self.mcmc_burnin
        params = sample_hyperparameters(kernel, x, y, self._rng, init, n_samples=self.n_hyper_samples,
                                        burnin=burnin)
        self._warm[key] = params.to_theta()[-1]
        return params

    def _pending_inputs(self, study: Study, trial: FrozenTrial, space: SearchSpace) -> Tensor:
        """Encoded inputs (P, D) of the other RUNNING trials whose modelled parameters are all known
        ("independent"), or that carry this sampler's suggestion, which fixes their pattern ("arc";
        NaN in the columns of the parameters they lack)."""
        rows = []
        for t in study._get_trials(deepcopy=False, states=(TrialState.RUNNING,), use_cache=False):
            if t._trial_id == trial._trial_id:
                continue
            params = {**t.system_attrs.get(RELATIVE_PARAMS_KEY, {}), **t.params}
            if not all(t.distributions.get(n, d) == d for n, d in space.distributions.items()):
                continue
            if self.conditional == "independent" and space.contains(params):
                rows.append(space.encode(params))
            elif self.conditional == "arc" and RELATIVE_PARAMS_KEY in t.system_attrs:
                try:
                    rows.append(space.encode_active({n: v for n, v in params.items() if n in space.distributions}))
                except ValueError:  # a value outside the distribution: not this space's point
                    continue
        return torch.stack(rows) if rows else torch.zeros(0, space.dim, dtype=DTYPE)

    def _acquisition(self, gp: GPRegressor, kernel: Kernel, completed: List[FrozenTrial], x: Tensor, key: Tuple,
                     t: int, d: int) -> Acquisition:
        xi = XI_SCHEDULES[self.xi_schedule](self.xi, t)
        if self.acquisition == "ucb":
            kappa = self.kappa if self.kappa is not None else gp_ucb_kappa(t, d, self.nu, self.delta)
            return ACQUISITIONS["ucb"](gp, kappa)
        if self.acquisition == "ei_per_second":
            durations = []
            for trial in completed:
                if trial.datetime_start is None or trial.datetime_complete is None:
                    raise ValueError(f"trial {trial.number} has no start or completion time; ei_per_second needs "
                                     "both")
                seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
                if not seconds > 0:
                    raise ValueError(f"trial {trial.number} lasted {seconds} s; ei_per_second needs durations > 0")
                durations.append(seconds)
            log_c, loc, scale = _standardise(torch.log(torch.tensor(durations, dtype=DTYPE)))
            duration_gp = GPRegressor(kernel, x, log_c, self._fit_map(kernel, ("duration", key), x, log_c))
            return ExpectedImprovementPerSecond(gp, duration_gp, loc, scale, xi)
        return ACQUISITIONS[self.acquisition](gp, xi)

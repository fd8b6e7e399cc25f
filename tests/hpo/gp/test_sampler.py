"""GPSampler end to end: Branin, maximisation, mixed spaces, pending trials, unmodelled
parameters, startup, failed / pruned / non-finite trials, EI per second, errors; conditional
spaces under the arc kernel."""

import datetime
import math
import warnings

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import lit_automl.hpo.gp.sampler as sampler_module
from lit_automl.hpo.gp import GPSampler, SearchSpace, UnmodelledParameterWarning
from lit_automl.hpo.gp.sampler import RELATIVE_PARAMS_KEY
from lit_automl.threads import single_threaded

BRANIN_MIN = 0.397887


@pytest.fixture(autouse=True)
def _quiet(request):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with single_threaded():
        yield


def branin(trial):
    x1, x2 = trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def bowl(trial):
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
    return (x - 0.3) ** 2 + (y - 0.7) ** 2


def test_branin_default_settings():
    """Default settings reach regret < 0.05 on Branin within 35 trials (10 of them random)."""
    study = optuna.create_study(sampler=GPSampler(seed=0))
    study.optimize(branin, n_trials=35)
    assert study.best_value - BRANIN_MIN < 0.05


def test_maximisation():
    study = optuna.create_study(direction="maximize", sampler=GPSampler(seed=0, n_startup_trials=5))
    study.optimize(lambda t: -bowl(t), n_trials=20)
    assert study.best_value > -1e-3
    assert study.best_params["x"] == pytest.approx(0.3, abs=0.03)


def test_mixed_float_log_int_categorical():
    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        k = trial.suggest_int("k", 1, 12)
        c = trial.suggest_categorical("c", ["a", "b", "c"])
        u = trial.suggest_float("u", 0, 1)
        return (math.log10(lr) + 3) ** 2 + (k - 6) ** 2 / 10 + (0.0 if c == "b" else 1.0) + (u - 0.2) ** 2

    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=8))
    study.optimize(objective, n_trials=30)
    best = study.best_params
    assert best["c"] == "b" and abs(best["k"] - 6) <= 1 and abs(math.log10(best["lr"]) + 3) < 0.5
    assert study.best_value < 0.4
    for t in study.trials:
        assert isinstance(t.params["k"], int) and t.params["c"] in ("a", "b", "c")


def _ask_and_suggest(study):
    trial = study.ask()
    return trial, (trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1))


@pytest.mark.parametrize("pending", ["fantasies", "kriging_believer"])
def test_pending_trials_make_consecutive_suggestions_differ(pending):
    """Suggest, leave the trial RUNNING, suggest again: with pending points integrated out the two
    differ; ignoring them gives (nearly) the same point twice."""
    distances = {}
    for mode in (pending, "ignore"):
        study = optuna.create_study(sampler=GPSampler(seed=2, n_startup_trials=10, pending=mode))
        study.optimize(bowl, n_trials=10)
        first_trial, first = _ask_and_suggest(study)
        assert study._storage.get_trial(first_trial._trial_id).state == TrialState.RUNNING
        _, second = _ask_and_suggest(study)
        distances[mode] = math.dist(first, second)
    assert distances[pending] > 0.05
    assert distances["ignore"] < 1e-2


def test_pending_params_are_shared_through_storage():
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=3))
    study.optimize(bowl, n_trials=3)
    trial, (x, y) = _ask_and_suggest(study)
    stored = study._storage.get_trial(trial._trial_id).system_attrs[RELATIVE_PARAMS_KEY]
    assert stored == {"x": x, "y": y}


def test_unmodelled_parameter_warning_names_it():
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number % 2 == 0:
            x += trial.suggest_float("cond", 0, 1)
        return x

    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmodelledParameterWarning)  # none during the startup trials
        study.optimize(objective, n_trials=4)
    assert GPSampler(seed=0).infer_relative_search_space(study, study.trials[0]).keys() == {"x"}
    with pytest.warns(UnmodelledParameterWarning, match=r"parameter 'cond' \(trial 4\).*RandomSampler"):
        study.optimize(objective, n_trials=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmodelledParameterWarning)  # "x" is modelled: no warning
        study.optimize(objective, n_trials=1)


def test_startup_trials_are_random(monkeypatch):
    calls = []
    real = sampler_module.fit_map
    monkeypatch.setattr(sampler_module, "fit_map", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=5))
    study.optimize(bowl, n_trials=5)
    assert calls == []
    study.optimize(bowl, n_trials=2)
    assert calls == [5, 6]


def test_failed_and_pruned_trials_are_not_observations(monkeypatch):
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=3))
    study.optimize(bowl, n_trials=3)
    dists = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    for state in (TrialState.FAIL, TrialState.PRUNED):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.3, "y": 0.7}, distributions=dists, state=state))
    calls = []
    real = sampler_module.fit_map
    monkeypatch.setattr(sampler_module, "fit_map", lambda *a, **k: calls.append(a[1].shape[0]) or real(*a, **k))
    study.optimize(bowl, n_trials=1)
    assert calls == [3]


def test_non_finite_value_is_refused():
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=2))
    study.optimize(bowl, n_trials=1)
    dists = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5, "y": 0.5}, value=float("inf"), distributions=dists))
    with pytest.raises(ValueError, match=r"trial 1 completed with value inf"):
        study.optimize(bowl, n_trials=1)


def test_nan_objective_is_a_failed_trial_not_an_observation():
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=2))
    study.optimize(bowl, n_trials=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(lambda t: bowl(t) * float("nan"), n_trials=1)
    assert study.trials[-1].state == TrialState.FAIL
    study.optimize(bowl, n_trials=1)
    assert study.trials[-1].state == TrialState.COMPLETE


def test_ei_per_second_prefers_cheap_inputs():
    """Same values on both sides, durations 1 s (x = 0) to 150 s (x = 1): EI per second proposes a
    cheaper point than EI."""
    start = datetime.datetime(2024, 1, 1)
    suggestions = {}
    for acquisition in ("ei", "ei_per_second"):
        study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=8, acquisition=acquisition))
        for x in np.linspace(0.05, 0.95, 8):
            study.add_trial(optuna.trial.FrozenTrial(
                number=0, trial_id=0, state=TrialState.COMPLETE, value=(x - 0.5) ** 2 - 0.05 * math.cos(20 * x),
                datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=math.exp(5 * x)),
                params={"x": float(x)}, distributions={"x": FloatDistribution(0, 1)}, user_attrs={},
                system_attrs={}, intermediate_values={}))
        trial = study.ask()
        suggestions[acquisition] = trial.suggest_float("x", 0, 1)
    assert suggestions["ei_per_second"] < suggestions["ei"] - 0.1


def test_missing_duration_is_refused():
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=2, acquisition="ei_per_second"))
    for x in (0.2, 0.8):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, value=x,
                                                  distributions={"x": FloatDistribution(0, 1)}))
    with pytest.raises(ValueError, match=r"trial 0 (has no start|lasted)"):
        study.ask().suggest_float("x", 0, 1)


@pytest.mark.parametrize("kwargs", [dict(hyperparameters="mcmc", n_hyper_samples=4), dict(optimizer="direct"),
                                    dict(acquisition="ucb"), dict(acquisition="pi", xi_schedule="kushner"),
                                    dict(kernel="se", ard=False)])
def test_variants_optimise_a_bowl(kwargs):
    study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=5, **kwargs))
    study.optimize(bowl, n_trials=15)
    assert study.best_value < 0.01


def test_same_seed_same_suggestions():
    runs = []
    for _ in range(2):
        study = optuna.create_study(sampler=GPSampler(seed=3, n_startup_trials=4))
        study.optimize(bowl, n_trials=7)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def test_runs_on_cpu_under_another_default_device():
    import torch

    torch.set_default_device("meta")  # tensors created without a device would be unusable
    try:
        study = optuna.create_study(sampler=GPSampler(seed=0, n_startup_trials=3))
        study.optimize(bowl, n_trials=5)
    finally:
        torch.set_default_device(None)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5


def test_multi_objective_is_refused_with_the_alternatives():
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=GPSampler(seed=0))
    with pytest.raises(ValueError, match=r"single-objective.*TPESampler.*NSGAIISampler"):
        study.ask()


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(acquisition="gp_hedge"), r"acquisition='gp_hedge' is not one of \['ei', 'ei_per_second', 'pi', 'ucb'\]"),
    (dict(kernel="rbf"), r"kernel='rbf' is not one of \['matern12', 'matern32', 'matern52', 'se'\]"),
    (dict(hyperparameters="hmc"), r"hyperparameters='hmc' is not one of \['map', 'mcmc'\]"),
    (dict(pending="constant_liar"), r"pending='constant_liar' is not one of"),
    (dict(optimizer="cmaes"), r"optimizer='cmaes' is not one of \['direct', 'lbfgsb'\]"),
    (dict(xi_schedule="linear"), r"xi_schedule='linear' is not one of \['constant', 'kushner'\]"),
    (dict(xi=-0.1), r"xi=-0.1"),
    (dict(kappa=float("nan")), r"kappa=nan"),
    (dict(delta=1.0), r"delta=1.0 must be in \(0, 1\)"),
    (dict(nu=0), r"nu=0"),
    (dict(n_startup_trials=0), r"n_startup_trials=0 must be an integer >= 1"),
    (dict(n_fantasies=2.5), r"n_fantasies=2.5"),
    (dict(n_candidates=0), r"n_candidates=0"),
    (dict(ard="yes"), r"ard='yes'"),
    (dict(independent_sampler="random"), r"independent_sampler='random'"),
    (dict(acquisition="ucb", xi=0.1), r"xi=0.1.*not to acquisition='ucb'"),
    (dict(acquisition="ei", kappa=2.0), r"kappa=2.0 applies to acquisition='ucb' only, not 'ei'"),
])
def test_bad_arguments_name_the_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GPSampler(**kwargs)


# -- conditional="arc" (Swersky et al. 2013) -----------------------------------------------------------

WIDTH_OPTIMA = (0.2, 0.7, 0.4)


def deeper_is_better(trial):
    """depth in {1, 2, 3}; width_k exists only for k < depth. Minimum -1.5 at depth 3, lr 0.3 and
    width_k at WIDTH_OPTIMA[k]."""
    depth = trial.suggest_int("depth", 1, 3)
    value = (trial.suggest_float("lr", 0, 1) - 0.3) ** 2 - 0.5 * depth
    for k in range(depth):
        value += (trial.suggest_float(f"width_{k}", 0, 1) - WIDTH_OPTIMA[k]) ** 2
    return value


def _arc(**kwargs):
    return GPSampler(conditional="arc", n_candidates=64, n_starts=2, map_restarts=0, **kwargs)


def test_arc_models_conditional_parameters_and_beats_random_search():
    """After the startup trials no parameter falls to the independent sampler (every proposal's
    pattern agrees with its depth), and the median best value over 3 seeds beats random search's."""
    best = {"arc": [], "random": []}
    for seed in range(3):
        study = optuna.create_study(sampler=_arc(seed=seed, n_startup_trials=6))
        study.optimize(deeper_is_better, n_trials=6)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnmodelledParameterWarning)
            study.optimize(deeper_is_better, n_trials=8)
        best["arc"].append(study.best_value)
        random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        random.optimize(deeper_is_better, n_trials=14)
        best["random"].append(random.best_value)
    assert np.median(best["arc"]) < np.median(best["random"]) - 0.1
    assert np.median(best["arc"]) < -1.3  # the optimum is -1.5, at depth 3


def test_arc_relative_space_is_the_union_and_proposals_carry_their_pattern():
    study = optuna.create_study(sampler=_arc(seed=0, n_startup_trials=6))
    study.optimize(deeper_is_better, n_trials=6)
    space = study.sampler.infer_relative_search_space(study, study.trials[0])
    assert set(space) == {"depth", "lr"} | {f"width_{k}" for k in range(max(t.params["depth"] for t in study.trials))}
    trial = study.ask()
    depth = trial.suggest_int("depth", 1, 3)
    proposal = study._storage.get_trial(trial._trial_id).system_attrs[RELATIVE_PARAMS_KEY]
    assert set(proposal) == {"depth", "lr"} | {f"width_{k}" for k in range(depth)}


def test_arc_pending_trials_enter_with_their_pattern():
    """A RUNNING trial that carries this sampler's proposal is a pending input, NaN where its
    pattern lacks a parameter; a RUNNING trial without one (pattern unknown) is left out."""
    sampler = _arc(seed=1, n_startup_trials=6)
    study = optuna.create_study(sampler=sampler)
    study.optimize(deeper_is_better, n_trials=6)
    unknown = study.ask()  # never suggests: no proposal stored
    running = study.ask()
    running.suggest_int("depth", 1, 3)
    proposal = study._storage.get_trial(running._trial_id).system_attrs[RELATIVE_PARAMS_KEY]
    space = SearchSpace(sampler.infer_relative_search_space(study, study.trials[0]))
    probe = study.ask()
    xp = sampler._pending_inputs(study, study._storage.get_trial(probe._trial_id), space)
    assert xp.shape == (1, space.dim)
    torch.testing.assert_close(xp[0], space.encode_active(proposal), equal_nan=True)
    assert unknown.number < running.number and RELATIVE_PARAMS_KEY not in study._storage.get_trial(
        unknown._trial_id).system_attrs


def test_arc_warns_for_a_parameter_outside_the_pattern():
    dists = {"x": FloatDistribution(0, 1)}
    study = optuna.create_study(sampler=_arc(seed=0, n_startup_trials=3))
    for x in (0.1, 0.5, 0.9):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, value=x, distributions=dists))
    with pytest.warns(UnmodelledParameterWarning, match=r"parameter 'extra' \(trial 3\): it is not in the "
                                                        r"activity pattern.*RandomSampler"):
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("extra", 0, 1), n_trials=1)


def test_arc_with_slice_sampled_hyperparameters():
    study = optuna.create_study(sampler=_arc(seed=0, n_startup_trials=6, hyperparameters="mcmc",
                                             n_hyper_samples=2, mcmc_burnin=1))
    study.optimize(deeper_is_better, n_trials=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnmodelledParameterWarning)
        study.optimize(deeper_is_better, n_trials=2)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 8


def test_arc_without_conditional_parameters_matches_independent():
    """Every trial has every parameter: the arc option builds today's model and proposes the same points."""
    runs = []
    for mode in ("independent", "arc"):
        study = optuna.create_study(sampler=GPSampler(seed=3, n_startup_trials=4, conditional=mode))
        study.optimize(bowl, n_trials=6)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def test_conditional_mode_is_checked():
    with pytest.raises(ValueError, match=r"conditional must be one of \['arc', 'independent'\], got 'tree'"):
        GPSampler(conditional="tree")

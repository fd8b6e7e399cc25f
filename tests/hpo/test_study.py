"""Running a study: max_failures stops a study that only fails, a resumed study continues, enqueued configurations run
first and once, a multi-objective study reports its Pareto front."""

from __future__ import annotations

import warnings

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from lit_automl.hpo.config import HPOSettings
from lit_automl.hpo.registry import make_sampler
from lit_automl.hpo.study import FailureLimit, StartupOnlyWarning, StudyFailedError, run_study, warn_if_startup_only
from tests.hpo.conftest import make_settings as shared_settings

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2,
        "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False, "logger": False,
    },
    "model": {"class_path": "lit_automl.hpo.models.DigitsCNN", "init_args": {"channels": 4, "hidden": 8}},
    "data": {"class_path": "lit_automl.datamodules.DigitsDataModule", "init_args": {"batch_size": 32}},
}
SPACE = {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
         "model.init_args.channels": {"type": "int", "low": 2, "high": 8, "step": 2}}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs in its tmp_path with one torch thread (tests/hpo/conftest.py)."""


def make_settings(tmp_path, **section) -> HPOSettings:
    return shared_settings(tmp_path, SPACE, **{"study_name": "s", "n_trials": 2, **section})


def test_max_failures_stops_a_study_that_only_fails_naming_the_last_reason(tmp_path):
    space = {**SPACE, "model.init_args.dropout": {"type": "float", "low": 1.5, "high": 2.0}}  # every trial raises
    with pytest.raises(StudyFailedError, match=r"2 trials in a row failed \(max_failures=2\); the last, trial 1, "
                                               r"failed with: ValueError: dropout must be a number in \[0.0, 1.0\), got 1\.\d+"):
        run_study(make_settings(tmp_path, search_space=space, max_failures=2, n_trials=5), BASE)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def test_failure_limit_counts_failures_in_a_row_only():
    study = optuna.create_study()
    limit = FailureLimit(2)
    fail = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "boom"})
    ok = optuna.trial.create_trial(value=1.0)
    for trial in (fail, ok, fail, ok, fail):
        limit(study, trial)
    with pytest.raises(StudyFailedError, match=r"failed with: boom"):
        limit(study, fail)
    with pytest.raises(ValueError, match=r"max_failures must be an int >= 1, got 0"):
        FailureLimit(0)


def test_a_resumed_study_continues_and_loses_nothing(tmp_path):
    enqueue = [{"model.init_args.lr": 0.01, "model.init_args.channels": 4}]
    first = run_study(make_settings(tmp_path, n_trials=2, enqueue=enqueue), BASE)["study"]
    before = [(t.number, t.state, t.value, t.params) for t in first.trials]
    assert len(before) == 2 and before[0][3] == enqueue[0]  # the enqueued configuration ran first

    again = run_study(make_settings(tmp_path, n_trials=3, enqueue=enqueue), BASE)["study"]
    after = [(t.number, t.state, t.value, t.params) for t in again.trials]
    assert after[:2] == before and len(after) == 3 and after[2][1] == TrialState.COMPLETE
    assert [t.params for t in again.trials].count(enqueue[0]) == 1  # not enqueued a second time
    assert sorted(p.name for p in (tmp_path / "run").glob("trial_*")) == ["trial_0", "trial_1", "trial_2"]

    # a study that already has its trials runs nothing more
    done = run_study(make_settings(tmp_path, n_trials=3), BASE)["study"]
    assert len(done.trials) == 3


def test_a_resumed_study_must_keep_its_directions(tmp_path):
    run_study(make_settings(tmp_path, n_trials=1), BASE)
    with pytest.raises(ValueError, match=r"study 's' exists in this storage with directions \['maximize'\], "
                                         r"but the recipe asks for \['minimize'\]"):
        run_study(make_settings(tmp_path, n_trials=2, direction="minimize"), BASE)


def test_a_multi_objective_study_reports_its_pareto_front(tmp_path):
    objectives = [{"metric": "val/acc", "direction": "maximize"}, {"metric": "num_parameters", "direction": "minimize"}]
    settings = HPOSettings.from_mapping({"study_name": "s", "objectives": objectives, "search_space": SPACE, "n_trials": 3,
                                         "sampler": "random", "seed": 1, "run_dir": str(tmp_path / "run"),
                                         "progress_bar": False})
    result = run_study(settings, BASE)
    study = result["study"]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 and study.metric_names == ["val/acc", "num_parameters"]
    for t in trials:  # num_parameters is the model's parameter count
        c = t.params["model.init_args.channels"]
        assert t.values[1] == (9 * c + c) + (9 * c * 2 * c + 2 * c) + (2 * c * 16 * 8 + 8) + (8 * 10 + 10)

    def dominated(t):
        return any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in trials)

    front = result["pareto_front"]
    assert {f["number"] for f in front} == {t.number for t in trials if not dominated(t)}
    assert all(set(f["values"]) == {"val/acc", "num_parameters"} for f in front)
    run = tmp_path / "run"
    assert yaml.safe_load((run / "pareto_front.yaml").read_text())["pareto_front"] == front
    for f in front:
        config = yaml.safe_load((run / "pareto" / f"trial_{f['number']}.yaml").read_text())
        assert config["model"]["init_args"]["channels"] == f["params"]["model.init_args.channels"]
    best = result["best_trial"]  # best.yaml: the front's best on the first objective
    assert best.number in {f["number"] for f in front}
    assert best.values[0] == max(f["values"]["val/acc"] for f in front)
    assert (run / "best.yaml").exists() and (run / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"


def test_a_gp_study_too_short_for_its_gp_warns_how_many_trials_the_gp_needs(tmp_path):
    with pytest.warns(StartupOnlyWarning, match=r"^sampler 'gp' proposes its first 10 trials without its Gaussian process "
                                                r"\(n_startup_trials=10\), so with n_trials=1 the Gaussian process is never "
                                                r"used; it needs n_trials >= 11"):
        study = run_study(make_settings(tmp_path, sampler="gp", n_trials=1), BASE)["study"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]  # a warning: the study still runs
    with warnings.catch_warnings():
        warnings.simplefilter("error", StartupOnlyWarning)
        assert not warn_if_startup_only("gp", make_sampler("gp"), 11)  # 11 trials: the 11th is the GP's
        assert not warn_if_startup_only("random", make_sampler("random"), 1)  # no model to miss
    with pytest.warns(StartupOnlyWarning, match=r"'optuna-gp' .* it needs n_trials >= 4"):
        warn_if_startup_only("optuna-gp", make_sampler("optuna-gp", n_startup_trials=3), 3)


def test_a_resumed_study_with_another_search_space_is_refused_before_any_trial_listing_the_differences(tmp_path):
    run_study(make_settings(tmp_path, n_trials=1), BASE)
    other = {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": False},  # log: true before
             "model.init_args.channels": {"type": "int", "low": 2, "high": 16, "step": 2},  # high 8 before
             "model.init_args.optimizer": ["adam", "sgd"]}  # new
    with pytest.raises(ValueError, match=r"^study 's' exists in this storage with another search space; differences "
                                         r"\(parameter: stored vs new\): "
                                         r"model.init_args.lr: float in \[0.001, 0.1\] log vs float in \[0.001, 0.1\]; "
                                         r"model.init_args.channels: int in \[2, 8\] step 2 vs int in \[2, 16\] step 2; "
                                         r"model.init_args.optimizer: \(absent\) vs categorical \['adam', 'sgd'\]\. "):
        run_study(make_settings(tmp_path, n_trials=3, search_space=other), BASE)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert len(study.trials) == 1  # refused before any trial ran
    assert study.user_attrs["search_space"]["model.init_args.lr"] == {"type": "float", "low": 0.001, "high": 0.1, "log": True}


def test_a_study_from_before_the_stored_space_is_compared_with_its_trials_distributions(tmp_path):
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    (tmp_path / "run").mkdir()
    old = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    old.add_trial(optuna.trial.create_trial(
        params={"model.init_args.lr": 0.01, "model.init_args.channels": 4}, value=0.5,
        distributions={"model.init_args.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True),
                       "model.init_args.channels": optuna.distributions.CategoricalDistribution([4, 8])}))
    assert "search_space" not in old.user_attrs
    with pytest.raises(ValueError, match=r"differences \(parameter: stored vs new\): "
                                         r"model.init_args.channels: categorical \[4, 8\] vs int in \[2, 8\] step 2\. "):
        run_study(make_settings(tmp_path, n_trials=2), BASE)
    same = {**SPACE, "model.init_args.channels": [4, 8]}
    study = run_study(make_settings(tmp_path, n_trials=2, search_space=same), BASE)["study"]
    assert len(study.trials) == 2 and study.user_attrs["search_space"]["model.init_args.channels"]["choices"] == [4, 8]

"""Bayesian optimisation over architectures: Optuna samplers (TPE, this project's GP) propose children."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from lit_automl.hpo import GPSampler
from lit_automl.nas.evolution import RandomSearch
from lit_automl.nas.sampler_search import SamplerSearch
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer


def _search(tmp_path: Path, cls=SamplerSearch, **kwargs):
    defaults = dict(budget=1, steps_per_epoch=30, storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s")
    return cls(MatchEvaluator(tiny_chain_space()), **{**defaults, **kwargs})


def _fit(search, tmp_path: Path, **kwargs):
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=None, **kwargs).fit(search)
    return search


def test_the_sampler_sees_every_child_and_its_reward(tmp_path):
    search = _fit(_search(tmp_path, steps_per_epoch=12), tmp_path)
    study = search.sampler_study()
    assert len(study.trials) == search.children_sampled == 12
    record = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'children.db'}")
    rewards = sorted(t.value for t in record.trials if t.state.name == "COMPLETE")
    assert sorted(t.value for t in study.trials) == rewards
    for trial, h in zip(study.trials, search.history):  # the sampler's parameters are the child's decisions
        actions = search.space.encode(search.space.from_json(h["architecture"]))
        assert trial.params == {k: v for k, v in record.trials[h["trial"]].params.items()}
        assert trial.value == h["reward"] and actions


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_model_based_samplers_beat_random_search_on_the_synthetic_task(tmp_path, sampler):
    def make(seed):
        if sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
        return GPSampler(seed=seed, n_startup_trials=8, n_candidates=256, n_starts=2)

    model, random = [], []
    for seed in range(3):
        model.append(_fit(_search(tmp_path / f"m{seed}", sampler=make(seed), seed=seed), tmp_path / f"m{seed}").best["reward"])
        random.append(_fit(_search(tmp_path / f"r{seed}", cls=RandomSearch, seed=seed, children_per_step=1),
                           tmp_path / f"r{seed}").best["reward"])
    assert sum(model) > sum(random), (model, random)


def test_a_resumed_search_replays_the_record_into_its_sampler(tmp_path):
    runs = run_resumed(lambda: _search(tmp_path, seed=3, steps_per_epoch=5), lambda: None, tmp_path / "runs",
                       {"max_epochs": 1}, max_epochs=2)
    resumed = runs.resumed
    assert resumed.children_sampled == 10 and len(resumed.history) == 10
    assert len(resumed.sampler_study().trials) == 10
    first = [h["architecture"] for h in runs.full.history[:5]]
    assert first == [h["architecture"] for h in resumed.history[:5]], "the record before the interruption is kept"


def test_a_sampler_of_the_wrong_type_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"sampler must be an Optuna sampler .*got str"):
        _search(tmp_path, sampler="tpe")

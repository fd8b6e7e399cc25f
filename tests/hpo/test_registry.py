"""Samplers and pruners by name: every name builds, unknown names list the valid ones, 'gp' is imported lazily."""

from __future__ import annotations

import math

import optuna
import pytest

from lit_automl.hpo.registry import PRUNERS, SAMPLERS, make_pruner, make_sampler, pruner_spec
from lit_automl.hpo.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name, cls", [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
                                       ("nsga2", optuna.samplers.NSGAIISampler)])
def test_optunas_samplers_by_name(name, cls):
    assert isinstance(make_sampler(name, seed=3), cls)


def test_the_gp_sampler_is_imported_only_when_asked_for():
    try:
        from lit_automl.hpo.gp.sampler import GPSampler
    except ImportError as err:
        with pytest.raises(ImportError, match=r"sampler 'gp' is lit_automl.hpo.gp.sampler.GPSampler.*choose another"):
            make_sampler("gp")
        pytest.skip(f"lit_automl.hpo.gp.sampler.GPSampler is not importable yet: {err}")
    sampler = make_sampler("gp", seed=0)
    assert isinstance(sampler, GPSampler) and isinstance(sampler, optuna.samplers.BaseSampler)
    # it drives a study over a YAML space with log, int, categorical and conditional parameters
    space = SearchSpace.from_dict({
        "model.init_args.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "model.init_args.channels": {"type": "int", "low": 4, "high": 32, "step": 4},
        "model.init_args.optimizer": ["adam", "sgd"],
        "model.init_args.momentum": {"type": "float", "low": 0.5, "high": 0.9, "condition": {"model.init_args.optimizer": "sgd"}},
    })
    study = optuna.create_study(sampler=sampler)
    for _ in range(12):
        trial = study.ask()
        params = space.sample(trial)
        study.tell(trial, math.log10(params["model.init_args.lr"]) ** 2 + params["model.init_args.channels"] / 32)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 12


@pytest.mark.parametrize("name, cls", [("median", optuna.pruners.MedianPruner),
                                       ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("nop", optuna.pruners.NopPruner)])
def test_optunas_pruners_by_name(name, cls):
    assert isinstance(make_pruner(name), cls)


def test_pruner_options_reach_the_pruner_and_unknown_ones_are_named():
    name, kwargs = pruner_spec({"name": "median", "n_startup_trials": 7})
    pruner = make_pruner(name, **kwargs)
    assert pruner._n_startup_trials == 7
    with pytest.raises(ValueError, match=r"pruner 'median' has no option\(s\) \['patience'\]; its options: \['n_startup_trials'"):
        make_pruner("median", patience=3)
    with pytest.raises(ValueError, match=r"pruner must be a name or a mapping with 'name'"):
        pruner_spec({"n_startup_trials": 3})


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown sampler 'cmaes'; valid samplers: \['gp', 'nsga2', 'optuna-gp', 'random', 'tpe'\]"):
        make_sampler("cmaes")
    with pytest.raises(ValueError, match=r"unknown pruner 'patient'; valid pruners: \['hyperband', 'median', 'nop'"):
        make_pruner("patient")
    assert {"tpe", "random", "gp"} <= set(SAMPLERS) and {"median", "successive_halving", "hyperband", "nop"} <= set(PRUNERS)

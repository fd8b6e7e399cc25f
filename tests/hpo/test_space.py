"""The YAML search space: parsing each type, sampling (ranges, log scale, steps), conditional presence, bad entries."""

from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lit_automl.hpo.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = yaml.safe_load(
    """
model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
model.init_args.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
model.init_args.channels: {type: int, low: 4, high: 32, step: 4}
model.init_args.hidden: {type: int, low: 8, high: 256, log: true}
model.init_args.optimizer: {type: categorical, choices: [adam, sgd]}
model.init_args.momentum: {type: float, low: 0.5, high: 0.99, condition: {model.init_args.optimizer: sgd}}
model.init_args.nesterov: {type: categorical, choices: [true, false], condition: {model.init_args.momentum: [0.9]}}
data.init_args.batch_size: [32, 64]
"""
)


def sample_many(space: SearchSpace, n: int = 300):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out, study


def test_each_entry_becomes_the_optuna_distribution_it_declares():
    space = SearchSpace.from_dict(SPACE)
    assert space["model.init_args.lr"].distribution == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["model.init_args.dropout"].distribution == FloatDistribution(0.0, 0.5, step=0.1)
    assert space["model.init_args.channels"].distribution == IntDistribution(4, 32, step=4)
    assert space["model.init_args.hidden"].distribution == IntDistribution(8, 256, log=True)
    assert space["model.init_args.optimizer"].distribution == CategoricalDistribution(["adam", "sgd"])
    assert space["data.init_args.batch_size"].distribution == CategoricalDistribution([32, 64])  # list shorthand
    # a conditional parameter comes after the one it depends on
    keys = space.keys
    assert keys.index("model.init_args.momentum") > keys.index("model.init_args.optimizer")


def test_samples_respect_types_ranges_steps_and_the_log_scale():
    samples, _ = sample_many(SearchSpace.from_dict(SPACE))
    lrs = [s["model.init_args.lr"] for s in samples]
    assert all(1e-4 <= v <= 1e-1 and isinstance(v, float) for v in lrs)
    # log-uniform: about a third of the draws in each decade [1e-4, 1e-3), [1e-3, 1e-2), [1e-2, 1e-1]
    below = sum(v < 1e-3 for v in lrs) / len(lrs)
    assert 0.2 < below < 0.45
    channels = [s["model.init_args.channels"] for s in samples]
    assert all(isinstance(v, int) and v % 4 == 0 and 4 <= v <= 32 for v in channels)
    assert set(channels) == set(range(4, 33, 4))
    dropouts = {round(s["model.init_args.dropout"], 6) for s in samples}
    assert dropouts <= {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
    hidden = [s["model.init_args.hidden"] for s in samples]
    assert all(isinstance(v, int) and 8 <= v <= 256 for v in hidden)
    assert sum(v < 45 for v in hidden) / len(hidden) > 0.35  # log scale: half the draws below sqrt(8 * 256) ~ 45


def test_a_conditional_parameter_is_present_exactly_when_its_condition_holds():
    samples, study = sample_many(SearchSpace.from_dict(SPACE))
    for s, trial in zip(samples, study.trials):
        assert ("model.init_args.momentum" in s) == (s["model.init_args.optimizer"] == "sgd")
        assert set(trial.params) == set(s)  # Optuna records exactly what was suggested
        assert "model.init_args.nesterov" not in s  # its condition (momentum == 0.9) never holds exactly
    assert any("model.init_args.momentum" in s for s in samples)
    assert any("model.init_args.momentum" not in s for s in samples)


def test_enqueued_values_are_checked_against_the_space():
    space = SearchSpace.from_dict(SPACE)
    assert space.check_values({"model.init_args.lr": 0.01}, "enqueue[0]") == {"model.init_args.lr": 0.01}
    with pytest.raises(ValueError, match=r"enqueue\[0\]: unknown parameter\(s\) \['model.init_args.lrr'\]"):
        space.check_values({"model.init_args.lrr": 0.01}, "enqueue[0]")
    with pytest.raises(ValueError, match=r"model.init_args.lr=5.0 is outside \[0.0001, 0.1\]"):
        space.check_values({"model.init_args.lr": 5.0}, "enqueue[0]")
    with pytest.raises(ValueError, match=r"'rmsprop' is not one of its choices \['adam', 'sgd'\]"):
        space.check_values({"model.init_args.optimizer": "rmsprop"}, "enqueue[0]")
    with pytest.raises(ValueError, match=r"momentum is only active when"):
        space.check_values({"model.init_args.optimizer": "adam", "model.init_args.momentum": 0.9}, "enqueue[0]")


def test_a_space_can_live_in_its_own_yaml_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"search_space": {"model.init_args.lr": {"type": "float", "low": 0.1, "high": 0.2}}}))
    assert SearchSpace.from_yaml(path).keys == ["model.init_args.lr"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "floatt", "low": 0, "high": 1}, r"\['x.lr'\]: type must be one of \['float', 'int', 'categorical'\], got 'floatt'"),
        ({"low": 0, "high": 1}, r"type must be one of .* got None"),
        ({"type": "float", "low": 1.0, "high": 0.1}, r"\['x.lr'\]: low must be < high, got low=1.0, high=0.1"),
        ({"type": "float", "low": 0.5, "high": 0.5}, r"low must be < high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, r"log: true needs low > 0, got low=0.0"),
        ({"type": "float", "low": "a", "high": 1.0}, r"low must be a finite number, got 'a'"),
        ({"type": "int", "low": 1.5, "high": 4}, r"low must be an int for type int, got 1.5"),
        ({"type": "float", "low": 1e-3, "high": 1.0, "log": True, "step": 0.1}, r"step and log: true cannot be combined"),
        ({"type": "int", "low": 1, "high": 9, "step": 0}, r"step must be a positive int, got 0"),
        ({"type": "categorical", "choices": []}, r"choices must be a non-empty list, got \[\]"),
        ({"type": "categorical"}, r"choices must be a non-empty list, got None"),
        ({"type": "categorical", "choices": [[1, 2], 3]}, r"choices must be null, bool, int, float or str"),
        ({"type": "float", "lo": 0.0, "high": 1.0}, r"unknown field\(s\) \['lo'\] for type float; allowed: \['type', 'low'"),
        ({"type": "float", "low": 0, "high": 1, "condition": {"x.opt": "sgd"}}, r"condition refers to unknown parameter 'x.opt'; known parameters: \['x.lr'\]"),
        ({"type": "float", "low": 0, "high": 1, "condition": "sgd"}, r"condition must be a non-empty mapping"),
        ("0.1", r"expected a mapping with 'type'"),
    ],
)
def test_malformed_entries_name_the_key_and_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace.from_dict({"x.lr": spec})


def test_a_condition_value_must_be_one_of_the_referenced_choices():
    with pytest.raises(ValueError, match=r"x.opt='sdg' is not one of its choices \['adam', 'sgd'\]"):
        SearchSpace.from_dict({"x.opt": ["adam", "sgd"], "x.m": {"type": "float", "low": 0, "high": 1, "condition": {"x.opt": "sdg"}}})


def test_cycles_and_empty_spaces_and_bad_keys_are_refused():
    cyc = {
        "a.x": {"type": "categorical", "choices": [1, 2], "condition": {"a.y": 1}},
        "a.y": {"type": "categorical", "choices": [1, 2], "condition": {"a.x": 1}},
    }
    with pytest.raises(ValueError, match=r"cycle among \['a.x', 'a.y'\]"):
        SearchSpace.from_dict(cyc)
    with pytest.raises(ValueError, match=r"search_space is empty"):
        SearchSpace.from_dict({})
    with pytest.raises(ValueError, match=r"dotted LightningCLI config paths.*'model..lr'"):
        SearchSpace.from_dict({"model..lr": [1, 2]})
    with pytest.raises(ValueError, match=r"must be a mapping of dotted config keys"):
        SearchSpace.from_dict(["model.lr"])


def test_sampling_with_a_fixed_trial_returns_the_fixed_values():
    space = SearchSpace.from_dict(SPACE)
    fixed = {"model.init_args.lr": 0.01, "model.init_args.dropout": 0.2, "model.init_args.channels": 8,
             "model.init_args.hidden": 16, "model.init_args.optimizer": "adam", "data.init_args.batch_size": 32}
    assert space.sample(optuna.trial.FixedTrial(fixed)) == fixed

"""The recipe's hpo section: defaults, command-line overrides, every bad value named; trial configs from dotted keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_automl.hpo.config import HPOSettings, load_recipe, merge_params, set_dotted

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "hpo_digits.yaml"
SPACE = {"model.init_args.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
         "model.init_args.optimizer": ["adam", "sgd"]}


def settings(**section):
    return HPOSettings.from_mapping({"metric": "val/acc", "direction": "maximize", "search_space": SPACE, **section})


def test_the_shipped_recipe_reads_with_its_defaults():
    base, section = load_recipe(RECIPE)
    assert "hpo" not in base and base["model"]["class_path"] == "lit_automl.hpo.models.DigitsCNN"
    s = HPOSettings.from_mapping(section, recipe=RECIPE)
    assert s.study_name == "hpo_digits" and s.metric_names == ["val/acc"] and s.directions == ["maximize"]
    assert s.sampler == "tpe" and s.pruner_name == "median" and s.pruner_kwargs["n_warmup_steps"] == 2
    assert s.resolved_run_dir() == Path("runs/hpo_digits")
    assert s.enqueue and all(set(e) <= set(s.space.keys) for e in s.enqueue)
    assert s.space["model.init_args.momentum"].condition == {"model.init_args.optimizer": ("sgd",)}


def test_command_line_values_override_the_section_and_none_means_not_given():
    s = HPOSettings.from_mapping({"metric": "val/loss", "search_space": SPACE, "n_trials": 9, "sampler": "tpe"},
                                 {"n_trials": 3, "sampler": "random", "storage": None})
    assert (s.n_trials, s.sampler, s.storage, s.directions) == (3, "random", None, ["minimize"])
    section = {"metric": "val/loss", "search_space": SPACE, "pruner": {"name": "median", "n_warmup_steps": 4}}
    assert HPOSettings.from_mapping(section, {"pruner": "median"}).pruner_kwargs == {"n_warmup_steps": 4}
    assert HPOSettings.from_mapping(section, {"pruner": "hyperband"}).pruner_kwargs == {}


def test_a_sampler_takes_options_as_a_mapping_and_the_study_builds_it_with_them():
    from lit_automl.hpo.registry import make_sampler

    s = HPOSettings.from_mapping({"metric": "val/loss", "search_space": SPACE, "seed": 3,
                                  "sampler": {"name": "gp", "conditional": "arc", "n_startup_trials": 4}})
    assert (s.sampler_name, s.sampler_kwargs) == ("gp", {"conditional": "arc", "n_startup_trials": 4})
    sampler = make_sampler(s.sampler_name, seed=s.seed, **s.sampler_kwargs)
    assert (sampler.conditional, sampler.n_startup_trials) == ("arc", 4)
    section = {"metric": "val/loss", "search_space": SPACE, "sampler": {"name": "gp", "conditional": "arc"}}
    assert HPOSettings.from_mapping(section, {"sampler": "gp"}).sampler_kwargs == {"conditional": "arc"}
    assert HPOSettings.from_mapping(section, {"sampler": "tpe"}).sampler == "tpe"


@pytest.mark.parametrize("spec, error, message", [
    ({"name": "gp", "conditional": "maybe"}, ValueError, r"hpo.sampler: .*conditional"),
    ({"name": "gp", "n_startup": 3}, TypeError, r"hpo.sampler: sampler 'gp' rejected its options \{'n_startup': 3\}"),
    ({"name": "cmaes"}, ValueError, r"hpo.sampler.name: unknown sampler 'cmaes'"),
    ({"conditional": "arc"}, TypeError, r"hpo.sampler must be a sampler name or a mapping with 'name'"),
    ({"name": "gp", "seed": 1}, ValueError, r"give the seed as hpo.seed"),
])
def test_bad_sampler_options_are_named(spec, error, message):
    with pytest.raises(error, match=message):
        HPOSettings.from_mapping({"metric": "val/loss", "search_space": SPACE, "sampler": spec})


def test_multi_objective_section():
    s = HPOSettings.from_mapping(
        {"objectives": [{"metric": "val/acc", "direction": "maximize"}, {"metric": "num_parameters", "direction": "minimize"}],
         "search_space": SPACE})
    assert s.multi_objective and s.directions == ["maximize", "minimize"] and s.pruner_name == "nop"


@pytest.mark.parametrize(
    "section, message",
    [
        ({"n_trials": 0}, r"n_trials must be an int >= 1, got 0"),
        ({"n_trials": 2.5}, r"n_trials must be an int >= 1, got 2.5"),
        ({"max_failures": 0}, r"max_failures must be an int >= 1, got 0"),
        ({"sampler": "cmaes"}, r"unknown sampler 'cmaes'; valid samplers: \['gp', 'nsga2', 'optuna-gp', 'random', 'tpe'\]"),
        ({"pruner": "patient"}, r"unknown pruner 'patient'; valid pruners: \['hyperband', 'median', 'nop'"),
        ({"direction": "up"}, r"direction for 'val/acc' must be one of \['maximize', 'minimize'\], got 'up'"),
        ({"metric": None}, r"metric must be a metric name"),
        ({"n_trails": 3}, r"unknown key\(s\) \['n_trails'\]; allowed: \["),
        ({"timeout": -1}, r"timeout must be a number of seconds > 0, got -1"),
        ({"checkpoint": "yes"}, r"checkpoint must be true or false, got 'yes'"),
        ({"enqueue": [{"model.init_args.lr": 3.0}]}, r"enqueue\[0\]: model.init_args.lr=3.0 is outside"),
        ({"search_space": {"modle.init_args.lr": ["a"]}}, r"'modle.init_args.lr'.*must be a LightningCLI config path starting with one of \['seed_everything', 'trainer', 'model'"),
        ({"search_space": None}, r"search_space is missing"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(section, message):
    with pytest.raises(ValueError, match=message):
        settings(**section)


def test_objectives_and_metric_are_exclusive_and_multi_objective_cannot_prune():
    two = [{"metric": "val/acc", "direction": "maximize"}, {"metric": "num_parameters", "direction": "minimize"}]
    with pytest.raises(ValueError, match=r"either metric/direction or objectives"):
        settings(objectives=two)
    with pytest.raises(ValueError, match=r"pruner 'median' cannot prune a multi-objective study.*pruner: nop"):
        HPOSettings.from_mapping({"objectives": two, "search_space": SPACE, "pruner": "median"})
    with pytest.raises(ValueError, match=r"names a metric twice"):
        HPOSettings.from_mapping({"objectives": [two[0], two[0]], "search_space": SPACE})
    with pytest.raises(ValueError, match=r"metric is missing"):
        HPOSettings.from_mapping({"search_space": SPACE})


def test_a_search_space_file_next_to_the_recipe(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"model.init_args.lr": {"type": "float", "low": 0.1, "high": 0.2}}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"class_path": "x"}, "hpo": {"metric": "val/acc", "search_space": "space.yaml"}}))
    base, section = load_recipe(recipe)
    assert HPOSettings.from_mapping(section, recipe=recipe).space.keys == ["model.init_args.lr"]
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"model": {"class_path": "x"}}))
    with pytest.raises(ValueError, match=r"no hpo section"):
        load_recipe(plain)


def test_parameters_are_merged_at_their_dotted_keys_without_touching_the_base():
    base = {"model": {"class_path": "M", "init_args": {"lr": 0.1, "nested": {"init_args": {}}}}, "trainer": {"max_epochs": 3}}
    merged = merge_params(base, {"model.init_args.lr": 0.01, "model.init_args.nested.init_args.width": 8,
                                 "data.init_args.batch_size": 32})
    assert merged["model"]["init_args"]["lr"] == 0.01 and base["model"]["init_args"]["lr"] == 0.1
    assert merged["model"]["init_args"]["nested"]["init_args"] == {"width": 8}
    assert merged["data"] == {"init_args": {"batch_size": 32}}
    with pytest.raises(ValueError, match=r"cannot set 'trainer.max_epochs.x': 'trainer.max_epochs' is 3"):
        set_dotted(merged, "trainer.max_epochs.x", 1)


def test_a_bad_value_is_named_where_it_came_from_the_flag_or_the_recipe():
    recipe = Path("recipes/r.yaml")
    with pytest.raises(ValueError, match=r"^--max-retry must be an int >= 0, got -1$"):
        HPOSettings.from_mapping({"metric": "val/acc", "search_space": SPACE, "max_retry": 2}, {"max_retry": -1}, recipe=recipe)
    with pytest.raises(ValueError, match=r"^recipes/r.yaml: hpo.max_retry must be an int >= 0, got -1$"):
        HPOSettings.from_mapping({"metric": "val/acc", "search_space": SPACE, "max_retry": -1}, {}, recipe=recipe)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"grace_period": 30, "heartbeat_interval": 30}, r"hpo.grace_period must be greater than the heartbeat interval \(30 s, hpo.heartbeat_interval\)"),
        ({"heartbeat_interval": 0, "max_retry": 2}, r"hpo.max_retry given with hpo.heartbeat_interval 0 \(heartbeats off\)"),
        ({"storage": "journal:j.log", "grace_period": 9}, r"hpo.grace_period: journal storage 'journal:j.log' has no heartbeats"),
    ],
)
def test_heartbeat_settings_that_would_do_nothing_or_fail_live_trials_are_refused(section, message):
    with pytest.raises(ValueError, match=message):
        settings(**section)
    assert settings(storage="journal:j.log").heartbeat_interval == 60  # the default alone is not refused

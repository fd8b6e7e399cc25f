"""Bad input to HPO, as a user would give it: each is refused naming the bad value and what is allowed. Through
`lit-automl hpo` it ends in one `error:` line on stderr, no traceback, exit status 2 (1 for a run that failed);
through the API it raises the exception the project's convention names. Cases covered elsewhere are not repeated
(test_config: the hpo section's keys; test_space: each malformed search-space entry; test_cli: --n-trials 0 and
friends; test_storage: a missing PostgreSQL driver)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import optuna
import pytest
import torch
import yaml

from lit_automl._checks import ArgumentTypeError, UnknownNameError
from lit_automl.cli import main
from lit_automl.hpo.config import HPOSettings, load_recipe
from lit_automl.hpo.finite import FiniteGuard, NonFiniteInputError
from lit_automl.hpo.space import SearchSpace
from lit_automl.storage import check_storage_url, make_storage
from tests.hpo.conftest import tiny_recipe

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROOT = Path(__file__).resolve().parents[2]
LR = {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
HPO = {"study_name": "bad", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": "random",
       "pruner": "nop", "progress_bar": False, "report": False, "search_space": LR}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs in its tmp_path with one torch thread (tests/hpo/conftest.py)."""


def write_recipe(hpo: Any = None, name: str = "recipe.yaml", **recipe: Any) -> Path:
    """A tiny digits recipe in the current folder (the test's tmp_path) with ``hpo`` as its hpo section."""
    data = {**tiny_recipe(1), **recipe}
    if hpo is not None:
        data["hpo"] = hpo
    path = Path(name)
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(args: List[str], capsys) -> Tuple[int, str, str]:
    """``lit-automl hpo ARGS`` in this process: (exit status, its one error line, all of stderr)."""
    with pytest.raises(SystemExit) as exit:
        main(["hpo", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return exit.value.code, errors[0], err


# ------------------------------------------------------------------ the command line
@pytest.mark.parametrize(
    "hpo, flags, message",
    [
        # flags: the flag, the value, what is allowed
        ({}, ["--timeout", "0"], r"--timeout must be a number of seconds > 0, got 0\.0$"),
        ({}, ["--timeout", "nan"], r"--timeout must be a number of seconds > 0, got nan$"),
        ({}, ["--heartbeat-interval", "-5"], r"--heartbeat-interval must be an int >= 0 \(seconds; 0 turns heartbeats off\), got -5$"),
        ({}, ["--grace-period", "0"], r"--grace-period must be an int >= 1, got 0$"),
        ({}, ["--grace-period", "30"], r"--grace-period must be greater than the heartbeat interval \(60 s, the default\), .*; got 30$"),
        ({}, ["--max-retry", "-1"], r"--max-retry must be an int >= 0, got -1$"),
        ({}, ["--seed", "-1"], r"--seed must be an int in \[0, 4294967295\], got -1$"),
        ({}, ["--seed", "4294967296"], r"--seed must be an int in \[0, 4294967295\], got 4294967296$"),
        ({}, ["--sampler", "GP"], r"--sampler: unknown sampler 'GP'; valid samplers: \['gp', 'nsga2', 'optuna-gp', 'random', 'tpe'\]$"),
        ({}, ["--pruner", "hyperbnd"], r"--pruner: unknown pruner 'hyperbnd'; valid pruners: \['hyperband', "),
        ({}, ["--study-name", ""], r"--study-name must be a non-empty string, got ''$"),
        ({}, ["--storage", "postgress://user:pw@host/db"],
         r"--storage 'postgress://user:\*\*\*@host/db': unknown database 'postgress' in the URL scheme; SQLAlchemy knows .*postgresql://"),
        ({}, ["--storage", "journal:"], r"--storage 'journal:' names no file; use journal:PATH$"),
        ({}, ["--storage", "journal:study.log", "--max-retry", "3"], r"--max-retry: journal storage 'journal:study.log' has no heartbeats"),
        # the recipe's hpo section: the key, the value, what is allowed
        ({"n_trials": "ten"}, [], r"recipe.yaml: hpo.n_trials must be an int >= 1, got 'ten'$"),
        ({"n_trials": 2.5}, [], r"recipe.yaml: hpo.n_trials must be an int >= 1, got 2\.5$"),
        ({"sampler": ["tpe"]}, [], r"recipe.yaml: hpo.sampler must be a sampler name, one of \[.*\], got \['tpe'\]$"),
        ({"pruner": {"name": "median", "n_warmup_steps": -1}}, [],
         r"recipe.yaml: hpo.pruner: pruner 'median' rejected its options \{'n_warmup_steps': -1\}: .*n_warmup_steps=-1"),
        ({"pruner": {"nme": "median"}}, [], r"hpo.pruner must be a pruner name or a mapping with 'name' .*got \{'nme': 'median'\}$"),
        ({"direction": "max"}, [], r"direction for 'val/acc' must be one of \['maximize', 'minimize'\], got 'max'$"),
        ({"search_space": {}}, [], r"search_space is empty; declare at least one parameter"),
        ({"search_space": {"model.init_args.lr": {"type": "float", "low": 0.1, "high": 0.001}}}, [],
         r"\['model.init_args.lr'\]: low must be < high, got low=0.1, high=0.001$"),
        ({"search_space": {"model.init_args.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}}, [],
         r"\['model.init_args.lr'\]: log: true needs low > 0, got low=0.0$"),
        ({"search_space": "space.yaml"}, [], r"recipe.yaml: hpo.search_space names the file 'space.yaml', which does not exist$"),
        ({"enqueue": {"model.init_args.lr": 0.01}}, [], r"hpo.enqueue must be a list of parameter mappings, got \{'model.init_args.lr': 0.01\}$"),
        ({"enqueue": [{"model.init_args.lr": 5.0}]}, [], r"hpo.enqueue\[0\]: model.init_args.lr=5.0 is outside \[0.001, 0.1\]$"),
    ],
)
def test_bad_values_end_in_one_error_line_naming_them(hpo, flags, message, capsys):
    code, line, _ = run_cli(["-c", str(write_recipe({**HPO, **hpo})), *flags], capsys)
    assert code == 2 and re.search(message, line), line


def test_a_missing_recipe_file_is_named(capsys):
    code, line, _ = run_cli(["-c", "recipes/nope.yaml"], capsys)
    assert code == 2 and line == "error: config file 'recipes/nope.yaml' does not exist"


def test_a_recipe_without_an_hpo_section_says_what_to_add(capsys):
    code, line, _ = run_cli(["-c", str(write_recipe())], capsys)
    assert code == 2 and line == ("error: recipe.yaml: no hpo section; add hpo: {metric: ..., direction: ..., "
                                  "search_space: {...}}")


def test_an_hpo_section_that_is_not_a_mapping_is_refused(capsys):
    code, line, _ = run_cli(["-c", str(write_recipe([HPO]))], capsys)
    assert code == 2 and line.startswith("error: the hpo section must be a mapping, got [{")


def test_an_hpo_file_with_a_yaml_error_names_the_file_line_and_column(capsys):
    Path("hpo.yaml").write_text("metric: val/acc\nsearch_space: {model.init_args.lr: [0.1, 0.2}\n")
    code, line, _ = run_cli(["-c", str(write_recipe("hpo.yaml"))], capsys)
    assert code == 2 and re.fullmatch(r"error: hpo.yaml: not valid YAML at line 2, column \d+: .+", line), line


def test_an_unreachable_database_is_one_line_without_the_password(capsys):
    code, line, err = run_cli(["-c", str(write_recipe(HPO)), "--storage", "postgresql://user:secret@127.0.0.1:1/db"], capsys)
    assert code == 2 and line.startswith("error: storage 'postgresql://user:***@127.0.0.1:1/db': cannot open the database")
    assert "secret" not in err


def test_a_storage_whose_driver_is_not_installed_names_the_pip_package(capsys):
    code, line, _ = run_cli(["-c", str(write_recipe(HPO)), "--storage", "mysql://user:pw@host/db"], capsys)
    assert code == 2  # a missing package is bad input for this install, as a missing TPU backend is
    assert line == ("error: --storage 'mysql://user:***@host/db': the URL scheme 'mysql://' uses SQLAlchemy's 'mysqldb' "
                    "driver, whose module 'MySQLdb' is not installed; install it with: pip install 'mysqlclient'")


def test_resuming_a_study_with_another_search_space_lists_the_differences_before_any_trial(capsys):
    run = Path("runs/bad")
    run.mkdir(parents=True)
    study = optuna.create_study(study_name="bad", storage=f"sqlite:///{run / 'study.db'}", direction="maximize")
    study.set_user_attr("search_space", {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": False},
                                         "model.init_args.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]}})
    code, line, _ = run_cli(["-c", str(write_recipe(HPO))], capsys)
    assert code == 2 and line == (
        "error: study 'bad' exists in this storage with another search space; differences (parameter: stored vs new): "
        "model.init_args.lr: float in [0.001, 0.1] vs float in [0.001, 0.1] log; "
        "model.init_args.optimizer: categorical ['adam', 'sgd'] vs (absent). "
        "Resume it with the stored space, or start a new study with --study-name or another --storage")
    assert optuna.load_study(study_name="bad", storage=f"sqlite:///{run / 'study.db'}").trials == []


def test_trials_fed_nan_data_fail_with_the_reason_and_max_failures_ends_the_run_in_one_line(capsys):
    data = {"class_path": "tests.hpo.test_objective.PoisonedDigits", "init_args": {"batch_size": 32, "poison": True}}
    code, line, _ = run_cli(["-c", str(write_recipe(HPO, data=data)), "--max-failures", "1"], capsys)
    assert code == 1  # a run that failed, not bad input
    assert line == ("error: study 'bad' stopped: 1 trials in a row failed (max_failures=1); the last, trial 0, failed "
                    "with: NonFiniteInputError: training batch 0 of epoch 0 is not finite (batch[0]: 2048 NaN, 0 inf of "
                    "2048 values); set hpo.check_finite: false if the non-finite values are intended")
    assert not Path("runs/bad/best.yaml").exists()


@pytest.mark.timeout(300)
def test_a_gp_study_too_short_for_the_gp_says_so_in_the_runs_output():
    recipe = write_recipe(HPO)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "lit_automl.cli", "hpo", "-c", str(recipe), "--sampler", "gp",
                           "--n-trials", "2"], capture_output=True, text=True, env=env, timeout=280)
    assert done.returncode == 0, done.stderr
    assert ("StartupOnlyWarning: sampler 'gp' proposes its first 10 trials without its Gaussian process "
            "(n_startup_trials=10), so with n_trials=2 the Gaussian process is never used; it needs n_trials >= 11") in done.stderr


# ------------------------------------------------------------------ the API
def settings(**section: Any) -> HPOSettings:
    return HPOSettings.from_mapping({**HPO, **section}, recipe=Path("r.yaml"))


@pytest.mark.parametrize(
    "section, error, message",
    [
        ({"study_name": 7}, ArgumentTypeError, r"^r.yaml: hpo.study_name must be a non-empty string, got 7$"),
        ({"run_dir": " "}, ValueError, r"^r.yaml: hpo.run_dir must be a non-empty string, got ' '$"),
        ({"storage": 5432}, ArgumentTypeError, r"^r.yaml: hpo.storage must be a non-empty string, got 5432$"),
        ({"sampler": "cmaes"}, UnknownNameError, r"^r.yaml: hpo.sampler: unknown sampler 'cmaes'"),
        ({"pruner": {"name": "medain"}}, UnknownNameError, r"^r.yaml: hpo.pruner.name: unknown pruner 'medain'"),
        ({"heartbeat_interval": 0, "grace_period": 5}, ValueError,
         r"^r.yaml: hpo.grace_period given with r.yaml: hpo.heartbeat_interval 0 \(heartbeats off\)"),
        ({"check_finite": "no"}, ArgumentTypeError, r"^r.yaml: hpo.check_finite must be true or false, got 'no'$"),
    ],
)
def test_bad_settings_through_the_api(section, error, message):
    with pytest.raises(error, match=message):
        settings(**section)


@pytest.mark.parametrize(
    "url, error, message",
    [
        (5432, ArgumentTypeError, r"^storage must be a storage URL string .*got 5432$"),
        ("post gres://u:pw@h/d", ValueError, r"^storage 'post gres://u:\*\*\*@h/d' is not a valid SQLAlchemy URL; expected "),
        ("postgresql+asyncpg://u:pw@h/d", ValueError, r"'asyncpg' is an asyncio driver; Optuna's RDB storage needs a synchronous one"),
    ],
)
def test_bad_storage_urls_through_the_api(url, error, message, tmp_path):
    with pytest.raises(error, match=message):
        check_storage_url(url)
    with pytest.raises(error, match=message):
        make_storage(url, tmp_path)


def test_a_recipe_that_is_a_folder_or_not_a_mapping_is_refused():
    Path("folder.yaml").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^recipe 'folder.yaml' does not exist \(it is a folder\)$"):
        load_recipe("folder.yaml")
    Path("list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"^list.yaml: a recipe must be a YAML mapping \(a LightningCLI config\), got list$"):
        load_recipe("list.yaml")


def test_a_search_space_file_with_a_yaml_error_names_its_line():
    Path("space.yaml").write_text("model.init_args.lr: {type: float, low: 0.1\n")
    with pytest.raises(ValueError, match=r"^space.yaml: not valid YAML at line 2, column 1: "):
        SearchSpace.from_yaml("space.yaml")


class _Trainer:
    current_epoch = 2


@pytest.mark.parametrize(
    "batch, message",
    [
        ((torch.tensor([1.0, math.inf]), torch.tensor([1, 2])), r"batch\[0\]: 0 NaN, 1 inf of 2 values"),
        ({"x": torch.full((2, 2), math.nan), "mask": torch.ones(2, dtype=torch.bool)}, r"batch\['x'\]: 4 NaN, 0 inf of 4 values"),
    ],
)
def test_a_non_finite_validation_batch_is_named_by_its_place_in_the_batch(batch, message):
    guard = FiniteGuard()
    guard.on_validation_batch_start(_Trainer(), None, (torch.zeros(3), torch.tensor([0, 1, 2])), 0)  # finite: passes
    with pytest.raises(NonFiniteInputError, match=r"^validation batch 4 of epoch 2 is not finite \(" + message):
        guard.on_validation_batch_start(_Trainer(), None, batch, 4)


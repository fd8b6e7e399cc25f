"""`lit-automl hpo` end to end on digits (2 tiny trials of the shipped recipe), and its bad input."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import yaml

from lit_automl.cli import _config_overrides, main
from lit_automl.console import UsageError
from lit_automl.run_config import AutoMLCLI
from lit_automl.hpo.models import DigitsCNN

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "hpo_digits.yaml"
TINY = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches", "2"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs in its tmp_path with one torch thread (tests/hpo/conftest.py)."""


def test_hpo_on_digits_end_to_end(tmp_path, capsys):
    main(["hpo", "-c", str(RECIPE), "--n-trials", "2", "--sampler", "random", "--pruner", "nop", "--no-progress-bar", *TINY])
    run = tmp_path / "runs" / "hpo_digits"
    study = optuna.load_study(study_name="hpo_digits", storage=f"sqlite:///{run / 'study.db'}")  # SQLite in the run folder
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    enqueued = yaml.safe_load(RECIPE.read_text())["hpo"]["enqueue"][0]
    assert {k: study.trials[0].params[k] for k in enqueued} == enqueued  # the known good configuration ran first
    for n in (0, 1):
        trial = run / f"trial_{n}"
        config = yaml.safe_load((trial / "config.yaml").read_text())
        assert config["trainer"]["max_epochs"] == 2  # the command line's overrides reach every trial
        assert config["model"]["init_args"]["lr"] == study.trials[n].params["model.init_args.lr"]
        assert (trial / "checkpoints" / "best.ckpt").exists() and (trial / "logs" / "metrics.csv").exists()
        assert len(study.trials[n].intermediate_values) == 2
    for name in ("best.yaml", "trials.csv", "optimization_history.png", "param_importances.png"):
        assert (run / name).exists(), name
    best = yaml.safe_load((run / "best.yaml").read_text())
    assert best["trainer"]["max_epochs"] == 2 and best["trainer"]["logger"]["init_args"]["save_dir"] == "runs"
    assert f"best trial {study.best_trial.number}: val/acc = " in capsys.readouterr().out


def test_the_recipe_is_also_a_plain_fit_config(tmp_path):
    cli = AutoMLCLI(args=["-c", str(RECIPE)], run=False)  # `lit-automl fit -c recipes/hpo_digits.yaml`: hpo is ignored
    assert isinstance(cli.model, DigitsCNN) and cli.trainer.max_epochs == 8
    assert cli.config.hpo["metric"] == "val/acc"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--n-trials", "0"], r"--n-trials must be (an int )?>= 1, got 0"),
        (["--sampler", "cmaes"], r"--sampler: unknown sampler 'cmaes'; valid samplers: \['gp', 'nsga2', 'optuna-gp', 'random', 'tpe'\]"),
        (["--pruner", "early"], r"--pruner: unknown pruner 'early'; valid pruners: \['hyperband', 'median', 'nop'"),
        (["--max-failures", "0"], r"--max-failures must be an int >= 1, got 0"),
        (["--storage", "postgres-db"], r"--storage 'postgres-db' is neither a SQLAlchemy URL"),
        (["--trials", "3"], r"unknown option '--trials'"),
    ],
)
def test_bad_flags_are_refused_naming_the_value(flags, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["hpo", "-c", str(RECIPE), *flags])
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()  # one line, no traceback
    assert line.startswith("error: ") and re.search(message, line), line


def test_config_overrides_are_parsed_as_yaml_values():
    assert _config_overrides(["--trainer.max_epochs=3", "--model.init_args.optimizer", "sgd", "--trainer.logger=false"]) == {
        "trainer.max_epochs": 3, "model.init_args.optimizer": "sgd", "trainer.logger": False}
    with pytest.raises(UsageError, match=r"'--trainer.max_epochs' needs a value"):
        _config_overrides(["--trainer.max_epochs"])

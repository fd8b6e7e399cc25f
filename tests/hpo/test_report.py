"""The report of a finished study: best.yaml is a config `lit-automl fit -c` accepts, with the best parameters; trials.csv;
the optimisation-history and parameter-importance plots as PNG files."""

from __future__ import annotations

import csv
import os

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from lit_automl.run_config import AutoMLCLI
from lit_automl.hpo.config import HPOSettings
from lit_automl.hpo.models import DigitsCNN
from lit_automl.hpo.report import write_report
from lit_automl.hpo.study import run_study
from tests.hpo.conftest import SPACE, tiny_recipe

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = tiny_recipe(1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(folder)
    torch.set_num_threads(1)  # 2 shared cores: OpenMP spin-waits make tiny models 100x slower with 2 threads
    try:
        settings = HPOSettings.from_mapping({
            "study_name": "r", "metric": "val/acc", "direction": "maximize", "search_space": SPACE, "n_trials": 3,
            "sampler": "random", "seed": 0, "pruner": "nop", "run_dir": str(folder / "run"), "progress_bar": False,
            "enqueue": [{"model.init_args.lr": 0.05, "model.init_args.optimizer": "sgd", "model.init_args.momentum": 0.8}],
        })
        yield run_study(settings, BASE), folder
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def test_best_yaml_is_the_recipe_with_the_best_params_and_a_valid_fit_config(finished, tmp_path, monkeypatch):
    result, folder = finished
    study, best = result["study"], result["best_trial"]
    assert best.number == study.best_trial.number and best.value == max(t.value for t in study.trials)
    path = result["files"]["best_config"]
    assert path == folder / "run" / "best.yaml"
    config = yaml.safe_load(path.read_text())
    assert "hpo" not in config and config["trainer"] == BASE["trainer"]  # the recipe's own logger, not the trial's
    for key, value in best.params.items():
        node = config
        for part in key.split("."):
            node = node[part]
        assert node == value
    assert f"best trial {best.number} of study r: val/acc = " in path.read_text().splitlines()[0]
    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(path)], run=False)  # what `lit-automl fit -c best.yaml` parses
    assert isinstance(cli.model, DigitsCNN)
    assert cli.model.hparams.lr == best.params["model.init_args.lr"]
    assert cli.model.hparams.optimizer == best.params["model.init_args.optimizer"]


def test_plots_are_written_as_png(finished):
    result, folder = finished
    for name in ("optimization_history", "param_importances"):
        path = folder / "run" / f"{name}.png"
        assert result["files"][name] == path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_trials_csv_lists_every_trial(finished):
    result, folder = finished
    rows = list(csv.DictReader((folder / "run" / "trials.csv").read_text().splitlines()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert all(r["state"] == "COMPLETE" for r in rows)
    assert rows[0]["model.init_args.momentum"] == "0.8" and float(rows[0]["val/acc"]) == result["study"].trials[0].value
    assert result["counts"] == {"COMPLETE": 3}


def test_a_study_without_completed_trials_writes_no_best_yaml_and_no_empty_plots(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 1.0}, user_attrs={"fail_reason": "boom"},
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 2)}))
    report = write_report(study, BASE, tmp_path)
    assert report["best_trial"] is None and report["counts"] == {"FAIL": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv"]
    assert "boom" in (tmp_path / "trials.csv").read_text()

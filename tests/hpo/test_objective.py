"""One trial = one Lightning fit: params in the config, artifacts, FAIL with a reason (exception, NaN, metric never
logged), PRUNED with the epoch, and a 2-process ddp_spawn trial (one trial, same params on both ranks, both stopped)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import torch
import yaml
from optuna.trial import TrialState

from lit_automl.callbacks import OptunaPruning
from lit_automl.datamodules import DigitsDataModule
from lit_automl.hpo.config import HPOSettings
from lit_automl.hpo.finite import FiniteGuard, NonFiniteMetricError
from lit_automl.hpo.models import DigitsCNN
from lit_automl.hpo.study import run_study
from tests.hpo.conftest import SPACE, tiny_recipe
from tests.hpo.conftest import make_settings as shared_settings

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = tiny_recipe(2, log_every_n_steps=1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs in its tmp_path with one torch thread (tests/hpo/conftest.py)."""


def make_settings(tmp_path, **section) -> HPOSettings:
    return shared_settings(tmp_path, SPACE, **{"study_name": "t", "n_trials": 1, **section})


class NaNCNN(DigitsCNN):
    """Logs val/acc = NaN from epoch ``nan_at`` on."""

    def __init__(self, nan_at: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.nan_at = nan_at

    def validation_step(self, batch, batch_idx):
        acc = (self(batch[0]).argmax(-1) == batch[1]).float().mean()
        self.log("val/acc", torch.tensor(math.nan) if self.current_epoch >= self.nan_at else acc)


class PoisonedDigits(DigitsDataModule):
    """Digits whose images are all NaN when ``poison`` (the model then outputs NaN, yet argmax still scores ~0.1)."""

    def __init__(self, poison: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.poison = poison

    def setup(self, stage=None):
        super().setup(stage)
        if self.poison:
            for dataset in (self.train_dataset, self.val_dataset):
                dataset.tensors[0].fill_(math.nan)


class RecordTrial(pl.Callback):
    """Per rank: the model's hparams, what OptunaPruning holds, the epochs and batches trained."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1

    def on_train_end(self, trainer, pl_module):
        pruning = next(c for c in trainer.callbacks if isinstance(c, OptunaPruning))
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "hparams": dict(pl_module.hparams),
                  "trial_number": pruning.trial_number, "params": pruning.params, "has_trial": pruning.trial is not None,
                  "pruned_epoch": pruning.pruned_epoch, "epoch": trainer.current_epoch, "batches": self.batches}
        Path(self.dirpath, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def test_a_trial_fits_the_recipe_with_its_params_and_leaves_config_and_checkpoint(tmp_path):
    s = make_settings(tmp_path, enqueue=[{"model.init_args.lr": 0.01, "model.init_args.optimizer": "sgd",
                                          "model.init_args.momentum": 0.7}])
    study = run_study(s, BASE)["study"]
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE and 0.0 <= trial.value <= 1.0
    assert sorted(trial.intermediate_values) == [0, 1]  # reported every epoch
    assert trial.value == pytest.approx(trial.intermediate_values[1])  # the last validation
    folder = tmp_path / "run" / "trial_0"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["model"]["init_args"] == {"channels": 4, "hidden": 8, "lr": 0.01, "optimizer": "sgd", "momentum": 0.7}
    assert (folder / "checkpoints" / "best.ckpt").exists() and trial.user_attrs["checkpoint"].endswith("best.ckpt")
    assert "val/acc" in (folder / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert trial.user_attrs["worker"].endswith(f":{__import__('os').getpid()}")


def test_an_exception_fails_the_trial_with_its_reason_and_the_study_goes_on(tmp_path):
    space = {**SPACE, "model.init_args.dropout": [0.1, 1.5]}
    s = make_settings(tmp_path, search_space=space, enqueue=[{"model.init_args.dropout": 1.5}, {"model.init_args.dropout": 0.1}])
    study = run_study(s, BASE)["study"]
    failed, done = study.trials
    assert failed.state == TrialState.FAIL and done.state == TrialState.COMPLETE
    assert failed.user_attrs["fail_reason"] == "ValueError: dropout must be a number in [0.0, 1.0), got 1.5"
    assert "Traceback" in (tmp_path / "run" / "trial_0" / "error.txt").read_text()


def test_a_nan_metric_fails_the_trial_with_its_reason(tmp_path):
    base = {**BASE, "model": {"class_path": f"{__name__}.NaNCNN", "init_args": {"channels": 4, "hidden": 8, "nan_at": 1}},
            "trainer": {**BASE["trainer"], "max_epochs": 4}}
    s = make_settings(tmp_path, max_failures=1)
    with pytest.raises(Exception, match=r"val/acc = nan at epoch 1 is not finite"):
        run_study(s, base)
    trial = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}").trials[0]
    assert trial.state == TrialState.FAIL
    assert "val/acc = nan at epoch 1" in trial.user_attrs["fail_reason"]
    assert trial.user_attrs["epochs_trained"] == 2 and list(trial.intermediate_values) == [0]  # stopped after epoch 1 of 4


def nan_data_study(tmp_path, check_finite: bool):
    base = {**BASE, "data": {"class_path": f"{__name__}.PoisonedDigits", "init_args": {"batch_size": 32}},
            "trainer": {**BASE["trainer"], "max_epochs": 1}}
    s = make_settings(tmp_path, search_space={"data.init_args.poison": [True, False]}, n_trials=1 if check_finite else 2,
                      report=True,
                      check_finite=check_finite, enqueue=[{"data.init_args.poison": True}, {"data.init_args.poison": False}])
    return run_study(s, base)["study"]


def test_a_trial_fed_non_finite_data_fails_with_its_reason_and_is_never_best(tmp_path):
    poisoned, clean = nan_data_study(tmp_path, check_finite=True).trials  # a FAIL does not count: n_trials=1 runs both
    assert poisoned.params == {"data.init_args.poison": True} and poisoned.state == TrialState.FAIL
    assert poisoned.values is None
    assert poisoned.user_attrs["fail_reason"].startswith(
        "NonFiniteInputError: training batch 0 of epoch 0 is not finite (batch[0]: 2048 NaN, 0 inf of 2048 values)")
    assert clean.state == TrialState.COMPLETE
    best = yaml.safe_load((tmp_path / "run" / "best.yaml").read_text())
    assert best["data"]["init_args"]["poison"] is False  # the failed trial is not the best
    assert "NonFiniteInputError" in (tmp_path / "run" / "trials.csv").read_text()


def test_without_the_finite_check_a_nan_data_trial_completes_with_a_finite_accuracy(tmp_path):
    """What hpo.check_finite guards against: NaN logits still give argmax a class, so val/acc is finite."""
    poisoned, _ = nan_data_study(tmp_path, check_finite=False).trials
    assert poisoned.state == TrialState.COMPLETE and math.isfinite(poisoned.value)


def test_a_non_finite_training_loss_stops_the_trial():
    trainer = type("T", (), {"current_epoch": 3})()
    guard = FiniteGuard()
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.5)}, None, 7)
    guard.on_train_batch_end(trainer, None, None, None, 7)  # manual optimisation returns nothing to check
    with pytest.raises(NonFiniteMetricError, match=r"^training loss = inf at epoch 3, batch 7 is not finite; "
                                                   r"set hpo.check_finite: false"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(math.inf)}, None, 7)


def test_a_metric_that_is_never_logged_fails_naming_the_logged_metrics(tmp_path):
    s = make_settings(tmp_path, metric="val/accuracy", max_failures=1)
    with pytest.raises(RuntimeError, match=r"'val/accuracy', which was never logged; the module logged \['train/loss', 'val/acc', 'val/loss'\]"):
        run_study(s, BASE)


def test_a_pruned_trial_is_recorded_pruned_with_its_epoch(tmp_path):
    s = make_settings(tmp_path, pruner={"name": "threshold", "lower": 2.0}, n_trials=1)  # val/acc < 2: always pruned
    study = run_study(s, {**BASE, "trainer": {**BASE["trainer"], "max_epochs": 3}})["study"]
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.user_attrs["pruned_epoch"] == 0
    assert list(trial.intermediate_values) == [0]


def test_a_strategy_that_reruns_the_command_per_rank_is_refused(tmp_path):
    base = {**BASE, "trainer": {**BASE["trainer"], "devices": 2, "strategy": "ddp"}}
    with pytest.raises(Exception, match=r"every rank would create trials of its own; use strategy: ddp_spawn"):
        run_study(make_settings(tmp_path, max_failures=1), base)


@pytest.mark.ddp
def test_a_ddp_spawn_trial_is_one_trial_with_the_same_params_on_both_ranks_and_a_prune_stops_both(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    trainer = {**BASE["trainer"], "devices": 2, "strategy": "ddp_spawn", "max_epochs": 3,
               "callbacks": [{"class_path": f"{__name__}.RecordTrial", "init_args": {"dirpath": str(records)}},
                             {"class_path": "tests.ddp_harness.RecordRank", "init_args": {"dirpath": str(records)}}]}
    s = make_settings(tmp_path, storage=f"journal:{tmp_path / 'journal.log'}", pruner={"name": "threshold", "lower": 2.0},
                      enqueue=[{"model.init_args.lr": 0.02, "model.init_args.optimizer": "sgd", "model.init_args.momentum": 0.6}])
    study = run_study(s, {**BASE, "trainer": trainer})["study"]

    (trial,) = study.trials  # rank 1 created no trial of its own
    assert trial.state == TrialState.PRUNED and trial.user_attrs["pruned_epoch"] == 0
    assert list(trial.intermediate_values) == [0]
    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1)]
    params = {"model.init_args.lr": 0.02, "model.init_args.optimizer": "sgd", "model.init_args.momentum": 0.6}
    for rank in ranks:
        assert rank["world_size"] == 2 and rank["trial_number"] == 0 and rank["params"] == params
        assert (rank["hparams"]["lr"], rank["hparams"]["optimizer"], rank["hparams"]["momentum"]) == (0.02, "sgd", 0.6)
        assert rank["pruned_epoch"] == 0 and rank["epoch"] == 1 and rank["batches"] == 2  # both stopped after epoch 0 of 3
    assert [r["has_trial"] for r in ranks] == [True, False]  # only rank 0 talks to Optuna
    states = [torch.load(records / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(len(s["fingerprints"]) == 2 for s in states)
    for key, value in states[0]["state_dict"].items():
        torch.testing.assert_close(value, states[1]["state_dict"][key])

"""OptunaPruning: reports every epoch, prunes and stops, stops on NaN, names a missing metric, bad arguments, state."""

from __future__ import annotations

import math

import optuna
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.callbacks import OptunaPruning
from lit_automl.callbacks.optuna_pruning import CONTINUE, PRUNE, STOP_NON_FINITE, MissingMetricError

optuna.logging.set_verbosity(optuna.logging.WARNING)


pytestmark = pytest.mark.usefixtures("single_thread")


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=8)


class Tiny(pl.LightningModule):
    """Logs val/score = 0.1 * (epoch + 1) (or NaN from ``nan_at``), and counts training epochs."""

    def __init__(self, nan_at: int = -1):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.nan_at = nan_at
        self.epochs_trained = 0

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def on_train_epoch_end(self):
        self.epochs_trained += 1

    def validation_step(self, batch, batch_idx):
        value = math.nan if self.current_epoch == self.nan_at else 0.1 * (self.current_epoch + 1)
        self.log("val/score", torch.tensor(value))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, callback, max_epochs=3, **kwargs):
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[callback], **kwargs,
    )
    trainer.fit(module, train_dataloaders=loader(), val_dataloaders=loader())
    return trainer


def test_reports_the_monitored_metric_every_epoch():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 0.1)})
    callback = OptunaPruning(trial, monitor="val/score")
    module = Tiny()
    trainer = fit(module, callback)
    stored = study.trials[0]
    assert stored.intermediate_values == pytest.approx({0: 0.1, 1: 0.2, 2: 0.3})
    assert [e for e, _ in callback.history] == [0, 1, 2]
    assert callback.pruned_epoch is None and not trainer.should_stop and module.epochs_trained == 3
    assert callback.trial_number == 0 and callback.params == trial.params


def test_a_pruner_that_always_prunes_stops_the_fit_after_the_first_epoch():
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    trial = study.ask()
    callback = OptunaPruning(trial, monitor="val/score")
    module = Tiny()
    trainer = fit(module, callback, max_epochs=5)
    assert trainer.should_stop and module.epochs_trained == 1
    assert callback.pruned_epoch == 0 and "pruned" in callback.stop_reason
    stored = study.get_trials(deepcopy=False)[0]
    assert stored.user_attrs["pruned_epoch"] == 0 and "epoch 0" in stored.user_attrs["prune_reason"]
    assert stored.intermediate_values == pytest.approx({0: 0.1})


def test_a_median_pruner_prunes_a_trial_worse_than_the_earlier_ones():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1))
    for score in (0.9, 0.8):  # two finished trials far above the Tiny module's 0.1, 0.2, ...
        done = study.ask()
        for step in range(3):
            done.report(score, step)
        study.tell(done, score)
    callback = OptunaPruning(study.ask(), monitor="val/score")
    module = Tiny()
    fit(module, callback, max_epochs=4)
    assert callback.pruned_epoch == 1  # n_warmup_steps=1: epoch 0 is never pruned
    assert module.epochs_trained == 2


def test_a_non_finite_metric_stops_without_pruning_and_records_the_reason():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    callback = OptunaPruning(study.ask(), monitor="val/score")
    module = Tiny(nan_at=1)
    trainer = fit(module, callback, max_epochs=4)
    assert trainer.should_stop and module.epochs_trained == 2 and callback.pruned_epoch is None
    stored = study.get_trials(deepcopy=False)[0]
    assert "val/score = nan at epoch 1" in stored.user_attrs["fail_reason"]
    assert list(stored.intermediate_values) == [0]  # NaN is never reported to Optuna


def test_a_metric_that_is_never_logged_is_named_with_the_logged_ones():
    study = optuna.create_study(direction="maximize")
    callback = OptunaPruning(study.ask(), monitor="val/acc")
    with pytest.raises(MissingMetricError, match=r"'val/acc'.*never logged.*\['val/score'\]"):
        fit(Tiny(), callback, max_epochs=1)


def test_checks_at_every_validation_when_validation_runs_less_often():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    callback = OptunaPruning(study.ask(), monitor="val/score")
    fit(Tiny(), callback, max_epochs=4, check_val_every_n_epoch=2)
    assert [e for e, _ in callback.history] == [1, 3]
    assert sorted(study.trials[0].intermediate_values) == [1, 3]


def test_decide_is_a_pure_function_of_value_epoch_and_the_pruners_answer():
    callback = OptunaPruning(optuna.create_study().ask(), monitor="val/loss")
    assert callback.decide(0.5, 3, False)[0] == CONTINUE
    decision, reason = callback.decide(0.5, 3, True)
    assert decision == PRUNE and "epoch 3" in reason and "val/loss = 0.5" in reason
    assert callback.decide(float("nan"), 2, True)[0] == STOP_NON_FINITE
    assert callback.decide(float("inf"), 2, False)[0] == STOP_NON_FINITE
    assert OptunaPruning(optuna.create_study().ask(), "m", check_finite=False).decide(float("nan"), 0, False)[0] == CONTINUE


def test_bad_arguments_are_refused_naming_the_value():
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match=r"monitor.*''"):
        OptunaPruning(trial, monitor="")
    with pytest.raises(TypeError, match=r"trial must be a running optuna.trial.Trial.*'not a trial'"):
        OptunaPruning("not a trial", monitor="val/acc")
    with pytest.raises(TypeError, match=r"check_finite.*'yes'"):
        OptunaPruning(trial, monitor="val/acc", check_finite="yes")
    multi = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match=r"single-objective.*2 objectives"):
        OptunaPruning(multi.ask(), monitor="val/acc")


def test_state_dict_round_trip():
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    callback = OptunaPruning(study.ask(), monitor="val/score")
    fit(Tiny(), callback, max_epochs=2)
    restored = OptunaPruning(optuna.create_study().ask(), monitor="val/score")
    restored.load_state_dict(callback.state_dict())
    assert restored.history == callback.history and restored.pruned_epoch == 0
    assert restored.stop_reason == callback.stop_reason
    assert callback.state_key == "OptunaPruning{'monitor': 'val/score'}"

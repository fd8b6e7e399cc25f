"""NTASGD: the non-monotone trigger, averaging equal to torch's ASGD(t0=0, lambd=0), validation and
the final model on the average, resume, bad input."""

from __future__ import annotations

from typing import List

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.callbacks.nt_asgd import NTASGD, nonmonotone_trigger
from tests.resume_harness import run_resumed

LR = 0.1


class Regression(pl.LightningModule):
    """A linear model fitted by plain SGD; ``val/loss`` is read from ``scripted`` (one per epoch),
    so the trigger epoch is known; the weights validation sees are recorded."""

    def __init__(self, scripted: List[float]):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        self.scripted = scripted
        self.seen_in_validation: List[torch.Tensor] = []
        self.iterates: List[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.linear(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.iterates.append(self.flat())

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen_in_validation.append(self.flat())
        self.log("val/loss", self.scripted[self.current_epoch])

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.parameters()]).clone()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)

    def train_dataloader(self):
        return data()

    def val_dataloader(self):
        return data()


def data(n: int = 12) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3), batch_size=4)


def fit(module: Regression, epochs: int, callback: NTASGD, tmp_path) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=tmp_path)
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("value, history, nonmono, mode, expected", [
    (2.0, [3.0, 1.0], 1, "min", False),      # not worse than min([3.0])
    (3.5, [3.0, 1.0], 1, "min", True),
    (3.5, [3.0, 1.0], 2, "min", False),      # too few checks: needs more than nonmono
    (2.5, [2.0, 3.0, 2.4], 2, "min", True),  # worse than min([2.0])
    (1.9, [2.0, 3.0, 2.4], 2, "min", False),
    (0.5, [0.6, 0.7], 1, "max", True),
    (0.7, [0.6, 0.7], 1, "max", False),
    (1.5, [1.0], 0, "min", True),            # nonmono=0: worse than the best so far
    (0.5, [1.0], 0, "min", False),
])
def test_the_trigger_is_the_authors(value, history, nonmono, mode, expected):
    assert nonmonotone_trigger(value, history, nonmono, mode)[0] is expected


def test_averaging_starts_at_the_trigger_equals_torch_asgd_and_is_what_validation_and_the_end_see(tmp_path):
    pl.seed_everything(0)
    scripted = [3.0, 2.0, 2.5, 2.6, 2.7]
    callback = NTASGD(nonmono=1)
    module = Regression(scripted)
    start = torch.nn.Linear(3, 1)
    start.load_state_dict(module.linear.state_dict())
    fit(module, 5, callback, tmp_path)
    # history [3.0] at epoch 1 (2.0 <= 3.0: no); epoch 2: 2.5 > min([3.0, 2.0][:-1]) = 3.0? no; epoch 3:
    # 2.6 > min([3.0, 2.0, 2.5][:-1]) = 2.0: yes -> averaging from the steps of epoch 4
    assert callback.started_epoch == 3 and callback.history == pytest.approx(scripted)
    steps_per_epoch = 3
    averaged = module.iterates[4 * steps_per_epoch:]
    assert callback.averaged_steps == len(averaged) == steps_per_epoch

    # torch's ASGD(t0=0, lambd=0) from the same point gives the same iterates and the same average
    reference = torch.nn.Linear(3, 1)
    reference.load_state_dict(start.state_dict())
    sgd = torch.optim.SGD(reference.parameters(), lr=LR)
    batches = list(data())
    for _ in range(4):
        for x, y in batches:
            sgd.zero_grad()
            torch.nn.functional.mse_loss(reference(x), y).backward()
            sgd.step()
    asgd = torch.optim.ASGD(reference.parameters(), lr=LR, t0=0, lambd=0.0)
    for x, y in batches:
        asgd.zero_grad()
        torch.nn.functional.mse_loss(reference(x), y).backward()
        asgd.step()
    ax = torch.cat([asgd.state[p]["ax"].reshape(-1) for p in reference.parameters()])
    torch.testing.assert_close(module.flat(), ax)  # the module ends holding the average
    # validation saw the current weights before averaging began and the average after
    torch.testing.assert_close(module.seen_in_validation[3], module.iterates[4 * steps_per_epoch - 1])
    torch.testing.assert_close(module.seen_in_validation[4], ax)


def test_nonmono_zero_averages_after_the_first_worse_check(tmp_path):
    callback = NTASGD(nonmono=0)
    fit(Regression([1.0, 2.0, 0.5]), 3, callback, tmp_path)
    assert callback.started_epoch == 1 and "2 is no better than 1" in callback.start_reason


def test_resume_mid_averaging_equals_the_uninterrupted_run(tmp_path):
    scripted = [3.0, 2.0, 2.5, 2.6, 2.7, 2.8]
    runs = run_resumed(lambda: Regression(scripted), lambda: None, tmp_path, {"max_epochs": 5}, max_epochs=6,
                       callbacks=lambda: [NTASGD(nonmono=1)])
    torch.testing.assert_close(runs.resumed.flat(), runs.full.flat(), rtol=0, atol=0)


def test_bad_arguments_and_a_missing_metric():
    with pytest.raises(ValueError, match=r"nonmono must be an int >= 0, got -1"):
        NTASGD(nonmono=-1)
    with pytest.raises(ValueError, match=r"mode must be one of \['min', 'max'\], got 'mean'"):
        NTASGD(mode="mean")
    with pytest.raises(ValueError, match=r"monitor must be a logged metric's name, got ''"):
        NTASGD(monitor="")


def test_a_metric_the_module_does_not_log_is_named(tmp_path):
    with pytest.raises(KeyError, match=r"NTASGD monitors 'val/ppl', which the module did not log; logged metrics: "
                                       r"\['val/loss'\]"):
        fit(Regression([1.0]), 1, NTASGD(monitor="val/ppl"), tmp_path)

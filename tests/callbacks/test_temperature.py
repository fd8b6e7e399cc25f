"""TemperatureAnnealing: schedules, per-epoch setting, logging, resume, bad input."""

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.callbacks import TemperatureAnnealing


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyTempModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.temperature = 1.0
        self.seen = []

    def on_train_epoch_start(self):
        self.seen.append(self.temperature)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def fit(tmp_path, cb, max_epochs, ckpt=None, module=None):
    m = module or TinyTempModule()
    t = pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=1, callbacks=[cb],
                   logger=pl.loggers.CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path)
    t.fit(m, ckpt_path=ckpt)
    return m, t


def test_schedules():
    exp = TemperatureAnnealing(tau_0=2.0, schedule="exponential", decay=0.5, tau_min=0.3)
    assert [exp.value(e) for e in range(4)] == [2.0, 1.0, 0.5, 0.3]
    lin = TemperatureAnnealing(tau_0=1.0, schedule="linear", tau_min=0.2, epochs=4)
    assert [lin.value(e) for e in range(6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2])


def test_defaults_are_the_authors_schedule():
    """SNAS authors' code: 1.0 linearly down to 0.03 over the 150-epoch search."""
    cb = TemperatureAnnealing()
    assert (cb.tau_0, cb.schedule, cb.tau_min, cb.epochs) == (1.0, "linear", 0.03, None)
    values = [cb.value(e, 150) for e in range(160)]
    assert values[0] == 1.0 and values[75] == pytest.approx(0.515) and values[150:] == [pytest.approx(0.03)] * 10
    assert all(a > b for a, b in zip(values[:150], values[1:151]))


def test_sets_temperature_each_epoch_logs_and_resumes(tmp_path):
    m, t = fit(tmp_path, TemperatureAnnealing(schedule="exponential", decay=0.5), 3)
    # The callback runs before the module's own epoch-start hook.
    assert m.seen == [1.0, 0.5, 0.25]
    assert t.callback_metrics["snas/temperature"] == pytest.approx(0.25)
    ckpt = tmp_path / "c.ckpt"
    t.save_checkpoint(ckpt)
    cb = TemperatureAnnealing(schedule="exponential", decay=0.5)
    state = torch.load(ckpt, weights_only=False)["callbacks"][cb.state_key]
    assert state == {"last_epoch": 2, "last_value": 0.25}
    m2, _ = fit(tmp_path, cb, 5, ckpt=str(ckpt))
    assert m2.seen == [0.125, 0.0625] and cb.last_epoch == 4


def test_linear_uses_max_epochs(tmp_path):
    m, _ = fit(tmp_path, TemperatureAnnealing(schedule="linear", tau_min=0.5), 2)
    assert m.seen == pytest.approx([1.0, 0.75])


def test_drives_snas(tmp_path):
    from lit_automl.nas.snas import SNAS
    m = SNAS(C=2, layers=3, steps=1, multiplier=1, stem_multiplier=1, in_channels=1)
    cb = TemperatureAnnealing(tau_0=0.8)  # default: linear to 0.03 over max_epochs
    cb.on_train_epoch_start(type("T", (), {"current_epoch": 1, "max_epochs": 3})(), _NoLog(m))
    assert m.temperature == pytest.approx(0.8 + (0.03 - 0.8) / 3)


class _NoLog:
    def __init__(self, m):
        object.__setattr__(self, "m", m)

    def log(self, *a, **k):
        pass

    def __getattr__(self, name):
        return getattr(self.m, name)

    def __setattr__(self, name, value):
        setattr(self.m, name, value)


@pytest.mark.parametrize("kwargs, match", [
    ({"tau_0": 0}, "tau_0 must be a number > 0, got 0"),
    ({"tau_0": -2.0}, "got -2.0"),
    ({"schedule": "cosine"}, "schedule must be one of.*'cosine'"),
    ({"decay": 1.5}, "decay must be a number in \\(0, 1\\], got 1.5"),
    ({"tau_min": 0.0}, "tau_min must be a number > 0, got 0.0"),
    ({"tau_min": 2.0}, "tau_min must be <= tau_0=1.0, got 2.0"),
    ({"epochs": 0}, "epochs must be an int >= 1 or None, got 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemperatureAnnealing(**kwargs)


def test_bad_epoch():
    with pytest.raises(ValueError, match="got -1"):
        TemperatureAnnealing().value(-1)

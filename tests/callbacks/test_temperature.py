"""TemperatureAnnealing: schedules, per-epoch setting, logging, resume, bad input."""

import pytest

from lit_automl.callbacks import TemperatureAnnealing
from tests.callbacks.helpers import EpochRecorder, Made, callback_of, fit_epochs, saved_state
from tests.resume_harness import run_resumed


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyTempModule(EpochRecorder):
    def __init__(self):
        super().__init__()
        self.temperature = 1.0

    def observed(self):
        return self.temperature


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
    made = Made(TinyTempModule)
    runs = run_resumed(made, lambda: None, tmp_path, {"max_epochs": 3},
                       callbacks=lambda: [TemperatureAnnealing(schedule="exponential", decay=0.5)], max_epochs=5,
                       limit_train_batches=1)
    # The callback runs before the module's own epoch-start hook.
    assert made.interrupted.seen == [1.0, 0.5, 0.25]
    assert runs.full_trainer.callback_metrics["snas/temperature"] == pytest.approx(runs.full.seen[-1])
    cb = callback_of(runs.resumed_trainer, TemperatureAnnealing)
    assert saved_state(runs.checkpoint, cb) == {"last_epoch": 2, "last_value": 0.25}
    assert runs.resumed.seen == [0.125, 0.0625] and cb.last_epoch == 4
    assert runs.resumed.seen == runs.full.seen[3:]


def test_linear_uses_max_epochs(tmp_path):
    m, _ = fit_epochs(tmp_path, TemperatureAnnealing(schedule="linear", tau_min=0.5), 2, TinyTempModule())
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

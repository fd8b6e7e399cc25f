"""ScheduledDropPath: the linear schedule, what a module sees during fit, and resume."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.callbacks import ScheduledDropPath
from tests.callbacks.helpers import Made, callback_of, saved_state
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=8)


class StandIn(pl.LightningModule):
    """A module with a configured maximum and a `drop_path_prob` it records in every training step."""

    def __init__(self, drop_path_prob: float = 0.3):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 2)
        self.drop_path_prob = 0.0
        self.seen: list[tuple[int, float]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append((self.current_epoch, self.drop_path_prob))
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return loader()


class NoDropPath(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def make_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return quiet_trainer(tmp_path, **{"max_epochs": 3, **kwargs})


def per_epoch(seen: list[tuple[int, float]]) -> dict[int, float]:
    """The one value each epoch saw (fails if an epoch saw two)."""
    values: dict[int, set[float]] = {}
    for epoch, value in seen:
        values.setdefault(epoch, set()).add(value)
    assert all(len(v) == 1 for v in values.values()), values
    return {epoch: v.pop() for epoch, v in values.items()}


# --------------------------------------------------------------------------- the pure schedule
def test_value_is_linear_from_zero_and_capped():
    cb = ScheduledDropPath(drop_path_prob=0.2)
    assert [cb.value(e, 4) for e in range(6)] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.2])
    assert cb.value(300, 600) == pytest.approx(0.1)  # DARTS: 0.2 * epoch / 600
    assert cb.value(3, 4, max_prob=0.4) == pytest.approx(0.3)


def test_value_validates_and_needs_a_maximum():
    with pytest.raises(ValueError, match="epoch must be"):
        ScheduledDropPath(0.2).value(-1, 4)
    with pytest.raises(ValueError, match="epochs must be"):
        ScheduledDropPath(0.2).value(0, 0)
    with pytest.raises(ValueError, match="drop_path_prob=None"):
        ScheduledDropPath().value(1, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(drop_path_prob=1.0), r"drop_path_prob must be a number in \[0, 1\), got 1.0"),
        (dict(drop_path_prob=-0.1), r"got -0.1"),
        (dict(drop_path_prob="0.2"), r"got '0.2'"),
        (dict(drop_path_prob=True), r"got True"),
        (dict(epochs=0), r"epochs must be an int >= 1, got 0"),
        (dict(epochs=2.5), r"got 2.5"),
    ],
)
def test_init_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScheduledDropPath(**kwargs)


def test_state_key_and_state_dict_are_plain():
    a, b = ScheduledDropPath(0.2), ScheduledDropPath(0.3, epochs=10)
    assert a.state_key != b.state_key and "ScheduledDropPath" in a.state_key
    b.last_epoch, b.last_value = 4, 0.12
    state = b.state_dict()
    assert state == {"drop_path_prob": 0.3, "epochs": 10, "max_prob": 0.3, "last_epoch": 4, "last_value": 0.12}
    fresh = ScheduledDropPath()
    fresh.load_state_dict(state)
    assert (fresh.last_epoch, fresh.last_value, fresh.max_prob) == (4, 0.12, 0.3)


# --------------------------------------------------------------------------- in a real fit
def test_module_sees_the_schedule_from_its_hparams(tmp_path):
    model = StandIn(drop_path_prob=0.3)
    make_trainer(tmp_path, callbacks=[ScheduledDropPath()]).fit(model, loader())
    assert len(model.seen) == 6
    assert per_epoch(model.seen) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2})


def test_explicit_maximum_and_length_override_the_module(tmp_path):
    model = StandIn(drop_path_prob=0.3)
    cb = ScheduledDropPath(drop_path_prob=0.5, epochs=5)
    make_trainer(tmp_path, callbacks=[cb]).fit(model, loader())
    assert per_epoch(model.seen) == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2})
    assert (cb.last_epoch, cb.last_value) == (2, pytest.approx(0.2))


def test_module_without_drop_path_prob_is_named(tmp_path):
    with pytest.raises(AttributeError, match="NoDropPath has no `drop_path_prob`"):
        make_trainer(tmp_path, callbacks=[ScheduledDropPath(0.2)]).fit(NoDropPath(), loader())


def test_missing_configured_maximum_is_explained(tmp_path):
    model = NoDropPath()
    model.drop_path_prob = 0.0
    with pytest.raises(ValueError, match=r"NoDropPath.hparams.drop_path_prob"):
        make_trainer(tmp_path, callbacks=[ScheduledDropPath()]).fit(model, loader())


def test_unbounded_trainer_needs_explicit_epochs(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=-1, max_steps=2, callbacks=[ScheduledDropPath()])
    with pytest.raises(ValueError, match="max_epochs"):
        trainer.fit(StandIn(), loader())


def test_resume_from_checkpoint_continues_the_schedule(tmp_path):
    made = Made(lambda: StandIn(drop_path_prob=0.4))
    runs = run_resumed(made, lambda: None, tmp_path, {"max_epochs": 2}, callbacks=lambda: [ScheduledDropPath(epochs=4)],
                       max_epochs=4)
    assert per_epoch(made.interrupted.seen) == pytest.approx({0: 0.0, 1: 0.1})

    cb2 = callback_of(runs.resumed_trainer, ScheduledDropPath)
    saved = saved_state(runs.checkpoint, cb2)
    assert saved["last_epoch"] == 1 and saved["last_value"] == pytest.approx(0.1)

    assert per_epoch(runs.resumed.seen) == pytest.approx({2: 0.2, 3: 0.3})
    assert per_epoch(runs.resumed.seen) == pytest.approx({e: v for e, v in per_epoch(runs.full.seen).items() if e >= 2})
    assert (cb2.last_epoch, cb2.last_value) == (3, pytest.approx(0.3))

"""Temperature annealing for Gumbel-softmax (concrete) architecture search.

SNAS (Xie et al., ICLR 2019, Sec. 2.2) samples the architecture from a concrete distribution whose
temperature is annealed so that samples approach one-hot architectures. The defaults are the
authors' schedule (github.com/SNAS-Series/SNAS-Series, ``SNAS/utils.py`` and the search commands
in its README): start at 1.0 (``--temp 1``) and decrease linearly to 0.03 (``--temp_min 0.03``)
over the search (its 150 epochs). One difference: the authors' scheduler is stepped once before
the first epoch, so their first epoch already runs one decrement below 1.0 and their last one at
0.03; here epoch 0 runs at ``tau_0`` and the floor is reached when ``epoch == epochs``.
An exponential schedule ``tau_0 * decay ** epoch`` (floored at ``tau_min``) is offered too; its
``decay=0.97`` is this library's choice.
"""

from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl

from lit_automl._checks import check_choice, check_int, check_real

from ._schedule import EpochSchedule

__all__ = ["TemperatureAnnealing"]

SCHEDULES = ("exponential", "linear")


class TemperatureAnnealing(EpochSchedule):
    """Set ``pl_module.temperature`` at the start of every training epoch and log ``snas/temperature``.

    Args:
        tau_0: temperature of epoch 0 (> 0; default 1.0: the authors' code).
        schedule: ``"linear"`` (``tau_0 + (tau_min - tau_0) * min(epoch, epochs) / epochs``; default:
            the authors' code) or ``"exponential"`` (``max(tau_min, tau_0 * decay ** epoch)``).
        decay: exponential decay per epoch, in (0, 1] (default 0.97: this library's choice; only
            used by the exponential schedule).
        tau_min: floor of both schedules and end point of the linear one (> 0, <= tau_0;
            default 0.03: the authors' code).
        epochs: length of the linear schedule; ``None`` (default) uses ``Trainer(max_epochs)``
            (the authors' code anneals over its whole 150-epoch search).
    """

    metric = "snas/temperature"

    def __init__(self, tau_0: float = 1.0, schedule: str = "linear", decay: float = 0.97,
                 tau_min: float = 0.03, epochs: Optional[int] = None) -> None:
        super().__init__(check_int("epochs", epochs, low=1, allow_none=True))
        self.tau_0 = check_real("tau_0", tau_0, low=0, low_open=True)
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.decay = check_real("decay", decay, low=0, high=1, low_open=True)
        self.tau_min = check_real("tau_min", tau_min, low=0, low_open=True)
        if self.tau_min > self.tau_0:
            raise ValueError(f"tau_min must be <= tau_0={self.tau_0}, got {tau_min!r}")
        if schedule == "linear" and decay != 0.97:
            raise ValueError(f"decay is the exponential schedule's: schedule='linear' does not use it (leave it at 0.97 "
                             f"or set schedule='exponential'), got decay={decay!r}")
        if schedule == "exponential" and epochs is not None:
            raise ValueError(f"epochs is the length of the linear schedule: schedule='exponential' does not use it "
                             f"(leave it None or set schedule='linear'), got epochs={epochs!r}")

    @property
    def state_key(self) -> str:
        return self._generate_state_key(tau_0=self.tau_0, schedule=self.schedule, decay=self.decay,
                                        tau_min=self.tau_min, epochs=self.epochs)

    def value(self, epoch: int, epochs: Optional[int] = None) -> float:
        """Temperature for 0-based ``epoch``."""
        check_int("epoch", epoch, low=0)
        if self.schedule == "exponential":
            return max(self.tau_min, self.tau_0 * self.decay ** epoch)
        epochs = self.epochs if epochs is None else epochs
        if epochs is None:
            raise ValueError("the linear schedule needs epochs >= 1 (or Trainer(max_epochs)), got None")
        check_int("epochs", epochs, low=1)
        return self.tau_0 + (self.tau_min - self.tau_0) * min(epoch, epochs) / epochs

    def scheduled_value(self, epoch: int, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> float:
        if not hasattr(pl_module, "temperature"):
            raise AttributeError(f"TemperatureAnnealing needs a writable `temperature` on {type(pl_module).__name__}")
        return self.value(epoch, self.schedule_epochs(trainer) if self.schedule == "linear" else None)

    def apply(self, pl_module: "pl.LightningModule", value: float) -> None:
        pl_module.temperature = value

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

from numbers import Real
from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

__all__ = ["TemperatureAnnealing"]

SCHEDULES = ("exponential", "linear")


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not float(value) > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


class TemperatureAnnealing(Callback):
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

    def __init__(self, tau_0: float = 1.0, schedule: str = "linear", decay: float = 0.97,
                 tau_min: float = 0.03, epochs: Optional[int] = None) -> None:
        super().__init__()
        self.tau_0 = _positive("tau_0", tau_0)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.schedule = schedule
        if isinstance(decay, bool) or not isinstance(decay, Real) or not 0 < float(decay) <= 1:
            raise ValueError(f"decay must be a number in (0, 1], got {decay!r}")
        self.decay = float(decay)
        self.tau_min = _positive("tau_min", tau_min)
        if self.tau_min > self.tau_0:
            raise ValueError(f"tau_min must be <= tau_0={self.tau_0}, got {tau_min!r}")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs must be an int >= 1 or None, got {epochs!r}")
        self.epochs = epochs
        self.last_epoch: Optional[int] = None
        self.last_value: Optional[float] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(tau_0=self.tau_0, schedule=self.schedule, decay=self.decay,
                                        tau_min=self.tau_min, epochs=self.epochs)

    def value(self, epoch: int, epochs: Optional[int] = None) -> float:
        """Temperature for 0-based ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if self.schedule == "exponential":
            return max(self.tau_min, self.tau_0 * self.decay ** epoch)
        epochs = self.epochs if epochs is None else epochs
        if epochs is None or isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"the linear schedule needs epochs >= 1 (or Trainer(max_epochs)), got {epochs!r}")
        return self.tau_0 + (self.tau_min - self.tau_0) * min(epoch, epochs) / epochs

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not hasattr(pl_module, "temperature"):
            raise AttributeError(f"TemperatureAnnealing needs a writable `temperature` on {type(pl_module).__name__}")
        epochs = self.epochs if self.epochs is not None else trainer.max_epochs
        if self.schedule == "linear" and (epochs is None or epochs < 1):
            raise ValueError(f"TemperatureAnnealing(schedule='linear', epochs=None) uses Trainer(max_epochs), "
                             f"which is {epochs!r}")
        tau = self.value(trainer.current_epoch, epochs if self.schedule == "linear" else None)
        pl_module.temperature = tau
        self.last_epoch, self.last_value = trainer.current_epoch, tau
        pl_module.log("snas/temperature", tau, on_step=False, on_epoch=True)

    def state_dict(self) -> Dict[str, Any]:
        return {"last_epoch": self.last_epoch, "last_value": self.last_value}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.last_epoch = state_dict.get("last_epoch")
        self.last_value = state_dict.get("last_value")

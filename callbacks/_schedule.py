"""The shape of a per-epoch schedule callback, written once.

:class:`ScheduledDropPath`, :class:`SkipDropoutDecay` and :class:`TemperatureAnnealing` each set
one value on the module at every training-epoch start, a pure function of the epoch (hence the
same on every rank). This base runs the hook, remembers the last value set (the checkpointed
state: the schedule itself needs no state) and resolves the schedule's length.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_debug

__all__ = ["EpochSchedule"]


class EpochSchedule(Callback):
    """Set ``value_at(epoch)`` on the module at every training-epoch start; log it as ``metric``.

    Subclasses define :meth:`scheduled_value` and :meth:`apply`, and may name a ``metric`` to log
    (logged without a sync: every rank computes the same value).

    Args:
        epochs: the schedule's length, already validated by the subclass; ``None`` uses
            ``Trainer(max_epochs)`` (:meth:`schedule_epochs`).
    """

    metric: Optional[str] = None

    def __init__(self, epochs: Optional[int]) -> None:
        super().__init__()
        self.epochs = epochs
        self.last_epoch: Optional[int] = None
        self.last_value: Optional[float] = None

    def schedule_epochs(self, trainer: "pl.Trainer") -> int:
        """``epochs``, or ``Trainer(max_epochs)``; an unbounded trainer needs explicit ``epochs``."""
        if self.epochs is not None:
            return self.epochs
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            name = type(self).__name__
            raise ValueError(
                f"{name}(epochs=None) uses Trainer(max_epochs), which is {max_epochs!r}; "
                f"set Trainer(max_epochs=...) or {name}(epochs=...)"
            )
        return int(max_epochs)

    def scheduled_value(self, epoch: int, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> float:
        """The value for 0-based ``epoch`` of this run."""
        raise NotImplementedError(f"{type(self).__name__} must define scheduled_value()")

    def apply(self, pl_module: "pl.LightningModule", value: float) -> None:
        """Hand ``value`` to the module."""
        raise NotImplementedError(f"{type(self).__name__} must define apply()")

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        epoch = trainer.current_epoch
        value = self.scheduled_value(epoch, trainer, pl_module)
        self.apply(pl_module, value)
        self.last_epoch, self.last_value = epoch, value
        rank_zero_debug(f"{type(self).__name__}: epoch {epoch}: {value:.6f}")
        if self.metric is not None:
            pl_module.log(self.metric, value, on_step=False, on_epoch=True)

    def state_dict(self) -> Dict[str, Any]:
        return {"last_epoch": self.last_epoch, "last_value": self.last_value}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the last value set; the schedule itself is a pure function of the epoch."""
        self.last_epoch = state_dict.get("last_epoch")
        self.last_value = state_dict.get("last_value")

"""Linearly scheduled drop path for evaluation networks.

ScheduledDropPath (Zoph et al., "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, Sec. 4) raises the drop-path probability linearly during training. The
DARTS evaluation code (Liu et al., ICLR 2019, Sec. 3.2) sets it at the start of every epoch to
``max_prob * epoch / epochs``: 0 in the first epoch, ``max_prob * (epochs - 1) / epochs`` in the
last one.
"""

from __future__ import annotations

from numbers import Real
from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_debug

__all__ = ["ScheduledDropPath"]


def _check_prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_epochs(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class ScheduledDropPath(Callback):
    """Set ``pl_module.drop_path_prob = max_prob * epoch / epochs`` at the start of each training epoch.

    The module needs a writable ``drop_path_prob`` attribute (e.g. :class:`~lit_automl.nas.Retrain`,
    whose property forwards it to the network, which reads it on every forward).

    Args:
        drop_path_prob: the maximum probability ``max_prob``; ``None`` reads the module's configured
            maximum ``pl_module.hparams.drop_path_prob`` at setup.
        epochs: schedule length; ``None`` uses ``Trainer(max_epochs)``. Epochs past it keep ``max_prob``.
    """

    def __init__(self, drop_path_prob: Optional[float] = None, epochs: Optional[int] = None) -> None:
        super().__init__()
        self.drop_path_prob = None if drop_path_prob is None else _check_prob("drop_path_prob", drop_path_prob)
        self.epochs = None if epochs is None else _check_epochs("epochs", epochs)
        self.max_prob: Optional[float] = self.drop_path_prob  # resolved at setup when None
        self.last_epoch: Optional[int] = None
        self.last_value: Optional[float] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(drop_path_prob=self.drop_path_prob, epochs=self.epochs)

    # ----------------------------------------------------------------- the schedule
    def value(self, epoch: int, epochs: int, max_prob: Optional[float] = None) -> float:
        """Drop-path probability for 0-based ``epoch`` of a run of ``epochs``: linear from 0, capped at ``max_prob``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        _check_epochs("epochs", epochs)
        if max_prob is None:
            max_prob = self.max_prob
        if max_prob is None:
            raise ValueError(
                "ScheduledDropPath(drop_path_prob=None) learns its maximum from the module at setup; "
                "pass max_prob=... or drop_path_prob=... to compute values before that"
            )
        max_prob = _check_prob("max_prob", max_prob)
        return max_prob * min(epoch, epochs) / epochs

    def _epochs(self, trainer: "pl.Trainer") -> int:
        if self.epochs is not None:
            return self.epochs
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"ScheduledDropPath(epochs=None) uses Trainer(max_epochs), which is {max_epochs!r}; "
                "set Trainer(max_epochs=...) or ScheduledDropPath(epochs=...)"
            )
        return max_epochs

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit":
            return
        name = type(pl_module).__name__
        if not hasattr(pl_module, "drop_path_prob"):
            raise AttributeError(
                f"ScheduledDropPath sets `drop_path_prob` on the module, but {name} has no `drop_path_prob` "
                "attribute; add one that the network reads every forward"
            )
        if self.drop_path_prob is None:
            hparams = getattr(pl_module, "hparams", {})
            if "drop_path_prob" not in hparams:
                raise ValueError(
                    f"ScheduledDropPath(drop_path_prob=None) reads the maximum from {name}.hparams.drop_path_prob, "
                    f"which is not set; pass ScheduledDropPath(drop_path_prob=...) or save it with "
                    "save_hyperparameters()"
                )
            self.max_prob = _check_prob(f"{name}.hparams.drop_path_prob", hparams["drop_path_prob"])

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        epoch = trainer.current_epoch
        value = self.value(epoch, self._epochs(trainer))
        pl_module.drop_path_prob = value
        self.last_epoch, self.last_value = epoch, value
        rank_zero_debug(f"ScheduledDropPath: epoch {epoch}: drop_path_prob = {value:.6f}")

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {
            "drop_path_prob": self.drop_path_prob,
            "epochs": self.epochs,
            "max_prob": self.max_prob,
            "last_epoch": self.last_epoch,
            "last_value": self.last_value,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the last value set; the schedule itself is a pure function of the epoch."""
        self.last_epoch = state_dict.get("last_epoch")
        self.last_value = state_dict.get("last_value")
        if self.max_prob is None and state_dict.get("max_prob") is not None:
            self.max_prob = float(state_dict["max_prob"])

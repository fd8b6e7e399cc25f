"""Linearly scheduled drop path for evaluation networks.

ScheduledDropPath (Zoph et al., "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, Sec. 4) raises the drop-path probability linearly during training. The
DARTS evaluation code (Liu et al., ICLR 2019, Sec. 3.2) sets it at the start of every epoch to
``max_prob * epoch / epochs``: 0 in the first epoch, ``max_prob * (epochs - 1) / epochs`` in the
last one.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytorch_lightning as pl

from lit_automl._checks import check_int, check_real

from ._schedule import EpochSchedule
from ._settings import module_hparam

__all__ = ["ScheduledDropPath"]


class ScheduledDropPath(EpochSchedule):
    """Set ``pl_module.drop_path_prob = max_prob * epoch / epochs`` at the start of each training epoch.

    The module needs a writable ``drop_path_prob`` attribute (e.g. :class:`~lit_automl.nas.Retrain`,
    whose property forwards it to the network, which reads it on every forward).

    Args:
        drop_path_prob: the maximum probability ``max_prob``; ``None`` reads the module's configured
            maximum ``pl_module.hparams.drop_path_prob`` at setup.
        epochs: schedule length; ``None`` uses ``Trainer(max_epochs)``. Epochs past it keep ``max_prob``.
    """

    def __init__(self, drop_path_prob: Optional[float] = None, epochs: Optional[int] = None) -> None:
        super().__init__(None if epochs is None else check_int("epochs", epochs, low=1))
        self.drop_path_prob = (None if drop_path_prob is None
                               else check_real("drop_path_prob", drop_path_prob, low=0, high=1, high_open=True))
        self.max_prob: Optional[float] = self.drop_path_prob  # resolved at setup when None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(drop_path_prob=self.drop_path_prob, epochs=self.epochs)

    # ----------------------------------------------------------------- the schedule
    def value(self, epoch: int, epochs: int, max_prob: Optional[float] = None) -> float:
        """Drop-path probability for 0-based ``epoch`` of a run of ``epochs``: linear from 0, capped at ``max_prob``."""
        check_int("epoch", epoch, low=0)
        check_int("epochs", epochs, low=1)
        if max_prob is None:
            max_prob = self.max_prob
        if max_prob is None:
            raise ValueError(
                "ScheduledDropPath(drop_path_prob=None) learns its maximum from the module at setup; "
                "pass max_prob=... or drop_path_prob=... to compute values before that"
            )
        max_prob = check_real("max_prob", max_prob, low=0, high=1, high_open=True)
        return max_prob * min(epoch, epochs) / epochs

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
            value = module_hparam(pl_module, "drop_path_prob", "ScheduledDropPath", "drop_path_prob")
            self.max_prob = check_real(f"{name}.hparams.drop_path_prob", value, low=0, high=1, high_open=True)

    def scheduled_value(self, epoch: int, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> float:
        return self.value(epoch, self.schedule_epochs(trainer))

    def apply(self, pl_module: "pl.LightningModule", value: float) -> None:
        pl_module.drop_path_prob = value

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"drop_path_prob": self.drop_path_prob, "epochs": self.epochs, "max_prob": self.max_prob,
                **super().state_dict()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.max_prob is None and state_dict.get("max_prob") is not None:
            self.max_prob = float(state_dict["max_prob"])

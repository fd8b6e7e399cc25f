"""Decay of the dropout after ``skip_connect`` in a P-DARTS stage.

P-DARTS (Chen et al., ICCV 2019, Sec. 3.3) inserts operation-level dropout after every
``skip_connect`` of the supernet so that parameter-free paths cannot dominate early, and decays the
rate over the epochs of each stage (the paper states only that it is decayed gradually). The
authors' code sets, at the start of 0-based epoch ``e`` of an ``E``-epoch stage with the alphas
frozen for the first ``F`` epochs and initial rate ``p0``:

* ``e < F``:  ``p0 * (E - e - 1) / E`` (linear);
* ``e >= F``: ``p0 * exp(-decay * (e - F))`` with ``decay = 0.2`` (exponential, restarting at ``p0``).

This schedule is reproduced as is (including the jump back to ``p0`` when the alphas start
training). The rate is a deterministic function of the epoch, so it is identical on every rank.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from lit_automl._checks import check_int, check_real

from ._schedule import EpochSchedule
from ._settings import module_hparam

__all__ = ["SkipDropoutDecay", "skip_dropout_rate"]


def _rate(name: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    return check_real(name, value, low=0, high=1, high_open=True, allowed="a dropout rate in [0, 1)")


def skip_dropout_rate(epoch: int, initial: float, epochs: int, frozen_epochs: int, decay: float = 0.2) -> float:
    """Dropout rate after ``skip_connect`` for 0-based ``epoch`` of a stage (the authors' schedule, see the module doc)."""
    check_int("epoch", epoch, low=0)
    initial = _rate("initial", initial)
    check_int("epochs", epochs, low=1)
    check_int("frozen_epochs", frozen_epochs, low=0)
    if epoch < frozen_epochs:
        return max(0.0, initial * (epochs - epoch - 1) / epochs)
    return initial * math.exp(-check_real("decay", decay, low=0) * (epoch - frozen_epochs))


class SkipDropoutDecay(EpochSchedule):
    """Set ``pl_module.model.skip_dropout`` at every training-epoch start and log ``pdarts/skip_dropout``.

    Args:
        initial: initial rate in [0, 1); ``None`` reads the module's ``initial_skip_dropout``
            (P-DARTS: the rate of its stage, e.g. 0.0 / 0.4 / 0.7 on CIFAR-10).
        epochs: epochs of the stage; ``None`` uses ``Trainer(max_epochs)`` (25 in the paper).
        frozen_epochs: epochs before the alphas train; ``None`` reads the module's
            ``hparams.arch_warmup_epochs`` (10 in the paper).
        decay: exponential decay per epoch once the alphas train (0.2: the authors' code).

    The module needs ``model.skip_dropout`` (a writable rate, e.g.
    :class:`lit_automl.spaces.networks.SearchNetwork`).
    """

    metric = "pdarts/skip_dropout"

    def __init__(self, initial: Optional[float] = None, epochs: Optional[int] = None,
                 frozen_epochs: Optional[int] = None, decay: float = 0.2) -> None:
        super().__init__(None if epochs is None else check_int("epochs", epochs, low=1))
        self.initial = None if initial is None else _rate("initial", initial)
        self.frozen_epochs = None if frozen_epochs is None else check_int("frozen_epochs", frozen_epochs, low=0)
        self.decay = check_real("decay", decay, low=0)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(initial=self.initial, epochs=self.epochs, frozen_epochs=self.frozen_epochs,
                                        decay=self.decay)

    # ----------------------------------------------------------------- settings read from the run
    def initial_rate(self, pl_module: pl.LightningModule) -> float:
        """``initial``, or the module's ``initial_skip_dropout``."""
        if self.initial is not None:
            return self.initial
        if not hasattr(pl_module, "initial_skip_dropout"):
            raise AttributeError(
                f"SkipDropoutDecay(initial=None) reads `initial_skip_dropout` from the module, which "
                f"{type(pl_module).__name__} does not have; pass SkipDropoutDecay(initial=...)"
            )
        return _rate("initial_skip_dropout", pl_module.initial_skip_dropout)

    def warmup_epochs(self, pl_module: pl.LightningModule) -> int:
        """``frozen_epochs``, or the module's ``hparams.arch_warmup_epochs``."""
        if self.frozen_epochs is not None:
            return self.frozen_epochs
        value = module_hparam(pl_module, "arch_warmup_epochs", "SkipDropoutDecay", "frozen_epochs")
        return check_int("arch_warmup_epochs", value, low=0)

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(getattr(pl_module, "model", None), "skip_dropout"):
            raise AttributeError(f"SkipDropoutDecay needs `{type(pl_module).__name__}.model.skip_dropout` (a supernet)")
        rank_zero_info(
            f"SkipDropoutDecay: skip-connect dropout from {self.initial_rate(pl_module)} over "
            f"{self.schedule_epochs(trainer)} epochs, alphas frozen for {self.warmup_epochs(pl_module)}"
        )

    def scheduled_value(self, epoch: int, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        return skip_dropout_rate(epoch, self.initial_rate(pl_module), self.schedule_epochs(trainer),
                                 self.warmup_epochs(pl_module), self.decay)

    def apply(self, pl_module: pl.LightningModule, value: float) -> None:
        pl_module.model.skip_dropout = value

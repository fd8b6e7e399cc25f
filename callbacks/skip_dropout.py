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
from numbers import Real
from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_debug, rank_zero_info

__all__ = ["SkipDropoutDecay", "skip_dropout_rate"]


def _rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a dropout rate in [0, 1), got {value!r}")
    return float(value)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _decay(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not float(value) >= 0:
        raise ValueError(f"decay must be a number >= 0, got {value!r}")
    return float(value)


def skip_dropout_rate(epoch: int, initial: float, epochs: int, frozen_epochs: int, decay: float = 0.2) -> float:
    """Dropout rate after ``skip_connect`` for 0-based ``epoch`` of a stage (the authors' schedule, see the module doc)."""
    _count("epoch", epoch, 0)
    initial = _rate("initial", initial)
    _count("epochs", epochs, 1)
    _count("frozen_epochs", frozen_epochs, 0)
    if epoch < frozen_epochs:
        return max(0.0, initial * (epochs - epoch - 1) / epochs)
    return initial * math.exp(-_decay(decay) * (epoch - frozen_epochs))


class SkipDropoutDecay(Callback):
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

    def __init__(self, initial: Optional[float] = None, epochs: Optional[int] = None,
                 frozen_epochs: Optional[int] = None, decay: float = 0.2) -> None:
        super().__init__()
        self.initial = None if initial is None else _rate("initial", initial)
        self.epochs = None if epochs is None else _count("epochs", epochs, 1)
        self.frozen_epochs = None if frozen_epochs is None else _count("frozen_epochs", frozen_epochs, 0)
        self.decay = _decay(decay)
        self.last_epoch: Optional[int] = None
        self.last_value: Optional[float] = None

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

    def stage_epochs(self, trainer: pl.Trainer) -> int:
        """``epochs``, or ``Trainer(max_epochs)``."""
        if self.epochs is not None:
            return self.epochs
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"SkipDropoutDecay(epochs=None) uses Trainer(max_epochs), which is {max_epochs!r}; pass epochs=..."
            )
        return int(max_epochs)

    def warmup_epochs(self, pl_module: pl.LightningModule) -> int:
        """``frozen_epochs``, or the module's ``hparams.arch_warmup_epochs``."""
        if self.frozen_epochs is not None:
            return self.frozen_epochs
        value = getattr(pl_module, "hparams", {}).get("arch_warmup_epochs")
        if value is None:
            raise AttributeError(
                f"SkipDropoutDecay(frozen_epochs=None) reads `hparams.arch_warmup_epochs` from the module, which "
                f"{type(pl_module).__name__} does not have; pass SkipDropoutDecay(frozen_epochs=...)"
            )
        return _count("arch_warmup_epochs", value, 0)

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not hasattr(getattr(pl_module, "model", None), "skip_dropout"):
            raise AttributeError(f"SkipDropoutDecay needs `{type(pl_module).__name__}.model.skip_dropout` (a supernet)")
        rank_zero_info(
            f"SkipDropoutDecay: skip-connect dropout from {self.initial_rate(pl_module)} over "
            f"{self.stage_epochs(trainer)} epochs, alphas frozen for {self.warmup_epochs(pl_module)}"
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        p = skip_dropout_rate(epoch, self.initial_rate(pl_module), self.stage_epochs(trainer),
                              self.warmup_epochs(pl_module), self.decay)
        pl_module.model.skip_dropout = p
        self.last_epoch, self.last_value = epoch, p
        rank_zero_debug(f"SkipDropoutDecay: epoch {epoch}, skip-connect dropout {p:.4f}")
        # The same value on every rank (a function of the epoch): logged without a sync.
        pl_module.log("pdarts/skip_dropout", p, on_step=False, on_epoch=True)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"last_epoch": self.last_epoch, "last_value": self.last_value}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.last_epoch = state_dict.get("last_epoch")
        self.last_value = state_dict.get("last_value")

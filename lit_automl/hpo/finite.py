"""Refuse non-finite numbers in an HPO trial: its inputs, its training loss, its monitored metric.

A model fed NaN computes NaN logits, yet ``argmax`` still picks a class, so accuracy comes out a
finite ~0.1 and such a trial would be COMPLETE and could become the study's best. :class:`FiniteGuard`
stops the fit at the first training or validation batch holding NaN or infinity and at the first
non-finite training loss, raising an error the objective records as the trial's ``fail_reason``
(state FAIL, so never best, never in ``best.yaml``). One host sync per batch; turned off with
``hpo.check_finite: false`` (e.g. for inputs that hold ``-inf`` masks on purpose).
"""

from __future__ import annotations

from typing import Any, Mapping

import pytorch_lightning as pl
import torch

from lit_automl.nonfinite import non_finite_tensors

__all__ = ["FiniteGuard", "NonFiniteInputError", "NonFiniteMetricError", "non_finite_tensors"]

_OFF = "set hpo.check_finite: false if the non-finite values are intended"


class NonFiniteMetricError(ValueError):
    """A monitored metric or the training loss came out NaN or infinite."""


class NonFiniteInputError(ValueError):
    """A batch the model was given holds NaN or infinite values."""


class FiniteGuard(pl.Callback):
    """Raise at the first batch holding NaN / inf (training or validation) or a NaN / inf training loss."""

    def _refuse_non_finite(self, batch: Any, stage: str, trainer: pl.Trainer, batch_idx: int) -> None:
        bad = non_finite_tensors(batch)
        if bad:
            raise NonFiniteInputError(
                f"{stage} batch {batch_idx} of epoch {trainer.current_epoch} is not finite ({'; '.join(bad)}); {_OFF}"
            )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._refuse_non_finite(batch, "training", trainer, batch_idx)

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self._refuse_non_finite(batch, "validation", trainer, batch_idx)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.is_floating_point() and not bool(torch.isfinite(loss).all()):
            value = loss.item() if loss.numel() == 1 else loss.tolist()
            raise NonFiniteMetricError(
                f"training loss = {value} at epoch {trainer.current_epoch}, batch {batch_idx} is not finite; {_OFF}"
            )

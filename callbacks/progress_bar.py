"""Lightning's TQDM progress bar without ``v_num``: the logger's version folder is not a metric
(a recipe's ``version: search`` showed as ``v_num=arch``-like fragments next to the losses)."""

from __future__ import annotations

from typing import Any, Dict, Union

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

__all__ = ["RunProgressBar"]


class RunProgressBar(TQDMProgressBar):
    """:class:`TQDMProgressBar` (same arguments) whose metrics leave out the logger version."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Dict[str, Union[int, str, float, Dict[str, float]]]:
        metrics: Dict[str, Any] = dict(super().get_metrics(trainer, pl_module))
        metrics.pop("v_num", None)
        return metrics

"""One quiet single-process CPU Trainer for the tests (the DDP one is ``tests/ddp_harness.py``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger


def quiet_trainer(tmp_path, **kwargs: Any) -> pl.Trainer:
    """CPU, 1 device, a CSV logger in ``tmp_path``, no checkpoints / progress bar / summary, 2 training batches;
    ``kwargs`` override any of these."""
    options = dict(accelerator="cpu", devices=1, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2)
    options.update(kwargs)
    return pl.Trainer(**options)

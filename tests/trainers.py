"""One quiet single-process CPU Trainer for the tests (the DDP one is ``tests/ddp_harness.py``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger


def quiet_trainer(tmp_path, **kwargs: Any) -> pl.Trainer:
    """CPU, 1 device, a CSV logger in ``tmp_path``, no checkpoints / progress bar / summary, 2 training batches;
    ``kwargs`` override any of these."""
    options = dict(accelerator="cpu", devices=1, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2)
    options.update(kwargs)
    return pl.Trainer(**options)


class SyntheticImages(pl.LightningDataModule):
    """``n`` random 1x8x8 images with labels 0..9 (a fixed draw per ``seed``), training split only."""

    def __init__(self, n: int = 32, batch_size: int = 8, seed: int = 0):
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        x, y = torch.randn(self.n, 1, 8, 8, generator=g), torch.randint(0, 10, (self.n,), generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=self.batch_size)

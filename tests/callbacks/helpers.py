"""What the callback tests share: a tiny module recording a value per epoch, and resume plumbing.

The resume tests run :func:`tests.resume_harness.run_resumed`; :class:`Made` keeps every module a
factory builds (full, interrupted, resumed, in that order) so a test can also read the
interrupted run, and :func:`callback_of` / :func:`saved_state` find a callback and its state in
a trainer and a checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

import pytorch_lightning as pl
import torch

M = TypeVar("M", bound=pl.LightningModule)
C = TypeVar("C", bound=pl.Callback)


class EpochRecorder(pl.LightningModule):
    """A tiny regression module appending :meth:`observed` to ``seen`` at every training-epoch start.

    Callbacks' epoch-start hooks run before the module's, so ``seen`` holds what a callback set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: List[Any] = []

    def observed(self) -> Any:
        raise NotImplementedError

    def on_train_epoch_start(self) -> None:
        self.seen.append(self.observed())

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def fit_epochs(tmp_path, callback: pl.Callback, max_epochs: int, module: pl.LightningModule):
    """Fit ``module`` with ``callback`` for ``max_epochs`` of one batch; returns ``(module, trainer)``."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=1,
                         callbacks=[callback], logger=pl.loggers.CSVLogger(tmp_path), enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module)
    return module, trainer


class Made:
    """A module factory that keeps what it built: ``made[1]`` is the interrupted run of ``run_resumed``."""

    def __init__(self, factory: Callable[[], M]) -> None:
        self.factory = factory
        self.modules: List[pl.LightningModule] = []

    def __call__(self) -> pl.LightningModule:
        self.modules.append(self.factory())
        return self.modules[-1]

    @property
    def interrupted(self) -> pl.LightningModule:
        return self.modules[1]


def callback_of(trainer: pl.Trainer, cls: Type[C]) -> C:
    """The trainer's one callback of type ``cls``."""
    (found,) = [c for c in trainer.callbacks if isinstance(c, cls)]
    return found


def saved_state(checkpoint: str, callback: pl.Callback) -> Optional[Dict[str, Any]]:
    """``callback``'s state as stored in ``checkpoint``."""
    return torch.load(checkpoint, weights_only=False)["callbacks"][callback.state_key]

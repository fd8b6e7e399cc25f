"""``last.ckpt`` after every training step, for runs whose steps are long and have no global step to count.

A sample-based search (:class:`~lit_automl.nas.child_search.ChildSearch`) spends minutes to hours in one
training step (its children's evaluations), and a strategy without parameters never steps an optimiser, so
Lightning's ``trainer.global_step`` stays 0 and ``ModelCheckpoint(every_n_train_steps=...)`` never fires.
This callback writes the checkpoint itself at the end of every ``every_n_steps``-th training batch, through
``trainer.save_checkpoint`` (collective under DDP; rank 0 writes) into a temporary file that then replaces
``<dirpath>/last.ckpt``, so a kill during the write leaves the previous checkpoint whole. Resume with
``--ckpt_path <dirpath>/last.ckpt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import pytorch_lightning as pl

from lit_automl._checks import check_int

__all__ = ["StepCheckpoint"]


class StepCheckpoint(pl.Callback):
    """Save ``last.ckpt`` every ``every_n_steps`` training batches (module docstring).

    Args:
        dirpath: the folder (``None``: ``<trainer.log_dir or default_root_dir>/checkpoints``, where
            ``ModelCheckpoint`` writes too).
        every_n_steps: training batches between saves.
    """

    def __init__(self, dirpath: Optional[Union[str, Path]] = None, every_n_steps: int = 1) -> None:
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.every_n_steps = check_int("every_n_steps", every_n_steps, low=1)
        self.steps = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=str(self.dirpath), every_n_steps=self.every_n_steps)

    def folder(self, trainer: pl.Trainer) -> Path:
        """Where ``last.ckpt`` goes (call on every rank: ``trainer.log_dir`` is a collective under DDP)."""
        if self.dirpath is not None:
            return self.dirpath
        return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.steps += 1
        if self.steps % self.every_n_steps:
            return
        folder = self.folder(trainer)
        tmp = folder / f".last.ckpt.{os.getpid()}.tmp"
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, folder / "last.ckpt")

    def state_dict(self) -> Dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])

"""The one DDP test harness: fit a module with 2 CPU processes and return what each rank saw.

``ddp_spawn`` (not ``ddp``) because plain ``ddp`` re-launches the whole pytest command for rank 1.
Every method's DDP test calls :func:`fit_ddp` and compares the per-rank results it returns.
Modules, datamodules and callbacks handed to it must be defined at module level (picklable).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.multiprocessing.spawn import ProcessExitedException


class RecordRank(pl.Callback):
    """Saves, per rank, the final state dict and a fingerprint of every training batch."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.fingerprints: List[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        tensors = [t for t in torch.utils._pytree.tree_leaves(batch) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        self.fingerprints.append(float(sum(t.double().sum() for t in tensors)))

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state_dict": state, "fingerprints": self.fingerprints, "rank": trainer.global_rank,
                    "world_size": trainer.world_size},
                   Path(self.dirpath) / f"rank{trainer.global_rank}.pt")


def fit_ddp(
    module: pl.LightningModule,
    datamodule: Optional[pl.LightningDataModule],
    tmp_path: Path,
    devices: int = 2,
    find_unused_parameters: bool = False,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> List[Dict[str, Any]]:
    """Fit under ``ddp_spawn`` on ``devices`` CPU processes (gloo); one result dict per rank."""
    trainer_kwargs = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0, **trainer_kwargs}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=DDPStrategy(start_method="spawn", find_unused_parameters=find_unused_parameters, process_group_backend="gloo"),
        callbacks=[RecordRank(str(tmp_path)), *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    paths = [Path(tmp_path) / f"rank{r}.pt" for r in range(devices)]
    try:
        trainer.fit(module, datamodule=datamodule)
    except ProcessExitedException as err:
        # gloo sometimes aborts a worker while the process exits ("terminate called without an active
        # exception"), after training ended. Accept the run only when every rank wrote its final state.
        if err.signal_name != "SIGABRT" or not all(p.exists() for p in paths):
            raise
        warnings.warn(f"a DDP worker aborted at exit after training finished on every rank ({err}); results kept")
    return [torch.load(p, weights_only=False) for p in paths]

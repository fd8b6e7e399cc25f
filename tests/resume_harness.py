"""The one resume harness: a fit interrupted and resumed from its checkpoint must equal an uninterrupted one.

Every module's resume test calls :func:`run_resumed` with factories for a fresh module and
datamodule (each run starts from ``seed_everything(seed)``, as a user's script would) and then
compares what it cares about, usually with :func:`assert_same_state`. Three fits run:

* ``full``: ``trainer_kwargs`` to the end;
* ``part``: the same, with ``stop`` overriding the trainer arguments (e.g. ``{"max_epochs": 1}``),
  saving ``last.ckpt``;
* ``resumed``: a fresh module and datamodule fitted with ``trainer_kwargs`` from that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint


@dataclass
class ResumeRuns:
    """The uninterrupted and the resumed fit (modules and trainers), and the checkpoint resumed from."""

    full: pl.LightningModule
    resumed: pl.LightningModule
    full_trainer: pl.Trainer
    resumed_trainer: pl.Trainer
    checkpoint: str


def _fit(make_module: Callable[[], pl.LightningModule], make_data: Callable[[], Optional[pl.LightningDataModule]],
         folder: Path, seed: int, callbacks: Callable[[], Sequence[pl.Callback]], ckpt_path: Optional[str],
         trainer_kwargs: Mapping[str, Any]):
    pl.seed_everything(seed, verbose=False)
    module, data = make_module(), make_data()
    checkpoint = ModelCheckpoint(dirpath=folder, save_last=True)
    options: Dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                                   enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=folder)
    options.update(trainer_kwargs)
    trainer = pl.Trainer(callbacks=[checkpoint, *callbacks()], enable_checkpointing=True, **options)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module, trainer, checkpoint.last_model_path


def run_resumed(
    make_module: Callable[[], pl.LightningModule],
    make_data: Callable[[], Optional[pl.LightningDataModule]],
    tmp_path: Path,
    stop: Mapping[str, Any],
    *,
    seed: int = 0,
    callbacks: Callable[[], Sequence[pl.Callback]] = list,
    **trainer_kwargs: Any,
) -> ResumeRuns:
    """Fit uninterrupted, fit until ``stop``, resume from that checkpoint; see the module docstring.

    ``callbacks`` builds fresh extra callbacks for each fit (callbacks with state are resumed too).
    """
    tmp_path = Path(tmp_path)
    full, full_trainer, _ = _fit(make_module, make_data, tmp_path / "full", seed, callbacks, None, trainer_kwargs)
    _, _, last = _fit(make_module, make_data, tmp_path / "part", seed, callbacks, None, {**trainer_kwargs, **stop})
    if not last:
        raise AssertionError(f"the interrupted fit ({dict(stop)}) saved no last checkpoint")
    resumed, resumed_trainer, _ = _fit(make_module, make_data, tmp_path / "resumed", seed, callbacks, last,
                                       trainer_kwargs)
    return ResumeRuns(full, resumed, full_trainer, resumed_trainer, last)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module, *, rtol: float = 0.0, atol: float = 0.0,
                      keys: Optional[Sequence[str]] = None) -> None:
    """Every state-dict entry (or those named in ``keys``) of ``a`` and ``b`` is equal within the tolerances."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), f"state keys differ: {sorted(set(sa) ^ set(sb))}"
    for key in keys if keys is not None else sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=rtol, atol=atol, msg=lambda m, k=key: f"{k}: {m}")

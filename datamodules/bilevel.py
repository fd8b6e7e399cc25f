"""Paired weight/architecture batches for bilevel (DARTS-style) search.

DARTS (Liu et al., ICLR 2019, Sec. 3.1.1 and the search setup of Sec. 3.2) splits
the CIFAR-10 *training* set into two equal halves: one trains the network weights
``w`` (the "train" half), the other the architecture parameters ``alpha`` (the
"val" half); the official test set is only used for monitoring.
:class:`BilevelDataModule` applies that protocol to any datamodule exposing a
``train_dataset``.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader

from lit_automl._checks import ArgumentTypeError, check_choice, check_int, check_real

from .sampling import EpochSeededSampler, mix_seed

__all__ = ["BilevelDataModule", "PAIRING_MODES"]

PAIRING_MODES = ("min_size", "max_size_cycle")
"""How the two halves are paired per epoch (see :class:`BilevelDataModule`)."""


class BilevelDataModule(pl.LightningDataModule):
    """Split a datamodule's ``train_dataset`` into a weight half and an architecture half.

    Split rule: the training indices are permuted with a generator seeded from
    ``seed`` (the permutation does not depend on the epoch); the first
    ``floor(train_portion * n)`` permuted indices form the ``"train"`` (weight)
    half, the rest the ``"val"`` (architecture) half. DARTS itself takes the first
    half in index order, which is equivalent on CIFAR-10 (its files are already
    shuffled); permuting also protects datasets stored sorted by class.

    ``train_dataloader()`` returns a ``CombinedLoader({"train": ..., "val": ...},
    mode=mode)`` so each training step receives ``{"train": (x, y), "val": (x, y)}``;
    with ``mode="min_size"`` (default) an epoch is as long as the shorter half.
    Each half has its own :class:`EpochSeededSampler` with a different derived seed. Both halves use the wrapped module's training transform, as in
    DARTS. ``val_dataloader()`` / ``test_dataloader()`` delegate to the wrapped
    module's held-out data for monitoring.

    Args:
        datamodule: the data to split; must set ``train_dataset`` in ``setup``.
        train_portion: fraction of the training set used for the weights, in (0, 1).
        batch_size: batch size of both halves; ``None`` uses ``datamodule.batch_size``.
        seed: seeds the split and (via derived seeds) both samplers.
        mode: how the halves are paired (Lightning's ``CombinedLoader`` modes): ``"min_size"`` (DARTS:
            an epoch is as long as the shorter half) or ``"max_size_cycle"`` (an epoch is as long as the
            longer half, the shorter one restarts: ENAS's 45k / 5k split, where an epoch is one pass over
            the weights' 45k and the controller's 5k are cycled).
    """

    def __init__(
        self,
        datamodule: pl.LightningDataModule,
        train_portion: float = 0.5,
        batch_size: int | None = None,
        seed: int = 0,
        mode: str = "min_size",
    ) -> None:
        super().__init__()
        if not isinstance(datamodule, pl.LightningDataModule):
            raise ArgumentTypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}")
        self.train_portion = check_real("train_portion", train_portion, low=0, high=1, low_open=True, high_open=True,
                                        allowed="a float in the open interval (0, 1)")
        if batch_size is None:
            inner = getattr(datamodule, "batch_size", None)
            try:
                batch_size = check_int("batch_size", inner, low=1)
            except ValueError:
                raise ValueError(
                    f"batch_size=None takes the wrapped {type(datamodule).__name__}.batch_size, which is "
                    f"{inner!r}; pass a positive int batch_size explicitly"
                ) from None
        else:
            batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int or None")
        self.datamodule = datamodule
        self.batch_size = batch_size
        self.seed = check_int("seed", seed)
        self.mode = check_choice("mode", mode, PAIRING_MODES, sort=False)
        self.weight_indices: list[int] | None = None
        self.arch_indices: list[int] | None = None

    # Attributes models and recipes read from the data.
    @property
    def num_classes(self) -> int:
        return self._forward("num_classes")

    @property
    def in_channels(self) -> int:
        return self._forward("in_channels")

    @property
    def image_size(self) -> int:
        return self._forward("image_size")

    @property
    def val_dataset(self) -> Any:
        """The wrapped module's held-out dataset (monitoring only)."""
        return getattr(self.datamodule, "val_dataset", None)

    def _forward(self, name: str) -> Any:
        if not hasattr(self.datamodule, name):
            raise AttributeError(f"the wrapped {type(self.datamodule).__name__} has no attribute {name!r}")
        return getattr(self.datamodule, name)

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Set up the wrapped module and compute the two disjoint index halves."""
        self.datamodule.setup(stage)
        if self.weight_indices is not None:
            return
        dataset = getattr(self.datamodule, "train_dataset", None)
        if dataset is None:
            raise RuntimeError(
                f"{type(self.datamodule).__name__}.setup() did not set a train_dataset; BilevelDataModule needs one to split"
            )
        n = len(dataset)
        n_weights = math.floor(self.train_portion * n)
        if n_weights == 0 or n_weights == n:
            raise ValueError(
                f"train_portion={self.train_portion} of {n} training examples leaves an empty half "
                f"({n_weights} for the weights, {n - n_weights} for the architecture); choose a value that keeps both non-empty"
            )
        generator = torch.Generator()
        generator.manual_seed(mix_seed(self.seed, 0))
        perm = torch.randperm(n, generator=generator).tolist()
        self.weight_indices = perm[:n_weights]
        self.arch_indices = perm[n_weights:]

    def _half_loader(self, indices: list[int], stream: int) -> DataLoader:
        num_workers = getattr(self.datamodule, "num_workers", 0)
        return DataLoader(
            self.datamodule.train_dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(indices, seed=mix_seed(self.seed, stream)),
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    def train_dataloader(self) -> CombinedLoader:
        if self.weight_indices is None or self.arch_indices is None:
            raise RuntimeError("BilevelDataModule.setup() must be called before train_dataloader()")
        loaders = {
            "train": self._half_loader(self.weight_indices, stream=1),
            "val": self._half_loader(self.arch_indices, stream=2),
        }
        return CombinedLoader(loaders, mode=self.mode)

    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()

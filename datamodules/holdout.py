"""Hold a validation split out of a datamodule's training set, so search rewards never see the test set.

NAS-RL rewards children with the accuracy on "5,000 examples randomly sampled from the training
set" (Zoph & Le, ICLR 2017, Sec. 4.1); NASNet does the same (Zoph et al., CVPR 2018, Sec. 4).
:class:`HoldoutDataModule` wraps any datamodule with ``train_dataset`` / ``val_dataset`` after
``setup``: training uses the rest of the training set, validation the held-out examples, seen
through the inner validation set's transform when the datasets have a ``transform`` attribute
(no augmentation on the held-out images). ``test_dataloader`` is the inner validation set (for
CIFAR and digits: the held-out test split).
"""

from __future__ import annotations

import copy
from typing import Optional, Union

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lit_automl._checks import ArgumentTypeError, check_int, check_real

from .sampling import EpochSeededSampler

__all__ = ["HoldoutDataModule"]


class HoldoutDataModule(pl.LightningDataModule):
    """Train on ``train - holdout``, validate on ``holdout`` (a seeded random subset of the training set).

    Args:
        datamodule: the wrapped datamodule (its ``batch_size`` / ``num_workers`` are reused).
        val_size: held-out examples: an int count, or a float fraction in (0, 1).
        seed: the split's seed (and the training order's).
    """

    def __init__(self, datamodule: pl.LightningDataModule, val_size: Union[int, float] = 5000, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(datamodule, pl.LightningDataModule):
            raise ArgumentTypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}")
        allowed = "an int >= 1 or a float in (0, 1)"
        if isinstance(val_size, float):
            self.val_size: Union[int, float] = check_real("val_size", val_size, low=0, high=1, low_open=True,
                                                          high_open=True, allowed=allowed)
        else:
            self.val_size = check_int("val_size", val_size, low=1, allowed=allowed)
        self.datamodule = datamodule
        self.seed = check_int("seed", seed)
        for name in ("num_classes", "in_channels", "image_size", "batch_size"):
            if hasattr(datamodule, name):
                setattr(self, name, getattr(datamodule, name))
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None
        self.test_dataset: Optional[Dataset] = None

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        self.datamodule.setup(stage)
        full = getattr(self.datamodule, "train_dataset", None)
        if full is None:
            raise ValueError(f"{type(self.datamodule).__name__} has no train_dataset after setup(); cannot hold a split out")
        n = len(full)
        k = self.val_size if isinstance(self.val_size, int) else int(round(self.val_size * n))
        if not 1 <= k < n:
            raise ValueError(f"val_size={self.val_size!r} holds out {k} of {n} training examples; need 1 <= k < {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        self.holdout_indices, self.train_indices = sorted(perm[:k]), sorted(perm[k:])
        self.train_dataset = Subset(full, self.train_indices)
        inner_val = getattr(self.datamodule, "val_dataset", None)
        held = full
        if hasattr(full, "transform") and inner_val is not None and hasattr(inner_val, "transform"):
            held = copy.copy(full)
            held.transform = inner_val.transform  # evaluation view: no augmentation
        self.val_dataset = Subset(held, self.holdout_indices)
        self.test_dataset = inner_val

    def _loader(self, dataset: Optional[Dataset], shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("HoldoutDataModule.setup() must be called before requesting a dataloader")
        batch_size = int(getattr(self.datamodule, "batch_size", 64))
        workers = int(getattr(self.datamodule, "num_workers", 0))
        sampler = EpochSeededSampler(len(dataset), seed=self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)

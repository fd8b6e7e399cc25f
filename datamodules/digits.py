"""scikit-learn's bundled 8x8 handwritten digits as a LightningDataModule.

The data (1,797 images, 10 classes) ships inside scikit-learn, so this module
needs no download and is the default data set for fast tests and CPU smoke runs
of the NAS / HPO recipes.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from .sampling import EpochSeededSampler

__all__ = ["DigitsDataModule"]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


class DigitsDataModule(pl.LightningDataModule):
    """8x8 digits as float ``1 x 8 x 8`` images with a seeded stratified hold-out split.

    Pixels (0..16) are scaled to [0, 1] and, if ``normalize``, standardised with the
    mean/std of the *training* split (a single scalar each, stored as ``mean`` /
    ``std``) so no test information leaks into preprocessing. ``val_dataset`` is the
    held-out split and serves both ``val_dataloader`` and ``test_dataloader``.
    The train loader uses :class:`EpochSeededSampler` so the batch order is a pure
    function of ``(seed, epoch)``.
    """

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 8

    def __init__(
        self,
        batch_size: int = 64,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.batch_size = _positive_int(batch_size, "batch_size")
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be a float in the open interval (0, 1), got {test_fraction!r}")
        self.test_fraction = float(test_fraction)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.num_workers = _non_negative_int(num_workers, "num_workers")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool (True or False), got {normalize!r}")
        self.normalize = normalize
        self.mean: float | None = None
        self.std: float | None = None
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        # Positions in sklearn's load_digits() order, kept for provenance / leakage checks.
        self.train_indices: list[int] | None = None
        self.test_indices: list[int] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load and split the data (idempotent; every stage gets both splits)."""
        if self.train_dataset is not None:
            return
        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(bunch.target, dtype=torch.long)
        train_idx, test_idx = train_test_split(
            torch.arange(len(labels)).numpy(),
            test_size=self.test_fraction,
            random_state=self.seed,
            shuffle=True,
            stratify=labels.numpy(),
        )
        train_idx = torch.as_tensor(train_idx, dtype=torch.long)
        test_idx = torch.as_tensor(test_idx, dtype=torch.long)
        x_train, x_test = images[train_idx], images[test_idx]
        if self.normalize:
            mean, std = x_train.mean(), x_train.std()
            self.mean, self.std = float(mean), float(std)
            x_train = (x_train - mean) / std
            x_test = (x_test - mean) / std
        self.train_dataset = TensorDataset(x_train, labels[train_idx])
        self.val_dataset = TensorDataset(x_test, labels[test_idx])
        self.train_indices, self.test_indices = train_idx.tolist(), test_idx.tolist()

    def _require_setup(self) -> None:
        if self.train_dataset is None or self.val_dataset is None:
            raise RuntimeError("DigitsDataModule.setup() must be called before requesting a dataloader")

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        sampler = EpochSeededSampler(len(self.train_dataset), seed=self.seed)
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return DataLoader(self.val_dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

"""scikit-learn's bundled 8x8 handwritten digits as a LightningDataModule.

The data (1,797 images, 10 classes) ships inside scikit-learn, so this module
needs no download and is the default data set for fast tests and CPU smoke runs
of the NAS / HPO recipes.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from lit_automl._checks import check_bool, check_int, check_real

from .sampling import SeededTrainValLoaders

__all__ = ["DigitsDataModule"]


class DigitsDataModule(SeededTrainValLoaders, pl.LightningDataModule):
    """8x8 digits as float ``1 x 8 x 8`` images with a seeded stratified hold-out split.

    Pixels (0..16) are scaled to [0, 1] and, if ``normalize``, standardised with the
    mean/std of the *training* split (a single scalar each, stored as ``mean`` /
    ``std``) so no test information leaks into preprocessing. ``val_dataset`` is the
    held-out split and serves both ``val_dataloader`` and ``test_dataloader``.
    The train loader uses :class:`~lit_automl.datamodules.EpochSeededSampler` so the batch order is a pure
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
        self.batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int")
        self.test_fraction = check_real("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True,
                                        allowed="a float in the open interval (0, 1)")
        self.seed = check_int("seed", seed)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        normalize = check_bool("normalize", normalize, allowed="a bool (True or False)")
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
        from sklearn.datasets import load_digits  # scikit-learn (and SciPy) only when data is loaded
        from sklearn.model_selection import train_test_split

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

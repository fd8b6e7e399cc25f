"""Data modules for lit_automl: digits (bundled), CIFAR-10/100 (official pickles) and the DARTS bilevel split."""

from .bilevel import BilevelDataModule
from .cifar import (
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR100_MD5,
    CIFAR100_URL,
    CIFAR10DataModule,
    CIFAR100DataModule,
    CIFARDataset,
    download_cifar,
    read_cifar,
)
from .digits import DigitsDataModule
from .holdout import HoldoutDataModule
from .sampling import EpochSeededSampler
from .transforms import Compose, Cutout, Normalize, RandomCrop, RandomHorizontalFlip

__all__ = [
    "BilevelDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "CIFARDataset",
    "Compose",
    "Cutout",
    "DigitsDataModule",
    "EpochSeededSampler",
    "HoldoutDataModule",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "download_cifar",
    "read_cifar",
]

# Meta-learning task datamodules (episodic N-way K-shot classification, sinusoid regression).
from .episodic import (  # noqa: E402
    DigitsTasksDataModule,
    EpisodeDataset,
    EpisodeIndices,
    EpisodeSampler,
    EpisodicDataModule,
    TaskData,
    collate_episodes,
)
from .omniglot import OMNIGLOT_MD5, OMNIGLOT_URL, OmniglotDataModule, download_omniglot, read_omniglot  # noqa: E402
from .sinusoid import SinusoidDataModule, SinusoidTaskDataset  # noqa: E402

__all__ += [
    "DigitsTasksDataModule",
    "EpisodeDataset",
    "EpisodeIndices",
    "EpisodeSampler",
    "EpisodicDataModule",
    "OMNIGLOT_MD5",
    "OMNIGLOT_URL",
    "OmniglotDataModule",
    "SinusoidDataModule",
    "SinusoidTaskDataset",
    "TaskData",
    "collate_episodes",
    "download_omniglot",
    "read_omniglot",
]

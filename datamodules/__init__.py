"""Data modules for lit_automl: digits (bundled), CIFAR-10/100, MNIST and the DARTS bilevel split."""

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
from .digits_tasks import DigitsTasksDataModule  # noqa: E402
from .episodes import EpisodeDataset, EpisodeIndices, EpisodeSampler, collate_episodes  # noqa: E402
from .omniglot import OMNIGLOT_MD5, OMNIGLOT_URL, OmniglotDataModule, download_omniglot, read_omniglot  # noqa: E402
from .sinusoid import SinusoidDataModule, SinusoidTaskDataset  # noqa: E402
from .tasks import EpisodicDataModule, FewShotDataModule, TaskData, TaskDataModule  # noqa: E402

__all__ += [
    "DigitsTasksDataModule",
    "EpisodeDataset",
    "EpisodeIndices",
    "EpisodeSampler",
    "EpisodicDataModule",
    "FewShotDataModule",
    "OMNIGLOT_MD5",
    "OMNIGLOT_URL",
    "OmniglotDataModule",
    "SinusoidDataModule",
    "SinusoidTaskDataset",
    "TaskData",
    "TaskDataModule",
    "collate_episodes",
    "download_omniglot",
    "read_omniglot",
]

# Word-level Penn Treebank language modelling (BPTT windows) for recurrent-cell search.
from .ptb import PTB_MD5, PTB_URL, BPTTWindows, LMBatch, PTBDataModule, batchify, download_ptb, get_batch, perplexity, read_ptb  # noqa: E402

__all__ += [
    "BPTTWindows",
    "LMBatch",
    "PTBDataModule",
    "PTB_MD5",
    "PTB_URL",
    "batchify",
    "download_ptb",
    "get_batch",
    "perplexity",
    "read_ptb",
]

# Bilevel search on Penn Treebank: training windows paired with the validation split's.
from .ptb import SearchWindows  # noqa: E402

__all__ += ["SearchWindows"]

# MNIST from the official IDX files (the L2L paper's MLP optimisee data).
from .mnist import MNIST_MD5, MNIST_URL, MNISTDataModule, download_mnist, read_idx, read_mnist  # noqa: E402

__all__ += ["MNIST_MD5", "MNIST_URL", "MNISTDataModule", "download_mnist", "read_idx", "read_mnist"]

"""Samplers whose data order is a pure function of ``(seed, epoch)``.

A search that is interrupted and resumed from a checkpoint should see exactly the
same sequence of mini-batches as an uninterrupted run; otherwise two runs of the
same configuration are not comparable. PyTorch's default ``RandomSampler`` draws
from the global RNG, whose state is not part of a Lightning checkpoint, so the
order after a resume differs. :class:`EpochSeededSampler` instead derives a fresh
``torch.Generator`` from ``(seed, epoch)`` each time it is iterated; Lightning's
fit loop calls ``set_epoch`` on every train (and val) dataloader's sampler at the
start of each epoch, including the first epoch after a resume.

Distributed training: with ``Trainer(use_distributed_sampler=True)`` (the default)
Lightning replaces a custom sampler by
``lightning_fabric.utilities.distributed.DistributedSamplerWrapper``. The wrapper
materialises this sampler's full order on every rank, applies its own
``DistributedSampler`` permutation (seeded with ``PL_GLOBAL_SEED`` + epoch) on top
and hands rank ``r`` every ``world_size``-th position. Because our order does not
depend on the rank or on any global RNG, every rank materialises the same list and
the shards are disjoint (apart from ``DistributedSampler``'s usual padding, which
repeats a few indices when the length is not divisible by the world size). The
wrapper forwards ``set_epoch`` to the wrapped sampler since Lightning 2.6.1; on
older versions the inner order stays at epoch 0 (the outer permutation still
changes per epoch, so the run remains deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_automl._checks import ArgumentTypeError, check_bool, check_int

__all__ = ["EpochSeededSampler", "mix_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One SplitMix64 step (Steele, Lea & Flood 2014): a well-mixing 64-bit bijection."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """Hash a tuple of integers into one non-negative 63-bit generator seed.

    Unlike ``seed + epoch`` this does not collide for e.g. ``(0, 1)`` and ``(1, 0)``,
    so two samplers with neighbouring seeds never replay each other's epochs.
    """
    h = 0
    for i, v in enumerate(values):
        h = _splitmix64(h ^ (check_int(f"mix_seed values[{i}]", v) & _MASK64))
    return h >> 1


class EpochSeededSampler(Sampler[int]):
    """Yield ``indices`` in an order determined only by ``(seed, epoch)``.

    Args:
        indices: the dataset indices to draw from, or an int ``n`` meaning ``range(n)``.
        seed: base seed; samplers with different seeds give unrelated orders.
        shuffle: if False the indices are yielded in the given order every epoch.

    Call :meth:`set_epoch` before each epoch (Lightning does this automatically);
    outside Lightning the epoch stays at 0 and every pass repeats the same order.
    """

    def __init__(self, indices: Sequence[int] | int, seed: int = 0, shuffle: bool = True) -> None:
        self.seed = check_int("seed", seed)
        shuffle = check_bool("shuffle", shuffle, allowed="a bool (True or False)")
        self._indices = self._as_index_tensor(indices)
        self.shuffle = shuffle
        self.epoch = 0

    @staticmethod
    def _as_index_tensor(indices: Sequence[int] | int) -> torch.Tensor:
        if isinstance(indices, bool):
            raise ArgumentTypeError(f"indices must be an int or a sequence of ints, got {indices!r}")
        if isinstance(indices, int):
            if indices < 0:
                raise ValueError(f"indices as a count must be >= 0, got {indices}")
            return torch.arange(indices, dtype=torch.long)
        if isinstance(indices, (str, bytes)):
            raise ArgumentTypeError(f"indices must be an int or a sequence of ints, got {indices!r}")
        tensor = torch.as_tensor(indices if isinstance(indices, torch.Tensor) else list(indices))
        if tensor.numel() == 0:
            return torch.zeros(0, dtype=torch.long)
        if tensor.dim() != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {tuple(tensor.shape)}")
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise ArgumentTypeError(f"indices must be integers, got dtype {tensor.dtype}")
        if bool((tensor < 0).any()):
            raise ValueError(f"indices must be >= 0, got minimum {int(tensor.min())}")
        return tensor.to(torch.long).clone()

    @property
    def indices(self) -> list[int]:
        """The index pool (in the order given at construction)."""
        return self._indices.tolist()

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation for ``epoch`` (called by Lightning's loops)."""
        self.epoch = check_int("epoch", epoch, low=0)

    def order(self, epoch: int | None = None) -> list[int]:
        """The full index order for ``epoch`` (default: the current epoch), without side effects."""
        epoch = self.epoch if epoch is None else check_int("epoch", epoch, low=0)
        if not self.shuffle:
            return self._indices.tolist()
        generator = torch.Generator()
        generator.manual_seed(mix_seed(self.seed, epoch))
        perm = torch.randperm(len(self._indices), generator=generator)
        return self._indices[perm].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return len(self._indices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, seed={self.seed}, shuffle={self.shuffle}, epoch={self.epoch})"


class SeededTrainValLoaders:
    """Dataloaders of a datamodule with a ``train_dataset`` and a ``val_dataset`` that doubles as test set.

    The training order is :class:`EpochSeededSampler`'s for ``(seed, epoch)``; validation keeps the
    dataset's order. Mixed in before ``LightningDataModule`` by datamodules that set
    ``train_dataset``, ``val_dataset`` (``None`` before ``setup``), ``batch_size``, ``seed`` and
    ``num_workers``.
    """

    train_dataset: Dataset | None
    val_dataset: Dataset | None
    batch_size: int
    seed: int
    num_workers: int

    def _require_setup(self) -> None:
        if self.train_dataset is None or self.val_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must be called before requesting a dataloader")

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        return DataLoader(
            self.train_dataset,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(len(self.train_dataset), seed=self.seed),  # type: ignore[arg-type]
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        return DataLoader(self.val_dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

"""N-way K-shot episodes (tasks) for meta-learning over any labelled image tensor.

A task (Vinyals et al., NeurIPS 2016, Sec. 4; Finn et al., ICML 2017, Sec. 5.2) draws
``N`` classes from one class split, assigns them the labels ``0..N-1`` in a random
order, and takes ``K`` support and ``Q`` query examples per class, disjoint from
each other. Meta-train, meta-val and meta-test use disjoint sets of classes.

Design (one generic piece, used by :class:`~lit_automl.datamodules.DigitsTasksDataModule`
and :class:`~lit_automl.datamodules.OmniglotDataModule`):

* :class:`EpisodeSampler` yields one integer *episode seed* per task,
  ``mix_seed(seed, split_code, epoch, i)`` for episode ``i`` (``split_code`` 0/1/2 for
  train/val/test). Training samplers use the epoch Lightning passes to ``set_epoch``,
  so every epoch sees new tasks; val/test samplers always use epoch 0, so they replay
  one fixed evaluation set.
* :class:`EpisodeDataset` is indexed by that seed: ``dataset[seed]`` builds the task
  from a ``torch.Generator`` seeded with it. An episode is therefore a pure function
  of ``(seed, split, epoch, episode index)``; the global RNG, the worker count and
  the rank never enter.
* Within a task no example appears twice: support and query are disjoint, and classes
  that share a base label (rotations, below) draw disjoint examples from it.
* :func:`collate_episodes` stacks tasks on a leading dim ``T``. Every dataloader
  yields ``{"support": (x_s, y_s), "query": (x_q, y_q)}`` with ``x_s`` float32
  ``[T, N*K, C, H, W]``, ``y_s`` int64 ``[T, N*K]`` (labels ``0..N-1``, class-major:
  ``K`` of label 0, then ``K`` of label 1, ...), ``x_q`` ``[T, N*Q, C, H, W]`` and
  ``y_q`` ``[T, N*Q]`` (same order).

Rotations as new classes (Santoro et al., ICML 2016; Vinyals et al., 2016): with
``rotations=R`` a *class id* ``c`` stands for base label ``c // R`` rotated by
``(c % R) * 90`` degrees (``torch.rot90`` on the image plane), so there are
``R * num_base_labels`` class ids. Rotated images are produced on the fly.

Distributed training: ``tasks_per_batch`` is per process. Lightning replaces the
sampler by ``DistributedSamplerWrapper``, which materialises the sampler's full
list of episode seeds on every rank (identical, as it depends on no rank or global
RNG), permutes it with ``PL_GLOBAL_SEED + epoch`` and gives rank ``r`` every
``world_size``-th position, so the ranks train on different tasks and the
effective meta-batch is ``tasks_per_batch * world_size``. The training sampler
holds ``train_batches * tasks_per_batch * world_size`` episodes, so each process
still takes ``train_batches`` meta-batches (optimiser steps) per epoch; this needs
Lightning's default ``use_distributed_sampler=True``. Val/test keep ``val_tasks`` /
``test_tasks`` episodes in total, split over the ranks (``DistributedSampler`` pads
by repeating a few when the count is not divisible by the world size).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .sampling import mix_seed

__all__ = [
    "SPLITS",
    "DigitsTasksDataModule",
    "EpisodeDataset",
    "EpisodeIndices",
    "EpisodeSampler",
    "EpisodicDataModule",
    "TaskData",
    "check_class_splits",
    "check_examples_per_class",
    "collate_episodes",
]

SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

Episode = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _check_int(value: object, name: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be an int >= {minimum}{extra}, got {value!r}")
    return value


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return seed


def _check_split(split: object) -> str:
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split  # type: ignore[return-value]


class EpisodeSampler(Sampler[int]):
    """Yield ``num_episodes`` episode seeds ``mix_seed(seed, split_code, epoch, i)``, ``i = 0..n-1``.

    Args:
        num_episodes: episodes per pass (per epoch).
        seed: base seed shared with the datamodule.
        split: ``"train"``, ``"val"`` or ``"test"``; enters the seed so splits never share one.
        resample_each_epoch: if True (default for ``"train"``) the episodes depend on the
            epoch set by :meth:`set_epoch`; if False (default for val/test) every epoch
            replays the epoch-0 episodes.
    """

    def __init__(
        self, num_episodes: int, seed: int = 0, split: str = "train", resample_each_epoch: bool | None = None
    ) -> None:
        self.num_episodes = _check_int(num_episodes, "num_episodes", 0)
        self.seed = _check_seed(seed)
        self.split = _check_split(split)
        if resample_each_epoch is None:
            resample_each_epoch = split == "train"
        if not isinstance(resample_each_epoch, bool):
            raise TypeError(f"resample_each_epoch must be a bool or None, got {resample_each_epoch!r}")
        self.resample_each_epoch = resample_each_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning's loops (through ``DistributedSamplerWrapper`` under DDP)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def episode_seed(self, index: int, epoch: int | None = None) -> int:
        """The seed of episode ``index`` in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        return mix_seed(self.seed, _SPLIT_CODES[self.split], epoch if self.resample_each_epoch else 0, index)

    def seeds(self, epoch: int | None = None) -> list[int]:
        """All episode seeds of ``epoch`` in order, without side effects."""
        return [self.episode_seed(i, epoch) for i in range(self.num_episodes)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.seeds())

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_episodes={self.num_episodes}, seed={self.seed}, split={self.split!r}, "
            f"resample_each_epoch={self.resample_each_epoch}, epoch={self.epoch})"
        )


class EpisodeIndices(NamedTuple):
    """Which data one episode uses: ``classes[j]`` is the class id given label ``j``."""

    classes: torch.Tensor  # [N] class ids, in label order
    support: torch.Tensor  # [N*K] positions in the images tensor, class-major
    query: torch.Tensor  # [N*Q] positions in the images tensor, class-major


def collate_episodes(batch: Sequence[Episode]) -> Episode:
    """Stack episodes on a new leading task dim; keeps ``(x, y)`` tuples (default_collate makes lists)."""
    if not batch:
        raise ValueError("collate_episodes got an empty batch")
    out: Episode = {}
    for key in ("support", "query"):
        out[key] = (torch.stack([ep[key][0] for ep in batch]), torch.stack([ep[key][1] for ep in batch]))
    return out


def check_examples_per_class(
    counts: Mapping[int, int] | Sequence[int],
    classes: Sequence[int],
    rotations: int,
    n_way: int,
    k_shot: int,
    q_queries: int,
    distinct_base: bool = False,
) -> None:
    """Raise ValueError unless every episode over ``classes`` can draw distinct examples.

    ``counts[b]`` is the number of examples of base label ``b``. All ``N * (K + Q)``
    examples of a task are distinct drawings: classes sharing a base label (rotations)
    draw from its pool jointly, so a base needs ``m * (K + Q)`` examples, ``m`` being how
    many of its classes one task can hold (1 with ``distinct_base``). With
    ``distinct_base`` the split also needs ``n_way`` distinct base labels.
    """
    need = k_shot + q_queries
    lookup = dict(counts) if isinstance(counts, Mapping) else dict(enumerate(counts))
    per_base: dict[int, list[int]] = {}
    for c in classes:
        per_base.setdefault(c // rotations, []).append(c)
    if len(classes) < n_way:
        raise ValueError(f"n_way={n_way} exceeds the {len(classes)} classes available in this split; use n_way <= {len(classes)}")
    if distinct_base and len(per_base) < n_way:
        raise ValueError(
            f"n_way={n_way} exceeds the {len(per_base)} distinct base labels (characters) of this split; every task "
            f"uses n_way different ones, so use n_way <= {len(per_base)}"
        )
    for base, members in sorted(per_base.items()):
        have = int(lookup.get(base, 0))
        m = 1 if distinct_base else min(n_way, len(members))
        if have < m * need:
            share = (
                f" and up to {m} of its classes (rotations {[c % rotations * 90 for c in members]} degrees) can share "
                f"a task, so {m} x {need} = {m * need} are needed"
                if m > 1
                else ""
            )
            raise ValueError(
                f"class {members[0]} (base label {base}) has {have} examples but k_shot + q_queries = {k_shot} + "
                f"{q_queries} = {need} distinct examples per class are needed{share}; lower k_shot or q_queries"
            )


class EpisodeDataset(Dataset):
    """N-way K-shot tasks over ``images``/``labels`` restricted to ``classes``; indexed by episode seed.

    Args:
        images: ``[M, C, H, W]``; uint8 is scaled by 1/255, floating point is used as is (as float32).
        labels: ``[M]`` integer base labels ``>= 0``.
        classes: the class ids of this split (``base * rotations + quarter_turns``), distinct.
        n_way, k_shot, q_queries: ``N``, ``K``, ``Q``.
        rotations: ``R`` in 1..4; class id ``c`` is base label ``c // R`` rotated by ``(c % R) * 90`` degrees.
        distinct_base: if True a task never holds two classes with the same base label (Finn et
            al.'s Omniglot tasks: ``N`` distinct characters, a uniformly random rotation each).

    Episode ``seed``: a generator seeded with it permutes ``classes``; the first ``N``
    (with ``distinct_base``: the first ``N`` of distinct base labels) get labels
    ``0..N-1`` in that order. Per base label a random permutation of its examples is
    cut into consecutive chunks of ``K + Q`` for its classes in label order (first ``K``
    support, rest query), so no example appears twice in a task, not even rotated.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[int] | torch.Tensor,
        n_way: int,
        k_shot: int,
        q_queries: int,
        rotations: int = 1,
        distinct_base: bool = False,
    ) -> None:
        self.n_way = _check_int(n_way, "n_way", 1)
        self.k_shot = _check_int(k_shot, "k_shot", 1)
        self.q_queries = _check_int(q_queries, "q_queries", 1)
        self.rotations = _check_rotations(rotations)
        if not isinstance(distinct_base, bool):
            raise TypeError(f"distinct_base must be a bool (True or False), got {distinct_base!r}")
        self.distinct_base = distinct_base
        self.images = _check_images(images)
        self.labels = _check_labels(labels, len(self.images))
        if self.rotations > 1 and self.images.shape[-1] != self.images.shape[-2]:
            raise ValueError(f"rotations={self.rotations} needs square images, got H x W = {tuple(self.images.shape[-2:])}")
        self.classes = _check_class_list(classes, "classes")
        counts = torch.bincount(self.labels) if len(self.labels) else torch.zeros(0, dtype=torch.long)
        check_examples_per_class(
            counts.tolist(), self.classes.tolist(), self.rotations, self.n_way, self.k_shot, self.q_queries, distinct_base
        )
        order = torch.argsort(self.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        self._pools: dict[int, torch.Tensor] = {}
        for base in sorted({c // self.rotations for c in self.classes.tolist()}):
            start = int(starts[base])
            self._pools[base] = order[start : start + int(counts[base])].clone()

    def sample(self, seed: int) -> EpisodeIndices:
        """The classes and example positions of the episode with this seed (a pure function of ``seed``)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"episode seed must be an int >= 0, got {seed!r}")
        g = torch.Generator()
        g.manual_seed(seed)
        perm = self.classes[torch.randperm(len(self.classes), generator=g)]
        if self.distinct_base:
            chosen_list: list[int] = []
            seen: set[int] = set()
            for c in perm.tolist():
                if c // self.rotations not in seen:
                    seen.add(c // self.rotations)
                    chosen_list.append(c)
                    if len(chosen_list) == self.n_way:
                        break
            chosen = torch.tensor(chosen_list, dtype=torch.long)
        else:
            chosen = perm[: self.n_way]
        need = self.k_shot + self.q_queries
        shuffled: dict[int, torch.Tensor] = {}
        used: dict[int, int] = {}
        support, query = [], []
        for c in chosen.tolist():
            base = c // self.rotations
            if base not in shuffled:
                pool = self._pools[base]
                shuffled[base] = pool[torch.randperm(len(pool), generator=g)]
                used[base] = 0
            pick = shuffled[base][used[base] : used[base] + need]
            used[base] += need
            support.append(pick[: self.k_shot])
            query.append(pick[self.k_shot :])
        return EpisodeIndices(chosen, torch.cat(support), torch.cat(query))

    def _load(self, positions: torch.Tensor, classes: torch.Tensor, per_class: int) -> torch.Tensor:
        x = self.images[positions]
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        if self.rotations > 1:
            x = x.view(len(classes), per_class, *x.shape[1:])
            for j, c in enumerate(classes.tolist()):
                turns = c % self.rotations
                if turns:
                    x[j] = torch.rot90(x[j], turns, dims=(-2, -1))
            x = x.view(-1, *x.shape[2:])
        return x

    def build(self, episode: EpisodeIndices) -> Episode:
        """Tensors of an episode: ``{"support": (x [N*K, C, H, W], y [N*K]), "query": (x [N*Q, ...], y [N*Q])}``."""
        n = len(episode.classes)
        labels = torch.arange(n, dtype=torch.long)
        return {
            "support": (
                self._load(episode.support, episode.classes, self.k_shot),
                labels.repeat_interleave(self.k_shot),
            ),
            "query": (
                self._load(episode.query, episode.classes, self.q_queries),
                labels.repeat_interleave(self.q_queries),
            ),
        }

    def __getitem__(self, seed: int) -> Episode:
        return self.build(self.sample(seed))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classes={len(self.classes)}, n_way={self.n_way}, k_shot={self.k_shot}, "
            f"q_queries={self.q_queries}, rotations={self.rotations})"
        )


def _check_rotations(rotations: object) -> int:
    if isinstance(rotations, bool) or not isinstance(rotations, int) or not 1 <= rotations <= 4:
        raise ValueError(f"rotations must be an int in 1..4 (1 = no rotated classes), got {rotations!r}")
    return rotations


def _check_images(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a 4-D [M, C, H, W] tensor, got {shape}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (scaled by 1/255) or floating point, got dtype {images.dtype}")
    return images if images.dtype == torch.uint8 else images.to(torch.float32)


def _check_labels(labels: object, n: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor, got {labels!r:.80}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got minimum {int(labels.min())}")
    return labels.to(torch.long)


def _check_class_list(classes: object, name: str) -> torch.Tensor:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, torch.Tensor)):
        raise ValueError(f"{name} must be a sequence of int class ids, got {classes!r:.80}")
    tensor = torch.as_tensor(classes if isinstance(classes, torch.Tensor) else list(classes))
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty; every split needs at least n_way classes")
    if tensor.dim() != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D sequence of int class ids, got {classes!r:.80}")
    if int(tensor.min()) < 0:
        raise ValueError(f"{name} must be >= 0, got minimum {int(tensor.min())}")
    if len(torch.unique(tensor)) != len(tensor):
        raise ValueError(f"{name} contains repeated class ids")
    return tensor.to(torch.long).clone()


@dataclass
class TaskData:
    """What :meth:`EpisodicDataModule.load_data` returns.

    ``class_splits`` maps ``"train"``/``"val"``/``"test"`` to disjoint lists of class ids
    (``base_label * rotations + quarter_turns``); ``distinct_base`` as in :class:`EpisodeDataset`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_splits: Mapping[str, Sequence[int]]
    rotations: int = 1
    distinct_base: bool = False


def check_class_splits(class_splits: object, n_way: int) -> dict[str, list[int]]:
    """Validate a ``{"train", "val", "test"} -> class ids`` mapping: disjoint, each with >= ``n_way`` classes."""
    if not isinstance(class_splits, Mapping) or set(class_splits) != set(SPLITS):
        keys = sorted(class_splits) if isinstance(class_splits, Mapping) else type(class_splits).__name__
        raise ValueError(f"class_splits must be a mapping with exactly the keys {SPLITS}, got {keys}")
    out = {s: _check_class_list(class_splits[s], f"class_splits[{s!r}]").tolist() for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = sorted(set(out[a]) & set(out[b]))
            if shared:
                raise ValueError(f"class splits must be disjoint; {a!r} and {b!r} share class ids {shared[:10]}")
    for s in SPLITS:
        if len(out[s]) < n_way:
            raise ValueError(
                f"n_way={n_way} exceeds the {len(out[s])} classes of the meta-{s} split; use n_way <= "
                f"{min(len(v) for v in out.values())} (the smallest split) or give that split more classes"
            )
    return out


class _TaskDataModule(pl.LightningDataModule):
    """Shared loaders of the task datamodules: seeded samplers, stacking collate, DDP-aware train length."""

    n_way: int | None = None

    def __init__(
        self,
        k_shot: int,
        q_queries: int,
        tasks_per_batch: int,
        train_batches: int,
        val_tasks: int,
        test_tasks: int,
        seed: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.k_shot = _check_int(k_shot, "k_shot", 1)
        self.q_queries = _check_int(q_queries, "q_queries", 1, "the query set of a task cannot be empty")
        self.tasks_per_batch = _check_int(tasks_per_batch, "tasks_per_batch", 1)
        self.train_batches = _check_int(train_batches, "train_batches", 1)
        self.val_tasks = _check_int(val_tasks, "val_tasks", 1)
        self.test_tasks = _check_int(test_tasks, "test_tasks", 1)
        self.seed = _check_seed(seed)
        self.num_workers = _check_int(num_workers, "num_workers", 0)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    # -- to implement ---------------------------------------------------------------------------
    def _build_datasets(self) -> dict[str, Dataset]:
        raise NotImplementedError

    # -- LightningDataModule --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the three task datasets (idempotent; every stage gets all three)."""
        if self.train_dataset is not None:
            return
        datasets = self._build_datasets()
        self.train_dataset, self.val_dataset, self.test_dataset = (datasets[s] for s in SPLITS)

    def dataset(self, split: str) -> Dataset:
        _check_split(split)
        ds = getattr(self, f"{split}_dataset")
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must be called before requesting a dataloader")
        return ds

    def num_episodes(self, split: str, world_size: int = 1) -> int:
        """Episodes per epoch of ``split``: ``train_batches * tasks_per_batch * world_size`` for train."""
        _check_split(split)
        _check_int(world_size, "world_size", 1)
        if split == "train":
            return self.train_batches * self.tasks_per_batch * world_size
        return self.val_tasks if split == "val" else self.test_tasks

    def sampler(self, split: str, world_size: int = 1) -> EpisodeSampler:
        """A fresh sampler of episode seeds for ``split`` (train resamples every epoch, val/test do not)."""
        return EpisodeSampler(self.num_episodes(split, world_size), seed=self.seed, split=split)

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1

    def dataloader(self, split: str, world_size: int | None = None) -> DataLoader:
        """Meta-batches of ``tasks_per_batch`` tasks of ``split`` (the last val/test batch may be smaller)."""
        dataset = self.dataset(split)
        world_size = self._world_size() if world_size is None else world_size
        return DataLoader(
            dataset,
            batch_size=self.tasks_per_batch,
            sampler=self.sampler(split, world_size if split == "train" else 1),
            collate_fn=collate_episodes,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train")

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")


class EpisodicDataModule(_TaskDataModule):
    """N-way K-shot classification tasks over any labelled image tensor with disjoint class splits.

    Either pass ``images`` (``[M, C, H, W]``, uint8 scaled by 1/255 or float), ``labels``
    (``[M]`` base labels) and ``class_splits`` (``{"train", "val", "test"}`` -> disjoint
    class ids, see ``rotations``), or subclass and override :meth:`load_data`
    (as :class:`DigitsTasksDataModule` and :class:`OmniglotDataModule` do). With
    ``rotations=R`` class id ``c`` is base label ``c // R`` turned ``(c % R) * 90``
    degrees; ``distinct_base=True`` keeps two rotations of one base label out of the
    same task. No example (drawing) appears twice in a task, not even rotated.

    Batches: ``{"support": (x_s, y_s), "query": (x_q, y_q)}``, ``x_s`` float32
    ``[T, N*K, C, H, W]``, ``y_s`` int64 ``[T, N*K]`` with labels ``0..N-1`` (the ``N``
    sampled classes get the labels in a random order per task), ``x_q``/``y_q`` likewise
    with ``N*Q``. ``T = tasks_per_batch`` per process: under DDP the effective
    meta-batch is ``tasks_per_batch * world_size``. Each process takes ``train_batches``
    meta-batches per training epoch; val/test are fixed sets of ``val_tasks`` /
    ``test_tasks`` tasks (the same every epoch). See the module docstring for seeding.
    """

    in_channels: int
    image_size: int | tuple[int, int]

    def __init__(
        self,
        images: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_splits: Mapping[str, Sequence[int]] | None = None,
        n_way: int = 5,
        k_shot: int = 1,
        q_queries: int = 15,
        tasks_per_batch: int = 4,
        train_batches: int = 100,
        val_tasks: int = 100,
        test_tasks: int = 600,
        seed: int = 0,
        num_workers: int = 0,
        rotations: int = 1,
        distinct_base: bool = False,
    ) -> None:
        super().__init__(k_shot, q_queries, tasks_per_batch, train_batches, val_tasks, test_tasks, seed, num_workers)
        self.n_way = _check_int(n_way, "n_way", 1)
        self.rotations = _check_rotations(rotations)
        if not isinstance(distinct_base, bool):
            raise TypeError(f"distinct_base must be a bool (True or False), got {distinct_base!r}")
        self.distinct_base = distinct_base
        given = [name for name, v in (("images", images), ("labels", labels), ("class_splits", class_splits)) if v is not None]
        overridden = type(self).load_data is not EpisodicDataModule.load_data
        self._data: TaskData | None = None
        self.class_splits: dict[str, list[int]] | None = None
        if not overridden:
            if len(given) != 3:
                raise TypeError(
                    f"{type(self).__name__} needs images, labels and class_splits (got only {given}); "
                    "or subclass EpisodicDataModule and override load_data()"
                )
            images = _check_images(images)
            labels = _check_labels(labels, len(images))
            self.class_splits = check_class_splits(class_splits, self.n_way)
            num_ids = (int(labels.max()) + 1 if len(labels) else 0) * self.rotations
            bad = [c for s in SPLITS for c in self.class_splits[s] if c >= num_ids]
            if bad:
                raise ValueError(
                    f"class ids {bad[:10]} are out of range: with {num_ids // max(self.rotations, 1)} base labels and "
                    f"rotations={self.rotations} class ids must lie in [0, {num_ids - 1}]"
                )
            counts = torch.bincount(labels).tolist()
            for s in SPLITS:
                check_examples_per_class(
                    counts, self.class_splits[s], self.rotations, self.n_way, self.k_shot, self.q_queries, distinct_base
                )
            self._data = TaskData(images, labels, self.class_splits, self.rotations, self.distinct_base)
            self.in_channels = int(images.shape[1])
            h, w = int(images.shape[2]), int(images.shape[3])
            self.image_size = h if h == w else (h, w)
        elif given:
            raise TypeError(f"{type(self).__name__} loads its own data; do not pass {given}")

    def load_data(self) -> TaskData:
        """Images, labels and class splits (subclasses read files here; called once by ``setup``)."""
        assert self._data is not None
        return self._data

    def _build_datasets(self) -> dict[str, Dataset]:
        data = self.load_data()
        splits = check_class_splits(data.class_splits, self.n_way)
        self.class_splits = splits
        return {
            s: EpisodeDataset(
                data.images,
                data.labels,
                splits[s],
                self.n_way,
                self.k_shot,
                self.q_queries,
                rotations=data.rotations,
                distinct_base=data.distinct_base,
            )
            for s in SPLITS
        }

    def episode(self, split: str, index: int, epoch: int = 0) -> EpisodeIndices:
        """Classes and example positions of episode ``index`` of ``split`` in ``epoch`` (single process)."""
        dataset = self.dataset(split)
        return dataset.sample(self.sampler(split).episode_seed(index, epoch))  # type: ignore[attr-defined]


_CLASS_SPLIT_STREAM = 3  # mix_seed(seed, 3) seeds class splits; episode seeds use 4-tuples with split codes 0..2


class DigitsTasksDataModule(EpisodicDataModule):
    """Few-shot tasks on scikit-learn's bundled 8x8 digits, 40 classes via rotations (no download).

    Data: ``sklearn.datasets.load_digits`` (1,797 images, 10 digits, 174..183 per digit),
    pixels divided by 16 into [0, 1], float32 ``1 x 8 x 8``. Each digit rotated by 0, 90,
    180 and 270 degrees (``torch.rot90``) is its own class (Santoro et al., 2016;
    Vinyals et al., 2016, Sec. 4.1.1 do this for Omniglot): class id ``4 * digit +
    quarter_turns``, 40 classes. Class split: a permutation of the 40 class ids drawn
    from a generator seeded with ``mix_seed(seed, 3)``; its first 24 ids are meta-train,
    the next 8 meta-val and the last 8 meta-test (:meth:`class_split`). Rotations of one
    digit may fall into different splits, and some rotated classes look alike (0, 1 and
    8 turned 180 degrees; 6 turned 180 vs 9), so this is a fast smoke-test benchmark,
    not a published one.

    All defaults are ours (no paper uses this data set): 5-way 1-shot with 15 queries
    per class, 4 tasks per meta-batch (per process: under DDP the effective meta-batch
    is ``tasks_per_batch * world_size``), 100 meta-batches per training epoch, 100 fixed
    validation and 600 fixed test tasks. ``n_way`` can be at most 8 (the val/test split
    size) and ``k_shot + q_queries`` at most 174 (the rarest digit); when ``m`` rotations
    of one digit can share a task, that digit needs ``m * (k_shot + q_queries)`` images,
    because no image appears twice in a task (not even rotated).
    """

    in_channels = 1
    image_size = 8
    num_classes = 40
    split_sizes = {"train": 24, "val": 8, "test": 8}
    min_examples_per_class = 174
    digit_counts = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # images per digit in load_digits()

    def __init__(
        self,
        n_way: int = 5,
        k_shot: int = 1,
        q_queries: int = 15,
        tasks_per_batch: int = 4,
        train_batches: int = 100,
        val_tasks: int = 100,
        test_tasks: int = 600,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            n_way=n_way,
            k_shot=k_shot,
            q_queries=q_queries,
            tasks_per_batch=tasks_per_batch,
            train_batches=train_batches,
            val_tasks=val_tasks,
            test_tasks=test_tasks,
            seed=seed,
            num_workers=num_workers,
            rotations=4,
        )
        smallest = min(self.split_sizes.values())
        if self.n_way > smallest:
            raise ValueError(
                f"n_way={self.n_way} exceeds the {smallest} classes of the digits meta-val/meta-test splits "
                f"(40 classes split 24/8/8); use n_way <= {smallest}"
            )
        if self.k_shot + self.q_queries > self.min_examples_per_class:
            raise ValueError(
                f"k_shot + q_queries = {self.k_shot + self.q_queries} exceeds {self.min_examples_per_class}, the "
                "number of images of the rarest digit; lower k_shot or q_queries"
            )
        self.class_splits = self.class_split(self.seed)
        for split in SPLITS:  # rotations of one digit in a task draw distinct images from that digit's pool
            check_examples_per_class(
                self.digit_counts, self.class_splits[split], 4, self.n_way, self.k_shot, self.q_queries
            )

    @classmethod
    def class_split(cls, seed: int) -> dict[str, list[int]]:
        """The 24/8/8 split of class ids ``4 * digit + quarter_turns`` for ``seed`` (sorted lists)."""
        g = torch.Generator()
        g.manual_seed(mix_seed(_check_seed(seed), _CLASS_SPLIT_STREAM))
        perm = torch.randperm(cls.num_classes, generator=g).tolist()
        n_train, n_val = cls.split_sizes["train"], cls.split_sizes["val"]
        return {
            "train": sorted(perm[:n_train]),
            "val": sorted(perm[n_train : n_train + n_val]),
            "test": sorted(perm[n_train + n_val :]),
        }

    def load_data(self) -> TaskData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(bunch.target, dtype=torch.long)
        return TaskData(images, labels, self.class_split(self.seed), rotations=4)

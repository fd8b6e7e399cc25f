"""Task datamodules: meta-batches of tasks from seeded episode samplers (see :mod:`.episodes`).

* :class:`TaskDataModule`: the loaders every task datamodule shares (seeded samplers, stacking
  collate, DDP-aware training length); a subclass builds one dataset per split indexed by episode
  seed (N-way K-shot image tasks here, sinusoid regression in :mod:`.sinusoid`).
* :class:`FewShotDataModule`: N-way K-shot classification tasks over the :class:`TaskData` its
  :meth:`~FewShotDataModule.load_data` returns (digits tasks, Omniglot).
* :class:`EpisodicDataModule`: the same over tensors handed to its constructor.

Each class validates its own arguments once, in its constructor; a subclass forwards the shared
ones with ``**kwargs`` and declares only what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lit_automl._checks import check_bool, check_int

from .episodes import (
    SPLITS,
    EpisodeDataset,
    EpisodeIndices,
    EpisodeSampler,
    check_class_ids,
    check_images,
    check_labels,
    check_rotations,
    check_split,
    collate_episodes,
)

__all__ = ["EpisodicDataModule", "FewShotDataModule", "TaskData", "TaskDataModule", "check_class_splits"]


@dataclass
class TaskData:
    """What :meth:`FewShotDataModule.load_data` returns.

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
    out = {s: check_class_ids(class_splits[s], f"class_splits[{s!r}]").tolist() for s in SPLITS}
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



class TaskDataModule(pl.LightningDataModule):
    """Meta-batches of ``tasks_per_batch`` tasks per split from seeded episode samplers.

    Args:
        k_shot, q_queries: support and query examples per class (per task for regression).
        tasks_per_batch: tasks per meta-batch and process (under DDP the effective meta-batch is
            ``tasks_per_batch * world_size``).
        train_batches: meta-batches per training epoch and process.
        val_tasks, test_tasks: the fixed validation / test tasks (the same every epoch).
        seed: base seed of every episode (see :mod:`.episodes`).
        num_workers: dataloader worker processes.

    Defaults (ours): 1 shot, 15 queries, 4 tasks per meta-batch, 100 meta-batches per epoch, 100
    validation and 600 test tasks (the usual evaluation count of few-shot papers).
    """

    n_way: int | None = None

    def __init__(
        self,
        k_shot: int = 1,
        q_queries: int = 15,
        tasks_per_batch: int = 4,
        train_batches: int = 100,
        val_tasks: int = 100,
        test_tasks: int = 600,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.k_shot = check_int("k_shot", k_shot, low=1)
        self.q_queries = check_int("q_queries", q_queries, low=1, hint="the query set of a task cannot be empty")
        self.tasks_per_batch = check_int("tasks_per_batch", tasks_per_batch, low=1)
        self.train_batches = check_int("train_batches", train_batches, low=1)
        self.val_tasks = check_int("val_tasks", val_tasks, low=1)
        self.test_tasks = check_int("test_tasks", test_tasks, low=1)
        self.seed = check_int("seed", seed)
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    # -- to implement ---------------------------------------------------------------------------
    def _build_datasets(self) -> dict[str, Dataset]:
        """The dataset of each split, indexed by episode seed (called once, by :meth:`setup`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _build_datasets()")

    # -- LightningDataModule --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the three task datasets (idempotent; every stage gets all three)."""
        if self.train_dataset is not None:
            return
        datasets = self._build_datasets()
        self.train_dataset, self.val_dataset, self.test_dataset = (datasets[s] for s in SPLITS)

    def dataset(self, split: str) -> Dataset:
        ds = getattr(self, f"{check_split(split)}_dataset")
        if ds is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must be called before requesting a dataloader")
        return ds

    def num_episodes(self, split: str, world_size: int = 1) -> int:
        """Episodes per epoch of ``split``: ``train_batches * tasks_per_batch * world_size`` for train."""
        if check_split(split) == "train":
            return self.train_batches * self.tasks_per_batch * check_int("world_size", world_size, low=1)
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



class FewShotDataModule(TaskDataModule):
    """N-way K-shot classification tasks over the images, labels and class splits of :meth:`load_data`.

    A subclass overrides :meth:`load_data` (as :class:`~lit_automl.datamodules.DigitsTasksDataModule`
    and :class:`~lit_automl.datamodules.OmniglotDataModule` do) and sets ``in_channels`` and
    ``image_size``. With ``rotations=R`` in the data, class id ``c`` is base label ``c // R`` turned
    ``(c % R) * 90`` degrees; ``distinct_base=True`` keeps two rotations of one base label out of
    the same task. No example (drawing) appears twice in a task, not even rotated.

    Batches: ``{"support": (x_s, y_s), "query": (x_q, y_q)}``, ``x_s`` float32
    ``[T, N*K, C, H, W]``, ``y_s`` int64 ``[T, N*K]`` with labels ``0..N-1`` (the ``N``
    sampled classes get the labels in a random order per task), ``x_q``/``y_q`` likewise
    with ``N*Q``. ``T = tasks_per_batch`` per process: under DDP the effective
    meta-batch is ``tasks_per_batch * world_size``. Each process takes ``train_batches``
    meta-batches per training epoch; val/test are fixed sets of ``val_tasks`` /
    ``test_tasks`` tasks (the same every epoch). See :mod:`.episodes` for seeding.

    Args:
        n_way: classes per task (5 by default, the usual few-shot setting).
        Other arguments: :class:`TaskDataModule`.
    """

    in_channels: int
    image_size: int | tuple[int, int]

    def __init__(self, n_way: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_way = check_int("n_way", n_way, low=1)
        self.class_splits: dict[str, list[int]] | None = None

    def load_data(self) -> TaskData:
        """Images, labels and class splits (subclasses read files here; called once by ``setup``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_data()")

    def _build_datasets(self) -> dict[str, Dataset]:
        return self._episode_datasets(self.load_data())

    def _episode_datasets(self, data: TaskData) -> dict[str, EpisodeDataset]:
        """One :class:`EpisodeDataset` per split of ``data`` (checks the splits against the labels)."""
        splits = check_class_splits(data.class_splits, self.n_way)
        images, labels = check_images(data.images), check_labels(data.labels, len(data.images))
        num_ids = (int(labels.max()) + 1 if len(labels) else 0) * data.rotations
        bad = [c for s in SPLITS for c in splits[s] if c >= num_ids]
        if bad:
            raise ValueError(
                f"class ids {bad[:10]} are out of range: with {num_ids // max(data.rotations, 1)} base labels and "
                f"rotations={data.rotations} class ids must lie in [0, {num_ids - 1}]"
            )
        self.class_splits = splits
        return {
            s: EpisodeDataset(images, labels, splits[s], self.n_way, self.k_shot, self.q_queries,
                              rotations=data.rotations, distinct_base=data.distinct_base)
            for s in SPLITS
        }

    def episode(self, split: str, index: int, epoch: int = 0) -> EpisodeIndices:
        """Classes and example positions of episode ``index`` of ``split`` in ``epoch`` (single process)."""
        dataset = self.dataset(split)
        return dataset.sample(self.sampler(split).episode_seed(index, epoch))  # type: ignore[attr-defined]


class EpisodicDataModule(FewShotDataModule):
    """N-way K-shot classification tasks over given tensors with disjoint class splits.

    Args:
        images: ``[M, C, H, W]``, uint8 (scaled by 1/255) or floating point.
        labels: ``[M]`` integer base labels.
        class_splits: ``{"train", "val", "test"}`` -> disjoint class ids (see ``rotations``).
        rotations: ``R`` in 1..4; class id ``c`` is base label ``c // R`` turned ``(c % R) * 90`` degrees.
        distinct_base: keep two rotations of one base label out of the same task.
        Other arguments: :class:`FewShotDataModule` and :class:`TaskDataModule`.

    Everything is checked here, at construction (the tasks' datasets are built now).
    """

    def __init__(
        self,
        images: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_splits: Mapping[str, Sequence[int]] | None = None,
        rotations: int = 1,
        distinct_base: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        given = [name for name, v in (("images", images), ("labels", labels), ("class_splits", class_splits)) if v is not None]
        if len(given) != 3:
            raise TypeError(
                f"{type(self).__name__} needs images, labels and class_splits (got only {given}); "
                "or subclass FewShotDataModule and override load_data()"
            )
        self.rotations = check_rotations(rotations)
        self.distinct_base = check_bool("distinct_base", distinct_base)
        self._data = TaskData(images, labels, class_splits, self.rotations, self.distinct_base)  # type: ignore[arg-type]
        self._datasets = self._episode_datasets(self._data)
        self.in_channels = int(images.shape[1])  # type: ignore[union-attr]
        h, w = int(images.shape[2]), int(images.shape[3])  # type: ignore[union-attr]
        self.image_size = h if h == w else (h, w)

    def load_data(self) -> TaskData:
        return self._data

    def _build_datasets(self) -> dict[str, Dataset]:
        return dict(self._datasets)

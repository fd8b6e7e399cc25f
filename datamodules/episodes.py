"""N-way K-shot episodes (tasks) for meta-learning over any labelled image tensor.

A task (Vinyals et al., NeurIPS 2016, Sec. 4; Finn et al., ICML 2017, Sec. 5.2) draws
``N`` classes from one class split, assigns them the labels ``0..N-1`` in a random
order, and takes ``K`` support and ``Q`` query examples per class, disjoint from
each other. Meta-train, meta-val and meta-test use disjoint sets of classes.

Design (one generic piece; :mod:`lit_automl.datamodules.tasks` turns it into datamodules such as
:class:`~lit_automl.datamodules.DigitsTasksDataModule` and :class:`~lit_automl.datamodules.OmniglotDataModule`):

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
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, Sampler

from lit_automl._checks import ArgumentTypeError, check_bool, check_int

from .sampling import mix_seed

__all__ = [
    "SPLITS",
    "Episode",
    "EpisodeDataset",
    "EpisodeIndices",
    "EpisodeSampler",
    "check_class_ids",
    "check_examples_per_class",
    "check_images",
    "check_labels",
    "check_rotations",
    "check_split",
    "collate_episodes",
]

SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

Episode = dict[str, tuple[torch.Tensor, torch.Tensor]]


def check_split(split: object) -> str:
    """``split`` if it is one of :data:`SPLITS` (named in that order, the order of their seed codes)."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split  # type: ignore[return-value]


def check_rotations(rotations: object) -> int:
    """``rotations`` as an int in 1..4 (quarter turns that make new classes; 1 = none)."""
    return check_int("rotations", rotations, low=1, high=4, allowed="an int in 1..4", hint="1 = no rotated classes")


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
        self.num_episodes = check_int("num_episodes", num_episodes, low=0)
        self.seed = check_int("seed", seed)
        self.split = check_split(split)
        self.resample_each_epoch = split == "train" if resample_each_epoch is None else check_bool(
            "resample_each_epoch", resample_each_epoch
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning's loops (through ``DistributedSamplerWrapper`` under DDP)."""
        self.epoch = check_int("epoch", epoch, low=0)

    def episode_seed(self, index: int, epoch: int | None = None) -> int:
        """The seed of episode ``index`` in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else check_int("epoch", epoch, low=0)
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
        self.n_way = check_int("n_way", n_way, low=1)
        self.k_shot = check_int("k_shot", k_shot, low=1)
        self.q_queries = check_int("q_queries", q_queries, low=1)
        self.rotations = check_rotations(rotations)
        self.distinct_base = check_bool("distinct_base", distinct_base)
        self.images = check_images(images)
        self.labels = check_labels(labels, len(self.images))
        if self.rotations > 1 and self.images.shape[-1] != self.images.shape[-2]:
            raise ValueError(f"rotations={self.rotations} needs square images, got H x W = {tuple(self.images.shape[-2:])}")
        self.classes = check_class_ids(classes, "classes")
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
        g = torch.Generator()
        g.manual_seed(check_int("episode seed", seed, low=0))
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


def check_images(images: object) -> torch.Tensor:
    """``images`` as a 4-D ``[M, C, H, W]`` tensor: uint8 kept (scaled later), floating point as float32."""
    if not isinstance(images, torch.Tensor):
        raise ArgumentTypeError(f"images must be a 4-D [M, C, H, W] tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be a 4-D [M, C, H, W] tensor, got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 (scaled by 1/255) or floating point, got dtype {images.dtype}")
    return images if images.dtype == torch.uint8 else images.to(torch.float32)


def check_labels(labels: object, n: int) -> torch.Tensor:
    """``labels`` as an int64 ``[n]`` tensor of base labels ``>= 0``."""
    if not isinstance(labels, torch.Tensor):
        raise ArgumentTypeError(f"labels must be a 1-D tensor, got {labels!r:.80}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor, got {labels!r:.80}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got minimum {int(labels.min())}")
    return labels.to(torch.long)


def check_class_ids(classes: object, name: str) -> torch.Tensor:
    """``classes`` (a sequence or 1-D tensor of distinct int class ids ``>= 0``) as an int64 tensor."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, torch.Tensor)):
        raise ArgumentTypeError(f"{name} must be a sequence of int class ids, got {classes!r:.80}")
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



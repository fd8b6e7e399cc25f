"""One-shot architecture search with path dropout, on the DARTS or the NAS-Bench-201 supernet.

Bender, Kindermans, Zoph, Vasudevan & Le, "Understanding and Simplifying One-Shot Architecture
Search", ICML 2018.

Notation:

* ``r``: the final path-dropout rate (``drop_rate``, ``0 <= r < 1``); ``r_t`` the rate at training
  step ``t`` of ``T``: ``r_t = r * t / (T - 1)``, a linear ramp from 0 (Sec. 3, "Robustness to
  co-adaptation": little dropout early, more later).
* ``k``: the incoming paths of a node. Node ``i`` of a DARTS cell reads ``i + 2`` states, each
  through every non-``none`` op, so ``k_i = (i + 2) * |O|`` paths (input, op). Node ``j`` (1..3) of a
  NAS-Bench-201 cell (``space="nb201"``) reads the ``j`` nodes before it, so ``k_j = j * |O|`` with
  ``|O| = 4`` (the benchmark's ops but ``none``): 4, 8 and 12 paths.
* ``r_t ** (1 / k)``: the probability each path of a ``k``-path node is dropped (Sec. 3), so a node
  loses all of its paths with probability ``r_t`` whatever its fan-in; a node that lost them all
  gets one uniformly chosen path back (at least one path is always kept).
* ``m``: a path mask, 0/1 of shape (num_edges, num_ops) per cell type (1 = path kept; ``none`` is
  never a path). The edge weights handed to :class:`~lit_automl.spaces.networks.SearchNetwork` are
  ``w = m / n`` with ``n`` the number of paths the node kept (``join="mean"``: every node averages
  its kept paths) or ``w = m`` (``join="sum"``). One mask per cell type, shared by every cell of that
  type: the supernet ties its edge weights per cell type, and a sampled architecture repeats one
  normal and one reduction cell. NAS-Bench-201 has one cell type (every cell shares one (6, 5) weight
  matrix), so one mask; an :class:`~lit_automl.spaces.nb201.NB201Arch` is run with its one-hot matrix
  (``none``: a zero row) joined the same way.
* ``N``: the number of architectures sampled and ranked after training (``num_samples``).

The method (Sec. 3): (1) train the one-shot model, i.e. the supernet whose paths are dropped by a
fresh mask every step (per ghost batch); (2) sample ``N`` architectures uniformly from the search
space (NAS-Bench-201: each of the 6 edges uniform over the supernet's ops, ``none`` included: the
uniform distribution of :class:`~lit_automl.spaces.nb201.NB201Space`, cells with no path from input to
output among them); (3) evaluate each with the one-shot weights (its mask, batch-norm statistics of the
evaluation batch) on held-out validation data and rank them by that accuracy; (4) retrain the best
from scratch (:class:`lit_automl.nas.Retrain`, not part of this module).
Step (3) is :func:`one_shot_correct`, written once for this module's ranking and for
:class:`~lit_automl.nas.one_shot_evaluator.OneShotEvaluator` (a search's children scored one-shot); it
needs from a supernet only :class:`OneShotSupernet`'s two methods.

Masks come from a CPU ``torch.Generator`` seeded from ``(seed, global_step)`` and architectures
from one seeded from ``seed``: every DDP rank draws the same ones, and a resumed fit continues
with the masks an uninterrupted one would have drawn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import nn

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.distributed import all_reduce_sum, require_find_unused_parameters, world_size
from lit_automl.distributed import rank as dist_rank
from lit_automl.nas.supernet import Backward, SupernetSearch
from lit_automl.rng import keyed_generator
from lit_automl.spaces.drop_path import sample_keep_mask
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.genotype_files import save_genotype_files
from lit_automl.spaces.geometry import node_edge_slices
from lit_automl.spaces.nb201 import NB201_EDGES, NB201Arch
from lit_automl.spaces.nb201_supernet import save_nb201_files
from lit_automl.spaces.networks import batch_statistics
from lit_automl.spaces.sampling import candidate_ops, genotype_edge_weights, sample_genotype

__all__ = [
    "ONE_SHOT_CHECKPOINT_KEY",
    "OneShot",
    "OneShotSupernet",
    "RankedArchitecture",
    "join_paths",
    "node_slices",
    "one_shot_correct",
    "one_shot_logits",
    "path_drop_prob",
    "ramped_drop_rate",
    "sample_path_mask",
]

Batch = Tuple[torch.Tensor, torch.Tensor]
Architecture = Union[Genotype, NB201Arch]
Nodes = Union[int, Sequence[slice]]

RANKING_FILE = "one_shot_ranking.jsonl"

JOINS = ("mean", "sum")
"""How a node combines its kept paths: their average (weights ``1 / n``) or their sum (weights 1)."""

_MASK_STREAM, _ARCH_STREAM = 0, 1


# --------------------------------------------------------------------------- pure helpers


def path_drop_prob(rate: float, num_paths: int) -> float:
    """``rate ** (1 / k)``: per-path drop probability of a node with ``k`` incoming paths (Sec. 3)."""
    rate = check_real("rate", rate, low=0, high=1, high_open=True)
    return rate ** (1.0 / check_int("num_paths", num_paths, low=1))


def ramped_drop_rate(step: int, total_steps: int, final_rate: float) -> float:
    """Linear ramp from 0 at step 0 to ``final_rate`` at the last step ``total_steps - 1`` (Sec. 3)."""
    check_int("total_steps", total_steps, low=1)
    if total_steps == 1:
        return float(final_rate)
    return float(final_rate) * min(1.0, max(0, int(step)) / (total_steps - 1))


def node_slices(nodes: Nodes) -> List[slice]:
    """Per node, the slice of its incoming edge rows: ``steps`` (an int) is a DARTS cell of that many nodes
    (:func:`~lit_automl.spaces.geometry.node_edge_slices`); a sequence of slices is returned as given (e.g.
    :data:`NB201_NODE_EDGES`)."""
    if isinstance(nodes, bool) or not isinstance(nodes, (int, Sequence)):
        raise ValueError(f"nodes must be a DARTS cell's number of nodes (an int >= 1) or the slices of each node's "
                         f"incoming edge rows, got {nodes!r}")
    if isinstance(nodes, int):
        return node_edge_slices(check_int("steps", nodes, low=1))
    slices = list(nodes)
    if not slices or any(not isinstance(s, slice) or s.start is None or s.stop is None or s.stop <= s.start
                         for s in slices):
        raise ValueError(f"nodes must be non-empty slices (start < stop) of edge rows, one per node, got {nodes!r}")
    return slices


def _target_slices(endpoints: Sequence[Tuple[int, int]]) -> Tuple[slice, ...]:
    """Per target node (in edge order), the slice of its incoming edges; they must be consecutive rows."""
    out: List[slice] = []
    for e, (_, dst) in enumerate(endpoints):
        if out and endpoints[out[-1].start][1] == dst:
            out[-1] = slice(out[-1].start, e + 1)
        elif any(endpoints[s.start][1] == dst for s in out):
            raise ValueError(f"the edges into node {dst} are not consecutive rows: {list(endpoints)}")
        else:
            out.append(slice(e, e + 1))
    return tuple(out)


NB201_NODE_EDGES: Tuple[slice, ...] = _target_slices(NB201_EDGES)
"""The incoming edge rows of NAS-Bench-201 nodes 1, 2, 3 (``slice(0, 1), slice(1, 3), slice(3, 6)``)."""


def sample_path_mask(steps: Nodes, primitives: Sequence[str], rate: float,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A 0/1 path mask of shape (num_edges, num_ops) for one cell type (Sec. 3).

    ``steps``: the node geometry (:func:`node_slices`: a DARTS cell's node count, or the slices of each
    node's incoming edges, :data:`NB201_NODE_EDGES` for NAS-Bench-201). Every (input, op) path of a node
    (``k = inputs * |O|`` of them, ``none`` excluded; DARTS node ``i``: ``(i + 2) * |O|``) is dropped
    with probability ``rate ** (1 / k)``; a node that lost all of them gets one uniform path back
    (:func:`~lit_automl.spaces.drop_path.sample_keep_mask` with ``min_keep=1``).
    """
    ops = candidate_ops(primitives)
    if not ops:
        raise ValueError(f"primitives {list(primitives)} have no operation other than 'none'")
    slices = node_slices(steps)
    mask = torch.zeros(max(s.stop for s in slices), len(primitives))
    cols = torch.tensor(ops)
    for edges in slices:
        n_in = edges.stop - edges.start
        k = n_in * len(ops)
        keep = sample_keep_mask(k, path_drop_prob(rate, k), generator=generator).view(n_in, len(ops))
        mask[edges, cols] = keep.float()
    return mask


def join_paths(mask: torch.Tensor, steps: Nodes, join: str = "mean") -> torch.Tensor:
    """Edge weights from a 0/1 path mask: each node's kept paths averaged (``"mean"``) or summed (``"sum"``);
    ``steps`` is the node geometry (:func:`node_slices`).

    The mean keeps a node's output on one scale whether it kept 1 path or all ``k``, as FractalNet's
    join averages the paths that survive drop-path (Larsson et al., ICLR 2017, Sec. 2 and 3.1).
    """
    if check_choice("join", join, JOINS, allowed=f"one of {JOINS}") == "sum":
        return mask
    out = mask.clone()
    for edges in node_slices(steps):
        block = out[edges]
        block /= block.sum().clamp_min(1.0)
    return out


# --------------------------------------------------------------------------- one-shot scoring (shared)


ONE_SHOT_CHECKPOINT_KEY = "one_shot_ranking"
"""The entry :class:`OneShot` adds to every checkpoint it saves (its ranking); it marks a OneShot checkpoint."""


@runtime_checkable
class OneShotSupernet(Protocol):
    """What one-shot scoring needs from a trained weight-sharing supernet (an ``nn.Module``), nothing more.

    :class:`OneShot` provides both methods; another supernet (e.g. over NAS-Bench-201 cells) plugs into
    :func:`one_shot_correct` and :class:`~lit_automl.nas.one_shot_evaluator.OneShotEvaluator` by providing them.
    Scoring wraps the calls in :func:`~lit_automl.spaces.networks.batch_statistics` on the module.
    """

    def edge_weights(self, architecture: Any) -> Sequence[torch.Tensor]:
        """Edge weights that run exactly ``architecture``'s paths (refuse an architecture it cannot run)."""

    def weighted_logits(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits of ``x`` with edge weights ``weights``."""


def one_shot_logits(supernet: OneShotSupernet, x: torch.Tensor, architecture: Any) -> torch.Tensor:
    """Logits of ``architecture`` with the shared weights, batch norm on ``x``'s own statistics (Sec. 3)."""
    with batch_statistics(supernet):
        return supernet.weighted_logits(x, supernet.edge_weights(architecture))


@torch.no_grad()
def one_shot_correct(supernet: OneShotSupernet, architectures: Sequence[Any], batches: Sequence[Batch],
                     on_architecture: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """Correct predictions of each architecture over ``batches`` (a long tensor on the supernet's device).

    Every architecture runs on every ``(x, y)`` batch with batch norm on that batch's statistics
    (Bender et al. 2018, Sec. 3), so the counts do not depend on how batches are grouped or spread
    over processes. ``on_architecture`` is called after each architecture (a progress bar).
    """
    device = next(iter(supernet.parameters())).device
    correct = torch.zeros(len(architectures), dtype=torch.long, device=device)
    with batch_statistics(supernet):
        for a, architecture in enumerate(architectures):
            weights = supernet.edge_weights(architecture)
            for x, y in batches:
                correct[a] += (supernet.weighted_logits(x, weights).argmax(-1) == y).sum()
            if on_architecture is not None:
                on_architecture()
    return correct


# --------------------------------------------------------------------------- ranking records


@dataclass(frozen=True)
class RankedArchitecture:
    """One evaluated architecture: its place (1 = best), sample index, one-shot accuracy and cell (a DARTS
    :class:`Genotype`, or an :class:`~lit_automl.spaces.nb201.NB201Arch` for ``space="nb201"``)."""

    rank: int
    sample: int
    accuracy: float
    correct: int
    total: int
    genotype: Architecture

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready (plain python values; the genotype as :meth:`Genotype.to_dict`, an NB201 cell as its
        arch string)."""
        cell = str(self.genotype) if isinstance(self.genotype, NB201Arch) else self.genotype.to_dict()
        return {"rank": self.rank, "sample": self.sample, "accuracy": self.accuracy, "correct": self.correct,
                "total": self.total, "genotype": cell}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RankedArchitecture":
        cell = data["genotype"]
        cell = NB201Arch.parse(cell) if isinstance(cell, str) else Genotype.from_dict(cell)
        return cls(int(data["rank"]), int(data["sample"]), float(data["accuracy"]), int(data["correct"]),
                   int(data["total"]), cell)


def _ranked(genotypes: Sequence[Architecture], correct: Sequence[int], total: int) -> List[RankedArchitecture]:
    """Sorted by accuracy, best first; ties keep the sampling order."""
    order = sorted(range(len(genotypes)), key=lambda i: (-correct[i], i))
    return [RankedArchitecture(place + 1, i, correct[i] / max(total, 1), int(correct[i]), int(total), genotypes[i])
            for place, i in enumerate(order)]


# --------------------------------------------------------------------------- the module


class OneShot(SupernetSearch):
    """One-shot search with path dropout over the DARTS supernet, or the NAS-Bench-201 one with
    ``space="nb201"`` (Bender et al., ICML 2018, Sec. 3).

    Training: plain ``(x, y)`` batches; every step (every ghost batch) runs the supernet with a
    fresh path mask, dropping each of the ``k`` incoming paths of a node with rate ``r_t**(1/k)``,
    at least one kept, where ``r_t`` ramps linearly from 0 to ``drop_rate`` over the fit
    (``Trainer.estimated_stepping_batches`` steps, or ``epochs`` epochs when ``epochs`` is set, as
    the cosine schedule; logged per epoch as ``one_shot/drop_rate``).
    One optimiser: SGD on the supernet weights (no architecture parameters, so ``alphas`` is empty:
    :class:`~lit_automl.callbacks.GenotypeLogger` is not needed, this module writes its files).
    Parameters on dropped paths get no gradient, so SGD's weight decay touches only the paths the
    step used, as the paper regularises only the current architecture (Sec. 3, "Stabilizing model
    training").

    After training (``on_train_end``, ``rank_after_fit=True``) :meth:`rank_architectures` samples
    ``num_samples`` distinct architectures uniformly from the cell space, evaluates each with
    the one-shot weights on the datamodule's ``val_dataloader()`` (batch norm on the evaluation
    batch's statistics, Sec. 3) and ranks them by that accuracy. Under DDP every rank evaluates a
    share of the validation batches and the correct counts are summed, so every rank ends with the
    same ranking. The run folder (``trainer.log_dir``) gets ``one_shot_ranking.jsonl`` (one line
    per architecture, best first), ``genotype.txt`` / ``genotype.json`` / ``genotype.png`` (the
    best; NAS-Bench-201: ``genotype.txt`` the arch string, ``genotype.json`` ``{"arch": ...}``, no picture). :meth:`genotype` returns the best once ranked; the ranking is saved in checkpoints.

    Documented attributes: ``ranking`` (list of :class:`RankedArchitecture`, best first),
    ``last_masks`` (the 0/1 masks ``[normal, reduce]``, NAS-Bench-201 ``[cell]``, of each ghost batch of
    the latest step),
    ``genotype()``.

    During fit, validation reports ``val/acc``: the one-shot accuracy of a fixed probe architecture
    (the first of the ranking sample) — a progress signal, not a search result.

    Defaults: the supernet is the DARTS search supernet (C=16, 8 cells, 4 nodes, DARTS ops), not
    the paper's own space (choice blocks with several inputs and ops each); the weight optimiser is
    the DARTS search's (SGD lr 0.025 cosine to 0.001, momentum 0.9, weight decay 3e-4, gradient
    clip 5): this library's choice for this supernet. ``drop_rate=0.1`` is this library's choice
    (the paper tunes r and shows the ranking depends on it, Sec. 4 Fig. 4): at the end of training
    a node then keeps about ``-ln r = 2.3`` paths, as many as a sampled architecture uses (2).
    ``num_samples=1000`` is this library's choice. ``join="mean"`` (every node averages the paths it
    kept) is this library's choice too: summing 0/1-weighted paths (``join="sum"``) lets a node's
    output grow with the number of paths it kept (up to 35 here), which on digits started training
    at a loss of 5 (mean: 2.3) and did not learn at lr 0.1 (mean: loss 1.6 after 120 steps).

    ``space="nb201"`` (:class:`~lit_automl.nas.supernet.SupernetSearch`; ``C`` and ``cells_per_stage`` set
    the supernet): the same method over the NAS-Bench-201 cell (Dong & Yang, ICLR 2020): one mask per step,
    shared by every cell; nodes 1, 2, 3 have 4, 8, 12 paths. Architectures are
    :class:`~lit_automl.spaces.nb201.NB201Arch`: sampled with every edge uniform over the supernet's ops,
    ``none`` included (the uniform distribution of :class:`~lit_automl.spaces.nb201.NB201Space`; this
    library's choice of sampler: cells with no path from input to output are sampled too and score at chance),
    run with their one-hot (6, 5) weights (``none``: a zero row) joined by ``join`` as the masks are: with
    ``join="sum"`` exactly the benchmark's network of that cell with the shared weights, with ``"mean"`` each
    node averages its edges, as it did in training.

    Args:
        drop_rate: final path-dropout rate ``r`` in [0, 1).
        join: ``"mean"`` (kept paths of a node averaged: weights ``1 / n``) or ``"sum"`` (weights 1).
        ghost_batch_size: split every training batch into ghost batches of this size, each with
            its own mask and its own batch-norm statistics (Sec. 3, ghost batch normalisation);
            ``None``: one mask per batch. Masks are the same on every DDP rank.
        num_samples: architectures sampled and ranked after training (>= 1).
        rank_batches: validation batches each architecture is evaluated on (``None``: all).
        rank_after_fit: rank at the end of ``fit``; otherwise call :meth:`rank_architectures`.
        seed: seed of the mask and architecture generators (>= 0).
        **kwargs: the supernet and weight-optimiser settings of
            :class:`~lit_automl.nas.supernet.SupernetSearch`; its ``alpha_*`` settings do not apply
            (there are no architecture parameters) and are refused unless left at their defaults.

    Under DDP the dropped paths leave parameters unused: use
    ``strategy="ddp_find_unused_parameters_true"`` (or ``DDPStrategy(find_unused_parameters=True)``).
    """

    supported_spaces = ("darts", "nb201")

    unused_settings = {name: "has no architecture parameters" for name in (
        "alpha_lr", "alpha_betas", "alpha_weight_decay", "alpha_init_std", "alpha_grad_clip")}

    def __init__(
        self,
        drop_rate: float = 0.1,
        join: str = "mean",
        ghost_batch_size: Optional[int] = None,
        num_samples: int = 1000,
        rank_batches: Optional[int] = None,
        rank_after_fit: bool = True,
        seed: int = 0,
        **kwargs: Any,
    ):
        check_real("drop_rate", drop_rate, low=0, high=1, high_open=True, hint="the final path-dropout rate r")
        check_int("ghost_batch_size", ghost_batch_size, low=1, allow_none=True)
        check_int("num_samples", num_samples, low=1)
        check_int("rank_batches", rank_batches, low=1, allow_none=True)
        check_int("seed", seed, low=0)
        check_choice("join", join, JOINS, allowed=f"one of {JOINS}")
        check_bool("rank_after_fit", rank_after_fit)
        super().__init__(**kwargs)
        self.ranking: List[RankedArchitecture] = []
        self.last_masks: List[List[torch.Tensor]] = []
        self._total_steps: Optional[int] = None

    def init_architecture(self, alpha_init_std: float) -> None:
        """One-shot search has no architecture parameters; the op set needs a real operation."""
        if not candidate_ops(self.primitives):
            raise ValueError(f"primitives must contain an operation other than 'none', got {list(self.primitives)}")

    def arch_parameters(self) -> List[nn.Parameter]:
        return []

    def epochs_used(self, w_lr_min: Optional[float]) -> bool:
        """``epochs`` also sets the length of the drop-rate ramp (see :meth:`total_steps`)."""
        return True

    # ------------------------------------------------------------------ masks

    def total_steps(self) -> int:
        """Steps the drop rate ramps over: ``epochs`` epochs of ``trainer.num_training_batches`` steps
        when ``epochs`` is set (a fit interrupted early keeps the schedule), else the whole fit
        (``trainer.estimated_stepping_batches``)."""
        if self._total_steps is None:
            try:
                if self.hparams.epochs is not None:
                    estimated = self.hparams.epochs * self.trainer.num_training_batches
                else:
                    estimated = self.trainer.estimated_stepping_batches
            except RuntimeError:  # not attached to a Trainer
                raise RuntimeError("OneShot needs the number of training steps: attach a Trainer or pass "
                                   "total_steps") from None
            if not math.isfinite(estimated):
                raise ValueError("OneShot ramps its drop rate over the fit: set epochs=..., Trainer(max_epochs=...) "
                                 "or max_steps")
            self._total_steps = max(1, int(estimated))
        return self._total_steps

    def drop_rate_at(self, step: int, total_steps: Optional[int] = None) -> float:
        """``r_t``: the path-dropout rate at training step ``step`` (linear ramp from 0, Sec. 3)."""
        total = self.total_steps() if total_steps is None else total_steps
        return ramped_drop_rate(step, total, self.hparams.drop_rate)

    @property
    def node_edges(self) -> List[slice]:
        """The supernet cell's node geometry: per node, the rows of its incoming edges (:func:`node_slices`)."""
        return node_slices(NB201_NODE_EDGES if self.hparams.space == "nb201" else self.model.steps)

    def path_masks(self, step: int, num_masks: int = 1, rate: Optional[float] = None) -> List[List[torch.Tensor]]:
        """``num_masks`` masks, one per cell type (``[normal, reduce]``; NAS-Bench-201: ``[cell]``), for training
        step ``step``: a pure function of ``(seed, step, rate)``, drawn on the CPU (identical on every rank and
        after a resume)."""
        rate = self.drop_rate_at(step) if rate is None else rate
        generator = keyed_generator(self.hparams.seed, _MASK_STREAM, step)
        nodes = self.node_edges
        return [[sample_path_mask(nodes, self.primitives, rate, generator) for _ in self.cell_names]
                for _ in range(num_masks)]

    def path_weights(self, mask: torch.Tensor) -> torch.Tensor:
        """The supernet edge weights of a 0/1 path mask (see ``join``), on this module's device."""
        return join_paths(mask, self.node_edges, self.hparams.join).to(self.device)

    # ------------------------------------------------------------------ architectures

    def sample_architectures(self, num_samples: int, seed: Optional[int] = None) -> List[Architecture]:
        """``num_samples`` distinct uniform samples of the cell space (DARTS cells; NAS-Bench-201: every edge
        uniform over the supernet's ops, ``none`` included), fewer, with a warning, when a small space runs
        out: at most ``20 * num_samples`` draws."""
        check_int("num_samples", num_samples, low=1)
        generator = keyed_generator(self.hparams.seed if seed is None else seed, _ARCH_STREAM, 0)
        found: Dict[Architecture, None] = {}
        for _ in range(20 * num_samples):
            found.setdefault(self._sample_architecture(generator))
            if len(found) == num_samples:
                break
        if len(found) < num_samples:
            rank_zero_warn(f"OneShot: only {len(found)} distinct architectures found in {20 * num_samples} draws "
                           f"(num_samples={num_samples}); ranking those")
        return list(found)

    def _sample_architecture(self, generator: torch.Generator) -> Architecture:
        if self.hparams.space == "nb201":
            picks = torch.randint(len(self.primitives), (len(NB201_EDGES),), generator=generator).tolist()
            return NB201Arch(tuple(self.primitives[k] for k in picks))
        return sample_genotype(self.model.steps, self.model.multiplier, self.primitives, generator)

    def edge_weights(self, genotype: Architecture) -> List[torch.Tensor]:
        """Supernet weights that run exactly ``genotype``'s ops (see ``join``): ``[normal, reduce]`` of a DARTS
        :class:`Genotype`; ``[cell]`` of an :class:`~lit_automl.spaces.nb201.NB201Arch` (``space="nb201"``), its
        one-hot (6, num_ops) matrix with ``none`` a zero row."""
        if self.hparams.space == "nb201":
            return [self.path_weights(self._nb201_mask(genotype))]
        if not isinstance(genotype, Genotype):
            raise ValueError(f"this OneShot searches DARTS cells (space='darts'): it scores a Genotype, got "
                             f"{type(genotype).__name__}: {genotype!r}")
        return [self.path_weights(m) for m in genotype_edge_weights(genotype, self.primitives, self.model.steps)]

    def _nb201_mask(self, arch: Any) -> torch.Tensor:
        """The 0/1 (6, num_ops) matrix of ``arch``'s ops (``none``: a zero row); refuses ops the supernet lacks."""
        if not isinstance(arch, NB201Arch):
            raise ValueError(f"this OneShot searches NAS-Bench-201 cells (space='nb201'): it scores an NB201Arch, "
                             f"got {type(arch).__name__}: {arch!r}")
        mask = torch.zeros(len(NB201_EDGES), len(self.primitives))
        for e, op in enumerate(arch.ops):
            if op not in self.primitives:
                raise ValueError(f"cell {arch}: edge {NB201_EDGES[e][0]}->{NB201_EDGES[e][1]} has op {op!r}, which "
                                 f"the supernet does not have (its ops: {list(self.primitives)})")
            if op != "none":
                mask[e, self.primitives.index(op)] = 1.0
        return mask

    def probe_genotype(self) -> Architecture:
        """The fixed architecture ``val/acc`` follows during training (the first ranking sample)."""
        return self.sample_architectures(1)[0]

    def weighted_logits(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Supernet logits of ``x`` with edge weights ``weights`` (``[normal, reduce]``): what one-shot
        scoring (:func:`one_shot_correct`) runs, with :meth:`edge_weights` (:class:`OneShotSupernet`)."""
        return self.model(self.format_input(x), *weights)

    def one_shot_logits(self, x: torch.Tensor, genotype: Architecture) -> torch.Tensor:
        """Logits of ``genotype`` with the one-shot weights, batch norm on ``x``'s own statistics
        (:func:`one_shot_logits`)."""
        return one_shot_logits(self, x, genotype)

    def genotype(self) -> Architecture:
        """The best ranked architecture (an :class:`~lit_automl.spaces.nb201.NB201Arch` for ``space="nb201"``) (after :meth:`rank_architectures`, or from a checkpoint)."""
        if not self.ranking:
            raise RuntimeError(
                "OneShot has no ranking yet: the best genotype exists after fit (rank_after_fit=True) or after "
                "rank_architectures(dataloader)"
            )
        return self.ranking[0].genotype

    def forward(self, x: torch.Tensor, genotype: Optional[Architecture] = None) -> torch.Tensor:
        """One-shot logits of ``genotype`` (default: the best ranked one)."""
        return self.one_shot_logits(x, self.genotype() if genotype is None else genotype)

    # ------------------------------------------------------------------ evaluation and ranking

    def _local_batches(self, dataloader: Iterable, max_batches: Optional[int]) -> List[Batch]:
        """This rank's share of the first ``max_batches`` batches (batch ``b`` goes to rank ``b % world``)."""
        rank, world = dist_rank(), world_size()
        out = []
        for b, batch in enumerate(dataloader):
            if max_batches is not None and b >= max_batches:
                break
            if b % world == rank:
                x, y = self.plain_batch(batch)
                out.append((self.format_input(x.to(self.device)), y.to(self.device)))
        return out

    @torch.no_grad()
    def evaluate_architectures(self, genotypes: Sequence[Architecture], dataloader: Iterable,
                               max_batches: Optional[int] = None, progress: bool = False) -> Tuple[List[int], int]:
        """``(correct per architecture, examples)`` of one-shot evaluation, summed over DDP ranks.

        Every architecture sees the same batches; batch norm uses each batch's statistics, so the
        counts do not depend on how the batches are spread over ranks. The scoring itself is
        :func:`one_shot_correct` (shared with :class:`~lit_automl.nas.one_shot_evaluator.OneShotEvaluator`).
        """
        batches = self._local_batches(dataloader, max_batches)
        total = torch.tensor([sum(len(y) for _, y in batches)], dtype=torch.long, device=self.device)
        bar = _progress_bar(len(genotypes), progress and dist_rank() == 0)
        correct = one_shot_correct(self, genotypes, batches, on_architecture=lambda: bar.update(1))
        bar.close()
        counts = all_reduce_sum(torch.cat([correct, total]))
        return [int(c) for c in counts[:-1].tolist()], int(counts[-1])

    def rank_architectures(self, dataloader: Iterable, num_samples: Optional[int] = None,
                           max_batches: Optional[int] = None, progress: bool = False) -> List[RankedArchitecture]:
        """Sample, evaluate and rank architectures by one-shot validation accuracy (Sec. 3).

        Call it on every rank under DDP (it all-reduces). The result, best first, is also kept as
        ``self.ranking`` (so :meth:`genotype` returns its head).
        """
        genotypes = self.sample_architectures(self.hparams.num_samples if num_samples is None else num_samples)
        correct, total = self.evaluate_architectures(genotypes, dataloader, max_batches, progress)
        if total == 0:
            raise ValueError("the ranking dataloader yielded no batches: nothing to evaluate the architectures on")
        self.ranking = _ranked(genotypes, correct, total)
        return self.ranking

    def write_ranking(self, folder: Union[str, Path], plot: bool = True) -> Path:
        """Write ``one_shot_ranking.jsonl`` and the best genotype (``.txt``, ``.json``, ``.png``; an NB201 cell:
        its arch string and ``{"arch": ...}``)."""
        best = self.genotype()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(entry.to_dict()) + "\n" for entry in self.ranking]
        (folder / RANKING_FILE).write_text("".join(lines), encoding="utf-8")
        if isinstance(best, NB201Arch):
            save_nb201_files(best, folder)
            return folder
        save_genotype_files(best, folder, plot=plot, title=f"OneShot: best of {len(self.ranking)} "
                            f"(one-shot val. acc. {self.ranking[0].accuracy:.3f})")
        return folder

    # ------------------------------------------------------------------ the search step

    def _ghost_batches(self, x: torch.Tensor, y: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        size = self.hparams.ghost_batch_size or len(y)
        return list(zip(torch.split(x, size), torch.split(y, size)))

    def search_step(self, batch: Any, optimizers: Sequence[torch.optim.Optimizer], backward: Optional[Backward] = None,
                    batch_idx: int = 0) -> Dict[str, torch.Tensor]:
        """One step of the one-shot model: every ghost batch runs the supernet with its own path mask."""
        x, y = self.plain_batch(batch)
        (w_opt,) = optimizers
        ghosts = self._ghost_batches(self.format_input(x), y)
        self.last_masks = self.path_masks(self.global_step, len(ghosts))
        loss_sum, correct = x.new_zeros(()), x.new_zeros(())
        for (xg, yg), masks in zip(ghosts, self.last_masks):
            logits = self.model(xg, *(self.path_weights(m) for m in masks))
            loss_sum = loss_sum + F.cross_entropy(logits, yg, reduction="sum")
            correct = correct + (logits.argmax(-1) == yg).sum()
        loss = loss_sum / len(y)
        self.check_finite(loss, "training loss", batch_idx, x)
        w_opt.zero_grad()
        self.run_backward(loss, backward)
        self.weight_step(w_opt)
        return {"train/loss": loss.detach(), "train/acc": correct / len(y)}

    # ------------------------------------------------------------------ Lightning hooks

    def on_fit_start(self) -> None:
        require_find_unused_parameters(self.trainer.strategy.model,
                                       "OneShot drops paths, so parameters go unused in a step")

    def epoch_metrics(self) -> Dict[str, Any]:
        return {"one_shot/drop_rate": self.drop_rate_at(max(0, self.global_step - 1))}

    def evaluation_logits(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Validation follows the fixed probe architecture; test scores the best ranked one."""
        return self.one_shot_logits(x, self.probe_genotype() if stage == "val" else self.genotype())

    def on_train_start(self) -> None:
        self._total_steps = None  # re-read: max_epochs may differ after a resume
        self.total_steps()

    def on_train_end(self) -> None:
        if not self.hparams.rank_after_fit:
            return
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # collective under DDP: every rank
        loader = self._ranking_dataloader()
        if loader is None:
            return
        show = self.trainer.is_global_zero and self.trainer.progress_bar_callback is not None
        self.rank_architectures(loader, max_batches=self.hparams.rank_batches, progress=show)
        if self.trainer.is_global_zero:
            self.write_ranking(folder)
            self._report(folder)

    def _ranking_dataloader(self) -> Optional[Iterable]:
        datamodule = self.trainer.datamodule
        if datamodule is None or not callable(getattr(datamodule, "val_dataloader", None)):
            rank_zero_warn("OneShot: no datamodule with val_dataloader(); architectures were not ranked. "
                           "Call rank_architectures(dataloader) yourself")
            return None
        return datamodule.val_dataloader()

    def _report(self, folder: Path) -> None:
        head = self.ranking[0]
        accs = [entry.accuracy for entry in self.ranking]
        for logger in self.trainer.loggers:
            logger.log_metrics({"one_shot/best_val_acc": head.accuracy, "one_shot/median_val_acc": float(np.median(accs))},
                               step=self.global_step)
        rank_zero_info(f"OneShot: best of {len(accs)} architectures, one-shot val. acc. {head.accuracy:.4f} "
                       f"(median {np.median(accs):.4f}); written to {folder}: {head.genotype}")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[ONE_SHOT_CHECKPOINT_KEY] = [entry.to_dict() for entry in self.ranking]
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.ranking = [RankedArchitecture.from_dict(d) for d in checkpoint.get(ONE_SHOT_CHECKPOINT_KEY, [])]
        super().on_load_checkpoint(checkpoint)


def _progress_bar(total: int, show: bool):
    """A tqdm bar over architecture evaluations (a no-op object when not shown)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="one-shot ranking", unit="arch", disable=not show)

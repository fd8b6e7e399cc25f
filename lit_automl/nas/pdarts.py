"""P-DARTS: progressive differentiable architecture search on the one DARTS supernet.

Chen, Xie, Wu & Tian, "Progressive Differentiable Architecture Search: Bridging the Depth Gap
between Search and Evaluation", ICCV 2019.

* Sec. 3.2 (search space approximation): the search runs in stages of growing depth (5, 11 and
  17 cells on CIFAR-10) over a shrinking candidate set (8, 5 and 3 ops per edge). Each stage is
  a fresh supernet with fresh weights and alphas; after a stage, every edge keeps the ops with
  the largest ``softmax(alpha)`` (:func:`strongest_ops`).
* Sec. 3.3 (search space regularization): operation-level dropout after every ``skip_connect``,
  from a stage-wise initial rate, decayed over the epochs of the stage (the callback
  :class:`lit_automl.callbacks.skip_dropout.SkipDropoutDecay`); and architecture refinement: the
  final normal cell keeps exactly ``M = 2`` skip-connects (:func:`refine_skip_connects`).
* Sec. 4.2 (CIFAR-10 search): 25 epochs per stage, only the network weights trained in the first
  10, batch 96, alphas Adam lr 6e-4, weight decay 1e-3.

One :class:`PDARTS` module is ONE stage (DDP forbids swapping modules inside a fit):
:meth:`PDARTS.next_stage` builds the next one and :func:`fit_stages` runs one ``Trainer.fit`` per
stage. ``lit-automl fit`` does the same for any model with ``next_stage()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lit_automl._checks import check_int, check_real, check_sequence
from lit_automl.nas.darts import DARTS
from lit_automl.resume import read_checkpoint
from lit_automl.spaces.cells import EdgePrimitives, edge_primitive_lists
from lit_automl.spaces.derive import derive_cell
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_edge_slices, num_search_edges
from lit_automl.spaces.ops import resolve_primitives

__all__ = ["PDARTS", "check_stage_schedule", "fit_stages", "refine_skip_connects", "strongest_ops"]

SKIP = "skip_connect"
EdgeOps = List[List[str]]


# ----------------------------------------------------------------------------- pure decisions
def strongest_ops(weights: torch.Tensor, edge_ops: Sequence[Sequence[str]], k: int) -> EdgeOps:
    """On every edge, the ``k`` ops with the largest weight (Sec. 3.2), in their column order.

    ``weights``: (num_edges, num_ops), e.g. ``softmax(alpha)``; ``edge_ops[e][j]`` names column
    ``j`` of edge ``e``. ``none`` competes like any op (the authors drop it only in the last
    stage, which :func:`refine_skip_connects` / ``derive_cell`` handle). Ties keep the lower
    column (this library's choice; the authors' ``argmin`` drops the lower one first).
    """
    if weights.dim() != 2 or weights.shape[0] != len(edge_ops):
        raise ValueError(f"weights must have shape ({len(edge_ops)}, num_ops), got {tuple(weights.shape)}")
    num_ops = weights.shape[1]
    for e, names in enumerate(edge_ops):
        if len(names) != num_ops:
            raise ValueError(f"edge {e} names {len(names)} ops but weights have {num_ops} columns")
    check_int("k", k, low=1, high=num_ops, allowed=f"an int in 1..{num_ops}", hint="the ops on each edge")
    w = weights.detach().to("cpu", torch.float64)
    order = torch.sort(-w, dim=1, stable=True).indices[:, :k]  # stable: ties keep the lower column
    return [[edge_ops[e][j] for j in sorted(order[e].tolist())] for e in range(len(edge_ops))]


def _count_skips(nodes: Sequence[Sequence[Tuple[str, int]]]) -> int:
    return sum(op == SKIP for node in nodes for op, _ in node)


def _usable_edges(w: torch.Tensor, edges: slice) -> int:
    """Edges of one node that still have an op to choose (a finite non-``none`` weight)."""
    return int(torch.isfinite(w[edges]).any(dim=1).sum())


def _weakest_removable_skip(nodes: Sequence[Sequence[Tuple[str, int]]], w: torch.Tensor,
                            edge_ops: Sequence[Sequence[str]], k: int) -> Optional[Tuple[int, int]]:
    """``(edge, column)`` of the chosen skip-connect with the smallest weight (ties: lowest edge)
    whose removal leaves its node ``k`` usable edges; ``None`` when there is none."""
    candidates = []
    for node, edges in zip(nodes, node_edge_slices(len(nodes))):
        n_in = edges.stop - edges.start
        for op, j in node:
            if op != SKIP:
                continue
            e = edges.start + j
            col = list(edge_ops[e]).index(SKIP)
            trial = w.clone()
            trial[e, col] = -math.inf
            if _usable_edges(trial, edges) >= min(k, n_in):
                candidates.append((float(w[e, col]), e, col))
    if not candidates:
        return None
    _, e, col = min(candidates)
    return e, col


def refine_skip_connects(
    weights: torch.Tensor, edge_ops: EdgePrimitives, steps: int, max_skip_connects: int, k: int = 2
) -> List[Tuple[Tuple[str, int], ...]]:
    """Derive a cell with at most ``max_skip_connects`` skip-connects (Sec. 3.3, "architecture refinement").

    As in the authors' code: derive the cell (``derive_cell``: top-``k`` edges per node by their
    strongest non-``none`` weight); while it holds more than ``M`` skip-connects, take the chosen
    skip-connect with the smallest weight (ties: lowest edge index), remove it from its edge's
    candidates and derive again, so that edge falls back to its next-best op, or the node to its
    next-best edge. Every removal lowers the count by at most one, so the result has exactly ``M``
    whenever the unrefined cell has ``>= M`` and each edge has another non-``none`` candidate (any
    last stage of >= 3 ops); a cell with ``<= M`` is returned unchanged. A skip-connect whose
    removal would leave its node fewer than ``k`` usable edges is kept. ``edge_ops``: op names
    shared by every edge or one list per edge (``weights`` columns).
    """
    check_int("max_skip_connects", max_skip_connects, low=0)
    edge_ops = edge_primitive_lists(edge_ops, num_search_edges(steps))
    if tuple(weights.shape) != (len(edge_ops), len(edge_ops[0])):
        raise ValueError(f"weights must have shape ({len(edge_ops)}, {len(edge_ops[0])}) for steps={steps}, "
                         f"got {tuple(weights.shape)}")
    w = weights.detach().to("cpu", torch.float64).clone()
    for e, names in enumerate(edge_ops):
        for j, name in enumerate(names):
            if name == "none":
                w[e, j] = -math.inf
    while True:
        nodes = derive_cell(w, edge_ops, steps, k)
        if _count_skips(nodes) <= max_skip_connects:
            return nodes
        removal = _weakest_removable_skip(nodes, w, edge_ops, k)
        if removal is None:
            return nodes
        w[removal] = -math.inf


def _plain_ops(ops: Mapping[str, Sequence[Sequence[str]]]) -> Dict[str, EdgeOps]:
    return {cell: [list(edge) for edge in ops[cell]] for cell in CELL_TYPES}


# ----------------------------------------------------------------------------- validation
def check_stage_schedule(
    stage_layers: Sequence[int], stage_num_ops: Sequence[int], stage_skip_dropout: Sequence[float]
) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[float, ...]]:
    """Validate and normalise the per-stage schedule: cells grow, candidates shrink, one entry each."""
    layers = check_sequence("stage_layers", stage_layers, lambda n, v: check_int(n, v, low=1),
                            allowed="ints >= 1 (one per stage)", min_len=1)
    num_ops = check_sequence("stage_num_ops", stage_num_ops, lambda n, v: check_int(n, v, low=2),
                             allowed="ints >= 2 (one per stage)", min_len=1)
    rates = check_sequence("stage_skip_dropout", stage_skip_dropout,
                           lambda n, v: check_real(n, v, low=0, high=1, high_open=True),
                           allowed="rates in [0, 1) (one per stage)")
    if not len(layers) == len(num_ops) == len(rates):
        raise ValueError(
            "stage_layers, stage_num_ops and stage_skip_dropout need one entry per stage, got lengths "
            f"{len(layers)}, {len(num_ops)} and {len(rates)}"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(
            f"stage_layers must increase from stage to stage (each stage a deeper supernet), got {list(layers)}"
        )
    if any(b >= a for a, b in zip(num_ops, num_ops[1:])):
        raise ValueError(f"stage_num_ops must shrink from stage to stage (fewer candidates per edge), got {list(num_ops)}")
    return layers, num_ops, rates


def _check_surviving_ops(surviving_ops: Any, stage: int, num_ops: int, primitives: Sequence[str],
                         num_edges: int) -> Optional[Dict[str, EdgeOps]]:
    """``None`` in stage 0 (full op set); otherwise ``{"normal", "reduce"}`` of ``num_edges`` lists of ``num_ops`` ops."""
    if stage == 0:
        if surviving_ops is not None:
            raise ValueError("stage 0 searches the full op set on every edge: surviving_ops must be None")
        return None
    if not isinstance(surviving_ops, Mapping) or set(surviving_ops) != set(CELL_TYPES):
        got = sorted(surviving_ops) if isinstance(surviving_ops, Mapping) else surviving_ops
        raise ValueError(
            f"stage {stage} needs surviving_ops = {{'normal': [...], 'reduce': [...]}} with one op list per edge "
            f"(from next_stage() or a stage checkpoint), got {got!r}"
        )
    allowed = set(primitives)
    for cell in CELL_TYPES:
        edges = surviving_ops[cell]
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence) or len(edges) != num_edges:
            raise ValueError(f"surviving_ops[{cell!r}] must hold one op list per edge ({num_edges}), got {edges!r}")
        for e, ops in enumerate(edges):
            if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or len(ops) != num_ops:
                raise ValueError(
                    f"surviving_ops[{cell!r}][{e}] must list {num_ops} ops (stage {stage} searches {num_ops} per edge), "
                    f"got {ops!r}"
                )
            unknown = [op for op in ops if op not in allowed]
            if unknown:
                raise ValueError(f"surviving_ops[{cell!r}][{e}] has ops {unknown} outside primitives {list(primitives)}")
            if len(set(ops)) != len(ops):
                raise ValueError(f"surviving_ops[{cell!r}][{e}] must not repeat an op, got {list(ops)}")
    return _plain_ops(surviving_ops)


# ----------------------------------------------------------------------------- the module
class PDARTS(DARTS):
    """One stage of a P-DARTS search (Chen et al., ICCV 2019), first-order DARTS underneath.

    Defaults are the paper's CIFAR-10 search (Sec. 4.2): three stages of ``stage_layers=(5, 11,
    17)`` cells over ``stage_num_ops=(8, 5, 3)`` candidates per edge, C=16 (the authors' code,
    ``init_channels``), 4 nodes; 25 epochs per stage (``Trainer(max_epochs=25)``) with the alphas
    frozen for the first ``arch_warmup_epochs=10``; weights SGD lr 0.025, momentum 0.9, weight
    decay 3e-4, cosine-annealed per stage to ``w_lr_min=0`` (the authors' code), gradient-norm
    clip 5; alphas Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3; batch 96 per half
    (the datamodule's). Initial skip-connect dropout ``stage_skip_dropout=(0.0, 0.4, 0.7)``
    (Sec. 4.2, CIFAR-10; the authors' README runs 0.1 in stage 0, and CIFAR-100 uses 0.1, 0.2,
    0.3). ``max_skip_connects=2`` (Sec. 3.3, M=2). ``alpha_grad_clip=5``: the authors' code clips
    the alpha gradient norm too (the paper does not say).

    Args:
        stage: 0-based stage this module searches.
        surviving_ops: ``None`` in stage 0 (every edge searches ``primitives``); in later stages
            ``{"normal": [[op, ...] per edge], "reduce": [...]}`` with ``stage_num_ops[stage]``
            ops per edge (what :meth:`next_stage` passes). Stored in the hyperparameters, so a
            checkpoint records it with ``stage``.
        stage_layers: cells of the supernet in each stage (increasing).
        stage_num_ops: candidates per edge in each stage (decreasing, ``>= 2``; the first is
            the size of ``primitives``).
        stage_skip_dropout: initial dropout rate after ``skip_connect`` in each stage. The
            module starts with it (``model.skip_dropout``); ``SkipDropoutDecay`` decays it,
            reading :attr:`initial_skip_dropout`.
        max_skip_connects: M of the final normal cell (last stage's :meth:`genotype`); ``None``
            keeps the derived cell unrefined.
        layers: ``None`` (the stage's depth, ``stage_layers[stage]``) or that same number.
        order: 1, first order (xi = 0), as the authors' code searches (no unrolled step); 2 runs
            DARTS's second order (an extension of this library, not in the paper).
        alpha_grad_clip: max norm of the architecture gradient (0 disables).
        **kwargs: the other settings of :class:`DARTS` and :class:`~lit_automl.nas.supernet.SupernetSearch`.

    Documented attributes: ``alphas``, ``genotype()``, ``stage``, ``num_stages``,
    ``is_last_stage``, ``initial_skip_dropout``, ``surviving_ops``, ``model.skip_dropout``.
    """

    supported_spaces = ("darts",)  # the DARTS space only (SupernetSearch.space)

    resume_state_hparams = ("stage", "surviving_ops")
    """Hyperparameters the staged run itself rewrites (``next_stage``): a stage checkpoint legitimately holds
    other values than the recipe, so resuming does not count them as changed settings."""

    def __init__(
        self,
        stage: int = 0,
        surviving_ops: Optional[Dict[str, List[List[str]]]] = None,
        stage_layers: Sequence[int] = (5, 11, 17),
        stage_num_ops: Sequence[int] = (8, 5, 3),
        stage_skip_dropout: Sequence[float] = (0.0, 0.4, 0.7),
        max_skip_connects: Optional[int] = 2,
        layers: Optional[int] = None,
        order: int = 1,
        w_lr_min: float = 0.0,
        alpha_lr: float = 6e-4,
        alpha_grad_clip: float = 5.0,
        arch_warmup_epochs: int = 10,
        **kwargs: Any,
    ):
        # Normalised locals are what save_hyperparameters (in SupernetSearch.__init__) records.
        stage_layers, stage_num_ops, stage_skip_dropout = check_stage_schedule(
            stage_layers, stage_num_ops, stage_skip_dropout
        )
        stage = check_int("stage", stage, low=0, high=len(stage_layers) - 1, allowed=f"an int in 0..{len(stage_layers) - 1}",
                          hint=f"{len(stage_layers)} stages")
        if layers is not None and layers != stage_layers[stage]:
            raise ValueError(
                f"layers={layers!r} differs from stage_layers[{stage}]={stage_layers[stage]}: P-DARTS takes each "
                "stage's depth from stage_layers (leave layers=None)"
            )
        check_int("max_skip_connects", max_skip_connects, low=0, allow_none=True,
                  hint="the paper's M=2; None keeps the final cell unrefined")
        super().__init__(layers=stage_layers[stage], order=order, w_lr_min=w_lr_min, alpha_lr=alpha_lr,
                         alpha_grad_clip=alpha_grad_clip, arch_warmup_epochs=arch_warmup_epochs, **kwargs)
        self.model.skip_dropout = self.initial_skip_dropout

    def supernet_options(self) -> Dict[str, Any]:
        """Per-edge candidates of this stage (``None`` in stage 0: ``primitives`` everywhere), checked
        against ``primitives`` and the schedule."""
        hp = self.hparams
        prims = resolve_primitives(hp.primitives)
        if hp.stage_num_ops[0] != len(prims):
            too = "more candidates than" if hp.stage_num_ops[0] > len(prims) else "fewer candidates than"
            raise ValueError(
                f"stage_num_ops={list(hp.stage_num_ops)} asks for {too} the {len(prims)} primitives {list(prims)}: "
                f"the first stage searches the full op set, so stage_num_ops[0] must be {len(prims)}"
            )
        hp.surviving_ops = _check_surviving_ops(hp.surviving_ops, hp.stage, hp.stage_num_ops[hp.stage], prims,
                                                num_search_edges(hp.steps))
        return {"edge_primitives": hp.surviving_ops}

    # ------------------------------------------------------------------ stage bookkeeping
    @property
    def stage(self) -> int:
        """0-based stage of this module."""
        return int(self.hparams.stage)

    @property
    def num_stages(self) -> int:
        return len(self.hparams.stage_layers)

    @property
    def is_last_stage(self) -> bool:
        return self.stage == self.num_stages - 1

    @property
    def initial_skip_dropout(self) -> float:
        """This stage's initial dropout rate after ``skip_connect`` (read by ``SkipDropoutDecay``)."""
        return float(self.hparams.stage_skip_dropout[self.stage])

    @property
    def surviving_ops(self) -> Dict[str, EdgeOps]:
        """The candidates each edge searches in this stage, as plain lists."""
        return _plain_ops(self.model.edge_primitives)

    def at_stage(self, stage: int, surviving_ops: Optional[Mapping[str, Sequence[Sequence[str]]]]) -> "PDARTS":
        """A fresh module (new weights and alphas) for ``stage`` over ``surviving_ops``, other settings as here.

        The settings are this module's hyperparameters: its constructor arguments, and keys with a
        leading ``_``, LightningCLI's record of the class it built (``_class_path``), which the new
        module carries on so that ``--ckpt_path`` rebuilds any stage from its checkpoint."""
        ops = None if surviving_ops is None else _plain_ops(surviving_ops)
        settings = {k: v for k, v in self.hparams.items() if not k.startswith("_")}
        module = type(self)(**{**settings, "stage": stage, "surviving_ops": ops})
        module.hparams.update({k: v for k, v in self.hparams.items() if k.startswith("_")})
        return module

    def next_stage(self) -> Optional["PDARTS"]:
        """The next stage's fresh module, each edge keeping its ``stage_num_ops[stage + 1]`` strongest
        ops by ``softmax(alpha)`` (Sec. 3.2); ``None`` after the last stage."""
        if self.is_last_stage:
            return None
        k = self.hparams.stage_num_ops[self.stage + 1]
        weights = dict(zip(CELL_TYPES, self.edge_weights()))
        ops = {cell: strongest_ops(weights[cell], self.model.edge_primitives[cell], k) for cell in CELL_TYPES}
        return self.at_stage(self.stage + 1, ops)

    def for_checkpoint(self, ckpt_path: Union[str, os.PathLike], weights_only: bool = True) -> "PDARTS":
        """A fresh module of the stage (and surviving ops) a stage checkpoint recorded, ready for
        ``trainer.fit(module, ckpt_path=ckpt_path)``; the other settings are this module's."""
        checkpoint = read_checkpoint(ckpt_path, name="P-DARTS stage checkpoint", weights_only=weights_only)
        hp = checkpoint.get("hyper_parameters", {})
        missing = [key for key in ("stage", "surviving_ops") if key not in hp]
        if missing:
            raise ValueError(
                f"{os.fspath(ckpt_path)} is not a P-DARTS stage checkpoint: its hyperparameters lack {missing}"
            )
        return self.at_stage(int(hp["stage"]), hp["surviving_ops"])

    # ------------------------------------------------------------------ search
    def genotype(self) -> Genotype:
        """The cell the alphas encode; in the last stage the normal cell is refined to at most
        ``max_skip_connects`` skip-connects (Sec. 3.3). ``none`` is never chosen."""
        plain = super().genotype()
        M = self.hparams.max_skip_connects
        if not self.is_last_stage or M is None:
            return plain
        w_normal = self.edge_weights()[0]
        normal = refine_skip_connects(w_normal, self.model.edge_primitives["normal"], self.model.steps, M)
        return dataclasses.replace(plain, normal=normal)

    def epoch_metrics(self) -> Dict[str, Any]:
        return {**super().epoch_metrics(), "pdarts/stage": float(self.stage)}

    @property
    def search_label(self) -> str:
        return f"{type(self).__name__} stage {self.stage + 1}/{self.num_stages}"


# ----------------------------------------------------------------------------- staged fits
def fit_stages(
    module: PDARTS,
    make_trainer: Callable[[int], pl.Trainer],
    datamodule: Optional[pl.LightningDataModule] = None,
    ckpt_path: Optional[Union[str, os.PathLike]] = None,
    **fit_kwargs: Any,
) -> PDARTS:
    """Run every remaining stage, one fresh ``make_trainer(stage).fit`` each; return the last stage's module.

    ``module``: any stage (usually stage 0). ``ckpt_path``: a stage checkpoint to resume; the
    stage and surviving ops come from it (:meth:`PDARTS.for_checkpoint`), the run continues with
    the stages after it. ``fit_kwargs`` go to every ``Trainer.fit`` (e.g. ``weights_only``).
    A module is never swapped inside a fit, so every stage works under DDP.
    """
    if ckpt_path is not None:
        if os.fspath(ckpt_path) in ("last", "best", "hpc", "registry"):
            raise ValueError(f"fit_stages resumes from a checkpoint file, got ckpt_path={ckpt_path!r}")
        module = module.for_checkpoint(ckpt_path, weights_only=fit_kwargs.get("weights_only") is not False)
    while True:
        rank_zero_info(
            f"P-DARTS stage {module.stage + 1}/{module.num_stages}: {len(module.model.cells)} cells, "
            f"{module.model.num_ops} candidate ops per edge, skip-connect dropout from {module.initial_skip_dropout}"
        )
        trainer = make_trainer(module.stage)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, **fit_kwargs)
        ckpt_path = None
        following = module.next_stage()
        unchanged = module.architecture_changed() is False
        if unchanged:
            result = (f"its genotype is their random initialisation's, not a search result: {module.genotype()}"
                      if following is None else
                      f"the ops kept for stage {following.stage + 1} were chosen by their random initialisation")
            rank_zero_warn(f"P-DARTS stage {module.stage + 1}/{module.num_stages}: the architecture parameters never "
                           f"changed from their initial values, so {result}")
        if following is None:
            if not unchanged:
                rank_zero_info(f"P-DARTS final genotype: {module.genotype()}")
            return module
        module = following

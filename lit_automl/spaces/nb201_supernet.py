"""The NAS-Bench-201 supernet the DARTS family searches (Dong & Yang, "NAS-Bench-201", ICLR 2020, Sec. 5 and
Table 5: DARTS run on the benchmark's own cell space).

Following the authors' DARTS search (AutoDL-Projects, ``lib/models/cell_searchs/search_model_darts.py`` and
``search_cells.py``):

* the macro network is the benchmark's (:class:`~lit_automl.spaces.nb201.NB201Macro`: stem, three stages of
  ``N`` cells at ``C``/``2C``/``4C`` joined by the residual reduction blocks, BN-ReLU-GAP-linear head), with
  every cell a search cell whose 6 edges are each a :class:`~lit_automl.spaces.cells.MixedEdge` over the 5 ops;
* one architecture tensor of shape ``(6, 5)`` is shared by every cell (there are no reduction cells: the
  reduction is the residual block), rows in :data:`~lit_automl.spaces.nb201.NB201_EDGES` order (the authors'
  sorted ``"j<-i"`` keys give the same order);
* edge ops are built with ``affine=False`` (batch norm keeps running statistics, the authors' default
  ``track_running_stats=True``); the pooling op is bare 3x3 average pooling, as in the authors' cell
  operations: the non-affine batch norm the DARTS space puts after pooling is not there (see
  :class:`NB201SearchCell`);
* derivation (:func:`derive_nb201`): every edge keeps its argmax op over all 5 ops, ``none`` included, with no
  pruning; the authors' ``genotype()`` takes ``weights.argmax()`` over the whole op list.

With one-hot edge weights the supernet computes exactly :class:`~lit_automl.spaces.nb201.NB201Network` of
that cell (tests/spaces/test_nb201_supernet.py, weights copied across).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl.spaces.cells import MixedEdge
from lit_automl.spaces.nb201 import NB201_EDGES, NB201_OPS, NB201Arch, NB201Macro, NB201Space
from lit_automl.spaces.networks import check_image_input
from lit_automl.spaces.ops import resolve_primitives

__all__ = ["NB201SearchCell", "NB201SearchNetwork", "derive_nb201", "save_nb201_files", "skip_fraction"]


class NB201SearchCell(nn.Module):
    """One NAS-Bench-201 search cell at ``C`` channels: node ``j`` (1..3) sums the mixed edges from every earlier
    node; the output is node 3 (authors' ``NAS201SearchCell.forward``).

    ``forward(x, weights, active)`` takes ``weights`` of shape (6, num_ops), rows in
    :data:`~lit_automl.spaces.nb201.NB201_EDGES` order. The edges are the DARTS supernet's
    :class:`~lit_automl.spaces.cells.MixedEdge`, minus the batch norm it appends to pooling ops (the authors'
    NAS-Bench-201 search has none: their ``POOLING`` op adds nothing when input and output channels agree).
    """

    def __init__(self, C: int, primitives: Sequence[str] = NB201_OPS) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(C, 1, primitives) for _ in NB201_EDGES)
        for edge in self.edges:
            for k, name in enumerate(edge.primitives):
                if "pool" in name:  # MixedEdge wraps a pooling op as Sequential(pool, BatchNorm2d(affine=False))
                    edge.ops[k] = edge.ops[k][0]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[Sequence[bool]]) -> torch.Tensor:
        nodes = [x]
        for dst in (1, 2, 3):
            node = None
            for e, (src, d) in enumerate(NB201_EDGES):
                if d == dst:
                    term = self.edges[e](nodes[src], weights[e], active[e])
                    node = term if node is None else node + term
            nodes.append(node)
        return nodes[3]


class NB201SearchNetwork(NB201Macro):
    """The NAS-Bench-201 supernet (module docstring): ``forward(x, weights)`` with ``weights`` (6, num_ops) the
    edge weights every cell shares, handed in by the search method (softmax of the alphas for DARTS).

    Defaults are the authors' DARTS search on the benchmark (``scripts-search/algos/DARTS-V1.sh``: channel 16,
    num_cells 5).

    Args:
        C: channels of the stem and the first stage.
        N: cells per stage.
        num_classes, in_channels: the data.
        primitives: an op-set name or op names among the benchmark's (the ``"nb201"`` set by default), so
            every derived cell is a benchmark cell.
        checkpoint_cells: ``False`` or ``"auto"``; this supernet keeps every activation (``"auto"`` settles on
            recomputing no cell: :attr:`recomputed_cells` is empty). Other values are refused.
    """

    def __init__(self, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3,
                 primitives: Union[str, Sequence[str]] = "nb201", checkpoint_cells: Union[bool, str] = False) -> None:
        if checkpoint_cells is not False and checkpoint_cells != "auto":
            raise ValueError(f"the NAS-Bench-201 supernet recomputes no cell in backward: checkpoint_cells must be "
                             f"False or 'auto', got {checkpoint_cells!r}")
        prims = resolve_primitives(primitives)
        unknown = [p for p in prims if p not in NB201_OPS]
        if unknown:
            raise ValueError(f"the NAS-Bench-201 supernet searches the benchmark's ops {list(NB201_OPS)} (or some of "
                             f"them), got {unknown} in primitives={list(prims)}")
        super().__init__(lambda C_curr: NB201SearchCell(C_curr, prims), C, N, num_classes, in_channels)
        self.primitives: Tuple[str, ...] = prims
        self.num_edges, self.num_ops = len(NB201_EDGES), len(prims)
        self.recomputed_cells: Tuple[int, ...] = ()
        """Cells recomputed in backward: none (the interface :class:`SupernetSearch` reads)."""

    @property
    def alpha_shape(self) -> Tuple[int, int]:
        """Shape of the edge weights: (6 edges, number of ops)."""
        return self.num_edges, self.num_ops

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels, reductions=2)
        if tuple(weights.shape) != self.alpha_shape:
            raise ValueError(f"weights must have shape {self.alpha_shape} (edges, ops), got {tuple(weights.shape)}")
        active = (weights != 0).tolist()  # one host sync per forward, not one per edge
        h = self.stem(x)
        for module in self.cells:
            h = module(h, weights, active) if isinstance(module, NB201SearchCell) else module(h)
        return self.head(h)


def derive_nb201(weights: torch.Tensor, primitives: Sequence[str] = NB201_OPS) -> NB201Arch:
    """The cell the edge weights (or alphas: the argmax is the same) encode: each edge's argmax over all ops,
    ``none`` included, every edge kept (authors' ``TinyNetworkDarts.genotype``). Ties go to the first op."""
    primitives = tuple(primitives)
    if weights.dim() != 2 or tuple(weights.shape) != (len(NB201_EDGES), len(primitives)):
        raise ValueError(f"NAS-Bench-201 edge weights must have shape ({len(NB201_EDGES)}, {len(primitives)}) "
                         f"(edges, ops {list(primitives)}), got {tuple(weights.shape)}")
    return NB201Arch(tuple(primitives[k] for k in weights.detach().argmax(dim=-1).tolist()))


def skip_fraction(arch: NB201Arch) -> float:
    """Fraction of the cell's 6 edges that are ``skip_connect`` (1.0 is the all-skip cell DARTS ends at,
    Dong & Yang 2020, Table 5)."""
    if not isinstance(arch, NB201Arch):
        raise ValueError(f"skip_fraction takes an NB201Arch, got {type(arch).__name__}: {arch!r}")
    return sum(op == "skip_connect" for op in arch.ops) / len(arch.ops)


def save_nb201_files(arch: NB201Arch, folder: Union[str, os.PathLike], *, stem: str = "genotype",
                     plot: bool = True) -> List[Path]:
    """Write ``<stem>.txt`` (the benchmark's arch string), ``<stem>.json`` (``{"arch": ...}``, what
    :meth:`~lit_automl.spaces.nb201.NB201Space.from_json` reads) and, with ``plot``, the cell picture
    ``<stem>.png`` (:func:`~lit_automl.spaces.plot.plot_nb201_cell`) into ``folder`` (created); returns the
    paths. The run-folder files of a NAS-Bench-201 search."""
    if not isinstance(arch, NB201Arch):
        raise ValueError(f"save_nb201_files takes an NB201Arch, got {type(arch).__name__}: {arch!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text, record = folder / f"{stem}.txt", folder / f"{stem}.json"
    text.write_text(f"{arch}\n", encoding="utf-8")
    record.write_text(json.dumps(NB201Space().to_json(arch)) + "\n", encoding="utf-8")
    if not plot:
        return [text, record]
    from lit_automl.spaces.plot import plot_nb201_cell

    return [text, record, plot_nb201_cell(arch, folder / f"{stem}.png")]

"""Derive a discrete Genotype from the edge weights of a search cell.

DARTS (Liu et al., ICLR 2019, Sec. 2.4): for every intermediate node keep the ``k = 2`` strongest
incoming edges, an edge's strength being its largest non-``none`` weight, and on each kept edge the
strongest non-``none`` operation. ``none`` is never chosen. Kept edges are listed strongest first
(the order of the published genotypes); ties go to the lower input index.

The DARTS recurrent cell (Sec. 3.1.2, the authors' ``rnn/model_search.py``) is derived the same
way with ``k = 1``: each node keeps its strongest predecessor and that edge's strongest activation
(:func:`derive_recurrent`).
"""

from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch

from lit_automl._checks import check_int
from lit_automl.spaces.cells import EdgePrimitives, edge_primitive_lists
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_edge_slices, num_search_edges, output_concat
from lit_automl.spaces.op_names import resolve_recurrent_primitives
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype, num_recurrent_edges, recurrent_edge_slices

Nodes = List[Tuple[Tuple[str, int], ...]]


def derive_cell(
    weights: torch.Tensor, primitives: EdgePrimitives, steps: int, k: Optional[int] = 2
) -> Nodes:
    """Nodes of (op, input) edges from ``weights`` of shape (num_edges, num_ops).

    ``primitives``: the op names of the weight columns, shared by every edge or one list per edge
    (P-DARTS). ``k=None`` keeps every edge (for methods whose children keep all non-``none`` edges).
    """
    per_edge = edge_primitive_lists(primitives, num_search_edges(steps))
    return _strongest_edges(weights, per_edge, node_edge_slices(steps), k, f"steps={steps}")


def _strongest_edges(weights: torch.Tensor, per_edge: Sequence[Sequence[str]], node_edges: Sequence[slice],
                     k: Optional[int], cell: str) -> Nodes:
    """Per node (its rows ``node_edges[i]``), the ``k`` strongest edges as ``(op, input)``, strongest first;
    an edge's strength is its largest non-``none`` weight. ``cell`` describes the cell in errors."""
    num_edges, num_ops = len(per_edge), len(per_edge[0])
    if tuple(weights.shape) != (num_edges, num_ops):
        raise ValueError(
            f"weights must have shape ({num_edges}, {num_ops}) for {cell} "
            f"and {num_ops} primitives, got {tuple(weights.shape)}"
        )
    w = weights.detach().to("cpu", torch.float64).clone()  # (num_edges, num_ops)
    for e, names in enumerate(per_edge):
        if all(name == "none" for name in names):
            raise ValueError(f"primitives {list(names)} of edge {e} contain no operation other than 'none'")
        for j, name in enumerate(names):
            if name == "none":
                w[e, j] = -math.inf
    best_w, best_k = w.max(dim=1)
    nodes = []
    for edges in node_edges:
        strengths = best_w[edges].tolist()
        order = sorted(range(len(strengths)), key=lambda j: -strengths[j])  # stable: ties keep the lower input
        keep = order if k is None else order[:k]
        nodes.append(tuple((per_edge[edges.start + j][int(best_k[edges.start + j])], j) for j in keep))
    return nodes


def derive_recurrent(weights: torch.Tensor, primitives: Union[str, Sequence[str]] = "darts_rnn",
                     steps: int = 8) -> RecurrentGenotype:
    """The recurrent genotype of a DARTS recurrent search cell (Liu et al., ICLR 2019, Sec. 2.4 / 3.1.2).

    ``weights``: (num_edges, num_ops), the per-edge op probabilities (softmax of alpha, as the authors
    derive from), rows node by node, node ``i`` reading states ``0..i`` (``steps * (steps + 1) / 2`` rows).
    ``primitives``: a recurrent op-set name (:data:`~lit_automl.spaces.op_names.RECURRENT_OP_SETS`) or
    the column names. Each node keeps the predecessor whose strongest non-``none`` weight is largest and
    that edge's strongest non-``none`` activation; the output averages every node (``range(1, steps + 1)``).
    """
    steps = check_int("steps", steps, low=1, hint="nodes of the recurrent cell")
    names = resolve_recurrent_primitives(primitives)
    nodes = _strongest_edges(weights, [names] * num_recurrent_edges(steps), recurrent_edge_slices(steps), 1,
                             f"a {steps}-node recurrent cell")
    return RecurrentGenotype(recurrent=[node[0] for node in nodes], concat=range(1, steps + 1))


def derive_genotype(
    weights_normal: torch.Tensor,
    weights_reduce: torch.Tensor,
    primitives: Union[EdgePrimitives, Mapping[str, EdgePrimitives]],
    steps: int = 4,
    multiplier: int = 4,
    k: Optional[int] = 2,
) -> Genotype:
    """The genotype of a search network; the output concatenates the last ``multiplier`` nodes.

    ``primitives``: shared op names, or ``{"normal": ..., "reduce": ...}`` per cell type (e.g. a
    supernet's ``edge_primitives``).
    """
    concat = output_concat(steps, multiplier)
    per_cell = primitives if isinstance(primitives, Mapping) else dict.fromkeys(CELL_TYPES, primitives)
    weights = dict(zip(CELL_TYPES, (weights_normal, weights_reduce)))
    cells = {cell: derive_cell(weights[cell], per_cell[cell], steps, k) for cell in CELL_TYPES}
    return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=concat)


def edge_entropy(alpha: torch.Tensor) -> torch.Tensor:
    """Mean over edges of the entropy (nats) of ``softmax(alpha)`` over ops; ``alpha`` is (num_edges, num_ops).

    Ranges from ``log(num_ops)`` (uniform, as at initialisation) down to 0 (every edge one-hot):
    the number to watch falling while a differentiable search decides.
    """
    if alpha.dim() < 1 or alpha.shape[-1] < 1:
        raise ValueError(f"alpha must have a last dimension of ops, got shape {tuple(alpha.shape)}")
    log_p = torch.log_softmax(alpha.detach().float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()

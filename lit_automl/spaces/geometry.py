"""The layout of a DARTS-style cell, in one place (Liu et al., ICLR 2019, Sec. 2.1).

Notation: a cell has two inputs (indices 0 and 1: the outputs of the previous two cells) and
``steps`` intermediate nodes; node ``i`` (0-based) has index ``i + 2`` and reads every earlier
state, so it has ``i + 2`` incoming edges. A search cell's edges are flattened node-major: node 0's
edges (from inputs 0, 1), then node 1's (from 0, 1, 2), ... (``steps * (steps + 3) / 2`` in all);
a per-cell tensor of edge weights has one row per edge in this order. The cell's output
concatenates its last ``multiplier`` nodes. A network has two cell types, ``normal`` and
``reduce``, always in that order.
"""

from __future__ import annotations

from typing import List, Tuple

__all__ = ["CELL_TYPES", "edge_endpoints", "edge_sources", "node_edge_slices", "node_inputs", "node_state", "num_search_edges",
           "num_states", "output_concat"]

CELL_TYPES: Tuple[str, str] = ("normal", "reduce")
"""The two cell types of a DARTS-style network, in the order of their architecture parameters."""


def node_inputs(node: int) -> range:
    """The state indices node ``node`` (0-based) may read: the two cell inputs and every earlier node."""
    return range(node + 2)


def node_state(node: int) -> int:
    """The state index of node ``node`` (0-based): the two cell inputs come first."""
    return node + 2


def num_states(steps: int) -> int:
    """States of a cell: the two inputs and ``steps`` nodes (state ``i + 2`` is node ``i``)."""
    return steps + 2


def num_search_edges(steps: int) -> int:
    """Edges of a search cell: node i has ``i + 2`` inputs, so ``steps * (steps + 3) / 2``."""
    return steps * (steps + 3) // 2


def node_edge_slices(steps: int) -> List[slice]:
    """Per node, the slice of its incoming edges in the node-major edge order (node ``i``: ``i + 2`` rows)."""
    return [slice(i * (i + 3) // 2, i * (i + 3) // 2 + i + 2) for i in range(steps)]


def edge_sources(steps: int) -> List[int]:
    """The input index each edge reads, in edge order: ``[0, 1, 0, 1, 2, 0, 1, 2, 3, ...]``."""
    return [j for i in range(steps) for j in node_inputs(i)]


def edge_endpoints(steps: int) -> List[Tuple[int, int]]:
    """``(source, target)`` state indices of every edge, in edge order (node ``i`` is index ``i + 2``)."""
    return [(j, node_state(i)) for i in range(steps) for j in node_inputs(i)]


def output_concat(steps: int, multiplier: int) -> List[int]:
    """State indices the cell's output concatenates: its last ``multiplier`` nodes."""
    return list(range(num_states(steps) - multiplier, num_states(steps)))

"""Uniform architecture samples from the DARTS cell space, and their edge weights in the supernet.

What random search, one-shot ranking (Bender et al. 2018) and evolution (Real et al. 2019) draw:
every node of both cells takes ``EDGES_PER_NODE`` distinct inputs among its predecessors and one
non-``none`` op per input (the DARTS evaluation cell, Liu et al., ICLR 2019, Sec. 2.4). Cell
layout and notation: :mod:`lit_automl.spaces.geometry`.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_edge_slices, node_inputs, num_search_edges, output_concat

__all__ = ["EDGES_PER_NODE", "candidate_ops", "genotype_edge_weights", "sample_genotype"]

EDGES_PER_NODE = 2
"""Inputs of every node of a sampled architecture: the DARTS cell (Liu et al., ICLR 2019, Sec. 2.4)."""


def candidate_ops(primitives: Sequence[str]) -> List[int]:
    """Column indices of the ops that can be a path (everything but ``none``)."""
    return [k for k, name in enumerate(primitives) if name != "none"]


def _sample_cell(steps: int, primitives: Sequence[str], generator: torch.Generator) -> List[Tuple[Tuple[str, int], ...]]:
    ops = [primitives[k] for k in candidate_ops(primitives)]
    nodes = []
    for i in range(steps):
        inputs = sorted(torch.randperm(len(node_inputs(i)), generator=generator)[:EDGES_PER_NODE].tolist())
        picks = torch.randint(len(ops), (len(inputs),), generator=generator).tolist()
        nodes.append(tuple((ops[p], j) for p, j in zip(picks, inputs)))
    return nodes


def sample_genotype(steps: int, multiplier: int, primitives: Sequence[str],
                    generator: Optional[torch.Generator] = None) -> Genotype:
    """A uniform sample from the DARTS cell space (what the DARTS evaluation networks build).

    Every node of both cells takes 2 distinct inputs among its predecessors (uniform over the
    pairs) and one non-``none`` op per input (uniform); the output concatenates the last
    ``multiplier`` nodes, as the supernet does.
    """
    if not candidate_ops(primitives):
        raise ValueError(f"primitives {list(primitives)} have no operation other than 'none'")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    concat = output_concat(steps, multiplier)
    return Genotype(normal=_sample_cell(steps, primitives, generator), normal_concat=concat,
                    reduce=_sample_cell(steps, primitives, generator), reduce_concat=concat)


def _cell_weights(nodes: Sequence[Sequence[Tuple[str, int]]], primitives: Sequence[str], steps: int,
                  cell: str) -> torch.Tensor:
    if len(nodes) != steps:
        raise ValueError(f"the {cell} cell has {len(nodes)} nodes but the supernet has steps={steps}")
    prims = list(primitives)
    w = torch.zeros(num_search_edges(steps), len(prims))  # (num_edges, num_ops)
    for i, (node, edges) in enumerate(zip(nodes, node_edge_slices(steps))):
        for op, j in node:
            if op == "none" or op not in prims:
                raise ValueError(f"{cell} node {i}: op {op!r} is not a path of this supernet; allowed "
                                 f"{[p for p in prims if p != 'none']}")
            if w[edges.start + j, prims.index(op)] != 0:
                raise ValueError(f"{cell} node {i} lists the edge ({op!r}, {j}) twice")
            w[edges.start + j, prims.index(op)] = 1.0
    return w


def genotype_edge_weights(genotype: Genotype, primitives: Sequence[str], steps: int) -> List[torch.Tensor]:
    """``[normal, reduce]`` 0/1 edge weights that run exactly ``genotype``'s ops in the supernet."""
    return [_cell_weights(genotype.cells()[cell].nodes, primitives, steps, cell) for cell in CELL_TYPES]

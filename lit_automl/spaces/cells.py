"""Cells: the search cell of mixed edges and the discrete cell built from a genotype.

Both follow the DARTS cell (Liu et al., ICLR 2019, Sec. 2.1): two inputs (the outputs of the
previous two cells), ``steps`` intermediate nodes each summing edges from all earlier nodes, and
an output that concatenates the last ``multiplier`` nodes (search) or the genotype's concat list.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from lit_automl.spaces.drop_path import drop_path
from lit_automl.spaces.ops import FactorizedReduce, ReLUConvBN, get_op, validate_primitives, zero_output_shape


def num_search_edges(steps: int) -> int:
    """Edges of a search cell: node i has ``i + 2`` inputs, so ``steps * (steps + 3) / 2``."""
    return steps * (steps + 3) // 2


class MixedEdge(nn.Module):
    """One search edge: ``sum_k w_k * op_k(x)`` for the weights ``w`` it is handed.

    The weights come from the method (softmax for DARTS, Gumbel-softmax for SNAS, a one-hot path
    for ENAS ...). Ops whose weight is exactly zero are not run, and ``none`` is never run: it
    contributes zero, so it costs nothing. Pooling ops are followed by a non-affine BatchNorm, as
    in the DARTS search space.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str]):
        super().__init__()
        self.primitives = validate_primitives(primitives)
        self.C = C
        self.stride = stride
        ops = []
        for name in self.primitives:
            op = get_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._none = [name == "none" for name in self.primitives]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Optional[Sequence[bool]] = None) -> torch.Tensor:
        """``weights``: (num_ops,); ``active``: which weights are non-zero (computed if None)."""
        if active is None:
            active = (weights != 0).tolist()
        out: Optional[torch.Tensor] = None
        for k, op in enumerate(self.ops):
            if self._none[k] or not active[k]:
                continue
            term = weights[k] * op(x)
            out = term if out is None else out + term
        if out is None:
            return x.new_zeros(zero_output_shape(x, self.C, self.stride))
        return out


class SearchCell(nn.Module):
    """A DARTS search cell: every node sums mixed edges from every earlier node.

    ``forward(s0, s1, weights)`` takes ``weights`` of shape (num_edges, num_ops), rows ordered
    node by node and, within a node, by input index (c_{k-2}, c_{k-1}, node 0, ...).
    """

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str],
    ):
        super().__init__()
        self.steps = steps
        self.multiplier = multiplier
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedEdge(C, 2 if reduction and j < 2 else 1, primitives) for i in range(steps) for j in range(i + 2)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        active: Optional[List[List[bool]]] = None,
    ) -> torch.Tensor:
        if active is None:
            active = (weights != 0).tolist()
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                e = offset + j
                term = self.edges[e](h, weights[e], active[e])
                node = term if node is None else node + term
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


class Cell(nn.Module):
    """A discrete cell built from one cell of a genotype (a list of nodes of (op, input) edges).

    Drop path (probability handed to ``forward``) is applied to every non-identity path while
    training, as in the DARTS evaluation networks.
    """

    def __init__(
        self,
        nodes: Sequence[Sequence[Tuple[str, int]]],
        concat: Sequence[int],
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.concat = tuple(concat)
        self.multiplier = len(self.concat)
        self.inputs: List[Tuple[int, ...]] = []
        ops = []
        for i, node in enumerate(nodes):
            idxs = []
            for name, idx in node:
                if not 0 <= idx < i + 2:
                    raise ValueError(f"node {i} takes input {idx}; allowed inputs are 0..{i + 1}")
                ops.append(get_op(name, C, 2 if reduction and idx < 2 else 1, affine=True))
                idxs.append(idx)
            self.inputs.append(tuple(idxs))
        self.ops = nn.ModuleList(ops)
        self._identity = [isinstance(op, nn.Identity) for op in ops]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        k = 0
        for idxs in self.inputs:
            node = None
            for idx in idxs:
                h = self.ops[k](states[idx])
                if self.training and drop_prob > 0.0 and not self._identity[k]:
                    h = drop_path(h, drop_prob, True)
                node = h if node is None else node + h
                k += 1
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)

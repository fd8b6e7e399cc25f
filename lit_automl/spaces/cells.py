"""Cells: the search cell of mixed edges and the discrete cell built from a genotype.

Both follow the DARTS cell (Liu et al., ICLR 2019, Sec. 2.1): two inputs (the outputs of the
previous two cells), ``steps`` intermediate nodes each summing edges from all earlier nodes, and
an output that concatenates the last ``multiplier`` nodes (search) or the genotype's concat list.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl.spaces.drop_path import drop_path
from lit_automl.spaces.geometry import edge_sources, num_search_edges
from lit_automl.spaces.ops import FactorizedReduce, ReLUConvBN, get_op, validate_primitives, zero_output_shape


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (ShuffleNet): (N, g*c, H, W) -> channels c-major."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"{c} channels cannot be shuffled in {groups} groups")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedEdge(nn.Module):
    """One search edge: ``sum_k w_k * op_k(x)`` for the weights ``w`` it is handed.

    The weights come from the method (softmax for DARTS, Gumbel-softmax for SNAS, a one-hot path
    for ENAS ...). Ops whose weight is exactly zero are not run, and ``none`` is never run: it
    contributes zero, so it costs nothing. Pooling ops are followed by a non-affine BatchNorm, as
    in the DARTS search space.

    ``partial_channels = K > 1`` is PC-DARTS's partial channel connection (Xu et al., ICLR 2020,
    Sec. 3.2): only the first ``C / K`` channels go through the ops; the rest bypass them (max
    pooled on stride-2 edges), and the two parts are concatenated and channel-shuffled in ``K``
    groups. ``identity_dropout`` is P-DARTS's operation-level dropout after ``skip_connect``
    (Chen et al., ICCV 2019, Sec. 3.3), applied while training to identity ops only.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str], partial_channels: int = 1):
        super().__init__()
        self.primitives = validate_primitives(primitives)
        if isinstance(partial_channels, bool) or not isinstance(partial_channels, int) or partial_channels < 1:
            raise ValueError(f"partial_channels must be a positive int, got {partial_channels!r}")
        if C % partial_channels:
            raise ValueError(
                f"partial_channels={partial_channels} must divide the edge's {C} channels "
                f"(divisors of {C}: {[k for k in range(1, C + 1) if C % k == 0]})"
            )
        self.C = C
        self.stride = stride
        self.partial_channels = partial_channels
        self.identity_dropout = 0.0
        C_op = C // partial_channels
        ops = []
        for name in self.primitives:
            op = get_op(name, C_op, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C_op, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._none = [name == "none" for name in self.primitives]
        self._identity = [isinstance(op, nn.Identity) for op in self.ops]
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if partial_channels > 1 and stride == 2 else None

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[bool]) -> torch.Tensor:
        out: Optional[torch.Tensor] = None
        for k, op in enumerate(self.ops):
            if self._none[k] or not active[k]:
                continue
            h = op(x)
            if self._identity[k] and self.identity_dropout > 0.0:
                h = F.dropout(h, self.identity_dropout, self.training)
            term = weights[k] * h
            out = term if out is None else out + term
        if out is None:
            return x.new_zeros(zero_output_shape(x, x.shape[1], self.stride))
        return out

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Optional[Sequence[bool]] = None) -> torch.Tensor:
        """``weights``: (num_ops,); ``active``: which weights are non-zero (computed if None)."""
        if active is None:
            active = (weights != 0).tolist()
        K = self.partial_channels
        if K == 1:
            return self._mix(x, weights, active)
        c = x.shape[1] // K
        mixed = self._mix(x[:, :c], weights, active)
        rest = x[:, c:]
        if self.bypass_pool is not None:
            rest = self.bypass_pool(rest)
        return channel_shuffle(torch.cat([mixed, rest], dim=1), K)


EdgePrimitives = Union[Sequence[str], Sequence[Sequence[str]]]


def edge_primitive_lists(primitives: EdgePrimitives, num_edges: int) -> List[Tuple[str, ...]]:
    """One candidate list per edge: ``primitives`` shared by every edge, or one list per edge.

    Per-edge lists (P-DARTS's surviving operations) must all have the same length, so the
    architecture weights stay one (num_edges, num_ops) tensor per cell type.
    """
    primitives = list(primitives)
    if primitives and all(isinstance(p, str) for p in primitives):
        shared = validate_primitives(primitives)
        return [shared] * num_edges
    if len(primitives) != num_edges:
        raise ValueError(f"per-edge primitives need one list per edge: expected {num_edges} lists, got {len(primitives)}")
    lists = [validate_primitives(p) for p in primitives]
    lengths = sorted({len(p) for p in lists})
    if len(lengths) != 1:
        raise ValueError(f"every edge must have the same number of candidate ops, got lengths {lengths}")
    return lists


class SearchCell(nn.Module):
    """A DARTS search cell: every node sums mixed edges from every earlier node.

    ``forward(s0, s1, weights)`` takes ``weights`` of shape (num_edges, num_ops), rows ordered
    node by node and, within a node, by input index (c_{k-2}, c_{k-1}, node 0, ...).
    ``primitives``: one candidate list for every edge, or one list per edge (see
    :func:`edge_primitive_lists`). ``partial_channels``: PC-DARTS's K (see :class:`MixedEdge`).
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
        primitives: EdgePrimitives,
        partial_channels: int = 1,
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
        per_edge = edge_primitive_lists(primitives, num_search_edges(steps))
        inputs = edge_sources(steps)
        self.edges = nn.ModuleList(
            MixedEdge(C, 2 if reduction and j < 2 else 1, prims, partial_channels)
            for j, prims in zip(inputs, per_edge)
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        active: Optional[List[List[bool]]] = None,
        edge_scale: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``edge_scale`` (num_edges,): a weight per whole edge output, bypass included (PC-DARTS's
        edge normalisation); None = 1."""
        if active is None:
            active = (weights != 0).tolist()
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            node = None
            for j, h in enumerate(states):
                e = offset + j
                term = self.edges[e](h, weights[e], active[e])
                if edge_scale is not None:
                    term = edge_scale[e] * term
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

"""Cells: the search cell of mixed edges and the one discrete cell built from a genotype.

Both follow the DARTS cell (Liu et al., ICLR 2019, Sec. 2.1; layout in
:mod:`lit_automl.spaces.geometry`): two inputs (the outputs of the previous two cells), ``steps``
intermediate nodes each joining edges from earlier states, and an output that concatenates the
last ``multiplier`` nodes (search) or the genotype's concat list (discrete; NASNet's too).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import UnknownNameError, check_bool, check_int, lookup
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.drop_path import drop_path
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import (
    CELL_TYPES,
    edge_sources,
    node_edge_slices,
    node_inputs,
    num_search_edges,
    num_states,
)
from lit_automl.spaces.ops import (
    DilatedConv2d,
    FactorizedReduce,
    ReLUConvBN,
    check_registered,
    get_op,
    leading_relu,
    validate_primitives,
    zero_output_shape,
)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups (ShuffleNet): (N, g*c, H, W) -> channels c-major."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"{c} channels cannot be shuffled in {groups} groups")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def set_fusion(module: nn.Module, shared_relu: bool = True, subsample_dilated: bool = True) -> nn.Module:
    """Switch the supernet's speed levers in ``module``, in place (both on by default; both off is
    the authors' formulation): each :class:`MixedEdge`'s shared ReLU, and each
    :class:`~lit_automl.spaces.ops.DilatedConv2d`'s subsampled form on reduction edges. The numbers
    are the same either way (up to float rounding); for benchmarks and exactness tests."""
    for m in module.modules():
        if isinstance(m, MixedEdge):
            m.shared_relu = check_bool("shared_relu", shared_relu)
        elif isinstance(m, DilatedConv2d):
            m.subsample = check_bool("subsample_dilated", subsample_dilated)
    return module


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

    ``shared_relu`` (default on): every conv op of the DARTS set (and FactorizedReduce) starts with
    ReLU of the same input, so ``relu(x)`` is computed once per edge and handed to each of them
    (their own :class:`~lit_automl.spaces.ops.LeadingReLU` passes it through): the same numbers, one
    activation kept for backward instead of one per op. ``shared_relu=False`` runs each op's own
    ReLU, as the authors' code does.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str], partial_channels: int = 1,
                 shared_relu: bool = True):
        super().__init__()
        self.primitives = validate_primitives(primitives)
        self.shared_relu = check_bool("shared_relu", shared_relu)
        partial_channels = check_int("partial_channels", partial_channels, low=1, allowed="a positive int")
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
                op = nn.Sequential(op, BatchNorm2d(C_op, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self._none = [name == "none" for name in self.primitives]
        self._identity = [isinstance(op, nn.Identity) for op in self.ops]
        self._leading_relu = [leading_relu(op) for op in self.ops]
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if partial_channels > 1 and stride == 2 else None

    def _mix(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[bool]) -> torch.Tensor:
        out: Optional[torch.Tensor] = None
        activated: Optional[torch.Tensor] = None
        for k, op in enumerate(self.ops):
            if self._none[k] or not active[k]:
                continue
            relu = self._leading_relu[k]
            if self.shared_relu and relu is not None:
                activated = F.relu(x) if activated is None else activated
                relu.skip = True
                try:
                    h = op(activated)
                finally:
                    relu.skip = False
            else:
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
        for edges in node_edge_slices(self.steps):
            node = None
            for j, e in enumerate(range(edges.start, edges.stop)):  # edge e reads state j
                term = self.edges[e](states[j], weights[e], active[e])
                if edge_scale is not None:
                    term = edge_scale[e] * term
                node = term if node is None else node + term
            states.append(node)
        return torch.cat(states[-self.multiplier :], dim=1)


def _sum(outs: List[torch.Tensor]) -> torch.Tensor:
    node = outs[0]
    for h in outs[1:]:
        node = node + h
    return node


def _channel_concat(outs: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat(outs, dim=1)


COMBINES: Dict[str, Callable[[List[torch.Tensor]], torch.Tensor]] = {"add": _sum, "concat": _channel_concat}
"""How a node joins its edges (:data:`~lit_automl.spaces.genotype.COMBINE_METHODS`): DARTS adds;
NASNet also concatenates along channels (Zoph et al. 2018, Sec. 3 step 5)."""


class Cell(nn.Module):
    """The discrete cell built from one cell of a genotype: DARTS's (Liu et al., ICLR 2019, Sec. 2.1)
    and NASNet's (Zoph et al., CVPR 2018, Sec. 3) alike.

    * Inputs: ``c_{k-1}`` goes through a 1x1 ReLU-conv-BN to ``C`` channels; so does ``c_{k-2}``, or a
      factorized reduction when the previous cell halved the resolution (both references).
    * Nodes: each edge applies its operation (stride 2 on the cell inputs of a reduction cell); the
      node joins its edges as ``combine`` says per node (default: every node adds, DARTS). NASNet's
      ``"concat"`` joins along channels; this library then projects the ``len(edges) * C`` channels
      back to ``C`` with a 1x1 ReLU-conv-BN, so every state has ``C`` channels (our choice; the paper
      only says 1x1 convolutions keep shapes matching, Appendix A.4).
    * Output: the states listed in ``concat`` side by side. NASNet lists the unused states, which may
      include the cell inputs; in a reduction cell such an input is first brought to the reduced
      resolution with a factorized reduction (the TF reference's ``_combine_unused_states``).
    * Drop path (probability handed to ``forward``, only while training) is applied to every edge
      whose op is not the identity module, i.e. the rule of the DARTS reference (quark0/darts
      ``model.py``: ``if not isinstance(op, Identity): h = drop_path(h)``): a stride-2
      ``skip_connect`` is a factorized reduction, a learned path, and is dropped like any other. The
      NASNet reference (tensorflow/models ``nasnet_utils.py``: ``if operation != 'none':
      _apply_drop_path``) also exempts its identity when a stride makes it a strided 1x1 conv; we
      follow DARTS for both, which changes no parameter and only NASNet reduction cells' skips.

    ``out_channels = len(concat) * C``.
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
        combine: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        for name, value in (("C_pp", C_pp), ("C_p", C_p), ("C", C)):
            check_int(name, value, low=1)
        nodes = [tuple(node) for node in nodes]
        if not nodes:
            raise ValueError("a cell needs at least one node, got an empty node list")
        combine = tuple(combine) if combine else ("add",) * len(nodes)
        if len(combine) != len(nodes):
            raise ValueError(f"combine has {len(combine)} entries for {len(nodes)} nodes; give one per node")
        self._joins = []
        for i, method in enumerate(combine):
            try:
                self._joins.append(lookup(COMBINES, method, "combine method"))
            except UnknownNameError as exc:  # NASNet calls a node a block
                raise UnknownNameError(f"block {i}: {exc}") from None
        check_registered("the cell", [op for node in nodes for op, _ in node])
        self.concat = tuple(int(i) for i in concat)
        if not self.concat or any(i not in range(num_states(len(nodes))) for i in self.concat):
            raise ValueError(f"concat {list(self.concat)} must be non-empty with indices in 0..{num_states(len(nodes)) - 1}")
        self.reduction = reduction
        self.combine = combine
        self.C = C
        self.multiplier = len(self.concat)
        self.out_channels = self.multiplier * C

        self.preprocess0: nn.Module = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        ops: List[nn.Module] = []
        self.inputs: List[Tuple[int, ...]] = []
        projections: Dict[str, nn.Module] = {}
        for i, node in enumerate(nodes):
            if not node:
                raise ValueError(f"node {i} has no edges")
            for name, idx in node:
                if idx not in node_inputs(i):
                    raise ValueError(f"node {i} takes input {idx}; allowed inputs are 0..{node_inputs(i)[-1]}")
                ops.append(get_op(name, C, 2 if reduction and idx < 2 else 1, affine=True))
            self.inputs.append(tuple(int(idx) for _, idx in node))
            if combine[i] == "concat":
                projections[str(i)] = ReLUConvBN(len(node) * C, C, 1, 1, 0)
        self.ops = nn.ModuleList(ops)
        self._droppable = [not isinstance(op, nn.Identity) for op in ops]
        self.projections = nn.ModuleDict(projections)
        self.output_reductions = nn.ModuleDict(
            {str(i): FactorizedReduce(C, C) for i in self.concat if reduction and i < 2}
        )

    @classmethod
    def from_genotype(cls, genotype: Genotype, reduction: bool, C_pp: int, C_p: int, C: int,
                      reduction_prev: bool) -> "Cell":
        """The genotype's reduction cell if ``reduction``, else its normal cell, with its combine methods."""
        cell_type = CELL_TYPES[1] if reduction else CELL_TYPES[0]
        nodes, concat = genotype.cells()[cell_type]
        return cls(nodes, concat, C_pp, C_p, C, reduction, reduction_prev, genotype.combine(cell_type))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        k = 0
        for i, idxs in enumerate(self.inputs):
            outs = []
            for idx in idxs:
                h = self.ops[k](states[idx])
                if drop and self._droppable[k]:
                    h = drop_path(h, drop_prob, True)
                outs.append(h)
                k += 1
            node = self._joins[i](outs)
            states.append(self.projections[str(i)](node) if str(i) in self.projections else node)
        return torch.cat([self.output_reductions[str(i)](states[i]) if str(i) in self.output_reductions else states[i]
                          for i in self.concat], dim=1)

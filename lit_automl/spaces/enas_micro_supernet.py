"""The ENAS micro supernet: one set of shared weights from which every cell of the micro space is run.

Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018,
Sec. 2.3, and the authors' search child (``src/cifar10/micro_child.py``, ``_enas_layer`` / ``_enas_cell``).

Notation: a cell has inputs ``s_0 = c_{k-2}``, ``s_1 = c_{k-1}`` and ``B`` nodes ``s_{b+2}``; node ``b``
computes ``s_{b+2} = op_x(s_{in_x}) + op_y(s_{in_y})`` for the child's tokens. Shared weights omega:

* one :class:`~lit_automl.spaces.cells.MixedEdge` per ``(node b, input j)``, holding a module per op
  (the authors' ``w_depthwise`` / ``w_pointwise`` are indexed by the input too). A child runs only the
  ops it sampled (the edge is handed one-hot weights), so ops never sampled receive no gradient. The
  authors keep separate weights for a node's ``x`` and ``y`` branches; here both branches of a node
  share the edge's op modules (a node picking the same op on the same input twice runs it twice);
* the output is the authors' gathered 1x1 convolution of the loose ends: ``BN(sum_i W_i relu(s_i))``
  over the states no node reads, with one ``(C, C)`` matrix ``W_i`` per state, so the next cell always
  reads ``C`` channels whatever the child;
* a reduction cell first halves both inputs by factorized reductions (the authors'
  ``_factorized_reduction``), then runs at stride 1 like a normal cell.

Network (authors' layout): conv 3x3-BN stem with ``3 C`` channels, ``num_layers + 2`` cells with
reduction cells at 1/3 and 2/3 of the depth (channels double there), ReLU, global average pooling,
dropout ``1 - keep_prob`` and a linear classifier. Ops are the DARTS-style non-affine search ops of the
ENAS op set (:data:`~lit_automl.spaces.op_names.ENAS_OPS`). Not built: the authors' auxiliary head and
drop-path during the search.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_int, check_real
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.cells import MixedEdge
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import edge_sources, node_edge_slices, num_states
from lit_automl.spaces.nasnet import unused_states
from lit_automl.spaces.networks import check_image_input, reduction_layers
from lit_automl.spaces.op_names import ENAS_OPS
from lit_automl.spaces.ops import FactorizedReduce, ReLUConvBN

__all__ = ["ENASMicroCell", "ENASMicroSupernet", "cell_edge_weights", "edge_plan"]

Nodes = Sequence[Sequence[Tuple[str, int]]]


def cell_edge_weights(nodes: Nodes, num_nodes: int, ops: Sequence[str] = ENAS_OPS) -> torch.Tensor:
    """``(num_edges, num_ops)`` counts of the (input, op) pairs a child's cell uses, in the search-cell edge
    order (node-major, then input): the one-hot weights its mixed edges are handed."""
    slices = node_edge_slices(num_nodes)
    weights = torch.zeros(slices[-1].stop, len(ops))
    for b, node in enumerate(nodes):
        for op, j in node:
            weights[slices[b].start + j, ops.index(op)] += 1.0
    return weights


def edge_plan(nodes: Nodes, num_nodes: int, like: torch.Tensor) -> Tuple[torch.Tensor, List[List[bool]]]:
    """``(weights, active)`` of a child's cell: :func:`cell_edge_weights` on ``like``'s device and dtype and
    which of them are non-zero (a host list, so the mixed edges run only those ops without a device sync)."""
    counts = cell_edge_weights(nodes, num_nodes)  # [num_edges, num_ops], on the CPU
    return counts.to(device=like.device, dtype=like.dtype), (counts != 0).tolist()


class ENASMicroCell(nn.Module):
    """One weight-shared micro cell; ``forward(s0, s1, nodes)`` runs the child cell ``nodes``."""

    def __init__(self, num_nodes: int, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.num_nodes, self.reduction = num_nodes, reduction
        self.preprocess0: nn.Module = FactorizedReduce(C_pp, C, affine=False) if reduction_prev \
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.reduce_inputs = nn.ModuleList(FactorizedReduce(C, C, affine=False) for _ in range(2)) if reduction else None
        self.edges = nn.ModuleList(MixedEdge(C, 1, ENAS_OPS) for _ in edge_sources(num_nodes))
        self.out_weight = nn.Parameter(torch.empty(num_states(num_nodes), C, C))  # [states, C_out, C_in]
        nn.init.kaiming_uniform_(self.out_weight.view(-1, C), a=math.sqrt(5))
        self.out_bn = BatchNorm2d(C, affine=False)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, nodes: Nodes,
                plan: Optional[Tuple[torch.Tensor, List[List[bool]]]] = None) -> torch.Tensor:
        """``plan``: the child's ``(edge weights, active flags)`` (:func:`edge_plan`), made once per forward by
        the supernet for all cells of a type; computed here when not given."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        if self.reduce_inputs is not None:
            states = [reduce(s) for reduce, s in zip(self.reduce_inputs, states)]
        weights, active = plan if plan is not None else edge_plan(nodes, self.num_nodes, states[0])
        for b, edges in enumerate(node_edge_slices(self.num_nodes)):
            out = None
            for j in sorted({j for _, j in nodes[b]}):  # each input the node reads, both branches at once
                h = self.edges[edges.start + j](states[j], weights[edges.start + j], active[edges.start + j])
                out = h if out is None else out + h
            states.append(out)
        loose = list(unused_states(nodes))
        w = self.out_weight[loose].transpose(0, 1).reshape(self.out_weight.shape[1], -1)  # [C, len(loose) * C]
        x = F.relu(torch.cat([states[i] for i in loose], dim=1))
        return self.out_bn(F.conv2d(x, w[:, :, None, None]))


class ENASMicroSupernet(nn.Module):
    """The ENAS micro search network; ``forward(x, genotype)`` runs the child ``genotype`` on shared weights.

    Defaults are the authors' search child (``cifar10_micro_search.sh``): 5 nodes, ``num_layers=6``
    (8 cells), 20 filters, keep probability 0.9 before the classifier.
    """

    def __init__(self, num_nodes: int = 5, num_layers: int = 6, C: int = 20, in_channels: int = 3,
                 num_classes: int = 10, keep_prob: float = 0.9):
        super().__init__()
        self.num_nodes = check_int("num_nodes", num_nodes, low=2, allowed="an int >= 2")
        layers = check_int("num_layers", num_layers, low=1) + 2
        C = check_int("C", C, low=2, allowed="an int >= 2")
        if C % 2:
            raise ValueError(f"C must be even (factorized reductions split it in two halves), got {C}")
        self.in_channels = check_int("in_channels", in_channels, low=1)
        check_int("num_classes", num_classes, low=1)
        keep_prob = check_real("keep_prob", keep_prob, low=0, high=1, low_open=True)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 3 * C, 3, padding=1, bias=False), BatchNorm2d(3 * C))
        reductions = reduction_layers(layers)
        self.num_reductions = len(reductions)
        cells: List[ENASMicroCell] = []
        C_pp, C_p, reduction_prev = 3 * C, 3 * C, False
        for i in range(layers):
            reduction = i in reductions
            C = 2 * C if reduction else C
            cells.append(ENASMicroCell(self.num_nodes, C_pp, C_p, C, reduction, reduction_prev))
            C_pp, C_p, reduction_prev = C_p, C, reduction
        self.cells = nn.ModuleList(cells)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        check_image_input(x, self.in_channels, reductions=self.num_reductions)
        if len(genotype.normal) != self.num_nodes or len(genotype.reduce) != self.num_nodes:
            raise ValueError(f"the child has {len(genotype.normal)} normal and {len(genotype.reduce)} reduction nodes; "
                             f"this supernet has num_nodes={self.num_nodes}")
        s0 = s1 = self.stem(x)
        plans = {cell: edge_plan(nodes, self.num_nodes, s0) for cell, nodes in (("normal", genotype.normal),
                                                                                ("reduce", genotype.reduce))}
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, getattr(genotype, kind), plans[kind])
        return self.classifier(self.dropout(F.relu(s1).mean((2, 3))))

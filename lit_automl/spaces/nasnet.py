"""The NASNet cell search space, its discrete cell and its CIFAR network.

Zoph, Vasudevan, Shlens & Le, "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018. A policy (the controller RNN of Sec. 3 / Appendix A.2, or random search,
Sec. 4.4) emits ``2 x 5B`` choices: for each of the ``B`` blocks of the normal cell, then of the
reduction cell, two hidden states, one operation for each, and how to combine the two results
(Sec. 3, steps 1-5, Fig. 3). All hidden states of a cell that no block reads are concatenated into
its output. Child networks stack the two cells in the CIFAR layout of Fig. 2.

Hidden states are numbered as in :mod:`lit_automl.spaces.genotype`: 0 = ``c_{k-2}`` (the paper's
``h_{i-1}``), 1 = ``c_{k-1}`` (``h_i``), ``2 + b`` = block ``b``. A decoded architecture is a
:class:`~lit_automl.spaces.genotype.Genotype` with two edges per node, ``*_combine`` set and
``*_concat`` = the unused states.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl._checks import check_bool, check_int, check_real
from lit_automl.spaces.cells import Cell
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, validate_actions
from lit_automl.spaces.genotype import COMBINE_METHODS, Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_inputs, num_states
from lit_automl.spaces.networks import AuxiliaryHead, EvalNetwork, check_image_input
from lit_automl.spaces.ops import OP_SETS, OPS, get_op_set
from lit_automl.spaces.published import GenotypeSpec, resolve_genotype

__all__ = ["NASNetCIFAR", "NASNetCell", "NASNetCellSpace", "unused_states"]

Edge = Tuple[str, int]


def _resolve_ops(ops: Union[Sequence[str], str]) -> Tuple[str, ...]:
    """An op-set name from :data:`OP_SETS` or an explicit list of registered, unique op names."""
    if isinstance(ops, str):
        return get_op_set(ops)
    if not isinstance(ops, (list, tuple)) or not ops:
        raise ValueError(f"ops must be an op-set name {sorted(OP_SETS)} or a non-empty list of op names, got {ops!r}")
    ops = tuple(ops)
    bad = [o for o in ops if not isinstance(o, str) or o not in OPS]
    if bad:
        raise ValueError(f"ops {bad} are not registered operations; registered: {sorted(OPS)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"ops must be unique, got {list(ops)}")
    return ops


def unused_states(nodes: Sequence[Sequence[Edge]]) -> Tuple[int, ...]:
    """The hidden states no block reads, in index order: NASNet's cell output (Sec. 3).

    The cell inputs 0 and 1 count as hidden states, so an input that no block reads is part of
    the output too. The last block is never read, so the result is never empty.
    """
    read = {idx for node in nodes for _, idx in node}
    return tuple(i for i in range(num_states(len(nodes))) if i not in read)


NASNetCell = Cell
"""NASNet's name for the one discrete cell (:class:`~lit_automl.spaces.cells.Cell`): ``combine`` gives
each block's combination, ``concat`` the unused states it outputs (Zoph et al. 2018, Sec. 3)."""


# ----------------------------------------------------------------------------- the network
class NASNetCIFAR(EvalNetwork):
    """NASNet's CIFAR network (Zoph et al. 2018, Fig. 2; TF reference ``build_nasnet_cifar``).

    A 3x3 conv stem with ``int(stem_multiplier * F)`` channels and BN; ``N`` normal cells; a
    reduction cell; ``N`` normal cells; a reduction cell; ``N`` normal cells. Cells have ``F``,
    ``2F`` and ``4F`` filters per hidden state in the three stages (doubled at each reduction,
    Sec. 3). An auxiliary head sits after the last normal cell of the middle stage, i.e. 2/3 of
    the way up (reference and Appendix A.7). Then ReLU, global average pooling and a linear
    classifier.

    Defaults are NASNet-A 6@768 (Table 1, 3.3M parameters): ``N=6`` repeats and ``F=32``, so the
    normal cell's six concatenated states give ``6 x 4F = 768`` penultimate filters; stem
    multiplier 3 and the auxiliary head as in the reference's ``cifar_config``. ``drop_path_prob``
    is read on every forward (ScheduledDropPath sets it, Sec. 4 / Appendix A.5; the reference also
    scales it with depth, which is left out here). ``image_size`` (ours) sizes the auxiliary head.

    ``forward(x) -> (logits, aux_logits)``; ``aux_logits`` is None outside training or without
    the auxiliary head.
    """

    def __init__(
        self,
        genotype: GenotypeSpec,
        N: int = 6,
        F: int = 32,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: float = 3.0,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        image_size: int = 32,
    ):
        super().__init__()
        N, F, num_classes, in_channels, image_size = (
            check_int(name, value, low=1) for name, value in (("N", N), ("F", F), ("num_classes", num_classes),
                                                              ("in_channels", in_channels), ("image_size", image_size))
        )
        stem_multiplier = check_real("stem_multiplier", stem_multiplier, low=0.0, high=math.inf, low_open=True,
                                     high_open=True)
        auxiliary = check_bool("auxiliary", auxiliary)
        drop_path_prob = check_real("drop_path_prob", drop_path_prob, low=0.0, high=1.0, high_open=True)
        C_stem = int(stem_multiplier * F)
        if C_stem < 1:
            raise ValueError(f"stem_multiplier * F must give at least 1 stem channel, got {stem_multiplier} * {F}")
        genotype = resolve_genotype(genotype)

        self.genotype = genotype
        self.N, self.F, self.in_channels, self.image_size = N, F, in_channels, image_size
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))

        cells: List[Cell] = []
        C_pp, C_p, C = C_stem, C_stem, F
        reduction_prev = False
        self.auxiliary_head: Optional[AuxiliaryHead] = None
        self._aux_after = -1
        for stage in range(3):
            for reduction in [True] * int(stage > 0) + [False] * N:
                C *= 2 if reduction else 1
                cell = Cell.from_genotype(genotype, reduction, C_pp, C_p, C, reduction_prev)
                cells.append(cell)
                C_pp, C_p, reduction_prev = C_p, cell.out_channels, reduction
            if stage == 1:
                self._aux_after = len(cells) - 1
                if auxiliary:
                    self.auxiliary_head = AuxiliaryHead(C_p, num_classes, -(-image_size // 2))
        self.cells = nn.ModuleList(cells)
        self.penultimate_filters = C_p
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_image_input(x, self.in_channels, reductions=2)  # the reduction cells of stages 1 and 2
        s = self.stem(x)
        s1, logits_aux = self._run_cells(s, s)
        out = self.global_pooling(torch.relu(s1)).flatten(1)
        return self.classifier(out), logits_aux


# ----------------------------------------------------------------------------- the search space
_FIELDS_PER_BLOCK = ("input_a", "input_b", "op_a", "op_b", "combine")


class NASNetCellSpace(SequentialSpace):
    """The NASNet search space as a :class:`~lit_automl.spaces.decisions.SequentialSpace`.

    ``decisions()`` is ``2 x 5B`` categorical choices (Sec. 3; Appendix A.2: "2 x 5B softmax
    predictions"), the normal cell's ``5B`` first: for block ``b`` of cell ``c`` in order
    ``c.b{b}.input_a`` and ``c.b{b}.input_b`` (over the ``2 + b`` hidden states so far, numbered
    0 = ``c_{k-2}``, 1 = ``c_{k-1}``, ``2 + j`` = block ``j``), ``c.b{b}.op_a`` and ``c.b{b}.op_b``
    (over ``ops``), ``c.b{b}.combine`` (over ``combine``, by default ``("add", "concat")``).

    ``combine=("add",)`` fixes every block's combination to addition: the space of regularized evolution
    (Real et al., AAAI 2019, "Search space": NASNet's space with pairwise combinations always summed, its 8 ops
    are ``ops="amoebanet"``) and of PNAS; the combine decision then has one choice.

    Defaults: ``num_blocks=5`` (B = 5, Sec. 3) and the 13 operations of Sec. 3 (``"nasnet"``).
    Child networks (:meth:`build`) are :class:`NASNetCIFAR` with ``N=2`` (Appendix A.6: "a small
    N = 2 during the architecture search"); the paper gives no search-time filter count, so
    ``F=32`` (that of NASNet-A 6@768) is ours, as are ``auxiliary=False`` and
    ``drop_path_prob=0.0`` (the paper introduces both for training the final networks);
    ``stem_multiplier=3.0`` is the reference's CIFAR setting.
    """

    def __init__(
        self,
        num_blocks: int = 5,
        ops: Union[Sequence[str], str] = "nasnet",
        N: int = 2,
        F: int = 32,
        stem_multiplier: float = 3.0,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        combine: Sequence[str] = COMBINE_METHODS,
    ):
        self.num_blocks = check_int("num_blocks", num_blocks, low=1)
        self.ops = _resolve_ops(ops)
        if isinstance(combine, str) or not isinstance(combine, Sequence) or not combine \
                or any(c not in COMBINE_METHODS for c in combine) or len(set(combine)) != len(combine):
            raise ValueError(f"combine must be a non-empty list of distinct combination methods from "
                             f"{list(COMBINE_METHODS)}, got {combine!r}")
        self.combine = tuple(combine)
        self.N = check_int("N", N, low=1)
        self.F = check_int("F", F, low=1)
        self.stem_multiplier = check_real("stem_multiplier", stem_multiplier, low=0.0, high=math.inf, low_open=True,
                                          high_open=True)
        self.auxiliary = check_bool("auxiliary", auxiliary)
        self.drop_path_prob = check_real("drop_path_prob", drop_path_prob, low=0.0, high=1.0, high_open=True)
        self._decisions = [
            Decision.categorical(f"{cell}.b{b}.{field}", n)
            for cell in CELL_TYPES
            for b in range(self.num_blocks)
            for field, n in zip(_FIELDS_PER_BLOCK, (len(node_inputs(b)),) * 2 + (len(self.ops),) * 2 + (len(self.combine),))
        ]

    def __repr__(self) -> str:
        return (
            f"NASNetCellSpace(num_blocks={self.num_blocks}, ops={list(self.ops)}, N={self.N}, F={self.F}, "
            f"stem_multiplier={self.stem_multiplier}, auxiliary={self.auxiliary}, drop_path_prob={self.drop_path_prob}, "
            f"combine={list(self.combine)})"
        )

    def decisions(self) -> List[Decision]:
        """The ``2 x 5B`` categorical decisions, normal cell first."""
        return list(self._decisions)

    def decode(self, actions: Sequence[Action]) -> Genotype:
        """One full action sequence -> a Genotype whose concat lists are the unused hidden states."""
        actions = list(actions)
        if len(actions) != len(self._decisions):
            raise ValueError(
                f"expected {len(self._decisions)} actions (2 cells x {self.num_blocks} blocks x 5), got {len(actions)}"
            )
        validate_actions(self._decisions, actions)
        cells: Dict[str, Tuple[List[Tuple[Edge, Edge]], List[str]]] = {}
        k = 0
        for cell in CELL_TYPES:
            nodes, combine = [], []
            for _ in range(self.num_blocks):
                in_a, in_b, op_a, op_b, comb = actions[k : k + 5]
                k += 5
                nodes.append(((self.ops[op_a], in_a), (self.ops[op_b], in_b)))
                combine.append(self.combine[comb])
            cells[cell] = (nodes, combine)
        normal, normal_combine = cells["normal"]
        reduce, reduce_combine = cells["reduce"]
        return Genotype(
            normal=normal,
            normal_concat=unused_states(normal),
            reduce=reduce,
            reduce_concat=unused_states(reduce),
            normal_combine=normal_combine,
            reduce_combine=reduce_combine,
        )

    def encode(self, genotype: GenotypeSpec) -> List[Action]:
        """Inverse of :meth:`decode` for genotypes with ``num_blocks`` nodes of exactly 2 edges per cell.

        The concat lists are not decisions: they are dropped here, and :meth:`decode` recomputes
        them as the unused states (which differ from published NASNet-A's, see
        :data:`~lit_automl.spaces.published.PUBLISHED_GENOTYPES`).
        """
        g = resolve_genotype(genotype)
        actions: List[Action] = []
        for cell in CELL_TYPES:
            nodes, combine = getattr(g, cell), g.combine(cell)
            if len(nodes) != self.num_blocks:
                raise ValueError(f"{cell} cell has {len(nodes)} nodes; this space has num_blocks={self.num_blocks}")
            for b, (node, method) in enumerate(zip(nodes, combine)):
                if len(node) != 2:
                    raise ValueError(f"{cell} node {b} has {len(node)} edges; a NASNet block has exactly 2: {node!r}")
                for op, _ in node:
                    if op not in self.ops:
                        raise ValueError(f"{cell} node {b}: op {op!r} is not in this space's ops {list(self.ops)}")
                if method not in self.combine:
                    raise ValueError(f"{cell} node {b}: combination {method!r} is not in this space's combine "
                                     f"{list(self.combine)}")
                (op_a, in_a), (op_b, in_b) = node
                actions += [in_a, in_b, self.ops.index(op_a), self.ops.index(op_b), self.combine.index(method)]
        return actions

    def to_json(self, genotype: GenotypeSpec) -> Dict[str, Any]:
        """The plain-JSON record of an architecture (:meth:`Genotype.to_dict`)."""
        return resolve_genotype(genotype).to_dict()

    def from_json(self, data: Union[Dict[str, Any], str]) -> Genotype:
        """Inverse of :meth:`to_json`; also accepts the JSON text."""
        if isinstance(data, str):
            return Genotype.from_json(data)
        return Genotype.from_dict(data)

    def build(self, genotype: GenotypeSpec, in_channels: int, num_classes: int, image_size: int) -> NASNetCIFAR:
        """The child network: :class:`NASNetCIFAR` with this space's ``N``, ``F`` and head settings."""
        return NASNetCIFAR(
            genotype,
            N=self.N,
            F=self.F,
            num_classes=num_classes,
            in_channels=in_channels,
            stem_multiplier=self.stem_multiplier,
            auxiliary=self.auxiliary,
            drop_path_prob=self.drop_path_prob,
            image_size=image_size,
        )

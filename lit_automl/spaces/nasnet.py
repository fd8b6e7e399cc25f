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

import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, validate_actions
from lit_automl.spaces.drop_path import drop_path
from lit_automl.spaces.genotype import COMBINE_METHODS, Genotype, GenotypeSpec, resolve_genotype
from lit_automl.spaces.ops import OP_SETS, OPS, FactorizedReduce, ReLUConvBN, get_op

__all__ = ["NASNetAuxiliaryHead", "NASNetCIFAR", "NASNetCell", "NASNetCellSpace", "unused_states"]

Edge = Tuple[str, int]


# ----------------------------------------------------------------------------- validation helpers
def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: Optional[float] = None, *, low_open: bool = False) -> float:
    """``value`` as a float in ``[low, high)`` (``(low, high)`` when ``low_open``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (high is None or v < high)
    if not ok:
        lo = "(" if low_open else "["
        hi = f"{high})" if high is not None else "inf)"
        raise ValueError(f"{name} must be a number in {lo}{low}, {hi}, got {value!r}")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_registered(where: str, names: Sequence[str]) -> None:
    unknown = sorted({n for n in names if n not in OPS})
    if unknown:
        raise ValueError(f"{where} uses unregistered operation(s) {unknown}; registered: {sorted(OPS)}")


def _resolve_ops(ops: Union[Sequence[str], str]) -> Tuple[str, ...]:
    """An op-set name from :data:`OP_SETS` or an explicit list of registered, unique op names."""
    if isinstance(ops, str):
        if ops not in OP_SETS:
            raise ValueError(f"unknown op set {ops!r}; registered op sets: {sorted(OP_SETS)}")
        return OP_SETS[ops]
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
    return tuple(i for i in range(len(nodes) + 2) if i not in read)


# ----------------------------------------------------------------------------- the cell
class NASNetCell(nn.Module):
    """A discrete NASNet cell built from one cell of a :class:`Genotype` (Zoph et al. 2018, Sec. 3).

    * Inputs: ``c_{k-1}`` goes through a 1x1 ReLU-conv-BN to ``C`` channels; so does ``c_{k-2}``,
      or a factorized reduction when the previous cell halved the resolution, so both inputs
      match (the reference's ``_reduce_prev_layer``; Appendix A.4: "1x1 convolutions are
      inserted as necessary"). The reference skips the 1x1 of ``c_{k-2}`` when the channel
      counts already agree and hands the first cell the raw stem output; here ``c_{k-2}`` is
      always projected, as in DARTS, which changes NASNet-A 6@768 by well under 1% of its
      parameters.
    * Blocks: each edge applies its operation (stride 2 on the cell inputs of a reduction cell);
      the node then adds its edges, or concatenates them. For ``"concat"`` this library projects
      the ``len(edges) * C`` channels back to ``C`` with a 1x1 ReLU-conv-BN, so every hidden state
      has ``C`` channels (our choice; the paper only says 1x1 convolutions keep shapes matching).
    * Drop path (:func:`lit_automl.spaces.drop_path.drop_path`, probability handed to
      ``forward``) is applied, while training, to every edge output except the identity op
      ``skip_connect``, as the reference never drops its identity ("none") paths.
    * Output: the concatenation of the hidden states listed in ``concat`` (NASNet: the unused
      ones). A cell input listed there in a reduction cell is brought to the reduced resolution
      with a factorized reduction first, as in the reference's ``_combine_unused_states``.

    ``out_channels = len(concat) * C``.
    """

    def __init__(
        self,
        nodes: Sequence[Sequence[Edge]],
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
            _check_int(name, value, 1)
        nodes = [tuple(node) for node in nodes]
        if not nodes:
            raise ValueError("a NASNet cell needs at least one block, got an empty node list")
        combine = tuple(combine) if combine else ("add",) * len(nodes)
        if len(combine) != len(nodes):
            raise ValueError(f"combine has {len(combine)} entries for {len(nodes)} blocks; give one per block")
        for i, method in enumerate(combine):
            if method not in COMBINE_METHODS:
                raise ValueError(f"block {i}: unknown combine method {method!r}; allowed {list(COMBINE_METHODS)}")
        _check_registered("the cell", [op for node in nodes for op, _ in node])
        self.concat = tuple(int(i) for i in concat)
        if not self.concat or any(not 0 <= i < len(nodes) + 2 for i in self.concat):
            raise ValueError(f"concat {list(self.concat)} must be non-empty with indices in 0..{len(nodes) + 1}")
        if (reduction_prev or reduction) and C % 2:
            raise ValueError(f"a factorized reduction needs an even channel count C, got {C}")
        self.reduction = reduction
        self.combine = combine
        self.C = C
        self.multiplier = len(self.concat)
        self.out_channels = self.multiplier * C

        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)

        ops: List[nn.Module] = []
        self.inputs: List[Tuple[int, ...]] = []
        self._droppable: List[bool] = []
        projections: Dict[str, nn.Module] = {}
        for i, node in enumerate(nodes):
            if not node:
                raise ValueError(f"block {i} has no edges")
            idxs = []
            for name, idx in node:
                if not 0 <= idx < i + 2:
                    raise ValueError(f"block {i} reads hidden state {idx}; allowed 0..{i + 1}")
                ops.append(get_op(name, C, 2 if reduction and idx < 2 else 1, affine=True))
                self._droppable.append(name != "skip_connect")
                idxs.append(int(idx))
            self.inputs.append(tuple(idxs))
            if combine[i] == "concat":
                projections[str(i)] = ReLUConvBN(len(node) * C, C, 1, 1, 0)
        self.ops = nn.ModuleList(ops)
        self.projections = nn.ModuleDict(projections)
        self.output_reductions = nn.ModuleDict(
            {str(i): FactorizedReduce(C, C) for i in self.concat if reduction and i < 2}
        )

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
            if self.combine[i] == "concat":
                node = self.projections[str(i)](torch.cat(outs, dim=1))
            else:
                node = outs[0]
                for h in outs[1:]:
                    node = node + h
            states.append(node)
        out = []
        for i in self.concat:
            key = str(i)
            out.append(self.output_reductions[key](states[i]) if key in self.output_reductions else states[i])
        return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- the network
class NASNetAuxiliaryHead(nn.Module):
    """NASNet's auxiliary classifier (TF reference ``_build_aux_head``; Appendix A.7).

    ReLU -> 5x5 average pool, stride 3 -> 1x1 conv to 128 -> BN -> ReLU -> conv to 768 whose
    kernel covers the whole pooled map -> BN -> ReLU -> linear. ``feature_size`` is the side of
    the feature map it is attached to (16 for a 32x32 CIFAR input).
    """

    def __init__(self, C: int, num_classes: int, feature_size: int):
        super().__init__()
        if feature_size < 5:
            raise ValueError(
                f"the auxiliary head needs a feature map of at least 5x5 for its 5x5 pooling, got "
                f"{feature_size}x{feature_size}; use a larger image_size or auxiliary=False"
            )
        self.feature_size = feature_size
        pooled = (feature_size - 5) // 3 + 1
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.feature_size, self.feature_size):
            raise ValueError(
                f"the auxiliary head was built for a {self.feature_size}x{self.feature_size} feature map, "
                f"got {x.shape[-2]}x{x.shape[-1]}; build the network with the input's image_size"
            )
        return self.classifier(self.features(x).flatten(1))


class NASNetCIFAR(nn.Module):
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
        N = _check_int("N", N, 1)
        F = _check_int("F", F, 1)
        num_classes = _check_int("num_classes", num_classes, 1)
        in_channels = _check_int("in_channels", in_channels, 1)
        stem_multiplier = _check_float("stem_multiplier", stem_multiplier, 0.0, low_open=True)
        auxiliary = _check_bool("auxiliary", auxiliary)
        drop_path_prob = _check_float("drop_path_prob", drop_path_prob, 0.0, 1.0)
        image_size = _check_int("image_size", image_size, 1)
        C_stem = int(stem_multiplier * F)
        if C_stem < 1:
            raise ValueError(f"stem_multiplier * F must give at least 1 stem channel, got {stem_multiplier} * {F}")
        genotype = resolve_genotype(genotype)
        _check_registered("the genotype", sorted(genotype.op_names()))

        self.genotype = genotype
        self.N, self.F, self.in_channels, self.image_size = N, F, in_channels, image_size
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))

        cells: List[NASNetCell] = []
        C_pp, C_p, C = C_stem, C_stem, F
        reduction_prev = False
        self.auxiliary_head: Optional[NASNetAuxiliaryHead] = None
        self._aux_after = -1
        for stage in range(3):
            if stage > 0:
                C *= 2
                cell = NASNetCell(genotype.reduce, genotype.reduce_concat, C_pp, C_p, C, True, reduction_prev,
                                  genotype.reduce_combine)
                cells.append(cell)
                C_pp, C_p, reduction_prev = C_p, cell.out_channels, True
            for _ in range(N):
                cell = NASNetCell(genotype.normal, genotype.normal_concat, C_pp, C_p, C, False, reduction_prev,
                                  genotype.normal_combine)
                cells.append(cell)
                C_pp, C_p, reduction_prev = C_p, cell.out_channels, False
            if stage == 1:
                self._aux_after = len(cells) - 1
                if auxiliary:
                    self.auxiliary_head = NASNetAuxiliaryHead(C_p, num_classes, -(-image_size // 2))
        self.cells = nn.ModuleList(cells)
        self.penultimate_filters = C_p
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        s0 = s1 = self.stem(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_after and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(torch.relu(s1)).flatten(1)
        return self.classifier(out), logits_aux


# ----------------------------------------------------------------------------- the search space
_FIELDS_PER_BLOCK = ("input_a", "input_b", "op_a", "op_b", "combine")
_CELLS = ("normal", "reduce")


class NASNetCellSpace(SequentialSpace):
    """The NASNet search space as a :class:`~lit_automl.spaces.decisions.SequentialSpace`.

    ``decisions()`` is ``2 x 5B`` categorical choices (Sec. 3; Appendix A.2: "2 x 5B softmax
    predictions"), the normal cell's ``5B`` first: for block ``b`` of cell ``c`` in order
    ``c.b{b}.input_a`` and ``c.b{b}.input_b`` (over the ``2 + b`` hidden states so far, numbered
    0 = ``c_{k-2}``, 1 = ``c_{k-1}``, ``2 + j`` = block ``j``), ``c.b{b}.op_a`` and ``c.b{b}.op_b``
    (over ``ops``), ``c.b{b}.combine`` (over ``("add", "concat")``).

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
    ):
        self.num_blocks = _check_int("num_blocks", num_blocks, 1)
        self.ops = _resolve_ops(ops)
        self.N = _check_int("N", N, 1)
        self.F = _check_int("F", F, 1)
        self.stem_multiplier = _check_float("stem_multiplier", stem_multiplier, 0.0, low_open=True)
        self.auxiliary = _check_bool("auxiliary", auxiliary)
        self.drop_path_prob = _check_float("drop_path_prob", drop_path_prob, 0.0, 1.0)
        self._decisions = [
            Decision.categorical(f"{cell}.b{b}.{field}", n)
            for cell in _CELLS
            for b in range(self.num_blocks)
            for field, n in zip(_FIELDS_PER_BLOCK, (2 + b, 2 + b, len(self.ops), len(self.ops), len(COMBINE_METHODS)))
        ]

    def __repr__(self) -> str:
        return (
            f"NASNetCellSpace(num_blocks={self.num_blocks}, ops={list(self.ops)}, N={self.N}, F={self.F}, "
            f"stem_multiplier={self.stem_multiplier}, auxiliary={self.auxiliary}, drop_path_prob={self.drop_path_prob})"
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
        for cell in _CELLS:
            nodes, combine = [], []
            for _ in range(self.num_blocks):
                in_a, in_b, op_a, op_b, comb = actions[k : k + 5]
                k += 5
                nodes.append(((self.ops[op_a], in_a), (self.ops[op_b], in_b)))
                combine.append(COMBINE_METHODS[comb])
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
        :data:`~lit_automl.spaces.genotype.PUBLISHED_GENOTYPES`).
        """
        g = resolve_genotype(genotype)
        actions: List[Action] = []
        for cell in _CELLS:
            nodes, combine = getattr(g, cell), g.combine(cell)
            if len(nodes) != self.num_blocks:
                raise ValueError(f"{cell} cell has {len(nodes)} nodes; this space has num_blocks={self.num_blocks}")
            for b, (node, method) in enumerate(zip(nodes, combine)):
                if len(node) != 2:
                    raise ValueError(f"{cell} node {b} has {len(node)} edges; a NASNet block has exactly 2: {node!r}")
                for op, _ in node:
                    if op not in self.ops:
                        raise ValueError(f"{cell} node {b}: op {op!r} is not in this space's ops {list(self.ops)}")
                (op_a, in_a), (op_b, in_b) = node
                actions += [in_a, in_b, self.ops.index(op_a), self.ops.index(op_b), COMBINE_METHODS.index(method)]
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

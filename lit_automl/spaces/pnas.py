"""The PNAS cell search space: cells grown one block at a time, and their symmetry.

Liu, Zoph, Neumann, Shlens, Hua, Li, Fei-Fei, Yuille, Huang & Murphy, "Progressive Neural
Architecture Search", ECCV 2018, Sec. 3.1. A cell has ``B`` blocks (5 in the paper); block ``b``
is the 4-tuple ``(I_1, I_2, O_1, O_2)``: two inputs, each chosen among the two previous cells'
outputs and the blocks ``0 .. b-1`` of this cell, and one operation for each; the two results are
added (PNAS keeps only NASNet's addition as combination). One cell serves as normal and reduction
cell (stride 2 on the cell inputs in a reduction cell), and its output concatenates all its blocks,
as the released PNASNet-5 does (TF reference ``pnasnet.py``; the DARTS repositories' ``PNASNet``
genotype: ``normal_concat = [2, 3, 4, 5, 6]``).

Tokens: a cell of ``b`` blocks is ``4b`` categorical tokens, block by block, ``I_1, I_2, O_1, O_2``
(the order the paper's LSTM predictor reads them, Sec. 3.3). :meth:`PNASCellSpace.decode` accepts
any prefix of ``4b`` tokens, ``b = 1 .. B``: the progressive search trains cells of 1, 2, ... blocks.

Symmetry (Sec. 3.2): a block ``(I_1, I_2, O_1, O_2)`` equals ``(I_2, I_1, O_2, O_1)`` (addition
commutes), so only the canonical form -- the two ``(input, op)`` pairs in ascending order -- is
enumerated; with 8 operations there are ``|B_1| = 16 * 17 / 2 = 136`` one-block cells.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from lit_automl._checks import check_bool, check_int, check_real
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, validate_actions
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import node_inputs, node_state
from lit_automl.spaces.nasnet import _resolve_ops
from lit_automl.spaces.networks import NetworkCIFAR
from lit_automl.spaces.published import GenotypeSpec, resolve_genotype

__all__ = ["PNASCellSpace", "TOKENS_PER_BLOCK", "canonical_block", "canonical_cell", "count_unique_blocks",
           "unique_blocks"]

TOKENS_PER_BLOCK = 4
"""``I_1, I_2, O_1, O_2`` per block (Sec. 3.1)."""

Block = Tuple[int, int, int, int]


def canonical_block(block: Sequence[int]) -> Block:
    """The canonical form of one block's tokens ``(i1, i2, o1, o2)``: its ``(input, op)`` pairs in ascending
    order, so ``(i1, i2, o1, o2)`` and ``(i2, i1, o2, o1)`` -- the same block, addition commutes -- map to one."""
    if len(block) != TOKENS_PER_BLOCK:
        raise ValueError(f"a PNAS block has {TOKENS_PER_BLOCK} tokens (input_1, input_2, op_1, op_2), got {list(block)}")
    i1, i2, o1, o2 = (int(t) for t in block)
    (a_in, a_op), (b_in, b_op) = sorted([(i1, o1), (i2, o2)])
    return a_in, b_in, a_op, b_op


def canonical_cell(tokens: Sequence[int]) -> List[int]:
    """A cell's ``4b`` tokens with every block in :func:`canonical_block` form."""
    if len(tokens) % TOKENS_PER_BLOCK:
        raise ValueError(f"a PNAS cell has 4 tokens per block, got {len(tokens)} tokens: {list(tokens)}")
    return [t for k in range(0, len(tokens), TOKENS_PER_BLOCK)
            for t in canonical_block(tokens[k:k + TOKENS_PER_BLOCK])]


def unique_blocks(block_index: int, num_ops: int) -> List[Block]:
    """Every canonical block that can be block ``block_index`` (0-based) of a cell over ``num_ops`` operations:
    unordered pairs, repetition allowed, of the ``(block_index + 2) * num_ops`` (input, op) choices."""
    check_int("block_index", block_index, low=0)
    check_int("num_ops", num_ops, low=1)
    pairs = list(itertools.product(node_inputs(block_index), range(num_ops)))
    return [(a[0], b[0], a[1], b[1]) for a, b in itertools.combinations_with_replacement(pairs, 2)]


def count_unique_blocks(block_index: int, num_ops: int) -> int:
    """``len(unique_blocks(block_index, num_ops))`` in closed form: ``n (n + 1) / 2``, ``n = (block_index + 2) * num_ops``."""
    n = (block_index + 2) * num_ops
    return n * (n + 1) // 2


class PNASCellSpace(SequentialSpace):
    """The PNAS cell space (Liu et al., ECCV 2018, Sec. 3.1) as a :class:`SequentialSpace` (module docstring).

    ``decisions()`` is ``4B`` categorical choices: for block ``b``, ``b{b}.input_1`` and ``b{b}.input_2`` (over
    the ``2 + b`` states so far: 0 = ``c_{k-2}``, 1 = ``c_{k-1}``, ``2 + j`` = block ``j``), ``b{b}.op_1`` and
    ``b{b}.op_2`` (over ``ops``). A decoded cell is a :class:`Genotype` with ``normal == reduce``, two edges per
    node, every node adding, and every block in the output concat.

    Defaults: ``num_blocks=5`` (B = 5, the paper's) and the paper's 8 operations (op set ``"pnas"``: 3x3, 5x5,
    7x7 depthwise-separable convolutions, a 1x7 then 7x1 convolution, identity, 3x3 average and max pooling,
    3x3 dilated convolution). Children (:meth:`build`) are the paper's search-time networks, ``N=2``, ``F=24``
    (Sec. 5.1), stacked as the PNASNet reference does: ``3N`` cells in all, two of them (at 1/3 and 2/3 of
    the depth) the same cell with stride 2 and doubled filters -- :class:`~lit_automl.spaces.networks.NetworkCIFAR`
    with ``C=F``, ``layers=3N`` (TF ``pnasnet.py``: the reduction cells take 2 of the ``num_cells`` slots; with
    ``N=3``, ``F=48`` this gives PNASNet-5's 3.2M parameters of Table 1, where NASNet's layout of ``3N``
    normal cells plus two reductions gives 4.3M). ``stem_multiplier=3`` is NASNet's CIFAR stem (the PNAS
    reference has only ImageNet stems); ``auxiliary=False`` and ``drop_path_prob=0.0`` are ours for
    search-time children (an auxiliary head needs 32x32 inputs).
    """

    def __init__(self, num_blocks: int = 5, ops: Union[Sequence[str], str] = "pnas", N: int = 2, F: int = 24,
                 stem_multiplier: int = 3, auxiliary: bool = False, drop_path_prob: float = 0.0) -> None:
        self.num_blocks = check_int("num_blocks", num_blocks, low=1)
        self.ops = _resolve_ops(ops)
        self.N = check_int("N", N, low=1)
        self.F = check_int("F", F, low=1)
        self.stem_multiplier = check_int("stem_multiplier", stem_multiplier, low=1)
        self.auxiliary = check_bool("auxiliary", auxiliary)
        self.drop_path_prob = check_real("drop_path_prob", drop_path_prob, low=0.0, high=1.0, high_open=True)
        self._decisions = [
            Decision.categorical(f"b{b}.{field}", n)
            for b in range(self.num_blocks)
            for field, n in (("input_1", len(node_inputs(b))), ("input_2", len(node_inputs(b))),
                             ("op_1", len(self.ops)), ("op_2", len(self.ops)))
        ]

    def __repr__(self) -> str:
        return (f"PNASCellSpace(num_blocks={self.num_blocks}, ops={list(self.ops)}, N={self.N}, F={self.F}, "
                f"stem_multiplier={self.stem_multiplier}, auxiliary={self.auxiliary}, "
                f"drop_path_prob={self.drop_path_prob})")

    def decisions(self) -> List[Decision]:
        """The ``4B`` categorical decisions, block by block."""
        return list(self._decisions)

    def num_decisions(self, blocks: int) -> int:
        """Tokens of a cell of ``blocks`` blocks (``4 * blocks``)."""
        check_int("blocks", blocks, low=1, high=self.num_blocks)
        return TOKENS_PER_BLOCK * blocks

    # ------------------------------------------------------------------ progressive enumeration
    def one_block_cells(self) -> List[List[int]]:
        """Every unique one-block cell (``B_1`` of Sec. 3.2), in :func:`unique_blocks` order."""
        return [list(block) for block in unique_blocks(0, len(self.ops))]

    def expand(self, tokens: Sequence[int]) -> List[List[int]]:
        """The cells of one more block than ``tokens`` (Sec. 3.2, ``expand-cell``): ``tokens`` followed by every
        canonical block; refused for a cell that already has ``num_blocks`` blocks."""
        tokens = list(tokens)
        self._check_prefix(tokens)
        b = len(tokens) // TOKENS_PER_BLOCK
        if b >= self.num_blocks:
            raise ValueError(f"a cell of {b} blocks cannot grow: this space has num_blocks={self.num_blocks}")
        return [tokens + list(block) for block in unique_blocks(b, len(self.ops))]

    # ------------------------------------------------------------------ tokens <-> genotypes
    def _check_prefix(self, actions: Sequence[Action]) -> List[Action]:
        n = len(actions)
        if n == 0 or n % TOKENS_PER_BLOCK or n > len(self._decisions):
            raise ValueError(f"a PNAS cell takes 4b tokens for b = 1..{self.num_blocks} blocks (input_1, input_2, "
                             f"op_1, op_2 per block), got {n}: {list(actions)!r}")
        return validate_actions(self._decisions, actions)

    def decode(self, actions: Sequence[Action]) -> Genotype:
        """``4b`` tokens (a prefix of :meth:`decisions`) -> a Genotype of ``b`` blocks, normal == reduce."""
        actions = self._check_prefix(list(actions))
        nodes = []
        for k in range(0, len(actions), TOKENS_PER_BLOCK):
            in_1, in_2, op_1, op_2 = actions[k:k + TOKENS_PER_BLOCK]
            nodes.append(((self.ops[op_1], in_1), (self.ops[op_2], in_2)))
        concat = [node_state(b) for b in range(len(nodes))]
        return Genotype(normal=nodes, normal_concat=concat, reduce=nodes, reduce_concat=concat)

    def encode(self, genotype: GenotypeSpec) -> List[Action]:
        """Inverse of :meth:`decode`: a genotype with ``1..num_blocks`` two-edge adding nodes, the same normal and
        reduction cell and every block in the concat (a published name such as ``"PNASNet_5"`` works)."""
        g = resolve_genotype(genotype)
        if g.normal != g.reduce or g.normal_concat != g.reduce_concat:
            raise ValueError("a PNAS cell is used as normal and reduction cell alike; this genotype has different "
                             f"normal and reduce cells: {g}")
        b = len(g.normal)
        if b > self.num_blocks:
            raise ValueError(f"the cell has {b} blocks; this space has num_blocks={self.num_blocks}")
        if not g.all_add:
            raise ValueError(f"PNAS blocks add their two results; this genotype combines otherwise: {g}")
        if tuple(g.normal_concat) != tuple(node_state(i) for i in range(b)):
            raise ValueError(f"a PNAS cell outputs all its blocks, concat {[node_state(i) for i in range(b)]}; "
                             f"got {list(g.normal_concat)}")
        actions: List[Action] = []
        for i, node in enumerate(g.normal):
            if len(node) != 2:
                raise ValueError(f"node {i} has {len(node)} edges; a PNAS block has exactly 2: {node!r}")
            for op, _ in node:
                if op not in self.ops:
                    raise ValueError(f"node {i}: op {op!r} is not in this space's ops {list(self.ops)}")
            (op_1, in_1), (op_2, in_2) = node
            actions += [in_1, in_2, self.ops.index(op_1), self.ops.index(op_2)]
        return actions

    def to_json(self, genotype: GenotypeSpec) -> Dict[str, Any]:
        """The plain-JSON record of a cell (:meth:`Genotype.to_dict`)."""
        return resolve_genotype(genotype).to_dict()

    def from_json(self, data: Union[Dict[str, Any], str]) -> Genotype:
        """Inverse of :meth:`to_json`; also accepts the JSON text."""
        return Genotype.from_json(data) if isinstance(data, str) else Genotype.from_dict(data)

    def build(self, genotype: GenotypeSpec, in_channels: int, num_classes: int, image_size: Optional[Any] = None
              ) -> NetworkCIFAR:
        """The child network: ``3N`` cells of ``F`` filters, two of them strided (class docstring)."""
        return NetworkCIFAR(resolve_genotype(genotype), C=self.F, num_classes=num_classes, layers=3 * self.N,
                            auxiliary=self.auxiliary, drop_path_prob=self.drop_path_prob, in_channels=in_channels,
                            stem_multiplier=self.stem_multiplier)

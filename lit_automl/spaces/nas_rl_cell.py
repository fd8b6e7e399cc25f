"""The NAS-RL recurrent cell: a tree of base ``B`` built from the controller's tokens.

Zoph & Le, "Neural Architecture Search with Reinforcement Learning", ICLR 2017, Sec. 3.4 and
Appendix A (Fig. 5: the base-2 example; Fig. 8: the published base-8 cell). The cell reads
``x_t``, ``h_{t-1}`` and the memory ``c_{t-1}`` and returns ``h_t`` and ``c_t``.

The tree (level order, leaves first): nodes ``0 .. B-1`` are the leaves, node ``B + j`` combines
nodes ``2j`` and ``2j + 1``, the root ``2B - 2`` gives ``h_t``. Every node applies a combination
(``add`` or elementwise ``mul``) and then an activation (``identity``, ``tanh``, ``sigmoid``,
``relu``); leaf ``i`` combines ``W_i x_t`` with ``U_i h_{t-1}`` (+ ``b_i`` when ``use_bias``),
an internal node combines its two children's outputs. No internal node has parameters.

Memory (Appendix A): "cell inject" is a (combination, activation) pair applied to the output
``a_k`` of the inject node ``k``: ``a_k <- act(comb(a_k, c_{t-1}))``, which the node's parent then
reads; ``c_t`` is the output of the cell node *before its activation* (and before any inject).

Token layout (the paper's order, Fig. 5): for every node in index order its combination (2 choices)
then its activation (4 choices); then the inject combination (2) and activation (4); then the two
"cell indices" (``2B - 1`` choices each): first the node whose pre-activation output becomes ``c_t``,
second the node that receives ``c_{t-1}``. Base 8: 15 nodes, 34 tokens; base 2: 10 tokens, as Fig. 5.

Published cell (:data:`NAS_CELL_TOKENS`): the equations of TensorFlow's ``tf.contrib.rnn.NASCell``,
which implements Fig. 8 (8 leaves, leaf 3 multiplicative, ``c_{t-1}`` added into the first
second-level node with tanh, ``c_t`` the first third-level node, whose activation is the identity,
so "before the activation" agrees with NASCell's ``new_c``). Biases follow NASCell: none by default;
with ``use_bias`` one bias on the recurrent projection ``U h_{t-1}`` (zeros at start); the paper's
equations have none.

State convention for :class:`~lit_automl.spaces.recurrent.RecurrentLM`: the cell's state is one
(B, 2 nhid) tensor ``[h, c]`` (:attr:`NASRLCell.state_size`, :meth:`NASRLCell.init_hidden`); the
outputs are ``h`` only (T, B, nhid). ``RecurrentLM.init_hidden`` makes (B, nhid), so pass
``hidden=cell.init_hidden(B)`` to its first forward; the carried hidden it returns is [h, c].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from lit_automl._checks import check_bool, check_choice, check_int, check_power_of_two
from lit_automl.spaces.decisions import Decision, DecisionSpace, check_tokens, read_json_record
from lit_automl.spaces.recurrent import ACTIVATIONS, INIT_RANGE

__all__ = [
    "NAS_CELL",
    "NAS_CELL_TOKENS",
    "NASRLCell",
    "NASRLCellSpace",
    "TREE_ACTIVATIONS",
    "TREE_COMBINATIONS",
    "TreeCell",
    "decode_tree_cell",
    "encode_tree_cell",
    "read_tree_cell",
    "tree_cell_decisions",
    "tree_cell_record",
]

TREE_COMBINATIONS: Tuple[str, ...] = ("add", "mul")  # token order
TREE_ACTIVATIONS: Tuple[str, ...] = ("identity", "tanh", "sigmoid", "relu")  # token order; functions in ACTIVATIONS

_COMBINE: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {"add": torch.add, "mul": torch.mul}


BASE_ALLOWED = "a power of 2 >= 2 (leaves of the tree)"


def _num_nodes(base: int) -> int:
    return 2 * base - 1


@dataclass(frozen=True)
class TreeCell:
    """A base-B tree cell (module docstring): ``nodes`` one (combination, activation) per tree node in
    level order (leaves first, root last); ``inject`` the (combination, activation) that mixes
    ``c_{t-1}`` into node ``inject_node``'s output; ``cell_node`` the node whose pre-activation
    output is ``c_t``."""

    nodes: Tuple[Tuple[str, str], ...]
    inject: Tuple[str, str]
    inject_node: int
    cell_node: int

    def __post_init__(self) -> None:
        nodes = tuple(tuple(n) for n in self.nodes)
        n = len(nodes)
        if n < 3 or (n + 1) & n:
            raise ValueError(f"a tree cell has 2B - 1 nodes for a base B that is a power of 2 >= 2 (3, 7, 15, ...), "
                             f"got {n} nodes")
        for k, pair in enumerate(nodes + (tuple(self.inject),)):
            where = f"node {k}" if k < n else "inject"
            if len(pair) != 2:
                raise ValueError(f"{where} must be a (combination, activation) pair, got {pair!r}")
            check_choice(f"{where} combination", pair[0], TREE_COMBINATIONS, sort=False)
            check_choice(f"{where} activation", pair[1], TREE_ACTIVATIONS, sort=False)
        for name in ("inject_node", "cell_node"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=0, high=n - 1))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "inject", tuple(self.inject))

    @property
    def base(self) -> int:
        """Number of leaves."""
        return (len(self.nodes) + 1) // 2

    def children(self, k: int) -> Tuple[int, int]:
        """The two nodes internal node ``k`` combines."""
        j = k - self.base
        if not 0 <= j < self.base - 1:
            raise ValueError(f"node {k} is a leaf or out of range; internal nodes are {self.base}..{len(self.nodes) - 1}")
        return 2 * j, 2 * j + 1


def tree_cell_decisions(base: int = 8) -> List[Decision]:
    """The controller's decisions for a base-``base`` tree cell, in token order (module docstring)."""
    base = check_power_of_two("base", base, low=2, allowed=BASE_ALLOWED)
    n = _num_nodes(base)
    out: List[Decision] = []
    for k in range(n):
        out.append(Decision.categorical(f"node{k}.combination", len(TREE_COMBINATIONS)))
        out.append(Decision.categorical(f"node{k}.activation", len(TREE_ACTIVATIONS)))
    out.append(Decision.categorical("inject.combination", len(TREE_COMBINATIONS)))
    out.append(Decision.categorical("inject.activation", len(TREE_ACTIVATIONS)))
    out.append(Decision.categorical("cell_node", n))  # the paper's first cell index: c_t
    out.append(Decision.categorical("inject_node", n))  # the second: where c_{t-1} enters
    return out


def decode_tree_cell(tokens: Sequence[int], base: int = 8) -> TreeCell:
    """The :class:`TreeCell` of a token sequence; errors name the token's position, value and range."""
    t = check_tokens(tree_cell_decisions(base), tokens, f"a base-{base} tree cell",
                     f"2 per node for {_num_nodes(base)} nodes, 2 for the inject, 2 cell indices")
    n = _num_nodes(base)
    nodes = tuple((TREE_COMBINATIONS[t[2 * k]], TREE_ACTIVATIONS[t[2 * k + 1]]) for k in range(n))
    inject = (TREE_COMBINATIONS[t[2 * n]], TREE_ACTIVATIONS[t[2 * n + 1]])
    return TreeCell(nodes=nodes, inject=inject, inject_node=t[2 * n + 3], cell_node=t[2 * n + 2])


def encode_tree_cell(cell: TreeCell) -> List[int]:
    """The token sequence of ``cell`` (inverse of :func:`decode_tree_cell`)."""
    if not isinstance(cell, TreeCell):
        raise ValueError(f"cell must be a TreeCell, got {cell!r}")
    tokens: List[int] = []
    for comb, act in cell.nodes + (cell.inject,):
        tokens += [TREE_COMBINATIONS.index(comb), TREE_ACTIVATIONS.index(act)]
    return tokens + [cell.cell_node, cell.inject_node]


# The published cell (Fig. 8 as tf.contrib.rnn.NASCell computes it), nodes in level order.
NAS_CELL = TreeCell(
    nodes=(
        ("add", "sigmoid"), ("add", "relu"), ("add", "sigmoid"), ("mul", "relu"),  # leaves 0-3
        ("add", "tanh"), ("add", "sigmoid"), ("add", "tanh"), ("add", "sigmoid"),  # leaves 4-7
        ("mul", "tanh"), ("add", "tanh"), ("mul", "tanh"), ("add", "sigmoid"),  # level 2: nodes 8-11
        ("mul", "identity"), ("add", "tanh"),  # level 3: nodes 12-13
        ("mul", "tanh"),  # root 14 -> h_t
    ),
    inject=("add", "tanh"),
    inject_node=8,
    cell_node=12,
)
NAS_CELL_TOKENS: Tuple[int, ...] = tuple(encode_tree_cell(NAS_CELL))


class NASRLCell(nn.Module):
    """The tree cell of ``tokens`` (or a :class:`TreeCell`) as a recurrent module (module docstring).

    Args:
        ninp, nhid: input and hidden sizes.
        tokens: the controller's token sequence for base ``base``, or a :class:`TreeCell`.
        base: leaves of the tree (8, the paper's and NASCell's); ignored for a :class:`TreeCell`.
        use_bias: a bias on the recurrent projection, as NASCell's ``use_bias`` (default off, as NASCell).

    ``forward(inputs (T, B, ninp), hidden (B, 2 nhid) = [h, c])`` returns
    ``(outputs (T, B, nhid) = h_1..h_T, [h_T, c_T] (B, 2 nhid))``.
    """

    def __init__(self, ninp: int, nhid: int, tokens: Union[Sequence[int], TreeCell] = NAS_CELL_TOKENS,
                 base: int = 8, use_bias: bool = False):
        super().__init__()
        self.ninp = check_int("ninp", ninp, low=1)
        self.nhid = check_int("nhid", nhid, low=1)
        self.genotype = tokens if isinstance(tokens, TreeCell) else decode_tree_cell(tokens, base)
        self.base = self.genotype.base
        self.state_size = 2 * self.nhid
        use_bias = check_bool("use_bias", use_bias)
        width = self.base * self.nhid
        self.kernel = nn.Parameter(torch.empty(ninp, width).uniform_(-INIT_RANGE, INIT_RANGE))
        self.recurrent_kernel = nn.Parameter(torch.empty(nhid, width).uniform_(-INIT_RANGE, INIT_RANGE))
        self.bias: Optional[nn.Parameter] = nn.Parameter(torch.zeros(width)) if use_bias else None

    def tokens(self) -> List[int]:
        """The token sequence of this cell."""
        return encode_tree_cell(self.genotype)

    def init_hidden(self, batch_size: int) -> Tensor:
        """The zero state [h, c] (B, 2 nhid)."""
        batch_size = check_int("batch_size", batch_size, low=1)
        return self.kernel.new_zeros(batch_size, self.state_size)

    def step(self, xw: Tensor, h: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        """One step from ``xw = x_t W`` (B, base nhid), ``h``, ``c`` (B, nhid) -> (``h_t``, ``c_t``)."""
        g = self.genotype
        hu = h @ self.recurrent_kernel
        if self.bias is not None:
            hu = hu + self.bias
        xs, hs = xw.split(self.nhid, dim=-1), hu.split(self.nhid, dim=-1)
        outs: List[Tensor] = []
        c_new = c
        for k, (comb, act) in enumerate(g.nodes):
            left, right = (xs[k], hs[k]) if k < self.base else tuple(outs[i] for i in g.children(k))
            pre = _COMBINE[comb](left, right)
            if k == g.cell_node:
                c_new = pre
            out = ACTIVATIONS[act](pre)
            if k == g.inject_node:
                out = ACTIVATIONS[g.inject[1]](_COMBINE[g.inject[0]](out, c))
            outs.append(out)
        return outs[-1], c_new

    def forward(self, inputs: Tensor, hidden: Tensor) -> Tuple[Tensor, Tensor]:
        """``inputs`` (T, B, ninp), ``hidden`` [h, c] (B, 2 nhid) -> (outputs (T, B, nhid), [h, c] (B, 2 nhid))."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.ninp:
            raise ValueError(f"inputs must be (time, batch, ninp={self.ninp}), got shape {tuple(inputs.shape)}")
        want = (inputs.shape[1], self.state_size)
        if tuple(hidden.shape) != want:
            raise ValueError(
                f"hidden must be the [h, c] state of shape {want} (batch, 2 * nhid), got {tuple(hidden.shape)}; "
                "RecurrentLM.init_hidden gives (batch, nhid): pass hidden=cell.init_hidden(batch)")
        h, c = hidden.split(self.nhid, dim=-1)
        xws = inputs @ self.kernel  # (T, B, base nhid): every step's input projections at once
        outputs = []
        for xw in xws:
            h, c = self.step(xw, h, c)
            outputs.append(h)
        return torch.stack(outputs), torch.cat([h, c], dim=-1)


class NASRLCellSpace(DecisionSpace):
    """The NAS-RL recurrent-cell space (Sec. 3.4) for the controller: the decisions of a base-``base`` tree,
    tokens <-> :class:`TreeCell`, and the JSON record ``{"base": B, "tokens": [...]}`` stored with every child.
    Its children are language-model cells: :class:`~lit_automl.nas.LMTrainingEvaluator` trains them."""

    def __init__(self, base: int = 8) -> None:
        self.base = check_power_of_two("base", base, low=2, allowed=BASE_ALLOWED)
        self._decisions = tree_cell_decisions(self.base)

    def __repr__(self) -> str:
        return f"NASRLCellSpace(base={self.base})"

    def decisions(self) -> List[Decision]:
        return list(self._decisions)

    def decode(self, actions: Sequence[int]) -> TreeCell:
        return decode_tree_cell(actions, self.base)

    def encode(self, cell: TreeCell) -> List[int]:
        tokens = encode_tree_cell(cell)
        if cell.base != self.base:
            raise ValueError(f"the cell has base {cell.base}; this space has base={self.base}")
        return tokens

    def to_json(self, cell: TreeCell) -> Dict[str, Any]:
        return tree_cell_record(cell)

    def from_json(self, data: Any) -> TreeCell:
        """Inverse of :meth:`to_json`; also the JSON text or the path of a file holding it."""
        cell = read_tree_cell(data)
        if cell is None:
            raise ValueError(f'a NAS-RL cell record is an object {{"base": B, "tokens": [...]}} (or its JSON text or '
                             f"file), got {data!r}")
        self.encode(cell)  # membership check
        return cell


def tree_cell_record(cell: TreeCell) -> Dict[str, Any]:
    """``{"base": B, "tokens": [...]}``: the JSON record of a tree cell."""
    return {"base": cell.base, "tokens": encode_tree_cell(cell)}


def read_tree_cell(spec: Any) -> Optional[TreeCell]:
    """The tree cell ``spec`` holds, or ``None`` when it holds none: a :class:`TreeCell`, a
    ``{"base": B, "tokens": [...]}`` record, its JSON text, or the path of a file holding it."""
    if isinstance(spec, TreeCell):
        return spec
    record = read_json_record(spec)
    if record is None or "tokens" not in record:
        return None
    base = record.get("base", 8)
    return decode_tree_cell(record["tokens"], base)

"""The ENAS recurrent cell with shared weights.

Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018,
Sec. 2.1 "Designing Recurrent Cells", and the authors' TensorFlow code (``melodyguan/enas``,
``src/ptb/ptb_enas_child.py``, ``PTBEnasChild._rhn_enas`` / ``_build_params``).

The space: ``N`` nodes (12 in the paper). Node 1 reads the cell input ``(x_t, h_{t-1})``; node
``l >= 2`` reads ONE earlier node ``j in 1..l-1``; every node applies an activation from
``{tanh, relu, identity, sigmoid}`` (:data:`ENAS_ACTIVATIONS`, the authors' ``func_idx`` order).
The new hidden state ``h_t`` is the mean of the loose ends: the nodes no other node reads.

What is computed -- the authors' code, not the paper's equations. Sec. 2.1 writes
``h_1 = f_1(x_t W^(x) + h_{t-1} W_1^(h))`` and ``h_l = f_l(h_j W_{l,j}^(h))``. The code instead makes
every node a highway layer (as DARTS later did, :mod:`lit_automl.spaces.recurrent`)::

    [g_1, c_1] = [x_t, h_{t-1}] W_1,       s_1 = h_{t-1} + sigmoid(c_1) * (f_1(g_1) - h_{t-1})
    [g_l, c_l] = s_j W_{l,j},              s_l = s_j     + sigmoid(c_l) * (f_l(g_l) - s_j)

(``W_1`` of shape (ninp + nhid, 2 nhid) is the x and h projection stacked; ``W_{l,j}`` (nhid, 2 nhid);
no biases.) Variational masks (one per sequence) multiply ``x_t`` and every state a matrix reads, as
the code's ``x_mask`` / ``s_mask``; the time loop is :func:`~lit_automl.spaces.recurrent.unroll`.

Sharing: the paper gives every pair ``j < l`` one matrix ``W_{l,j}`` shared by every child using that
edge. The code slices its ``w_skip[l]`` by ``(prev_idx * num_funcs + func_idx)``, i.e. ONE MATRIX PER
(l, j, ACTIVATION), and its ``w_prev`` by node 1's activation. Default ``share_activations=False``
follows the code; ``share_activations=True`` gives the paper's one matrix per edge (and one ``W_1``).

Initialisation: the code's ``_build_params`` draws uniform in ``[-r, r]`` with ``r = 0.1`` for
``nhid <= 300``, ``0.05`` for ``nhid <= 400`` and :data:`~lit_automl.spaces.recurrent.INIT_RANGE`
(0.04) above (:func:`enas_init_range`); this module follows it.

Not implemented: the code's search child also batch-normalises each node's pre-activation ``[g, c]``
and the averaged output (its fixed child does not); this cell has no batch norm.

How the architecture reaches the cell: set :attr:`ENASRecurrentCell.architecture` (an
:class:`ENASRecurrentArch` or its token list, validated) before each forward, as the search method
sets the DARTS search cell's ``weights``, so :class:`~lit_automl.spaces.recurrent.RecurrentLM` keeps
calling ``self.cell(emb, hidden)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from lit_automl._checks import check_bool, check_choice, check_int
from lit_automl.spaces.decisions import Decision, DecisionSpace, check_tokens, read_json_record
from lit_automl.spaces.recurrent import ACTIVATIONS, INIT_RANGE, check_dropout, unroll

__all__ = [
    "ENAS_ACTIVATIONS",
    "ENASRecurrentArch",
    "ENASRecurrentCell",
    "ENASRecurrentSpace",
    "decode_enas_rnn",
    "enas_init_range",
    "enas_rnn_decisions",
    "encode_enas_rnn",
    "read_enas_rnn_architecture",
]

ENAS_ACTIVATIONS: Tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid")  # token order (the code's func_idx)


NUM_NODES_ALLOWED = "an int >= 2 (node 1 and at least one node reading it)"


@dataclass(frozen=True)
class ENASRecurrentArch:
    """One sampled cell: ``nodes[l - 1] = (prev, activation)`` for node ``l`` (1-based); ``prev`` is 0 for
    node 1 (the cell input ``x_t, h_{t-1}``) and in ``1..l-1`` for node ``l >= 2``."""

    nodes: Tuple[Tuple[int, str], ...]

    def __post_init__(self) -> None:
        if isinstance(self.nodes, (str, bytes)) or not isinstance(self.nodes, Sequence):
            raise ValueError(f"nodes must be a sequence of (prev, activation) pairs, got {self.nodes!r}")
        nodes = []
        for l, pair in enumerate(self.nodes, start=1):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise ValueError(f"node {l} must be a (prev, activation) pair, got {pair!r}")
            prev, act = pair
            if l == 1:
                prev = check_int("node 1 prev", prev, low=0, high=0, allowed="0 (node 1 reads the cell input)")
            else:
                prev = check_int(f"node {l} prev", prev, low=1, high=l - 1)
            check_choice(f"node {l} activation", act, ENAS_ACTIVATIONS, sort=False)
            nodes.append((prev, act))
        check_int("num_nodes", len(nodes), low=2, allowed=NUM_NODES_ALLOWED)
        object.__setattr__(self, "nodes", tuple(nodes))

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def loose_ends(self) -> Tuple[int, ...]:
        """The nodes (1-based) no other node reads; their mean is ``h_t``."""
        read = {prev for prev, _ in self.nodes[1:]}
        return tuple(l for l in range(1, self.num_nodes + 1) if l not in read)

    @property
    def edges(self) -> Tuple[Tuple[int, int], ...]:
        """The ``(l, j)`` edges the cell uses, node 2 onwards."""
        return tuple((l, prev) for l, (prev, _) in enumerate(self.nodes[1:], start=2))


def enas_rnn_decisions(num_nodes: int = 12) -> List[Decision]:
    """The controller's decisions, in the code's ``sample_arc`` order: node 1's activation, then for
    every node ``l >= 2`` its previous node (``l - 1`` choices, token ``j - 1``) and its activation."""
    num_nodes = check_int("num_nodes", num_nodes, low=2, allowed=NUM_NODES_ALLOWED)
    out = [Decision.categorical("node1.activation", len(ENAS_ACTIVATIONS))]
    for l in range(2, num_nodes + 1):
        out.append(Decision.categorical(f"node{l}.prev", l - 1))
        out.append(Decision.categorical(f"node{l}.activation", len(ENAS_ACTIVATIONS)))
    return out


def decode_enas_rnn(tokens: Sequence[int], num_nodes: int = 12) -> ENASRecurrentArch:
    """The :class:`ENASRecurrentArch` of a token sequence; errors name the token, its value and range."""
    t = check_tokens(enas_rnn_decisions(num_nodes), tokens, f"a {num_nodes}-node ENAS cell",
                     "1 for node 1, 2 for each later node")
    nodes = [(0, ENAS_ACTIVATIONS[t[0]])]
    nodes += [(t[2 * l - 3] + 1, ENAS_ACTIVATIONS[t[2 * l - 2]]) for l in range(2, num_nodes + 1)]
    return ENASRecurrentArch(tuple(nodes))


def encode_enas_rnn(arch: ENASRecurrentArch) -> List[int]:
    """The token sequence of ``arch`` (inverse of :func:`decode_enas_rnn`)."""
    if not isinstance(arch, ENASRecurrentArch):
        raise ValueError(f"arch must be an ENASRecurrentArch, got {arch!r}")
    tokens = [ENAS_ACTIVATIONS.index(arch.nodes[0][1])]
    for prev, act in arch.nodes[1:]:
        tokens += [prev - 1, ENAS_ACTIVATIONS.index(act)]
    return tokens


def enas_init_range(nhid: int) -> float:
    """The authors' uniform init half-width for hidden size ``nhid`` (``_build_params``)."""
    nhid = check_int("nhid", nhid, low=1)
    return 0.1 if nhid <= 300 else 0.05 if nhid <= 400 else INIT_RANGE


class ENASRecurrentCell(nn.Module):
    """The shared-weight ENAS cell (module docstring): every child of the ``num_nodes``-node space runs on
    these parameters; :attr:`architecture` picks the child.

    Args:
        ninp, nhid: input and hidden sizes.
        num_nodes: ``N`` (12, Sec. 2.1 / Sec. 3.1).
        dropout_h, dropout_x: variational dropout on the states a matrix reads and on ``x_t``
            (the defaults of :class:`~lit_automl.spaces.recurrent.DartsRecurrentCell`).
        share_activations: False (the authors' code): one matrix per (edge, activation);
            True (the paper): one matrix per edge.
        architecture: a fixed child (an :class:`ENASRecurrentArch` or its tokens) for training a derived
            cell from scratch: only its matrices are made, and the architecture cannot be changed.
    """

    def __init__(self, ninp: int, nhid: int, num_nodes: int = 12, dropout_h: float = 0.25,
                 dropout_x: float = 0.75, share_activations: bool = False,
                 architecture: Union[None, ENASRecurrentArch, Sequence[int]] = None):
        super().__init__()
        self.ninp = check_int("ninp", ninp, low=1)
        self.nhid = check_int("nhid", nhid, low=1)
        self.num_nodes = check_int("num_nodes", num_nodes, low=2, allowed=NUM_NODES_ALLOWED)
        self.dropout_h = check_dropout("dropout_h", dropout_h)
        self.dropout_x = check_dropout("dropout_x", dropout_x)
        self.share_activations = check_bool("share_activations", share_activations)
        r = enas_init_range(nhid)

        def param(rows: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(rows, 2 * nhid).uniform_(-r, r))

        self._architecture: Optional[ENASRecurrentArch] = None
        self.fixed = architecture is not None
        if self.fixed:
            self.architecture = architecture
            used = [(l, prev, act) for l, (prev, act) in enumerate(self._architecture.nodes, start=1)]
        else:
            used = [(1, 0, a) for a in ENAS_ACTIVATIONS] + [(l, j, a) for l in range(2, self.num_nodes + 1)
                                                              for j in range(1, l) for a in ENAS_ACTIVATIONS]
        keys = dict.fromkeys((l, j, None if self.share_activations else a) for l, j, a in used)  # ordered, unique
        self.w_first = nn.ParameterDict({self._key(l, j, a): param(ninp + nhid) for l, j, a in keys if l == 1})
        self.w_edges = nn.ParameterDict({self._key(l, j, a): param(nhid) for l, j, a in keys if l > 1})

    @staticmethod
    def _key(l: int, j: int, act: Optional[str]) -> str:
        return f"{l}_{j}" if act is None else f"{l}_{j}_{act}"

    def weight(self, l: int, j: int, activation: str) -> nn.Parameter:
        """The shared matrix node ``l`` uses when it reads node ``j`` (0: the cell input) with ``activation``."""
        l = check_int("l", l, low=1, high=self.num_nodes)
        j = check_int("j", j, low=0, high=0) if l == 1 else check_int("j", j, low=1, high=l - 1)
        act = check_choice("activation", activation, ENAS_ACTIVATIONS, sort=False)
        return self._param(l, j, act)

    def _param(self, l: int, j: int, act: str) -> nn.Parameter:
        key = self._key(l, j, None if self.share_activations else act)
        return self.w_first[key] if l == 1 else self.w_edges[key]

    @property
    def architecture(self) -> Optional[ENASRecurrentArch]:
        """The child the next forward runs (set by the search method before each forward)."""
        return self._architecture

    @architecture.setter
    def architecture(self, value: Union[None, ENASRecurrentArch, Sequence[int]]) -> None:
        if value is not None and not isinstance(value, ENASRecurrentArch):
            value = decode_enas_rnn(value, self.num_nodes)
        if value is not None and value.num_nodes != self.num_nodes:
            raise ValueError(f"architecture has {value.num_nodes} nodes, but this cell has num_nodes="
                             f"{self.num_nodes}")
        if getattr(self, "fixed", False) and self._architecture is not None and value != self._architecture:
            raise ValueError(f"this cell is fixed to {self._architecture}; it has no weights for {value}")
        self._architecture = value

    def step(self, x: Tensor, h_prev: Tensor, x_mask: Optional[Tensor], h_mask: Optional[Tensor]) -> Tensor:
        """One time step of :attr:`architecture`: ``x`` (B, ninp), ``h_prev`` (B, nhid) -> ``h_t`` (B, nhid)."""
        arch = self._architecture
        if arch is None:
            raise RuntimeError("step() is called by forward(), which checks that an architecture is set")
        masked = (lambda s: s) if h_mask is None else (lambda s: s * h_mask)
        states = [h_prev]  # states[l] = s_l; states[0] is h_{t-1}, the highway carry of node 1
        for l, (prev, act) in enumerate(arch.nodes, start=1):
            if l == 1:
                inp = torch.cat([x if x_mask is None else x * x_mask, masked(h_prev)], -1)
            else:
                inp = masked(states[prev])
            g, c = (inp @ self._param(l, prev, act)).split(self.nhid, dim=-1)
            s = states[prev]
            states.append(s + torch.sigmoid(c) * (ACTIVATIONS[act](g) - s))
        return torch.stack([states[l] for l in arch.loose_ends], -1).mean(-1)

    def forward(self, inputs: Tensor, hidden: Tensor) -> Tuple[Tensor, Tensor]:
        """``inputs`` (T, B, ninp), ``hidden`` (B, nhid) -> (outputs (T, B, nhid), last hidden (B, nhid))."""
        if self._architecture is None:
            raise ValueError(f"no architecture: set cell.architecture (an ENASRecurrentArch or its "
                             f"{len(enas_rnn_decisions(self.num_nodes))} tokens) before calling the cell")
        return unroll(self.step, inputs, hidden, self.dropout_x, self.dropout_h, self.training)


def read_enas_rnn_architecture(spec: Any) -> Optional[ENASRecurrentArch]:
    """The ENAS cell ``spec`` holds, or ``None`` when it holds none: an :class:`ENASRecurrentArch`, a
    ``{"nodes": [[prev, activation], ...]}`` record (what the search writes to ``architecture.json``), its
    JSON text, or the path of a file holding it. A record with ``nodes`` is validated (errors name the node)."""
    if isinstance(spec, ENASRecurrentArch):
        return spec
    spec = read_json_record(spec)
    if spec is None or "nodes" not in spec:
        return None
    nodes = spec["nodes"]
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise ValueError(f"an ENAS recurrent cell record's 'nodes' must be a list of [prev, activation] pairs, "
                         f"got {nodes!r}")
    return ENASRecurrentArch(tuple(tuple(pair) if isinstance(pair, Sequence) else pair for pair in nodes))


class ENASRecurrentSpace(DecisionSpace):
    """The ENAS recurrent-cell space for the controller and the search: its decisions, tokens <-> cells,
    the JSON record, and the shared-weight cell (:meth:`supernet_cell`).

    A :class:`~lit_automl.spaces.decisions.DecisionSpace`: its children are language-model cells, which
    :class:`~lit_automl.nas.LMTrainingEvaluator` and :class:`~lit_automl.nas.RetrainRNN` train.

    Args:
        num_nodes: ``N`` (12, Sec. 2.1 / 3.1).
        share_activations: the shared cell's weight layout (:class:`ENASRecurrentCell`).
    """

    def __init__(self, num_nodes: int = 12, share_activations: bool = False) -> None:
        self.num_nodes = check_int("num_nodes", num_nodes, low=2, allowed=NUM_NODES_ALLOWED)
        self.share_activations = check_bool("share_activations", share_activations)
        self._decisions = enas_rnn_decisions(self.num_nodes)

    def __repr__(self) -> str:
        return f"ENASRecurrentSpace(num_nodes={self.num_nodes}, share_activations={self.share_activations})"

    def decisions(self) -> List[Decision]:
        return list(self._decisions)

    def decode(self, tokens: Sequence[int]) -> ENASRecurrentArch:
        return decode_enas_rnn(tokens, self.num_nodes)

    def encode(self, arch: ENASRecurrentArch) -> List[int]:
        tokens = encode_enas_rnn(arch)
        if arch.num_nodes != self.num_nodes:
            raise ValueError(f"the cell has {arch.num_nodes} nodes; this space has num_nodes={self.num_nodes}")
        return tokens

    def to_json(self, arch: ENASRecurrentArch) -> dict:
        """``{"nodes": [[prev, activation], ...], "loose_ends": [...]}`` (node ``l`` is entry ``l - 1``)."""
        return {"nodes": [[prev, act] for prev, act in arch.nodes], "loose_ends": list(arch.loose_ends)}

    def from_json(self, data: Union[dict, str, os.PathLike]) -> ENASRecurrentArch:
        """Inverse of :meth:`to_json`; also accepts the JSON text or the path of a file holding it."""
        arch = read_enas_rnn_architecture(data)
        if arch is None:
            raise ValueError(f"an ENAS recurrent cell record is an object with a 'nodes' list (or its JSON text or "
                             f"file), got {data!r}")
        self.encode(arch)  # membership check
        return arch

    def supernet_cell(self, ninp: int, nhid: int, dropout_h: float, dropout_x: float) -> ENASRecurrentCell:
        """The shared-weight cell every child of this space runs on."""
        return ENASRecurrentCell(ninp, nhid, self.num_nodes, dropout_h, dropout_x, self.share_activations)

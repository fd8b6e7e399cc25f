"""The DARTS recurrent search cell (Liu et al., ICLR 2019, Sec. 2.1 / 3.1.2 and Appendix A.1.2).

The continuous relaxation of :class:`~lit_automl.spaces.recurrent.DartsRecurrentCell`: intermediate
node ``i`` (0-based, state ``i + 1``) reads every earlier state ``s_j`` (``j = 0..i``) through every
candidate activation ``f_k`` and sums them with the architecture weights ``w`` it is handed::

    s_{i+1} = sum_j sum_k w[edge(j -> i), k] * (s_j + sigmoid(c_ij) * (f_k(g_ij) - s_j)),
    [c_ij, g_ij] = (s_j * h_mask) W_i,

one matrix ``W_i`` per node shared by all its incoming edges, as in the authors' ``rnn/model_search.py``
``DARTSCellSearch``. Edge rows are ordered node by node
(:func:`~lit_automl.spaces.recurrent_genotype.recurrent_edge_slices`). ``none`` contributes nothing
and is never computed; an op whose weight is zero on every edge of a node is skipped, and an edge
without any non-zero activation weight is not computed at all (the rule of
:class:`~lit_automl.spaces.cells.MixedEdge`). The output ``h_t`` is the mean of the ``steps`` node
states (DARTS ``concat = range(1, steps + 1)``).

Batch norm: as in the authors' search cell, ONE ``BatchNorm1d(nhid, affine=False)`` normalises the
initial state ``s_0`` and the state of every intermediate node (after the weighted sum), with running
statistics shared by all of them; the derived (fixed) cell has none. ``batch_norm=False`` leaves it out,
which makes one-hot weights reproduce the fixed cell exactly.

How the weights reach the cell: ``forward(inputs, hidden, weights)`` takes them explicitly; when
``weights`` is omitted the cell uses its :attr:`weights` attribute, which the search method sets
(``cell.weights = alpha.softmax(-1)``) before each forward, so that
:class:`~lit_automl.spaces.recurrent.RecurrentLM` can keep calling ``self.cell(emb, hidden)``. The
weights are never a parameter or buffer of the cell: architecture parameters belong to the method.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from lit_automl._checks import check_bool, check_int
from lit_automl.spaces.derive import derive_recurrent
from lit_automl.spaces.op_names import resolve_recurrent_primitives
from lit_automl.spaces.recurrent import ACTIVATIONS, INIT_RANGE, check_dropout, unroll
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype, num_recurrent_edges, recurrent_edge_slices

__all__ = ["DartsRecurrentSearchCell"]


class DartsRecurrentSearchCell(nn.Module):
    """DARTS recurrent search cell (module docstring); forward contract of ``DartsRecurrentCell``.

    Args:
        ninp, nhid: input and hidden sizes.
        steps: intermediate nodes (DARTS: 8); at least 2, so that a node has a choice of predecessor.
        primitives: a recurrent op-set name (``"darts_rnn"``) or the column names of the weights.
        dropout_h, dropout_x: variational dropout of the recurrent and the cell input (one mask per call).
        batch_norm: the authors' non-affine batch norm of every state (module docstring).
    """

    def __init__(self, ninp: int, nhid: int, steps: int = 8, primitives: Union[str, Sequence[str]] = "darts_rnn",
                 dropout_h: float = 0.25, dropout_x: float = 0.75, batch_norm: bool = True):
        super().__init__()
        self.ninp = check_int("ninp", ninp, low=1)
        self.nhid = check_int("nhid", nhid, low=1)
        self.steps = check_int("steps", steps, low=2, hint="nodes of the search cell; a node needs a choice of "
                               "predecessor")
        self.primitives = resolve_recurrent_primitives(primitives)
        if not set(self.primitives) - {"none"}:
            raise ValueError(f"primitives must be unique recurrent op names with at least one activation (not only "
                             f"'none'): a search cell of only 'none' computes nothing, got {list(self.primitives)!r}")
        self.dropout_h = check_dropout("dropout_h", dropout_h)
        self.dropout_x = check_dropout("dropout_x", dropout_x)
        self.bn = nn.BatchNorm1d(nhid, affine=False) if check_bool("batch_norm", batch_norm) else None
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
        self.Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE)) for _ in range(self.steps)
        )
        self._slices = recurrent_edge_slices(self.steps)
        self._acts = [None if name == "none" else ACTIVATIONS[name] for name in self.primitives]
        self._weights: Optional[Tensor] = None
        self._in_use: Optional[Tuple[Tensor, List[List[bool]]]] = None

    @property
    def weight_shape(self) -> Tuple[int, int]:
        """(num_edges, num_ops) of the architecture weights."""
        return (num_recurrent_edges(self.steps), len(self.primitives))

    def check_weights(self, weights: Tensor) -> Tensor:
        """``weights`` if it is a floating tensor of :attr:`weight_shape`; else a ``ValueError`` naming both shapes."""
        if not isinstance(weights, Tensor) or not weights.is_floating_point():
            raise ValueError(f"weights must be a floating tensor of shape {self.weight_shape} (num_edges, num_ops), "
                             f"got {type(weights).__name__}"
                             + (f" of dtype {weights.dtype}" if isinstance(weights, Tensor) else ""))
        if tuple(weights.shape) != self.weight_shape:
            raise ValueError(f"weights must have shape {self.weight_shape} ({self.weight_shape[0]} edges of a "
                             f"{self.steps}-node cell, ops {list(self.primitives)}), got {tuple(weights.shape)}")
        return weights

    @property
    def weights(self) -> Optional[Tensor]:
        """The architecture weights used when ``forward`` is given none (set by the search method)."""
        return self._weights

    @weights.setter
    def weights(self, value: Optional[Tensor]) -> None:
        self._weights = None if value is None else self.check_weights(value)

    def _norm(self, s: Tensor) -> Tensor:
        return s if self.bn is None else self.bn(s)

    def _node(self, i: int, states: List[Tensor], w: Tensor, active: List[List[bool]],
              h_mask: Optional[Tensor]) -> Tensor:
        """State of node ``i``: the weighted sum over its active edges (module docstring)."""
        rows = range(self._slices[i].start, self._slices[i].stop)
        preds = [j for j, r in enumerate(rows) if any(active[r])]
        if not preds:
            return torch.zeros_like(states[0])
        s = torch.stack([states[j] for j in preds])  # (P, B, nhid)
        c, g = ((s if h_mask is None else s * h_mask) @ self.Ws[i]).split(self.nhid, dim=-1)
        c = torch.sigmoid(c)
        w_node = w[[rows[j] for j in preds]]  # (P, num_ops)
        out: Optional[Tensor] = None
        for k, act in enumerate(self._acts):
            if act is None or not any(active[rows[j]][k] for j in preds):
                continue
            term = (w_node[:, k, None, None] * (s + c * (act(g) - s))).sum(0)
            out = term if out is None else out + term
        assert out is not None  # an active edge has an active op
        return out

    def step(self, x: Tensor, h_prev: Tensor, x_mask: Optional[Tensor], h_mask: Optional[Tensor]) -> Tensor:
        """One time step with the weights of the current ``forward`` call: (B, ninp), (B, nhid) -> (B, nhid)."""
        if self._in_use is None:
            raise RuntimeError("step() is called by forward(), which supplies the architecture weights")
        w, active = self._in_use
        xh = torch.cat([x if x_mask is None else x * x_mask, h_prev if h_mask is None else h_prev * h_mask], -1)
        c0, g0 = (xh @ self.W0).split(self.nhid, dim=-1)
        states = [self._norm(h_prev + torch.sigmoid(c0) * (torch.tanh(g0) - h_prev))]
        for i in range(self.steps):
            states.append(self._norm(self._node(i, states, w, active, h_mask)))
        return torch.stack(states[1:], -1).mean(-1)

    def forward(self, inputs: Tensor, hidden: Tensor, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """``inputs`` (T, B, ninp), ``hidden`` (B, nhid), ``weights`` (num_edges, num_ops) or None (use
        :attr:`weights`) -> (outputs (T, B, nhid), last hidden (B, nhid)); the time loop and dropout masks
        are :func:`~lit_automl.spaces.recurrent.unroll`, as the fixed cell's."""
        if weights is None:
            if self._weights is None:
                raise ValueError(f"no architecture weights: pass weights= of shape {self.weight_shape} or set "
                                 "cell.weights before calling the cell (e.g. inside RecurrentLM)")
            weights = self._weights
        weights = self.check_weights(weights)
        # which (edge, op) pairs run: a non-zero weight on an activation (never 'none'); read once per call
        active = [[v != 0 and self._acts[k] is not None for k, v in enumerate(row)] for row in weights.tolist()]
        self._in_use = (weights, active)
        try:
            return unroll(self.step, inputs, hidden, self.dropout_x, self.dropout_h, self.training)
        finally:
            self._in_use = None

    def genotype(self, weights: Optional[Tensor] = None) -> RecurrentGenotype:
        """The derived cell (:func:`~lit_automl.spaces.derive.derive_recurrent`) of ``weights`` (or :attr:`weights`)."""
        weights = self._weights if weights is None else self.check_weights(weights)
        if weights is None:
            raise ValueError(f"no architecture weights: pass weights of shape {self.weight_shape}")
        return derive_recurrent(weights.detach(), self.primitives, self.steps)

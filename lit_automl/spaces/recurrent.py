"""The recurrent language model of the DARTS / ENAS Penn Treebank experiments, and its DARTS cell.

Notation (Liu et al., ICLR 2019, Sec. 2.1 and the authors' ``rnn/model.py``): ``x_t`` the embedded
token (``ninp``), ``h_{t-1}`` the previous hidden state (``nhid``). The cell's initial state is
``s_0 = h_{t-1} + sigmoid(c_0) * (tanh(g_0) - h_{t-1})`` with ``[c_0, g_0] = [x_t, h_{t-1}] W_0``,
``W_0`` of shape (ninp + nhid, 2 nhid). Intermediate node ``i`` reads one earlier state
``s_p`` and computes ``[c_i, g_i] = s_p W_i`` (``W_i`` of shape (nhid, 2 nhid), no biases) and the
highway update ``s_i = s_p + sigmoid(c_i) * (f_i(g_i) - s_p)``, ``f_i`` its activation. The new
hidden state ``h_t`` is the mean of the ``concat`` states.

Regularisation as AWD-LSTM (Merity et al., ICLR 2018), which DARTS and ENAS train with:
embedding dropout (whole word rows, ``dropout_e``), variational (locked) dropout on the embedded
input (``dropout_i``) and on the output (``dropout``), one mask per sequence on the cell's input
``x`` (``dropout_x``) and recurrent input ``h`` (``dropout_h``), the decoder tied to the embedding
(its own bias). Defaults are the DARTS final-training settings (``rnn/train.py``: emsize = nhid =
850, dropouts 0.75 / 0.25 / 0.75 / 0.2 / 0.1); with the DARTS_V2 cell on the 10,000-word Penn
Treebank vocabulary the model has 23M parameters (Table 2). Weights start uniform in
[-0.04, 0.04] (the authors' ``INITRANGE``), the decoder bias at 0.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_automl._checks import check_int, check_real, lookup
from lit_automl.spaces.published import resolve_recurrent_genotype

__all__ = [
    "ACTIVATIONS",
    "DartsRecurrentCell",
    "LMOutput",
    "RecurrentLM",
    "embedded_dropout",
    "check_dropout",
    "locked_dropout",
    "unroll",
]

INIT_RANGE = 0.04  # the authors' INITRANGE


def _identity(x: Tensor) -> Tensor:
    return x


ACTIVATIONS: Dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
}


def check_dropout(name: str, p: float) -> float:
    """A dropout probability in [0, 1)."""
    return check_real(name, p, low=0.0, high=1.0, high_open=True, allowed="a probability in [0, 1)")


def _mask(shape: Tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A dropout mask of ``shape``: Bernoulli(1 - p) / (1 - p)."""
    return like.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout of ``x`` (T, B, D): one mask per sequence (B, D), the same at every step."""
    if not training or p == 0.0:
        return x
    return x * _mask((1, x.shape[1], x.shape[2]), p, x)


def embedded_dropout(weight: Tensor, words: Tensor, p: float, training: bool) -> Tensor:
    """``F.embedding(words, weight)`` with whole rows of ``weight`` (words) dropped with probability
    ``p`` and the kept ones scaled by 1 / (1 - p): a dropped word is dropped at every position."""
    if training and p > 0.0:
        weight = weight * _mask((weight.shape[0], 1), p, weight)
    return F.embedding(words, weight)


class DartsRecurrentCell(nn.Module):
    """The DARTS recurrent cell for a fixed genotype (module docstring): ``genotype.recurrent`` is one
    ``(activation, predecessor)`` pair per intermediate node, ``genotype.concat`` the averaged states."""

    def __init__(self, ninp: int, nhid: int, genotype: Any, dropout_h: float = 0.25, dropout_x: float = 0.75):
        super().__init__()
        if isinstance(genotype, str):
            genotype = resolve_recurrent_genotype(genotype)
        self.ninp = check_int("ninp", ninp, low=1)
        self.nhid = check_int("nhid", nhid, low=1)
        self.dropout_h = check_dropout("dropout_h", dropout_h)
        self.dropout_x = check_dropout("dropout_x", dropout_x)
        nodes = tuple((str(name), int(pred)) for name, pred in genotype.recurrent)
        for i, (name, pred) in enumerate(nodes):
            lookup(ACTIVATIONS, name, what=f"activation of node {i + 1}")
            if not 0 <= pred <= i:
                raise ValueError(f"node {i + 1} reads state {pred}, but only states 0..{i} exist before it")
        concat = tuple(int(c) for c in genotype.concat)
        if not concat or any(not 0 <= c <= len(nodes) for c in concat):
            raise ValueError(f"concat must name states in 0..{len(nodes)}, got {list(concat)}")
        self.nodes = nodes
        self.concat = concat
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
        self.Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE)) for _ in nodes
        )

    def step(self, x: Tensor, h_prev: Tensor, x_mask: Optional[Tensor], h_mask: Optional[Tensor]) -> Tensor:
        """One time step: ``x`` (B, ninp), ``h_prev`` (B, nhid) -> ``h_t`` (B, nhid)."""
        xh = torch.cat([x if x_mask is None else x * x_mask, h_prev if h_mask is None else h_prev * h_mask], -1)
        c0, g0 = (xh @ self.W0).split(self.nhid, dim=-1)  # (B, nhid) each
        states = [h_prev + torch.sigmoid(c0) * (torch.tanh(g0) - h_prev)]
        for (name, pred), W in zip(self.nodes, self.Ws):
            s_prev = states[pred]
            c, g = ((s_prev if h_mask is None else s_prev * h_mask) @ W).split(self.nhid, dim=-1)
            states.append(s_prev + torch.sigmoid(c) * (ACTIVATIONS[name](g) - s_prev))
        return torch.stack([states[i] for i in self.concat], -1).mean(-1)

    def forward(self, inputs: Tensor, hidden: Tensor) -> Tuple[Tensor, Tensor]:
        """``inputs`` (T, B, ninp), ``hidden`` (B, nhid) -> (outputs (T, B, nhid), last hidden (B, nhid))."""
        return unroll(self.step, inputs, hidden, self.dropout_x, self.dropout_h, self.training)


Step = Callable[[Tensor, Tensor, Optional[Tensor], Optional[Tensor]], Tensor]


def unroll(step: Step, inputs: Tensor, hidden: Tensor, dropout_x: float, dropout_h: float,
           training: bool) -> Tuple[Tensor, Tensor]:
    """Run ``step(x_t, h_{t-1}, x_mask, h_mask) -> h_t`` over ``inputs`` (T, B, ninp) from ``hidden`` (B, nhid):
    (outputs (T, B, nhid), last hidden). While training, the variational x and h masks are drawn once
    per call, the same at every step (the DARTS cells' time loop, fixed and search alike)."""
    B = inputs.shape[1]
    x_mask = _mask((B, inputs.shape[2]), dropout_x, inputs) if training and dropout_x else None
    h_mask = _mask((B, hidden.shape[1]), dropout_h, hidden) if training and dropout_h else None
    outputs = []
    for x in inputs:
        hidden = step(x, hidden, x_mask, h_mask)
        outputs.append(hidden)
    return torch.stack(outputs), hidden


class LMOutput(NamedTuple):
    """``logits`` (T, B, vocab); ``hidden`` (B, nhid) to carry into the next window (detach it);
    ``raw_output`` the cell's outputs before the output dropout and ``output`` after it (T, B, nhid),
    for activation regularisation (AR on ``output``, temporal AR on ``raw_output``)."""

    logits: Tensor
    hidden: Tensor
    raw_output: Tensor
    output: Tensor


class RecurrentLM(nn.Module):
    """Embedding -> recurrent cell -> decoder tied to the embedding (module docstring).

    Args:
        vocab_size: words in the vocabulary (Penn Treebank: 10,000).
        genotype: the cell: a published name (``"DARTS_V2"``), its text form or a file (anything
            :func:`~lit_automl.spaces.published.resolve_recurrent_genotype` takes), or an object with
            ``recurrent`` and ``concat`` (a :class:`~lit_automl.spaces.recurrent_genotype.RecurrentGenotype`).
        cell: instead of ``genotype``, any module with :class:`DartsRecurrentCell`'s forward contract
            (a search cell); exactly one of the two.
        emsize, nhid: embedding and hidden sizes; equal, as the tied decoder needs.
        dropout, dropout_h, dropout_x, dropout_i, dropout_e: output, recurrent, cell-input, embedded-input
            and embedding dropout probabilities.
    """

    def __init__(self, vocab_size: int, genotype: Any = None, cell: Optional[nn.Module] = None,
                 emsize: int = 850, nhid: int = 850, dropout: float = 0.75, dropout_h: float = 0.25,
                 dropout_x: float = 0.75, dropout_i: float = 0.2, dropout_e: float = 0.1):
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, low=2)
        emsize = check_int("emsize", emsize, low=1)
        nhid = check_int("nhid", nhid, low=1)
        if emsize != nhid:
            raise ValueError(f"the decoder is tied to the embedding, so emsize must equal nhid: got emsize={emsize}, "
                             f"nhid={nhid}")
        if (genotype is None) == (cell is None):
            raise ValueError("RecurrentLM needs exactly one of genotype= (a fixed cell) and cell= (a module), got "
                             f"{'both' if cell is not None else 'neither'}")
        self.nhid = nhid
        self.dropout = check_dropout("dropout", dropout)
        self.dropout_i = check_dropout("dropout_i", dropout_i)
        self.dropout_e = check_dropout("dropout_e", dropout_e)
        self.encoder = nn.Embedding(vocab_size, emsize)
        self.cell = cell if cell is not None else DartsRecurrentCell(emsize, nhid, genotype, dropout_h, dropout_x)
        self.decoder = nn.Linear(nhid, vocab_size)
        self.decoder.weight = self.encoder.weight  # tied (Press & Wolf 2017; Inan et al. 2017)
        nn.init.uniform_(self.encoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch_size: int) -> Tensor:
        """The zero state for ``batch_size`` sequences: (B, cell.state_size), ``nhid`` unless the cell
        carries more (the NAS-RL cell's [h, c])."""
        return self.encoder.weight.new_zeros(batch_size, getattr(self.cell, "state_size", self.nhid))

    def forward(self, tokens: Tensor, hidden: Optional[Tensor] = None) -> LMOutput:
        """``tokens`` (T, B) word ids; ``hidden`` (B, nhid) or None (zeros)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (time, batch) word ids, got shape {tuple(tokens.shape)}")
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        emb = embedded_dropout(self.encoder.weight, tokens, self.dropout_e, self.training)  # (T, B, emsize)
        emb = locked_dropout(emb, self.dropout_i, self.training)
        raw_output, hidden = self.cell(emb, hidden)  # (T, B, nhid), (B, nhid)
        output = locked_dropout(raw_output, self.dropout, self.training)
        return LMOutput(self.decoder(output), hidden, raw_output, output)


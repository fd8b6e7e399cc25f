"""Train a recurrent cell's language model from scratch as DARTS and ENAS do on Penn Treebank.

Liu, Simonyan & Yang, "DARTS", ICLR 2019, Sec. 3.2 / A.2.2 and the authors' ``rnn/train.py``,
which follow AWD-LSTM (Merity, Keskar & Socher, ICLR 2018): a single-layer
:class:`~lit_automl.spaces.recurrent.RecurrentLM` (emsize = nhid = 850), SGD at learning rate 20
without momentum, weight decay 8e-7, gradient-norm clipping at 0.25, the learning rate scaled by
``seq_len / bptt`` for each variable-length window (the datamodule's ``lr_scale``), temporal
activation regularisation (TAR, ``beta = 1e-3``; AR ``alpha = 0``), batch size 64, BPTT 35; after
the non-monotone trigger (nonmono = 5) the iterates are averaged and validation runs on the
average (:class:`~lit_automl.callbacks.NTASGD`, added by :meth:`configure_callbacks`). The hidden
state is carried from window to window (detached) and starts from zeros at each epoch.

The protocol (hidden state, AR/TAR, the per-window SGD step, token-weighted rank-reduced evaluation,
RNG checkpointing, vocabulary from the datamodule) is :class:`~lit_automl.nas.lm_training.LMTraining`,
shared with the DARTS recurrent search (:mod:`lit_automl.nas.darts_rnn`).

Metrics: ``train/loss`` (token NLL), ``val/loss`` and ``val/ppl`` (token-weighted over the whole
split, summed over DDP ranks), ``test/loss`` and ``test/ppl``. The DARTS_V2 cell at this size has
23M parameters and reaches 55.7 test perplexity after 8,000 epochs (Table 2).

Typical use::

    data = PTBDataModule("data/ptb", variable_length=True)
    model = RetrainRNN("DARTS_V2")          # vocab_size read from the datamodule
    pl.Trainer(max_epochs=8000).fit(model, datamodule=data)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor

from lit_automl._checks import check_int, check_real
from lit_automl.callbacks.nt_asgd import NTASGD
from lit_automl.nas.lm_training import LMTraining, carried
from lit_automl.spaces.recurrent_cells import recurrent_cell_module, recurrent_cell_text, resolve_recurrent_cell
from lit_automl.spaces.recurrent import RecurrentLM

__all__ = ["RetrainRNN"]


class RetrainRNN(LMTraining):
    """A recurrent genotype's language model trained with the DARTS / AWD-LSTM protocol (module docstring).

    Args:
        genotype: the cell (:func:`~lit_automl.spaces.recurrent_cells.resolve_recurrent_cell`): a published
            DARTS cell name (``"DARTS_V2"``), its text form, a genotype file or a :class:`RecurrentGenotype`;
            an ENAS cell, e.g. the ``architecture.json`` an :class:`~lit_automl.nas.ENASRecurrent` search
            writes (built with only the child's matrices); or a NAS-RL tree cell (``{"base", "tokens"}``
            record; no dropout inside the cell: ``dropout_h = dropout_x = 0``). The hyperparameters keep
            the resolved text form (JSON for ENAS and NAS-RL cells).
        vocab_size: words in the vocabulary; ``None`` reads the datamodule's ``vocab_size`` at setup
            (a given value must agree with it).
        emsize, nhid, dropout, dropout_h, dropout_x, dropout_i, dropout_e: the model's
            (:class:`RecurrentLM`; DARTS final training: 850, 850, 0.75, 0.25, 0.75, 0.2, 0.1).
        lr: SGD learning rate (20), scaled per window by the batch's ``lr_scale``.
        weight_decay: SGD weight decay (8e-7).
        clip: gradient-norm clipping (0.25).
        alpha, beta: activation regularisation (AR, on the dropped output) and temporal activation
            regularisation (TAR, on the raw output) weights (0 and 1e-3).
        nonmono: the averaging trigger's patience (5); ``None`` trains with plain SGD throughout.
    """

    def __init__(self, genotype: Any = "DARTS_V2", vocab_size: Optional[int] = None, emsize: int = 850,
                 nhid: int = 850, dropout: float = 0.75, dropout_h: float = 0.25, dropout_x: float = 0.75,
                 dropout_i: float = 0.2, dropout_e: float = 0.1, lr: float = 20.0, weight_decay: float = 8e-7,
                 clip: float = 0.25, alpha: float = 0.0, beta: float = 1e-3, nonmono: Optional[int] = 5):
        super().__init__()
        cell = resolve_recurrent_cell(genotype)
        check_int("vocab_size", vocab_size, low=2, allow_none=True)
        check_real("lr", lr, low=0, low_open=True)
        check_real("weight_decay", weight_decay, low=0)
        check_real("clip", clip, low=0, low_open=True)
        check_real("alpha", alpha, low=0)
        check_real("beta", beta, low=0)
        check_int("nonmono", nonmono, low=0, allow_none=True)
        self.save_hyperparameters(ignore=["genotype"])
        self.hparams["genotype"] = recurrent_cell_text(cell)
        self.genotype = cell
        if vocab_size is not None:
            self.model = self.build_model(vocab_size)

    def build_model(self, vocab_size: int) -> RecurrentLM:
        hp = self.hparams
        module = recurrent_cell_module(self.genotype, hp.emsize, hp.nhid, hp.dropout_h, hp.dropout_x)
        cells = {"genotype": self.genotype} if module is None else {"cell": module}
        return RecurrentLM(vocab_size, **cells, emsize=hp.emsize, nhid=hp.nhid, dropout=hp.dropout,
                           dropout_h=hp.dropout_h, dropout_x=hp.dropout_x, dropout_i=hp.dropout_i,
                           dropout_e=hp.dropout_e)

    def configure_callbacks(self) -> Sequence[pl.Callback]:
        nonmono = self.hparams.nonmono
        return [] if nonmono is None else [NTASGD(monitor="val/loss", nonmono=nonmono)]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        data, target, lr_scale = batch["data"], batch["target"], float(batch["lr_scale"])
        out = self.model(data, carried(self._hidden, data.shape[1]))
        loss, nll = self.lm_loss(out, target)
        self._hidden = out.hidden.detach()
        self.sgd_step(self.optimizers(), loss, lr_scale)
        self.log("train/loss", nll.detach(), prog_bar=True, batch_size=target.numel())
        return nll.detach()

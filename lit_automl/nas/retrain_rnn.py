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

Metrics: ``train/loss`` (token NLL), ``val/loss`` and ``val/ppl`` (token-weighted over the whole
split, summed over DDP ranks), ``test/loss`` and ``test/ppl``. The DARTS_V2 cell at this size has
23M parameters and reaches 55.7 test perplexity after 8,000 epochs (Table 2).

Typical use::

    data = PTBDataModule("data/ptb", variable_length=True)
    model = RetrainRNN("DARTS_V2")          # vocab_size read from the datamodule
    pl.Trainer(max_epochs=8000).fit(model, datamodule=data)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_automl._checks import check_int, check_real
from lit_automl.callbacks.nt_asgd import NTASGD
from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.published import resolve_recurrent_genotype
from lit_automl.spaces.recurrent import RecurrentLM
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype

__all__ = ["RetrainRNN"]


class RetrainRNN(pl.LightningModule):
    """A recurrent genotype's language model trained with the DARTS / AWD-LSTM protocol (module docstring).

    Args:
        genotype: a published recurrent cell name (``"DARTS_V2"``), its text form, a genotype file
            or a :class:`RecurrentGenotype`; the hyperparameters keep the resolved text form.
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
        cell: RecurrentGenotype = resolve_recurrent_genotype(genotype)
        check_int("vocab_size", vocab_size, low=2, allow_none=True)
        check_real("lr", lr, low=0, low_open=True)
        check_real("weight_decay", weight_decay, low=0)
        check_real("clip", clip, low=0, low_open=True)
        check_real("alpha", alpha, low=0)
        check_real("beta", beta, low=0)
        check_int("nonmono", nonmono, low=0, allow_none=True)
        self.save_hyperparameters(ignore=["genotype"])
        self.hparams["genotype"] = str(cell)
        self.genotype = cell
        self.automatic_optimization = False
        self.model: Optional[RecurrentLM] = None
        if vocab_size is not None:
            self.model = self._build(vocab_size)
        self._hidden: Optional[Tensor] = None  # carried from window to window
        self._train_hidden: Optional[Tensor] = None  # the training state, kept aside while validation runs
        self._eval_sums: List[Tensor] = []

    def _build(self, vocab_size: int) -> RecurrentLM:
        hp = self.hparams
        return RecurrentLM(vocab_size, self.genotype, emsize=hp.emsize, nhid=hp.nhid, dropout=hp.dropout,
                           dropout_h=hp.dropout_h, dropout_x=hp.dropout_x, dropout_i=hp.dropout_i,
                           dropout_e=hp.dropout_e)

    def setup(self, stage: str) -> None:
        """Build the model for the datamodule's vocabulary (or check the given size against it)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        declared = getattr(datamodule, "vocab_size", None)
        if self.model is None:
            if declared is None:
                raise ValueError("RetrainRNN needs vocab_size=... or a datamodule with a vocab_size attribute "
                                 f"(got {type(datamodule).__name__ if datamodule is not None else 'no datamodule'})")
            self.hparams["vocab_size"] = int(declared)
            self.model = self._build(int(declared))
        elif declared is not None and declared != self.model.vocab_size:
            raise ValueError(f"RetrainRNN was built with vocab_size={self.model.vocab_size} but the datamodule "
                             f"{type(datamodule).__name__} has vocab_size={declared}: set vocab_size={declared} "
                             "or leave it None")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)  # dropout masks: a resumed run draws what an uninterrupted one would

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)

    def configure_callbacks(self) -> Sequence[pl.Callback]:
        nonmono = self.hparams.nonmono
        return [] if nonmono is None else [NTASGD(monitor="val/loss", nonmono=nonmono)]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def forward(self, tokens: Tensor, hidden: Optional[Tensor] = None):
        return self.model(tokens, hidden)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._hidden = None  # zeros at each epoch, as awd-lstm's train() starts

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        data, target, lr_scale = batch["data"], batch["target"], float(batch["lr_scale"])
        hidden = None if self._hidden is None or self._hidden.shape[0] != data.shape[1] else self._hidden.detach()
        out = self.model(data, hidden)
        nll = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), target.reshape(-1))
        loss = nll
        if self.hparams.alpha:
            loss = loss + self.hparams.alpha * out.output.pow(2).mean()
        if self.hparams.beta and len(out.raw_output) > 1:
            loss = loss + self.hparams.beta * (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
        self._hidden = out.hidden.detach()

        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        for group in optimizer.param_groups:  # this window's learning rate: lr * seq_len / bptt
            group["lr"] = self.hparams.lr * lr_scale
        optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] = self.hparams.lr
        self.log("train/loss", nll.detach(), prog_bar=True, batch_size=target.numel())
        return nll.detach()

    # ------------------------------------------------------------------ evaluation
    def _evaluation_start(self) -> None:
        self._hidden = None
        self._eval_sums = []

    def _evaluation_step(self, batch: Any) -> None:
        data, target = batch["data"], batch["target"]
        hidden = None if self._hidden is None or self._hidden.shape[0] != data.shape[1] else self._hidden
        out = self.model(data, hidden)
        self._hidden = out.hidden
        nll_sum = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), target.reshape(-1), reduction="sum")
        self._eval_sums.append(torch.stack([nll_sum.detach().double(), torch.tensor(float(target.numel()),
                                                                                   dtype=torch.float64,
                                                                                   device=nll_sum.device)]))

    def _evaluation_end(self, stage: str) -> None:
        sums = torch.stack(self._eval_sums).sum(0) if self._eval_sums else torch.zeros(2, dtype=torch.float64,
                                                                                         device=self.device)
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")  # token-weighted over every rank's columns
        mean_nll = (sums[0] / sums[1].clamp_min(1)).float()
        self.log(f"{stage}/loss", mean_nll, prog_bar=stage == "val", sync_dist=False)
        self.log(f"{stage}/ppl", mean_nll.exp(), prog_bar=stage == "val", sync_dist=False)
        self._eval_sums = []

    def on_validation_epoch_start(self) -> None:
        self._train_hidden = self._hidden
        self._evaluation_start()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluation_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._evaluation_end("val")
        self._hidden = self._train_hidden

    def on_test_epoch_start(self) -> None:
        self._evaluation_start()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluation_step(batch)

    def on_test_epoch_end(self) -> None:
        self._evaluation_end("test")

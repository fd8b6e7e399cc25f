"""The Penn Treebank language-model protocol shared by recurrent-cell training and search.

AWD-LSTM (Merity, Keskar & Socher, ICLR 2018) as DARTS uses it for both its recurrent search
(``rnn/train_search.py``) and final training (``rnn/train.py``): the hidden state carried from window
to window (detached) and reset to zeros at each epoch; the loss the token NLL plus activation
regularisation (AR, ``alpha * mean(output^2)`` on the dropped output) and temporal activation
regularisation (TAR, ``beta * mean((h_t - h_{t-1})^2)`` on the raw output); one SGD step per window at
``lr * lr_scale`` (``seq_len / bptt``) after clipping the gradient norm; validation and test NLL
token-weighted over the whole split and summed over DDP ranks, perplexity its exponential; the RNG
states checkpointed so that a resumed run draws the dropout masks an uninterrupted one would; the
vocabulary size read from the datamodule.

:class:`LMTraining` holds these; a subclass builds its :class:`~lit_automl.spaces.recurrent.RecurrentLM`
(:meth:`LMTraining.build_model`) and writes its own ``training_step``. Hyperparameters it reads from
``self.hparams``: ``lr``, ``clip``, ``alpha``, ``beta`` (and ``vocab_size``, which it fills in).
"""

from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.recurrent import LMOutput, RecurrentLM

__all__ = ["LMTraining", "carried"]


def carried(hidden: Optional[Tensor], batch_size: int) -> Optional[Tensor]:
    """The state to start a window of ``batch_size`` columns from: ``hidden`` detached, or ``None`` (zeros)
    when there is none or it has another number of columns."""
    return None if hidden is None or hidden.shape[0] != batch_size else hidden.detach()


class LMTraining(pl.LightningModule, abc.ABC):
    """Manual-optimisation base of the recurrent language-model modules (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model: Optional[RecurrentLM] = None
        self._hidden: Optional[Tensor] = None  # the training stream's state, carried from window to window
        self._train_hidden: Optional[Tensor] = None  # the training state, kept aside while validation runs
        self._eval_sums: List[Tensor] = []

    @abc.abstractmethod
    def build_model(self, vocab_size: int) -> RecurrentLM:
        """The language model for a vocabulary of ``vocab_size`` words."""

    def setup(self, stage: str) -> None:
        """Build the model for the datamodule's vocabulary (or check the given size against it)."""
        name = type(self).__name__
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        declared = getattr(datamodule, "vocab_size", None)
        if self.model is None:
            if declared is None:
                raise ValueError(f"{name} needs vocab_size=... or a datamodule with a vocab_size attribute "
                                 f"(got {type(datamodule).__name__ if datamodule is not None else 'no datamodule'})")
            self.hparams["vocab_size"] = int(declared)
            self.model = self.build_model(int(declared))
        elif declared is not None and declared != self.model.vocab_size:
            raise ValueError(f"{name} was built with vocab_size={self.model.vocab_size} but the datamodule "
                             f"{type(datamodule).__name__} has vocab_size={declared}: set vocab_size={declared} "
                             "or leave it None")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)  # dropout masks: a resumed run draws what an uninterrupted one would

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)

    def forward(self, tokens: Tensor, hidden: Optional[Tensor] = None) -> LMOutput:
        return self.model(tokens, hidden)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._hidden = None  # zeros at each epoch, as awd-lstm's train() starts

    def lm_loss(self, out: LMOutput, target: Tensor) -> Tuple[Tensor, Tensor]:
        """``(loss, nll)``: the token NLL of ``out.logits`` (T, B, vocab) against ``target`` (T, B), and
        the training loss, that NLL plus AR (``hparams.alpha``) and TAR (``hparams.beta``)."""
        nll = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), target.reshape(-1))
        loss = nll
        if self.hparams.alpha:
            loss = loss + self.hparams.alpha * out.output.pow(2).mean()
        if self.hparams.beta and len(out.raw_output) > 1:
            loss = loss + self.hparams.beta * (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
        return loss, nll

    def sgd_step(self, optimizer: Any, loss: Tensor, lr_scale: float) -> None:
        """Backward ``loss``, clip the optimiser's gradient norm to ``hparams.clip`` and step at
        ``hparams.lr * lr_scale`` (this window's learning rate), restoring ``hparams.lr`` after."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.clip, gradient_clip_algorithm="norm")
        for group in optimizer.param_groups:  # this window's learning rate: lr * seq_len / bptt
            group["lr"] = self.hparams.lr * lr_scale
        optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] = self.hparams.lr

    # ------------------------------------------------------------------ evaluation
    def _evaluation_start(self) -> None:
        self._hidden = None
        self._eval_sums = []

    def _evaluation_step(self, batch: Any) -> None:
        data, target = batch["data"], batch["target"]
        out = self(data, carried(self._hidden, data.shape[1]))
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

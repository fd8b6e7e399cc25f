"""ENAS recurrent-cell search on Penn Treebank (Pham et al., ICML 2018, Sec. 2.1 and 3.1).

The method is :mod:`lit_automl.nas.enas`'s, with a language model as the supernet: a
:class:`~lit_automl.spaces.recurrent.RecurrentLM` whose cell is the shared-weight
:class:`~lit_automl.spaces.enas_rnn.ENASRecurrentCell`. Per training step (paired windows from
``PTBDataModule(search=True)``):

* phase 1 (omega): a fresh child for the training window, one SGD step at ``lr * lr_scale`` (the window's
  ``seq_len / bptt``) after clipping the gradient norm, the hidden state carried from window to window;
* phase 2 (controller): a child scored on the paired validation window by the reward ``c / ppl``
  (``c = reward_constant = 80``, Sec. 3.1), with dropout off and the validation stream's own carried
  hidden state; REINFORCE every ``num_aggregate`` samples (:class:`~lit_automl.nas.enas_policy.ENASPolicyMixin`).

Defaults: controller temperature 5.0 and tanh constant 2.5 (paper Sec. 3.1 and ``ptb_search.sh``),
entropy weight 1e-3 and ``num_aggregate`` 10 (``ptb_search.sh``), controller LSTM 100 units and Adam 3.5e-4
(paper; the script: 64 units, 1e-3), baseline decay 0.99 (``main.py``). The child: 12 nodes, emsize = nhid
= 720 and the dropouts of ``ptb_search.sh`` (keep probabilities e 0.75, x 0.25, h 0.75, o 0.25: embedding
0.25, cell input 0.75, hidden 0.25, output 0.75; no input dropout), l2 1e-7, learning-rate decay 0.95 per
epoch from epoch 12 (the script's ``lr_dec_start`` / ``lr_dec_rate``). Learning rate 20 with gradient clip
0.25 is ours, this library's AWD-LSTM protocol on the per-token mean loss (:mod:`lit_automl.nas.lm_training`);
the script's ``child_lr=0.25`` with ``grad_bound=10`` goes with its own loss scaling, which we did not
reproduce. No AR/TAR by default (the ENAS child has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from lit_automl._checks import ArgumentTypeError, check_int, check_real
from lit_automl.distributed import all_reduce_mean, require_find_unused_parameters
from lit_automl.nas.enas_policy import OMEGA, ENASPolicyMixin
from lit_automl.nas.lm_training import LMTraining, carried
from lit_automl.nonfinite import check_finite_losses
from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.decisions import ActionSeq
from lit_automl.spaces.enas_rnn import ENASRecurrentSpace
from lit_automl.spaces.recurrent import RecurrentLM

__all__ = ["ENASRecurrent", "ENAS_RNN_DEFAULTS"]

ENAS_RNN_DEFAULTS: Dict[str, Any] = {"temperature": 5.0, "tanh_constant": 2.5, "op_tanh_reduce": 1.0,
                                     "entropy_weight": 1e-3, "num_aggregate": 10, "skip_weight": 0.0}
"""The recurrent search's policy settings left at ``None`` (paper Sec. 3.1; ``ptb_search.sh``)."""


class ENASRecurrent(ENASPolicyMixin, LMTraining):
    """ENAS search of a recurrent cell on Penn Treebank (module docstring).

    Batches: ``{"train": LMBatch, "val": LMBatch}`` (``PTBDataModule(search=True)``). Optimisers:
    ``[omega SGD, controller Adam]``; manual optimisation. Under DDP use
    ``strategy="ddp_find_unused_parameters_true"`` (a child uses a few of the shared matrices).

    Args:
        space: :class:`~lit_automl.spaces.ENASRecurrentSpace`.
        vocab_size: ``None`` reads the datamodule's.
        emsize, nhid, dropout, dropout_h, dropout_x, dropout_i, dropout_e: the language model's.
        lr, weight_decay, clip: omega's SGD (per window ``lr * lr_scale``), gradient-norm clip.
        lr_decay, lr_decay_start: the learning rate is multiplied by ``lr_decay`` per epoch from epoch
            ``lr_decay_start`` on.
        alpha, beta: AR and TAR weights (0: off).
        reward_constant: ``c`` of the reward ``c / ppl``.
        controller_* , temperature, tanh_constant, entropy_weight, baseline_decay, num_aggregate,
            derive_samples, seed: the controller phase (:class:`~lit_automl.nas.enas.ENAS`).
    """

    def __init__(
        self,
        space: ENASRecurrentSpace,
        vocab_size: Optional[int] = None,
        emsize: int = 720,
        nhid: int = 720,
        dropout: float = 0.75,
        dropout_h: float = 0.25,
        dropout_x: float = 0.75,
        dropout_i: float = 0.0,
        dropout_e: float = 0.25,
        lr: float = 20.0,
        weight_decay: float = 1e-7,
        clip: float = 0.25,
        lr_decay: float = 0.95,
        lr_decay_start: int = 12,
        alpha: float = 0.0,
        beta: float = 0.0,
        reward_constant: float = 80.0,
        controller_hidden: int = 100,
        controller_layers: int = 1,
        controller_lr: float = 3.5e-4,
        controller_betas: Tuple[float, float] = (0.0, 0.999),
        controller_eps: float = 1e-3,
        controller_init_range: float = 0.1,
        temperature: Optional[float] = None,
        tanh_constant: Optional[float] = None,
        entropy_weight: Optional[float] = None,
        baseline_decay: float = 0.99,
        num_aggregate: Optional[int] = None,
        derive_samples: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(space, ENASRecurrentSpace):
            raise ArgumentTypeError(f"space must be an ENASRecurrentSpace (lit_automl.spaces), got "
                                    f"{type(space).__name__}: {space!r} (the CNN spaces are searched by "
                                    "lit_automl.nas.ENAS)")
        check_int("vocab_size", vocab_size, low=2, allow_none=True)
        check_real("lr", lr, low=0, low_open=True)
        check_real("weight_decay", weight_decay, low=0)
        check_real("clip", clip, low=0, low_open=True)
        check_real("lr_decay", lr_decay, low=0, high=1, low_open=True)
        check_int("lr_decay_start", lr_decay_start, low=0)
        check_real("alpha", alpha, low=0)
        check_real("beta", beta, low=0)
        check_real("reward_constant", reward_constant, low=0, low_open=True)
        self.save_hyperparameters(ignore=["space"])
        given = {"temperature": temperature, "tanh_constant": tanh_constant, "entropy_weight": entropy_weight,
                 "num_aggregate": num_aggregate}
        self.init_policy(space, ENAS_RNN_DEFAULTS, given, controller_hidden=controller_hidden,
                         controller_layers=controller_layers, controller_init_range=controller_init_range,
                         baseline_decay=baseline_decay, skip_target=0.5, derive_samples=derive_samples, seed=seed,
                         controller_lr=controller_lr, controller_betas=controller_betas, controller_eps=controller_eps)
        self._val_hidden: Optional[Tensor] = None  # the controller's validation stream, carried from window to window
        self._scored_hidden: Optional[Tensor] = None
        if vocab_size is not None:
            self.model = self.build_model(vocab_size)

    def build_model(self, vocab_size: int) -> RecurrentLM:
        hp = self.hparams
        cell = self.space.supernet_cell(hp.emsize, hp.nhid, hp.dropout_h, hp.dropout_x)
        return RecurrentLM(vocab_size, cell=cell, emsize=hp.emsize, nhid=hp.nhid, dropout=hp.dropout,
                           dropout_h=hp.dropout_h, dropout_x=hp.dropout_x, dropout_i=hp.dropout_i,
                           dropout_e=hp.dropout_e)

    # ------------------------------------------------------------------ children

    def run_child(self, tokens: ActionSeq, data: Tensor, hidden: Optional[Tensor]):
        """The language model's output for ``data`` with the child ``tokens`` as its cell."""
        self.model.cell.architecture = self.space.decode(tokens)
        return self.model(data, carried(hidden, data.shape[1]))

    def score(self, tokens: ActionSeq, batch: Dict[str, Any]) -> Tensor:
        """``c / ppl`` of the child on one validation window, dropout off, from the validation stream's carried
        state (which this does not advance), averaged over DDP ranks."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.run_child(tokens, batch["data"], self._val_hidden)
                nll = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), batch["target"].reshape(-1))
                reward = self.hparams.reward_constant / nll.exp()
        finally:
            self.model.train(was_training)
        self._scored_hidden = out.hidden
        return all_reduce_mean([reward])[0]

    def lr_factor(self) -> float:
        """The per-epoch decay: ``lr_decay ** (epoch - lr_decay_start + 1)`` from ``lr_decay_start`` on."""
        hp = self.hparams
        return hp.lr_decay ** max(0, self.current_epoch - hp.lr_decay_start + 1)

    # ------------------------------------------------------------------ the step

    def split_batch(self, batch: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        if (not isinstance(batch, dict) or set(batch) != {"train", "val"}
                or any(not isinstance(batch[k], dict) or "data" not in batch[k] for k in ("train", "val"))):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise TypeError("ENASRecurrent expects paired windows {'train': LMBatch, 'val': LMBatch} "
                            f"(PTBDataModule(search=True)); got {got}")
        return batch["train"], batch["val"]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._val_hidden = None

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        train, val = self.split_batch(batch)
        w_opt, c_opt = self.optimizers()

        # Phase 1: omega, the controller fixed, a fresh child for this window.
        tokens = self.sample_children(1, self.search_steps, OMEGA)[0][0]
        out = self.run_child(tokens, train["data"], self._hidden)
        loss, nll = self.lm_loss(out, train["target"])
        check_finite_losses(f"ENASRecurrent: the shared weights diverged at epoch {self.current_epoch}, batch "
                            f"{batch_idx}", {"training loss": loss},
                            f"lower lr={self.hparams.lr} or clip={self.hparams.clip}")
        self._hidden = out.hidden.detach()
        self.sgd_step(w_opt, loss, float(train["lr_scale"]) * self.lr_factor())

        # Phase 2: the controller, omega fixed: one child scored on the paired validation window.
        metrics = {"train/loss": nll.detach(), **self.controller_sample(val, c_opt)}
        self._val_hidden = self._scored_hidden
        self.remember_val(val, val["target"].numel())
        self.search_steps += 1
        self.log_search_metrics(metrics, train["target"].numel())
        return nll.detach()

    def on_train_epoch_end(self) -> None:
        self.derive_at_epoch_end(self._last_val)  # PTB windows have no length: the epoch end derives
        self.log("search/lr", self.hparams.lr * self.lr_factor())

    def on_validation_epoch_start(self) -> None:
        """Validation and test score the derived child."""
        self.model.cell.architecture = self.best_architecture
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self.model.cell.architecture = self.best_architecture
        super().on_test_epoch_start()

    def on_train_end(self) -> None:
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # a collective under DDP: every rank
        if self.trainer.is_global_zero:
            written = self.write_architecture(folder)
            score = "not derived yet" if self.best_score is None else f"reward {self.best_score:.4f}"
            rank_zero_info(f"ENASRecurrent: derived cell (best of {self.hparams.derive_samples}, {score}) written to "
                           f"{folder} ({', '.join(written)}): {self.space.to_json(self.best_architecture)['nodes']}")

    # ------------------------------------------------------------------ Lightning plumbing

    def configure_optimizers(self):
        """``[omega SGD (no momentum), controller Adam]``."""
        w_opt = torch.optim.SGD(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return [w_opt, self.controller_optimizer()]

    def on_fit_start(self) -> None:
        require_find_unused_parameters(self.trainer.strategy.model, f"{type(self).__name__} runs one child's ops "
                                       "per step, so parameters go unused")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)
        checkpoint["enas"] = self.policy_state()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, "ENASRecurrent")
        self.load_policy_state(checkpoint["enas"])

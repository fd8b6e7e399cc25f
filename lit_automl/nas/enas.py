"""ENAS: efficient neural architecture search by sharing weights between every sampled child.

Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018,
and the authors' code (``melodyguan/enas``: ``src/cifar10/main.py``, ``micro_controller.py``,
``general_controller.py``, ``scripts/cifar10_{micro,macro}_search.sh``, ``scripts/ptb_search.sh``).

Notation (Sec. 2.2): ``omega`` the shared weights of the supernet, ``theta`` the controller policy
``pi(m; theta)`` over children ``m``, ``R(m, omega)`` a child's reward on validation data.

* Phase 1 (omega): with ``theta`` fixed, sample a child ``m ~ pi`` per training batch and take an SGD
  step on its loss ``L_train(m; omega)`` (Sec. 2.2: "a fresh child per minibatch" is the Monte Carlo
  estimate of ``grad_omega E_m[L]`` with ``M = 1``).
* Phase 2 (theta): with ``omega`` fixed, sample ``m``, score it on ONE validation minibatch
  (accuracy for CNNs; ``c / perplexity`` for language models, ``c = 80``) and update ``theta`` with
  REINFORCE, an exponential-moving-average baseline, and the sample's entropy added to the reward
  (``R + w_H * H(pi)``, as the authors' ``build_trainer``).

The alternation: the authors train omega for one pass over the training data, then the controller
for ``controller_train_steps x num_aggregate`` = 300 (micro) samples, on CIFAR-10 about one sample per
omega step. This module interleaves the two phases step by step on paired batches
``{"train": ..., "val": ...}`` (:class:`~lit_automl.datamodules.BilevelDataModule`): each training step
is one omega step on the ``train`` half (controller fixed) followed by one controller sample scored on
the ``val`` half (omega fixed), and the controller is updated every ``num_aggregate`` samples (the
authors' ``num_aggregate``: the mean of that many REINFORCE gradients). The ratio of omega steps to
controller samples is the authors'; the phases alternate per step instead of per epoch.

Deriving (Sec. 2.2, "Deriving Architectures"): at the end of each epoch ``derive_samples`` children are
sampled, each scored on the same validation minibatch, and the best kept (:attr:`ENAS.best_architecture`;
``genotype()`` for the micro space). At fit end it is written to the run folder (``architecture.json``;
micro: ``genotype.txt/.json/.png`` as well).

Defaults, where the paper and the authors' code disagree (paper first):

* controller LSTM: 100 units, 1 layer (paper Sec. 3, "Training details"); the code builds 64 units
  (``main.py``: ``lstm_size=64, lstm_num_layers=1``). We follow the paper.
* controller Adam learning rate 3.5e-4 (paper); the scripts use 3.5e-3 (micro), 1e-3 (macro, PTB).
  We follow the paper. Adam's betas (0.0, 0.999) and eps 1e-3 are the code's (``utils.get_train_ops``;
  the paper does not give them). Uniform initialisation in [-0.1, 0.1] (paper and code).
* baseline decay: 0.99 (``main.py``'s ``controller_bl_dec`` flag, which every script runs with; the
  controller classes default to 0.999 and this library's REINFORCE to 0.95). The authors move the
  baseline after each sample before computing its advantage; we move it once per update with the mean
  of the ``num_aggregate`` rewards, after computing the advantages (:class:`~lit_automl.nas.Reinforce`).
* per-space sampling shape (code; the paper gives the PTB values, temperature 5 and tanh constant 2.5):
  micro tanh constant 1.1 with the op logits' constant divided by 2.5 (``op_tanh_reduce``), macro 1.5 for
  every decision (the scripts pass ``op_tanh_reduce=2.5``, but ``general_controller.py`` does not use it),
  recurrent temperature 5.0 and tanh constant 2.5; entropy weight 1e-4 (CNN) and 1e-3 (PTB);
  ``num_aggregate`` 10 (micro, PTB) and 20 (macro); macro skip-connection KL penalty toward a skip
  probability of 0.4 with weight 0.8 (Sec. 2.2; ``skip_target`` / ``skip_weight``).
* omega, CNN (paper Sec. 3.2; code scripts): SGD with Nesterov momentum 0.9, cosine schedule with
  warm restarts ``T_0 = 10``, ``T_mul = 2`` from 0.05 to 0.0005 (the scripts' ``lr_min``), l2 1e-4
  (micro; macro 2.5e-4), gradient-norm clip 5.

The controller is :class:`~lit_automl.nas.controller.Controller` (ENAS micro's input choices are its
categorical decisions, not the authors' attention pointer; see :mod:`lit_automl.spaces.enas_micro`);
its update is :class:`~lit_automl.nas.policy_gradient.Reinforce`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from lit_automl._checks import ArgumentTypeError, check_bool, check_int, check_real
from lit_automl.distributed import all_reduce_mean, require_find_unused_parameters
from lit_automl.nas.enas_policy import OMEGA, ENASPolicyMixin, skip_penalty
from lit_automl.nas.supernet import log_classification
from lit_automl.nonfinite import check_finite_losses
from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.decisions import ActionSeq, SequentialSpace
from lit_automl.spaces.enas_macro import ENASMacroSpace
from lit_automl.spaces.enas_micro import ENASMicroSpace
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.networks import batch_statistics

__all__ = ["ENAS", "ENAS_SPACE_DEFAULTS", "skip_penalty"]

ENAS_SPACE_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "micro": {"tanh_constant": 1.1, "op_tanh_reduce": 2.5, "temperature": None, "entropy_weight": 1e-4,
              "num_aggregate": 10, "skip_weight": 0.0, "w_weight_decay": 1e-4},
    "macro": {"tanh_constant": 1.5, "op_tanh_reduce": 1.0, "temperature": None, "entropy_weight": 1e-4,
              "num_aggregate": 20, "skip_weight": 0.8, "w_weight_decay": 2.5e-4},
}
"""Per-space defaults of the settings left at ``None`` (the authors' search scripts, see the module docstring)."""

SPACES = {ENASMicroSpace: "micro", ENASMacroSpace: "macro"}

Batch = Tuple[Tensor, Tensor]


def space_kind(space: Any) -> str:
    """``"micro"`` or ``"macro"`` for an ENAS CNN space; anything else is refused, naming what is allowed."""
    kind = SPACES.get(type(space))
    if kind is None:
        hint = " (the recurrent space is searched by lit_automl.nas.ENASRecurrent)" if "Recurrent" in type(space).__name__ else ""
        raise ArgumentTypeError(f"space must be one of {[cls.__name__ for cls in SPACES]} (lit_automl.spaces), "
                                f"got {type(space).__name__}: {space!r}{hint}")
    return kind


class ENAS(ENASPolicyMixin, pl.LightningModule):
    """ENAS search over a micro (cell) or macro (whole network) CNN space with shared weights
    (Pham et al., ICML 2018; see the module docstring for the method and where each default comes from).

    Batches: ``{"train": (x, y), "val": (x, y)}`` (``BilevelDataModule``). Optimisers, in this order:
    ``[omega SGD, controller Adam]``; optimisation is manual. Under DDP the children run only their ops,
    so parameters go unused in a step: use ``strategy="ddp_find_unused_parameters_true"``.

    Args:
        space: :class:`~lit_automl.spaces.ENASMicroSpace` or :class:`~lit_automl.spaces.ENASMacroSpace`
            (its size settings size the supernet).
        in_channels, num_classes: the data's.
        w_lr, w_lr_min, lr_T_0, lr_T_mul: omega's cosine schedule with warm restarts (per epoch).
        w_momentum, w_nesterov, w_weight_decay, grad_clip: omega's SGD (``w_weight_decay=None``: the space's).
        controller_hidden, controller_layers, controller_lr, controller_betas, controller_eps,
            controller_init_range: the controller LSTM and its Adam.
        temperature, tanh_constant, op_tanh_reduce: logit shaping (``None``: the space's default; pass
            ``0`` for ``temperature`` or ``tanh_constant`` to switch one off).
        entropy_weight: weight of the sample entropy added to the reward (``None``: the space's).
        baseline_decay: EMA decay of the reward baseline.
        num_aggregate: controller samples per controller update (``None``: the space's).
        skip_target, skip_weight: the macro space's skip-probability target and KL weight (0: off).
        keep_prob: keep probability of the dropout before the classifier (code: 0.9).
        derive_samples: children sampled and scored when deriving the architecture each epoch.
        seed: seeds every controller draw (identical on all DDP ranks and after a resume).
    """

    def __init__(
        self,
        space: SequentialSpace,
        in_channels: int = 3,
        num_classes: int = 10,
        w_lr: float = 0.05,
        w_lr_min: float = 0.0005,
        lr_T_0: int = 10,
        lr_T_mul: int = 2,
        w_momentum: float = 0.9,
        w_nesterov: bool = True,
        w_weight_decay: Optional[float] = None,
        grad_clip: float = 5.0,
        controller_hidden: int = 100,
        controller_layers: int = 1,
        controller_lr: float = 3.5e-4,
        controller_betas: Tuple[float, float] = (0.0, 0.999),
        controller_eps: float = 1e-3,
        controller_init_range: float = 0.1,
        temperature: Optional[float] = None,
        tanh_constant: Optional[float] = None,
        op_tanh_reduce: Optional[float] = None,
        entropy_weight: Optional[float] = None,
        baseline_decay: float = 0.99,
        num_aggregate: Optional[int] = None,
        skip_target: float = 0.4,
        skip_weight: Optional[float] = None,
        keep_prob: float = 0.9,
        derive_samples: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        kind = space_kind(space)
        defaults = ENAS_SPACE_DEFAULTS[kind]
        check_real("w_lr", w_lr, low=0, low_open=True)
        check_real("w_lr_min", w_lr_min, low=0, high=w_lr, allowed=f"in [0, w_lr={w_lr}]")
        self.w_weight_decay = check_real("w_weight_decay", defaults["w_weight_decay"] if w_weight_decay is None
                                         else w_weight_decay, low=0)
        check_real("grad_clip", grad_clip, low=0, hint="0 disables clipping")
        check_real("w_momentum", w_momentum, low=0, high=1, high_open=True)
        check_real("keep_prob", keep_prob, low=0, high=1, low_open=True)
        check_bool("w_nesterov", w_nesterov)
        check_int("lr_T_0", lr_T_0, low=1)
        check_int("lr_T_mul", lr_T_mul, low=1)
        self.save_hyperparameters(ignore=["space"])
        self.automatic_optimization = False
        self.kind = kind
        given = {"temperature": temperature, "tanh_constant": tanh_constant, "op_tanh_reduce": op_tanh_reduce,
                 "entropy_weight": entropy_weight, "num_aggregate": num_aggregate, "skip_weight": skip_weight}
        self.init_policy(space, defaults, given, controller_hidden=controller_hidden,
                         controller_layers=controller_layers, controller_init_range=controller_init_range,
                         baseline_decay=baseline_decay, skip_target=skip_target, derive_samples=derive_samples,
                         seed=seed, controller_lr=controller_lr, controller_betas=controller_betas,
                         controller_eps=controller_eps)
        self.model = space.supernet(in_channels, num_classes)
        if hasattr(self.model, "dropout"):
            self.model.dropout.p = 1.0 - keep_prob

    # ------------------------------------------------------------------ children

    def child_logits(self, x: Tensor, tokens: ActionSeq) -> Tensor:
        return self.model(x, self.space.decode(tokens))

    def score(self, tokens: ActionSeq, batch: Batch) -> Tensor:
        """A child's accuracy on one validation minibatch, with batch-norm batch statistics (running statistics
        untouched; the authors score in training mode) and no gradient, averaged over DDP ranks."""
        x, y = batch
        with torch.no_grad(), batch_statistics(self.model):
            acc = (self.child_logits(x, tokens).argmax(-1) == y).float().mean()
        return all_reduce_mean([acc])[0]

    def genotype(self) -> Genotype:
        """The derived micro cell (the best child of the last derivation; a fixed draw before the first)."""
        if self.kind != "micro":
            raise TypeError(f"genotype() is the micro space's cell; the {self.kind} space has best_architecture")
        return self.best_architecture

    # ------------------------------------------------------------------ the step

    def split_batch(self, batch: Any) -> Tuple[Batch, Batch]:
        if (not isinstance(batch, dict) or set(batch) != {"train", "val"}
                or any(not isinstance(batch[k], (tuple, list)) or len(batch[k]) != 2 for k in ("train", "val"))):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise TypeError(f"ENAS expects paired batches {{'train': (x, y), 'val': (x, y)}} (wrap the datamodule in "
                            f"lit_automl.datamodules.BilevelDataModule); got {got}")
        return tuple(batch["train"]), tuple(batch["val"])

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        train, val = self.split_batch(batch)
        w_opt, c_opt = self.optimizers()

        # Phase 1: omega, the controller fixed, a fresh child for this batch.
        tokens = self.sample_children(1, self.search_steps, OMEGA)[0][0]
        x, y = train
        logits = self.child_logits(x, tokens)
        loss = F.cross_entropy(logits, y)
        check_finite_losses(f"ENAS: the shared weights diverged at epoch {self.current_epoch}, batch {batch_idx}",
                            {"training loss": loss}, f"lower w_lr={self.hparams.w_lr} or grad_clip={self.hparams.grad_clip}")
        w_opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(w_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        w_opt.step()

        # Phase 2: the controller, omega fixed: one child scored on this step's validation minibatch.
        metrics = {"train/loss": loss.detach(), "train/acc": (logits.argmax(-1) == y).float().mean(),
                   **self.controller_sample(val, c_opt)}
        self.remember_val(val, len(val[1]))
        self.search_steps += 1
        self.log_search_metrics(metrics, len(y))
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.derive_for_epoch(self._last_val)
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        self.log("search/w_lr", sched.optimizer.param_groups[0]["lr"])
        sched.step()
        self.derive_at_epoch_end(self._last_val)

    def on_train_end(self) -> None:
        folder = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # a collective under DDP: every rank
        if not self.trainer.is_global_zero:
            return
        written = self.write_architecture(folder)
        if self.kind == "micro":
            from lit_automl.spaces.genotype_files import save_genotype_files

            written += [p.name for p in save_genotype_files(self.best_architecture, folder, title="ENAS micro")]
        score = "not derived yet" if self.best_score is None else f"score {self.best_score:.4f}"
        rank_zero_info(f"ENAS: derived architecture (best of {self.hparams.derive_samples}, {score}) written to "
                       f"{folder} ({', '.join(written)})")

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = batch
        log_classification(self, self.child_logits(x, self.best_architecture_tokens()), y, stage)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    # ------------------------------------------------------------------ Lightning plumbing

    def configure_optimizers(self):
        """``[omega SGD, controller Adam]`` and omega's cosine schedule with warm restarts (per epoch)."""
        hp = self.hparams
        w_opt = torch.optim.SGD(self.model.parameters(), lr=hp.w_lr, momentum=hp.w_momentum,
                                nesterov=hp.w_nesterov and hp.w_momentum > 0, weight_decay=self.w_weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(w_opt, T_0=hp.lr_T_0, T_mult=hp.lr_T_mul,
                                                                     eta_min=hp.w_lr_min)
        return [w_opt, self.controller_optimizer()], [{"scheduler": sched, "interval": "epoch"}]

    def on_fit_start(self) -> None:
        require_find_unused_parameters(self.trainer.strategy.model, f"{type(self).__name__} runs one child's ops "
                                       "per step, so parameters go unused")

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)
        checkpoint["enas"] = self.policy_state()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, "ENAS")
        self.load_policy_state(checkpoint["enas"])

"""Reptile: first-order meta-learning by moving the initialisation towards task solutions.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", arXiv:1803.02999, 2018.
For each task, ``k`` steps of SGD or Adam from ``theta`` give ``phi`` (the task's training data
in minibatches); the outer update is ``theta <- theta + epsilon * (phi - theta)`` for one task
(serial version, Alg. 1) or ``theta <- theta + epsilon * mean_i (phi_i - theta)`` over a meta-batch
(batched version, Alg. 2). It is applied as an outer SGD step with learning rate epsilon on the
"gradient" ``theta - phi``. epsilon is annealed linearly over meta-training (Sec. 6 / App. A).

Defaults are the paper's Omniglot setting (App. A, Table 3 / the transductive 5-way runs): inner
Adam with beta1 = 0 (Sec. 6: "we found that it is helpful to use Adam with beta1 = 0"), step size
1e-3, 5 inner iterations on minibatches of 10, outer step size 1.0 annealed linearly to 0, 50
inner iterations at evaluation. As in the authors' code, the inner Adam moments carry on from task
to task and across meta-steps (only the model weights are reset to theta for each task); they are
part of the checkpoint. Meta-training treats a task's support and query sets together as its
training data (Reptile has no query loss); evaluation adapts on the support set and scores the
query set.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real, check_sequence
from lit_automl.meta.base import Batch, MetaLearner
from lit_automl.meta.functional import InnerAdam, InnerOptimizer, InnerSGD, Params, inner_loop

__all__ = ["Reptile"]

MODES = ("batched", "serial")
INNER_OPTIMIZERS = ("adam", "sgd")


class Reptile(MetaLearner):
    """Reptile as a LightningModule (Nichol et al. 2018, Alg. 1 serial / Alg. 2 batched).

    Args:
        model: the network (e.g. :class:`~lit_automl.meta.models.ConvNet4`).
        loss: ``"cross_entropy"`` (default) or ``"mse"``.
        inner_optimizer: ``"adam"`` (with ``inner_betas``, beta1 = 0 in the paper) or ``"sgd"``.
        inner_lr: inner step size (1e-3).
        inner_betas: Adam's (beta1, beta2) for the inner loop ((0, 0.999)).
        inner_steps: k, inner iterations per task (5).
        inner_batch_size: samples per inner minibatch (10); the task's data is shuffled and cycled.
        eval_inner_steps: inner iterations at evaluation (50).
        outer_lr: epsilon at the start of meta-training (1.0).
        outer_lr_final: epsilon at the end, reached linearly (0.0).
        mode: ``"batched"`` (one outer step on the mean over the meta-batch) or ``"serial"`` (one
            outer step per task, in turn).
        adapt_norm: adapt normalisation parameters in the inner loop too (True: Reptile trains
            every weight on the task).
    """

    def __init__(self, model: nn.Module, loss: str = "cross_entropy", inner_optimizer: str = "adam",
                 inner_lr: float = 1e-3, inner_betas: Tuple[float, float] = (0.0, 0.999), inner_steps: int = 5,
                 inner_batch_size: int = 10, eval_inner_steps: int = 50, outer_lr: float = 1.0,
                 outer_lr_final: float = 0.0, mode: str = "batched", adapt_norm: bool = True) -> None:
        super().__init__(model, loss, inner_lr, inner_steps, eval_inner_steps, adapt_norm)
        check_choice("inner_optimizer", inner_optimizer, INNER_OPTIMIZERS)
        check_choice("mode", mode, MODES)
        outer_lr = check_real("outer_lr", outer_lr, low=0, low_open=True)
        check_int("inner_batch_size", inner_batch_size, low=1)
        check_real("outer_lr_final", outer_lr_final, low=0, high=outer_lr, hint="at most outer_lr")
        betas = check_sequence("inner_betas", inner_betas, lambda n, v: check_real(n, v, low=0, high=1, high_open=True),
                               allowed="numbers in [0, 1) (Adam's beta1, beta2)", min_len=2)
        if len(betas) != 2:
            raise ValueError(f"inner_betas must be a pair (beta1, beta2) of numbers in [0, 1), got {inner_betas!r}")
        if inner_optimizer == "sgd" and betas != (0.0, 0.999):
            raise ValueError(f"inner_betas are the inner Adam's: inner_optimizer='sgd' does not use them (leave them at "
                             f"(0.0, 0.999) or set inner_optimizer='adam'), got inner_betas={inner_betas!r}")
        self.save_hyperparameters(ignore=["model"])
        self._batch_size_reported = False  # an inner_batch_size larger than a task's data is said once
        self._update = self._make_inner_optimizer()
        self.inner_state: Optional[Params] = None  # Adam moments carried across tasks (None for SGD / before the first task)

    def _make_inner_optimizer(self) -> InnerOptimizer:
        hp = self.hparams
        if hp.inner_optimizer == "adam":
            return InnerAdam(hp.inner_lr, betas=tuple(hp.inner_betas))
        return InnerSGD(hp.inner_lr)

    def inner_optimizer(self) -> InnerOptimizer:
        return self._update

    def eval_inner_state(self) -> Optional[Params]:
        # Evaluation starts from a copy of the training moments and never writes them back.
        return None if self.inner_state is None else {k: v.clone() for k, v in self.inner_state.items()}

    def configure_optimizers(self) -> Dict[str, Any]:
        return torch.optim.SGD(self.meta_parameters(), lr=self.hparams.outer_lr)

    def outer_lr_now(self) -> float:
        """epsilon, linearly annealed from ``outer_lr`` to ``outer_lr_final`` over the run."""
        hp = self.hparams
        return hp.outer_lr + (hp.outer_lr_final - hp.outer_lr) * self.training_progress()

    # ------------------------------------------------------------------ one task
    def _minibatches(self, x: torch.Tensor, y: torch.Tensor) -> List[Batch]:
        """The task's data shuffled and cut into ``inner_batch_size`` minibatches (cycled by the inner loop)."""
        order = torch.randperm(x.shape[0], device=x.device)
        size = min(self.hparams.inner_batch_size, x.shape[0])
        if size < self.hparams.inner_batch_size and not self._batch_size_reported:
            self._batch_size_reported = True
            rank_zero_warn(f"Reptile: inner_batch_size={self.hparams.inner_batch_size} exceeds the {x.shape[0]} examples "
                           f"of a task (support and query together): each inner step uses all {x.shape[0]}")
        return [(x[idx], y[idx]) for idx in order.split(size) if len(idx) == size] or [(x[order], y[order])]

    def task_solution(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[Params, torch.Tensor]:
        """``(phi, mean inner loss)`` after ``inner_steps`` from theta on one task's data."""
        theta = self._detached_params()
        result = inner_loop(self.model, theta, dict(self.model.named_buffers()), self._minibatches(x, y),
                            self.loss_fn, steps=self.hparams.inner_steps, optimizer=self._update,
                            adapt=self.adapt_names, first_order=True, state=self.inner_state)
        if self.hparams.inner_optimizer == "adam":
            self.inner_state = {k: v.detach() for k, v in result.state.items()}
        return result.params, torch.stack(result.losses).mean()

    def meta_gradient(self, support: Batch, query: Batch) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
        """``theta - mean_i phi_i`` over this rank's tasks (the batched Reptile direction)."""
        names = [n for n, _ in self.model.named_parameters()]
        total = [torch.zeros_like(p) for p in self.meta_parameters()]
        losses = []
        tasks = support[0].shape[0]
        for t in range(tasks):
            x = torch.cat([support[0][t], query[0][t]])
            y = torch.cat([support[1][t], query[1][t]])
            phi, loss = self.task_solution(x, y)
            losses.append(loss)
            for acc, n, p in zip(total, names, self.meta_parameters()):
                acc += (p.detach() - phi[n]) / tasks
        return total, {"inner_loss": torch.stack(losses).mean()}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        support, query = self.split_batch(batch)
        lr = self.outer_lr_now()
        for group in self.optimizers().param_groups:
            group["lr"] = lr
        if self.hparams.mode == "batched":
            grads, metrics = self.meta_gradient(support, query)
            self.outer_step(grads)
        else:
            losses = []
            for t in range(support[0].shape[0]):
                one = lambda pair: (pair[0][t : t + 1], pair[1][t : t + 1])  # noqa: E731
                grads, m = self.meta_gradient(one(support), one(query))
                self.outer_step(grads)
                losses.append(m["inner_loss"])
            metrics = {"inner_loss": torch.stack(losses).mean()}
        self.log("train/outer_lr", lr)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, prog_bar=True, batch_size=support[0].shape[0])

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["reptile_inner_state"] = self.inner_state

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.inner_state = checkpoint.get("reptile_inner_state")

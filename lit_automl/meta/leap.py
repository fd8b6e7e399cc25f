"""LEAP: meta-learn an initialisation that shortens the gradient paths of task training.

Flennerhag, Moreno, Lawrence & Damianou, "Transferring Knowledge across Learning Processes",
ICLR 2019. Each task trains from ``psi`` (= theta here) by ``K`` steps of SGD, visiting
``theta^0 = psi, ..., theta^K``. On the task manifold the points are ``gamma^i = (theta^i,
f(theta^i))`` (the loss dimension included, the paper's default), and LEAP minimises the expected
gradient-path length ``d(psi) = sum_i ||gamma^{i+1} - gamma^i||_2`` (eq. 4).

With the paper's approximation (Sec. 3, eq. 7-8: the Jacobian of every point of the trajectory
w.r.t. psi taken as the identity, and the later point ``gamma^{i+1}`` held fixed as the target),
the meta-gradient of one task is

    grad_psi d = - sum_i [ Delta theta^i + Delta f^i * grad f(theta^i) ] / ||gamma^{i+1} - gamma^i||,
    Delta theta^i = theta^{i+1} - theta^i,   Delta f^i = f(theta^{i+1}) - f(theta^i),

averaged over the tasks of a meta-batch. The stabiliser (Sec. 3 / App. B: "mu") replaces
``Delta f^i`` by ``-|Delta f^i|`` so that a step that increased the loss still pulls psi towards
lower loss. ``norm=False`` gives the energy form (the squared-length objective, no division).

Defaults are the paper's Omniglot setting (Sec. 4.2 and the authors' script): task SGD with step
size 0.1 for 100 steps, meta-optimiser SGD with step size 0.1 (20 tasks per meta-batch is a data
setting). Meta-training takes a task's support and query sets together as its training data.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from lit_automl._checks import check_bool, check_choice, check_real
from lit_automl.meta.base import Batch, MetaLearner
from lit_automl.meta.functional import InnerLoopResult, Params, inner_loop

__all__ = ["Leap", "leap_task_gradient"]

META_OPTIMIZERS = ("sgd", "adam")


def leap_task_gradient(result: InnerLoopResult, norm: bool = True, loss: bool = True, stabilizer: bool = True) -> Params:
    """One task's LEAP meta-gradient from a recorded inner loop (``inner_loop(..., record=True)``).

    ``result.trajectory`` = theta^0..theta^K, ``result.grads`` = grad f(theta^0..K-1),
    ``result.losses`` + ``result.final_loss`` = f(theta^0..K).
    """
    points = result.trajectory
    values = [l.detach() for l in result.losses] + [result.final_loss.detach()]
    total = {n: torch.zeros_like(p) for n, p in points[0].items()}
    for i in range(len(points) - 1):
        d_theta = {n: points[i + 1][n] - points[i][n] for n in total}
        d_f = values[i + 1] - values[i]
        if stabilizer and d_f > 0:
            d_f = -d_f
        scale = torch.ones((), dtype=values[i].dtype)
        if norm:
            sq = sum((d * d).sum() for d in d_theta.values())
            if loss:
                sq = sq + d_f * d_f
            scale = sq.sqrt().clamp_min(1e-12)
        for n in total:
            step = -d_theta[n]
            if loss:
                step = step - d_f * result.grads[i][n]
            total[n] += step / scale
    return total


class Leap(MetaLearner):
    """LEAP as a LightningModule (Flennerhag et al., ICLR 2019, Alg. 1).

    Args:
        model: the network (e.g. :class:`~lit_automl.meta.models.ConvNet4`).
        loss: ``"cross_entropy"`` (default) or ``"mse"``.
        inner_lr: task SGD step size (0.1).
        inner_steps: K, task training steps during meta-training (100).
        eval_inner_steps: steps at evaluation and for :meth:`adapt` (100).
        meta_lr: outer step size (0.1).
        meta_optimizer: ``"sgd"`` (the paper's) or ``"adam"``.
        norm: gradient-path length (True, d_1) or energy (False, d_2).
        loss_in_manifold: include the loss dimension in the task manifold (True).
        stabilizer: use the stabiliser on the loss increments (True).
        adapt_norm: train normalisation parameters in the task loop too (True).
    """

    def __init__(self, model: nn.Module, loss: str = "cross_entropy", inner_lr: float = 0.1, inner_steps: int = 100,
                 eval_inner_steps: int = 100, meta_lr: float = 0.1, meta_optimizer: str = "sgd", norm: bool = True,
                 loss_in_manifold: bool = True, stabilizer: bool = True, adapt_norm: bool = True) -> None:
        super().__init__(model, loss, inner_lr, inner_steps, eval_inner_steps, adapt_norm)
        check_real("meta_lr", meta_lr, low=0, low_open=True)
        check_choice("meta_optimizer", meta_optimizer, META_OPTIMIZERS)
        for name, value in (("norm", norm), ("loss_in_manifold", loss_in_manifold), ("stabilizer", stabilizer)):
            check_bool(name, value)
        if not loss_in_manifold and not stabilizer:
            raise ValueError("stabilizer acts on the loss increments, which loss_in_manifold=False leaves out: "
                             "stabilizer=False is not used (leave it True or set loss_in_manifold=True)")
        self.save_hyperparameters(ignore=["model"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cls = torch.optim.SGD if self.hparams.meta_optimizer == "sgd" else torch.optim.Adam
        return cls(self.meta_parameters(), lr=self.hparams.meta_lr)

    def meta_gradient(self, support: Batch, query: Batch) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
        hp = self.hparams
        theta = self._detached_params()
        buffers = dict(self.model.named_buffers())
        tasks = support[0].shape[0]
        total = {n: torch.zeros_like(p) for n, p in theta.items()}
        first, last, length = [], [], []
        for t in range(tasks):
            x = torch.cat([support[0][t], query[0][t]])
            y = torch.cat([support[1][t], query[1][t]])
            result = inner_loop(self.model, theta, buffers, (x, y), self.loss_fn, steps=hp.inner_steps,
                                optimizer=self.inner_optimizer(), adapt=self.adapt_names, first_order=True, record=True)
            for n, g in leap_task_gradient(result, hp.norm, hp.loss_in_manifold, hp.stabilizer).items():
                total[n] += g / tasks
            first.append(result.losses[0])
            last.append(result.final_loss)
            length.append(path_length(result, hp.loss_in_manifold))
        metrics = {"task_loss_start": torch.stack(first).mean(), "task_loss_end": torch.stack(last).mean(),
                   "path_length": torch.stack(length).mean()}
        return [total[n] for n, _ in self.model.named_parameters()], metrics


def path_length(result: InnerLoopResult, loss: bool = True) -> torch.Tensor:
    """``sum_i ||gamma^{i+1} - gamma^i||`` of a recorded trajectory (what LEAP shortens)."""
    values = [l.detach() for l in result.losses] + [result.final_loss.detach()]
    total = torch.zeros(())
    for i in range(len(result.trajectory) - 1):
        sq = sum(((result.trajectory[i + 1][n] - p) ** 2).sum() for n, p in result.trajectory[i].items())
        if loss:
            sq = sq + (values[i + 1] - values[i]) ** 2
        total = total + sq.sqrt()
    return total

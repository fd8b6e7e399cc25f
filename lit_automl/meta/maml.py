"""MAML: model-agnostic meta-learning, second and first order.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017. Algorithm 2 (supervised): for each task T_i of a meta-batch, adapt
``phi_i = theta - alpha * grad_theta L_{T_i}^{support}(theta)`` (``inner_steps`` times), then update
``theta <- theta - beta * grad_theta sum_i L_{T_i}^{query}(phi_i)`` with Adam (Sec. 5). Second
order differentiates through the inner gradients; first order (FOMAML, Sec. 5.2) drops those
second derivatives, so the meta-gradient is the query gradient at the adapted parameters.

Defaults are the paper's sinusoid regression (Sec. 5.1): alpha = 0.01, one inner step, Adam with
beta = 1e-3, MSE loss, 25 tasks per meta-batch (a data setting). Omniglot settings are in
``recipes/maml_omniglot.yaml`` (5-way: alpha 0.4, 1 step, 32 tasks, 3 steps at test).
Batch normalisation: batch statistics at training and test time and batch-norm offsets learned
in the outer loop only, as in the authors' code (``adapt_norm=False``; the networks in
:mod:`lit_automl.meta.models` keep no running statistics).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torch.func import vmap

from lit_automl._checks import check_bool, check_choice, check_real
from lit_automl.meta.base import Batch, MetaLearner
from lit_automl.meta.functional import inner_loop

__all__ = ["MAML"]

TASK_BATCHING = ("auto", "vmap", "loop")


class MAML(MetaLearner):
    """MAML / FOMAML as a LightningModule (Finn et al., ICML 2017, Alg. 2).

    Args:
        model: the network (e.g. :class:`~lit_automl.meta.models.SinusoidMLP`, ``ConvNet4``).
        loss: ``"mse"`` (regression, the default) or ``"cross_entropy"``.
        inner_lr: alpha, the inner SGD step size (0.01).
        inner_steps: inner SGD steps during meta-training (1).
        eval_inner_steps: steps at validation / test and for :meth:`adapt` (the paper evaluates
            sinusoids after 1 and 10 steps; default 10).
        first_order: FOMAML when True.
        meta_lr: beta, the Adam step size of the outer loop (1e-3).
        task_batching: ``"vmap"`` processes a meta-batch's tasks together with ``torch.func.vmap``;
            ``"loop"`` one after another; ``"auto"`` uses vmap and switches to the loop, with a
            warning giving the reason, for a model that vmap cannot run. Both give the same
            gradients; which is faster depends on the device and model: on 2 CPU cores the loop is
            faster for the 4-conv model in most settings (vmapped convolutions become grouped
            ones), see ``benchmarks/meta_bench.py --parts speed``.
        adapt_norm: also adapt normalisation layers' parameters in the inner loop.
    """

    def __init__(self, model: nn.Module, loss: str = "mse", inner_lr: float = 0.01, inner_steps: int = 1,
                 eval_inner_steps: int = 10, first_order: bool = False, meta_lr: float = 1e-3,
                 task_batching: str = "auto", adapt_norm: bool = False) -> None:
        super().__init__(model, loss, inner_lr, inner_steps, eval_inner_steps, adapt_norm)
        check_real("meta_lr", meta_lr, low=0, low_open=True)
        self._batching = check_choice("task_batching", task_batching, TASK_BATCHING)
        check_bool("first_order", first_order)
        self.save_hyperparameters(ignore=["model"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.meta_parameters(), lr=self.hparams.meta_lr)

    # ------------------------------------------------------------------ the meta-objective
    def _query_loss(self, params: Dict[str, torch.Tensor], buffers: Dict[str, torch.Tensor],
                    xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor,
                    functional_grads: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """One task: adapt on ``(xs, ys)``, return ``(L_query(phi), query logits)``."""
        hp = self.hparams
        adapted = inner_loop(self.model, params, buffers, (xs, ys), self.loss_fn, steps=hp.inner_steps,
                             optimizer=self.inner_optimizer(), adapt=self.adapt_names,
                             first_order=hp.first_order, functional_grads=functional_grads).params
        logits = torch.func.functional_call(self.model, (adapted, buffers), (xq,))
        return self.loss_fn(logits, yq), logits

    def meta_objective(self, support: Batch, query: Batch) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mean over tasks of L_query(phi_i), query logits [T, n_query, ...])``, differentiable in theta."""
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        args = (support[0], support[1], query[0], query[1])
        if self._batching in ("vmap", "auto"):
            try:
                losses, logits = vmap(self._query_loss, in_dims=(None, None, 0, 0, 0, 0), randomness="different")(
                    params, buffers, *args)
                return losses.mean(), logits
            except (RuntimeError, NotImplementedError) as err:
                if self._batching == "vmap":
                    raise
                rank_zero_warn(f"MAML(task_batching='auto'): torch.func.vmap cannot run {type(self.model).__name__} "
                               f"({err}); processing tasks one after another from now on")
                self._batching = "loop"
        pairs = [self._query_loss(params, buffers, *(a[t] for a in args), functional_grads=False)
                 for t in range(args[0].shape[0])]
        return torch.stack([l for l, _ in pairs]).mean(), torch.stack([o for _, o in pairs])

    def meta_gradient(self, support: Batch, query: Batch) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
        loss, logits = self.meta_objective(support, query)
        grads = torch.autograd.grad(loss, self.meta_parameters(), allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.meta_parameters(), grads)]
        metrics = {"query_loss": loss.detach()}
        if self.loss_name == "cross_entropy":
            metrics["query_acc"] = (logits.argmax(-1) == query[1]).float().mean()
        return grads, metrics


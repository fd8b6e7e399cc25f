"""What MAML, Reptile and LEAP share: the model, task batches, evaluation by adaptation, the outer step.

A meta-batch is ``{"support": (x_s, y_s), "query": (x_q, y_q)}`` with the tasks stacked on a
leading dimension T (``lit_automl.datamodules`` episodic / sinusoid task modules). A subclass says
how the meta-gradient is formed (:meth:`MetaLearner.meta_gradient`); this class averages it over
ranks, hands it to the outer optimiser and evaluates by adapting to each task's support set and
scoring its query set. Optimisation is manual (``automatic_optimization = False``): the gradients
come from ``torch.autograd.grad`` or closed forms, which DDP does not hook, so they are all-reduced
explicitly (:func:`lit_automl.distributed.all_reduce_mean`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lit_automl._checks import check_int, check_real, lookup
from lit_automl.distributed import all_reduce_mean
from lit_automl.meta.functional import InnerOptimizer, InnerSGD, Params, adaptable_names, inner_loop
from lit_automl.rng import load_rng_states, save_rng_states

Batch = Tuple[torch.Tensor, torch.Tensor]

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
"""Task losses by name: ``cross_entropy`` (N-way classification), ``mse`` (regression)."""

__all__ = ["MetaLearner", "AdaptedModel", "LOSSES"]


class AdaptedModel(nn.Module):
    """The meta-learned model with adapted parameters, called functionally (what :meth:`MetaLearner.adapt` returns).

    It holds references to the base model and to detached adapted tensors: the meta-parameters are
    untouched, and nothing is deep-copied.
    """

    def __init__(self, model: nn.Module, params: Params, buffers: Params) -> None:
        super().__init__()
        self.model = model
        self.adapted = {n: p.detach() for n, p in params.items()}
        self.buffers_ = {n: b.detach() for n, b in buffers.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.model, (self.adapted, self.buffers_), (x,))


class MetaLearner(pl.LightningModule):
    """Base of the meta-learners; not used directly.

    Args:
        model: the network whose initialisation is meta-learned (``lit_automl.meta.models`` has the
            papers' ones). Called only through ``torch.func.functional_call``.
        loss: ``"cross_entropy"`` or ``"mse"`` (see :data:`LOSSES`).
        inner_lr: the inner step size (> 0).
        inner_steps: adaptation steps per task during meta-training.
        eval_inner_steps: adaptation steps at validation / test and the default of :meth:`adapt`.
        adapt_norm: also adapt normalisation layers' affine parameters in the inner loop.
    """

    def __init__(self, model: nn.Module, loss: str, inner_lr: float, inner_steps: int, eval_inner_steps: int,
                 adapt_norm: bool) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.loss_fn = lookup(LOSSES, loss, "loss")
        check_real("inner_lr", inner_lr, low=0, low_open=True)
        check_int("inner_steps", inner_steps, low=1)
        check_int("eval_inner_steps", eval_inner_steps, low=0)
        self.automatic_optimization = False
        self.model = model
        self.loss_name = loss
        self._epoch_batch = 0  # index of the current training batch in its epoch (on_train_batch_start)
        self._outputs_checked = False  # check_task_outputs runs on the first meta-batch of each fit / validate / test
        self.adapt_names: List[str] = adaptable_names(model, adapt_norm)
        self._check_functional(model)

    @staticmethod
    def _check_functional(model: nn.Module) -> None:
        params = dict(model.named_parameters())
        if not params:
            raise ValueError(f"{type(model).__name__} has no parameters to meta-learn")
        if not hasattr(model, "forward") or type(model).forward is nn.Module.forward:
            raise TypeError(f"{type(model).__name__} defines no forward(); it cannot be called functionally")

    # ------------------------------------------------------------------ to be provided by methods
    def inner_optimizer(self) -> InnerOptimizer:
        """The task-level update rule: SGD with ``inner_lr`` (MAML, LEAP); Reptile may use Adam."""
        return InnerSGD(self.hparams.inner_lr)

    def meta_gradient(self, support: Batch, query: Batch) -> Tuple[List[torch.Tensor], Dict[str, torch.Tensor]]:
        """``(grads, metrics)``: one gradient per meta-parameter (``meta_parameters()`` order) for this rank's tasks."""
        raise NotImplementedError(f"{type(self).__name__} must define meta_gradient()")

    def eval_inner_state(self) -> Optional[Params]:
        """Inner optimiser state to start evaluation from (a copy; ``None`` = fresh)."""
        return None

    # ------------------------------------------------------------------ parameters
    def meta_parameters(self) -> List[nn.Parameter]:
        """The meta-parameters theta, in ``named_parameters`` order."""
        return list(self.model.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ batches
    def split_batch(self, batch: Any) -> Tuple[Batch, Batch]:
        """``(support, query)`` stacked over tasks; anything else is refused with what is expected."""
        if not isinstance(batch, Mapping) or set(batch) != {"support", "query"}:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(
                f"{type(self).__name__} expects meta-batches {{'support': (x, y), 'query': (x, y)}} with tasks "
                f"stacked on dim 0 (use a lit_automl.datamodules task module); got {got}"
            )
        out = []
        for key in ("support", "query"):
            pair = batch[key]
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"batch[{key!r}] must be an (inputs, targets) pair, got {type(pair).__name__}")
            x, y = pair
            if x.shape[:2] != y.shape[:2] or x.dim() < 3:
                raise ValueError(
                    f"batch[{key!r}] must hold inputs (tasks, samples, ...) and targets (tasks, samples, ...); "
                    f"got shapes {tuple(x.shape)} and {tuple(y.shape)}"
                )
            out.append((x, y))
        (support, query) = out
        if support[0].shape[0] != query[0].shape[0]:
            raise ValueError(f"support has {support[0].shape[0]} tasks but query has {query[0].shape[0]}")
        if not self._outputs_checked:
            self.check_task_outputs(support, query)
            self._outputs_checked = True
        return support, query

    def setup(self, stage: str) -> None:
        self._outputs_checked = False

    def _datamodule_n_way(self) -> Optional[int]:
        """The attached datamodule's ``n_way`` (task datamodules declare it), ``None`` when there is none."""
        trainer = self._trainer
        n_way = getattr(getattr(trainer, "datamodule", None), "n_way", None) if trainer is not None else None
        return None if n_way is None else int(n_way)

    def check_task_outputs(self, support: Batch, query: Batch) -> None:
        """Refuse a model whose outputs do not fit the tasks, before any step (run on the first meta-batch,
        one forward on the first task's support set with copied buffers): for classification, as many
        outputs as the datamodule's ``n_way`` (or, without one, more outputs than the largest label); for
        regression, outputs of the targets' shape."""
        x, y = support[0][0], support[1][0]
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        with torch.no_grad():
            out = functional_call(self.model, (self._detached_params(), buffers), (x,))
        name, model = type(self).__name__, type(self.model).__name__
        if self.loss_name != "cross_entropy":
            if out.shape != y.shape:
                raise ValueError(f"{name}: {model} outputs shape {tuple(out.shape[1:])} per example but the task "
                                 f"targets have shape {tuple(y.shape[1:])}: build the model with matching outputs")
            return
        outputs = out.shape[-1]
        n_way = self._datamodule_n_way()
        if n_way is not None and outputs != n_way:
            raise ValueError(f"{name}: {model} outputs {outputs} classes but the datamodule's tasks are {n_way}-way "
                             f"(n_way={n_way}): build the model with n_way={n_way} outputs or set the datamodule's "
                             f"n_way={outputs}")
        top = int(max(support[1].max(), query[1].max()))
        if top >= outputs:
            raise ValueError(f"{name}: the tasks' labels go up to {top} but {model} outputs {outputs} classes: build "
                             f"the model with one output per class of a task (n_way={top + 1})")

    # ------------------------------------------------------------------ adaptation
    def adapt(self, support: Batch, steps: Optional[int] = None) -> AdaptedModel:
        """Adapt to one task's support set ``(x, y)`` and return the adapted model; theta is untouched."""
        steps = self.hparams.eval_inner_steps if steps is None else check_int("steps", steps, low=0)
        x, y = support
        with torch.inference_mode(False), torch.enable_grad():
            x, y = x.clone(), y.clone()
            result = inner_loop(
                self.model, self._detached_params(), dict(self.model.named_buffers()), (x, y), self.loss_fn,
                steps=steps, optimizer=self.inner_optimizer(), adapt=self.adapt_names, first_order=True,
                state=self.eval_inner_state(),
            )
        return AdaptedModel(self.model, result.params, dict(self.model.named_buffers()))

    def _detached_params(self) -> Params:
        return {n: p.detach() for n, p in self.model.named_parameters()}

    def task_metrics(self, logits: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Query loss, and accuracy for classification."""
        out = {"loss": self.loss_fn(logits, y)}
        if self.loss_name == "cross_entropy":
            out["acc"] = (logits.argmax(-1) == y).float().mean()
        return out

    # ------------------------------------------------------------------ Lightning hooks
    def outer_step(self, grads: Sequence[torch.Tensor]) -> None:
        """Average ``grads`` over ranks and take one step of the outer optimiser on theta."""
        grads = all_reduce_mean([g.detach() for g in grads])
        bad = [n for (n, _), g in zip(self.model.named_parameters(), grads) if not torch.isfinite(g).all()]
        if bad:
            raise FloatingPointError(
                f"{type(self).__name__}: the meta-gradient is not finite for {bad[:5]} at epoch {self.current_epoch}; "
                "lower the inner or outer step size"
            )
        opt = self.optimizers()
        opt.zero_grad()
        for p, g in zip(self.meta_parameters(), grads):
            p.grad = g.clone()
        opt.step()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        support, query = self.split_batch(batch)
        grads, metrics = self.meta_gradient(support, query)
        self.outer_step(grads)
        self.log_dict({f"train/{k}": v.detach() for k, v in metrics.items()}, prog_bar=True,
                      batch_size=support[0].shape[0])

    def _evaluate(self, batch: Any, stage: str) -> None:
        support, query = self.split_batch(batch)
        totals: Dict[str, List[torch.Tensor]] = {}
        for t in range(support[0].shape[0]):
            adapted = self.adapt((support[0][t], support[1][t]))
            with torch.no_grad():
                for k, v in self.task_metrics(adapted(query[0][t]), query[1][t]).items():
                    totals.setdefault(k, []).append(v)
        self.log_dict({f"{stage}/{k}": torch.stack(v).mean() for k, v in totals.items()}, prog_bar=stage == "val",
                      sync_dist=True, batch_size=support[0].shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._epoch_batch = batch_idx

    def training_progress(self) -> float:
        """Fraction of meta-training done before this step, in [0, 1): for step-size schedules."""
        trainer = self.trainer
        per_epoch = trainer.num_training_batches
        if trainer.max_epochs is None or trainer.max_epochs < 1 or per_epoch in (0, float("inf")):
            if trainer.max_steps and trainer.max_steps > 0:
                return min(trainer.global_step / trainer.max_steps, 1.0)
            raise ValueError(
                f"{type(self).__name__} anneals its step size over the run: set Trainer(max_epochs=...) "
                f"or Trainer(max_steps=...) (got max_epochs={trainer.max_epochs!r}, max_steps={trainer.max_steps!r})"
            )
        done = trainer.current_epoch * per_epoch + self._epoch_batch
        return min(done / (trainer.max_epochs * per_epoch), 1.0)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)

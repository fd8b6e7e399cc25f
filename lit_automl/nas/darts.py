"""DARTS: differentiable architecture search as a bilevel Lightning module.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019.

Notation (Sec. 2.3): ``w`` supernet weights, ``alpha`` architecture parameters, ``L_train`` /
``L_val`` the losses on the two halves of the training data, ``xi`` the virtual-step size.

* first order (``order=1``, xi = 0): ``grad_alpha L_val(w, alpha)``;
* second order (``order=2``, eq. 7-8): with the virtual step ``w' = w - xi * d(w)``, where ``d`` is
  the weight optimiser's own update direction (momentum buffer and weight decay included, as in
  the authors' code) and ``xi`` the current cosine-scheduled weight learning rate,

      grad_alpha L_val(w', alpha)
        - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps),
      w+- = w +- eps * grad_w' L_val(w', alpha),   eps = 0.01 / ||grad_w' L_val(w', alpha)||.

The unrolled and perturbed weights are evaluated with ``torch.func.functional_call``: the
supernet is never copied, and batch-norm running statistics are untouched by virtual passes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lit_automl.distributed import all_reduce_mean
from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.derive import derive_genotype, edge_entropy
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.networks import make_supernet

Batch = Tuple[torch.Tensor, torch.Tensor]

MEMORY_FORMATS = {"contiguous_format": torch.contiguous_format, "channels_last": torch.channels_last}


def check_supernet_settings(w_lr: float, alpha_lr: float, w_lr_min: float, w_momentum: float, w_weight_decay: float,
                            alpha_weight_decay: float, alpha_init_std: float, grad_clip: float,
                            epochs: Optional[int]) -> None:
    """Validate the weight / architecture optimiser settings shared by the DARTS family."""
    for name, value in (("w_lr", w_lr), ("alpha_lr", alpha_lr)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    for name, value in (("w_lr_min", w_lr_min), ("w_weight_decay", w_weight_decay),
                        ("alpha_weight_decay", alpha_weight_decay), ("alpha_init_std", alpha_init_std),
                        ("grad_clip", grad_clip)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if not 0 <= w_momentum < 1:
        raise ValueError(f"w_momentum must be in [0, 1), got {w_momentum!r}")
    if epochs is not None and epochs <= 0:
        raise ValueError(f"epochs must be a positive int or None (= trainer.max_epochs), got {epochs!r}")


class SupernetParameters:
    """The supernet and its architecture parameters, as every DARTS-family module holds them.

    :meth:`build_supernet` builds the one :class:`SearchNetwork` and registers ``alpha_normal`` then
    ``alpha_reduce`` (fixed order, saved in checkpoints, out of the weight optimiser).
    """

    def build_supernet(self, C: int, num_classes: int, layers: int, steps: int, multiplier: int,
                       stem_multiplier: int, primitives: Union[str, Sequence[str]], in_channels: int,
                       alpha_init_std: float, **network_options: Any) -> None:
        """``network_options``: see :func:`make_supernet`."""
        self.model, self.primitives = make_supernet(C, num_classes, layers, steps, multiplier, stem_multiplier,
                                                    primitives, in_channels, **network_options)
        shape = self.model.alpha_shape
        self.alpha_normal = nn.Parameter(alpha_init_std * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(alpha_init_std * torch.randn(shape))

    @property
    def alphas(self) -> Dict[str, nn.Parameter]:
        """Raw architecture parameters by cell type, ``{"normal": ..., "reduce": ...}``."""
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def arch_parameters(self) -> List[nn.Parameter]:
        """Architecture parameters in their fixed order (normal, reduce)."""
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> List[nn.Parameter]:
        """Supernet weights: everything the weight optimiser updates (no alphas)."""
        return list(self.model.parameters())


def cosine_schedule_epochs(module: pl.LightningModule) -> int:
    """Length of a supernet's weight schedule: ``hparams.epochs`` or ``Trainer(max_epochs)``."""
    if module.hparams.epochs is not None:
        return int(module.hparams.epochs)
    max_epochs = module.trainer.max_epochs if module._trainer is not None else None
    if max_epochs is None or max_epochs < 1:
        raise ValueError(
            f"{type(module).__name__} needs the length of its cosine schedule: set epochs=... or "
            f"Trainer(max_epochs=...) (got trainer.max_epochs={max_epochs!r})"
        )
    return int(max_epochs)


def supernet_optimizers(module: pl.LightningModule) -> Tuple[List[torch.optim.Optimizer], List[Dict[str, Any]]]:
    """The two optimisers of a DARTS-family search, in this order: weights (SGD, cosine-annealed
    per epoch to ``w_lr_min``), then architecture parameters (Adam); read from the module's
    hyperparameters ``w_lr, w_momentum, w_weight_decay, w_lr_min, alpha_lr, alpha_betas,
    alpha_weight_decay, epochs``."""
    hp = module.hparams
    w_opt = torch.optim.SGD(module.weight_parameters(), lr=hp.w_lr, momentum=hp.w_momentum,
                            weight_decay=hp.w_weight_decay)
    a_opt = torch.optim.Adam(module.arch_parameters(), lr=hp.alpha_lr, betas=tuple(hp.alpha_betas),
                             weight_decay=hp.alpha_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=cosine_schedule_epochs(module), eta_min=hp.w_lr_min)
    return [w_opt, a_opt], [{"scheduler": sched, "interval": "epoch"}]


class DARTS(SupernetParameters, pl.LightningModule):
    """Bilevel DARTS search over the supernet (Liu et al., ICLR 2019, Sec. 2.3 and 3.1.1).

    Defaults are the paper's CIFAR-10 search: C=16, 8 cells, 4 steps; weights SGD lr 0.025
    cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4, gradient-norm clip 5; alphas Adam
    lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, initialised at 1e-3 * randn; second order
    (the paper's headline cell). Run it for 50 epochs with batch 64 per half.

    Batches come paired as ``{"train": (x, y), "val": (x, y)}`` (``BilevelDataModule``).
    Optimisers, in this order: ``[weights SGD, architecture Adam]``. Each step has two named
    phases: the architecture step on the ``val`` half, then the weight step on the ``train`` half.
    Documented attributes for callbacks: ``alphas`` (dict normal/reduce of raw parameters) and
    ``genotype()``.

    Args:
        primitives: an op-set name registered in ``lit_automl.spaces.ops.OP_SETS`` or a list of
            op names.
        order: 1 (first-order approximation, xi = 0) or 2 (finite-difference second order).
        epochs: length of the cosine schedule; ``None`` uses ``trainer.max_epochs``.
        arch_warmup_epochs: epochs of weight-only training before the first architecture step
            (0 in DARTS; PC-DARTS warms up for 15 epochs, P-DARTS for 10 per stage).
        memory_format: ``"contiguous_format"`` or ``"channels_last"`` (faster convolutions on
            CPU and on tensor-core GPUs; the same numbers up to float rounding).
    """

    def __init__(
        self,
        C: int = 16,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        primitives: Union[str, Sequence[str]] = "darts",
        order: int = 2,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        alpha_lr: float = 3e-4,
        alpha_betas: Tuple[float, float] = (0.5, 0.999),
        alpha_weight_decay: float = 1e-3,
        alpha_init_std: float = 1e-3,
        unrolled_eps: float = 0.01,
        epochs: Optional[int] = None,
        arch_warmup_epochs: int = 0,
        memory_format: str = "contiguous_format",
    ):
        super().__init__()
        if isinstance(arch_warmup_epochs, bool) or not isinstance(arch_warmup_epochs, int) or arch_warmup_epochs < 0:
            raise ValueError(f"arch_warmup_epochs must be an int >= 0, got {arch_warmup_epochs!r}")
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first order) or 2 (second order), got {order!r}")
        if not unrolled_eps > 0:
            raise ValueError(f"unrolled_eps must be > 0, got {unrolled_eps!r}")
        check_supernet_settings(w_lr, alpha_lr, w_lr_min, w_momentum, w_weight_decay, alpha_weight_decay,
                                alpha_init_std, grad_clip, epochs)
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {sorted(MEMORY_FORMATS)}, got {memory_format!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False

        self.memory_format = MEMORY_FORMATS[memory_format]
        self.build_supernet(C, num_classes, layers, steps, multiplier, stem_multiplier, primitives, in_channels,
                            alpha_init_std, **self.supernet_options())
        self.model.to(memory_format=self.memory_format)

    def supernet_options(self) -> Dict[str, Any]:
        """Extra :class:`SearchNetwork` arguments of a subclass (read from ``self.hparams``)."""
        return {}

    # ------------------------------------------------------------------ architecture

    def edge_weights(self, alphas: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
        """Mixed-edge weights handed to the supernet: softmax over ops (DARTS eq. 2)."""
        alphas = self.arch_parameters() if alphas is None else alphas
        return [F.softmax(a, dim=-1) for a in alphas]

    def genotype(self) -> Genotype:
        """The discrete cell the current alphas encode (Sec. 2.4: top-2 edges per node)."""
        w_normal, w_reduce = self.edge_weights()
        return derive_genotype(w_normal, w_reduce, self.model.edge_primitives, self.model.steps, self.model.multiplier, k=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format), *self.edge_weights())

    # ------------------------------------------------------------------ losses and gradients

    def _loss(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
              batch: Batch, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        x = x.contiguous(memory_format=self.memory_format)
        logits = functional_call(self.model, (dict(params), dict(buffers)), (x, *weights))
        return F.cross_entropy(logits, y)

    def architecture_gradient(
        self, train: Batch, val: Batch, xi: float, weight_optimizer: Optional[torch.optim.Optimizer] = None
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """``(grad_alpha, L_val)``: the DARTS architecture gradient, averaged over ranks.

        ``xi = 0`` gives the first-order gradient ``grad_alpha L_val(w, alpha)``; ``xi > 0`` the
        second-order one of eq. 7-8 with the virtual step taken along ``weight_optimizer``'s own
        SGD update (its momentum buffers and weight decay).
        """
        names = [n for n, _ in self.model.named_parameters()]
        w = [p.detach() for _, p in self.model.named_parameters()]
        # Virtual passes run on a copy of the batch-norm buffers, so running stats stay clean.
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        alphas = self.arch_parameters()

        if xi == 0:
            loss_val = self._loss(dict(zip(names, w)), buffers, val, self.edge_weights(alphas))
            grads = torch.autograd.grad(loss_val, alphas)
            return all_reduce_mean(grads), loss_val.detach()

        # Virtual step: w' = w - xi * (momentum * buf + grad_w L_train(w) + wd * w).
        w_req = [t.requires_grad_() for t in (p.clone() for p in w)]
        fixed = [a.detach() for a in self.edge_weights(alphas)]
        loss_train = self._loss(dict(zip(names, w_req)), buffers, train, fixed)
        g_train = all_reduce_mean(torch.autograd.grad(loss_train, w_req))
        momentum, wd = self._sgd_settings(weight_optimizer)
        params = list(self.model.parameters())
        with torch.no_grad():
            w_unrolled = []
            for p, w_i, g in zip(params, w, g_train):
                step = g + wd * w_i
                buf = weight_optimizer.state.get(p, {}).get("momentum_buffer") if weight_optimizer else None
                if buf is not None and momentum:
                    step = step + momentum * buf
                w_unrolled.append((w_i - xi * step).requires_grad_())

        # grad_alpha L_val(w') and v = grad_w' L_val(w').
        loss_val = self._loss(dict(zip(names, w_unrolled)), buffers, val, self.edge_weights(alphas))
        grads = all_reduce_mean(torch.autograd.grad(loss_val, alphas + w_unrolled))
        d_alpha, v = grads[: len(alphas)], grads[len(alphas) :]

        # Finite-difference Hessian-vector product (eq. 8).
        eps = self.hparams.unrolled_eps / torch.cat([t.reshape(-1) for t in v]).norm().clamp_min(1e-12)
        with torch.no_grad():
            w_plus = [w_i + eps * v_i for w_i, v_i in zip(w, v)]
            w_minus = [w_i - eps * v_i for w_i, v_i in zip(w, v)]
        g_plus = torch.autograd.grad(self._loss(dict(zip(names, w_plus)), buffers, train, self.edge_weights(alphas)), alphas)
        g_minus = torch.autograd.grad(self._loss(dict(zip(names, w_minus)), buffers, train, self.edge_weights(alphas)), alphas)
        hvp = all_reduce_mean([(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)])
        return [da - xi * h for da, h in zip(d_alpha, hvp)], loss_val.detach()

    @staticmethod
    def _sgd_settings(optimizer: Optional[torch.optim.Optimizer]) -> Tuple[float, float]:
        if optimizer is None:
            return 0.0, 0.0
        group = optimizer.param_groups[0]
        return float(group.get("momentum", 0.0)), float(group.get("weight_decay", 0.0))

    # ------------------------------------------------------------------ Lightning hooks

    def configure_optimizers(self):
        return supernet_optimizers(self)

    def _schedule_epochs(self) -> int:
        return cosine_schedule_epochs(self)

    @staticmethod
    def split_batch(batch: Any) -> Tuple[Batch, Batch]:
        """``(train, val)`` from a paired batch; anything else is refused with what is expected."""
        if not isinstance(batch, Mapping) or set(batch) != {"train", "val"}:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(
                "DARTS expects paired batches {'train': (x, y), 'val': (x, y)} (wrap the datamodule in "
                f"lit_automl.datamodules.BilevelDataModule); got {got}"
            )
        for key in ("train", "val"):
            if not isinstance(batch[key], (tuple, list)) or len(batch[key]) != 2:
                raise TypeError(f"batch[{key!r}] must be an (inputs, targets) pair, got {type(batch[key]).__name__}")
        return tuple(batch["train"]), tuple(batch["val"])

    @property
    def architecture_frozen(self) -> bool:
        """True during the ``arch_warmup_epochs`` of weight-only training."""
        return self.current_epoch < self.hparams.arch_warmup_epochs

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        train, val = self.split_batch(batch)
        w_opt, a_opt = self.optimizers()
        xi = 0.0 if self.hparams.order == 1 else w_opt.param_groups[0]["lr"]

        # Phase 1: architecture step on the val half (skipped during the warm-up epochs).
        loss_val = None
        if not self.architecture_frozen:
            grads, loss_val = self.architecture_gradient(train, val, xi, w_opt.optimizer)
            a_opt.zero_grad()
            for a, g in zip(self.arch_parameters(), grads):
                a.grad = g.detach().clone()
            a_opt.step()

        # Phase 2: weight step on the train half (alphas take a gradient too, under DDP every
        # parameter must be used; it is discarded at the next architecture step).
        x, y = train
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"DARTS search diverged: training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}")
        w_opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(w_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        w_opt.step()

        acc = (logits.argmax(-1) == y).float().mean()
        logged = {"train/loss": loss.detach(), "train/acc": acc}
        if loss_val is not None:
            logged["search/arch_loss"] = loss_val
        self.log_dict(logged, prog_bar=True, on_step=True, on_epoch=True, sync_dist=False, batch_size=len(y))
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        self.log("search/w_lr", sched.get_last_lr()[0], sync_dist=False)
        sched.step()
        self.log_dict({f"arch/entropy_{cell}": edge_entropy(a) for cell, a in self.alphas.items()}, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log_dict({"val/loss": F.cross_entropy(logits, y), "val/acc": (logits.argmax(-1) == y).float().mean()},
                      prog_bar=True, sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test/acc", (logits.argmax(-1) == y).float().mean(), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)

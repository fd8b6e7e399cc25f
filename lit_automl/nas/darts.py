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

The maths is :func:`lit_automl.nas.bilevel.architecture_gradient` (shared with the recurrent search,
:mod:`lit_automl.nas.darts_rnn`); this module hands it the supernet's loss. The unrolled and
perturbed weights are evaluated with ``torch.func.functional_call``: the supernet is never copied, and batch-norm running statistics are untouched by virtual passes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch.func import functional_call

from lit_automl._checks import check_int, check_real
from lit_automl.nas.bilevel import architecture_gradient
from lit_automl.nas.supernet import Backward, Batch, SupernetSearch
from lit_automl.spaces.derive import derive_genotype
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.nb201 import NB201Arch
from lit_automl.spaces.nb201_supernet import derive_nb201, skip_fraction

__all__ = ["DARTS"]


class DARTS(SupernetSearch):
    """Bilevel DARTS search over the supernet (Liu et al., ICLR 2019, Sec. 2.3 and 3.1.1).

    Defaults are the paper's CIFAR-10 search (those of :class:`SupernetSearch`: C=16, 8 cells, 4
    steps; weights SGD lr 0.025 cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4,
    gradient-norm clip 5; alphas Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3, initialised
    at 1e-3 * randn) and second order (the paper's headline cell). Run it for 50 epochs with batch
    64 per half.

    Batches come paired as ``{"train": (x, y), "val": (x, y)}`` (``BilevelDataModule``).
    Optimisers, in this order: ``[weights SGD, architecture Adam]``. Each step has two named
    phases: the architecture step on the ``val`` half, then the weight step on the ``train`` half.
    Documented attributes for callbacks: ``alphas`` (dict normal/reduce of raw parameters) and
    ``genotype()``.

    ``space="nb201"`` searches the NAS-Bench-201 cell instead (:class:`SupernetSearch`; Dong & Yang, ICLR
    2020, Sec. 5, whose Table 5 has DARTS ending at the all-skip cell there): one ``alpha_cell`` (6, 5),
    ``genotype()`` an :class:`~lit_automl.spaces.nb201.NB201Arch` (each edge's argmax op, ``none``
    included, :func:`~lit_automl.spaces.nb201_supernet.derive_nb201`), and ``search/skip_fraction`` (the
    share of that cell's edges that are ``skip_connect``) logged at every epoch end. The authors' settings
    are in ``recipes/darts_nb201_cifar10.yaml``.

    Args:
        order: 1 (first-order approximation, xi = 0) or 2 (finite-difference second order).
        unrolled_eps: the ``0.01`` of eq. 8's finite-difference step ``eps = 0.01 / ||v||``.
        arch_warmup_epochs: epochs of weight-only training before the first architecture step
            (0 in DARTS; PC-DARTS warms up for 15 epochs, P-DARTS for 10 per stage).
        **kwargs: the shared supernet settings of :class:`SupernetSearch`.
    """

    supported_spaces = ("darts", "nb201")

    def __init__(self, order: int = 2, unrolled_eps: float = 0.01, arch_warmup_epochs: int = 0, **kwargs: Any):
        check_int("order", order, low=1, high=2, allowed="1 (first order) or 2 (second order)")
        check_real("unrolled_eps", unrolled_eps, low=0, low_open=True)
        if order == 1 and unrolled_eps != 0.01:
            raise ValueError(f"unrolled_eps is the finite-difference step of the second-order gradient: order=1 does "
                             f"not use it (leave it at 0.01 or set order=2), got unrolled_eps={unrolled_eps!r}")
        check_int("arch_warmup_epochs", arch_warmup_epochs, low=0)
        super().__init__(**kwargs)

    @property
    def search_label(self) -> str:
        """How messages name this search (P-DARTS adds its stage)."""
        return type(self).__name__

    def on_fit_start(self) -> None:
        """Warn when the weight-only warm-up is not shorter than the run: the architecture parameters would
        never train, and the genotype would be their random initialisation's (GenotypeLogger says so too)."""
        warmup, max_epochs = self.hparams.arch_warmup_epochs, self.trainer.max_epochs
        if warmup > 0 and max_epochs is not None and 1 <= max_epochs <= warmup:
            rank_zero_warn(
                f"{self.search_label}: arch_warmup_epochs={warmup} is not shorter than Trainer(max_epochs={max_epochs}): "
                f"the architecture parameters are never trained in this run, so its genotype is their random "
                f"initialisation's; set arch_warmup_epochs < max_epochs (or max_epochs > {warmup})")

    # ------------------------------------------------------------------ architecture

    def genotype(self) -> Union[Genotype, NB201Arch]:
        """The discrete cell the current alphas encode (Sec. 2.4: top-2 edges per node); on NAS-Bench-201 each
        edge's argmax op (:func:`~lit_automl.spaces.nb201_supernet.derive_nb201`)."""
        if self.hparams.space == "nb201":
            return derive_nb201(self.edge_weights()[0], self.primitives)
        w_normal, w_reduce = self.edge_weights()[:2]
        return derive_genotype(w_normal, w_reduce, self.model.edge_primitives, self.model.steps, self.model.multiplier, k=2)

    def epoch_metrics(self) -> Dict[str, Any]:
        """The entropies, and on NAS-Bench-201 ``search/skip_fraction``: the share of ``skip_connect`` edges in
        the current cell, the drift Dong & Yang report (ICLR 2020, Table 5)."""
        metrics = super().epoch_metrics()
        if self.hparams.space == "nb201":
            metrics["search/skip_fraction"] = skip_fraction(self.genotype())
        return metrics

    # ------------------------------------------------------------------ losses and gradients

    def loss(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
             batch: Batch, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the supernet evaluated at ``params`` / ``buffers`` (``functional_call``)."""
        x, y = batch
        # The supernet ties no weights (tests/nas/test_darts.py), so functional_call's search for ties
        # is skipped: it walks the whole module tree, about 30 ms per call for the quickstart's supernet.
        logits = functional_call(self.model, (dict(params), dict(buffers)), (self.format_input(x), *weights),
                                 tie_weights=False)
        return F.cross_entropy(logits, y)

    def architecture_gradient(
        self, train: Batch, val: Batch, xi: float, weight_optimizer: Optional[torch.optim.Optimizer] = None
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """``(grad_alpha, L_val)``: the DARTS architecture gradient, averaged over ranks
        (:func:`lit_automl.nas.bilevel.architecture_gradient`).

        ``xi = 0`` gives the first-order gradient ``grad_alpha L_val(w, alpha)``; ``xi > 0`` the
        second-order one of eq. 7-8 with the virtual step taken along ``weight_optimizer``'s own
        SGD update (its momentum buffers and weight decay).
        """
        named = list(self.model.named_parameters())
        # Virtual passes run on a copy of the batch-norm buffers, so running stats stay clean.
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        result = architecture_gradient(self.loss, [n for n, _ in named], [p for _, p in named], buffers,
                                       self.arch_parameters(), self.edge_weights, train, val, xi, weight_optimizer,
                                       eps=self.hparams.unrolled_eps)
        return result.grads, result.val_loss

    # ------------------------------------------------------------------ the search step

    def split_batch(self, batch: Any) -> Tuple[Batch, Batch]:
        """``(train, val)`` from a paired batch; anything else is refused with what is expected."""
        if not isinstance(batch, Mapping) or set(batch) != {"train", "val"}:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(
                f"{type(self).__name__} expects paired batches {{'train': (x, y), 'val': (x, y)}} (wrap the "
                f"datamodule in lit_automl.datamodules.BilevelDataModule); got {got}"
            )
        for key in ("train", "val"):
            if not isinstance(batch[key], (tuple, list)) or len(batch[key]) != 2:
                raise TypeError(f"batch[{key!r}] must be an (inputs, targets) pair, got {type(batch[key]).__name__}")
        return tuple(batch["train"]), tuple(batch["val"])

    def check_batch(self, batch: Any) -> None:
        self.split_batch(batch)

    @property
    def architecture_frozen(self) -> bool:
        """True during the ``arch_warmup_epochs`` of weight-only training."""
        return self.current_epoch < self.hparams.arch_warmup_epochs

    def search_step(self, batch: Any, optimizers: Sequence[torch.optim.Optimizer], backward: Optional[Backward] = None,
                    batch_idx: int = 0) -> Dict[str, torch.Tensor]:
        """Phase 1, the architecture step on the ``val`` half (skipped while :attr:`architecture_frozen`);
        phase 2, the weight step on the ``train`` half."""
        train, val = self.split_batch(batch)
        w_opt, a_opt = optimizers
        xi = 0.0 if self.hparams.order == 1 else w_opt.param_groups[0]["lr"]

        loss_val = None
        if not self.architecture_frozen:
            # The virtual step reads the momentum buffers: the torch optimiser behind Lightning's wrapper.
            grads, loss_val = self.architecture_gradient(train, val, xi, getattr(w_opt, "optimizer", w_opt))
            self.check_finite(loss_val, "architecture loss", batch_idx, (val[0], train[0]) if xi else val[0])
            self.architecture_step(a_opt, grads)

        # The weight step needs no architecture gradient (the next architecture step replaces it):
        # the supernet is handed detached edge weights, which spares autograd one reduction per op
        # and the op outputs it would keep for them. The architecture parameters still take part,
        # with a zero gradient, because under DDP every parameter must be used.
        x, y = train
        logits = self.model(self.format_input(x), *[w.detach() for w in self.edge_weights()])
        loss = F.cross_entropy(logits, y)
        self.check_finite(loss, "training loss", batch_idx, x)
        w_opt.zero_grad()
        self.run_backward(loss + 0.0 * sum(a.sum() for a in self.arch_parameters()), backward)
        self.weight_step(w_opt)

        metrics = {"train/loss": loss.detach(), "train/acc": (logits.argmax(-1) == y).float().mean()}
        if loss_val is not None:
            metrics["search/arch_loss"] = loss_val
        return metrics

"""DARTS recurrent-cell search on Penn Treebank as a bilevel Lightning module.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 2.1 (the
recurrent cell), 2.3 (the bilevel gradient), 3.1.2 and A.1.2 (the search); the authors' code
``quark0/darts`` ``rnn/train_search.py``, ``rnn/architect.py`` and ``rnn/model_search.py``.

Notation: ``w`` the language model's weights, ``alpha`` (num_edges x num_ops) the architecture
parameters, ``softmax(alpha)`` the edge weights of the search cell
(:class:`~lit_automl.spaces.recurrent_search.DartsRecurrentSearchCell`: 8 nodes, ops none, tanh, relu,
sigmoid, identity), ``L_train`` / ``L_val`` the token NLL on a training window and on the paired window
of the validation split (``PTBDataModule(search=True)``).

Each step, on the batch ``{"train": LMBatch, "val": LMBatch}``:

1. architecture step (Adam on ``alpha``) with the gradient of
   :func:`lit_automl.nas.bilevel.architecture_gradient`: first order, or second order with the virtual
   step ``w' = w - xi * (clip(grad_w L_train) + wd * w)`` along plain SGD (no momentum), the gradient
   clipped to the weights' clip norm and ``xi = lr * lr_scale``, this window's weight learning rate
   (``rnn/architect.py``: ``_compute_unrolled_model``, called after ``train_search.py`` has scaled the
   learning rate). ``L_val`` and ``L_train`` here are the plain NLL (the authors' ``_loss``: no AR/TAR);
   the validation stream's hidden state is advanced by this evaluation (at ``w'`` for second order);
2. weight step (SGD) on the training window: NLL + AR + TAR (``alpha``, ``beta``), gradient-norm clip
   0.25, learning rate ``lr * lr_scale``; edge weights detached (the next architecture step recomputes
   their gradient).

Each stream (training windows, the architecture's validation windows) carries its own hidden state,
detached at every window and reset to zeros at each epoch. Validation on the validation split (batch
10) reports ``val/loss`` and ``val/ppl`` token-weighted and summed over ranks
(:class:`~lit_automl.nas.lm_training.LMTraining`, shared with :class:`~lit_automl.nas.retrain_rnn.RetrainRNN`).
:meth:`DARTSRecurrent.genotype` keeps, per node, the strongest predecessor and activation of
``softmax(alpha)`` (:func:`~lit_automl.spaces.derive.derive_recurrent`, k = 1).

Defaults are the paper's search (Sec. 3.1.2 / A.1.2; ``train_search.py``): emsize = nhid = 300, SGD lr 20,
weight decay 5e-7, clip 0.25, dropouts output 0.75 / hidden 0.25 / cell input 0.75 / embedded input 0.2 /
embedding 0, TAR ``beta = 1e-3`` (AR 0), architecture Adam lr 3e-3, betas (0.9, 0.999) (torch's defaults,
which ``architect.py`` leaves in place), weight decay 1e-3, ``alpha`` initialised at ``1e-3 * randn``; run
50 epochs at batch 256, BPTT 35 (``recipes/darts_rnn_ptb.yaml``). ``order=2``: the second-order search
found DARTS_V2, the paper's headline recurrent cell (55.7 test perplexity, Table 2; first order: DARTS_V1,
57.6), while ``train_search.py`` defaults to first order (``--unrolled`` off); we follow the paper.

Where we depart from the authors' code, deliberately:
* the Hessian-vector product follows the paper's eq. 8 (perturb ``w`` along ``v = grad_w' L_val(w')``), as
  the CNN search does; ``rnn/architect.py`` perturbs the unrolled ``w'`` instead and clips ``v`` and adds
  ``wd * w'`` to it;
* training windows have the AWD-LSTM random lengths of ``PTBDataModule(variable_length=True)``
  (``N(bptt, 5)`` around a base of ``bptt`` or ``bptt / 2``); ``train_search.py`` has the normal draw
  commented out and uses the base length itself (35 or 17);
* the architecture passes run on a copy of the batch-norm buffers, so only weight steps move the
  running statistics.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lit_automl._checks import check_bool, check_int, check_real, check_sequence
from lit_automl.nas.bilevel import BilevelGradient, architecture_gradient, clip_total_norm
from lit_automl.nas.lm_training import LMTraining, carried
from lit_automl.nonfinite import check_finite_losses
from lit_automl.spaces.derive import derive_recurrent, edge_entropy
from lit_automl.spaces.recurrent import LMOutput, RecurrentLM, check_dropout
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype
from lit_automl.spaces.recurrent_search import DartsRecurrentSearchCell

__all__ = ["DARTSRecurrent"]

LMWindow = Tuple[Tensor, Tensor, Optional[Tensor]]
"""``(data (T, B), target (T, B), starting hidden (B, nhid) or None)``: a window the bilevel loss evaluates."""


class DARTSRecurrent(LMTraining):
    """Bilevel DARTS search of the recurrent cell (module docstring for the method, the defaults and citations).

    Batches: ``{"train": LMBatch, "val": LMBatch}`` (``PTBDataModule(search=True)``). Optimisers, in this
    order: ``[weights SGD, architecture Adam]``. Documented attributes for callbacks: ``alphas``
    (``{"recurrent": alpha}``), ``genotype()`` and ``architecture_changed()``.

    Args:
        vocab_size: words in the vocabulary; ``None`` reads the datamodule's at setup.
        emsize, nhid: embedding and hidden sizes (300, 300).
        steps: intermediate nodes of the cell (8).
        primitives: a recurrent op-set name or the op names of ``alpha``'s columns (``"darts_rnn"``).
        dropout, dropout_h, dropout_x, dropout_i, dropout_e: output, recurrent, cell-input, embedded-input
            and embedding dropout (0.75, 0.25, 0.75, 0.2, 0; ``train_search.py``'s dropout, dropouth,
            dropoutx, dropouti, dropoute).
        lr, weight_decay, clip: the weight SGD's learning rate (scaled per window by ``lr_scale``),
            weight decay and gradient-norm clip (20, 5e-7, 0.25).
        alpha, beta: AR and TAR weights of the weight step (0, 1e-3).
        arch_lr, arch_weight_decay, arch_betas: the architecture Adam's (3e-3, 1e-3, (0.9, 0.999)).
        order: 1 (first order, xi = 0) or 2 (second order; the paper's headline DARTS_V2).
        unrolled_eps: the ``0.01`` of eq. 8's finite-difference step ``eps = 0.01 / ||v||`` (order 2 only).
        alpha_init_std: ``alpha`` starts at ``alpha_init_std * randn`` (1e-3).
        batch_norm: the search cell's non-affine batch norm of every state (the authors' search cell).
    """

    def __init__(self, vocab_size: Optional[int] = None, emsize: int = 300, nhid: int = 300, steps: int = 8,
                 primitives: Union[str, Sequence[str]] = "darts_rnn", dropout: float = 0.75, dropout_h: float = 0.25,
                 dropout_x: float = 0.75, dropout_i: float = 0.2, dropout_e: float = 0.0, lr: float = 20.0,
                 weight_decay: float = 5e-7, clip: float = 0.25, alpha: float = 0.0, beta: float = 1e-3,
                 arch_lr: float = 3e-3, arch_weight_decay: float = 1e-3, arch_betas: Sequence[float] = (0.9, 0.999),
                 order: int = 2, unrolled_eps: float = 0.01, alpha_init_std: float = 1e-3, batch_norm: bool = True):
        super().__init__()
        check_int("vocab_size", vocab_size, low=2, allow_none=True)
        for name, p in (("dropout", dropout), ("dropout_h", dropout_h), ("dropout_x", dropout_x),
                        ("dropout_i", dropout_i), ("dropout_e", dropout_e)):
            check_dropout(name, p)
        for name, value in (("lr", lr), ("clip", clip), ("arch_lr", arch_lr), ("unrolled_eps", unrolled_eps)):
            check_real(name, value, low=0, low_open=True)
        for name, value in (("weight_decay", weight_decay), ("alpha", alpha), ("beta", beta),
                            ("arch_weight_decay", arch_weight_decay), ("alpha_init_std", alpha_init_std)):
            check_real(name, value, low=0)
        arch_betas = check_sequence("arch_betas", arch_betas, lambda n, b: check_real(n, b, low=0, high=1, high_open=True),
                                    allowed="numbers in [0, 1) (Adam's betas)")
        if len(arch_betas) != 2:
            raise ValueError(f"arch_betas must be two numbers in [0, 1) (Adam's betas), got {list(arch_betas)!r}")
        check_int("order", order, low=1, high=2, allowed="1 (first order) or 2 (second order)")
        if order == 1 and unrolled_eps != 0.01:
            raise ValueError(f"unrolled_eps is the finite-difference step of the second-order gradient: order=1 does "
                             f"not use it (leave it at 0.01 or set order=2), got unrolled_eps={unrolled_eps!r}")
        check_bool("batch_norm", batch_norm)
        self.save_hyperparameters()
        self.hparams["arch_betas"] = [float(b) for b in arch_betas]
        # The cell does not depend on the vocabulary: built (and its arguments checked) here, so alpha's shape
        # is known. Until the model holds it, it waits in a tuple, which nn.Module does not register.
        cell = self._build_cell()
        self.arch_alpha = nn.Parameter(alpha_init_std * torch.randn(cell.weight_shape))  # (num_edges, num_ops)
        self._initial_alpha: Optional[Tensor] = self.arch_alpha.detach().cpu().clone()
        self._pending_cell: Tuple[DartsRecurrentSearchCell, ...] = (cell,)
        self._search_hidden: Optional[Tensor] = None  # the architecture's (validation) stream state
        if vocab_size is not None:
            self.model = self.build_model(vocab_size)

    # ------------------------------------------------------------------ building
    def _build_cell(self) -> DartsRecurrentSearchCell:
        hp = self.hparams
        return DartsRecurrentSearchCell(hp.emsize, hp.nhid, steps=hp.steps, primitives=hp.primitives,
                                        dropout_h=hp.dropout_h, dropout_x=hp.dropout_x, batch_norm=hp.batch_norm)

    def build_model(self, vocab_size: int) -> RecurrentLM:
        """The language model around the search cell built in ``__init__`` (its weights drawn there)."""
        hp = self.hparams
        cell = self._pending_cell[0] if self._pending_cell else self._build_cell()
        self._pending_cell = ()
        return RecurrentLM(vocab_size, cell=cell, emsize=hp.emsize, nhid=hp.nhid, dropout=hp.dropout,
                           dropout_i=hp.dropout_i, dropout_e=hp.dropout_e)

    def configure_optimizers(self) -> List[torch.optim.Optimizer]:
        """``[weights SGD, architecture Adam]``; ``alpha`` is in the second only."""
        hp = self.hparams
        weights = torch.optim.SGD(self.model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        arch = torch.optim.Adam([self.arch_alpha], lr=hp.arch_lr, betas=tuple(hp.arch_betas),
                                weight_decay=hp.arch_weight_decay)
        return [weights, arch]

    # ------------------------------------------------------------------ architecture
    @property
    def alphas(self) -> Dict[str, nn.Parameter]:
        """Raw architecture parameters by cell, ``{"recurrent": alpha}`` (num_edges, num_ops)."""
        return {"recurrent": self.arch_alpha}

    def edge_weights(self, alphas: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
        """``[softmax(alpha)]`` over ops (DARTS eq. 2), of ``alphas`` or the module's own."""
        return [F.softmax(a, dim=-1) for a in ([self.arch_alpha] if alphas is None else alphas)]

    def genotype(self) -> RecurrentGenotype:
        """The discrete cell ``softmax(alpha)`` encodes: per node its strongest predecessor and activation."""
        return derive_recurrent(self.edge_weights()[0].detach(), self.hparams.primitives, self.hparams.steps)

    def architecture_changed(self) -> Optional[bool]:
        """Whether ``alpha`` differs from its initial value (which travels in checkpoints); ``None`` when a
        checkpoint did not carry it."""
        if self._initial_alpha is None:
            return None
        return not torch.equal(self.arch_alpha.detach().cpu(), self._initial_alpha)

    @contextmanager
    def cell_weights(self, weights: Tensor) -> Iterator[None]:
        """Hand ``weights`` to the search cell for the forwards inside (``RecurrentLM`` calls the cell without
        them), and take them back after, so no graph stays attached to the module."""
        cell = self.model.cell
        cell.weights = weights
        try:
            yield
        finally:
            cell.weights = None

    def forward(self, tokens: Tensor, hidden: Optional[Tensor] = None) -> LMOutput:
        """The language model with the current ``softmax(alpha)`` (validation and test use it)."""
        with self.cell_weights(self.edge_weights()[0]):
            return self.model(tokens, hidden)

    # ------------------------------------------------------------------ the bilevel step
    def loss(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], batch: LMWindow,
             weights: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
        """``(NLL, next hidden)`` of the language model at ``params`` / ``buffers`` (``functional_call``; the
        decoder stays tied to the embedding) on one window, with edge weights ``weights[0]``."""
        data, target, hidden = batch
        with self.cell_weights(weights[0]):
            out = functional_call(self.model, (dict(params), dict(buffers)), (data, hidden))
        nll = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), target.reshape(-1))
        return nll, out.hidden.detach()

    def architecture_gradient(self, train: LMWindow, val: LMWindow, xi: float,
                              weight_optimizer: Optional[torch.optim.Optimizer] = None) -> BilevelGradient:
        """The architecture gradient of :func:`lit_automl.nas.bilevel.architecture_gradient` on two windows
        (rank-averaged): ``xi = 0`` first order; else the virtual step along ``weight_optimizer``'s plain SGD
        with its weight decay, the training gradient clipped to ``clip`` first (``rnn/architect.py``).
        ``val_aux`` is the validation stream's next hidden state."""
        named = list(self.model.named_parameters())
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}  # running stats stay clean
        return architecture_gradient(self.loss, [n for n, _ in named], [p for _, p in named], buffers,
                                     [self.arch_alpha], self.edge_weights, train, val, xi, weight_optimizer,
                                     eps=self.hparams.unrolled_eps, grad_transform=clip_total_norm(self.hparams.clip))

    def split_batch(self, batch: Any) -> Tuple[Mapping[str, Any], Mapping[str, Any]]:
        """``(train, val)`` windows of a paired batch; anything else is refused with what is expected."""
        name = type(self).__name__
        if not isinstance(batch, Mapping) or set(batch) != {"train", "val"}:
            got = f"a mapping with keys {sorted(batch)}" if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(f"{name} expects paired batches {{'train': LMBatch, 'val': LMBatch}} "
                            f"(PTBDataModule(search=True)); got {got}")
        for key in ("train", "val"):
            window = batch[key]
            if not isinstance(window, Mapping) or not {"data", "target", "lr_scale"} <= set(window):
                got = f"keys {sorted(window)}" if isinstance(window, Mapping) else type(window).__name__
                raise TypeError(f"batch[{key!r}] must be an LMBatch {{'data', 'target', 'lr_scale'}}, got {got}")
            if window["data"].dim() != 2 or window["data"].shape != window["target"].shape:
                raise ValueError(f"batch[{key!r}]: data and target must both be (time, batch) token ids, got "
                                 f"{tuple(window['data'].shape)} and {tuple(window['target'].shape)}")
        return batch["train"], batch["val"]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        train, val = self.split_batch(batch)
        w_opt, a_opt = self.optimizers()
        lr_scale = float(train["lr_scale"])
        train_hidden = carried(self._hidden, train["data"].shape[1])
        val_hidden = carried(self._search_hidden, val["data"].shape[1])

        # 1. architecture step on the validation window; xi is this window's weight learning rate.
        xi = 0.0 if self.hparams.order == 1 else self.hparams.lr * lr_scale
        result = self.architecture_gradient((train["data"], train["target"], train_hidden),
                                            (val["data"], val["target"], val_hidden), xi,
                                            getattr(w_opt, "optimizer", w_opt))
        self._search_hidden = result.val_aux
        a_opt.zero_grad()
        self.arch_alpha.grad = result.grads[0].detach().clone()
        a_opt.step()

        # 2. weight step on the training window (alpha takes part with a zero gradient: DDP needs every parameter).
        with self.cell_weights(self.edge_weights()[0].detach()):
            out = self.model(train["data"], train_hidden)
        loss, nll = self.lm_loss(out, train["target"])
        check_finite_losses(
            f"{type(self).__name__} search diverged at epoch {self.current_epoch}, batch {batch_idx}",
            {"training NLL": nll, "architecture NLL": result.val_loss},
            f"lower lr={self.hparams.lr} or clip={self.hparams.clip}, or keep batch_norm=True (the search cell's "
            "states grow without it)")
        self._hidden = out.hidden.detach()
        self.sgd_step(w_opt, loss + 0.0 * self.arch_alpha.sum(), lr_scale)

        tokens = train["target"].numel()
        self.log("train/loss", nll.detach(), prog_bar=True, batch_size=tokens)
        self.log("search/arch_loss", result.val_loss, batch_size=val["target"].numel())
        return nll.detach()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._search_hidden = None  # both streams start from zeros at each epoch (train_search.py's train())

    def on_train_epoch_end(self) -> None:
        self.log("arch/entropy_recurrent", edge_entropy(self.arch_alpha), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["initial_architecture"] = self._initial_alpha

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._initial_alpha = checkpoint.get("initial_architecture")

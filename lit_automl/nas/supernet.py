"""SupernetSearch: what every DARTS-family search shares, written once.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019 (Sec. 2.3, 3.1.1)
set the shape every method here follows: one supernet (:func:`~lit_automl.spaces.networks.make_supernet`)
whose mixed edges are handed weights by the method, architecture parameters kept apart from the
network weights, and two optimisers in a fixed order, ``[weights SGD (cosine-annealed per epoch),
architecture]``. A method says how its edge weights are made (:meth:`SupernetSearch.edge_weights`),
which architecture parameters it has (:meth:`SupernetSearch.init_architecture`), how one search
step runs (:meth:`SupernetSearch.search_step`) and how the genotype is derived; this class owns the
settings and their validation, the optimisers, the gradient clipping of both parameter sets, the
divergence check, validation / test steps, epoch-end logging and the RNG state in checkpoints.

``search_step`` is plain PyTorch: it takes a batch and the optimisers and returns the step's
metrics, so it runs without a Trainer (benchmarks time it directly); ``training_step`` wraps it
with Lightning's ``manual_backward`` and logs what it returns.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real
from lit_automl.nas.data_checks import check_against_datamodule, nonfinite_count
from lit_automl.rng import load_rng_states, save_rng_states
from lit_automl.spaces.derive import edge_entropy
from lit_automl.spaces.geometry import CELL_TYPES
from lit_automl.spaces.nb201_supernet import NB201SearchNetwork
from lit_automl.spaces.networks import AUTO_RECOMPUTE_ELEMENTS, make_supernet

__all__ = ["AUTO_MEMORY_FORMAT", "MEMORY_FORMATS", "SUPERNET_SPACES", "SupernetSearch", "auto_memory_format",
           "log_classification"]

Batch = Tuple[torch.Tensor, torch.Tensor]
Backward = Callable[[torch.Tensor], None]

MEMORY_FORMATS = {"contiguous_format": torch.contiguous_format, "channels_last": torch.channels_last}
"""Memory layouts of the supernet and its inputs, by name."""

AUTO_MEMORY_FORMAT = {"cpu": "channels_last"}
"""The layout ``memory_format="auto"`` picks per device type, where ``benchmarks/darts_step.py``
measured it to win (CPU, oneDNN: about 2x faster steps at 32x32); ``"contiguous_format"`` elsewhere,
until a measurement there says otherwise."""


SUPERNET_SPACES: Dict[str, Tuple[str, ...]] = {"darts": CELL_TYPES, "nb201": ("cell",)}
"""The cell spaces a supernet search can run on, each with its cell types (one architecture tensor each):
DARTS's normal and reduction cells (:class:`~lit_automl.spaces.networks.SearchNetwork`), and NAS-Bench-201's
one cell shared by every stage (:class:`~lit_automl.spaces.nb201_supernet.NB201SearchNetwork`)."""

NB201_UNUSED = ("layers", "steps", "multiplier", "stem_multiplier")
"""DARTS-supernet settings the NAS-Bench-201 supernet has no use for (its depth is ``cells_per_stage``)."""


def auto_memory_format(device: Union[str, torch.device]) -> str:
    """The layout ``memory_format="auto"`` resolves to on ``device``."""
    return AUTO_MEMORY_FORMAT.get(torch.device(device).type, "contiguous_format")


def _plain_backward(loss: torch.Tensor) -> None:
    loss.backward()


def _same_setting(value: Any, default: Any) -> bool:
    """``value`` is ``default`` (a saved or YAML-read pair may come back as a list)."""
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value) == default
    return bool(value == default)


def log_classification(module: pl.LightningModule, logits: torch.Tensor, y: torch.Tensor, stage: str) -> None:
    """Log ``<stage>/loss`` (cross-entropy) and ``<stage>/acc`` of a validation or test batch, averaged over
    ranks; validation's in the progress bar."""
    module.log_dict({f"{stage}/loss": F.cross_entropy(logits, y), f"{stage}/acc": (logits.argmax(-1) == y).float().mean()},
                    prog_bar=stage == "val", sync_dist=True, batch_size=len(y))


class SupernetSearch(pl.LightningModule):
    """Base of the DARTS-family searches; not used directly (subclasses define :meth:`search_step`).

    Defaults are DARTS's CIFAR-10 search (Liu et al., ICLR 2019, Sec. 3.1.1): C=16, 8 cells, 4
    nodes; weights SGD lr 0.025 cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4,
    gradient-norm clip 5; architecture Adam lr 3e-4, betas (0.5, 0.999), weight decay 1e-3,
    initialised at 1e-3 * randn. Subclasses change the defaults their papers change.

    Optimisers, in this order: ``[weights SGD, architecture optimiser]`` (Adam; a method without
    architecture parameters has only the first). Optimisation is manual.

    Args:
        C, layers, steps, multiplier, stem_multiplier, num_classes, in_channels: the supernet
            (:class:`~lit_automl.spaces.networks.SearchNetwork`).
        primitives: an op-set name of ``lit_automl.spaces.ops.OP_SETS`` or a list of op names.
        w_lr, w_momentum, w_weight_decay: the weights' SGD.
        w_lr_min: final learning rate of the per-epoch cosine schedule; ``None`` keeps ``w_lr``
            fixed (no schedule).
        grad_clip: max norm of the weights' gradient (0 disables clipping).
        alpha_lr, alpha_betas, alpha_weight_decay: the architecture optimiser (Adam).
        alpha_init_std: architecture parameters start at ``alpha_init_std * randn``.
        alpha_grad_clip: max norm of the architecture gradient, applied before the architecture
            optimiser steps (0 disables clipping).
        epochs: length of the cosine schedule; ``None`` uses ``trainer.max_epochs``. Refused with
            ``w_lr_min=None`` (no schedule) unless the method uses it otherwise.
        memory_format: ``"auto"`` (default: the layout measured fastest on the device, see
            :data:`AUTO_MEMORY_FORMAT`; settled once, at setup or at the first forward, and reported),
            ``"contiguous_format"`` or ``"channels_last"``: the same numbers up to float rounding.
        checkpoint_cells: which supernet cells recompute their activations in backward instead of
            keeping them (less memory, one more forward per recomputed cell; this library's option, see
            :class:`~lit_automl.spaces.networks.SearchNetwork`): ``"auto"`` (default: the cells with
            large inputs, see :data:`~lit_automl.spaces.networks.AUTO_RECOMPUTE_ELEMENTS`: at the
            paper's search size the three that read 32x32 maps, none on the small digits demos;
            reported after the first step), ``True``, ``False`` or a number of leading cells. The
            NAS-Bench-201 supernet takes ``"auto"`` (nothing recomputed) or ``False`` only.
        space: the cell space searched (:data:`SUPERNET_SPACES`): ``"darts"`` (default, the DARTS supernet)
            or ``"nb201"``, NAS-Bench-201's macro network and cell (Dong & Yang, ICLR 2020; supernet
            :class:`~lit_automl.spaces.nb201_supernet.NB201SearchNetwork`): one ``alpha_cell`` of shape
            (6, 5) shared by every cell, ``C`` and ``cells_per_stage`` set its size, ``layers``, ``steps``,
            ``multiplier`` and ``stem_multiplier`` are refused unless left at their defaults, and the
            default ``primitives="darts"`` stands for the benchmark's ``"nb201"`` set (a cell of DARTS ops
            would not be a benchmark cell). A method takes the spaces in :attr:`supported_spaces`.
        cells_per_stage: N of ``space="nb201"`` (``None``: the benchmark's 5); refused with ``"darts"``.

    A setting a method does not use is refused unless left at its default (:attr:`unused_settings`).

    Documented attributes for callbacks: ``alphas`` (dict normal/reduce of raw parameters),
    ``genotype()``, ``architecture_changed()`` (whether the architecture parameters moved from their
    initial values), ``model`` (the supernet), ``primitives``.
    """

    supported_spaces: Tuple[str, ...] = ("darts",)
    """The :data:`SUPERNET_SPACES` this method searches; another ``space`` is refused, naming these."""

    unused_settings: Mapping[str, str] = {}
    """Shared settings a method does not use, each with the reason (``"has no architecture
    parameters"``): a value other than this class's default is refused, so nothing is silently
    ignored, while the defaults (what ``load_from_checkpoint`` and LightningCLI pass back) are accepted."""

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
        w_lr: float = 0.025,
        w_lr_min: Optional[float] = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        alpha_lr: float = 3e-4,
        alpha_betas: Tuple[float, float] = (0.5, 0.999),
        alpha_weight_decay: float = 1e-3,
        alpha_init_std: float = 1e-3,
        alpha_grad_clip: float = 0.0,
        epochs: Optional[int] = None,
        memory_format: str = "auto",
        checkpoint_cells: Union[bool, int, str] = "auto",
        space: str = "darts",
        cells_per_stage: Optional[int] = None,
    ):
        super().__init__()
        check_choice("space", space, list(SUPERNET_SPACES), sort=False)
        if space not in self.supported_spaces:
            raise ValueError(f"{type(self).__name__} does not search space={space!r}: it supports "
                             f"{list(self.supported_spaces)} (space='nb201' is searched by lit_automl.nas.DARTS, "
                             "first or second order, and lit_automl.nas.OneShot)")
        check_int("cells_per_stage", cells_per_stage, low=1, allow_none=True,
                  hint="N of space='nb201'; None: the benchmark's 5")
        for name, value in (("w_lr", w_lr), ("alpha_lr", alpha_lr)):
            check_real(name, value, low=0, low_open=True, allowed="> 0")
        check_real("w_lr_min", w_lr_min, low=0, allow_none=True, hint="None keeps w_lr fixed")
        for name, value in (("w_weight_decay", w_weight_decay), ("alpha_weight_decay", alpha_weight_decay),
                            ("alpha_init_std", alpha_init_std), ("grad_clip", grad_clip)):
            check_real(name, value, low=0)
        check_real("alpha_grad_clip", alpha_grad_clip, low=0, hint="0 disables clipping")
        check_real("w_momentum", w_momentum, low=0, high=1, high_open=True)
        if isinstance(alpha_betas, (str, bytes)) or not isinstance(alpha_betas, Sequence) or len(alpha_betas) != 2:
            raise ValueError(f"alpha_betas must be a pair of numbers in [0, 1) (Adam's betas), got {alpha_betas!r}")
        for i, beta in enumerate(alpha_betas):
            check_real(f"alpha_betas[{i}]", beta, low=0, high=1, high_open=True)
        check_int("epochs", epochs, low=1, allow_none=True, hint="None: trainer.max_epochs")
        check_choice("memory_format", memory_format, ["auto", *MEMORY_FORMATS], sort=False)
        self.refuse_unused_settings(locals())
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.memory_format: Optional[torch.memory_format] = None  # settled by settle_memory_format
        self._recompute_reported = False  # checkpoint_cells="auto": its choice is reported once
        self.cell_names = SUPERNET_SPACES[space]
        """The cell types, one architecture tensor each (``alpha_<name>``)."""
        self.build_supernet(C, num_classes, layers, steps, multiplier, stem_multiplier, primitives, in_channels,
                            alpha_init_std, **{"checkpoint_cells": checkpoint_cells, **self.supernet_options()})
        if memory_format != "auto":
            self.settle_memory_format(memory_format)

    def refuse_unused_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for a setting of :attr:`unused_settings` given a non-default value, and
        for ``epochs`` when nothing follows it (see :meth:`epochs_used`)."""
        defaults = inspect.signature(SupernetSearch.__init__).parameters
        for name, reason in self.unused_settings.items():
            if not _same_setting(settings[name], defaults[name].default):
                raise ValueError(f"{type(self).__name__} {reason}: {name} is not used, got {settings[name]!r}")
        if settings["epochs"] is not None and not self.epochs_used(settings["w_lr_min"]):
            raise ValueError(f"{type(self).__name__} has no cosine schedule with w_lr_min=None: epochs is not used, "
                             f"got {settings['epochs']!r}")
        if settings["space"] == "nb201":
            for name in NB201_UNUSED:
                if not _same_setting(settings[name], defaults[name].default):
                    raise ValueError(f"the NAS-Bench-201 supernet (space='nb201') has its own macro network: {name} is "
                                     f"not used (set its depth with cells_per_stage), got {settings[name]!r}")
        elif settings["cells_per_stage"] is not None:
            raise ValueError(f"cells_per_stage is N of the NAS-Bench-201 supernet: space={settings['space']!r} does not "
                             f"use it (set space='nb201' or leave it None), got {settings['cells_per_stage']!r}")

    def epochs_used(self, w_lr_min: Optional[float]) -> bool:
        """Whether ``epochs`` sets anything: the length of the weights' cosine schedule, which
        ``w_lr_min=None`` turns off."""
        return w_lr_min is not None

    # ------------------------------------------------------------------ the supernet and its architecture

    def supernet_options(self) -> Dict[str, Any]:
        """Extra :class:`SearchNetwork` arguments of a subclass (read from ``self.hparams``)."""
        return {}

    def build_supernet(self, C: int, num_classes: int, layers: int, steps: int, multiplier: int,
                       stem_multiplier: int, primitives: Union[str, Sequence[str]], in_channels: int,
                       alpha_init_std: float, **network_options: Any) -> None:
        """Build the one supernet (``self.model``, ``self.primitives``) of ``hparams.space``, then
        :meth:`init_architecture`."""
        if self.hparams.space == "nb201":
            N = 5 if self.hparams.cells_per_stage is None else self.hparams.cells_per_stage
            self.model = NB201SearchNetwork(C, N, num_classes, in_channels, "nb201" if primitives == "darts" else primitives,
                                            **network_options)
            self.primitives = self.model.primitives
        else:
            self.model, self.primitives = make_supernet(C, num_classes, layers, steps, multiplier, stem_multiplier,
                                                        primitives, in_channels, **network_options)
        self.init_architecture(alpha_init_std)
        # What architecture_changed() compares with; saved in checkpoints (on_save_checkpoint).
        self._initial_architecture: Optional[List[torch.Tensor]] = [a.detach().cpu().clone()
                                                                    for a in self.arch_parameters()]

    def init_architecture(self, alpha_init_std: float) -> None:
        """Register ``alpha_<cell>`` for each of :attr:`cell_names` (``alpha_normal`` then ``alpha_reduce``;
        NAS-Bench-201's one ``alpha_cell``), fixed order, saved in checkpoints, out of the weight optimiser,
        each ``alpha_init_std * randn(num_edges, num_ops)``."""
        shape = self.model.alpha_shape
        for cell in self.cell_names:
            setattr(self, f"alpha_{cell}", nn.Parameter(alpha_init_std * torch.randn(shape)))

    def arch_parameters(self) -> List[nn.Parameter]:
        """Architecture parameters in their fixed order (normal, reduce; NAS-Bench-201: the one cell's)."""
        return [getattr(self, f"alpha_{cell}") for cell in self.cell_names]

    def architecture_names(self) -> List[str]:
        """Attribute names of :meth:`arch_parameters`, in their order (for messages)."""
        names = {id(p): n for n, p in self.named_parameters(recurse=False)}
        return [names.get(id(a), f"architecture parameter {i}") for i, a in enumerate(self.arch_parameters())]

    def architecture_changed(self) -> Optional[bool]:
        """Whether any architecture parameter differs from its value at construction (the initial values
        travel in checkpoints, so a resumed search compares with its own start). ``None`` when there is
        nothing to compare: no architecture parameters, or a checkpoint written before the initial
        values were saved."""
        initial = self._initial_architecture
        params = self.arch_parameters()
        if not params or initial is None:
            return None
        return any(not torch.equal(a.detach().cpu(), a0) for a, a0 in zip(params, initial))

    @property
    def alphas(self) -> Dict[str, nn.Parameter]:
        """Raw architecture parameters by cell type, ``{"normal": ..., "reduce": ...}`` (NAS-Bench-201:
        ``{"cell": ...}``)."""
        return dict(zip(self.cell_names, self.arch_parameters()[:len(self.cell_names)]))

    def weight_parameters(self) -> List[nn.Parameter]:
        """Supernet weights: everything the weight optimiser updates (no architecture parameters)."""
        return list(self.model.parameters())

    def edge_weights(self, alphas: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
        """Mixed-edge weights handed to the supernet: softmax over ops (DARTS eq. 2)."""
        alphas = self.arch_parameters() if alphas is None else alphas
        return [F.softmax(a, dim=-1) for a in alphas]

    def settle_memory_format(self, name: str) -> None:
        """Put the supernet in the layout ``name`` (a key of :data:`MEMORY_FORMATS`); inputs follow it."""
        self.memory_format = MEMORY_FORMATS[name]
        self.model.to(memory_format=self.memory_format)

    def data_settings(self) -> Dict[str, Tuple[str, Any]]:
        """``{datamodule attribute: (setting, value)}``: settings that must equal what the datamodule
        declares (checked at setup, where the datamodule has the attribute)."""
        hp = self.hparams
        return {"num_classes": ("num_classes", hp.num_classes), "in_channels": ("in_channels", hp.in_channels)}

    def check_data_settings(self) -> None:
        """Refuse a supernet built for other data than the attached datamodule declares, naming both values
        (more classes than the data has would train unused outputs silently; fewer fail inside torch)."""
        check_against_datamodule(type(self).__name__, getattr(self.trainer, "datamodule", None), self.data_settings())

    def setup(self, stage: str) -> None:
        """Check the settings against the datamodule's (:meth:`check_data_settings`); ``memory_format="auto"``:
        the layout of the device the trainer runs on, reported once."""
        self.check_data_settings()
        if self.memory_format is None:
            device = self.trainer.strategy.root_device
            self.settle_memory_format(auto_memory_format(device))
            rank_zero_info(f"{type(self).__name__}: supernet memory layout {self.memory_format_name} "
                           f"(memory_format='auto' on {device.type})")

    @property
    def memory_format_name(self) -> Optional[str]:
        """The settled layout's name; ``None`` while ``"auto"`` waits for a device."""
        return next((k for k, v in MEMORY_FORMATS.items() if v == self.memory_format), None)

    def format_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the supernet's memory format (``"auto"`` without a trainer settles on ``x``'s device)."""
        if self.memory_format is None:
            self.settle_memory_format(auto_memory_format(x.device))
        return x.contiguous(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.format_input(x), *self.edge_weights())

    # ------------------------------------------------------------------ batches

    def plain_batch(self, batch: Any) -> Batch:
        """``(inputs, targets)``; anything else is refused with what is expected."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"{type(self).__name__} is single level and expects (inputs, targets) batches, "
                            f"got {type(batch).__name__}")
        return batch[0], batch[1]

    def check_batch(self, batch: Any) -> None:
        """Refuse a batch of the wrong form before anything else runs (single-level: ``(x, y)``)."""
        self.plain_batch(batch)

    @staticmethod
    def batch_size(batch: Any) -> int:
        """Examples in a training batch (the ``train`` half of a paired one)."""
        pair = batch["train"] if isinstance(batch, Mapping) else batch
        return len(pair[1])

    # ------------------------------------------------------------------ one search step, plain PyTorch

    def search_step(self, batch: Any, optimizers: Sequence[torch.optim.Optimizer], backward: Optional[Backward] = None,
                    batch_idx: int = 0) -> Dict[str, torch.Tensor]:
        """One search step on ``batch`` with ``optimizers`` (:meth:`configure_optimizers` order); returns
        the metrics to log (``train/loss`` first). ``backward(loss)`` defaults to ``loss.backward()``;
        ``training_step`` passes ``manual_backward``. No Trainer is needed."""
        raise NotImplementedError(f"{type(self).__name__} must define search_step()")

    @staticmethod
    def run_backward(loss: torch.Tensor, backward: Optional[Backward]) -> None:
        (backward or _plain_backward)(loss)

    def check_finite(self, loss: torch.Tensor, what: str, batch_idx: int,
                     inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> None:
        """Stop a search whose ``loss`` is not finite, saying what went non-finite first: the ``inputs``
        the loss was computed on (the data), the architecture parameters, or the loss itself (a diverged
        search). Inputs and parameters are looked at only once the loss is not finite."""
        if torch.isfinite(loss):
            return
        when = f"at epoch {self.current_epoch}, batch {batch_idx}"
        name = type(self).__name__
        inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        bad_inputs = sum(nonfinite_count(x) for x in inputs)
        if bad_inputs:
            raise FloatingPointError(
                f"{name}: the input images of this batch hold {bad_inputs} non-finite values (of "
                f"{sum(x.numel() for x in inputs)}) {when}, so the {what} is {loss.item()}: the data is at fault, "
                "not the search (check the datamodule and its transforms)")
        bad_arch = [n for n, a in zip(self.architecture_names(), self.arch_parameters()) if nonfinite_count(a.detach())]
        if bad_arch:
            raise FloatingPointError(
                f"{name} search diverged: the architecture parameters {bad_arch} are not finite {when} (the inputs "
                f"are finite); lower alpha_lr={self.hparams.alpha_lr} or clip the architecture gradient "
                f"(alpha_grad_clip={self.hparams.alpha_grad_clip}; 0 is no clipping)")
        raise FloatingPointError(
            f"{name} search diverged: the {what} is {loss.item()} {when} while the inputs and architecture "
            f"parameters are finite; lower w_lr={self.hparams.w_lr} or grad_clip={self.hparams.grad_clip}")

    def weight_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the weights' gradient norm to ``grad_clip`` (0: no clipping), then step ``optimizer``.

        Under a Trainer the clipping goes through Lightning's ``clip_gradients``, so a precision plugin
        that scales the loss (16-bit mixed precision) clips the unscaled gradients."""
        if self.hparams.grad_clip > 0:
            try:
                self.trainer
            except RuntimeError:  # plain PyTorch: no Trainer attached
                torch.nn.utils.clip_grad_norm_(self.weight_parameters(), self.hparams.grad_clip)
            else:
                self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip,
                                    gradient_clip_algorithm="norm")
        optimizer.step()

    def architecture_step(self, optimizer: torch.optim.Optimizer,
                          grads: Optional[Sequence[torch.Tensor]] = None) -> None:
        """Step the architecture optimiser: ``grads`` (one per :meth:`arch_parameters`, already averaged
        over ranks) replace the parameters' gradients when given; the gradient norm is clipped to
        ``alpha_grad_clip`` (0: no clipping) first, here and nowhere else."""
        params = self.arch_parameters()
        if grads is not None:
            optimizer.zero_grad()
            for a, g in zip(params, grads):
                a.grad = g.detach().clone()
        if self.hparams.alpha_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.hparams.alpha_grad_clip)
        optimizer.step()

    # ------------------------------------------------------------------ optimisers

    def schedule_epochs(self) -> int:
        """Length of the weights' cosine schedule: ``hparams.epochs`` or ``Trainer(max_epochs)``."""
        if self.hparams.epochs is not None:
            return int(self.hparams.epochs)
        try:
            max_epochs = self.trainer.max_epochs
        except RuntimeError:  # not attached to a Trainer
            max_epochs = None
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"{type(self).__name__} needs the length of its cosine schedule: set epochs=... or "
                f"Trainer(max_epochs=...) (got trainer.max_epochs={max_epochs!r})"
            )
        return int(max_epochs)

    def architecture_optimizer(self) -> Optional[torch.optim.Optimizer]:
        """Adam on :meth:`arch_parameters` (``None`` when there are none)."""
        params = self.arch_parameters()
        if not params:
            return None
        hp = self.hparams
        return torch.optim.Adam(params, lr=hp.alpha_lr, betas=tuple(hp.alpha_betas), weight_decay=hp.alpha_weight_decay)

    def configure_optimizers(self):
        """``[weights SGD, architecture optimiser]`` and the weights' per-epoch cosine schedule to
        ``w_lr_min`` (none when ``w_lr_min`` is ``None``)."""
        hp = self.hparams
        w_opt = torch.optim.SGD(self.weight_parameters(), lr=hp.w_lr, momentum=hp.w_momentum,
                                weight_decay=hp.w_weight_decay)
        a_opt = self.architecture_optimizer()
        optimizers = [w_opt] if a_opt is None else [w_opt, a_opt]
        if hp.w_lr_min is None:
            return optimizers
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=self.schedule_epochs(), eta_min=hp.w_lr_min)
        return optimizers, [{"scheduler": sched, "interval": "epoch"}]

    # ------------------------------------------------------------------ Lightning hooks

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.check_batch(batch)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        metrics = self.search_step(batch, optimizers, backward=self.manual_backward, batch_idx=batch_idx)
        self.log_dict({k: v.detach() for k, v in metrics.items()}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=self.batch_size(batch))
        return metrics["train/loss"].detach()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Report what ``checkpoint_cells="auto"`` settled on, once."""
        if self.hparams.checkpoint_cells == "auto" and not self._recompute_reported:
            cells = self.model.recomputed_cells
            if cells is not None:
                self._recompute_reported = True
                which = f"cells {list(cells)} of {len(self.model.cells)}" if cells else "no cell"
                rank_zero_info(f"{type(self).__name__}: checkpoint_cells='auto' recomputes {which} in backward "
                               f"(those whose input has at least {AUTO_RECOMPUTE_ELEMENTS} elements)")

    def evaluation_logits(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        """Logits validation (``stage="val"``) and test score: the current architecture's."""
        return self(x)

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = self.plain_batch(batch)
        log_classification(self, self.evaluation_logits(x, stage), y, stage)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def epoch_metrics(self) -> Dict[str, Any]:
        """What is logged at every training-epoch end: by default the op entropy of each cell type."""
        return {f"arch/entropy_{cell}": edge_entropy(a) for cell, a in self.alphas.items()}

    def on_train_epoch_end(self) -> None:
        optimizers = self.optimizers()
        w_opt = optimizers[0] if isinstance(optimizers, list) else optimizers
        self.log("search/w_lr", w_opt.param_groups[0]["lr"])
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()
        self.log_dict(self.epoch_metrics(), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        save_rng_states(checkpoint)
        checkpoint["initial_architecture"] = self._initial_architecture

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        load_rng_states(checkpoint, type(self).__name__)
        self._initial_architecture = checkpoint.get("initial_architecture")

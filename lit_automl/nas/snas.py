"""SNAS: stochastic neural architecture search on the DARTS supernet.

Xie, Zheng, Liu & Lin, "SNAS: Stochastic Neural Architecture Search", ICLR 2019; the authors' code
is github.com/SNAS-Series/SNAS-Series (folder ``SNAS``; cited below as "the authors' code").

* Sec. 2.2: the architecture is a factorised categorical ``p(Z | alpha)``, one one-hot ``Z_e`` per
  edge; it is relaxed with the concrete (Gumbel-softmax) distribution
  ``Z_e = softmax((alpha_e + G_e) / tau)``, ``G = -log(-log(U))``, at temperature ``tau``.
* Sec. 2.3: supernet weights and alphas are trained together on ONE loss, the training loss of the
  sampled child (single level: no train / val split).
* Sec. 2.4: a resource constraint ``C(Z)`` with per-op costs, whose gradient is the score-function
  term ``E[C(Z) d log p(Z) / d alpha]``. ``C`` is a sum of per-edge costs, so we use the per-edge
  form ``sum_e c_e(Z_e) d log p(Z_e) / d alpha_e`` (same expectation, lower variance). This library
  offers parameter or FLOP costs; the authors' code combines parameter size, FLOPs and memory access
  cost (the mean of their logs per edge), which is not implemented here.

The supernet is :class:`~lit_automl.spaces.networks.SearchNetwork` (shared with DARTS); SNAS only
decides the edge weights it is handed. One noise sample per edge and cell type per training step,
shared by all cells of that type (the supernet ties alphas per cell type) and by the whole batch,
as in the authors' code. The noise comes from a ``torch.Generator`` seeded from
``(seed, global_step)``, so every DDP rank draws the same architecture; alpha gradients flow
through DDP's own all-reduce (and the resource term is averaged explicitly).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lit_automl.distributed import all_reduce_mean
from lit_automl.nas.darts import (
    MEMORY_FORMATS,
    SupernetParameters,
    check_supernet_settings,
    cosine_schedule_epochs,
    supernet_optimizers,
)
from lit_automl.rng import keyed_generator, load_rng_states, save_rng_states
from lit_automl.spaces.derive import edge_entropy
from lit_automl.spaces.genotype import Genotype

__all__ = ["SNAS", "expected_resource_cost", "gumbel_softmax_sample", "score_function_resource_grad"]

RESOURCES = ("params", "flops")


def _check_tau(tau: Any) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not float(tau) > 0:
        raise ValueError(f"temperature tau must be a number > 0, got {tau!r}")
    return float(tau)


def gumbel_softmax_sample(
    alpha: torch.Tensor,
    tau: float,
    generator: Optional[torch.Generator] = None,
    hard: bool = False,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """A concrete sample ``softmax((alpha + G) / tau)`` over the last dim (SNAS eq. 3).

    ``noise``: a fixed Gumbel draw ``G`` (same shape as ``alpha``); otherwise drawn from
    ``generator`` on the CPU (device-independent, so identical on every rank). ``hard=True``
    returns the one-hot ``argmax(alpha + G)`` in the forward pass with the relaxed gradient
    (straight-through).
    """
    tau = _check_tau(tau)
    if noise is None:
        u = torch.rand(alpha.shape, generator=generator, dtype=torch.float64)
        noise = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-12)))
    noise = noise.to(device=alpha.device, dtype=alpha.dtype)
    soft = F.softmax((alpha + noise) / tau, dim=-1)
    if not hard:
        return soft
    index = (alpha.detach() + noise).argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def expected_resource_cost(alphas: Union[torch.Tensor, Sequence[torch.Tensor]],
                           costs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    """``E_{Z ~ p(Z|alpha)}[C(Z)] = sum_e softmax(alpha_e) . cost_e``, summed over cell types too."""
    if isinstance(alphas, torch.Tensor):
        alphas, costs = [alphas], [costs]
    if len(alphas) != len(costs):
        raise ValueError(f"got {len(alphas)} alpha tensors but {len(costs)} cost tensors")
    total = None
    for a, c in zip(alphas, costs):
        if tuple(a.shape) != tuple(c.shape):
            raise ValueError(f"alpha shape {tuple(a.shape)} does not match cost shape {tuple(c.shape)}")
        term = (F.softmax(a, dim=-1) * c.to(a)).sum()
        total = term if total is None else total + term
    return total


def score_function_resource_grad(alphas: Sequence[torch.Tensor], samples: Sequence[torch.Tensor],
                                 costs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Per-edge score-function estimate of ``d E[C(Z)] / d alpha`` from one-hot samples ``Z`` (Sec. 2.4):
    ``sum_e c_e(Z_e) * d log p(Z_e | alpha_e) / d alpha_e = c_e(Z_e) * (Z_e - softmax(alpha_e))``."""
    out = []
    for a, z, c in zip(alphas, samples, costs):
        z = z.detach().to(a)
        c_z = (z * c.to(a)).sum(dim=-1, keepdim=True)
        out.append(c_z * (z - F.softmax(a.detach(), dim=-1)))
    return out


def _op_param_cost(op: nn.Module) -> float:
    return float(sum(p.numel() for p in op.parameters()))


class _FlopCounter:
    """Multiply-accumulates of the convolutions and poolings inside one module (forward hooks)."""

    def __init__(self, module: nn.Module):
        self.total = 0.0
        self.handles = [m.register_forward_hook(self._hook) for m in module.modules()
                        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear))]

    def _hook(self, m: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        per_sample = output.numel() / output.shape[0]
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            self.total += per_sample * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            self.total += per_sample * m.in_features
        else:
            k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
            self.total += per_sample * k[0] * k[1]

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class SNAS(SupernetParameters, pl.LightningModule):
    """Single-level SNAS search over the DARTS supernet (Xie et al., ICLR 2019).

    Defaults are the CIFAR-10 search (Sec. 3.1: an 8-cell network searched for 150 epochs with
    single-level optimisation, the rest of the setup following DARTS). Source of each default:

    * ``C=16, layers=8, steps=4, multiplier=4, stem_multiplier=3, primitives="darts"`` (the 8
      DARTS ops, ``none`` included): Sec. 3.1 (8 cells, DARTS setup) and the authors' code
      (``--layers 8 --init_channels 16``; 4 nodes, stem x3).
    * ``num_classes=10, in_channels=3, input_size=32``: CIFAR-10.
    * ``tau=1.0``: the authors' code (``--temp 1``); anneal it with
      :class:`lit_automl.callbacks.TemperatureAnnealing`, whose defaults are the authors' schedule
      (linear to 0.03 over the search).
    * ``hard=False``: Sec. 2.2 and the authors' code (the forward pass mixes all ops with the
      relaxed sample); ``hard=True`` is this library's option.
    * ``w_lr=0.025`` cosine to ``w_lr_min=0.001``, ``w_momentum=0.9``, ``w_weight_decay=3e-4``,
      ``grad_clip=5`` (weights' gradient norm): the authors' code (= DARTS Sec. 3.1.1).
    * ``alpha_lr=3e-4``, ``alpha_betas=(0.5, 0.999)``, ``alpha_weight_decay=1e-3`` (Adam): the
      authors' code (its multi-GPU path; = DARTS). Its single-GPU path uses plain SGD at 3e-4 on
      the alphas instead.
    * ``alpha_grad_clip=10``: the authors' code clips the alphas' gradient norm at 10.
    * ``alpha_init_std=0.01``: the authors' code draws alphas from N(1, 0.01^2)
      (``--loc_mean 1 --loc_std 0.01``); the mean does not matter (softmax is shift invariant), so
      we draw N(0, 0.01^2).
    * ``resource=None, resource_weight=0`` (constraint off): this library's choice. The paper's
      "mild" / "moderate" / "aggressive" searches (Table 1) penalise the authors' combined cost
      (mean over each edge of log parameter size, log FLOPs and log memory access cost); the
      weight in the authors' single-GPU 8-cell command, 1e-2 on that cost, does not carry over to
      the parameter / FLOP costs here, and no weights per level were found.
    * ``epochs=None`` (the cosine schedule spans ``Trainer(max_epochs)``; the paper searches 150),
      ``seed=0``, ``memory_format="contiguous_format"``: this library's choice.

    Not reproduced: the authors' code also applies drop-path (p=0.3) to every edge during search,
    which :class:`SearchNetwork` does not offer.

    Batches are plain ``(x, y)`` pairs (single level). Optimisers, in order:
    ``[weights SGD, architecture Adam]``, both stepping on the same backward.
    Documented attributes: ``alphas``, ``genotype()``, ``temperature`` (writable float),
    ``resource_costs`` (``[normal, reduce]`` per-op costs, millions of params or MACs, or ``None``).

    Args:
        tau: initial temperature (> 0).
        hard: straight-through one-hot samples. The forward pass runs only the sampled op of each
            edge (ops with weight exactly zero are skipped), so the loss does not depend on the
            other ops' weights; the alpha gradient flows through the relaxed sample
            ``softmax((alpha + G) / tau)`` of the sampled op. Under DDP this leaves unused
            weights: use ``find_unused_parameters=True``.
        resource: ``"params"``, ``"flops"`` or ``None``: the per-op cost of ``C(Z)``.
        resource_weight: weight of the resource term (``>= 0``; 0 disables it).
        input_size: spatial size of the probe input used to count FLOPs.
        alpha_grad_clip: max norm of the alphas' gradient (``>= 0``; 0 disables clipping).
        memory_format: ``"contiguous_format"`` or ``"channels_last"`` (faster convolutions on
            CPU; supernet and inputs are converted).
        seed: seed of the architecture-noise generator (combined with ``global_step``).
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
        tau: float = 1.0,
        hard: bool = False,
        resource: Optional[str] = None,
        resource_weight: float = 0.0,
        input_size: int = 32,
        w_lr: float = 0.025,
        w_lr_min: float = 0.001,
        w_momentum: float = 0.9,
        w_weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        alpha_lr: float = 3e-4,
        alpha_betas: Tuple[float, float] = (0.5, 0.999),
        alpha_weight_decay: float = 1e-3,
        alpha_init_std: float = 0.01,
        alpha_grad_clip: float = 10.0,
        epochs: Optional[int] = None,
        seed: int = 0,
        memory_format: str = "contiguous_format",
    ):
        super().__init__()
        _check_tau(tau)
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {sorted(MEMORY_FORMATS)}, got {memory_format!r}")
        if resource is not None and resource not in RESOURCES:
            raise ValueError(f"resource must be one of {RESOURCES} or None, got {resource!r}")
        check_supernet_settings(w_lr, alpha_lr, w_lr_min, w_momentum, w_weight_decay, alpha_weight_decay,
                                alpha_init_std, grad_clip, epochs)
        if isinstance(alpha_grad_clip, bool) or not isinstance(alpha_grad_clip, (int, float)) or not alpha_grad_clip >= 0:
            raise ValueError(f"alpha_grad_clip must be a number >= 0 (0 disables clipping), got {alpha_grad_clip!r}")
        if not resource_weight >= 0:
            raise ValueError(f"resource_weight must be >= 0, got {resource_weight!r}")
        if resource_weight > 0 and resource is None:
            raise ValueError(f"resource_weight={resource_weight!r} needs resource='params' or 'flops', got resource=None")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.build_supernet(C, num_classes, layers, steps, multiplier, stem_multiplier, primitives, in_channels,
                            alpha_init_std)
        self.memory_format = MEMORY_FORMATS[memory_format]
        self.model.to(memory_format=self.memory_format)
        self.temperature: float = float(tau)
        self.resource_costs: Optional[List[torch.Tensor]] = None
        if resource is not None:
            self.resource_costs = self.op_costs(resource, input_size)

    # ------------------------------------------------------------------ architecture

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = _check_tau(value)

    def op_costs(self, resource: str, input_size: int = 32) -> List[torch.Tensor]:
        """Per-op costs ``[normal, reduce]``, each (num_edges, num_ops), in millions, summed over the
        cells of that type (alphas are shared per cell type). ``none`` costs 0."""
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {RESOURCES}, got {resource!r}")
        costs = {False: torch.zeros(self.model.alpha_shape, dtype=torch.float64),
                 True: torch.zeros(self.model.alpha_shape, dtype=torch.float64)}
        counters: Dict[Tuple[int, int, int], _FlopCounter] = {}
        for c, cell in enumerate(self.model.cells):
            for e, edge in enumerate(cell.edges):
                for k, op in enumerate(edge.ops):
                    if resource == "params":
                        costs[cell.reduction][e, k] += _op_param_cost(op)
                    else:
                        counters[(c, e, k)] = _FlopCounter(op)
        if resource == "flops":
            was_training = self.model.training
            self.model.eval()
            try:
                ones = torch.ones(self.model.alpha_shape)
                with torch.no_grad():
                    self.model(torch.zeros(1, self.model.in_channels, input_size, input_size), ones, ones)
            finally:
                self.model.train(was_training)
                for counter in counters.values():
                    counter.close()
            for (c, e, k), counter in counters.items():
                costs[self.model.cells[c].reduction][e, k] += counter.total
        for e_k in costs.values():  # none never runs and costs nothing
            for k, name in enumerate(self.primitives):
                if name == "none":
                    e_k[:, k] = 0.0
        return [(costs[False] / 1e6).float(), (costs[True] / 1e6).float()]

    def noise_generator(self, step: Optional[int] = None) -> torch.Generator:
        """CPU generator seeded from ``(seed, global_step)``: the same on every rank."""
        step = self.global_step if step is None else step
        return keyed_generator(self.hparams.seed, step)

    def sample_edge_weights(self, generator: Optional[torch.Generator] = None,
                            tau: Optional[float] = None, hard: Optional[bool] = None) -> List[torch.Tensor]:
        """One concrete sample per edge for each cell type, ``[normal, reduce]``."""
        tau = self.temperature if tau is None else tau
        hard = self.hparams.hard if hard is None else hard
        generator = self.noise_generator() if generator is None else generator
        return [gumbel_softmax_sample(a, tau, generator, hard) for a in self.arch_parameters()]

    def edge_weights(self, alphas: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
        """Deterministic (evaluation) weights: softmax(alpha), the mean architecture."""
        alphas = self.arch_parameters() if alphas is None else alphas
        return [F.softmax(a, dim=-1) for a in alphas]

    def genotype(self) -> Genotype:
        """Child network: argmax op of every edge; every edge whose argmax is not ``none`` is kept
        (the authors' code derives the same "all edges" child, ``none`` edges contributing nothing).

        A node whose edges all choose ``none`` keeps its strongest non-``none`` edge (a node needs
        an input; this library's choice).
        """
        prims = list(self.primitives)
        steps = self.model.steps
        cells = []
        for alpha in self.arch_parameters():
            a = alpha.detach().cpu()
            nodes, start = [], 0
            for i in range(steps):
                n_in = i + 2
                node = []
                for j in range(n_in):
                    k = int(a[start + j].argmax())
                    if prims[k] != "none":
                        node.append((prims[k], j))
                if not node:
                    cand = [k for k, p in enumerate(prims) if p != "none"]
                    block = a[start : start + n_in][:, cand]
                    flat = int(block.argmax())
                    j, kk = divmod(flat, len(cand))
                    node.append((prims[cand[kk]], j))
                nodes.append(tuple(node))
                start += n_in
            cells.append(nodes)
        concat = list(range(2 + steps - self.model.multiplier, 2 + steps))
        return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format), *self.edge_weights())

    # ------------------------------------------------------------------ Lightning hooks

    def configure_optimizers(self):
        """The DARTS family's two optimisers (weights SGD + cosine, then alphas Adam), stepped on one loss."""
        return supernet_optimizers(self)

    def _schedule_epochs(self) -> int:
        return cosine_schedule_epochs(self)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"SNAS is single level and expects (inputs, targets) batches, got {type(batch).__name__}")
        x, y = batch
        x = x.contiguous(memory_format=self.memory_format)
        w_opt, a_opt = self.optimizers()
        weights = self.sample_edge_weights()
        logits = self.model(x, *weights)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SNAS search diverged: loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}")
        w_opt.zero_grad()
        a_opt.zero_grad()
        self.manual_backward(loss)  # one loss, one backward: weights and alphas (DDP all-reduces both)
        if self.hparams.resource_weight > 0 and self.resource_costs is not None:
            samples = [F.one_hot(w.detach().argmax(-1), w.shape[-1]) for w in weights]
            costs = [c.to(self.device) for c in self.resource_costs]
            extra = all_reduce_mean(score_function_resource_grad(self.arch_parameters(), samples, costs))
            for a, g in zip(self.arch_parameters(), extra):
                a.grad = g * self.hparams.resource_weight if a.grad is None else a.grad + self.hparams.resource_weight * g
            self.log("snas/expected_cost", expected_resource_cost(
                [a.detach() for a in self.arch_parameters()], costs), on_step=True, on_epoch=True)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(w_opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        if self.hparams.alpha_grad_clip > 0:
            self.clip_gradients(a_opt, gradient_clip_val=self.hparams.alpha_grad_clip, gradient_clip_algorithm="norm")
        w_opt.step()
        a_opt.step()
        acc = (logits.argmax(-1) == y).float().mean()
        self.log_dict({"train/loss": loss.detach(), "train/acc": acc}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=len(y))
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        sched = self.lr_schedulers()
        self.log("search/w_lr", sched.get_last_lr()[0])
        sched.step()
        self.log_dict({f"arch/entropy_{cell}": edge_entropy(a) for cell, a in self.alphas.items()})

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log_dict({"val/loss": F.cross_entropy(logits, y), "val/acc": (logits.argmax(-1) == y).float().mean()},
                      prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["snas_temperature"] = self.temperature
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if "snas_temperature" in checkpoint:
            self.temperature = checkpoint["snas_temperature"]
        load_rng_states(checkpoint, type(self).__name__)

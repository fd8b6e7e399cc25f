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

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.distributed import all_reduce_mean
from lit_automl.nas.supernet import Backward, SupernetSearch
from lit_automl.rng import keyed_generator
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import node_edge_slices, output_concat

__all__ = ["SNAS", "expected_resource_cost", "gumbel_softmax_sample", "score_function_resource_grad"]

RESOURCES = ("params", "flops")


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
    tau = check_real("tau", tau, low=0, low_open=True)
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


class SNAS(SupernetSearch):
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
      ``seed=0``, ``memory_format="auto"``: this library's choice.

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
        resource_weight: weight of the resource term (``>= 0``; 0 leaves the search unconstrained while
            ``snas/expected_cost`` is still logged).
        input_size: spatial size of the probe input used to count FLOPs, read with ``resource="flops"`` only
            (a recipe may declare its data's size for when FLOP costs are switched on); with FLOP costs the
            datamodule's ``image_size`` (at setup) and the training images (every step) must have this size:
            FLOPs scale with the image area.
        alpha_grad_clip: max norm of the alphas' gradient (``>= 0``; 0 disables clipping).
        seed: seed of the architecture-noise generator (combined with ``global_step``).
        **kwargs: the shared supernet settings of :class:`~lit_automl.nas.supernet.SupernetSearch`
            (whose defaults are the ones listed above).
    """

    def __init__(
        self,
        tau: float = 1.0,
        hard: bool = False,
        resource: Optional[str] = None,
        resource_weight: float = 0.0,
        input_size: int = 32,
        alpha_init_std: float = 0.01,
        alpha_grad_clip: float = 10.0,
        seed: int = 0,
        **kwargs: Any,
    ):
        check_real("tau", tau, low=0, low_open=True)
        check_bool("hard", hard)
        check_choice("resource", resource, (None,) + RESOURCES)
        check_real("resource_weight", resource_weight, low=0)
        check_int("input_size", input_size, low=1)
        check_int("seed", seed, low=0)
        if resource_weight > 0 and resource is None:
            raise ValueError(f"resource_weight={resource_weight!r} needs resource='params' or 'flops', got resource=None")
        super().__init__(alpha_init_std=alpha_init_std, alpha_grad_clip=alpha_grad_clip, **kwargs)
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
        self._temperature = check_real("tau", value, low=0, low_open=True)

    def op_costs(self, resource: str, input_size: int = 32) -> List[torch.Tensor]:
        """Per-op costs ``[normal, reduce]``, each (num_edges, num_ops), in millions, summed over the
        cells of that type (alphas are shared per cell type). ``none`` costs 0."""
        check_choice("resource", resource, RESOURCES)
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

    def data_settings(self) -> Dict[str, Tuple[str, Any]]:
        """The shared ones and, with FLOP costs, the probe's ``input_size`` against the data's ``image_size``."""
        settings = super().data_settings()
        if self.hparams.resource == "flops":
            settings["image_size"] = ("input_size", self.hparams.input_size)
        return settings

    def check_probe_size(self, x: torch.Tensor) -> None:
        """With FLOP costs, refuse images of another size than the probe's ``input_size`` (FLOPs scale
        with the image area, so the costs would be off by that factor)."""
        size = self.hparams.input_size
        if self.hparams.resource == "flops" and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"SNAS counted its FLOP costs on {size}x{size} inputs (input_size={size}) but the training images "
                f"are {x.shape[-2]}x{x.shape[-1]}: set input_size to the images' size")

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

    def genotype(self) -> Genotype:
        """Child network: argmax op of every edge; every edge whose argmax is not ``none`` is kept
        (the authors' code derives the same "all edges" child, ``none`` edges contributing nothing).

        A node whose edges all choose ``none`` keeps its strongest non-``none`` edge (a node needs
        an input; this library's choice).
        """
        prims = list(self.primitives)
        steps = self.model.steps
        cand = [k for k, p in enumerate(prims) if p != "none"]
        cells = []
        for alpha in self.arch_parameters():
            a = alpha.detach().cpu()
            nodes = []
            for edges in node_edge_slices(steps):
                block = a[edges]
                node = [(prims[k], j) for j, k in enumerate(block.argmax(-1).tolist()) if prims[k] != "none"]
                if not node:
                    j, kk = divmod(int(block[:, cand].argmax()), len(cand))
                    node.append((prims[cand[kk]], j))
                nodes.append(tuple(node))
            cells.append(nodes)
        concat = output_concat(steps, self.model.multiplier)
        return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)

    # ------------------------------------------------------------------ the search step

    def search_step(self, batch: Any, optimizers: Sequence[torch.optim.Optimizer], backward: Optional[Backward] = None,
                    batch_idx: int = 0) -> Dict[str, torch.Tensor]:
        """One sampled child, one loss, one backward for weights and alphas (DDP all-reduces both), the
        resource term's score-function gradient added to the alphas', then both optimisers step."""
        x, y = self.plain_batch(batch)
        self.check_probe_size(x)
        w_opt, a_opt = optimizers
        weights = self.sample_edge_weights()
        logits = self.model(self.format_input(x), *weights)
        loss = F.cross_entropy(logits, y)
        self.check_finite(loss, "training loss", batch_idx, x)
        w_opt.zero_grad()
        a_opt.zero_grad()
        self.run_backward(loss, backward)
        metrics = {"train/loss": loss.detach(), "train/acc": (logits.argmax(-1) == y).float().mean()}
        if self.resource_costs is not None:
            costs = [c.to(self.device) for c in self.resource_costs]
            if self.hparams.resource_weight > 0:
                samples = [F.one_hot(w.detach().argmax(-1), w.shape[-1]) for w in weights]
                extra = all_reduce_mean(score_function_resource_grad(self.arch_parameters(), samples, costs))
                for a, g in zip(self.arch_parameters(), extra):
                    a.grad = g * self.hparams.resource_weight if a.grad is None else a.grad + self.hparams.resource_weight * g
            metrics["snas/expected_cost"] = expected_resource_cost([a.detach() for a in self.arch_parameters()], costs)
        self.weight_step(w_opt)
        self.architecture_step(a_opt)
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["snas_temperature"] = self.temperature
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if "snas_temperature" in checkpoint:
            self.temperature = checkpoint["snas_temperature"]
        super().on_load_checkpoint(checkpoint)

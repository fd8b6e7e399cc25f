"""BayesNAS: ARD priors on the switches of the one-shot supernet, pruned by their variances.

Zhou, Yang, Wang & Pan, "BayesNAS: A Bayesian Approach for Neural Architecture Search", ICML 2019
(and the authors' search code, github.com/BayesNAS/BayesNAS). What is implemented (maths in
:mod:`lit_automl.nas.ard`):

* **Switches** (Fig. 1 (d)): every edge ``e`` of a cell type has an edge switch ``s_e`` (the zero
  operation's gate) and every non-``none`` op ``k`` an op switch ``s_ek``; the supernet is handed the
  op weights ``W_ek = s_e * s_ek`` (0 for pruned ops, so :class:`MixedEdge` does not run them).
* **HARD prior** (Fig. 1 (c), (f)): ``s ~ N(0, gamma)`` with the hierarchy
  op <- its edge (``gamma_ek <- (1/gamma_ek + 1/gamma_e)^{-1}``, the authors' code) and, with
  ``node_dependency``, edge out of node ``i`` <- node ``i``'s incoming relevance
  ``sum_{e into i} gamma_e`` (our reading of the predecessor's "superior control" of Fig. 1 (c)).
* **Training** (Algorithm 1, step "update w"): one epoch of weights and switches on
  ``CE + lambda_origin sum_e omega_e |s_e| + lambda_child sum_ek omega_ek |s_ek|`` (the reweighted
  L1 objective; switches are tied per cell type, so each group norm is an absolute value).
* **Laplace update** (Algorithm 1, after each epoch): ``C = (Gamma^{-1} + H/lambda)^{-1}``,
  ``omega = sqrt(1/gamma - C/gamma^2)``, ``gamma = |s| / omega``, then the HARD combination. ``H`` is
  the diagonal Gauss-Newton matrix of the training loss w.r.t. the switches, estimated on the epoch's
  batches by sampled labels (the paper propagates a diagonal Hessian layer by layer; ours estimates the
  same Gauss-Newton quantity without its intermediate diagonal approximations), averaged over ranks.
* **Pruning**: an op whose ``gamma`` falls below ``prune_threshold`` is masked out for good (masks only
  ever remove); an edge dies with its last op; every node keeps its strongest op so the cell stays a
  valid DAG. Masks are buffers: checkpointed and identical on every DDP rank.

The paper's text was not at hand while this was written (only its abstract, Fig. 1's captions, the
experimental settings and the authors' code were), so steps are cited by Algorithm 1 and Fig. 1 rather
than by equation numbers; :mod:`lit_automl.nas.ard` names the closed forms' published source.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_bool, check_int, check_real
from lit_automl.distributed import all_reduce_mean
from lit_automl.nas.ard import ard_gamma, ard_omega, combine_with_parent, mc_ggn_diagonal, reweighted_l1
from lit_automl.nas.supernet import Backward, SupernetSearch
from lit_automl.rng import keyed_generator
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, edge_endpoints, edge_sources, node_edge_slices, output_concat

__all__ = ["BayesNAS", "hard_gammas", "idle_parameters", "prune_masks"]

F64 = torch.float64


# ---------------------------------------------------------------------------- cell graph helpers

def hard_gammas(edge_gamma: torch.Tensor, op_gamma: torch.Tensor, steps: int,
                node_dependency: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply the HARD dependencies to raw ARD variances, node by node (topological order).

    ``edge_gamma``: (E,), ``op_gamma``: (E, K), 0 where pruned. Returns effective ``(edge (E,), op (E, K))``:
    an edge out of intermediate node ``i`` is combined with node ``i``'s relevance (the sum of its
    incoming edges' effective variances) when ``node_dependency``; every op with its edge.
    """
    edge_eff = edge_gamma.to(F64).clone()
    sources = edge_sources(steps)
    relevance: Dict[int, torch.Tensor] = {}
    for i, sl in enumerate(node_edge_slices(steps)):
        if node_dependency:
            for e in range(sl.start, sl.stop):
                if sources[e] >= 2:
                    edge_eff[e] = combine_with_parent(edge_eff[e], relevance[sources[e]])
        relevance[i + 2] = edge_eff[sl].sum()
    op_eff = combine_with_parent(op_gamma.to(F64), edge_eff.unsqueeze(-1))
    return edge_eff, op_eff


def prune_masks(edge_alive: torch.Tensor, op_alive: torch.Tensor, op_gamma: torch.Tensor, threshold: float,
                steps: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """New ``(edge_alive (E,), op_alive (E, K))`` after pruning by ``gamma < threshold``.

    Only removes: an op survives if it was alive, its edge was alive and ``gamma >= threshold``; a node
    left without ops keeps its previously alive op of largest ``gamma`` (ours: a genotype node needs an
    input); an edge survives while it keeps an op.
    """
    was = op_alive & edge_alive.unsqueeze(-1)
    keep = was & (op_gamma >= threshold)
    for sl in node_edge_slices(steps):
        if was[sl].any() and not keep[sl].any():
            scores = torch.where(was[sl], op_gamma[sl].to(F64), torch.full_like(op_gamma[sl], -torch.inf, dtype=F64))
            e, k = divmod(int(scores.flatten().argmax()), scores.shape[1])
            keep[sl.start + e, k] = True
    return edge_alive & keep.any(dim=-1), keep


def idle_parameters(model: nn.Module, alive: Sequence[List[List[bool]]]) -> List[nn.Parameter]:
    """Supernet parameters that cannot reach the logits under the op masks ``alive`` ``[normal, reduce]``
    (each E x K): pruned ops, ops into nodes nothing reads, the preprocessing of unread cell inputs, and
    whole cells whose output no later cell reads. Cell ``k`` reads cell ``k-1`` as input 1 and cell
    ``k-2`` as input 0 (the stem before that); the last cell feeds the classifier."""
    cells = list(model.cells)
    out_used = [False] * len(cells)
    out_used[-1] = True
    idle: List[nn.Parameter] = []
    for k in reversed(range(len(cells))):
        if not out_used[k]:
            idle.extend(cells[k].parameters())
            continue
        cell_idle, reads = _idle_in_cell(cells[k], alive[int(cells[k].reduction)])
        idle.extend(cell_idle)
        if 1 in reads and k >= 1:
            out_used[k - 1] = True
        if 0 in reads and k >= 2:
            out_used[k - 2] = True
    return idle


def _idle_in_cell(cell: nn.Module, alive: List[List[bool]]) -> Tuple[List[nn.Parameter], set]:
    """Idle parameters of one search cell whose output is used, and the cell inputs (0, 1) it reads."""
    edges = edge_endpoints(cell.steps)
    used = set(output_concat(cell.steps, cell.multiplier))
    for e in reversed(range(len(edges))):  # a node's readers all come later, so its use is settled
        src, dst = edges[e]
        if dst in used and any(alive[e]):
            used.add(src)
    idle: List[nn.Parameter] = []
    for e, (_, dst) in enumerate(edges):
        for k, op in enumerate(cell.edges[e].ops):
            if not (alive[e][k] and dst in used):
                idle.extend(op.parameters())
    for index, pre in ((0, cell.preprocess0), (1, cell.preprocess1)):
        if index not in used:
            idle.extend(pre.parameters())
    return idle, used & {0, 1}


# ---------------------------------------------------------------------------- the module

class BayesNAS(SupernetSearch):
    """BayesNAS search over the shared DARTS supernet (Zhou et al., ICML 2019).

    Defaults are the CIFAR-10 proxy search. From the paper's experimental setup: SGD with momentum
    0.9 and a fixed learning rate of 0.1 (its batch of 18 goes in the datamodule); the paper reports
    lambda in {0.01, 0.007, 0.005}. From the authors' search code: weight decay 1e-4 on the weights and
    none on the switches (same SGD settings), op switches initialised at 1, a supernet of 8 cells with
    C=36, ``lambda_origin = lambda_child = 0.01`` (their README's example). Ours, where neither says:
    edge switches start at ``1 / #ops`` (the untrained supernet then averages its ops, as DARTS'
    uniform softmax does; with every weight at 1 the 14-edge DARTS cell diverges at lr 0.1), ``gamma``
    and ``omega`` start at 1 (the code draws them at random), ``prune_threshold=0.01``, no gradient
    clipping, the node dependency, the Gauss-Newton curvature estimate. The paper trains one epoch and
    then updates (``max_epochs=1`` in the CIFAR recipe); every further epoch repeats Algorithm 1's loop.

    Batches are plain ``(x, y)`` pairs (single level). Optimisers, in order: ``[weights SGD, switches
    SGD]``, both stepped on one backward; no learning-rate schedule (``w_lr_min=None``). Switches (architecture parameters, fixed order):
    ``alpha_normal, alpha_reduce`` (op switches, (E, K); the ``none`` column is never used) and
    ``edge_normal, edge_reduce`` (edge switches, (E,)). Buffers (cell types stacked normal, reduce):
    ``op_mask`` (2, E, K) and ``edge_mask`` (2, E) bool, ``op_gamma``, ``edge_gamma``, ``op_omega``,
    ``edge_omega`` float64. Documented attributes: ``alphas``, ``genotype()``, ``gammas``,
    ``prune_threshold`` (writable). Weights that pruning cut off from the loss get a zero gradient each
    step, so DDP runs with ``find_unused_parameters=False``.

    Args:
        lambda_origin: sparsity strength of the edge ("origin") switches, > 0.
        lambda_child: sparsity strength of the op ("child") switches, > 0.
        prune_threshold: ops with effective ``gamma`` below it are pruned (>= 0; 0 never prunes).
        node_dependency: combine an edge's ``gamma`` with its source node's incoming relevance.
        gamma_init: initial ARD variance (> 0).
        curvature_every: estimate the curvature on every n-th training batch (>= 1).
        seed: seed of the label sampler of the curvature estimate (with ``global_step`` and rank).
        alpha_momentum, alpha_weight_decay: the switches' SGD (``alpha_lr`` its learning rate;
            ``alpha_betas``, Adam's, does not apply and is refused unless left at its default).
        **kwargs: the shared supernet settings of :class:`~lit_automl.nas.supernet.SupernetSearch`.
    """

    unused_settings = {"alpha_betas": "steps its switches with SGD, not Adam"}

    def __init__(
        self,
        C: int = 36,
        lambda_origin: float = 0.01,
        lambda_child: float = 0.01,
        prune_threshold: float = 0.01,
        node_dependency: bool = True,
        gamma_init: float = 1.0,
        w_lr: float = 0.1,
        w_lr_min: Optional[float] = None,
        w_weight_decay: float = 1e-4,
        grad_clip: float = 0.0,
        alpha_lr: float = 0.1,
        alpha_momentum: float = 0.9,
        alpha_weight_decay: float = 0.0,
        alpha_init_std: float = 0.0,
        curvature_every: int = 1,
        seed: int = 0,
        **kwargs: Any,
    ):
        check_real("lambda_origin", lambda_origin, low=0.0, low_open=True)
        check_real("lambda_child", lambda_child, low=0.0, low_open=True)
        check_real("prune_threshold", prune_threshold, low=0.0)
        check_real("gamma_init", gamma_init, low=0.0, low_open=True)
        check_bool("node_dependency", node_dependency)
        check_int("curvature_every", curvature_every, low=1, allowed="a positive int")
        check_int("seed", seed)
        check_real("alpha_momentum", alpha_momentum, low=0, high=1, high_open=True, allowed="in [0, 1)")
        super().__init__(C=C, w_lr=w_lr, w_lr_min=w_lr_min, w_weight_decay=w_weight_decay, grad_clip=grad_clip,
                         alpha_lr=alpha_lr, alpha_weight_decay=alpha_weight_decay, alpha_init_std=alpha_init_std,
                         **kwargs)
        self.prune_threshold = float(prune_threshold)
        self._curvature: Optional[List[torch.Tensor]] = None  # per-rank sums, not buffers (DDP would broadcast them)
        self._curvature_count = 0
        self._idle_key: Optional[torch.Tensor] = None
        self._idle: List[nn.Parameter] = []

    def init_architecture(self, alpha_init_std: float) -> None:
        """Op switches ``alpha_*`` (1 + noise, authors' code), edge switches ``edge_*`` (``1 / #ops``), the
        masks and the ARD buffers."""
        if all(p == "none" for p in self.primitives):
            raise ValueError(f"primitives {list(self.primitives)} contain no operation other than 'none'")
        super().init_architecture(alpha_init_std)
        num_edges, num_ops = self.model.alpha_shape
        with torch.no_grad():  # op switches start at 1 (authors' code), plus optional noise
            self.alpha_normal.add_(1.0)
            self.alpha_reduce.add_(1.0)
        edge_init = 1.0 / sum(p != "none" for p in self.primitives)
        self.edge_normal = nn.Parameter(torch.full((num_edges,), edge_init))
        self.edge_reduce = nn.Parameter(torch.full((num_edges,), edge_init))

        gamma_init = float(self.hparams.gamma_init)
        real = torch.tensor([p != "none" for p in self.primitives])
        op_mask = real.expand(2, num_edges, num_ops).clone()  # (2, E, K)
        self.register_buffer("op_mask", op_mask)
        self.register_buffer("edge_mask", torch.ones(2, num_edges, dtype=torch.bool))  # (2, E)
        self.register_buffer("op_gamma", op_mask.to(F64) * gamma_init)  # (2, E, K)
        self.register_buffer("edge_gamma", torch.full((2, num_edges), gamma_init, dtype=F64))  # (2, E)
        self.register_buffer("op_omega", op_mask.to(F64))  # (2, E, K): omega starts at 1
        self.register_buffer("edge_omega", torch.ones(2, num_edges, dtype=F64))  # (2, E)

    # ------------------------------------------------------------------ architecture

    def arch_parameters(self) -> List[nn.Parameter]:
        """Switches in their fixed order: op switches (normal, reduce), then edge switches (normal, reduce)."""
        return [self.alpha_normal, self.alpha_reduce, self.edge_normal, self.edge_reduce]

    def switches(self, cell: int) -> Tuple[nn.Parameter, nn.Parameter]:
        """``(edge switches (E,), op switches (E, K))`` of cell type ``cell`` (0 normal, 1 reduce)."""
        return (self.edge_normal, self.alpha_normal) if cell == 0 else (self.edge_reduce, self.alpha_reduce)

    def alive(self, cell: int) -> torch.Tensor:
        """(E, K) bool: ops that are neither pruned, on a pruned edge, nor ``none``."""
        return self.op_mask[cell] & self.edge_mask[cell].unsqueeze(-1)

    @property
    def gammas(self) -> Dict[str, torch.Tensor]:
        """Effective ARD variances of the op switches by cell type, (E, K) float64 (0 = pruned)."""
        return {name: self.op_gamma[c] for c, name in enumerate(CELL_TYPES)}

    def edge_weights(self, alphas: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
        """Op weights ``[normal, reduce]`` handed to the supernet: ``s_e * s_ek``, exactly 0 when pruned.

        ``alphas``: the four switches in :meth:`arch_parameters` order (default: the module's)."""
        a_normal, a_reduce, e_normal, e_reduce = self.arch_parameters() if alphas is None else alphas
        switches = ((e_normal, a_normal), (e_reduce, a_reduce))
        out = []
        for c, (edge, ops) in enumerate(switches):
            out.append(torch.where(self.alive(c), edge.unsqueeze(-1) * ops, torch.zeros_like(ops)))
        return out

    def sparsity_penalty(self) -> torch.Tensor:
        """``lambda_origin sum omega_e |s_e| + lambda_child sum omega_ek |s_ek|`` over alive switches."""
        hp = self.hparams
        edges = [self.switches(c)[0] for c in range(2)]
        ops = [self.switches(c)[1] for c in range(2)]
        return reweighted_l1(
            edges + ops,
            [self.edge_omega[0], self.edge_omega[1], self.op_omega[0], self.op_omega[1]],
            [self.edge_mask[0], self.edge_mask[1], self.alive(0), self.alive(1)],
            [hp.lambda_origin, hp.lambda_origin, hp.lambda_child, hp.lambda_child],
        )

    def genotype(self) -> Genotype:
        """Every surviving ``(op, input)`` of every node, strongest ``gamma`` first (a node may keep several
        ops on one input, as the authors' derived cells do); pruned edges and ops are left out."""
        steps, edges = self.model.steps, edge_endpoints(self.model.steps)
        cells = []
        for c in range(2):
            alive, gamma = self.alive(c).cpu(), self.op_gamma[c].cpu()
            nodes = []
            for sl in node_edge_slices(steps):
                found = [(-float(gamma[e, k]), e, k) for e in range(sl.start, sl.stop)
                         for k in range(alive.shape[1]) if alive[e, k]]
                nodes.append(tuple((self.primitives[k], edges[e][0]) for _, e, k in sorted(found)))
            cells.append(nodes)
        concat = output_concat(steps, self.model.multiplier)
        return Genotype(normal=cells[0], normal_concat=concat, reduce=cells[1], reduce_concat=concat)

    # ------------------------------------------------------------------ the Laplace / ARD update

    @torch.no_grad()
    def ard_update(self, curvature: Optional[Sequence[torch.Tensor]] = None) -> None:
        """Algorithm 1's hyperparameter step, then pruning: every rank computes the same result.

        ``curvature``: Gauss-Newton diagonals shaped like :meth:`arch_parameters` (already averaged);
        ``None`` uses the epoch's estimate, averaged over batches and all-reduced over ranks.
        """
        if curvature is None:
            curvature = self._epoch_curvature()
            if curvature is None:
                return
        h_ops, h_edges = curvature[:2], curvature[2:]
        hp, steps = self.hparams, self.model.steps
        for c in range(2):
            edge_s, op_s = self.switches(c)
            alive_e, alive_k = self.edge_mask[c], self.alive(c)
            omega_e = ard_omega(self.edge_gamma[c], h_edges[c], hp.lambda_origin)  # (E,)
            omega_k = ard_omega(self.op_gamma[c], h_ops[c], hp.lambda_child)  # (E, K)
            gamma_e = ard_gamma(edge_s, omega_e) * alive_e
            gamma_k = ard_gamma(op_s, omega_k) * alive_k
            gamma_e, gamma_k = hard_gammas(gamma_e, gamma_k, steps, hp.node_dependency)
            new_e, new_k = prune_masks(alive_e, alive_k, gamma_k, self.prune_threshold, steps)
            self.edge_mask[c] = new_e
            self.op_mask[c] &= new_k
            self.edge_gamma[c] = gamma_e * new_e
            self.op_gamma[c] = gamma_k * self.alive(c)
            self.edge_omega[c] = omega_e * new_e
            self.op_omega[c] = omega_k * self.alive(c)

    def _epoch_curvature(self) -> Optional[List[torch.Tensor]]:
        """Mean Gauss-Newton diagonal over the epoch's estimates, averaged over ranks; resets the sums."""
        params = self.arch_parameters()
        local = self._curvature or [torch.zeros_like(p, dtype=F64) for p in params]
        count = torch.tensor([float(self._curvature_count)], dtype=F64, device=local[0].device)
        means = [t / max(self._curvature_count, 1) for t in local]
        reduced = all_reduce_mean(means + [count])
        self._curvature, self._curvature_count = None, 0
        if float(reduced[-1]) == 0.0:
            return None
        return reduced[:-1]

    def _accumulate_curvature(self, logits: torch.Tensor) -> None:
        gen = keyed_generator(self.hparams.seed, self.global_step, self.global_rank)
        est = mc_ggn_diagonal(logits, self.arch_parameters(), gen)
        if self._curvature is None:
            self._curvature = est
        else:
            self._curvature = [a + b for a, b in zip(self._curvature, est)]
        self._curvature_count += 1

    # ------------------------------------------------------------------ DDP: idle weights still get a gradient

    def _idle_parameters(self) -> List[nn.Parameter]:
        """Weights that no longer reach the loss (cached until the masks change)."""
        key = torch.stack([self.alive(0), self.alive(1)]).cpu()
        if self._idle_key is None or not torch.equal(key, self._idle_key):
            self._idle_key = key
            self._idle = idle_parameters(self.model, key.tolist())
        return self._idle

    def _zero_touch(self) -> torch.Tensor:
        """``0 * sum(idle weights)``: a zero gradient for every weight pruning cut off from the loss, so
        every DDP rank's reducer sees all parameters (no ``find_unused_parameters`` needed)."""
        idle = self._idle_parameters()
        if not idle:
            return torch.zeros((), device=self.device)
        return 0.0 * sum(p.sum() for p in idle)

    # ------------------------------------------------------------------ the search step

    def architecture_optimizer(self) -> torch.optim.Optimizer:
        """SGD on the switches, fixed learning rate (paper: "fixed learning rate 0.1")."""
        hp = self.hparams
        return torch.optim.SGD(self.arch_parameters(), lr=hp.alpha_lr, momentum=hp.alpha_momentum,
                               weight_decay=hp.alpha_weight_decay)

    def search_step(self, batch: Any, optimizers: Sequence[torch.optim.Optimizer], backward: Optional[Backward] = None,
                    batch_idx: int = 0) -> Dict[str, torch.Tensor]:
        """Algorithm 1's "update w": weights and switches on cross-entropy + reweighted L1, one backward;
        every ``curvature_every``-th batch adds to the epoch's curvature estimate."""
        x, y = self.plain_batch(batch)
        w_opt, a_opt = optimizers
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        self.check_finite(ce, "training loss", batch_idx, x)
        penalty = self.sparsity_penalty()
        if batch_idx % self.hparams.curvature_every == 0:
            self._accumulate_curvature(logits)
        w_opt.zero_grad()
        a_opt.zero_grad()
        self.run_backward(ce + penalty + self._zero_touch(), backward)
        self.weight_step(w_opt)
        self.architecture_step(a_opt)
        return {"train/loss": ce.detach(), "train/acc": (logits.argmax(-1) == y).float().mean(),
                "bayesnas/penalty": penalty.detach()}

    def on_train_epoch_end(self) -> None:
        self.ard_update()
        super().on_train_epoch_end()

    def epoch_metrics(self) -> Dict[str, Any]:
        return {**self.search_statistics(), "bayesnas/ops": float(self.alive(0).sum() + self.alive(1).sum())}

    def search_statistics(self) -> Dict[str, float]:
        """Surviving ops and edges and the min / median / max effective ``gamma`` of alive ops, per cell type."""
        stats: Dict[str, float] = {}
        for c, name in enumerate(CELL_TYPES):
            alive = self.alive(c)
            gamma = self.op_gamma[c][alive]
            stats[f"bayesnas/ops_{name}"] = float(alive.sum())
            stats[f"bayesnas/edges_{name}"] = float(self.edge_mask[c].sum())
            if gamma.numel():
                stats[f"bayesnas/gamma_min_{name}"] = float(gamma.min())
                stats[f"bayesnas/gamma_median_{name}"] = float(gamma.median())
                stats[f"bayesnas/gamma_max_{name}"] = float(gamma.max())
        return stats

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["bayesnas"] = {"prune_threshold": self.prune_threshold, "curvature_count": self._curvature_count,
                                  "curvature": None if self._curvature is None else [t.cpu() for t in self._curvature]}
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("bayesnas")
        if state is not None:
            self.prune_threshold = float(state["prune_threshold"])
            self._curvature_count = int(state["curvature_count"])
            self._curvature = None if state["curvature"] is None else [t.to(self.device) for t in state["curvature"]]
        self._idle_key = None
        super().on_load_checkpoint(checkpoint)

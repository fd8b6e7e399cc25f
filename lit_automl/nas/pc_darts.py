"""PC-DARTS: partial channel connections and edge normalisation on the DARTS supernet.

Xu, Xie, Zhang, Chen, Qi, Tian & Xiong, "PC-DARTS: Partial Channel Connections for
Memory-Efficient Architecture Search", ICLR 2020.

Notation (Sec. 3.2-3.3): on edge ``(i, j)`` from node ``x_i`` to node ``x_j``, ``alpha_{i,j}^o`` the
op weights, ``S_{i,j}`` the channel mask keeping ``1/K`` of the channels, ``beta_{i,j}`` the edge
weight.

* partial channels (eq. 2): ``f_{i,j}(x_i) = sum_o softmax(alpha_{i,j})_o * o(S * x_i) + (1 - S) * x_i``
  followed by a channel shuffle; the bypass is max pooled on stride-2 edges (authors' code). This
  lives in :class:`~lit_automl.spaces.cells.MixedEdge` (``partial_channels=K``).
* edge normalisation (eq. 3): ``x_j = sum_{i<j} softmax_i(beta_{., j}) * f_{i,j}(x_i)``, the softmax
  over each node's incoming edges, scaling the whole edge output (bypassed channels included): the
  supernet's ``scale_*`` inputs, so there is no second supernet.
* derivation (Sec. 3.3): the edge's strength is ``softmax(beta) * softmax(alpha)``; DARTS's rule
  (top-2 edges per node, strongest non-``none`` op) applied to those products.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_int
from lit_automl.nas.darts import DARTS
from lit_automl.spaces.derive import derive_genotype, edge_entropy
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import node_edge_slices, num_search_edges

__all__ = ["PCDARTS", "node_softmax"]


def node_softmax(beta: torch.Tensor, steps: int) -> torch.Tensor:
    """Edge normalisation (PC-DARTS eq. 3): softmax of ``beta`` over each node's incoming edges.

    ``beta``: (num_edges,), edges ordered node by node (node ``i`` has ``i + 2`` inputs).
    Returns (num_edges,), summing to 1 over every node's edges.
    """
    num_edges = num_search_edges(steps)
    if beta.dim() != 1 or beta.shape[0] != num_edges:
        raise ValueError(f"beta must have shape ({num_edges},) for steps={steps}, got {tuple(beta.shape)}")
    return torch.cat([F.softmax(beta[edges], dim=0) for edges in node_edge_slices(steps)])


class PCDARTS(DARTS):
    """PC-DARTS search (Xu et al., ICLR 2020): DARTS with partial channel edges and edge weights.

    Defaults are the paper's CIFAR-10 search (Sec. 4.2): K = 4, C=16, 8 cells, first order,
    50 epochs of which the first 15 train only the weights, batch 256 per half, weights SGD lr 0.1
    (momentum 0.9, weight decay 3e-4, cosine-annealed to 0 — the authors' code), gradient clip 5;
    alphas and betas Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3, initialised at
    1e-3 * randn (authors' code).

    Architecture parameters, in this fixed order: ``alpha_normal, alpha_reduce, beta_normal,
    beta_reduce`` (all in the Adam optimiser, none in the weight optimiser). ``alphas`` stays the
    documented dict of raw op weights, so the DARTS-family callbacks work unchanged;
    ``edge_strengths()`` gives the normalised ``softmax(beta) * softmax(alpha)`` the genotype is
    derived from. Under DDP every architecture parameter takes part in every forward, so no
    ``find_unused_parameters`` is needed.

    Args (beyond :class:`~lit_automl.nas.darts.DARTS`):
        partial_channels: K, the fraction ``1/K`` of channels sent through the ops; must divide
            every cell's channel count (C, 2C, 4C).
    """

    supported_spaces = ("darts",)  # the DARTS space only (SupernetSearch.space)

    def __init__(
        self,
        partial_channels: int = 4,
        order: int = 1,
        w_lr: float = 0.1,
        w_lr_min: float = 0.0,
        alpha_lr: float = 6e-4,
        arch_warmup_epochs: int = 15,
        **kwargs: Any,
    ):
        check_int("partial_channels", partial_channels, low=1, allowed="a positive int",
                  hint="K of PC-DARTS, 4 in the paper")
        super().__init__(order=order, w_lr=w_lr, w_lr_min=w_lr_min, alpha_lr=alpha_lr,
                         arch_warmup_epochs=arch_warmup_epochs, **kwargs)

    def init_architecture(self, alpha_init_std: float) -> None:
        """The alphas, then the edge-normalisation parameters ``beta_normal``, ``beta_reduce`` (num_edges,)."""
        super().init_architecture(alpha_init_std)
        num_edges = self.model.num_edges
        self.beta_normal = nn.Parameter(alpha_init_std * torch.randn(num_edges))
        self.beta_reduce = nn.Parameter(alpha_init_std * torch.randn(num_edges))

    def supernet_options(self) -> Dict[str, Any]:
        return {"partial_channels": self.hparams.partial_channels}

    def arch_parameters(self) -> List[nn.Parameter]:
        """Architecture parameters in their fixed order (alpha normal, alpha reduce, beta normal, beta reduce)."""
        return [self.alpha_normal, self.alpha_reduce, self.beta_normal, self.beta_reduce]

    @property
    def betas(self) -> Dict[str, nn.Parameter]:
        """Raw edge-normalisation parameters by cell type, ``{"normal": ..., "reduce": ...}``."""
        return {"normal": self.beta_normal, "reduce": self.beta_reduce}

    def edge_weights(self, alphas: Optional[Sequence[torch.Tensor]] = None) -> List[torch.Tensor]:
        """What the supernet is handed: ``[softmax(alpha_normal), softmax(alpha_reduce),
        node_softmax(beta_normal), node_softmax(beta_reduce)]`` (eq. 2-3: op weights, then the
        weight of each whole edge, bypassed channels included).

        ``alphas``: the four architecture parameters in :meth:`arch_parameters` order.
        """
        a_normal, a_reduce, b_normal, b_reduce = self.arch_parameters() if alphas is None else alphas
        steps = self.model.steps
        return [F.softmax(a_normal, dim=-1), F.softmax(a_reduce, dim=-1),  # (num_edges, num_ops)
                node_softmax(b_normal, steps), node_softmax(b_reduce, steps)]  # (num_edges,)

    def edge_strengths(self) -> Dict[str, torch.Tensor]:
        """``softmax(beta)[e] * softmax(alpha[e])`` per cell type, detached: what the genotype ranks (Sec. 3.3)."""
        w_normal, w_reduce, s_normal, s_reduce = (w.detach() for w in self.edge_weights())
        return {"normal": s_normal.unsqueeze(-1) * w_normal, "reduce": s_reduce.unsqueeze(-1) * w_reduce}

    def genotype(self) -> Genotype:
        """DARTS's derivation (top-2 edges per node, strongest non-``none`` op) on :meth:`edge_strengths`."""
        strengths = self.edge_strengths()
        return derive_genotype(strengths["normal"], strengths["reduce"], self.model.edge_primitives,
                               self.model.steps, self.model.multiplier, k=2)

    def epoch_metrics(self) -> Dict[str, Any]:
        """The op entropies, and the mean entropy of each cell type's edge normalisation."""
        steps = self.model.steps
        return {**super().epoch_metrics(),
                **{f"arch/edge_entropy_{cell}": _node_entropy(b.detach(), steps) for cell, b in self.betas.items()}}


def _node_entropy(beta: torch.Tensor, steps: int) -> torch.Tensor:
    """Mean over nodes of the entropy of the edge normalisation (how undecided the edges are)."""
    return torch.stack([edge_entropy(beta[edges].unsqueeze(0)) for edges in node_edge_slices(steps)]).mean()

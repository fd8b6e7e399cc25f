"""Automatic relevance determination (ARD) maths of BayesNAS, in float64.

Zhou, Yang, Wang & Pan, "BayesNAS: A Bayesian Approach for Neural Architecture Search", ICML 2019.
BayesNAS puts zero-mean Gaussian ARD priors on the switches of a one-shot model, approximates the
posterior with Laplace's method and updates the prior variances in closed form; the switches themselves
are trained on an iteratively reweighted L1 objective (the paper's Algorithm 1). The closed forms are
the sparse-Bayesian-learning ones of Wipf & Nagarajan, "Iterative reweighted l1 and l2 methods for
finding sparse solutions", IEEE JSTSP 2010 (their eq. for the weights ``z*``), with the design matrix
``Phi^T Phi / lambda`` replaced by the Hessian of the training loss, as BayesNAS does.

Notation (element-wise over switches unless a matrix is given; every function here is pure):

* ``s``      switches (architecture parameters), any shape;
* ``gamma``  ARD prior variances, ``p(s_i | gamma_i) = N(s_i | 0, gamma_i)``;
* ``E(s)``   training loss (mean over examples); the likelihood is ``exp(-E(s) / lam)``;
* ``H``      Hessian of ``E`` at the current ``s`` (a full ``(P, P)`` matrix or its diagonal ``(P,)``);
* ``lam``    ``lambda``: the sparsity strength (it scales the L1 term and divides ``H``);
* ``C``      Laplace posterior covariance ``(Gamma^{-1} + H / lam)^{-1}``;
* ``omega``  ``omega_i^2 = d/d gamma_i log|Gamma^{-1} + H / lam| |Gamma| = 1/gamma_i - C_ii / gamma_i^2``,
             the weight of ``|s_i|`` in the next reweighted L1 objective;
* update     ``gamma_i <- |s_i| / omega_i`` (the minimiser of ``s_i^2 / gamma_i + omega_i^2 gamma_i``).

The hierarchical (HARD) dependency of BayesNAS (Fig. 1 (c), (f)): a child switch is only as relevant
as its parent, ``gamma_child <- (1 / gamma_child + 1 / gamma_parent)^{-1}`` (authors' code: an op's
switch under its edge's switch). The Hessian is estimated by :func:`mc_ggn_diagonal`: the diagonal of
the generalised Gauss-Newton matrix (the Hessian without second derivatives of the network outputs,
the part the paper's layer-wise diagonal recursion keeps for piecewise-linear layers).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from lit_automl._checks import check_real

__all__ = [
    "ard_gamma",
    "ard_omega",
    "combine_with_parent",
    "ggn_diagonal",
    "laplace_covariance",
    "mc_ggn_diagonal",
    "reweighted_l1",
]

F64 = torch.float64
TINY = torch.finfo(F64).tiny


def _f64(t: Union[torch.Tensor, float]) -> torch.Tensor:
    return torch.as_tensor(t).to(F64)


def laplace_covariance(gamma: torch.Tensor, hessian: torch.Tensor, lam: float) -> torch.Tensor:
    """Laplace posterior covariance ``C = (Gamma^{-1} + H / lam)^{-1}``.

    ``gamma``: (P,). ``hessian``: (P,) diagonal -> (P,) diagonal of ``C`` (``gamma_i = 0`` gives 0);
    (P, P) full matrix -> (P, P) (needs every ``gamma_i > 0``).
    """
    lam = check_real("lam", lam, low=0, low_open=True, hint="lambda")
    gamma, hessian = _f64(gamma), _f64(hessian)
    if hessian.dim() == gamma.dim():
        return 1.0 / (1.0 / gamma + hessian / lam)  # 1/0 = inf, 1/inf = 0: pruned switches have C = 0
    if hessian.dim() != 2 or gamma.dim() != 1 or hessian.shape != (gamma.numel(), gamma.numel()):
        raise ValueError(f"hessian must have gamma's shape {tuple(gamma.shape)} (diagonal) or be "
                         f"({gamma.numel()}, {gamma.numel()}) (full); got {tuple(hessian.shape)}")
    if not bool((gamma > 0).all()):
        raise ValueError("a full-matrix Laplace covariance needs every gamma > 0")
    return torch.linalg.inv(torch.diag(1.0 / gamma) + hessian / lam)


def ard_omega(gamma: torch.Tensor, hessian: torch.Tensor, lam: float) -> torch.Tensor:
    """Reweighting ``omega = sqrt(1/gamma - diag(C)/gamma^2)`` with ``C`` from :func:`laplace_covariance`.

    For a diagonal ``hessian`` the algebraically equal ``sqrt(a / (1 + gamma a))``, ``a = max(H, 0) / lam``,
    is used (finite at ``gamma = 0``). Negative curvature is treated as flat: Laplace's method needs a
    positive-definite posterior precision (ours; the Gauss-Newton estimate is never negative anyway).
    """
    lam = check_real("lam", lam, low=0, low_open=True, hint="lambda")
    gamma, hessian = _f64(gamma), _f64(hessian)
    if hessian.dim() == gamma.dim():
        a = hessian.clamp_min(0.0) / lam
        return torch.sqrt(a / (1.0 + gamma * a))
    cov = laplace_covariance(gamma, hessian, lam)
    return torch.sqrt((1.0 / gamma - torch.diagonal(cov) / gamma**2).clamp_min(0.0))


def ard_gamma(switch: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Closed-form variance update ``gamma = |s| / omega`` (``omega`` floored at the smallest float64)."""
    return _f64(switch).abs() / _f64(omega).clamp_min(TINY)


def combine_with_parent(gamma_child: torch.Tensor, gamma_parent: torch.Tensor) -> torch.Tensor:
    """HARD prior: ``(1/gamma_child + 1/gamma_parent)^{-1}``; a zero parent forces the child to zero."""
    return 1.0 / (1.0 / _f64(gamma_child) + 1.0 / _f64(gamma_parent))


def reweighted_l1(switches: Sequence[torch.Tensor], omegas: Sequence[torch.Tensor],
                  alive: Sequence[torch.Tensor], lams: Sequence[float]) -> torch.Tensor:
    """The sparsity term ``sum_j lam_j sum_i omega_ji |s_ji|`` over alive switches (differentiable in ``s``).

    Computed in the switches' dtype so it adds to the training loss; ``omega`` is a constant here.
    """
    total = None
    for s, w, a, lam in zip(switches, omegas, alive, lams):
        term = lam * (w.to(s.dtype) * a.to(s.dtype) * s.abs()).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("reweighted_l1 needs at least one switch tensor")
    return total


def ggn_diagonal(logits_fn, params: torch.Tensor) -> torch.Tensor:
    """Exact diagonal of the Gauss-Newton matrix of the mean cross-entropy, by explicit Jacobians.

    ``logits_fn(params) -> (N, K)`` logits; ``params``: (P,). ``GGN = (1/N) sum_n J_n^T Lambda_n J_n`` with
    ``J_n = d logits_n / d params`` (K, P) and ``Lambda_n = diag(p_n) - p_n p_n^T``. Costs P backward
    passes: the definition :func:`mc_ggn_diagonal` is checked against, not something to run on a supernet.
    """
    params = _f64(params).detach()
    logits = logits_fn(params).detach()
    jac = torch.autograd.functional.jacobian(logits_fn, params)  # (N, K, P)
    p = torch.softmax(logits, dim=-1)  # (N, K)
    lam_n = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (N, K, K)
    ggn = torch.einsum("nkp,nkl,nlp->p", jac, lam_n, jac)  # diagonal only, (P,)
    return ggn / logits.shape[0]


def mc_ggn_diagonal(logits: torch.Tensor, params: Sequence[torch.Tensor],
                    generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
    """Unbiased one-sample estimate of the Gauss-Newton diagonal of the mean cross-entropy of ``logits``.

    Labels ``y_n ~ softmax(logits_n)`` are drawn (on the CPU, from ``generator``) and
    ``N * g^2`` returned for ``g = d/d params mean_n CE(logits_n, y_n)``: since ``E[g g^T] = GGN / N``
    (the sampled residuals ``p_n - e_{y_n}`` are independent with covariance ``Lambda_n``, even when batch
    norm couples the examples), ``N * g^2`` is unbiased for ``diag(GGN)``. ``logits``: (N, K), still
    attached to the graph (kept: ``retain_graph=True``). Returns float64 tensors shaped like ``params``.
    """
    n = logits.shape[0]
    probs = torch.softmax(logits.detach().to(F64), dim=-1).cpu()
    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)
    loss = F.cross_entropy(logits, labels)
    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p, dtype=F64) if g is None else n * g.detach().to(F64) ** 2
            for p, g in zip(params, grads)]

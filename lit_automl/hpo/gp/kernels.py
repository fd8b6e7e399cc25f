"""Stationary covariance functions on the unit cube (Rasmussen & Williams 2006, Sec. 4.2).

Notation (shapes in the comments; all maths in float64)::

    X  (N, D)     training inputs in [0, 1]^D;  X* (B, D) query inputs
    M             number of hyperparameter settings evaluated at once (1 for MAP, the
                  number of slice samples for the integrated acquisition)
    ell (M, L)    lengthscales, L = D (ARD, one per input column) or L = 1 (isotropic)
    sf2 (M,)      amplitude sigma_f^2 (signal variance)
    r^2           sum_k (x_k - x'_k)^2 / ell_k^2, the scaled squared distance;  r = sqrt(r^2)
    k(x, x')      sf2 * g(r)

    se        g = exp(-r^2 / 2)                                   (R&W Sec. 4.2)
    matern12  g = exp(-r)                                         (R&W Sec. 4.2.1, nu = 1/2)
    matern32  g = (1 + sqrt(3) r) exp(-sqrt(3) r)                 (R&W Sec. 4.2.1, nu = 3/2)
    matern52  g = (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)     (R&W Sec. 4.2.1, nu = 5/2;
                                                                   Snoek et al. 2012, Sec. 3.1)

At equal lengthscales the Matern kernels approach the squared exponential as nu grows
(nu -> infinity gives SE): sup_r |g_nu(r) - g_se(r)| shrinks from nu = 1/2 to 3/2 to 5/2.

Distances use exact coordinate differences (zero where two inputs coincide): the squared
differences (B, N, D) are formed once and weighted by 1 / ell^2 for all M settings in one matmul.

Arc kernel for conditional parameters (Swersky, Duvenaud, Snoek, Hutter & Osborne 2013, "Raiders of
the Lost Architecture", NIPS BayesOpt workshop, arXiv 1409.4011, Sec. 2)::

    a_i in {0, 1}    whether column i is active (relevant) at x: delta_i(x); an inactive column
                     holds NaN in the encoded row (the authors' covCond.m also marks it NaN)
    g_i(x)           = [0, 0]                                        if a_i = 0
                     = omega_i [sin(pi rho_i x_i), cos(pi rho_i x_i)]  if a_i = 1       (eq. 2)
    |g_i(x) - g_i(x')|^2 = 0                                          both inactive
                         = omega_i^2                                  one active    (eq. 3)
                         = 2 omega_i^2 (1 - cos(pi rho_i (x_i - x'_i)))
                         = 4 omega_i^2 sin^2(pi rho_i (x_i - x'_i) / 2)  both active
    so over the arc columns  r^2 = sum_i omega_i^2 [(a_i - a'_i)^2 + 4 a_i a'_i sin^2(pi rho_i (x_i - x'_i) / 2)]

with omega_i > 0 and rho_i in (0, 1] (paper: rho_i in [0, 1]); x_i is already scaled to [0, 1]
(the paper's x_i / (u_i - l_i)). Any g of r^2 above is then a valid covariance (a stationary kernel
of the Euclidean distance between the embeddings, Sec. 2: "within any kernel defined in terms of
Euclidean distance"). The sin^2 form is the exact chord length (never negative, no cancellation).

Ours, where the paper does not say: (1) a column active in every point keeps the ordinary
scaled difference (x_i - x'_i)^2 / ell_i^2, one hyperparameter instead of the two (omega_i, rho_i)
whose product alone it would identify (chord ~ omega_i pi rho_i |x_i - x'_i| for small rho_i), so a
space without conditional parameters gives exactly the kernel above; (2) a one-hot column of a
conditional categorical parameter embeds as omega_c h_c with h_c its 0/1 value when active and 0
when inactive: two choices j != k of an active parameter are sqrt(omega_j^2 + omega_k^2) apart,
active choice k and inactive are omega_k apart, as an arc column's active and inactive points are;
(3) omega and rho are per column whatever ``ard`` says (the paper gives each dimension its own);
``ard`` applies to the always-active columns.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["KERNELS", "ArcKernel", "Kernel", "arc_sq_dist", "onehot_sq_dist", "se", "matern12", "matern32",
           "matern52"]

_SQRT3 = math.sqrt(3.0)
_SQRT5 = math.sqrt(5.0)


def _safe_sqrt(r2: Tensor) -> Tensor:
    """sqrt with a zero (not NaN) gradient at r^2 = 0, where the Matern kernels have a kink or
    a flat top; elsewhere the ordinary sqrt."""
    positive = r2 > 0
    return torch.where(positive, torch.where(positive, r2, torch.ones_like(r2)).sqrt(), torch.zeros_like(r2))


def se(r2: Tensor) -> Tensor:
    """Squared exponential, g = exp(-r^2 / 2)."""
    return torch.exp(-0.5 * r2)


def matern12(r2: Tensor) -> Tensor:
    """Matern nu = 1/2 (exponential kernel), g = exp(-r)."""
    return torch.exp(-_safe_sqrt(r2))


def matern32(r2: Tensor) -> Tensor:
    """Matern nu = 3/2, g = (1 + sqrt3 r) exp(-sqrt3 r)."""
    s = _SQRT3 * _safe_sqrt(r2)
    return (1.0 + s) * torch.exp(-s)


def matern52(r2: Tensor) -> Tensor:
    """Matern nu = 5/2, g = (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)."""
    s = _SQRT5 * _safe_sqrt(r2)
    return (1.0 + s + (5.0 / 3.0) * r2) * torch.exp(-s)


KERNELS: Dict[str, Callable[[Tensor], Tensor]] = {
    "se": se,
    "matern12": matern12,
    "matern32": matern32,
    "matern52": matern52,
}


class Kernel:
    """k(x, x') = sf2 * g(r) for ``name`` in :data:`KERNELS`, ARD (one lengthscale per input
    column, the default) or isotropic (one shared lengthscale).

    Args:
        name: ``"se"``, ``"matern12"``, ``"matern32"`` or ``"matern52"``.
        ard: one lengthscale per input column (True) or a single one (False).
    """

    def __init__(self, name: str = "matern52", ard: bool = True) -> None:
        if name not in KERNELS:
            raise ValueError(f"kernel={name!r} is not one of {sorted(KERNELS)}")
        if not isinstance(ard, bool):
            raise ValueError(f"ard={ard!r} must be True or False")
        self.name = name
        self.ard = ard
        self.g = KERNELS[name]

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, ard={self.ard})"

    def n_lengthscales(self, dim: int) -> int:
        """L: the number of lengthscales for ``dim`` input columns."""
        return dim if self.ard else 1

    def hyper_layout(self, dim: int) -> Tuple[int, int, int]:
        """How the L kernel hyperparameters split: (lengthscales, omegas, rhos); (L, 0, 0) here."""
        return self.n_lengthscales(dim), 0, 0

    def sq_dist(self, x1: Tensor, x2: Tensor, lengthscales: Tensor) -> Tensor:
        """r^2: x1 (B, D), x2 (N, D), lengthscales (M, L) -> (M, B, N)."""
        diff2 = (x1[:, None, :] - x2[None, :, :]).pow(2)  # (B, N, D)
        inv_ell2 = lengthscales.pow(-2).expand(-1, x1.shape[1])  # (M, D)
        r2 = diff2.reshape(-1, x1.shape[1]) @ inv_ell2.T  # (B * N, M)
        return r2.T.reshape(-1, x1.shape[0], x2.shape[0])  # (M, B, N)

    def gram(self, x: Tensor, lengthscales: Tensor, amplitude: Tensor) -> Tensor:
        """K(X, X): x (N, D), lengthscales (M, L), amplitude (M,) -> (M, N, N)."""
        return amplitude[:, None, None] * self.g(self.sq_dist(x, x, lengthscales))

    def cross(self, xq: Tensor, x: Tensor, lengthscales: Tensor, amplitude: Tensor) -> Tensor:
        """K(X*, X): xq (B, D), x (N, D), lengthscales (M, L), amplitude (M,) -> (M, B, N)."""
        return amplitude[:, None, None] * self.g(self.sq_dist(xq, x, lengthscales))


def _active(x: Tensor) -> Tuple[Tensor, Tensor]:
    """(values with NaN replaced by 0, activity a in {0, 1}) of encoded columns; NaN = inactive."""
    inactive = torch.isnan(x)
    return torch.where(inactive, torch.zeros_like(x), x), (~inactive).to(x.dtype)


def arc_sq_dist(x1: Tensor, x2: Tensor, omega: Tensor, rho: Tensor) -> Tensor:
    """Arc-kernel squared distance over numeric columns (Swersky et al. 2013, eq. 2-3): x1 (B, C),
    x2 (N, C) in [0, 1] or NaN (inactive), omega (M, C), rho (M, C) -> (M, B, N)
    sum_i omega_i^2 [(a_i - a'_i)^2 + 4 a_i a'_i sin^2(pi rho_i (x_i - x'_i) / 2)]."""
    u1, a1 = _active(x1)
    u2, a2 = _active(x2)
    differ = (a1[:, None, :] - a2[None, :, :]).pow(2)  # (B, N, C): one of the two active
    both = a1[:, None, :] * a2[None, :, :]  # (B, N, C)
    half_angle = (0.5 * math.pi) * rho[:, None, None, :] * (u1[:, None, :] - u2[None, :, :])[None]  # (M, B, N, C)
    chord2 = differ[None] + 4.0 * both[None] * torch.sin(half_angle).pow(2)  # (M, B, N, C)
    return (chord2 * omega.pow(2)[:, None, None, :]).sum(-1)


def onehot_sq_dist(x1: Tensor, x2: Tensor, omega: Tensor) -> Tensor:
    """Squared distance over one-hot columns of conditional categorical parameters embedded as
    omega_c h_c when active, 0 when inactive (ours, see the module docstring): x1 (B, C), x2 (N, C)
    in {0, 1} or NaN (inactive), omega (M, C) -> (M, B, N) sum_c omega_c^2 (a_c h_c - a'_c h'_c)^2."""
    h1, _ = _active(x1)
    h2, _ = _active(x2)
    diff2 = (h1[:, None, :] - h2[None, :, :]).pow(2).reshape(-1, x1.shape[1])  # (B * N, C)
    return (diff2 @ omega.pow(2).T).T.reshape(-1, x1.shape[0], x2.shape[0])  # (M, B, N)


class ArcKernel(Kernel):
    """k(x, x') = sf2 * g(r) with r^2 the sum of the ordinary scaled squared differences over the
    always-active columns and the arc distances over the conditional ones (module docstring;
    Swersky et al. 2013, Sec. 2). Inactive columns hold NaN.

    Its L hyperparameters (held in :attr:`GPParams.lengthscales <lit_automl.hpo.gp.gp.GPParams>`,
    natural scale) are ``[ell (plain columns, or one if not ard), omega (arc columns, then one-hot
    columns), rho (arc columns)]``; :meth:`hyper_layout` gives the three counts.

    Args:
        name: ``"se"``, ``"matern12"``, ``"matern32"`` or ``"matern52"``.
        ard: one lengthscale per always-active column (True) or a single one (False).
        dim: number of encoded columns D.
        arc_columns: conditional numeric (continuous or discrete) columns.
        onehot_columns: one-hot columns of conditional categorical parameters.
    """

    def __init__(self, name: str = "matern52", ard: bool = True, *, dim: int, arc_columns: Sequence[int] = (),
                 onehot_columns: Sequence[int] = ()) -> None:
        super().__init__(name, ard)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim={dim!r} must be an int >= 1 (the number of encoded columns)")
        arc, onehot = [int(c) for c in arc_columns], [int(c) for c in onehot_columns]
        bad = [c for c in arc + onehot if not 0 <= c < dim]
        if bad:
            raise ValueError(f"columns {bad} are outside [0, {dim}) (dim={dim})")
        if len(set(arc + onehot)) != len(arc) + len(onehot):
            raise ValueError(f"arc_columns={arc} and onehot_columns={onehot} must be distinct columns")
        self.dim, self.arc_columns, self.onehot_columns = dim, arc, onehot
        self.plain_columns = [c for c in range(dim) if c not in set(arc + onehot)]

    def __repr__(self) -> str:
        return (f"ArcKernel({self.name!r}, ard={self.ard}, dim={self.dim}, arc_columns={self.arc_columns}, "
                f"onehot_columns={self.onehot_columns})")

    def hyper_layout(self, dim: int) -> Tuple[int, int, int]:
        if dim != self.dim:
            raise ValueError(f"this ArcKernel is for {self.dim} columns, got inputs with {dim}")
        n_plain = len(self.plain_columns)
        n_ell = (n_plain if self.ard else 1) if n_plain else 0
        return n_ell, len(self.arc_columns) + len(self.onehot_columns), len(self.arc_columns)

    def n_lengthscales(self, dim: int) -> int:
        return sum(self.hyper_layout(dim))

    def sq_dist(self, x1: Tensor, x2: Tensor, lengthscales: Tensor) -> Tensor:
        """r^2: x1 (B, D), x2 (N, D) (NaN where inactive), hyperparameters (M, L) -> (M, B, N)."""
        n_ell, n_omega, _ = self.hyper_layout(x1.shape[1])
        n_arc = len(self.arc_columns)
        ell, omega = lengthscales[:, :n_ell], lengthscales[:, n_ell:n_ell + n_omega]
        rho = lengthscales[:, n_ell + n_omega:]
        r2 = x1.new_zeros(lengthscales.shape[0], x1.shape[0], x2.shape[0])
        if self.plain_columns:
            plain = self.plain_columns
            r2 = r2 + super().sq_dist(x1[:, plain], x2[:, plain], ell)
        if self.arc_columns:
            arc = self.arc_columns
            r2 = r2 + arc_sq_dist(x1[:, arc], x2[:, arc], omega[:, :n_arc], rho)
        if self.onehot_columns:
            onehot = self.onehot_columns
            r2 = r2 + onehot_sq_dist(x1[:, onehot], x2[:, onehot], omega[:, n_arc:])
        return r2

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
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch
from torch import Tensor

__all__ = ["KERNELS", "Kernel", "se", "matern12", "matern32", "matern52"]

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

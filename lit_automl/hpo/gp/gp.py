"""Gaussian-process regressor with a constant mean, and its hyperparameters by type-II MAP or by
slice sampling (Rasmussen & Williams 2006, Ch. 2 and 5; Snoek, Larochelle & Adams 2012, Sec. 3.1).

Notation (shapes in the comments; all maths in float64)::

    X (N, D)        training inputs in [0, 1]^D;  y (N,) standardised outputs
    M               number of hyperparameter settings held at once (1 for MAP, the number of
                    slice samples for the integrated acquisition)
    S               number of target columns per setting (1, or the number of fantasies)
    Y (M, N, S)     targets
    theta (M, P)    packed hyperparameters, P = L + 3 (L kernel hyperparameters, see kernels.py):
                    theta = [log ell_1..L, log sf2, log sn2, c]; for the arc kernel the L are
                    [log ell (always-active columns), log omega, log rho] (kernels.ArcKernel)
    K               sf2 G(X, X) + (sn2 + jitter) I              (M, N, N)
    Lc              chol(K), lower triangular                  (M, N, N)
    alpha           K^{-1} (Y - c) by cholesky_solve           (M, N, S)

    posterior of the latent f at X* (B, D), R&W eq. 2.25-2.26:
        mu*  = c + k*^T alpha                                   (M, B, S)
        var* = sf2 - |Lc^{-1} k*|^2                             (M, B)
    posterior mean at the training inputs:
        c + (K - (sn2 + jitter) I) alpha = Y - (sn2 + jitter) alpha
    log marginal likelihood, R&W eq. 2.30:
        log p(y | theta) = -1/2 (y - c)^T alpha - sum_i log Lc_ii - N/2 log(2 pi)

Hyperparameter priors (ours; independent, on the log parameters, so that the type-II MAP
estimate and the slice sampler both live in the unbounded log space)::

    log ell_k ~ N(log(0.25 sqrt(D)), 1)      (median 0.25 sqrt(D) in the unit cube: the sqrt(D)
                                              scaling of Hvarfner, Hellsten & Nardi 2024, ICML, with
                                              a shorter centre and a narrower spread than their
                                              N(sqrt(2) + log(D) / 2, 3), under which the GP
                                              explained Hartmann6's first 20-50 points as noise)
    log sf2   ~ N(0, 1)                       (outputs are standardised: signal variance near 1)
    log sn2   ~ N(log 1e-3, 2^2)              (small noise by default; the data can raise it)
    c         ~ N(0, 1)

arc kernel (Swersky et al. 2013 fit omega and rho by the marginal likelihood or slice sampling and
state no prior; these are ours)::

    log omega_i ~ N(-log(0.25 sqrt(D)), 1)   (omega plays 1 / ell: at the prior medians an arc column
                                              spans its range by the same distance, omega, as an
                                              always-active column at the median lengthscale, 1 / ell)
    log rho_i   ~ N(log(1/3), 1)              (rho = 1/3 is the paper's balance point, Sec. 2: being
                                              active in only one of two points is then as far as the
                                              two ends of the range)

and box bounds (the support for the slice sampler, the bounds for L-BFGS-B):
ell in [1e-2, 1e3], sf2 in [1e-2, 1e2], sn2 in [1e-6, 10] (1e-6 is the noise floor), c in [-10, 10],
omega in [1e-3, 1e2] (1 / the lengthscale bounds), rho in [1e-2, 1] (paper: rho in [0, 1]).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from lit_automl.hpo.gp.kernels import Kernel
from lit_automl.hpo.gp.slice_sampling import slice_sample

__all__ = [
    "GPParams",
    "GPRegressor",
    "fit_map",
    "log_prior",
    "negative_log_posterior",
    "prior_mean_std",
    "sample_hyperparameters",
    "theta_bounds",
]

DTYPE = torch.float64

LENGTHSCALE_BOUNDS = (1e-2, 1e3)
AMPLITUDE_BOUNDS = (1e-2, 1e2)
NOISE_BOUNDS = (1e-6, 10.0)
MEAN_BOUNDS = (-10.0, 10.0)
PRIOR_LOG_AMPLITUDE = (0.0, 1.0)  # mean, std of log sf2
PRIOR_LOG_NOISE = (math.log(1e-3), 2.0)  # mean, std of log sn2
PRIOR_MEAN = (0.0, 1.0)  # mean, std of c
OMEGA_BOUNDS = (1.0 / LENGTHSCALE_BOUNDS[1], 1.0 / LENGTHSCALE_BOUNDS[0])
RHO_BOUNDS = (1e-2, 1.0)
PRIOR_LOG_RHO = (math.log(1.0 / 3.0), 1.0)  # mean, std of log rho


def prior_lengthscale(dim: int) -> Tuple[float, float]:
    """Mean and std of log ell_k for ``dim`` input columns: log(0.25 sqrt(dim)) and 1."""
    return math.log(0.25) + 0.5 * math.log(dim), 1.0


@functools.lru_cache(maxsize=64)
def prior_mean_std(n_lengthscales: int, dim: int, n_omega: int = 0, n_rho: int = 0) -> Tuple[Tensor, Tensor]:
    """Prior mean and std of theta, each (P,) (cached: do not modify them in place). ``n_omega`` and
    ``n_rho`` count the arc kernel's omegas and rhos (kernels.ArcKernel.hyper_layout)."""
    mu_l, sd_l = prior_lengthscale(dim)
    mean = ([mu_l] * n_lengthscales + [-mu_l] * n_omega + [PRIOR_LOG_RHO[0]] * n_rho
            + [PRIOR_LOG_AMPLITUDE[0], PRIOR_LOG_NOISE[0], PRIOR_MEAN[0]])
    std = ([sd_l] * n_lengthscales + [sd_l] * n_omega + [PRIOR_LOG_RHO[1]] * n_rho
           + [PRIOR_LOG_AMPLITUDE[1], PRIOR_LOG_NOISE[1], PRIOR_MEAN[1]])
    return torch.tensor(mean, dtype=DTYPE, device="cpu"), torch.tensor(std, dtype=DTYPE, device="cpu")


def theta_bounds(n_lengthscales: int, n_omega: int = 0, n_rho: int = 0) -> np.ndarray:
    """Box bounds of theta, (P, 2)."""
    rows = ([np.log(LENGTHSCALE_BOUNDS)] * n_lengthscales + [np.log(OMEGA_BOUNDS)] * n_omega
            + [np.log(RHO_BOUNDS)] * n_rho + [np.log(AMPLITUDE_BOUNDS), np.log(NOISE_BOUNDS), np.array(MEAN_BOUNDS)])
    return np.array(rows, dtype=np.float64)


def log_prior(theta: Tensor, dim: int, n_omega: int = 0, n_rho: int = 0) -> Tensor:
    """log p(theta) up to a constant: theta (M, P) -> (M,)."""
    mean, std = prior_mean_std(theta.shape[-1] - 3 - n_omega - n_rho, dim, n_omega, n_rho)
    return (-0.5 * ((theta - mean) / std).pow(2)).sum(-1)


@dataclass
class GPParams:
    """A batch of M hyperparameter settings (natural scale, not logs)."""

    lengthscales: Tensor  # (M, L) the kernel's hyperparameters (for ArcKernel: ell, omega, rho)
    amplitude: Tensor  # (M,) sf2
    noise: Tensor  # (M,) sn2
    mean: Tensor  # (M,) c

    @property
    def n_samples(self) -> int:
        return self.amplitude.shape[0]

    def to_theta(self) -> Tensor:
        """(M, P) = [log ell, log sf2, log sn2, c]."""
        return torch.cat([self.lengthscales.log(), self.amplitude.log()[:, None], self.noise.log()[:, None],
                          self.mean[:, None]], dim=-1)

    @classmethod
    def from_theta(cls, theta: Tensor) -> "GPParams":
        """From packed theta (M, P)."""
        theta = torch.atleast_2d(theta)
        return cls(lengthscales=theta[:, :-3].exp(), amplitude=theta[:, -3].exp(), noise=theta[:, -2].exp(),
                   mean=theta[:, -1])


def _cholesky(k: Tensor, params: GPParams) -> Tensor:
    chol, info = torch.linalg.cholesky_ex(k)
    if bool((info != 0).any()):
        bad = int(torch.nonzero(info)[0, 0])
        raise torch.linalg.LinAlgError(
            f"GP covariance is not positive definite for hyperparameter setting {bad}: lengthscales="
            f"{params.lengthscales[bad].tolist()}, amplitude={float(params.amplitude[bad])}, "
            f"noise={float(params.noise[bad])}")
    return chol


class GPRegressor:
    """Exact GP posterior for M hyperparameter settings at once (R&W Alg. 2.1, batched).

    Args:
        kernel: the covariance function.
        x: training inputs (N, D).
        y: targets (N,) (shared by all settings) or (M, N, S).
        params: M hyperparameter settings.
        jitter: added to the diagonal on top of the noise variance.
    """

    def __init__(self, kernel: Kernel, x: Tensor, y: Tensor, params: GPParams, jitter: float = 1e-9) -> None:
        if x.ndim != 2:
            raise ValueError(f"x must be (N, D), got shape {tuple(x.shape)}")
        m, n = params.n_samples, x.shape[0]
        if y.shape == (n,):
            y = y[None, :, None].expand(m, n, 1)
        if y.ndim != 3 or y.shape[:2] != (m, n):
            raise ValueError(f"y must be (N,)=({n},) or (M, N, S)=({m}, {n}, S), got shape {tuple(y.shape)}")
        self.kernel, self.x, self.y, self.params, self.jitter = kernel, x, y, params, jitter
        self.diag = params.noise + jitter  # (M,)
        k = kernel.gram(x, params.lengthscales, params.amplitude)  # (M, N, N)
        k = k + self.diag[:, None, None] * torch.eye(n, dtype=x.dtype)
        self.chol = _cholesky(k, params)  # (M, N, N)
        self.alpha = torch.cholesky_solve(y - params.mean[:, None, None], self.chol)  # (M, N, S)

    @property
    def n_targets(self) -> int:
        return self.y.shape[-1]

    def train_mean(self) -> Tensor:
        """Posterior mean of f at the training inputs, (M, N, S)."""
        return self.y - self.diag[:, None, None] * self.alpha

    def predict(self, xq: Tensor) -> Tuple[Tensor, Tensor]:
        """Posterior mean (M, B, S) and latent variance (M, B) of f at xq (B, D)."""
        kx = self.kernel.cross(xq, self.x, self.params.lengthscales, self.params.amplitude)  # (M, B, N)
        mean = self.params.mean[:, None, None] + kx @ self.alpha  # (M, B, S)
        v = torch.linalg.solve_triangular(self.chol, kx.transpose(-1, -2), upper=False)  # (M, N, B)
        var = self.params.amplitude[:, None] - v.pow(2).sum(-2)  # (M, B)
        return mean, var.clamp_min(1e-20)

    def joint_predictive(self, xq: Tensor) -> Tuple[Tensor, Tensor]:
        """Joint posterior predictive of y at xq (B, D): mean (M, B, S), covariance (M, B, B) (noise
        included)."""
        kx = self.kernel.cross(xq, self.x, self.params.lengthscales, self.params.amplitude)  # (M, B, N)
        mean = self.params.mean[:, None, None] + kx @ self.alpha  # (M, B, S)
        v = torch.linalg.solve_triangular(self.chol, kx.transpose(-1, -2), upper=False)  # (M, N, B)
        kqq = self.kernel.gram(xq, self.params.lengthscales, self.params.amplitude)  # (M, B, B)
        cov = kqq - v.transpose(-1, -2) @ v + self.diag[:, None, None] * torch.eye(xq.shape[0], dtype=xq.dtype)
        return mean, cov

    def condition(self, xp: Tensor, yp: Tensor) -> "GPRegressor":
        """The GP with (xp (P, D), yp (M, P, S)) appended to the data (same hyperparameters)."""
        m, _, s = yp.shape
        y = self.y.expand(m, self.y.shape[1], s) if self.n_targets == 1 else self.y
        return GPRegressor(self.kernel, torch.cat([self.x, xp]), torch.cat([y, yp], dim=1), self.params, self.jitter)


def negative_log_posterior(theta: Tensor, kernel: Kernel, x: Tensor, y: Tensor) -> Tensor:
    """-log p(y | theta) - log p(theta) (up to a constant): theta (M, P), x (N, D), y (N,) -> (M,)."""
    params = GPParams.from_theta(theta)
    gp = GPRegressor(kernel, x, y, params, jitter=0.0)
    resid = y[None, :, None] - params.mean[:, None, None]  # (M, N, 1)
    lml = (-0.5 * (resid * gp.alpha).sum((-1, -2)) - torch.diagonal(gp.chol, dim1=-2, dim2=-1).log().sum(-1)
           - 0.5 * x.shape[0] * math.log(2.0 * math.pi))
    _, n_omega, n_rho = kernel.hyper_layout(x.shape[1])
    return -(lml + log_prior(theta, x.shape[1], n_omega, n_rho))


def _draw_prior(n: int, layout: Tuple[int, int, int], dim: int, rng: np.random.Generator) -> Tensor:
    mean, std = prior_mean_std(layout[0], dim, layout[1], layout[2])
    draws = mean + std * torch.as_tensor(rng.standard_normal((n, mean.shape[0])), dtype=DTYPE)
    b = torch.as_tensor(theta_bounds(*layout), dtype=DTYPE)
    return torch.minimum(torch.maximum(draws, b[:, 0]), b[:, 1])


def fit_map(kernel: Kernel, x: Tensor, y: Tensor, rng: np.random.Generator, init: Optional[Tensor] = None,
            n_restarts: int = 2, max_iter: int = 200) -> GPParams:
    """Type-II MAP hyperparameters: argmin_theta -log p(y | theta) - log p(theta) by L-BFGS-B in
    the bounded log space (R&W Sec. 5.4.1; Snoek et al. 2012, Sec. 3.1 for the model).

    Starts: without ``init`` (a cold fit), the prior mean and ``n_restarts`` prior draws. With
    ``init`` (a warm start, e.g. the previous trial's theta (P,)), ``init`` and those of the
    ``n_restarts`` prior draws whose objective is already lower than init's (screened without
    gradients; seldom any once the warm start has converged, so a warm fit is one short run).
    All starts are optimised in one L-BFGS-B run on the sum of their (independent) objectives,
    with gradients by autograd; the best end point is returned.
    """
    dim = x.shape[1]
    layout = kernel.hyper_layout(dim)
    n_l = sum(layout)
    bounds = theta_bounds(*layout)
    first = prior_mean_std(layout[0], dim, layout[1], layout[2])[0] if init is None else init.to(DTYPE)
    if first.shape != (n_l + 3,):
        raise ValueError(f"init has shape {tuple(first.shape)}, expected ({n_l + 3},)")
    lo, hi = torch.as_tensor(bounds[:, 0]), torch.as_tensor(bounds[:, 1])
    starts = torch.cat([torch.minimum(torch.maximum(first, lo), hi)[None],
                        _draw_prior(n_restarts, layout, dim, rng)])  # (R, P)
    if init is not None and n_restarts > 0:
        with torch.no_grad():
            initial = negative_log_posterior(starts, kernel, x, y)  # (R,)
        starts = starts[torch.cat([torch.tensor([True]), initial[1:] < initial[0]])]
    shape = starts.shape

    def objective(flat: np.ndarray) -> Tuple[float, np.ndarray]:
        theta = torch.as_tensor(flat, dtype=DTYPE).view(shape).requires_grad_(True)
        loss = negative_log_posterior(theta, kernel, x, y).sum()
        (grad,) = torch.autograd.grad(loss, theta)
        return loss.item(), grad.numpy().ravel()

    import scipy.optimize  # here, not at module level: scipy is a heavy import

    result = scipy.optimize.minimize(objective, starts.numpy().ravel(), jac=True, method="L-BFGS-B",
                                     bounds=np.tile(bounds, (shape[0], 1)), options={"maxiter": max_iter, "ftol": 1e-6})
    theta = torch.as_tensor(result.x, dtype=DTYPE).view(shape)
    with torch.no_grad():
        values = negative_log_posterior(theta, kernel, x, y)
    return GPParams.from_theta(theta[int(values.argmin())][None])


def sample_hyperparameters(kernel: Kernel, x: Tensor, y: Tensor, rng: np.random.Generator, init: Tensor,
                           n_samples: int = 10, burnin: int = 1, thin: int = 1) -> GPParams:
    """Slice samples of theta from p(theta | y) ∝ p(y | theta) p(theta), with the priors and
    bounds of this module (Neal 2003; Snoek et al. 2012, Sec. 3.1 for the integrated
    acquisition). The chain starts at ``init`` (P,) (the MAP estimate, or the last sample of the
    previous trial's chain) and runs ``burnin`` discarded sweeps first.

    Returns M = n_samples settings; the last one is the chain's final state (for a warm start).
    """
    bounds = theta_bounds(*kernel.hyper_layout(x.shape[1]))

    def log_density(theta: np.ndarray) -> float:
        if np.any(theta < bounds[:, 0]) or np.any(theta > bounds[:, 1]):
            return -math.inf
        with torch.no_grad():
            return -float(negative_log_posterior(torch.as_tensor(theta, dtype=DTYPE)[None], kernel, x, y)[0])

    start = np.clip(init.detach().numpy().astype(np.float64), bounds[:, 0], bounds[:, 1])
    widths = np.full(start.shape, 1.0)
    samples = slice_sample(log_density, start, n_samples, rng, widths=widths, burnin=burnin, thin=thin)
    return GPParams.from_theta(torch.as_tensor(samples, dtype=DTYPE))

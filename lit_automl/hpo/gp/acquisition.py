"""Acquisition functions for minimisation, integrated over hyperparameter samples and over
fantasised outcomes of pending evaluations (Brochu, Cora & de Freitas 2010, Sec. 2.3; Snoek,
Larochelle & Adams 2012, Sec. 3).

Notation (shapes in the comments; all maths in float64; the objective is minimised in
standardised units)::

    mu, s       posterior mean and standard deviation of the latent f at x
                (mu (M, B, S), s (M, B, 1): M hyperparameter settings, B inputs, S fantasies)
    f*          incumbent: the lowest posterior mean over the observed inputs (and the pending
                ones, once their outcomes are fantasised), one per (setting, fantasy), (M, 1, S).
                With noisy observations the best observation is not the incumbent (Brochu Sec. 2.4).
    xi >= 0     exploration margin (Lizotte 2008; Brochu Sec. 2.3.1)
    z           (f* - mu - xi) / s
    Phi, phi    standard normal cdf and pdf

    PI(x)   = Phi(z)                                        (Kushner 1964; Brochu Sec. 2.3.1)
    EI(x)   = (f* - mu - xi) Phi(z) + s phi(z)              (Mockus 1978; Jones et al. 1998)
    UCB(x)  = -mu + kappa s                                 (GP-UCB for minimisation,
                                                             Srinivas et al. 2010; Brochu Sec. 2.3.2)
    kappa_t = sqrt(nu tau_t),  tau_t = 2 log(t^(d/2 + 2) pi^2 / (3 delta))   (Brochu Sec. 2.3.2)
    EI/s(x) = EI(x) E[1 / c(x)],   log c(x) ~ N(m_c(x), v_c(x)) from a second GP on log duration:
              E[1 / c] = exp(-m_c + v_c / 2)                (Snoek Sec. 3.2)

    integrated acquisition (Snoek Sec. 3.1 and 3.3):
        a(x) = 1 / (M S) sum_{m, s} a(x; theta_m, fantasy_s)

Kushner's decreasing margin (``xi_schedule="kushner"``): the tutorial (Brochu Sec. 2.3.1)
states only that xi starts high and decreases towards zero; our form is xi_t = xi / sqrt(t).

Pending evaluations (Snoek Sec. 3.3), :data:`PENDING_STRATEGIES`:

    fantasies          S joint draws y_p ~ N(mu(X_p), Sigma(X_p) + sn2 I) of the pending outcomes
                       per hyperparameter setting; the GP is conditioned on each draw
    kriging_believer   one fantasy, y_p = mu(X_p) (Ginsbourger, Le Riche & Carraro 2010): the mean is
                       unchanged, the variance near X_p shrinks
    ignore             pending evaluations are not used
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Type

import torch
from torch import Tensor

from lit_automl.hpo.gp.gp import GPRegressor

__all__ = [
    "ACQUISITIONS",
    "PENDING_STRATEGIES",
    "XI_SCHEDULES",
    "Acquisition",
    "ExpectedImprovement",
    "ExpectedImprovementPerSecond",
    "ProbabilityOfImprovement",
    "UpperConfidenceBound",
    "expected_improvement",
    "gp_ucb_kappa",
    "incumbent",
    "kushner_xi",
    "probability_of_improvement",
    "upper_confidence_bound",
]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-z / _SQRT2)


def _pdf(z: Tensor) -> Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def probability_of_improvement(mean: Tensor, std: Tensor, best: Tensor, xi: float = 0.0) -> Tensor:
    """PI = Phi((f* - mu - xi) / s) (Brochu Sec. 2.3.1), broadcasting its arguments."""
    return _cdf((best - mean - xi) / std)


def expected_improvement(mean: Tensor, std: Tensor, best: Tensor, xi: float = 0.0) -> Tensor:
    """EI = (f* - mu - xi) Phi(z) + s phi(z), z = (f* - mu - xi) / s (Jones et al. 1998;
    Brochu Sec. 2.3.1), broadcasting its arguments."""
    improvement = best - mean - xi
    z = improvement / std
    return (improvement * _cdf(z) + std * _pdf(z)).clamp_min(0.0)


def upper_confidence_bound(mean: Tensor, std: Tensor, kappa: float) -> Tensor:
    """UCB = -mu + kappa s, the confidence bound for minimisation (Brochu Sec. 2.3.2)."""
    return -mean + kappa * std


def gp_ucb_kappa(t: int, d: int, nu: float = 1.0, delta: float = 0.1) -> float:
    """kappa_t = sqrt(nu tau_t), tau_t = 2 log(t^(d/2+2) pi^2 / (3 delta)) (GP-UCB, Srinivas et
    al. 2010, in the form of Brochu Sec. 2.3.2). t >= 1 is the index of the evaluation being
    chosen, d the dimension of the domain."""
    if not isinstance(t, int) or t < 1:
        raise ValueError(f"t={t!r} must be an integer >= 1")
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d={d!r} must be an integer >= 1")
    if not nu > 0:
        raise ValueError(f"nu={nu!r} must be > 0")
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} must be in (0, 1)")
    tau = 2.0 * ((d / 2.0 + 2.0) * math.log(t) + 2.0 * math.log(math.pi) - math.log(3.0 * delta))
    return math.sqrt(nu * tau)


def kushner_xi(xi: float, t: int) -> float:
    """Our decreasing margin xi_t = xi / sqrt(t) (the tutorial gives no formula, Brochu Sec. 2.3.1)."""
    if not isinstance(t, int) or t < 1:
        raise ValueError(f"t={t!r} must be an integer >= 1")
    return xi / math.sqrt(t)


XI_SCHEDULES: Dict[str, Callable[[float, int], float]] = {
    "constant": lambda xi, t: xi,
    "kushner": kushner_xi,
}


def incumbent(gp: GPRegressor) -> Tensor:
    """f*: the lowest posterior mean over the GP's training inputs, (M, S)."""
    return gp.train_mean().amin(dim=1)


class Acquisition:
    """a(x) averaged over the GP's M hyperparameter settings and S target columns (fantasies).

    Subclasses define :meth:`utility` on (M, B, S) tensors. Call with x (B, D) -> (B,).
    """

    def __init__(self, gp: GPRegressor) -> None:
        self.gp = gp
        self.best = incumbent(gp)[:, None, :]  # (M, 1, S)

    def utility(self, mean: Tensor, std: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        mean, var = self.gp.predict(x)  # (M, B, S), (M, B)
        return self.utility(mean, var.sqrt()[..., None]).mean(dim=(0, 2))  # (B,)


class ProbabilityOfImprovement(Acquisition):
    """PI with margin ``xi`` (Kushner 1964; Brochu Sec. 2.3.1)."""

    def __init__(self, gp: GPRegressor, xi: float = 0.01) -> None:
        super().__init__(gp)
        self.xi = xi

    def utility(self, mean: Tensor, std: Tensor) -> Tensor:
        return probability_of_improvement(mean, std, self.best, self.xi)


class ExpectedImprovement(Acquisition):
    """EI with margin ``xi`` (Mockus 1978; Jones et al. 1998; Lizotte 2008; Brochu Sec. 2.3.1)."""

    def __init__(self, gp: GPRegressor, xi: float = 0.01) -> None:
        super().__init__(gp)
        self.xi = xi

    def utility(self, mean: Tensor, std: Tensor) -> Tensor:
        return expected_improvement(mean, std, self.best, self.xi)


class UpperConfidenceBound(Acquisition):
    """-mu + kappa s (Srinivas et al. 2010; Brochu Sec. 2.3.2); kappa from :func:`gp_ucb_kappa`
    or fixed."""

    def __init__(self, gp: GPRegressor, kappa: float) -> None:
        super().__init__(gp)
        self.kappa = kappa

    def utility(self, mean: Tensor, std: Tensor) -> Tensor:
        return upper_confidence_bound(mean, std, self.kappa)


class ExpectedImprovementPerSecond(ExpectedImprovement):
    """EI times the expected inverse duration E[1/c(x)] (Snoek Sec. 3.2).

    Args:
        gp: the objective's GP.
        duration_gp: a GP on standardised log duration, (log c - loc) / scale (one setting).
        loc, scale: the standardisation of log duration (seconds).
        xi: EI's margin.
    """

    def __init__(self, gp: GPRegressor, duration_gp: GPRegressor, loc: float, scale: float, xi: float = 0.01) -> None:
        super().__init__(gp, xi)
        if duration_gp.params.n_samples != 1 or duration_gp.n_targets != 1:
            raise ValueError("duration_gp must hold one hyperparameter setting and one target column")
        self.duration_gp, self.loc, self.scale = duration_gp, loc, scale

    def inverse_duration(self, x: Tensor) -> Tensor:
        """E[1 / c(x)] = exp(-m_c + v_c / 2) in 1/seconds, (B,)."""
        mean, var = self.duration_gp.predict(x)  # (1, B, 1), (1, B)
        m_c = self.loc + self.scale * mean[0, :, 0]
        v_c = self.scale ** 2 * (var[0] + self.duration_gp.diag[0])  # predictive: latent + noise
        return torch.exp(-m_c + 0.5 * v_c)

    def __call__(self, x: Tensor) -> Tensor:
        return super().__call__(x) * self.inverse_duration(x)


ACQUISITIONS: Dict[str, Type[Acquisition]] = {
    "pi": ProbabilityOfImprovement,
    "ei": ExpectedImprovement,
    "ucb": UpperConfidenceBound,
    "ei_per_second": ExpectedImprovementPerSecond,
}


def condition_on_fantasies(gp: GPRegressor, xp: Tensor, n_fantasies: int, generator: torch.Generator) -> GPRegressor:
    """Snoek Sec. 3.3: draw S = n_fantasies joint outcomes at the pending inputs xp (P, D) from the
    posterior predictive of each hyperparameter setting, and condition on them."""
    if gp.n_targets != 1:
        raise ValueError("condition on fantasies of a GP with a single target column")
    mean, cov = gp.joint_predictive(xp)  # (M, P, 1), (M, P, P)
    chol = torch.linalg.cholesky(cov)
    eps = torch.randn(mean.shape[0], xp.shape[0], n_fantasies, generator=generator, dtype=xp.dtype)
    return gp.condition(xp, mean + chol @ eps)  # targets (M, N + P, S)


def condition_on_kriging_believer(gp: GPRegressor, xp: Tensor, n_fantasies: int,
                                  generator: Optional[torch.Generator]) -> GPRegressor:
    """Kriging believer: one fantasy equal to the posterior mean at xp (P, D) (``n_fantasies`` unused)."""
    mean, _ = gp.joint_predictive(xp)  # (M, P, 1)
    return gp.condition(xp, mean)


def ignore_pending(gp: GPRegressor, xp: Tensor, n_fantasies: int, generator: Optional[torch.Generator]) -> GPRegressor:
    """Pending evaluations are not used."""
    return gp


PENDING_STRATEGIES: Dict[str, Callable[[GPRegressor, Tensor, int, torch.Generator], GPRegressor]] = {
    "fantasies": condition_on_fantasies,
    "kriging_believer": condition_on_kriging_believer,
    "ignore": ignore_pending,
}

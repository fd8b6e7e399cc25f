"""Univariate slice sampling with stepping out and shrinkage (Neal 2003, "Slice sampling",
Ann. Statist. 31(3)), applied to each coordinate in turn.

Notation::

    x (P,)        current state;  f(x) the log of an unnormalised density (-inf outside its support)
    w (P,)        initial interval widths, one per coordinate (Neal's w)
    m             limit on stepping out: at most m widths per interval (Neal's m)

One update of coordinate i (Neal 2003, Sec. 4):

    1. the slice level:  log y = f(x) - e,  e ~ Exponential(1)     (y ~ Uniform(0, exp f(x)))
    2. stepping out (Fig. 3): place [L, R] of width w_i at random around x_i; with
       J = floor(m V), K = m - 1 - J, widen L by w_i while f(L) > log y (at most J times) and
       R likewise (at most K times)
    3. shrinkage (Fig. 5): draw x'_i ~ Uniform(L, R); accept if f(x') > log y, else replace
       the end of [L, R] on the side of x'_i with x'_i and draw again.

A sweep updates coordinates 0..P-1 in order (Sec. 4: single-variable updates applied to each
variable in turn leave the joint distribution invariant).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import numpy as np

__all__ = ["slice_sample", "slice_sweep"]


def _check_positive_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def slice_sweep(log_density: Callable[[np.ndarray], float], x: np.ndarray, log_fx: float, widths: np.ndarray,
                rng: np.random.Generator, max_steps_out: int = 32) -> tuple[np.ndarray, float]:
    """One sweep of univariate slice updates over all coordinates of ``x`` (Neal 2003, Sec. 4).

    Returns the new state and its log density.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    for i in range(x.shape[0]):
        log_y = log_fx - rng.exponential()
        w = widths[i]
        x_i = x[i]
        left = x_i - w * rng.uniform()
        right = left + w
        j = int(math.floor(max_steps_out * rng.uniform()))
        k = max_steps_out - 1 - j

        def f_at(value: float) -> float:
            x[i] = value
            return log_density(x)

        while j > 0 and f_at(left) > log_y:  # stepping out, Fig. 3
            left -= w
            j -= 1
        while k > 0 and f_at(right) > log_y:
            right += w
            k -= 1
        while True:  # shrinkage, Fig. 5
            proposal = left + rng.uniform() * (right - left)
            log_fp = f_at(proposal)
            if log_fp > log_y:
                log_fx = log_fp
                break
            if proposal < x_i:
                left = proposal
            else:
                right = proposal
            if right - left < 1e-12 * max(1.0, abs(x_i)):
                # The interval collapsed onto x_i: the density at x_i is above the slice, so this
                # only happens if log_density is not a deterministic function of x.
                raise RuntimeError(f"slice sampling: the interval shrank onto x[{i}]={x_i!r} without an "
                                   "acceptable point; is log_density deterministic?")
        x[i] = proposal
    return x, log_fx


def slice_sample(log_density: Callable[[np.ndarray], float], x0: Union[np.ndarray, Sequence[float]], n_samples: int,
                 rng: np.random.Generator, widths: Union[float, np.ndarray, Sequence[float]] = 1.0, burnin: int = 0,
                 thin: int = 1, max_steps_out: int = 32, x0_log_density: Optional[float] = None) -> np.ndarray:
    """Draw ``n_samples`` states of a Markov chain that leaves exp(log_density) invariant.

    Args:
        log_density: log of an unnormalised density of a (P,) array; -inf outside the support.
        x0: initial state (P,), with a finite log density.
        n_samples: number of states returned.
        rng: numpy random generator.
        widths: Neal's w, a scalar or one per coordinate (> 0).
        burnin: sweeps discarded before the first returned state.
        thin: sweeps between returned states (1 = every sweep).
        max_steps_out: Neal's m, the stepping-out limit in widths.
        x0_log_density: log_density(x0) if already known (saves one evaluation).

    Returns:
        samples (n_samples, P).
    """
    _check_positive_int("n_samples", n_samples, 1)
    _check_positive_int("burnin", burnin, 0)
    _check_positive_int("thin", thin, 1)
    _check_positive_int("max_steps_out", max_steps_out, 1)
    x = np.atleast_1d(np.asarray(x0, dtype=np.float64)).copy()
    if x.ndim != 1:
        raise ValueError(f"x0 must be a 1-d array, got shape {x.shape}")
    w = np.broadcast_to(np.asarray(widths, dtype=np.float64), x.shape).copy()
    if not np.all(w > 0):
        raise ValueError(f"widths={widths!r} must all be > 0")
    log_fx = log_density(x) if x0_log_density is None else x0_log_density
    if not np.isfinite(log_fx):
        raise ValueError(f"x0={x!r} has log density {log_fx}; the chain must start inside the support")
    samples = np.empty((n_samples, x.shape[0]))
    for _ in range(burnin):
        x, log_fx = slice_sweep(log_density, x, log_fx, w, rng, max_steps_out)
    for s in range(n_samples):
        for _ in range(thin):
            x, log_fx = slice_sweep(log_density, x, log_fx, w, rng, max_steps_out)
        samples[s] = x
    return samples

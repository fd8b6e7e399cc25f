"""Slice sampler (Neal 2003): known 1-D and 2-D posteriors within Monte Carlo tolerance."""

import math

import numpy as np
import pytest

from lit_automl.hpo.gp.slice_sampling import slice_sample


def test_gaussian_mean_and_variance():
    """N(3, 2^2) from a start far in the tail, with a badly scaled width (stepping out must work)."""
    rng = np.random.default_rng(0)
    samples = slice_sample(lambda x: -0.5 * ((x[0] - 3.0) / 2.0) ** 2, [-20.0], 4000, rng, widths=0.1, burnin=50)
    # 4000 nearly independent draws: standard errors ~0.03 (mean) and ~0.1 (variance)
    assert samples.mean() == pytest.approx(3.0, abs=0.2)
    assert samples.var() == pytest.approx(4.0, rel=0.12)


def test_gamma_mean_and_variance():
    """Gamma(shape 3, rate 2) on x > 0: mean 1.5, variance 0.75; a wide width (shrinkage must work)."""
    rng = np.random.default_rng(1)

    def log_gamma(x):
        return 2.0 * math.log(x[0]) - 2.0 * x[0] if x[0] > 0 else -math.inf

    samples = slice_sample(log_gamma, [1.0], 4000, rng, widths=20.0, burnin=20)
    assert samples.min() > 0
    assert samples.mean() == pytest.approx(1.5, abs=0.08)
    assert samples.var() == pytest.approx(0.75, rel=0.15)


def test_correlated_gaussian_coordinatewise():
    """2-D Gaussian with correlation 0.5: coordinate-wise updates keep the joint invariant."""
    rng = np.random.default_rng(2)
    prec = np.linalg.inv(np.array([[1.0, 0.5], [0.5, 1.0]]))
    samples = slice_sample(lambda x: -0.5 * x @ prec @ x, [0.0, 0.0], 4000, rng, burnin=20)
    assert np.corrcoef(samples.T)[0, 1] == pytest.approx(0.5, abs=0.08)
    assert samples.var(0) == pytest.approx([1.0, 1.0], rel=0.15)


def test_thinning_and_burnin_cost_sweeps():
    """thin and burnin run extra sweeps: the number of density evaluations grows accordingly."""
    counts = []
    for thin, burnin in ((1, 0), (3, 0), (1, 10)):
        calls = []

        def f(x):
            calls.append(1)
            return -0.5 * float(x @ x)

        out = slice_sample(f, np.zeros(3), 5, np.random.default_rng(3), thin=thin, burnin=burnin)
        assert out.shape == (5, 3)
        counts.append(len(calls))
    assert counts[1] > 2 * counts[0] and counts[2] > 2 * counts[0]


def test_bad_arguments_name_the_value():
    rng = np.random.default_rng(0)
    f = lambda x: 0.0 if 0 < x[0] < 1 else -math.inf
    with pytest.raises(ValueError, match="n_samples=0"):
        slice_sample(f, [0.5], 0, rng)
    with pytest.raises(ValueError, match="widths=-1"):
        slice_sample(f, [0.5], 1, rng, widths=-1.0)
    with pytest.raises(ValueError, match="thin=0"):
        slice_sample(f, [0.5], 1, rng, thin=0)
    with pytest.raises(ValueError, match="inside the support"):
        slice_sample(f, [2.0], 1, rng)

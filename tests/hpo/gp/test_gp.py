"""GP regressor: posterior and marginal likelihood against closed forms in NumPy, conditioning,
type-II MAP fit and slice-sampled hyperparameters."""

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

from lit_automl.hpo.gp.gp import (GPParams, GPRegressor, fit_map, log_prior, negative_log_posterior,
                                  prior_mean_std, sample_hyperparameters, theta_bounds)
from lit_automl.hpo.gp.kernels import ArcKernel, Kernel
from lit_automl.threads import single_threaded

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield


def _params(m=2, d=2):
    return GPParams(lengthscales=torch.tensor([[0.3, 0.6], [0.5, 0.2]], dtype=F64)[:m, :d],
                    amplitude=torch.tensor([1.5, 0.7], dtype=F64)[:m], noise=torch.tensor([1e-2, 1e-3], dtype=F64)[:m],
                    mean=torch.tensor([0.2, -0.1], dtype=F64)[:m])


def _se(a, b, ell, sf2):
    return sf2 * np.exp(-0.5 * (((a[:, None] - b[None]) / ell) ** 2).sum(-1))


def _data(n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    y = np.sin(6 * x[:, 0]) + x[:, 1]
    return x, y


def test_posterior_matches_closed_form():
    """mu* = c + k*^T (K + sn2 I)^{-1} (y - c), var* = sf2 - k*^T (K + sn2 I)^{-1} k* (R&W eq. 2.25-2.26)."""
    x, y = _data()
    xq = np.random.default_rng(1).random((5, 2))
    params = _params()
    gp = GPRegressor(Kernel("se"), torch.tensor(x), torch.tensor(y), params, jitter=0.0)
    mean, var = gp.predict(torch.tensor(xq))
    for m in range(2):
        ell, sf2 = params.lengthscales[m].numpy(), float(params.amplitude[m])
        sn2, c = float(params.noise[m]), float(params.mean[m])
        k = _se(x, x, ell, sf2) + sn2 * np.eye(len(x))
        ks = _se(xq, x, ell, sf2)
        np.testing.assert_allclose(mean[m, :, 0].numpy(), c + ks @ np.linalg.solve(k, y - c), rtol=1e-10)
        np.testing.assert_allclose(var[m].numpy(), sf2 - np.einsum("bn,bn->b", ks, np.linalg.solve(k, ks.T).T),
                                   rtol=1e-8)
        # posterior mean at the training inputs, the incumbent's ingredient
        np.testing.assert_allclose(gp.train_mean()[m, :, 0].numpy(),
                                   c + (k - sn2 * np.eye(len(x))) @ np.linalg.solve(k, y - c), rtol=1e-10)


def test_joint_predictive_matches_closed_form():
    x, y = _data()
    xq = np.random.default_rng(2).random((3, 2))
    params = _params(m=1)
    gp = GPRegressor(Kernel("se"), torch.tensor(x), torch.tensor(y), params, jitter=0.0)
    _, cov = gp.joint_predictive(torch.tensor(xq))
    ell, sf2, sn2 = params.lengthscales[0].numpy(), float(params.amplitude[0]), float(params.noise[0])
    k = _se(x, x, ell, sf2) + sn2 * np.eye(len(x))
    ks = _se(xq, x, ell, sf2)
    expected = _se(xq, xq, ell, sf2) - ks @ np.linalg.solve(k, ks.T) + sn2 * np.eye(3)
    np.testing.assert_allclose(cov[0].numpy(), expected, rtol=1e-8, atol=1e-12)


def test_condition_equals_refit_on_all_data():
    x, y = _data(9)
    params = _params()
    t = torch.tensor
    gp = GPRegressor(Kernel("matern52"), t(x[:6]), t(y[:6]), params)
    yp = t(y[6:])[None, :, None].expand(2, 3, 1)
    full = GPRegressor(Kernel("matern52"), t(x), t(y), params)
    xq = t(np.random.default_rng(3).random((4, 2)))
    for a, b in zip(gp.condition(t(x[6:]), yp).predict(xq), full.predict(xq)):
        torch.testing.assert_close(a, b)


def test_negative_log_posterior_matches_closed_form():
    x, y = _data()
    kernel = Kernel("se")
    theta = _params().to_theta()
    value = negative_log_posterior(theta, kernel, torch.tensor(x), torch.tensor(y))
    mu, sd = prior_mean_std(2, 2)
    for m in range(2):
        p = GPParams.from_theta(theta[m:m + 1])
        cov = _se(x, x, p.lengthscales[0].numpy(), float(p.amplitude[0])) + float(p.noise[0]) * np.eye(len(x))
        lml = scipy.stats.multivariate_normal(mean=np.full(len(x), float(p.mean[0])), cov=cov).logpdf(y)
        prior = -0.5 * (((theta[m] - mu) / sd) ** 2).sum().item()
        assert float(value[m]) == pytest.approx(-(lml + prior), rel=1e-10)


def test_theta_round_trip():
    p = _params()
    q = GPParams.from_theta(p.to_theta())
    for a, b in zip((p.lengthscales, p.amplitude, p.noise, p.mean), (q.lengthscales, q.amplitude, q.noise, q.mean)):
        torch.testing.assert_close(a, b)


def test_fit_map_improves_on_its_starts_and_is_stationary():
    x, y = _data(15)
    y = (y - y.mean()) / y.std()
    kernel, tx, ty = Kernel("matern52"), torch.tensor(x), torch.tensor(y)
    rng = np.random.default_rng(0)
    params = fit_map(kernel, tx, ty, rng, n_restarts=2)
    theta = params.to_theta()
    best = float(negative_log_posterior(theta, kernel, tx, ty)[0])
    start = prior_mean_std(2, 2)[0][None]
    assert best < float(negative_log_posterior(start, kernel, tx, ty)[0]) - 1.0
    # a warm start at the optimum stays there
    again = fit_map(kernel, tx, ty, rng, init=theta[0], n_restarts=0)
    assert float(negative_log_posterior(again.to_theta(), kernel, tx, ty)[0]) == pytest.approx(best, abs=1e-4)
    # interior optimum: gradient ~ 0 in the coordinates away from their bounds
    b = torch.as_tensor(theta_bounds(2))
    interior = (theta[0] > b[:, 0] + 1e-3) & (theta[0] < b[:, 1] - 1e-3)
    t = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(negative_log_posterior(t, kernel, tx, ty).sum(), t)
    assert g[0][interior].abs().max() < 1e-2


def test_warm_fit_keeps_only_restarts_that_beat_the_warm_start(monkeypatch):
    """A warm start at the optimum screens out the prior draws (one L-BFGS-B start); a warm start
    at a poor point keeps the draws that beat it."""

    x, y = _data(15)
    y = (y - y.mean()) / y.std()
    kernel, tx, ty = Kernel("matern52"), torch.tensor(x), torch.tensor(y)
    good = fit_map(kernel, tx, ty, np.random.default_rng(0)).to_theta()[0]
    poor = torch.tensor([-4.0, -4.0, 4.0, -13.0, 9.0], dtype=F64)  # tiny lengthscales, far-off mean
    sizes = []
    real = scipy.optimize.minimize
    monkeypatch.setattr(scipy.optimize, "minimize",  # gp imports scipy.optimize where it minimises
                        lambda fun, x0, *a, **k: sizes.append(np.size(x0)) or real(fun, x0, *a, **k))
    fit_map(kernel, tx, ty, np.random.default_rng(1), init=good, n_restarts=4)
    fit_map(kernel, tx, ty, np.random.default_rng(1), init=poor, n_restarts=4)
    assert sizes == [5, 25]


def test_fit_map_recovers_noise_level():
    """Data with noise std 0.3 on a smooth function: the MAP noise variance is near 0.09."""
    rng = np.random.default_rng(1)
    x = rng.random((60, 1))
    y = np.sin(4 * x[:, 0]) + 0.3 * rng.standard_normal(60)
    params = fit_map(Kernel("se"), torch.tensor(x), torch.tensor(y), rng)
    assert 0.04 < float(params.noise[0]) < 0.2


def test_sample_hyperparameters_within_bounds_and_concentrated():
    x, y = _data(12)
    y = (y - y.mean()) / y.std()
    kernel, tx, ty = Kernel("matern52"), torch.tensor(x), torch.tensor(y)
    rng = np.random.default_rng(0)
    init = fit_map(kernel, tx, ty, rng).to_theta()[0]
    samples = sample_hyperparameters(kernel, tx, ty, rng, init, n_samples=10, burnin=2)
    theta = samples.to_theta()
    b = torch.as_tensor(theta_bounds(2))
    assert theta.shape == (10, 5)
    assert bool(((theta >= b[:, 0]) & (theta <= b[:, 1])).all())
    assert theta.std(0).max() > 0  # the chain moves
    # samples lie in the bulk of the posterior: within a few nats of the MAP value per dimension
    nlp = negative_log_posterior(theta, kernel, tx, ty)
    map_nlp = negative_log_posterior(init[None], kernel, tx, ty)
    assert float((nlp - map_nlp).max()) < 15.0


def test_log_prior_is_gaussian_in_log_space():
    theta = torch.zeros(1, 5, dtype=F64)
    mu, sd = prior_mean_std(2, 2)
    assert float(log_prior(theta, 2)[0]) == pytest.approx(float((-0.5 * (mu / sd) ** 2).sum()))
    assert mu[0] == pytest.approx(math.log(0.25 * math.sqrt(2))) and sd[0] == 1.0


def test_bad_shapes_are_named():
    x, y = _data()
    with pytest.raises(ValueError, match="y must be"):
        GPRegressor(Kernel(), torch.tensor(x), torch.tensor(y[:3]), _params())
    with pytest.raises(ValueError, match="init has shape"):
        fit_map(Kernel(), torch.tensor(x), torch.tensor(y), np.random.default_rng(0), init=torch.zeros(3, dtype=F64))


def _conditional_data(n=16, seed=0):
    """x0 always active; x1 active (else NaN) where x0 > 0.4; y depends on x1 only where it is."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    active = x[:, 0] > 0.4
    y = np.sin(5 * x[:, 0]) + np.where(active, 2 * (x[:, 1] - 0.5) ** 2, 0.0)
    x[~active, 1] = np.nan
    return torch.tensor(x), torch.tensor((y - y.mean()) / y.std())


def test_arc_prior_and_bounds():
    """Layout [ell, omega, rho, sf2, sn2, c]: log omega centred on -log(0.25 sqrt(D)) (1 / the median
    lengthscale), log rho on log(1/3); omega in [1e-3, 1e2], rho in [1e-2, 1]."""
    mu, sd = prior_mean_std(1, 2, 1, 1)
    assert mu.shape == (6,)
    assert float(mu[1]) == pytest.approx(-math.log(0.25 * math.sqrt(2))) and float(mu[2]) == pytest.approx(
        math.log(1 / 3))
    assert float(mu[0]) == pytest.approx(-float(mu[1])) and sd.tolist()[:3] == [1.0, 1.0, 1.0]
    b = theta_bounds(1, 1, 1)
    np.testing.assert_allclose(np.exp(b[1]), [1e-3, 1e2])
    np.testing.assert_allclose(np.exp(b[2]), [1e-2, 1.0])
    theta = torch.zeros(1, 6, dtype=F64)
    assert float(log_prior(theta, 2, 1, 1)[0]) == pytest.approx(float((-0.5 * (mu / sd) ** 2).sum()))


def test_fit_map_with_the_arc_kernel_improves_and_stays_in_bounds():
    """MAP over [ell, omega, rho, sf2, sn2, c] on data with an inactive column: far below its start,
    and a warm start at the optimum stays there."""
    x, y = _conditional_data()
    kernel = ArcKernel("matern52", dim=2, arc_columns=[1])
    rng = np.random.default_rng(0)
    theta = fit_map(kernel, x, y, rng, n_restarts=2).to_theta()
    assert theta.shape == (1, 6)
    b = torch.as_tensor(theta_bounds(1, 1, 1))
    assert bool(((theta >= b[:, 0] - 1e-12) & (theta <= b[:, 1] + 1e-12)).all())
    best = float(negative_log_posterior(theta, kernel, x, y)[0])
    start = prior_mean_std(1, 2, 1, 1)[0][None]
    assert best < float(negative_log_posterior(start, kernel, x, y)[0]) - 1.0
    again = fit_map(kernel, x, y, rng, init=theta[0], n_restarts=0)
    assert float(negative_log_posterior(again.to_theta(), kernel, x, y)[0]) == pytest.approx(best, abs=1e-4)


def test_slice_sampling_with_the_arc_kernel():
    x, y = _conditional_data(12)
    kernel = ArcKernel("matern52", dim=2, arc_columns=[1])
    rng = np.random.default_rng(1)
    init = fit_map(kernel, x, y, rng).to_theta()[0]
    theta = sample_hyperparameters(kernel, x, y, rng, init, n_samples=3, burnin=1).to_theta()
    b = torch.as_tensor(theta_bounds(1, 1, 1))
    assert theta.shape == (3, 6) and bool(((theta >= b[:, 0]) & (theta <= b[:, 1])).all())
    assert theta.std(0).max() > 0

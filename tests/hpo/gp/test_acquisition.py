"""Acquisitions: closed forms, GP-UCB's kappa_t, gradients, the integrated acquisition, the
incumbent, fantasies of pending points and EI per second."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from lit_automl.hpo.gp.acquisition import (ACQUISITIONS, PENDING_STRATEGIES, ExpectedImprovement,
                                           ExpectedImprovementPerSecond, ProbabilityOfImprovement,
                                           UpperConfidenceBound, condition_on_fantasies, expected_improvement,
                                           gp_ucb_kappa, incumbent, kushner_xi, probability_of_improvement,
                                           upper_confidence_bound)
from lit_automl.hpo.gp.gp import GPParams, GPRegressor
from lit_automl.hpo.gp.kernels import Kernel
from lit_automl.threads import single_threaded

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield


def _params(m=1, noise=1e-3):
    rng = np.random.default_rng(7)
    return GPParams(lengthscales=torch.tensor(0.25 + 0.3 * rng.random((m, 2)), dtype=F64),
                    amplitude=torch.tensor(0.5 + rng.random(m), dtype=F64),
                    noise=torch.full((m,), noise, dtype=F64),
                    mean=torch.tensor(0.1 * rng.standard_normal(m), dtype=F64))


def _gp(m=1, noise=1e-3, n=8, jitter=1e-9, kernel="matern52"):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((n, 2)), dtype=F64)
    y = torch.sin(5 * x[:, 0]) + x[:, 1] ** 2
    return GPRegressor(Kernel(kernel), x, (y - y.mean()) / y.std(), _params(m, noise), jitter=jitter)


def test_closed_forms_against_scipy():
    rng = np.random.default_rng(0)
    mean, std, best = rng.standard_normal(50), 0.1 + rng.random(50), rng.standard_normal(50)
    t = lambda a: torch.tensor(a, dtype=F64)
    for xi in (0.0, 0.3):
        z = (best - mean - xi) / std
        np.testing.assert_allclose(probability_of_improvement(t(mean), t(std), t(best), xi).numpy(),
                                   scipy.stats.norm.cdf(z), rtol=1e-12)
        np.testing.assert_allclose(expected_improvement(t(mean), t(std), t(best), xi).numpy(),
                                   (best - mean - xi) * scipy.stats.norm.cdf(z) + std * scipy.stats.norm.pdf(z),
                                   rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(upper_confidence_bound(t(mean), t(std), 2.5).numpy(), -mean + 2.5 * std)


def test_expected_improvement_is_the_expectation():
    """EI(x) = E[max(f* - xi - f, 0)], f ~ N(mu, s^2), by Monte Carlo."""
    rng = np.random.default_rng(1)
    f = 0.3 + 0.7 * rng.standard_normal(400_000)
    mc = np.maximum(0.5 - 0.1 - f, 0).mean()
    ei = float(expected_improvement(torch.tensor(0.3), torch.tensor(0.7), torch.tensor(0.5), 0.1))
    assert ei == pytest.approx(mc, rel=0.01)


@pytest.mark.parametrize("t,d,nu,delta", [(1, 1, 1.0, 0.1), (11, 2, 1.0, 0.1), (50, 6, 0.5, 0.05), (200, 10, 2.0, 0.5)])
def test_gp_ucb_kappa_formula(t, d, nu, delta):
    """kappa_t = sqrt(nu tau_t), tau_t = 2 log(t^(d/2+2) pi^2 / (3 delta)) (Brochu et al. 2010)."""
    tau = 2 * np.log(float(t) ** (d / 2 + 2) * np.pi**2 / (3 * delta))
    assert gp_ucb_kappa(t, d, nu, delta) == pytest.approx(np.sqrt(nu * tau), rel=1e-12)


def test_kappa_grows_with_t_and_d_and_kushner_decreases():
    assert gp_ucb_kappa(100, 2) > gp_ucb_kappa(10, 2)
    assert gp_ucb_kappa(10, 6) > gp_ucb_kappa(10, 2)
    assert kushner_xi(1.0, 4) == pytest.approx(0.5)
    assert kushner_xi(1.0, 100) < kushner_xi(1.0, 10)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="delta=1.5"):
        gp_ucb_kappa(3, 2, 1.0, 1.5)
    with pytest.raises(ValueError, match="t=0"):
        gp_ucb_kappa(0, 2)
    with pytest.raises(ValueError, match="nu=-1"):
        gp_ucb_kappa(3, 2, -1)
    with pytest.raises(ValueError, match="t=0"):
        kushner_xi(0.1, 0)


def _duration_gp():
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.random((8, 2)), dtype=F64)
    return GPRegressor(Kernel("matern52"), x, x[:, 0] * 2 - 1, _params(1, 1e-2))


def _acquisitions(gp):
    return {
        "pi": ProbabilityOfImprovement(gp, 0.01),
        "ei": ExpectedImprovement(gp, 0.01),
        "ucb": UpperConfidenceBound(gp, 2.0),
        "ei_per_second": ExpectedImprovementPerSecond(gp, _duration_gp(), 0.5, 2.0, 0.01),
    }


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("pending", [None, "fantasies", "kriging_believer"])
def test_gradients_match_finite_differences(m, pending):
    gp = _gp(m)
    if pending is not None:
        xp = torch.tensor([[0.4, 0.6], [0.9, 0.1]], dtype=F64)
        gp = PENDING_STRATEGIES[pending](gp, xp, 4, torch.Generator().manual_seed(0))
    x = torch.tensor([[0.13, 0.52], [0.71, 0.33], [0.45, 0.95]], dtype=F64, requires_grad=True)
    acqs = _acquisitions(gp)
    assert sorted(acqs) == sorted(ACQUISITIONS)
    for name, acq in acqs.items():
        assert torch.autograd.gradcheck(acq, (x,), eps=1e-6, atol=1e-6, rtol=1e-4), name


def test_integrated_acquisition_is_the_average_over_samples():
    """Snoek Sec. 3.1: a(x) = 1/M sum_m a(x; theta_m)."""
    gp = _gp(m=3)
    x = torch.rand(6, 2, dtype=F64)
    batched = ExpectedImprovement(gp, 0.0)(x)
    singles = []
    for i in range(3):
        p = GPParams(gp.params.lengthscales[i:i + 1], gp.params.amplitude[i:i + 1], gp.params.noise[i:i + 1],
                     gp.params.mean[i:i + 1])
        singles.append(ExpectedImprovement(GPRegressor(gp.kernel, gp.x, gp.y[0, :, 0], p, gp.jitter), 0.0)(x))
    torch.testing.assert_close(batched, torch.stack(singles).mean(0))
    assert not torch.allclose(singles[0], singles[1])


def test_incumbent_is_best_posterior_mean_not_best_observation():
    """With noise the incumbent is min_i mu(x_i) (closed form), above the lowest observation."""
    gp = _gp(noise=0.3)
    x, y = gp.x.numpy(), gp.y[0, :, 0].numpy()
    p = gp.params
    ell, sf2, c = p.lengthscales[0].numpy(), float(p.amplitude[0]), float(p.mean[0])
    r = np.sqrt((((x[:, None] - x[None]) / ell) ** 2).sum(-1))
    k = sf2 * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)
    mu = c + k @ np.linalg.solve(k + (0.3 + gp.jitter) * np.eye(len(x)), y - c)
    best = float(incumbent(gp)[0, 0])
    assert best == pytest.approx(mu.min(), rel=1e-10)
    assert best > y.min() + 0.05


def test_fantasy_at_observed_point_changes_nothing_when_noise_free():
    """Noise-free limit (jitter only): the fantasised outcome at an observed input equals the
    observation, so EI with that pending point equals EI without it (the gap shrinks like
    sqrt(jitter)); a pending point elsewhere does change EI (the test can fail)."""
    x = torch.rand(200, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    gaps = []
    for jitter in (1e-8, 1e-12):
        gp = _gp(noise=0.0, jitter=jitter)
        plain = ExpectedImprovement(gp, 0.0)(x)
        at_observed = condition_on_fantasies(gp, gp.x[2:3], 16, torch.Generator().manual_seed(0))
        gaps.append(float((ExpectedImprovement(at_observed, 0.0)(x) - plain).abs().max()))
    assert gaps[1] < 1e-6 and gaps[1] < gaps[0] / 30
    top = int(plain.argmax())  # a pending point where EI is highest
    elsewhere = condition_on_fantasies(gp, x[top:top + 1], 16, torch.Generator().manual_seed(0))
    assert float(ExpectedImprovement(elsewhere, 0.0)(x)[top]) < 0.5 * float(plain[top])


def test_fantasies_are_draws_from_the_joint_predictive():
    gp = _gp(m=2)
    xp = torch.tensor([[0.3, 0.3], [0.35, 0.3]], dtype=F64)
    cond = condition_on_fantasies(gp, xp, 20000, torch.Generator().manual_seed(0))
    draws = cond.y[:, gp.x.shape[0]:, :]  # (M, P, S)
    mean, cov = gp.joint_predictive(xp)
    for m in range(2):
        np.testing.assert_allclose(draws[m].mean(-1).numpy(), mean[m, :, 0].numpy(), atol=0.02)
        np.testing.assert_allclose(np.cov(draws[m].numpy()), cov[m].numpy(), rtol=0.05, atol=1e-4)


def test_kriging_believer_keeps_mean_and_shrinks_variance():
    gp = _gp()
    xp = torch.tensor([[0.5, 0.5]], dtype=F64)
    kb = PENDING_STRATEGIES["kriging_believer"](gp, xp, 1, None)
    x = torch.tensor([[0.5, 0.5], [0.52, 0.47], [0.1, 0.9]], dtype=F64)
    (m0, v0), (m1, v1) = gp.predict(x), kb.predict(x)
    torch.testing.assert_close(m0, m1)
    assert float(v1[0, 0]) < 0.05 * float(v0[0, 0]) and float(v1[0, 1]) < float(v0[0, 1])
    assert PENDING_STRATEGIES["ignore"](gp, xp, 1, None) is gp


def test_ei_per_second_divides_by_expected_duration():
    """EI/s = EI * E[1/c] with log c ~ N(m_c, v_c): E[1/c] checked by Monte Carlo."""
    gp, dur = _gp(), _duration_gp()
    loc, scale = 0.5, 2.0
    acq = ExpectedImprovementPerSecond(gp, dur, loc, scale, 0.0)
    x = torch.tensor([[0.2, 0.4], [0.8, 0.4]], dtype=F64)
    mean, var = dur.predict(x)
    rng = np.random.default_rng(0)
    for b in range(2):
        m_c = loc + scale * float(mean[0, b, 0])
        s_c = scale * math.sqrt(float(var[0, b]) + float(dur.diag[0]))
        mc = np.exp(-(m_c + s_c * rng.standard_normal(400_000))).mean()
        assert float(acq.inverse_duration(x)[b]) == pytest.approx(mc, rel=0.01)
    torch.testing.assert_close(acq(x), ExpectedImprovement(gp, 0.0)(x) * acq.inverse_duration(x))
    # the duration GP was fitted to log c increasing in x_0: the right point is slower
    assert float(acq.inverse_duration(x)[0]) > float(acq.inverse_duration(x)[1])

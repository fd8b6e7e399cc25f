"""Acquisition maximisation: continuous optimum by L-BFGS-B, discrete / categorical by enumeration
and local search (one-hot columns never given to L-BFGS-B), DIRECT, errors."""

import numpy as np
import pytest
import scipy.optimize
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lit_automl.hpo.gp.optimize import OPTIMIZERS, maximize_acquisition
from lit_automl.threads import single_threaded
from lit_automl.hpo.gp.search_space import SearchSpace


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield


def _bowl(centre):
    """A smooth acquisition with its maximum at ``centre`` (D,) (several local maxima around it)."""
    c = torch.as_tensor(centre, dtype=torch.float64)

    def acq(x):
        d2 = (x - c).pow(2).sum(-1)
        return torch.exp(-d2 / 0.02) + 0.3 * torch.exp(-(x - 1 + c).pow(2).sum(-1) / 0.01)

    return acq


def test_continuous_optimum_by_lbfgsb():
    space = SearchSpace({"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1), "c": FloatDistribution(0, 1)})
    centre = [0.123, 0.877, 0.5]
    row, value = maximize_acquisition(_bowl(centre), space, np.random.default_rng(0), n_candidates=64)
    np.testing.assert_allclose(row.numpy(), centre, atol=1e-4)  # far finer than 64 Sobol points alone
    assert value == pytest.approx(1.0, abs=1e-6)


def test_mixed_space_and_one_hot_never_reaches_lbfgsb(monkeypatch):
    space = SearchSpace({"a": FloatDistribution(0, 1), "k": IntDistribution(0, 9),
                         "c": CategoricalDistribution(["x", "y", "z"])})
    k_target = float(space.encode({"a": 0.5, "k": 7, "c": "x"})[1])

    def acq(x):  # best at a = 0.3, k = 7, c = "z"; c = "y" is second
        return (-(x[:, 0] - 0.3).pow(2) - (x[:, 1] - k_target).pow(2) + 0.5 * x[:, 4] + 0.2 * x[:, 3])

    sizes = []
    real = scipy.optimize.minimize

    def spy(fun, x0, *args, **kwargs):
        sizes.append(np.size(x0))
        return real(fun, x0, *args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)  # optimize imports scipy.optimize where used
    row, _ = maximize_acquisition(acq, space, np.random.default_rng(0), n_candidates=16, n_starts=3)
    params = space.decode(row)
    assert params["k"] == 7 and params["c"] == "z"
    assert params["a"] == pytest.approx(0.3, abs=1e-4)
    assert sizes and all(s == 3 for s in sizes)  # 3 starts x 1 continuous column: no int, no one-hot


def test_large_int_range_by_local_search():
    """1000 values (more than max_enumerate): the +-2^j neighbourhood search climbs to the optimum."""
    space = SearchSpace({"n": IntDistribution(1, 1000)})
    target = float(space.encode({"n": 613})[0])
    acq = lambda x: -(x[:, 0] - target).abs()
    row, _ = maximize_acquisition(acq, space, np.random.default_rng(0), n_candidates=8, n_starts=2)
    assert space.decode(row)["n"] == 613


def test_direct_finds_the_optimum():
    space = SearchSpace({"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1),
                         "c": CategoricalDistribution([0, 1])})
    base = _bowl([0.3, 0.7])

    def acq(x):
        return base(x[:, :2]) + 0.1 * x[:, 3]

    row, value = maximize_acquisition(acq, space, np.random.default_rng(0), method="direct", n_candidates=16)
    params = space.decode(row)
    assert params["a"] == pytest.approx(0.3, abs=1e-2) and params["b"] == pytest.approx(0.7, abs=1e-2)
    assert params["c"] == 1


def test_extra_candidates_are_used():
    """A needle no Sobol point finds, given as an extra candidate, is returned."""
    space = SearchSpace({"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1)})
    needle = torch.tensor([0.4321, 0.8765], dtype=torch.float64)
    acq = lambda x: torch.exp(-(x - needle).pow(2).sum(-1) / 1e-8)
    row, _ = maximize_acquisition(acq, space, np.random.default_rng(0), n_candidates=32,
                                  extra_candidates=needle[None])
    torch.testing.assert_close(row, needle)


def test_bad_method_lists_the_valid_ones():
    space = SearchSpace({"a": FloatDistribution(0, 1)})
    with pytest.raises(ValueError, match=r"method='cmaes' is not one of \['direct', 'lbfgsb'\]"):
        maximize_acquisition(lambda x: x[:, 0], space, np.random.default_rng(0), method="cmaes")
    assert sorted(OPTIMIZERS) == ["direct", "lbfgsb"]

"""Kernels: values against their closed forms in NumPy, Matern -> SE ordering, ARD vs isotropic."""

import math

import numpy as np
import pytest
import torch

from lit_automl.hpo.gp.kernels import KERNELS, Kernel
from lit_automl.hpo.gp.sampler import single_threaded


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_threaded():
        yield


def _numpy_kernel(name, x1, x2, ell, sf2):
    r = np.sqrt((((x1[:, None, :] - x2[None, :, :]) / ell) ** 2).sum(-1))
    if name == "se":
        g = np.exp(-0.5 * r**2)
    elif name == "matern12":
        g = np.exp(-r)
    elif name == "matern32":
        g = (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)
    else:
        g = (1 + math.sqrt(5) * r + 5.0 / 3.0 * r**2) * np.exp(-math.sqrt(5) * r)
    return sf2 * g


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_values_match_closed_form(name):
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((5, 3)), rng.random((4, 3))
    ell = np.array([[0.3, 0.7, 1.5], [0.2, 0.2, 2.0]])
    sf2 = np.array([1.3, 0.4])
    k = Kernel(name)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    cross = k.cross(t(x1), t(x2), t(ell), t(sf2))
    gram = k.gram(t(x1), t(ell), t(sf2))
    for m in range(2):
        np.testing.assert_allclose(cross[m].numpy(), _numpy_kernel(name, x1, x2, ell[m], sf2[m]), rtol=1e-12)
        np.testing.assert_allclose(gram[m].numpy(), _numpy_kernel(name, x1, x1, ell[m], sf2[m]), rtol=1e-12)
    np.testing.assert_allclose(torch.diagonal(gram, dim1=-2, dim2=-1).numpy(), sf2[:, None].repeat(5, 1))


def test_matern_approaches_se_monotonically():
    """At equal lengthscale: sup_r |g_nu - g_se| shrinks from nu = 1/2 to 3/2 to 5/2, and for r up
    to ~1.9 the values increase pointwise towards SE."""
    r = torch.linspace(0, 6, 6001, dtype=torch.float64)
    r2 = r**2
    se = KERNELS["se"](r2)
    values = [KERNELS[n](r2) for n in ("matern12", "matern32", "matern52")]
    gaps = [float((v - se).abs().max()) for v in values]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    near = r <= 1.9
    assert bool((values[0][near] <= values[1][near]).all())
    assert bool((values[1][near] <= values[2][near]).all())
    assert bool((values[2][near] <= se[near]).all())


def test_isotropic_equals_ard_with_equal_lengthscales():
    x = torch.rand(6, 4, dtype=torch.float64)
    amp = torch.tensor([1.0], dtype=torch.float64)
    iso = Kernel("se", ard=False).gram(x, torch.tensor([[0.4]], dtype=torch.float64), amp)
    ard = Kernel("se", ard=True).gram(x, torch.full((1, 4), 0.4, dtype=torch.float64), amp)
    torch.testing.assert_close(iso, ard)
    assert Kernel("se", ard=False).n_lengthscales(4) == 1 and Kernel("se").n_lengthscales(4) == 4


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_gradient_finite_at_coincident_points(name):
    x = torch.rand(3, 2, dtype=torch.float64)
    ell = torch.full((1, 2), 0.5, dtype=torch.float64, requires_grad=True)
    xq = x[:1].clone().requires_grad_(True)
    k = Kernel(name).cross(xq, x, ell, torch.ones(1, dtype=torch.float64)).sum()
    gx, gl = torch.autograd.grad(k, (xq, ell))
    assert torch.isfinite(gx).all() and torch.isfinite(gl).all()


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"kernel='rbf'.*matern52"):
        Kernel("rbf")
    with pytest.raises(ValueError, match="ard=1"):
        Kernel("se", ard=1)

"""Kernels: values against their closed forms in NumPy, Matern -> SE ordering, ARD vs isotropic."""

import math

import numpy as np
import pytest
import torch

from lit_automl.hpo.gp.kernels import KERNELS, ArcKernel, Kernel
from lit_automl.threads import single_threaded


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


# -- arc kernel (Swersky et al. 2013) ----------------------------------------------------------------

NAN = float("nan")
F64 = torch.float64


def _arc_by_hand(p, q, ell0, omega, rho, sf2):
    """Two-level space: x0 always active, x1 active only where the parent says (NaN otherwise);
    the distance of Swersky et al. 2013, eq. 3, in its 1 - cos form, then SE."""
    r2 = ((p[0] - q[0]) / ell0) ** 2
    active = (not math.isnan(p[1]), not math.isnan(q[1]))
    if all(active):
        r2 += 2 * omega**2 * (1 - math.cos(math.pi * rho * (p[1] - q[1])))
    elif any(active):
        r2 += omega**2
    return sf2 * math.exp(-0.5 * r2)


def test_arc_kernel_matches_closed_form_on_a_two_level_space():
    """Both inactive: only x0 counts; one active: omega apart in x1; both active: the chord
    omega sqrt(2 - 2 cos(pi rho (x1 - x1'))). Values by hand for each case."""
    ell0, omega, rho, sf2 = 0.4, 0.8, 0.6, 1.3
    points = [(0.2, NAN), (0.5, NAN), (0.3, 0.1), (0.9, 0.8)]
    x = torch.tensor(points, dtype=F64)
    kernel = ArcKernel("se", dim=2, arc_columns=[1])
    assert kernel.hyper_layout(2) == (1, 1, 1)
    hyper = torch.tensor([[ell0, omega, rho]], dtype=F64)
    gram = kernel.gram(x, hyper, torch.tensor([sf2], dtype=F64))[0]
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            assert float(gram[i, j]) == pytest.approx(_arc_by_hand(p, q, ell0, omega, rho, sf2), rel=1e-12)
    # the three cases written out: both inactive (x0 differs by 0.3), one active, both active
    assert float(gram[0, 1]) == pytest.approx(sf2 * math.exp(-0.5 * (0.3 / ell0) ** 2), rel=1e-12)
    assert float(gram[0, 2]) == pytest.approx(sf2 * math.exp(-0.5 * ((0.1 / ell0) ** 2 + omega**2)), rel=1e-12)
    chord2 = omega**2 * (2 - 2 * math.cos(math.pi * rho * 0.7))
    assert float(gram[2, 3]) == pytest.approx(sf2 * math.exp(-0.5 * ((0.6 / ell0) ** 2 + chord2)), rel=1e-12)
    # the value an inactive column would hold does not matter (eq. 1): it is not read at all
    assert float(gram[0, 0]) == pytest.approx(sf2) and float(gram[1, 1]) == pytest.approx(sf2)


def _embedding(x, ell, omega, rho, arc, onehot, plain):
    """The explicit embedding (eq. 2): plain columns / ell, arc columns to omega a [sin, cos], one-hot
    columns to omega a h; zeros where inactive."""
    a = ~np.isnan(x)
    v = np.where(a, x, 0.0)
    parts = [v[:, plain] / ell]
    om_arc, om_hot = omega[:len(arc)], omega[len(arc):]
    parts.append(om_arc * a[:, arc] * np.sin(np.pi * rho * v[:, arc]))
    parts.append(om_arc * a[:, arc] * np.cos(np.pi * rho * v[:, arc]))
    parts.append(om_hot * a[:, onehot] * v[:, onehot])
    return np.concatenate(parts, axis=1)


def _mixed_points(n, rng):
    """Columns: 0, 1 always active; 2 numeric conditional; 3-5 a conditional categorical's one-hot."""
    x = np.empty((n, 6))
    x[:, :3] = rng.random((n, 3))
    x[:, 3:] = np.eye(3)[rng.integers(0, 3, n)]
    x[rng.random(n) < 0.5, 2] = np.nan
    x[rng.random(n) < 0.5, 3:] = np.nan
    return x


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_arc_kernel_is_a_kernel_of_the_embedding_distance(name):
    rng = np.random.default_rng(1)
    x1, x2 = _mixed_points(7, rng), _mixed_points(5, rng)
    ell, omega, rho, sf2 = np.array([0.3, 0.9]), np.array([1.2, 0.5, 0.7, 2.0]), np.array([0.45]), 0.8
    kernel = ArcKernel(name, dim=6, arc_columns=[2], onehot_columns=[3, 4, 5])
    hyper = torch.tensor(np.concatenate([ell, omega, rho])[None])
    cross = kernel.cross(torch.tensor(x1), torch.tensor(x2), hyper, torch.tensor([sf2], dtype=F64))[0].numpy()
    e1, e2 = (_embedding(x, ell, omega, rho, [2], [3, 4, 5], [0, 1]) for x in (x1, x2))
    expected = _numpy_kernel(name, e1, e2, np.ones(e1.shape[1]), sf2)
    np.testing.assert_allclose(cross, expected, rtol=1e-10)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_arc_gram_is_positive_semidefinite_on_mixed_activity(name):
    rng = np.random.default_rng(2)
    x = torch.tensor(_mixed_points(40, rng))
    kernel = ArcKernel(name, ard=False, dim=6, arc_columns=[2], onehot_columns=[3, 4, 5])
    for seed in range(3):
        hyper = torch.as_tensor(np.random.default_rng(seed).uniform(0.05, 1.0, (1, 6)))  # ell, 4 omega, rho
        gram = kernel.gram(x, hyper, torch.ones(1, dtype=F64))[0]
        torch.testing.assert_close(gram, gram.T)
        eig = torch.linalg.eigvalsh(gram)
        assert float(eig.min()) > -1e-10 * float(eig.max())


def test_arc_gradient_wrt_hyperparameters_matches_finite_differences():
    rng = np.random.default_rng(3)
    x1, x2 = torch.tensor(_mixed_points(6, rng)), torch.tensor(_mixed_points(4, rng))
    kernel = ArcKernel("matern52", dim=6, arc_columns=[2], onehot_columns=[3, 4, 5])
    hyper = torch.tensor([[0.4, 0.7, 1.1, 0.6, 0.9, 1.3, 0.35]], dtype=F64, requires_grad=True)
    amp = torch.tensor([0.9], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, a: kernel.cross(x1, x2, h, a), (hyper, amp), eps=1e-6, atol=1e-8)


def test_arc_kernel_without_conditional_columns_is_the_plain_kernel():
    x = torch.rand(6, 3, dtype=F64)
    ell, amp = torch.tensor([[0.3, 0.5, 0.8]], dtype=F64), torch.ones(1, dtype=F64)
    arc = ArcKernel("matern52", dim=3)
    assert arc.hyper_layout(3) == Kernel().hyper_layout(3) == (3, 0, 0)
    torch.testing.assert_close(arc.gram(x, ell, amp), Kernel("matern52").gram(x, ell, amp))


def test_arc_layout_and_bad_arguments():
    assert ArcKernel(dim=6, arc_columns=[2], onehot_columns=[3, 4]).hyper_layout(6) == (3, 3, 1)
    assert ArcKernel(ard=False, dim=6, arc_columns=[2]).n_lengthscales(6) == 1 + 1 + 1
    assert ArcKernel(dim=2, arc_columns=[0, 1]).hyper_layout(2) == (0, 2, 2)  # no always-active column
    with pytest.raises(ValueError, match=r"columns \[5\] are outside \[0, 3\)"):
        ArcKernel(dim=3, arc_columns=[5])
    with pytest.raises(ValueError, match=r"must be distinct"):
        ArcKernel(dim=3, arc_columns=[1], onehot_columns=[1, 2])
    with pytest.raises(ValueError, match=r"dim=0 must be an int >= 1"):
        ArcKernel(dim=0)
    with pytest.raises(ValueError, match=r"for 3 columns, got inputs with 4"):
        ArcKernel(dim=3).hyper_layout(4)

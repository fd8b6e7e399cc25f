import pytest
import torch

from lit_automl.spaces import DropPath, drop_path


def test_identity_when_not_training_or_zero():
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x


def test_whole_samples_dropped_and_survivors_rescaled():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.3, training=True)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(1 / 0.7)).all(1)).all()
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert y.mean().item() == pytest.approx(1.0, abs=0.05)


def test_module_and_bad_probability():
    m = DropPath(0.2)
    assert "drop_prob=0.2" in repr(m)
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\), got 1.0"):
        DropPath(1.0)
    with pytest.raises(ValueError, match="got -0.1"):
        drop_path(torch.ones(1), -0.1)


# --- sample_keep_mask: the shared "which parallel paths survive" primitive -------------------------

from math import comb  # noqa: E402

from lit_automl.spaces import sample_keep_mask  # noqa: E402


def exact_keep_prob(n: int, p: float, min_keep: int) -> float:
    """P(a given path is kept) = E[max(S, min_keep)] / n with S ~ Binomial(n, 1 - p) survivors."""
    return sum(comb(n, s) * (1 - p) ** s * p ** (n - s) * max(s, min_keep) for s in range(n + 1)) / n


def test_keep_mask_shape_dtype_and_no_drop():
    m = sample_keep_mask(3, 0.0, batch_shape=(5, 2))
    assert m.shape == (5, 2, 3) and m.dtype == torch.bool and m.all()
    assert sample_keep_mask(4, 0.5).shape == (4,)


@pytest.mark.parametrize("n,p,min_keep", [(2, 0.15, 1), (4, 0.5, 1), (3, 0.9, 1), (5, 0.7, 2), (3, 0.3, 0)])
def test_keep_mask_drop_frequency_matches_exact_min_keep_correction(n, p, min_keep):
    g = torch.Generator().manual_seed(0)
    m = sample_keep_mask(n, p, batch_shape=(40000,), min_keep=min_keep, generator=g)
    assert (m.sum(-1) >= min_keep).all()
    expected_drop = 1 - exact_keep_prob(n, p, min_keep)
    if min_keep == 1:  # closed form: p - p**n / n
        assert expected_drop == pytest.approx(p - p ** n / n)
    observed = (~m).float().mean(0)  # per path: the revival is symmetric across paths
    assert torch.allclose(observed, torch.full((n,), expected_drop), atol=0.012)


def test_keep_mask_revives_a_uniform_path_and_rows_are_independent():
    g = torch.Generator().manual_seed(1)
    m = sample_keep_mask(4, 0.999, batch_shape=(20000,), generator=g)
    assert (m.sum(-1) == 1).float().mean().item() > 0.99  # almost always all dropped, one revived
    assert torch.allclose(m.float().mean(0), torch.full((4,), 0.25), atol=0.015)


def test_keep_mask_generator_reproducible():
    a = sample_keep_mask(6, 0.4, (100,), generator=torch.Generator().manual_seed(3))
    b = sample_keep_mask(6, 0.4, (100,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_paths=0, drop_prob=0.1), "num_paths must be a positive int, got 0"),
        (dict(num_paths=3, drop_prob=1.0), r"drop_prob must be in \[0, 1\), got 1.0"),
        (dict(num_paths=3, drop_prob=-0.2), "got -0.2"),
        (dict(num_paths=3, drop_prob=0.1, min_keep=4), r"min_keep must be an int in \[0, num_paths=3\], got 4"),
        (dict(num_paths=3, drop_prob=0.1, batch_shape=(-1,)), r"batch_shape .* got \(-1,\)"),
    ],
)
def test_keep_mask_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_keep_mask(**kwargs)

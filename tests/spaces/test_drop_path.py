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

import pytest
import torch
from sklearn.datasets import load_digits

from lit_automl.datamodules import DigitsDataModule, EpochSeededSampler


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=32, seed=0)
    dm.setup("fit")
    return dm


def test_attributes_shapes_and_dtypes(digits):
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert len(digits.train_dataset) + len(digits.val_dataset) == 1797
    assert len(digits.val_dataset) == 360  # ceil(0.2 * 1797), sklearn's rounding
    x, y = next(iter(digits.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.long
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    xv, yv = next(iter(digits.val_dataloader()))
    assert xv.shape == (32, 1, 8, 8) and yv.dtype == torch.long
    xt, _ = next(iter(digits.test_dataloader()))
    assert torch.equal(xt, xv)  # test loader serves the held-out split


def test_normalised_with_train_statistics(digits):
    x_train = digits.train_dataset.tensors[0]
    assert abs(float(x_train.mean())) < 1e-5
    assert abs(float(x_train.std()) - 1.0) < 1e-4
    # recovered raw pixels are the 0..16 grid scaled to [0, 1]
    raw = x_train * digits.std + digits.mean
    assert float(raw.min()) > -1e-5 and float(raw.max()) < 1 + 1e-5
    assert torch.allclose(raw * 16, (raw * 16).round(), atol=1e-4)
    x_val = digits.val_dataset.tensors[0]
    assert abs(float(x_val.mean())) > 1e-4  # held-out split not re-standardised with its own stats


def test_unnormalised_range():
    dm = DigitsDataModule(normalize=False)
    dm.setup()
    x = dm.train_dataset.tensors[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert dm.mean is None and dm.std is None


def test_split_is_seeded_stratified_and_disjoint():
    def split(seed):
        dm = DigitsDataModule(seed=seed, normalize=False)
        dm.setup()
        return dm

    a, b, c = split(0), split(0), split(1)
    assert torch.equal(a.val_dataset.tensors[0], b.val_dataset.tensors[0])
    assert not torch.equal(a.val_dataset.tensors[0], c.val_dataset.tensors[0])
    train_counts = torch.bincount(a.train_dataset.tensors[1], minlength=10).float()
    val_counts = torch.bincount(a.val_dataset.tensors[1], minlength=10).float()
    ratio = val_counts / (train_counts + val_counts)
    assert float(ratio.min()) > 0.17 and float(ratio.max()) < 0.23  # stratified: ~20 % of every class
    assert set(a.train_indices).isdisjoint(a.test_indices)
    assert sorted(a.train_indices + a.test_indices) == list(range(1797))
    raw = load_digits()
    assert torch.equal(a.val_dataset.tensors[1], torch.as_tensor(raw.target[a.test_indices]))
    assert torch.allclose(a.val_dataset.tensors[0][:, 0], torch.as_tensor(raw.images[a.test_indices]).float() / 16)


def test_train_loader_order_depends_only_on_seed_and_epoch(digits):
    loader = digits.train_dataloader()
    assert isinstance(loader.sampler, EpochSeededSampler)
    first = torch.cat([y for _, y in loader])
    again = torch.cat([y for _, y in digits.train_dataloader()])
    assert torch.equal(first, again)
    loader.sampler.set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in loader]), first)
    other = DigitsDataModule(batch_size=32, seed=5)
    other.setup()
    other_labels = torch.cat([y for _, y in other.train_dataloader()])
    assert not torch.equal(other_labels[:64], first[:64])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be a float in the open interval \(0, 1\), got 1.0"),
        ({"test_fraction": 0}, ValueError, "test_fraction"),
        ({"num_workers": -1}, ValueError, "num_workers must be an int >= 0, got -1"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"normalize": 1}, TypeError, "normalize must be a bool"),
    ],
)
def test_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DigitsDataModule(**kwargs)


def test_loader_before_setup_raises():
    with pytest.raises(RuntimeError, match=r"setup\(\) must be called"):
        DigitsDataModule().train_dataloader()

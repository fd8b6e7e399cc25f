import sys

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.datamodules import BilevelDataModule, DigitsDataModule, EpochSeededSampler


class IndexDataModule(pl.LightningDataModule):
    """Train examples are their own indices, so tests can see exactly which examples a batch holds."""

    num_classes, in_channels, image_size = 3, 1, 1

    def __init__(self, n: int = 20, batch_size: int = 4) -> None:
        super().__init__()
        self.n, self.batch_size = n, batch_size
        self.train_dataset = None
        self.setup_calls = 0

    def setup(self, stage=None):
        self.setup_calls += 1
        self.train_dataset = TensorDataset(torch.arange(self.n))
        self.val_dataset = TensorDataset(torch.arange(100, 104))

    def val_dataloader(self):
        return DataLoader(self.val_dataset, batch_size=2)

    def test_dataloader(self):
        return DataLoader(self.val_dataset, batch_size=4)


class PairRecorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: dict[int, dict[str, list[int]]] = {}

    def training_step(self, batch, batch_idx):
        assert set(batch) == {"train", "val"}
        record = self.seen.setdefault(self.current_epoch, {"train": [], "val": []})
        for key in ("train", "val"):
            (x,) = batch[key]
            record[key].extend(x.tolist())
        return self.layer(batch["train"][0].float().unsqueeze(1)).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class TinyClassifier(pl.LightningModule):
    """Trivial model for the LightningCLI test: consumes the paired batches."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.head = torch.nn.LazyLinear(num_classes)

    def training_step(self, batch, batch_idx):
        x, y = batch["train"]
        x_arch, y_arch = batch["val"]
        loss = torch.nn.functional.cross_entropy(self.head(x.flatten(1)), y)
        return loss + 0.0 * torch.nn.functional.cross_entropy(self.head(x_arch.flatten(1)), y_arch)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.head(x.flatten(1)), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_halves_are_disjoint_complete_and_seeded():
    dm = BilevelDataModule(IndexDataModule(n=21), seed=3)
    dm.setup("fit")
    assert len(dm.weight_indices) == 10 and len(dm.arch_indices) == 11  # floor(0.5 * 21) for the weights
    assert set(dm.weight_indices).isdisjoint(dm.arch_indices)
    assert sorted(dm.weight_indices + dm.arch_indices) == list(range(21))
    again = BilevelDataModule(IndexDataModule(n=21), seed=3)
    again.setup("fit")
    assert again.weight_indices == dm.weight_indices
    other = BilevelDataModule(IndexDataModule(n=21), seed=4)
    other.setup("fit")
    assert other.weight_indices != dm.weight_indices
    dm.setup("validate")  # idempotent: the split does not move
    assert dm.weight_indices == again.weight_indices
    assert dm.datamodule.setup_calls == 2  # the wrapped module's setup is forwarded every time


def test_train_dataloader_pairs_batches_min_size():
    dm = BilevelDataModule(IndexDataModule(n=20, batch_size=4), train_portion=0.7, batch_size=3)
    dm.setup()
    combined = dm.train_dataloader()
    assert isinstance(combined, CombinedLoader) and combined._mode == "min_size"
    loaders = combined.iterables
    assert set(loaders) == {"train", "val"}
    weight_sampler, arch_sampler = loaders["train"].sampler, loaders["val"].sampler
    assert isinstance(weight_sampler, EpochSeededSampler) and isinstance(arch_sampler, EpochSeededSampler)
    assert weight_sampler.seed != arch_sampler.seed
    assert sorted(weight_sampler.indices) == sorted(dm.weight_indices)
    assert sorted(arch_sampler.indices) == sorted(dm.arch_indices)
    batches = list(combined)
    assert len(batches) == len(combined) == 2  # ceil(6 / 3): the shorter ("val") half sets the epoch length
    for batch, _, _ in batches:
        assert batch["train"][0].shape == (3,) and batch["val"][0].shape == (3,)
        assert set(batch["train"][0].tolist()) <= set(dm.weight_indices)
        assert set(batch["val"][0].tolist()) <= set(dm.arch_indices)


def test_max_size_cycle_makes_an_epoch_one_pass_over_the_weights_half():
    dm = BilevelDataModule(IndexDataModule(n=20, batch_size=4), train_portion=0.7, batch_size=3, mode="max_size_cycle")
    dm.setup()
    batches = [b for b, _, _ in dm.train_dataloader()]
    assert len(batches) == 5  # ceil(14 / 3): the longer ("train") half sets the epoch length
    seen = [i for b in batches for i in b["train"][0].tolist()]
    assert sorted(seen) == sorted(dm.weight_indices), "every weight example once per epoch"
    val = [i for b in batches for i in b["val"][0].tolist()]
    assert set(val) == set(dm.arch_indices) and len(val) > len(dm.arch_indices), "the architecture half cycles"


def test_lightning_fit_pairs_halves_and_sets_epochs():
    dm = BilevelDataModule(IndexDataModule(n=16, batch_size=4), seed=1)
    model = PairRecorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    loaders = dm.train_dataloader().iterables
    for epoch in range(2):
        seen = model.seen[epoch]
        assert sorted(seen["train"]) == sorted(dm.weight_indices)
        assert sorted(seen["val"]) == sorted(dm.arch_indices)
        assert seen["train"] == loaders["train"].sampler.order(epoch)
        assert seen["val"] == loaders["val"].sampler.order(epoch)
    assert model.seen[0]["train"] != model.seen[1]["train"]
    assert trainer.num_training_batches == 2


def test_forwarding_and_heldout_loaders():
    inner = DigitsDataModule(batch_size=16)
    dm = BilevelDataModule(inner)
    assert dm.batch_size == 16  # taken from the wrapped module
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 8)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.val_dataset is inner.val_dataset
    x, y = next(iter(dm.val_dataloader()))
    assert torch.equal(x, inner.val_dataset.tensors[0][:16])
    xt, _ = next(iter(dm.test_dataloader()))
    assert torch.equal(xt, x)
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert batch["train"][0].shape == (16, 1, 8, 8) and batch["val"][1].dtype == torch.long


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"train_portion": 0.0}, ValueError, r"train_portion must be a float in the open interval \(0, 1\), got 0.0"),
        ({"train_portion": 1}, ValueError, "train_portion must be .* got 1"),
        ({"train_portion": 1.5}, ValueError, "got 1.5"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int or None, got 0"),
        ({"seed": 0.5}, TypeError, "seed must be an int, got 0.5"),
        ({"mode": "sequential"}, ValueError, r"mode must be one of \['min_size', 'max_size_cycle'\], got 'sequential'"),
    ],
)
def test_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BilevelDataModule(IndexDataModule(), **kwargs)


def test_validation_of_wrapped_module():
    with pytest.raises(TypeError, match="datamodule must be a LightningDataModule, got list"):
        BilevelDataModule([1, 2, 3])
    no_batch = pl.LightningDataModule()
    with pytest.raises(ValueError, match="batch_size=None takes the wrapped LightningDataModule.batch_size, which is None"):
        BilevelDataModule(no_batch)
    tiny = BilevelDataModule(IndexDataModule(n=3), train_portion=0.2)
    with pytest.raises(ValueError, match=r"train_portion=0.2 of 3 training examples leaves an empty half"):
        tiny.setup()
    with pytest.raises(RuntimeError, match=r"setup\(\) must be called"):
        BilevelDataModule(IndexDataModule()).train_dataloader()
    with pytest.raises(AttributeError, match="has no attribute 'num_classes'"):
        BilevelDataModule(no_batch, batch_size=2).num_classes


def test_nested_in_lightning_cli_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # restored after the test
    monkeypatch.setattr(sys, "argv", ["lit-automl"])  # pytest's own arguments are not CLI arguments
    config = tmp_path / "config.yaml"
    config.write_text(
        """
trainer:
  accelerator: cpu
  devices: 1
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  fast_dev_run: 2
data:
  class_path: lit_automl.datamodules.BilevelDataModule
  init_args:
    train_portion: 0.5
    seed: 7
    datamodule:
      class_path: lit_automl.datamodules.DigitsDataModule
      init_args:
        batch_size: 32
"""
    )
    cli = LightningCLI(TinyClassifier, run=False, seed_everything_default=False, args=["--config", str(config)])
    dm = cli.datamodule
    assert isinstance(dm, BilevelDataModule) and dm.seed == 7
    assert isinstance(dm.datamodule, DigitsDataModule) and dm.datamodule.batch_size == 32
    assert dm.batch_size == 32
    cli.trainer.fit(cli.model, datamodule=dm)
    assert cli.trainer.global_step == 2

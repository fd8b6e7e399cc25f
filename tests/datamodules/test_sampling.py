import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.datamodules import EpochSeededSampler
from lit_automl.datamodules.sampling import mix_seed
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed


class RecordingModule(pl.LightningModule):
    """Records the dataset indices of every training batch, per epoch (module level so ddp_spawn can pickle it)."""

    def __init__(self, n: int = 20, seed: int = 0, batch_size: int = 4, out_dir: str | None = None) -> None:
        super().__init__()
        self.n, self.seed, self.batch_size, self.out_dir = n, seed, batch_size, out_dir
        self.layer = torch.nn.Linear(1, 1)
        self.seen: dict[int, list[int]] = {}

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDataset(torch.arange(self.n))
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EpochSeededSampler(self.n, seed=self.seed))

    def training_step(self, batch, batch_idx):
        (x,) = batch
        self.seen.setdefault(self.current_epoch, []).extend(x.tolist())
        return self.layer(x.float().unsqueeze(1)).mean()

    def on_train_epoch_end(self) -> None:
        if self.out_dir is None:
            return
        sampler = self.trainer.train_dataloader.sampler
        inner = getattr(getattr(sampler, "dataset", None), "_sampler", None)
        record = {
            "indices": self.seen[self.current_epoch],
            "sampler": type(sampler).__name__,
            "inner_epoch": getattr(inner, "epoch", None),
        }
        path = Path(self.out_dir) / f"rank{self.global_rank}_epoch{self.current_epoch}.json"
        path.write_text(json.dumps(record))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def test_order_is_a_pure_function_of_seed_and_epoch():
    a, b = EpochSeededSampler(50, seed=3), EpochSeededSampler(50, seed=3)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
        assert list(a) == list(a)  # iterating twice does not advance anything
        assert sorted(a) == list(range(50))
        orders.append(list(a))
    assert orders[0] != orders[1] != orders[2]
    assert list(EpochSeededSampler(50, seed=4)) != orders[0]
    # a fresh sampler jumped to epoch 2 (as after a resume) matches the one that walked there
    c = EpochSeededSampler(50, seed=3)
    c.set_epoch(2)
    assert list(c) == orders[2] == a.order(2)
    assert len(a) == 50


def test_global_rng_does_not_affect_order():
    torch.manual_seed(0)
    first = list(EpochSeededSampler(30, seed=1))
    torch.manual_seed(123)
    torch.rand(10)
    assert list(EpochSeededSampler(30, seed=1)) == first


def test_subset_indices_and_no_shuffle():
    pool = [10, 3, 7, 42]
    s = EpochSeededSampler(pool, seed=0)
    s.set_epoch(5)
    assert sorted(s) == sorted(pool)
    assert s.indices == pool
    plain = EpochSeededSampler(pool, shuffle=False)
    plain.set_epoch(9)
    assert list(plain) == pool
    assert list(EpochSeededSampler(range(5, 9), seed=2, shuffle=False)) == [5, 6, 7, 8]
    assert list(EpochSeededSampler(0)) == []


def test_mix_seed_does_not_collide_like_a_sum():
    assert mix_seed(0, 1) != mix_seed(1, 0)
    assert mix_seed(5, 0) == mix_seed(5, 0)
    assert 0 <= mix_seed(-1, 2**70) < 2**63
    s01, s10 = EpochSeededSampler(40, seed=0), EpochSeededSampler(40, seed=1)
    s01.set_epoch(1)
    assert list(s01) != list(s10)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"indices": -1}, ValueError, "must be >= 0, got -1"),
        ({"indices": [0.5, 1.0]}, TypeError, "must be integers, got dtype torch.float"),
        ({"indices": [1, -2]}, ValueError, "must be >= 0, got minimum -2"),
        ({"indices": [[0, 1], [2, 3]]}, ValueError, r"one-dimensional, got shape \(2, 2\)"),
        ({"indices": True}, TypeError, "int or a sequence of ints, got True"),
        ({"indices": 5, "seed": 1.5}, TypeError, "seed must be an int, got 1.5"),
        ({"indices": 5, "shuffle": "yes"}, TypeError, "shuffle must be a bool"),
    ],
)
def test_constructor_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EpochSeededSampler(**kwargs)


@pytest.mark.parametrize("epoch", [-1, 1.0, None])
def test_set_epoch_validation(epoch):
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        EpochSeededSampler(3).set_epoch(epoch)


def test_lightning_calls_set_epoch_and_resume_replays_the_same_order(tmp_path):
    # Full run to epoch 3; interrupted run: one epoch, checkpoint, then resume to epoch 3 with a fresh module.
    global_seeds = iter([0, 0, 999])  # the global RNG after a restart is arbitrary

    def make_module() -> RecordingModule:
        torch.manual_seed(next(global_seeds))
        return RecordingModule(n=12, seed=7, batch_size=4)

    runs = run_resumed(make_module, lambda: None, tmp_path, {"max_epochs": 1}, max_epochs=3)
    full, resumed = runs.full, runs.resumed
    reference = EpochSeededSampler(12, seed=7)
    for epoch in range(3):
        assert full.seen[epoch] == reference.order(epoch)
    assert sorted(resumed.seen) == [1, 2]
    assert resumed.seen[1] == full.seen[1]
    assert resumed.seen[2] == full.seen[2]


@pytest.mark.ddp
def test_ddp_wrapper_gives_disjoint_deterministic_shards(tmp_path, monkeypatch):
    """Lightning wraps the sampler in DistributedSamplerWrapper; check the shards it produces."""
    global_seed = 5
    monkeypatch.setenv("PL_GLOBAL_SEED", str(global_seed))  # seeds the wrapper's own permutation
    n, seed, epochs = 20, 11, 2
    model = RecordingModule(n=n, seed=seed, batch_size=2, out_dir=str(tmp_path))
    fit_ddp(model, None, tmp_path, max_epochs=epochs, limit_train_batches=1.0)  # the shared harness: 2 gloo ranks

    shards = {}
    for epoch in range(epochs):
        for rank in range(2):
            record = json.loads((tmp_path / f"rank{rank}_epoch{epoch}.json").read_text())
            assert record["sampler"] == "DistributedSamplerWrapper"
            assert record["inner_epoch"] == epoch  # set_epoch reached our sampler through the wrapper
            shards[epoch, rank] = record["indices"]
            # Deterministic: exactly what a freshly built wrapper yields for (seed, epoch).
            expected = DistributedSamplerWrapper(
                EpochSeededSampler(n, seed=seed), num_replicas=2, rank=rank, shuffle=True, seed=global_seed
            )
            expected.set_epoch(epoch)
            assert record["indices"] == list(expected)
        r0, r1 = shards[epoch, 0], shards[epoch, 1]
        assert len(r0) == len(r1) == n // 2
        assert set(r0).isdisjoint(r1)
        assert sorted(r0 + r1) == list(range(n))
    assert shards[0, 0] != shards[1, 0]

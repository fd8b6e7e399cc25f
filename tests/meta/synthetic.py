"""Tiny task families for the meta-learner tests (module level, so DDP spawn can pickle them)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset


class PrototypeTasks(Dataset):
    """5-way tasks: each class is a random 8x8 prototype plus noise; task ``i`` is seeded by ``seed + i``."""

    def __init__(self, n: int = 8, n_way: int = 5, k_shot: int = 1, q_queries: int = 3, seed: int = 0) -> None:
        self.n, self.n_way, self.k_shot, self.q_queries, self.seed = n, n_way, k_shot, q_queries, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed + i)
        protos = torch.randn(self.n_way, 1, 8, 8, generator=g)
        ys = torch.arange(self.n_way).repeat_interleave(self.k_shot)
        yq = torch.arange(self.n_way).repeat_interleave(self.q_queries)
        xs = protos[ys] + 0.3 * torch.randn(len(ys), 1, 8, 8, generator=g)
        xq = protos[yq] + 0.3 * torch.randn(len(yq), 1, 8, 8, generator=g)
        return {"support": (xs, ys), "query": (xq, yq)}


class PrototypeTaskData(pl.LightningDataModule):
    def __init__(self, tasks: int = 8, tasks_per_batch: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.tasks, self.tasks_per_batch, self.seed = tasks, tasks_per_batch, seed

    def train_dataloader(self) -> DataLoader:
        return DataLoader(PrototypeTasks(self.tasks, seed=self.seed), batch_size=self.tasks_per_batch)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(PrototypeTasks(4, seed=10_000 + self.seed), batch_size=self.tasks_per_batch)


def sinusoid_batch(tasks: int = 3, k: int = 5, seed: int = 0):
    """A meta-batch of sinusoid regression tasks (Finn et al. 2017, Sec. 5.1 ranges)."""
    g = torch.Generator().manual_seed(seed)
    amp = 0.1 + 4.9 * torch.rand(tasks, 1, 1, generator=g)
    phase = torch.pi * torch.rand(tasks, 1, 1, generator=g)
    xs = 10 * torch.rand(tasks, k, 1, generator=g) - 5
    xq = 10 * torch.rand(tasks, k, 1, generator=g) - 5
    return (xs, amp * torch.sin(xs - phase)), (xq, amp * torch.sin(xq - phase))


def assert_ddp_meta_parameters_identical(module: pl.LightningModule, tmp_path) -> None:
    """Fit ``module`` on 2 CPU processes (the shared harness); the meta-parameters must move and
    stay identical on both ranks while the ranks see different tasks."""
    from tests.ddp_harness import fit_ddp

    pl.seed_everything(0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ranks = fit_ddp(module, PrototypeTaskData(tasks=8), tmp_path, limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different tasks"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert any(not torch.allclose(s0[k], before[k]) for k in s0)
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=1e-7, msg=k)

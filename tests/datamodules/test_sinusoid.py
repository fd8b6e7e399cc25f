import math

import pytest
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

from lit_automl.datamodules import SinusoidDataModule, SinusoidTaskDataset
from lit_automl.datamodules.sampling import mix_seed

SMALL = dict(tasks_per_batch=4, train_batches=3, val_tasks=6, test_tasks=5)


def flat(loader, part: str = "support", i: int = 0) -> torch.Tensor:
    return torch.cat([b[part][i] for b in loader])


def test_paper_defaults():
    dm = SinusoidDataModule()
    assert (dm.k_shot, dm.q_queries, dm.tasks_per_batch) == (10, 10, 25)
    assert dm.amplitude_range == (0.1, 5.0) and dm.phase_range == (0.0, math.pi) and dm.input_range == (-5.0, 5.0)
    assert dm.n_way is None


def test_contract_shapes_and_dtypes():
    dm = SinusoidDataModule(k_shot=5, q_queries=7, **SMALL)
    dm.setup()
    train = list(dm.train_dataloader())
    assert len(train) == 3
    for batch in train:
        assert set(batch) == {"support", "query"} and isinstance(batch["support"], tuple)
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        assert xs.shape == ys.shape == (4, 5, 1) and xq.shape == yq.shape == (4, 7, 1)
        assert all(t.dtype == torch.float32 for t in (xs, ys, xq, yq))
    assert [b["query"][0].shape[0] for b in dm.val_dataloader()] == [4, 2]
    assert [b["query"][0].shape[0] for b in dm.test_dataloader()] == [4, 1]


def test_y_is_amplitude_sin_x_minus_phase_exactly_and_parameters_in_range():
    dm = SinusoidDataModule(tasks_per_batch=50, train_batches=4, val_tasks=6, test_tasks=5)
    dm.setup()
    params = dm.task_parameters("train")
    amp, phase = params["amplitude"], params["phase"]
    assert amp.shape == phase.shape == (200,)
    assert 0.1 <= float(amp.min()) and float(amp.max()) <= 5.0
    assert 0.0 <= float(phase.min()) and float(phase.max()) <= math.pi
    assert float(amp.min()) < 0.5 and float(amp.max()) > 4.5  # spans the range, not a constant
    assert float(phase.min()) < 0.3 and float(phase.max()) > math.pi - 0.3
    xs, ys = flat(dm.train_dataloader(), "support", 0), flat(dm.train_dataloader(), "support", 1)
    xq, yq = flat(dm.train_dataloader(), "query", 0), flat(dm.train_dataloader(), "query", 1)
    x, y = torch.cat([xs, xq], 1), torch.cat([ys, yq], 1)
    assert -5.0 <= float(x.min()) and float(x.max()) <= 5.0 and float(x.min()) < -4.5 and float(x.max()) > 4.5
    a32, p32 = amp.view(-1, 1, 1), phase.view(-1, 1, 1)
    assert torch.equal(y, a32 * torch.sin(x - p32))  # bit-exact, in float32
    assert torch.allclose(y.double(), amp.double().view(-1, 1, 1) * torch.sin(x.double() - phase.double().view(-1, 1, 1)),
                          atol=1e-5)
    assert not torch.equal(xs[0], xq[0][:10])  # query points are drawn separately from the support points


def test_seeding_epochs_and_fixed_evaluation_tasks():
    a, b = SinusoidDataModule(seed=1, **SMALL), SinusoidDataModule(seed=1, **SMALL)
    a.setup()
    b.setup()
    torch.manual_seed(5)
    first = flat(a.train_dataloader())
    torch.manual_seed(6)
    assert torch.equal(flat(b.train_dataloader()), first)
    seed0 = mix_seed(1, 0, 0, 0)
    assert torch.equal(first[0], a.train_dataset[seed0]["support"][0])
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)
    assert not torch.equal(flat(loader), first)
    assert not torch.equal(a.task_parameters("train", epoch=1)["amplitude"], a.task_parameters("train")["amplitude"])
    val = a.val_dataloader()
    v0 = flat(val, "query", 1)
    val.sampler.set_epoch(3)
    assert torch.equal(flat(val, "query", 1), v0)
    assert torch.equal(a.task_parameters("val", epoch=3)["phase"], a.task_parameters("val")["phase"])
    assert not torch.equal(flat(a.test_dataloader())[:5], flat(val)[:5])
    c = SinusoidDataModule(seed=2, **SMALL)
    c.setup()
    assert not torch.equal(flat(c.train_dataloader()), first)


def test_task_params_match_the_dataset():
    ds = SinusoidTaskDataset(3, 2)
    amplitude, phase = ds.task_params(42)
    task = ds[42]
    x, y = task["support"]
    assert torch.equal(y, torch.tensor(amplitude, dtype=torch.float32) * torch.sin(x - torch.tensor(phase)))
    assert task["query"][0].shape == (2, 1)
    narrow = SinusoidTaskDataset(1, 1, amplitude_range=(2.0, 2.5), phase_range=(1.0, 1.5), input_range=(0.0, 1.0))
    for s in range(20):
        amp, ph = narrow.task_params(s)
        assert 2.0 <= amp <= 2.5 and 1.0 <= ph <= 1.5
        assert 0.0 <= float(narrow[s]["query"][0]) <= 1.0


def test_ddp_shards_are_disjoint():
    dm = SinusoidDataModule(**SMALL)
    dm.setup()
    sampler = dm.sampler("train", world_size=2)
    assert len(sampler) == 3 * 4 * 2
    shards = []
    for rank in (0, 1):
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=True, seed=0)
        wrapper.set_epoch(2)
        shards.append(list(wrapper))
    assert set(shards[0]).isdisjoint(shards[1]) and len(shards[0]) == 12
    assert sorted(shards[0] + shards[1]) == sorted(sampler.seeds(2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k_shot": 0}, "k_shot must be an int >= 1, got 0"),
        ({"q_queries": 0}, r"q_queries must be an int >= 1 \(the query set of a task cannot be empty\), got 0"),
        ({"tasks_per_batch": 0}, "tasks_per_batch must be an int >= 1, got 0"),
        ({"train_batches": -1}, "train_batches must be an int >= 1, got -1"),
        ({"amplitude_range": (5.0, 0.1)}, r"amplitude_range must be a pair \(low, high\).*low < high, got \(5.0, 0.1\)"),
        ({"phase_range": (0.0,)}, "phase_range must be a pair"),
        ({"input_range": (0.0, float("inf"))}, "input_range must be a pair .* finite"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SinusoidDataModule(**kwargs)


def test_no_n_way_argument():
    with pytest.raises(TypeError):
        SinusoidDataModule(n_way=5)

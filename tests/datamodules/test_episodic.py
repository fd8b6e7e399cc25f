import hashlib
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from sklearn.datasets import load_digits

from lit_automl.datamodules import (
    DigitsTasksDataModule,
    EpisodeDataset,
    EpisodeSampler,
    EpisodicDataModule,
    collate_episodes,
)
from lit_automl.datamodules.sampling import mix_seed
from tests.ddp_harness import fit_ddp

SMALL = dict(tasks_per_batch=3, train_batches=2, val_tasks=5, test_tasks=4)


def digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    return torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0, torch.as_tensor(bunch.target)


def episode_hash(batch_or_episode, t: int | None = None) -> str:
    h = hashlib.sha1()
    for key in ("support", "query"):
        for tensor in batch_or_episode[key]:
            h.update((tensor if t is None else tensor[t]).contiguous().numpy().tobytes())
    return h.hexdigest()


def batches(loader) -> list[dict]:
    return list(loader)


def test_contract_shapes_dtypes_and_attributes():
    dm = DigitsTasksDataModule(n_way=4, k_shot=2, q_queries=3, **SMALL)
    assert (dm.n_way, dm.k_shot, dm.q_queries, dm.tasks_per_batch) == (4, 2, 3, 3)
    assert (dm.in_channels, dm.image_size, dm.train_batches, dm.val_tasks, dm.test_tasks) == (1, 8, 2, 5, 4)
    dm.setup("fit")
    train = batches(dm.train_dataloader())
    assert len(train) == 2 == len(dm.train_dataloader())
    for batch in train:
        assert set(batch) == {"support", "query"}
        assert isinstance(batch["support"], tuple) and isinstance(batch["query"], tuple)
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        assert xs.shape == (3, 8, 1, 8, 8) and xs.dtype == torch.float32
        assert ys.shape == (3, 8) and ys.dtype == torch.int64
        assert xq.shape == (3, 12, 1, 8, 8) and xq.dtype == torch.float32
        assert yq.shape == (3, 12) and yq.dtype == torch.int64
        assert 0.0 <= float(xs.min()) and float(xs.max()) <= 1.0
        for t in range(3):  # labels 0..N-1, each K times in support and Q times in query, class-major
            assert torch.equal(ys[t], torch.arange(4).repeat_interleave(2))
            assert torch.equal(yq[t], torch.arange(4).repeat_interleave(3))
    val = batches(dm.val_dataloader())
    assert [b["support"][0].shape[0] for b in val] == [3, 2]  # 5 fixed tasks, the last meta-batch is smaller
    test = batches(dm.test_dataloader())
    assert [b["query"][1].shape for b in test] == [(3, 12), (1, 12)]


def test_support_and_query_are_disjoint_samples_of_the_same_classes_with_rotated_pixels():
    dm = DigitsTasksDataModule(n_way=5, k_shot=2, q_queries=4, **SMALL)
    dm.setup()
    images, digits = digits_images()
    for split in ("train", "val", "test"):
        for i in range(4):
            ep = dm.episode(split, i, epoch=1)
            classes = ep.classes.tolist()
            assert len(set(classes)) == 5 and set(classes) <= set(dm.class_splits[split])
            assert set(ep.support.tolist()).isdisjoint(ep.query.tolist())
            # no image twice in a task, not even as a rotated copy in another class
            assert len(set(ep.support.tolist() + ep.query.tolist())) == 5 * (2 + 4)
            # example j of the support belongs to the class given label j // K (and likewise for the query)
            assert digits[ep.support].tolist() == [classes[j // 2] // 4 for j in range(10)]
            assert digits[ep.query].tolist() == [classes[j // 4] // 4 for j in range(20)]
            built = dm.dataset(split)[dm.sampler(split).episode_seed(i, 1)]
            for x, positions, per in ((built["support"][0], ep.support, 2), (built["query"][0], ep.query, 4)):
                for j, pos in enumerate(positions.tolist()):
                    turns = classes[j // per] % 4
                    assert torch.equal(x[j], torch.rot90(images[pos], turns, dims=(-2, -1)))


def test_rotations_of_one_digit_in_a_task_use_different_images():
    dm = DigitsTasksDataModule(n_way=8, k_shot=5, q_queries=5, **SMALL)
    dm.setup()
    shared = 0
    for i in range(20):
        ep = dm.episode("val", i)
        digits = [c // 4 for c in ep.classes.tolist()]
        shared += len(digits) - len(set(digits))
        assert len(set(ep.support.tolist() + ep.query.tolist())) == 8 * 10
    assert shared > 0  # the 8 val classes include rotations of one digit, and they met in a task


def test_labels_are_assigned_to_classes_in_a_random_order_per_task():
    dm = DigitsTasksDataModule(n_way=5, **SMALL)
    dm.setup()
    firsts = {dm.episode("train", i).classes[0].item() for i in range(40)}
    orders = [dm.episode("train", i).classes.tolist() for i in range(40)]
    assert len(firsts) > 5  # the class given label 0 varies
    assert any(o != sorted(o) for o in orders)


def test_digit_class_split_24_8_8_disjoint_seeded_and_rotations_are_classes():
    split = DigitsTasksDataModule.class_split(0)
    assert {k: len(v) for k, v in split.items()} == {"train": 24, "val": 8, "test": 8}
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(40))
    assert DigitsTasksDataModule.class_split(0) == split and DigitsTasksDataModule(seed=0).class_splits == split
    assert DigitsTasksDataModule.class_split(1) != split
    # 40 = 10 digits x 4 rotations: each digit's rotations are distinct classes (ids 4d..4d+3)
    by_digit = {d: [c for c in range(40) if c // 4 == d] for d in range(10)}
    assert all(len(v) == 4 for v in by_digit.values())
    dm = DigitsTasksDataModule(**SMALL)
    dm.setup()
    assert dm.class_splits == split
    assert torch.equal(dm.train_dataset.classes, torch.tensor(split["train"]))
    assert torch.equal(dm.val_dataset.classes, torch.tensor(split["val"]))
    assert torch.equal(dm.test_dataset.classes, torch.tensor(split["test"]))
    # episodes only ever use their own split's classes
    for s in ("train", "val", "test"):
        used = {c for i in range(30) for c in dm.episode(s, i).classes.tolist()}
        assert used <= set(split[s])


def test_episodes_are_a_pure_function_of_seed_split_epoch_index():
    a, b = DigitsTasksDataModule(seed=3, **SMALL), DigitsTasksDataModule(seed=3, **SMALL)
    a.setup()
    b.setup()
    torch.manual_seed(0)
    first = [episode_hash(x, t) for x in a.train_dataloader() for t in range(3)]
    torch.manual_seed(123)  # the global RNG plays no part
    assert [episode_hash(x, t) for x in b.train_dataloader() for t in range(3)] == first
    # episode i of the loader is dataset[mix_seed(seed, 0, epoch, i)]
    assert first[4] == episode_hash(a.train_dataset[mix_seed(3, 0, 0, 4)])
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)  # what Lightning does before epoch 1
    second = [episode_hash(x, t) for x in loader for t in range(3)]
    assert set(second).isdisjoint(first)
    fresh = a.train_dataloader()
    fresh.sampler.set_epoch(1)  # a fresh loader jumped to epoch 1 (resume) gives the same tasks
    assert [episode_hash(x, t) for x in fresh for t in range(3)] == second
    # val/test: one fixed set, whatever the epoch
    val0 = [episode_hash(x, t) for x in a.val_dataloader() for t in range(x["support"][0].shape[0])]
    val_loader = a.val_dataloader()
    val_loader.sampler.set_epoch(7)
    assert [episode_hash(x, t) for x in val_loader for t in range(x["support"][0].shape[0])] == val0
    test0 = [episode_hash(x, 0) for x in a.test_dataloader()]
    assert set(test0).isdisjoint(val0)
    other = DigitsTasksDataModule(seed=4, **SMALL)
    other.setup()
    assert [episode_hash(x, t) for x in other.train_dataloader() for t in range(3)] != first


def test_worker_processes_give_the_same_batches():
    dm = DigitsTasksDataModule(**SMALL)
    dm.setup()
    reference = [episode_hash(x, t) for x in dm.train_dataloader() for t in range(3)]
    dm.num_workers = 1
    assert [episode_hash(x, t) for x in dm.train_dataloader() for t in range(3)] == reference


def test_sampler_seeds_and_validation():
    s = EpisodeSampler(4, seed=2, split="train")
    assert list(s) == [mix_seed(2, 0, 0, i) for i in range(4)] and len(s) == 4
    s.set_epoch(3)
    assert list(s) == [mix_seed(2, 0, 3, i) for i in range(4)] == s.seeds(3)
    v = EpisodeSampler(4, seed=2, split="val")
    v.set_epoch(3)
    assert list(v) == [mix_seed(2, 1, 0, i) for i in range(4)]
    assert list(EpisodeSampler(2, seed=2, split="test")) == [mix_seed(2, 2, 0, i) for i in range(2)]
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        s.set_epoch(-1)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'dev'"):
        EpisodeSampler(3, split="dev")
    with pytest.raises(ValueError, match="num_episodes must be an int >= 0, got -1"):
        EpisodeSampler(-1)
    with pytest.raises(TypeError, match="seed must be an int, got 0.5"):
        EpisodeSampler(3, seed=0.5)


def test_ddp_wrapper_gives_each_rank_different_tasks_of_one_meta_batch():
    """What Lightning does under DDP, without processes: wrap the train sampler per rank."""
    dm = DigitsTasksDataModule(**SMALL)
    dm.setup()
    assert len(dm.sampler("train", world_size=2)) == 2 * 3 * 2  # train_batches * tasks_per_batch * world_size
    shards = {}
    for epoch in (0, 1):
        for rank in (0, 1):
            wrapper = DistributedSamplerWrapper(dm.sampler("train", 2), num_replicas=2, rank=rank, shuffle=True, seed=5)
            wrapper.set_epoch(epoch)
            assert wrapper.dataset._sampler.epoch == epoch  # set_epoch reaches our sampler
            shards[epoch, rank] = list(wrapper)
            again = DistributedSamplerWrapper(dm.sampler("train", 2), num_replicas=2, rank=rank, shuffle=True, seed=5)
            again.set_epoch(epoch)
            assert list(again) == shards[epoch, rank]  # deterministic
        r0, r1 = shards[epoch, 0], shards[epoch, 1]
        assert len(r0) == len(r1) == 6 and set(r0).isdisjoint(r1)
        assert sorted(r0 + r1) == sorted(dm.sampler("train", 2).seeds(epoch))
    assert set(shards[0, 0]).isdisjoint(shards[1, 0])
    # each rank's loader: train_batches meta-batches of tasks_per_batch tasks
    loader = torch.utils.data.DataLoader(dm.train_dataset, batch_size=3, collate_fn=collate_episodes,
                                         sampler=DistributedSamplerWrapper(dm.sampler("train", 2), num_replicas=2,
                                                                           rank=1, shuffle=True, seed=5))
    assert [b["support"][0].shape[0] for b in loader] == [3, 3]


class TinyLearner(pl.LightningModule):
    """Records a hash of every task it trains on (module level so ddp_spawn can pickle it)."""

    def __init__(self, out_dir: str | None = None) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(64, 5)
        self.train_hashes: dict[int, list[str]] = {}
        self.val_hashes: dict[int, list[str]] = {}

    def _loss(self, batch):
        xs, ys = batch["support"]
        return torch.nn.functional.cross_entropy(self.layer(xs.flatten(2)).flatten(0, 1), ys.flatten())

    def training_step(self, batch, batch_idx):
        hashes = [episode_hash(batch, t) for t in range(batch["support"][0].shape[0])]
        self.train_hashes.setdefault(self.current_epoch, []).extend(hashes)
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        hashes = [episode_hash(batch, t) for t in range(batch["support"][0].shape[0])]
        self.val_hashes.setdefault(self.current_epoch, []).extend(hashes)

    def on_train_epoch_end(self) -> None:
        if self.out_dir is not None:
            path = Path(self.out_dir) / f"rank{self.global_rank}_epoch{self.current_epoch}.json"
            path.write_text(json.dumps({"hashes": self.train_hashes[self.current_epoch],
                                        "sampler": type(self.trainer.train_dataloader.sampler).__name__}))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def test_lightning_sets_the_epoch_train_tasks_change_val_tasks_do_not():
    dm = DigitsTasksDataModule(**SMALL)
    model = TinyLearner()
    _trainer(max_epochs=2).fit(model, datamodule=dm)
    reference = DigitsTasksDataModule(**SMALL)
    reference.setup()
    for epoch in (0, 1):
        loader = reference.train_dataloader()
        loader.sampler.set_epoch(epoch)
        assert model.train_hashes[epoch] == [episode_hash(b, t) for b in loader for t in range(3)]
    assert set(model.train_hashes[0]).isdisjoint(model.train_hashes[1])
    assert model.val_hashes[0] == model.val_hashes[1] and len(model.val_hashes[0]) == 5


@pytest.mark.ddp
def test_ddp_ranks_train_on_disjoint_deterministic_tasks(tmp_path, monkeypatch):
    global_seed = 5
    monkeypatch.setenv("PL_GLOBAL_SEED", str(global_seed))  # seeds DistributedSamplerWrapper's permutation
    dm = DigitsTasksDataModule(seed=2, tasks_per_batch=2, train_batches=2, val_tasks=2, test_tasks=2)
    fit_ddp(TinyLearner(out_dir=str(tmp_path)), dm, tmp_path, max_epochs=2, limit_train_batches=None)
    reference = DigitsTasksDataModule(seed=2, tasks_per_batch=2, train_batches=2, val_tasks=2, test_tasks=2)
    reference.setup()
    for epoch in (0, 1):
        got = {}
        for rank in (0, 1):
            record = json.loads((tmp_path / f"rank{rank}_epoch{epoch}.json").read_text())
            assert record["sampler"] == "DistributedSamplerWrapper"
            wrapper = DistributedSamplerWrapper(reference.sampler("train", world_size=2), num_replicas=2, rank=rank,
                                                shuffle=True, seed=global_seed)
            wrapper.set_epoch(epoch)
            expected = [episode_hash(reference.train_dataset[s]) for s in wrapper]
            assert record["hashes"] == expected  # deterministic: exactly what (seed, epoch) prescribe
            got[rank] = record["hashes"]
        assert len(got[0]) == len(got[1]) == 2 * 2  # each rank: train_batches meta-batches of tasks_per_batch
        assert set(got[0]).isdisjoint(got[1])


def _toy(n_classes: int = 6, per_class: int = 4, size: int = 3):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_classes * per_class, 1, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return images, labels


def test_generic_module_over_any_labelled_tensor():
    images, labels = _toy()
    dm = EpisodicDataModule(images, labels, {"train": [0, 1, 2], "val": [3, 4], "test": [5]},
                            n_way=1, k_shot=1, q_queries=2, tasks_per_batch=2, train_batches=1, val_tasks=2,
                            test_tasks=2)
    assert (dm.in_channels, dm.image_size) == (1, 3)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["support"][0].shape == (2, 1, 1, 3, 3) and batch["query"][0].shape == (2, 2, 1, 3, 3)
    ep = dm.episode("test", 0)
    assert ep.classes.tolist() == [5]
    x = dm.test_dataset.build(ep)["support"][0]
    assert torch.allclose(x, images[ep.support].float() / 255)  # uint8 images are scaled by 1/255
    # rotations: class id c = base * R + quarter turns
    rot = EpisodicDataModule(images, labels, {"train": [0, 1], "val": [2, 3], "test": [5]}, n_way=1, k_shot=1,
                             q_queries=1, rotations=2, tasks_per_batch=1, train_batches=1, val_tasks=1, test_tasks=1)
    rot.setup()
    ep = rot.episode("test", 0)
    assert ep.classes.tolist() == [5] and labels[ep.support].tolist() == [2]
    got = rot.test_dataset.build(ep)["query"][0][0]
    assert torch.allclose(got, torch.rot90(images[ep.query[0]].float() / 255, 1, dims=(-2, -1)))


def test_distinct_base_keeps_rotations_of_one_label_apart():
    images, labels = _toy(n_classes=6, per_class=4)
    splits = {"train": list(range(8)), "val": list(range(8, 16)), "test": list(range(16, 24))}  # R=4: 2 labels each
    free = EpisodicDataModule(images, labels, splits, n_way=2, k_shot=1, q_queries=1, rotations=4)
    apart = EpisodicDataModule(images, labels, splits, n_way=2, k_shot=1, q_queries=1, rotations=4,
                               distinct_base=True)
    free.setup()
    apart.setup()
    bases_free = [[c // 4 for c in free.episode("train", i).classes.tolist()] for i in range(40)]
    bases_apart = [[c // 4 for c in apart.episode("train", i).classes.tolist()] for i in range(40)]
    assert any(b[0] == b[1] for b in bases_free)
    assert all(sorted(b) == [0, 1] for b in bases_apart)
    turns = {c % 4 for i in range(40) for c in apart.episode("train", i).classes.tolist()}
    assert turns == {0, 1, 2, 3}  # every rotation still occurs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_way": 0}, "n_way must be an int >= 1, got 0"),
        ({"k_shot": 0}, "k_shot must be an int >= 1, got 0"),
        ({"q_queries": 0}, r"q_queries must be an int >= 1 \(the query set of a task cannot be empty\), got 0"),
        ({"tasks_per_batch": 0}, "tasks_per_batch must be an int >= 1, got 0"),
        ({"train_batches": 0}, "train_batches must be an int >= 1, got 0"),
        ({"val_tasks": -3}, "val_tasks must be an int >= 1, got -3"),
        ({"test_tasks": 2.0}, "test_tasks must be an int >= 1, got 2.0"),
        ({"num_workers": -1}, "num_workers must be an int >= 0, got -1"),
        ({"n_way": 9}, r"n_way=9 exceeds the 8 classes of the digits meta-val/meta-test splits .*use n_way <= 8"),
        ({"k_shot": 100, "q_queries": 75}, "k_shot \\+ q_queries = 175 exceeds 174"),
        ({"k_shot": 40, "q_queries": 10}, r"up to 4 of its classes .* can share a task, so 4 x 50 = 200 are needed"),
    ],
)
def test_digits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsTasksDataModule(**kwargs)


def test_digits_seed_type():
    with pytest.raises(TypeError, match="seed must be an int, got '1'"):
        DigitsTasksDataModule(seed="1")


@pytest.mark.parametrize(
    "splits, kwargs, match",
    [
        ({"train": [0, 1], "val": [1, 2], "test": [3]}, {}, r"disjoint; 'train' and 'val' share class ids \[1\]"),
        ({"train": [0, 1], "val": [2]}, {}, "exactly the keys"),
        ({"train": [0, 1], "val": [2, 3], "test": [4]}, {"n_way": 2}, "n_way=2 exceeds the 1 classes of the meta-test"),
        ({"train": [0, 1], "val": [2, 3], "test": [9]}, {}, r"class ids \[9\] are out of range"),
        ({"train": [0, 0], "val": [2], "test": [3]}, {}, "repeated class ids"),
        ({"train": [], "val": [2], "test": [3]}, {}, r"class_splits\['train'\] is empty"),
    ],
)
def test_generic_bad_splits(splits, kwargs, match):
    images, labels = _toy()
    with pytest.raises(ValueError, match=match):
        EpisodicDataModule(images, labels, splits, **{"n_way": 1, **kwargs})


def test_generic_needs_data_and_enough_examples():
    images, labels = _toy(per_class=4)
    with pytest.raises(TypeError, match=r"needs images, labels and class_splits \(got only \['images'\]\)"):
        EpisodicDataModule(images)
    with pytest.raises(ValueError, match=r"class 0 .* has 4 examples but k_shot \+ q_queries = 2 \+ 3 = 5"):
        EpisodicDataModule(images, labels, {"train": [0], "val": [1], "test": [2]}, n_way=1, k_shot=2, q_queries=3)
    # two rotations of base label 0 in one 2-way task need 2 x (K + Q) = 6 > 4 examples
    with pytest.raises(ValueError, match=r"class 0 \(base label 0\) has 4 examples .* so 2 x 3 = 6 are needed"):
        EpisodicDataModule(images, labels, {"train": [0, 1], "val": [4, 5], "test": [6, 7]}, n_way=2, k_shot=1,
                           q_queries=2, rotations=2)
    with pytest.raises(ValueError, match="n_way=2 exceeds the 1 distinct base labels"):
        EpisodicDataModule(images, labels, {"train": [0, 1], "val": [4, 6], "test": [8, 10]}, n_way=2,
                           rotations=2, distinct_base=True)
    with pytest.raises(ValueError, match=r"rotations must be an int in 1..4 .*got 5"):
        EpisodicDataModule(images, labels, {"train": [0], "val": [1], "test": [2]}, n_way=1, rotations=5)
    with pytest.raises(ValueError, match="n_way=3 exceeds the 2 classes available in this split"):
        EpisodeDataset(images, labels, [0, 1], n_way=3, k_shot=1, q_queries=1)
    with pytest.raises(RuntimeError, match=r"setup\(\) must be called"):
        DigitsTasksDataModule().train_dataloader()

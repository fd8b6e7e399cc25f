"""ChildClassifier, TrainingEvaluator and the reward definitions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_automl.callbacks import ScheduledDropPath
from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
from lit_automl.nas.child import ChildClassifier, split_logits
from lit_automl.nas.evaluator import TrainingEvaluator, reward_from_metrics
from lit_automl.spaces.chain import ChainArchitecture, ChainLayer, ChainSpace
from lit_automl.spaces.nasnet import NASNetCellSpace
from tests.trainers import quiet_trainer


class AuxNet(nn.Module):
    """Logits plus auxiliary logits in training, with a drop_path_prob attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.aux = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.drop_path_prob = 0.0

    def forward(self, x):
        return self.body(x), (self.aux(x) if self.training else None)


def _digits(batch_size=64):
    return HoldoutDataModule(DigitsDataModule(batch_size=batch_size), val_size=200)


def test_auxiliary_loss_is_added_with_its_weight():
    torch.manual_seed(0)
    net = AuxNet()
    module = ChildClassifier(net, auxiliary_weight=0.4)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    module.log = lambda *a, **k: None  # outside a Trainer
    loss = module.training_step((x, y), 0)
    logits, aux = net(x)
    expected = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
    assert torch.allclose(loss, expected)


def test_val_acc_history_records_each_epoch_as_logged(tmp_path):
    torch.manual_seed(0)
    module = ChildClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), lr=0.1)
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_train_batches=5)
    trainer.fit(module, datamodule=_digits())
    assert len(module.val_acc_history) == 3
    import csv

    rows = [r for r in csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")) if r.get("val/acc")]
    assert [float(r["val/acc"]) for r in rows] == pytest.approx(module.val_acc_history)
    assert module.val_acc_history[-1] > 0.5


def test_scheduled_drop_path_drives_the_network(tmp_path):
    net = AuxNet()
    module = ChildClassifier(net, drop_path_prob=0.3, schedule="constant")
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_train_batches=1, callbacks=[ScheduledDropPath(epochs=3)])
    trainer.fit(module, datamodule=_digits())
    assert net.drop_path_prob == pytest.approx(0.3 * 2 / 3)


def test_reward_definitions():
    m = {"val_acc_history": [0.1, 0.5, 0.9, 0.7, 0.6, 0.8, 0.2]}
    assert reward_from_metrics(m, "max_last5_cubed") == pytest.approx(0.9 ** 3)
    assert reward_from_metrics(m, "max_last5") == pytest.approx(0.9)
    assert reward_from_metrics(m, "final") == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"reward must be one of .*got 'best'"):
        reward_from_metrics(m, "best")
    with pytest.raises(ValueError, match="no validation accuracies"):
        reward_from_metrics({"val_acc_history": []}, "final")


def test_training_evaluator_trains_a_chain_child_on_digits():
    space = ChainSpace(num_layers=2)
    arch = ChainArchitecture((ChainLayer(3, 3, 24), ChainLayer(3, 3, 36, inputs=(0,))))
    ev = TrainingEvaluator(space, _digits, lr=0.05)
    metrics = ev.evaluate(arch, budget=3)
    assert len(metrics["val_acc_history"]) == 3 and metrics["val_acc"] > 0.6
    net = space.build(arch, 1, 10, 8)
    assert metrics["params"] == sum(p.numel() for p in net.parameters())
    assert metrics["max_val_acc_last5"] == max(metrics["val_acc_history"])


def test_training_evaluator_runs_scheduled_drop_path_in_nasnet_children():
    space = NASNetCellSpace(num_blocks=2, N=1, F=4)
    genotype = space.decode([0] * len(space.decisions()))
    ev = TrainingEvaluator(space, _digits, drop_path_prob=0.2, trainer_kwargs={"limit_train_batches": 2})
    metrics = ev.evaluate(genotype, budget=2)
    assert len(metrics["val_acc_history"]) == 2


def test_training_evaluator_is_seeded():
    space = ChainSpace(num_layers=1)
    arch = ChainArchitecture((ChainLayer(3, 3, 24),))
    ev = TrainingEvaluator(space, _digits, trainer_kwargs={"limit_train_batches": 3})
    assert ev.evaluate(arch, 1)["val_acc_history"] == ev.evaluate(arch, 1)["val_acc_history"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"trainer_kwargs": {"max_epochs": 3}}, r"trainer_kwargs may not set \['max_epochs'\]"),
        ({"schedule": "step"}, r"schedule must be one of \['cosine', 'constant'\], got 'step'"),
        ({"lr": 0}, r"lr must be a number in \(0.0, inf\), got 0"),
        ({"drop_path_prob": 1.0}, r"drop_path_prob must be a number in \[0(\.0)?, 1(\.0)?\), got 1.0"),
    ],
)
def test_training_evaluator_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingEvaluator(ChainSpace(), _digits, **kwargs)


def test_training_evaluator_refuses_a_bad_space_budget_and_data():
    with pytest.raises(ValueError, match="space must be a SequentialSpace"):
        TrainingEvaluator("chain", _digits)
    with pytest.raises(ValueError, match="datamodule must be a LightningDataModule"):
        TrainingEvaluator(ChainSpace(), [1, 2])
    with pytest.raises(ValueError, match=r"LightningDataModule factory.*got the instance HoldoutDataModule.*lambda"):
        TrainingEvaluator(ChainSpace(), _digits())  # an instance: pass its class or a lambda instead
    with pytest.raises(ValueError, match=r"LightningDataModule factory.*the factory returned list"):
        TrainingEvaluator(ChainSpace(), lambda: [1, 2])
    ev = TrainingEvaluator(ChainSpace(num_layers=1), _digits)
    with pytest.raises(ValueError, match="budget \\(epochs\\) must be an int >= 1, got 0"):
        ev.evaluate(ChainArchitecture((ChainLayer(3, 3, 24),)), 0)


def test_child_classifier_refuses_bad_input():
    with pytest.raises(ValueError, match="network must be a torch.nn.Module, got str"):
        ChildClassifier("net")
    with pytest.raises(ValueError, match="needs a network with a `drop_path_prob` attribute"):
        ChildClassifier(nn.Linear(2, 2), drop_path_prob=0.2)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        ChildClassifier(nn.Linear(2, 2), momentum=0.0)
    with pytest.raises(ValueError, match="forward must return logits"):
        split_logits({"logits": torch.zeros(1)})


def test_holdout_split_is_disjoint_seeded_and_uses_the_training_set():
    dm = HoldoutDataModule(DigitsDataModule(), val_size=0.25, seed=3)
    dm.setup()
    inner = dm.datamodule
    assert set(dm.holdout_indices).isdisjoint(dm.train_indices)
    assert len(dm.holdout_indices) + len(dm.train_indices) == len(inner.train_dataset)
    assert len(dm.holdout_indices) == round(0.25 * len(inner.train_dataset))
    assert dm.test_dataset is inner.val_dataset
    again = HoldoutDataModule(DigitsDataModule(), val_size=0.25, seed=3)
    again.setup()
    assert again.holdout_indices == dm.holdout_indices
    with pytest.raises(ValueError, match="val_size must be an int >= 1 or a float in \\(0, 1\\), got 1.5"):
        HoldoutDataModule(DigitsDataModule(), val_size=1.5)
    big = HoldoutDataModule(DigitsDataModule(), val_size=100000)
    with pytest.raises(ValueError, match="holds out 100000 of"):
        big.setup()


def test_holdout_uses_the_evaluation_transform_for_held_out_images(tmp_path):
    from lit_automl.datamodules import CIFAR10DataModule
    from tests.datamodules.test_cifar import _build_tree  # the real pickle layout, written small

    _build_tree(tmp_path, 10)
    dm = HoldoutDataModule(CIFAR10DataModule(data_dir=str(tmp_path), batch_size=8, num_workers=0, cutout_length=8),
                           val_size=10)
    dm.setup()
    held = dm.val_dataset.dataset
    assert held.transform is dm.datamodule.val_dataset.transform
    assert dm.train_dataset.dataset.transform is dm.datamodule.train_dataset.transform
    x0, _ = dm.val_dataset[0]
    x1, _ = dm.val_dataset[0]
    assert torch.equal(x0, x1)  # no augmentation on held-out images


def test_one_child_trains_under_ddp_with_identical_weights_on_both_ranks(tmp_path):
    from tests.ddp_harness import fit_ddp

    space = ChainSpace(num_layers=2)
    arch = ChainArchitecture((ChainLayer(3, 3, 24), ChainLayer(1, 3, 24, inputs=(0,))))
    torch.manual_seed(0)
    module = ChildClassifier(space.build(arch, 1, 10, 8), lr=0.05)
    init = {k: v.clone() for k, v in module.state_dict().items()}
    results = fit_ddp(module, DigitsDataModule(batch_size=32), tmp_path, limit_train_batches=3)
    s0, s1 = (r["state_dict"] for r in results)
    params = [k for k in s0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and all(torch.equal(s0[k], s1[k]) for k in params)  # BN statistics stay per rank (DDP syncs them at forward)
    assert not torch.equal(s0["net.classifier.weight"], init["net.classifier.weight"])
    assert results[0]["fingerprints"] != results[1]["fingerprints"]  # each rank saw its own shard

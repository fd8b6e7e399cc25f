"""Retrain: the DARTS evaluation protocol on tiny networks and random data."""

from __future__ import annotations

import warnings
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lit_automl.callbacks import GenotypeLogger, ScheduledDropPath
from lit_automl.nas.retrain import Retrain
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.published import PUBLISHED_GENOTYPES
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet, count_parameters
from tests.trainers import quiet_trainer

TINY = dict(C=4, layers=3, num_classes=3, in_channels=1, auxiliary=False)


def loader(n: int = 16, size: int = 8, channels: int = 1, classes: int = 3, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def make_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return quiet_trainer(tmp_path, **{"max_epochs": 2, "limit_val_batches": 1, **kwargs})


# --------------------------------------------------------------------------- construction
def test_defaults_are_the_darts_cifar10_setting():
    model = Retrain()
    hp = model.hparams
    assert (hp.network, hp.C, hp.layers, hp.num_classes, hp.auxiliary) == ("cifar", 36, 20, 10, True)
    assert (hp.auxiliary_weight, hp.drop_path_prob, hp.lr, hp.lr_min) == (0.4, 0.2, 0.025, 0.0)
    assert (hp.momentum, hp.weight_decay, hp.grad_clip, hp.epochs) == (0.9, 3e-4, 5.0, None)
    assert model.genotype() == PUBLISHED_GENOTYPES["DARTS_V2"]
    assert isinstance(model.net, NetworkCIFAR)
    # DARTS (second order) on CIFAR-10 reports 3.3M parameters (Table 1).
    assert 3.2e6 < count_parameters(model.net) < 3.4e6
    assert model.drop_path_prob == 0.0  # the schedule starts at 0


@pytest.mark.parametrize("form", ["name", "text", "json_file", "text_file", "object"])
def test_genotype_specs_resolve_and_are_stored_as_text(tmp_path, form):
    expected = PUBLISHED_GENOTYPES["DARTS_V1"]
    spec = {
        "name": "DARTS_V1",
        "text": str(expected),
        "json_file": str(expected.save(tmp_path / "g.json")),
        "text_file": str(expected.save(tmp_path / "g.txt")),
        "object": expected,
    }[form]
    model = Retrain(spec, **TINY)
    assert model.genotype() == expected
    assert isinstance(model.hparams.genotype, str)
    assert Genotype.parse(model.hparams.genotype) == expected


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(network="resnet"), ["'resnet'", "cifar", "imagenet"]),
        (dict(C=0), ["C", "0"]),
        (dict(layers=2.5), ["layers", "2.5"]),
        (dict(auxiliary="yes"), ["auxiliary", "'yes'"]),
        (dict(auxiliary_weight=-0.1), ["auxiliary_weight", "-0.1"]),
        (dict(drop_path_prob=1.0), ["drop_path_prob", "[0.0, 1.0)", "1.0"]),
        (dict(lr=0.0), ["lr", "0.0"]),
        (dict(lr=0.01, lr_min=0.1), ["lr_min", "0.1", "0.01"]),
        (dict(momentum=1.5), ["momentum", "1.5"]),
        (dict(weight_decay=-1e-4), ["weight_decay", "-0.0001"]),
        (dict(grad_clip=-5.0), ["grad_clip", "-5.0"]),
        (dict(epochs=0), ["epochs", "0"]),
        (dict(genotype="NOT_A_GENOTYPE"), ["NOT_A_GENOTYPE", "DARTS_V2"]),
    ],
)
def test_invalid_arguments_name_the_value(kwargs, words):
    with pytest.raises(ValueError) as info:
        Retrain(**{**TINY, **kwargs})
    for word in words:
        assert word in str(info.value)


def test_imagenet_network():
    model = Retrain(network="imagenet", C=4, layers=3, num_classes=5, auxiliary=False)
    assert isinstance(model.net, NetworkImageNet)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_drop_path_prob_property_forwards_to_the_network():
    model = Retrain(**TINY)
    model.drop_path_prob = 0.15
    assert model.net.drop_path_prob == 0.15
    assert model.drop_path_prob == 0.15
    with pytest.raises(ValueError, match="drop_path_prob"):
        model.drop_path_prob = 1.0


def test_criterion_adds_weighted_auxiliary_loss():
    model = Retrain(**{**TINY, "auxiliary_weight": 0.25})
    logits, aux, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(model.criterion(logits, None, y), ce(logits, y))
    assert torch.allclose(model.criterion(logits, aux, y), ce(logits, y) + 0.25 * ce(aux, y))


# --------------------------------------------------------------------------- training
class Recording(Retrain):
    """Retrain that records what the protocol does, from inside the module."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lrs: list[float] = []
        self.aux_seen: list[bool] = []
        self.grad_norms: list[tuple[float, float]] = []
        self.net_drop_path: list[tuple[int, float]] = []
        self.net.register_forward_pre_hook(self._record_drop_path)

    def _record_drop_path(self, net, args):
        if net.training:
            self.net_drop_path.append((self.current_epoch, net.drop_path_prob))

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def criterion(self, logits, logits_aux, target):
        self.aux_seen.append(logits_aux is not None)
        return super().criterion(logits, logits_aux, target)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        before = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        self.grad_norms.append((before, after))


def test_fit_logs_metrics_and_follows_the_cosine_schedule(tmp_path):
    model = Recording(**{**TINY, "lr": 0.1, "lr_min": 0.01, "drop_path_prob": 0.0})
    trainer = make_trainer(tmp_path, max_epochs=3)
    trainer.fit(model, loader(), loader(seed=1))
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "drop_path_prob"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val/acc"]) <= 1.0
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 3e-4)
    # Per-epoch cosine from lr to lr_min over max_epochs (T = 3).
    expected = [0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    assert model.lrs == pytest.approx(expected)
    (result,) = trainer.test(model, loader(seed=2), verbose=False)
    assert "test/acc" in result and 0.0 <= result["test/acc"] <= 1.0


def test_explicit_epochs_set_the_schedule_length(tmp_path):
    model = Recording(**{**TINY, "lr": 0.1, "epochs": 4, "drop_path_prob": 0.0})
    make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(model, loader())
    assert model.lrs == pytest.approx([0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2])


def test_epochs_none_needs_trainer_max_epochs(tmp_path):
    model = Retrain(**TINY)
    trainer = make_trainer(tmp_path, max_epochs=-1, max_steps=2)
    with pytest.raises(ValueError, match="max_epochs"):
        trainer.fit(model, loader())


def test_auxiliary_head_loss_used_in_training_only(tmp_path):
    model = Recording(genotype="DARTS_V2", C=4, layers=3, num_classes=3, in_channels=3, auxiliary=True,
                      drop_path_prob=0.0)
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, loader(size=32, channels=3), loader(size=32, channels=3, seed=1))
    assert model.aux_seen == [True, True]  # two training batches, the eval steps do not call criterion


def test_gradient_norm_clipped_without_trainer_flag(tmp_path):
    model = Recording(**{**TINY, "grad_clip": 1e-3, "drop_path_prob": 0.0})
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, loader())
    assert len(model.grad_norms) == 2
    for before, after in model.grad_norms:
        assert before > 1e-3
        assert after == pytest.approx(1e-3, rel=1e-3)


def test_grad_clip_none_leaves_gradients_alone(tmp_path):
    model = Recording(**{**TINY, "grad_clip": None, "drop_path_prob": 0.0})
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, loader())
    assert all(before == pytest.approx(after) for before, after in model.grad_norms)


def test_trainer_gradient_clip_val_conflicts(tmp_path):
    trainer = make_trainer(tmp_path, gradient_clip_val=1.0)
    with pytest.raises(ValueError, match=r"grad_clip=5\.0.*gradient_clip_val=1\.0"):
        trainer.fit(Retrain(**TINY), loader())


def test_scheduled_drop_path_reaches_the_network(tmp_path):
    model = Recording(**{**TINY, "drop_path_prob": 0.3})
    trainer = make_trainer(tmp_path, max_epochs=3, limit_val_batches=0, callbacks=[ScheduledDropPath()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, loader())
    assert not [w for w in caught if "no callback set" in str(w.message)]
    # Two training batches per epoch; max 0.3 raised linearly over 3 epochs.
    assert [epoch for epoch, _ in model.net_drop_path] == [0, 0, 1, 1, 2, 2]
    assert [value for _, value in model.net_drop_path] == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.2, 0.2])
    assert float(trainer.callback_metrics["drop_path_prob"]) == pytest.approx(0.2)


def test_warns_when_no_callback_schedules_drop_path(tmp_path):
    model = Recording(**{**TINY, "drop_path_prob": 0.2})
    with pytest.warns(UserWarning, match="ScheduledDropPath"):
        make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, loader())
    assert {value for _, value in model.net_drop_path} == {0.0}


def test_checkpoint_rebuilds_the_network_without_the_genotype_file(tmp_path):
    path = PUBLISHED_GENOTYPES["DARTS_V1"].save(tmp_path / "cell.json")
    model = Retrain(str(path), **{**TINY, "drop_path_prob": 0.0})
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    make_trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint]).fit(model, loader(), loader())
    path.unlink()
    restored = Retrain.load_from_checkpoint(checkpoint.last_model_path)
    assert restored.genotype() == PUBLISHED_GENOTYPES["DARTS_V1"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name


def test_genotype_logger_records_the_trained_genotype(tmp_path):
    model = Retrain("DARTS_V1", **{**TINY, "drop_path_prob": 0.0})
    logger = GenotypeLogger(dirpath=tmp_path / "run", log_entropy=False, plot=False, verbose=False)
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[logger]).fit(model, loader())
    assert Genotype.load(tmp_path / "run" / "genotype.json") == PUBLISHED_GENOTYPES["DARTS_V1"]

"""SkipDropoutDecay: the authors' schedule, per-epoch setting, reading the module's stage, resume, bad input."""

import math

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.callbacks.skip_dropout import SkipDropoutDecay, skip_dropout_rate


pytestmark = pytest.mark.usefixtures("single_thread")


class Supernet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.skip_dropout = 0.0


class TinyStage(pl.LightningModule):
    """Has what SkipDropoutDecay reads: ``model.skip_dropout``, ``initial_skip_dropout``, ``hparams.arch_warmup_epochs``."""

    def __init__(self, arch_warmup_epochs: int = 2, initial_skip_dropout: float = 0.5):
        super().__init__()
        self.save_hyperparameters()
        self.model = Supernet()
        self.initial_skip_dropout = initial_skip_dropout
        self.seen = []

    def on_train_epoch_start(self):
        self.seen.append(self.model.skip_dropout)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.model.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def fit(tmp_path, cb, max_epochs, ckpt=None, module=None):
    m = module or TinyStage()
    t = pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=1, callbacks=[cb],
                   logger=pl.loggers.CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path)
    t.fit(m, ckpt_path=ckpt)
    return m, t


def test_schedule_is_the_authors():
    # 25-epoch stage, alphas frozen for 10, initial 0.7 (CIFAR-10's last stage).
    rates = [skip_dropout_rate(e, 0.7, 25, 10) for e in range(25)]
    assert rates[0] == pytest.approx(0.7 * 24 / 25) and rates[9] == pytest.approx(0.7 * 15 / 25)
    assert rates[10] == pytest.approx(0.7)  # restarts at the initial rate when the alphas start training
    assert rates[11] == pytest.approx(0.7 * math.exp(-0.2)) and rates[24] == pytest.approx(0.7 * math.exp(-2.8))
    assert all(a > b for a, b in zip(rates[:10], rates[1:10])) and all(a > b for a, b in zip(rates[10:], rates[11:]))
    assert [skip_dropout_rate(e, 0.0, 25, 10) for e in (0, 10, 20)] == [0.0, 0.0, 0.0]
    assert skip_dropout_rate(3, 0.5, 2, 5) == 0.0  # never negative when the warm-up outlasts the stage
    assert skip_dropout_rate(2, 0.5, 10, 0, decay=0.5) == pytest.approx(0.5 * math.exp(-1.0))


def test_sets_the_rate_each_epoch_logs_and_resumes(tmp_path):
    m, t = fit(tmp_path, SkipDropoutDecay(), 3)  # initial 0.5 and 2 frozen epochs read from the module
    # The callback runs before the module's own epoch-start hook.
    assert m.seen == pytest.approx([0.5 * 2 / 3, 0.5 * 1 / 3, 0.5])
    assert t.callback_metrics["pdarts/skip_dropout"] == pytest.approx(0.5)
    ckpt = tmp_path / "c.ckpt"
    t.save_checkpoint(ckpt)
    cb = SkipDropoutDecay()
    state = torch.load(ckpt, weights_only=False)["callbacks"][cb.state_key]
    assert state == {"last_epoch": 2, "last_value": pytest.approx(0.5)}
    m2, _ = fit(tmp_path, cb, 5, ckpt=str(ckpt))
    assert m2.seen == pytest.approx([0.5 * math.exp(-0.2), 0.5 * math.exp(-0.4)]) and cb.last_epoch == 4


def test_explicit_arguments_override_the_module(tmp_path):
    m, _ = fit(tmp_path, SkipDropoutDecay(initial=0.3, epochs=4, frozen_epochs=1, decay=0.5), 2)
    assert m.seen == pytest.approx([0.3 * 3 / 4, 0.3])


def test_drives_the_pdarts_supernet(tmp_path):
    from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
    from lit_automl.nas.pdarts import PDARTS

    ops = {c: [["none", "skip_connect", "sep_conv_3x3"]] * 5 for c in ("normal", "reduce")}
    m = PDARTS(C=4, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, stage=1, surviving_ops=ops,
               stage_layers=(3, 4), stage_num_ops=(8, 3), stage_skip_dropout=(0.0, 0.6), arch_warmup_epochs=1)
    t = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=1, limit_val_batches=0,
                   callbacks=[SkipDropoutDecay(epochs=4)], logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    t.fit(m, BilevelDataModule(DigitsDataModule(batch_size=8)))
    assert m.model.skip_dropout == pytest.approx(0.6)  # epoch 1: the first with architecture steps
    assert [e.identity_dropout for cell in m.model.cells for e in cell.edges] == pytest.approx([0.6] * 20)


@pytest.mark.parametrize("kwargs, match", [
    ({"initial": 1.0}, r"initial must be a dropout rate in \[0, 1\), got 1.0"),
    ({"initial": -0.1}, r"initial must be a dropout rate in \[0, 1\), got -0.1"),
    ({"initial": "0.3"}, r"initial must be a dropout rate"),
    ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
    ({"frozen_epochs": -1}, r"frozen_epochs must be an int >= 0, got -1"),
    ({"decay": -0.1}, r"decay must be a number >= 0, got -0.1"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SkipDropoutDecay(**kwargs)


def test_bad_schedule_inputs_and_modules(tmp_path):
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0, got -1"):
        skip_dropout_rate(-1, 0.5, 25, 10)

    class NoStage(TinyStage):
        def __init__(self):
            super().__init__()
            del self.initial_skip_dropout

    with pytest.raises(AttributeError, match=r"reads `initial_skip_dropout`.*SkipDropoutDecay\(initial=\.\.\.\)"):
        fit(tmp_path, SkipDropoutDecay(), 1, module=NoStage())

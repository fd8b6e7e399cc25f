"""SkipDropoutDecay: the authors' schedule, per-epoch setting, reading the module's stage, resume, bad input."""

import math

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.callbacks.skip_dropout import SkipDropoutDecay, skip_dropout_rate
from tests.callbacks.helpers import EpochRecorder, Made, callback_of, fit_epochs, saved_state
from tests.resume_harness import run_resumed


pytestmark = pytest.mark.usefixtures("single_thread")


class Supernet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.skip_dropout = 0.0


class TinyStage(EpochRecorder):
    """Has what SkipDropoutDecay reads: ``model.skip_dropout``, ``initial_skip_dropout``, ``hparams.arch_warmup_epochs``."""

    def __init__(self, arch_warmup_epochs: int = 2, initial_skip_dropout: float = 0.5):
        super().__init__()
        self.save_hyperparameters()
        self.model = Supernet()
        self.initial_skip_dropout = initial_skip_dropout

    def observed(self):
        return self.model.skip_dropout


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
    # Initial 0.5 and 2 frozen epochs read from the module; a 3-epoch stage interrupted at its end and
    # resumed as a 5-epoch one (past the frozen epochs, the rate does not depend on the stage length).
    made = Made(TinyStage)
    runs = run_resumed(made, lambda: None, tmp_path, {"max_epochs": 3}, callbacks=lambda: [SkipDropoutDecay()],
                       max_epochs=5, limit_train_batches=1)
    # The callback runs before the module's own epoch-start hook.
    assert made.interrupted.seen == pytest.approx([0.5 * 2 / 3, 0.5 * 1 / 3, 0.5])
    assert runs.full_trainer.callback_metrics["pdarts/skip_dropout"] == pytest.approx(runs.full.seen[-1])
    cb = callback_of(runs.resumed_trainer, SkipDropoutDecay)
    assert saved_state(runs.checkpoint, cb) == {"last_epoch": 2, "last_value": pytest.approx(0.5)}
    assert runs.resumed.seen == pytest.approx([0.5 * math.exp(-0.2), 0.5 * math.exp(-0.4)]) and cb.last_epoch == 4
    assert runs.resumed.seen == pytest.approx(runs.full.seen[3:])


def test_explicit_arguments_override_the_module(tmp_path):
    m, _ = fit_epochs(tmp_path, SkipDropoutDecay(initial=0.3, epochs=4, frozen_epochs=1, decay=0.5), 2, TinyStage())
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
        fit_epochs(tmp_path, SkipDropoutDecay(), 1, NoStage())

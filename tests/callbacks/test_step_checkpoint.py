"""StepCheckpoint: last.ckpt after every n-th training step, for searches that never step an optimiser."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.callbacks import StepCheckpoint
from lit_automl.nas.evolution import RandomSearch
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space


class RecordSaves(pl.Callback):
    """The search step each save held (read back from the file after every batch)."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self.path.exists():
            self.seen.append(torch.load(self.path, weights_only=False)["child_search"]["search_steps"])


@pytest.mark.parametrize("every, expected", [(1, [1, 2, 3, 4]), (2, [2, 2, 4])])
def test_last_checkpoint_after_every_nth_search_step(tmp_path, every, expected):
    search = RandomSearch(MatchEvaluator(tiny_chain_space()), children_per_step=1, budget=1, reward="final",
                          steps_per_epoch=4, storage=f"sqlite:///{tmp_path / 'c.db'}")
    folder = tmp_path / "ck"
    record = RecordSaves(folder / "last.ckpt")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         callbacks=[StepCheckpoint(folder, every_n_steps=every), record])
    trainer.fit(search)
    assert trainer.global_step == 0  # why ModelCheckpoint(every_n_train_steps=...) cannot do this
    assert record.seen == expected
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # the temporary file was moved into place


def test_a_search_checkpoints_every_step_in_its_run_folder_by_default(tmp_path):
    search = RandomSearch(MatchEvaluator(tiny_chain_space()), children_per_step=1, budget=1, reward="final",
                          steps_per_epoch=2, storage=f"sqlite:///{tmp_path / 'c.db'}")
    assert [type(c) for c in search.configure_callbacks()] == [StepCheckpoint]
    pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_progress_bar=False,
               enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path).fit(search)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["child_search"]["search_steps"] == 2


def test_every_n_steps_is_checked():
    with pytest.raises(ValueError, match="every_n_steps"):
        StepCheckpoint(every_n_steps=0)

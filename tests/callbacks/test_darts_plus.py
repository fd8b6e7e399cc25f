"""DartsPlusEarlyStopping: both DARTS+ criteria, real fits, resume, DDP, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist

from lit_automl.callbacks import DartsPlusEarlyStopping
from lit_automl.callbacks.darts_plus import count_skip_connects, learnable_op_indices
from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.darts import DARTS
from lit_automl.spaces import Genotype
from lit_automl.spaces.ops import get_op_set
from tests.callbacks.helpers import callback_of, saved_state
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer

PRIMS = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]  # learnable: columns 3, 4
TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, order=1, primitives=PRIMS)
DARTS_OPS = list(get_op_set("darts"))


pytestmark = pytest.mark.usefixtures("single_thread")


def digits() -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=4, seed=0), seed=0)


def forced(skips: int, alpha_lr: float = 1e-3, **kw) -> DARTS:
    """Tiny DARTS whose normal cell derives ``skips`` (1 or 2) skip_connect edges and whose ranking of
    learnable ops (sep_conv_3x3 over dil_conv_3x3 on every edge, gap 4) survives many small steps."""
    pl.seed_everything(0)
    m = DARTS(**{**TINY, "alpha_lr": alpha_lr, **kw})
    with torch.no_grad():
        for a in m.alphas.values():
            a.zero_()
            a[:, PRIMS.index("sep_conv_3x3")] = 2.0
            a[:, PRIMS.index("dil_conv_3x3")] = -2.0
        # node 0: edges 0, 1; node 1: edges 2, 3, 4. A dominant skip wins the edge and the op.
        for edge in (0, 2)[:skips]:
            m.alpha_normal[edge, PRIMS.index("skip_connect")] = 10.0
    return m


class CountEpochs(pl.Callback):
    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs += 1


# --------------------------------------------------------------------------- criterion 1: skip_connects
def test_skip_criterion_on_a_handcrafted_alpha():
    cb = DartsPlusEarlyStopping(criterion="skip")
    two = forced(skips=2).genotype()
    assert count_skip_connects(two) == 2 == count_skip_connects(str(two))
    stop, reason = cb.check(two, None)
    assert stop and "normal cell has 2 skip_connects" in reason and "max_skip_connects=2" in reason
    assert cb.check(forced(skips=1).genotype(), None) == (False, "")
    assert DartsPlusEarlyStopping(criterion="skip", max_skip_connects=3).check(two, None) == (False, "")
    # Skips in the reduction cell do not count.
    reduce_only = Genotype([("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [2], [("skip_connect", 0), ("skip_connect", 1)], [2])
    assert cb.check(reduce_only, None) == (False, "")


def test_skip_criterion_stops_a_fit_after_the_first_epoch(tmp_path):
    cb, count = DartsPlusEarlyStopping(), CountEpochs()
    trainer = quiet_trainer(tmp_path, max_epochs=4, limit_train_batches=1, limit_val_batches=0, callbacks=[cb, count])
    trainer.fit(forced(skips=2), digits())
    assert cb.stopped_epoch == 0 and count.epochs == 1 and trainer.should_stop
    assert "2 skip_connects" in cb.stop_reason
    assert trainer.callback_metrics["darts_plus/skip_connects"] == 2.0
    assert trainer.callback_metrics["darts_plus/stable_epochs"] == 0.0


# --------------------------------------------------------------------------- criterion 1*: stable ranking
def test_learnable_ops_are_the_parameterised_ones():
    assert learnable_op_indices(DARTS_OPS) == [DARTS_OPS.index(n) for n in ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")]
    assert learnable_op_indices(PRIMS) == [3, 4]
    assert learnable_op_indices(PRIMS, ["dil_conv_3x3", "max_pool_3x3"]) == [1, 4]


def test_stable_ranking_stops_after_exactly_patience_unchanged_epochs():
    g = torch.Generator().manual_seed(0)
    alphas = {"normal": torch.randn(14, 8, generator=g), "reduce": torch.randn(14, 8, generator=g)}
    cb = DartsPlusEarlyStopping(criterion="stable", patience=3, primitives="darts")
    learnable = learnable_op_indices(DARTS_OPS)
    assert [len(edge) for edge in cb.ranking(alphas)["normal"]] == [4] * 14
    assert all(sorted(edge) == learnable for edge in cb.ranking(alphas)["reduce"])

    assert cb.check(None, alphas) == (False, "") and cb.stable_epochs == 0  # epoch 0: first ranking
    # Unchanged ranking: a shift, a positive scaling, any change of none / skip / pooling columns.
    shifted = {c: 2 * a + 1 for c, a in alphas.items()}
    assert cb.check(None, shifted) == (False, "") and cb.stable_epochs == 1
    parameter_free = {c: a.clone() for c, a in shifted.items()}
    parameter_free["normal"][:, [0, 1, 2, 3]] = 100.0  # none, poolings, skip_connect
    assert cb.check(None, parameter_free) == (False, "") and cb.stable_epochs == 2
    stop, reason = cb.check(None, parameter_free)
    assert stop and cb.stable_epochs == 3 and "stable for 3 epochs (patience=3)" in reason

    # A swap of two learnable ops on one edge resets the count.
    cb = DartsPlusEarlyStopping(criterion="stable", patience=2, primitives="darts")
    swapped = {c: a.clone() for c, a in alphas.items()}
    swapped["reduce"][5, [4, 5]] = swapped["reduce"][5, [5, 4]]
    assert alphas["reduce"][5, 4] != alphas["reduce"][5, 5]
    results = [cb.check(None, a)[0] for a in (alphas, alphas, swapped, swapped, swapped)]
    assert results == [False, False, False, False, True]


def test_stable_criterion_stops_a_real_fit_after_patience_epochs(tmp_path):
    cb, count = DartsPlusEarlyStopping(criterion="stable", patience=2), CountEpochs()
    trainer = quiet_trainer(tmp_path, max_epochs=6, limit_train_batches=1, limit_val_batches=0, callbacks=[cb, count])
    m = forced(skips=2)  # two skips, but only criterion 1* is on
    before = m.alpha_normal.detach().clone()
    trainer.fit(m, digits())
    assert not torch.equal(m.alpha_normal, before)  # alphas moved, ranking did not
    assert cb.stopped_epoch == 2 and count.epochs == 3
    assert "stable for 2 epochs" in cb.stop_reason
    assert trainer.callback_metrics["darts_plus/stable_epochs"] == 2.0


# --------------------------------------------------------------------------- state
def test_state_dict_round_trip_continues_the_count():
    alphas = {"normal": torch.randn(5, 5), "reduce": torch.randn(5, 5)}
    first = DartsPlusEarlyStopping(criterion="stable", patience=3, primitives=PRIMS)
    for _ in range(2):
        assert not first.check(None, alphas)[0]
    state = first.state_dict()
    assert state["stable_epochs"] == 1 and state["stopped_epoch"] is None
    resumed = DartsPlusEarlyStopping(criterion="stable", patience=3, primitives=PRIMS)
    resumed.load_state_dict(state)
    assert [resumed.check(None, alphas)[0] for _ in range(2)] == [False, True]


def test_checkpoint_resume_continues_the_count(tmp_path):
    runs = run_resumed(lambda: forced(skips=0, epochs=8), digits, tmp_path, {"max_epochs": 2},
                       callbacks=lambda: [DartsPlusEarlyStopping(criterion="stable", patience=3), CountEpochs()],
                       max_epochs=8, limit_train_batches=1, limit_val_batches=0)
    resumed, count = callback_of(runs.resumed_trainer, DartsPlusEarlyStopping), callback_of(runs.resumed_trainer, CountEpochs)
    saved = saved_state(runs.checkpoint, resumed)
    assert saved["stable_epochs"] == 1 and saved["stopped_epoch"] is None
    assert resumed.stopped_epoch == 3 and count.epochs == 2  # a fresh count would stop at epoch 5
    assert callback_of(runs.full_trainer, DartsPlusEarlyStopping).stopped_epoch == 3


# --------------------------------------------------------------------------- distributed
def test_a_stop_on_another_rank_stops_this_one():
    cb = DartsPlusEarlyStopping(criterion="skip")
    logged = {}
    module = SimpleNamespace(genotype=lambda: forced(skips=1).genotype(), alphas=None,
                             log=lambda name, value, **kw: logged.update({name: value}))
    trainer = SimpleNamespace(current_epoch=4, should_stop=False,
                              strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all: True))
    cb.on_train_epoch_end(trainer, module)
    assert trainer.should_stop and cb.stopped_epoch == 4 and "another rank" in cb.stop_reason
    assert logged == {"darts_plus/skip_connects": 1.0}


class BlindOnRankOne(DartsPlusEarlyStopping):
    """Rank 1 never sees the criterion met: only the reduced decision can stop it."""

    def check(self, genotype, alphas):
        stop, reason = super().check(genotype, alphas)
        return (stop, reason) if dist.get_rank() == 0 else (False, "")


class RecordStop(pl.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        cb = next(c for c in trainer.callbacks if isinstance(c, DartsPlusEarlyStopping))
        record = {"stopped_epoch": cb.stopped_epoch, "reason": cb.stop_reason, "current_epoch": trainer.current_epoch}
        Path(self.dirpath, f"stop{trainer.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.ddp
def test_ddp_ranks_stop_at_the_same_epoch(tmp_path):
    ranks = fit_ddp(forced(skips=2), digits(), tmp_path, callbacks=[BlindOnRankOne(criterion="skip"), RecordStop(str(tmp_path))],
                    max_epochs=3, limit_train_batches=1)
    stops = [json.loads((tmp_path / f"stop{r}.json").read_text()) for r in (0, 1)]
    assert [s["stopped_epoch"] for s in stops] == [0, 0] and [s["current_epoch"] for s in stops] == [1, 1]
    assert [len(r["fingerprints"]) for r in ranks] == [1, 1]  # one batch each: no second epoch anywhere
    assert "2 skip_connects" in stops[0]["reason"] and "another rank" in stops[1]["reason"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"criterion": "entropy"}, r"criterion must be one of \['skip', 'stable', 'both'\], got 'entropy'"),
    ({"max_skip_connects": 0}, "max_skip_connects must be an int >= 1, got 0"),
    ({"patience": 2.5}, "patience must be an int >= 1, got 2.5"),
    ({"patience": True}, "patience must be an int >= 1, got True"),
    ({"learnable_ops": "sep_conv_3x3"}, "learnable_ops must be a non-empty list of op names or None, got 'sep_conv_3x3'"),
    ({"primitives": "dartz"}, "unknown op set 'dartz'"),
    ({"primitives": ["sep_conv_3x3", "conv_9x9"]}, r"conv_9x9"),
    ({"primitives": PRIMS, "learnable_ops": ["sep_conv_5x5"]}, r"learnable_ops \['sep_conv_5x5'\] are not among"),
    ({"primitives": ["none", "skip_connect", "max_pool_3x3"]}, "no learnable operation among primitives"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DartsPlusEarlyStopping(**kwargs)


def test_alphas_of_the_wrong_shape_are_named():
    cb = DartsPlusEarlyStopping(criterion="stable", primitives=PRIMS)
    with pytest.raises(ValueError, match=r"alphas\['normal'\] must have shape \(edges, 5\).*got \(5, 8\)"):
        cb.check(None, {"normal": torch.zeros(5, 8)})


def test_module_without_genotype_is_named(tmp_path):
    class NoGenotype(pl.LightningModule):
        pass

    cb = DartsPlusEarlyStopping()
    with pytest.raises(AttributeError, match="NoGenotype.genotype"):
        cb.setup(quiet_trainer(tmp_path), NoGenotype(), "fit")


def test_an_nb201_search_is_refused_with_the_space_it_searches(tmp_path):
    module = DARTS(space="nb201", C=4, cells_per_stage=1, num_classes=10, in_channels=1, order=1)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                            callbacks=[DartsPlusEarlyStopping()])
    with pytest.raises(ValueError, match="DARTS searches space='nb201': only space='darts' is supported"):
        trainer.fit(module, digits())

"""PNAS (Liu et al., ECCV 2018, Algorithm 1) on the child record, and its predictor ensemble (Sec. 3.3)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from lit_automl.nas.pnas import PNAS
from lit_automl.nas.pnas_predictor import PredictorEnsemble
from lit_automl.spaces.pnas import PNASCellSpace, count_unique_blocks
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer

pytestmark = pytest.mark.usefixtures("single_thread")

TWO_OPS = ["sep_conv_3x3", "max_pool_3x3"]


def _pnas(tmp_path: Path, num_blocks: int = 3, ops=TWO_OPS, **kwargs) -> PNAS:
    space = PNASCellSpace(num_blocks=num_blocks, ops=ops)
    defaults = dict(beam_size=4, children_per_step=4, budget=1, steps_per_epoch=2, predictor_epochs=3,
                    storage=f"journal:{tmp_path / 'children.log'}", study_name="s")
    return PNAS(MatchEvaluator(space, target=1), **{**defaults, **kwargs})


class _SumPredictor:
    """A fake ensemble: the score of a cell is the sum of its tokens (ties broken by candidate order)."""

    def predict(self, cells):
        return torch.tensor([float(sum(c)) for c in cells])


def test_the_papers_settings_train_1160_children():
    search = PNAS(MatchEvaluator(PNASCellSpace()))
    assert search.level_sizes() == [136, 256, 256, 256, 256] and sum(search.level_sizes()) == 1160  # Sec. 5.1
    hp = search.hparams
    assert (hp.beam_size, hp.ensemble_size, hp.predictor, hp.predictor_lr, hp.budget, hp.reward) == \
        (256, 5, "lstm", 0.01, 20, "final")


def test_levels_grow_one_block_keep_the_top_k_by_prediction_and_stop_after_level_b(tmp_path, monkeypatch):
    search = _pnas(tmp_path)
    monkeypatch.setattr(PNAS, "_fit_predictor", lambda self: _SumPredictor())
    monkeypatch.setattr(PNAS, "_plot_best", lambda self, best, run_dir: None)
    stats = []
    observe = search.observe
    search.observe = lambda a, r: stats.append(observe(a, r)) or stats[-1]
    trainer = quiet_trainer(tmp_path, max_epochs=10, limit_train_batches=None, log_every_n_steps=1)
    trainer.fit(search)
    # 10 one-block cells (4 steps of <= 4 children: 3 steps), then 4 + 4: 5 steps, 18 children, then stopped
    assert search.finished and trainer.should_stop and search.search_steps == 5 and search.children_sampled == 18
    cells = [c for c, _ in search.measured]
    assert cells[:10] == search.space.one_block_cells()
    level1 = cells[:10]
    level2_candidates = [child for cell in level1 for child in search.space.expand(cell)]
    assert len(level2_candidates) == 10 * count_unique_blocks(1, 2)
    expected2 = sorted(level2_candidates, key=lambda c: -sum(c))[:4]  # stable sort: ties in candidate order
    assert cells[10:14] == expected2
    expected3 = sorted([child for cell in expected2 for child in search.space.expand(cell)], key=lambda c: -sum(c))[:4]
    assert cells[14:] == expected3 and search.beam == expected3
    # Spearman of the (fake) predictions against the measured rewards, at levels 2 and 3 only; logged from the
    # step that completes level 2 (step 3) on, the latest level's value
    rewards = [r for _, r in search.measured]
    by_hand = [spearmanr([sum(c) for c in cells[10:14]], rewards[10:14]).statistic,
               spearmanr([sum(c) for c in cells[14:]], rewards[14:]).statistic]
    assert search.spearman_per_level == pytest.approx({2: by_hand[0], 3: by_hand[1]})
    assert [s.get("pnas/spearman") for s in stats[:3]] == [None] * 3
    assert [s["pnas/spearman"] for s in stats[3:]] == pytest.approx(by_hand)
    metrics = list(csv.DictReader(open(Path(trainer.log_dir) / "metrics.csv")))
    logged = {int(m["step"]): float(m["pnas/spearman"]) for m in metrics if m.get("pnas/spearman")}
    assert logged == pytest.approx({3: by_hand[0], 4: by_hand[1]})
    # the result is the best cell of level B (Algorithm 1: top-1(S_B, C)) and the record is written
    assert search.best["reward"] == max(rewards[14:])
    assert search.space.from_json(search.best["architecture"]).steps == 3
    assert (Path(trainer.log_dir) / "best_architecture.txt").exists()
    assert len((Path(trainer.log_dir) / "children.jsonl").read_text().splitlines()) == 18


def test_spearman_equals_ranks_by_hand(tmp_path):
    search = _pnas(tmp_path)
    search.level_predictions = [0.1, 0.4, 0.3, 0.2]
    search.level_rewards = [0.5, 0.9, 0.7, 0.8]
    # ranks (1, 4, 3, 2) and (1, 4, 2, 3): d^2 = 0 + 0 + 1 + 1 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert search.spearman() == pytest.approx(0.8)


def test_ensemble_members_train_on_different_four_fifths_of_the_data():
    cells = PNASCellSpace(num_blocks=1, ops=TWO_OPS).one_block_cells()  # 10 cells
    ensemble = PredictorEnsemble(2, 2, epochs=1).fit(cells, [0.5] * 10, torch.Generator().manual_seed(0))
    assert len(ensemble.members) == 5
    left_out = [set(range(10)) - set(f) for f in ensemble.folds]
    assert all(len(f) == 8 for f in ensemble.folds) and all(len(x) == 2 for x in left_out)
    assert set().union(*left_out) == set(range(10))  # every cell held out by exactly one member
    again = PredictorEnsemble(2, 2, epochs=1).fit(cells, [0.5] * 10, torch.Generator().manual_seed(0))
    assert again.folds == ensemble.folds and torch.equal(again.predict(cells), ensemble.predict(cells))
    other = PredictorEnsemble(2, 2, epochs=1).fit(cells, [0.5] * 10, torch.Generator().manual_seed(1))
    assert other.folds != ensemble.folds
    assert ensemble.predict(cells).dtype == torch.float32
    # the mean of the members
    members = torch.stack([ensemble.predict(cells, member=k) for k in range(5)])
    assert torch.allclose(members.mean(0), ensemble.predict(cells))
    ensemble.predict_chunk = 3  # chunked prediction gives the same values
    assert torch.allclose(ensemble.predict(cells), members.mean(0))


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_the_predictor_ranks_unseen_cells_of_a_synthetic_target(kind):
    space = PNASCellSpace(num_blocks=2, ops=["sep_conv_3x3", "max_pool_3x3", "skip_connect"])

    def target(cell):  # fraction of the cell's ops that are sep_conv_3x3
        ops = [t for k in range(0, len(cell), 4) for t in cell[k + 2:k + 4]]
        return sum(o == 0 for o in ops) / len(ops)

    two = [c for cell in space.one_block_cells() for c in space.expand(cell)]
    order = torch.randperm(len(two), generator=torch.Generator().manual_seed(0)).tolist()
    train = space.one_block_cells() + [two[i] for i in order[:60]]  # trained on 1- and 2-block cells
    test = [two[i] for i in order[60:260]]
    ensemble = PredictorEnsemble(3, 3, kind=kind, epochs=10).fit(train, [target(c) for c in train],
                                                                  torch.Generator().manual_seed(0))
    rho = spearmanr(ensemble.predict(test), [target(c) for c in test]).statistic
    assert rho > 0.8, rho


def test_resume_equals_the_uninterrupted_search(tmp_path, monkeypatch):
    monkeypatch.setattr(PNAS, "_plot_best", lambda self, best, run_dir: None)
    # 1 op: 3 one-block cells, then the top 2 of 3 x 6 two-block cells; 2 children per step: 3 steps
    runs = run_resumed(lambda: _pnas(tmp_path, num_blocks=2, ops=["max_pool_3x3"], beam_size=2, children_per_step=2,
                                     steps_per_epoch=1, seed=3), lambda: None, tmp_path / "runs",
                       {"max_epochs": 2}, max_epochs=5)
    full, resumed = runs.full, runs.resumed
    assert full.finished and resumed.finished and full.children_sampled == resumed.children_sampled == 5
    assert resumed.predictor is not None  # refitted after the resume, on the checkpoint's measured children
    assert full.measured == resumed.measured and full.beam == resumed.beam
    assert full.level_predictions == resumed.level_predictions
    assert full.spearman_per_level == resumed.spearman_per_level and set(full.spearman_per_level) == {2}
    assert [h["architecture"] for h in full.history] == [h["architecture"] for h in resumed.history]


@pytest.mark.parametrize("kwargs, match", [
    ({"beam_size": 0}, r"beam_size must be an int >= 1, got 0"),
    ({"predictor": "gru"}, r"PNAS predictor settings .*kind must be one of \['lstm', 'mlp'\], got 'gru'"),
    ({"ensemble_size": 0}, r"PNAS predictor settings .*size must be an int >= 1, got 0"),
    ({"predictor_lr": 0.0}, r"PNAS predictor settings .*lr must be"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _pnas(tmp_path, **kwargs)


def test_other_spaces_and_rewards_outside_0_1_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"evaluator.space must be a lit_automl.spaces.PNASCellSpace, got ChainSpace"):
        PNAS(MatchEvaluator(tiny_chain_space()))
    with pytest.raises(ValueError, match=r"accuracies in \[0, 1\]; got targets from 0.5 to 3.0"):
        PredictorEnsemble(2, 2).fit([[0, 0, 0, 0], [0, 1, 0, 1]], [0.5, 3.0], torch.Generator())
    with pytest.raises(ValueError, match=r"a cell is 4b tokens \(b >= 1\), got 3"):
        PredictorEnsemble(2, 2).fit([[0, 0, 0]], [0.5], torch.Generator())

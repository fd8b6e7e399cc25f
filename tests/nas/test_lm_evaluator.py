"""Recurrent-cell search on (tiny) Penn Treebank files: the perplexity rewards, LMTrainingEvaluator, RLSearch
over the NAS-RL tree cell (Zoph & Le 2017, Sec. 4.2), and the recurrent-cell specs RetrainRNN takes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl

from lit_automl.datamodules import PTBDataModule
from lit_automl.nas.evaluator import describe_reward, reward_from_metrics
from lit_automl.nas.lm_evaluator import LMTrainingEvaluator
from lit_automl.nas.retrain_rnn import RetrainRNN
from lit_automl.nas.rl_search import RLSearch
from lit_automl.spaces import ENASRecurrentSpace, NASRLCellSpace
from lit_automl.spaces.nas_rl_cell import NAS_CELL, NAS_CELL_TOKENS, TreeCell
from lit_automl.spaces.recurrent_cells import recurrent_cell_text, resolve_recurrent_cell
from tests.nas.test_retrain_rnn import write_corpus

SMALL = dict(emsize=8, nhid=8, dropout=0.0, dropout_i=0.0, dropout_e=0.0)


def evaluator(folder: Path, space=None, **kwargs) -> LMTrainingEvaluator:
    return LMTrainingEvaluator(space or NASRLCellSpace(base=2),
                               lambda: PTBDataModule(str(folder), batch_size=4, eval_batch_size=2, bptt=6),
                               **{**SMALL, **kwargs})


def test_perplexity_rewards_are_c_over_the_last_perplexity_to_their_power():
    metrics = {"val_ppl_history": [400.0, 120.0, 90.0]}
    assert reward_from_metrics(metrics, "c_over_ppl_squared") == pytest.approx(80 / 90.0 ** 2)
    assert reward_from_metrics(metrics, "c_over_ppl") == pytest.approx(80 / 90.0)
    assert describe_reward("c_over_ppl_squared", 35) == "80 / (validation perplexity after the last of 35 child epochs)^2"
    assert describe_reward("c_over_ppl", 1) == "80 / (validation perplexity after the 1 child epoch)"
    with pytest.raises(ValueError, match=r"no validation perplexities .*LMTrainingEvaluator"):
        reward_from_metrics({"val_acc_history": [0.5]}, "c_over_ppl")
    with pytest.raises(ValueError, match=r"no validation accuracies"):
        reward_from_metrics({"val_ppl_history": [90.0]}, "final")


@pytest.mark.parametrize("space", [NASRLCellSpace(base=2), ENASRecurrentSpace(num_nodes=3)], ids=repr)
def test_the_evaluator_trains_the_cells_language_model_for_the_budget(tmp_path, space):
    ev = evaluator(write_corpus(tmp_path / "ptb"), space)
    # tanh everywhere (an all-identity tree cell is unbounded and diverges at lr 20)
    tokens = [0] * len(space.decisions()) if isinstance(space, ENASRecurrentSpace) else [0, 1] * 4 + [0, 0]
    arch = space.decode(tokens)
    metrics = ev.evaluate(arch, budget=2)
    assert len(metrics["val_ppl_history"]) == 2 and metrics["val_ppl"] == metrics["val_ppl_history"][-1]
    assert all(math.isfinite(p) and p > 1 for p in metrics["val_ppl_history"])
    vocab = ev.datamodule.vocab_size
    model = RetrainRNN(arch, vocab_size=vocab, nonmono=None, dropout_h=0.0, dropout_x=0.0, **SMALL)
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    if isinstance(space, NASRLCellSpace):  # embedding (tied) + bias + W (8 x base 8) + U (8 x base 8)
        assert metrics["params"] == vocab * 8 + vocab + 2 * 8 * 2 * 8
    again = ev.evaluate(arch, budget=2)
    assert again["val_ppl_history"] == metrics["val_ppl_history"], "seeded: the same child trains the same way"


def test_rl_search_over_the_nas_rl_cell_rewards_children_by_c_over_ppl_squared(tmp_path):
    folder = write_corpus(tmp_path / "ptb")
    search = RLSearch(evaluator(folder), budget=1, children_per_step=2, steps_per_epoch=2, reward="c_over_ppl_squared",
                      hidden_size=8, num_layers=1)
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               default_root_dir=tmp_path / "run").fit(search)
    assert len(search.history) == 4
    study = optuna.load_study(study_name="rlsearch", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 4
    for t in trials:
        assert t.value == pytest.approx(80.0 / t.user_attrs["val_ppl"] ** 2)
    assert search.best["reward"] == max(t.value for t in trials) and "val_ppl" in search.best
    assert isinstance(search.best_architecture(), TreeCell)
    assert (tmp_path / "run" / "best_architecture.json").exists()


def test_the_nas_rl_space_round_trips_tokens_records_and_files(tmp_path):
    space = NASRLCellSpace(base=8)
    assert space.decode(list(NAS_CELL_TOKENS)) == NAS_CELL
    record = space.to_json(NAS_CELL)
    assert record == {"base": 8, "tokens": list(NAS_CELL_TOKENS)}
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(record))
    for spec in (record, json.dumps(record), path, str(path)):
        assert space.from_json(spec) == NAS_CELL
    with pytest.raises(ValueError, match=r"has base 8; this space has base=2"):
        NASRLCellSpace(base=2).from_json(record)
    with pytest.raises(ValueError, match=r'"base": B, "tokens"'):
        space.from_json({"nodes": []})
    with pytest.raises(ValueError, match=r"base must be a power of 2"):
        NASRLCellSpace(base=3)


def test_every_recurrent_cell_kind_resolves_and_its_text_resolves_back():
    enas = ENASRecurrentSpace(num_nodes=3).decode([0, 0, 1, 1, 2])
    for cell in (resolve_recurrent_cell("DARTS_V2"), enas, NAS_CELL):
        assert resolve_recurrent_cell(recurrent_cell_text(cell)) == cell
    assert resolve_recurrent_cell({"base": 8, "tokens": list(NAS_CELL_TOKENS)}) == NAS_CELL


def test_bad_input_is_refused_with_what_is_allowed(tmp_path):
    folder = write_corpus(tmp_path / "ptb")
    with pytest.raises(TypeError, match=r"space must be a DecisionSpace of recurrent cells .*got int"):
        LMTrainingEvaluator(3, lambda: PTBDataModule(str(folder)))
    with pytest.raises(ValueError, match=r"trainer_kwargs may not set \['max_epochs'\]"):
        evaluator(folder, trainer_kwargs={"max_epochs": 3})
    with pytest.raises(ValueError, match=r"lr must be a number > 0, got 0"):
        evaluator(folder, lr=0)
    with pytest.raises(ValueError, match=r"the NAS-RL tree cell has no dropout inside: set dropout_h=0 and dropout_x=0"):
        RetrainRNN({"base": 8, "tokens": list(NAS_CELL_TOKENS)}, vocab_size=10)
    with pytest.raises(ValueError, match=r"reward must be one of .*c_over_ppl_squared.*got 'ppl'"):
        RLSearch(evaluator(folder), reward="ppl")

"""The RL search loop: children as Optuna trials, workers, failures, resume, DDP, NAS-RL depth schedule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import torch

from lit_automl.nas.nas_rl import NASRL
from lit_automl.nas.rl_search import RLSearch
from lit_automl.nas.workqueue import ChildQueue, actions_to_params, params_to_actions
from tests.ddp_harness import fit_ddp
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space
from tests.resume_harness import assert_same_state, run_resumed
from tests.trainers import quiet_trainer


def _search(tmp_path: Path, cls=RLSearch, **kwargs) -> RLSearch:
    space = kwargs.pop("space", None) or tiny_chain_space()
    evaluator = kwargs.pop("evaluator", None) or MatchEvaluator(space)
    defaults = dict(children_per_step=4, budget=1, hidden_size=16, num_layers=1, steps_per_epoch=3,
                    storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s", lr=0.05)
    defaults.update(kwargs)
    return cls(evaluator, **defaults)


def _trials(tmp_path: Path, name: str = "s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'children.db'}").trials


def test_params_round_trip_over_categorical_and_anchor_decisions():
    space = tiny_chain_space(3)
    gen = torch.Generator().manual_seed(0)
    from lit_automl.nas.controller import Controller

    ctrl = Controller(space.decisions(), hidden_size=8, num_layers=1)
    actions, _, _ = ctrl.sample(6, generator=gen)
    for a in actions:
        params = actions_to_params(space.decisions(), a)
        assert "layer2.anchor[1]" in params and "layer0.filter_height" in params
        assert params_to_actions(space.decisions(), params, len(a)) == a


def test_every_child_is_a_trial_with_its_decisions_reward_and_architecture(tmp_path):
    search = _search(tmp_path)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(search)
    trials = _trials(tmp_path)
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    for t, rec in zip(trials, search.history):
        arch = search.space.from_json(t.user_attrs["architecture"])
        actions = search.space.encode(arch)
        assert params_to_actions(search.decisions, t.params, len(actions)) == actions
        assert t.value == pytest.approx(rec["reward"])
        assert t.value == pytest.approx(search.evaluator.evaluate(arch, 1)["val_acc"] ** 3)  # max_last5_cubed
    assert search.best["reward"] == max(t.value for t in trials)
    assert search.controller_steps == 2 and search.children_sampled == 8


def test_search_concentrates_on_the_best_architecture(tmp_path):
    torch.manual_seed(0)
    search = _search(tmp_path, children_per_step=8, lr=0.1, hidden_size=16, seed=1)
    trainer = quiet_trainer(tmp_path, max_steps=12)
    trainer.fit(search)
    rewards = [h["reward"] for h in search.history]
    first, last = sum(rewards[:16]) / 16, sum(rewards[-16:]) / 16
    assert last > first + 0.25, (first, last)


def test_results_are_written_to_the_run_folder(tmp_path):
    search = _search(tmp_path)
    trainer = pl.Trainer(max_steps=2, default_root_dir=tmp_path, logger=pl.loggers.CSVLogger(tmp_path),
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(search)
    run = Path(trainer.log_dir)
    best = json.loads((run / "best_architecture.json").read_text())
    assert best["reward"] == search.best["reward"]
    assert (run / "best_architecture.txt").read_text().startswith("layer 0")
    assert len((run / "children.jsonl").read_text().splitlines()) == 8
    assert (run / "search_history.png").stat().st_size > 1000


def test_failed_child_stops_the_search_with_its_reason(tmp_path):
    space = tiny_chain_space()
    search = _search(tmp_path, evaluator=MatchEvaluator(space, fail_when=0), seed=3)
    with pytest.raises(RuntimeError, match="synthetic failure: first decision is 0"):
        quiet_trainer(tmp_path, max_steps=3).fit(search)
    failed = [t for t in _trials(tmp_path) if t.state.name == "FAIL"]
    assert failed and "synthetic failure" in failed[0].user_attrs["fail_reason"]


def test_failed_child_gets_reward_zero_when_asked(tmp_path):
    space = tiny_chain_space()
    search = _search(tmp_path, evaluator=MatchEvaluator(space, fail_when=0), on_child_failure="zero", seed=3)
    with pytest.warns(UserWarning, match="failed, reward 0: ValueError: synthetic failure"):
        quiet_trainer(tmp_path, max_steps=3).fit(search)
    failed = [h for h in search.history if h["state"] == "FAIL"]
    assert failed and all(h["reward"] == 0.0 for h in failed)
    assert search.best["state"] == "COMPLETE"


def test_worker_processes_evaluate_the_children(tmp_path):
    search = _search(tmp_path, n_workers=2, threads_per_worker=1, child_timeout=120, children_per_step=4)
    quiet_trainer(tmp_path, max_steps=2).fit(search)
    trials = _trials(tmp_path)
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    pids = {t.user_attrs["worker_pid"] for t in trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert search._workers == []  # joined at the end of fit


def test_resume_from_checkpoint_matches_an_uninterrupted_search(tmp_path):
    # one epoch = 3 steps; the interrupted fit stops (and saves last.ckpt) at its end
    runs = run_resumed(lambda: _search(tmp_path, seed=5), lambda: None, tmp_path, {"max_steps": 3}, max_steps=6)
    full, resumed = runs.full, runs.resumed
    assert resumed.controller_steps == full.controller_steps == 6
    assert [h["architecture"] for h in resumed.history] == [h["architecture"] for h in full.history]
    assert_same_state(full.controller, resumed.controller, atol=1e-6, rtol=0)
    assert resumed.policy_gradient.baseline.value == pytest.approx(full.policy_gradient.baseline.value)


def test_interrupted_waiting_children_are_failed_with_a_reason(tmp_path):
    space = tiny_chain_space()
    queue = ChildQueue(f"sqlite:///{tmp_path / 'children.db'}", "s", space.decisions())
    arch = space.decode([0] * 0 + space.encode(space.decode(_first_actions(space))))
    queue.submit("old-session/0/0", space.encode(arch), space.to_json(arch), 1, "final")
    search = _search(tmp_path)
    with pytest.warns(UserWarning, match="left waiting by an interrupted run"):
        quiet_trainer(tmp_path, max_steps=1).fit(search)
    old = [t for t in _trials(tmp_path) if t.user_attrs["child_key"] == "old-session/0/0"][0]
    assert old.state.name == "FAIL" and "earlier session" in old.user_attrs["fail_reason"]


def _first_actions(space):
    actions, n_anchor = [], 0
    for d in space.decisions():
        if d.kind == "anchor":
            actions.append([0] * n_anchor)
            n_anchor += 1
        else:
            actions.append(0)
    return actions


def test_ddp_ranks_keep_identical_controllers(tmp_path):
    search = _search(tmp_path, children_per_step=2)
    init = {k: v.clone() for k, v in search.controller.state_dict().items()}
    results = fit_ddp(search, None, tmp_path, max_steps=2, default_root_dir=tmp_path)
    s0, s1 = (r["state_dict"] for r in results)
    keys = [k for k in s0 if k.startswith("controller.")]
    assert keys
    for k in keys:
        assert torch.equal(s0[k], s1[k]), k
    assert any(not torch.allclose(s0[k], init[k[len("controller."):]]) for k in keys)
    assert len(_trials(tmp_path)) == 4  # only rank 0 submitted children


def test_nas_rl_grows_depth_on_the_paper_schedule(tmp_path):
    space = tiny_chain_space(num_layers=5)
    search = _search(tmp_path, cls=NASRL, space=space, initial_layers=1, layers_increment=2, grow_every=8,
                     children_per_step=4)
    assert search.hparams.grow_every == 8 and search.hparams.initial_layers == 1
    quiet_trainer(tmp_path, max_steps=6).fit(search)
    depths = [len(h["architecture"]["layers"]) for h in search.history]
    assert depths == [1] * 8 + [3] * 8 + [5] * 8


def test_nas_rl_defaults_are_the_papers():
    search = NASRL(MatchEvaluator(tiny_chain_space(6)))
    hp = search.hparams
    assert (hp.children_per_step, hp.budget, hp.reward, hp.hidden_size, hp.num_layers) == (8, 50, "max_last5_cubed", 35, 2)
    assert (hp.lr, hp.init_range, hp.initial_layers, hp.layers_increment, hp.grow_every) == (6e-4, 0.08, 6, 2, 1600)
    assert hp.algorithm == "reinforce"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algorithm": "a2c"}, r"algorithm must be one of \['reinforce', 'ppo'\], got 'a2c'"),
        ({"reward": "mean"}, r"reward must be one of .*got 'mean'"),
        ({"children_per_step": 0}, "children_per_step must be an int >= 1, got 0"),
        ({"on_child_failure": "skip"}, r"on_child_failure must be one of \['raise', 'zero'\], got 'skip'"),
        ({"child_timeout": -1}, "child_timeout must be a number of seconds > 0 or None, got -1"),
        ({"lr": -0.1}, "lr.*-0.1"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RLSearch(MatchEvaluator(tiny_chain_space()), **kwargs)


def test_nas_rl_refuses_a_schedule_beyond_the_space():
    with pytest.raises(ValueError, match="initial_layers=6 exceeds the space's maximum depth num_layers=3"):
        NASRL(MatchEvaluator(tiny_chain_space(3)))
    with pytest.raises(ValueError, match="evaluator must be an Evaluator"):
        RLSearch("not an evaluator")

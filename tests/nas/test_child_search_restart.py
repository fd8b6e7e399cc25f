"""Killing a search and starting it again on the same storage continues it (issue: "tested, with heartbeats so
the killed worker's running child is failed and retried").

A search runs in a subprocess and is killed (SIGKILL) while it evaluates a child; the same search resumed from
its last checkpoint on the same storage must fail that child by its missing heartbeat, evaluate the retry, adopt
the child it had submitted but not started, and end with the record of an uninterrupted search.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import optuna
import pytorch_lightning as pl
import pytest

from lit_automl.nas.evolution import RandomSearch
from lit_automl.nas.workqueue import ChildQueue
from tests.nas.synthetic_search import MatchEvaluator, tiny_chain_space

ROOT = Path(__file__).resolve().parents[2]
STEPS, CHILDREN, HANG_STEP = 4, 2, 2


class HangingEvaluator(MatchEvaluator):
    """:class:`MatchEvaluator` that, given ``hang_file``, writes it and sleeps on the first child of step
    ``HANG_STEP`` (the process is killed there)."""

    def __init__(self, space: Any, hang_file: Optional[str] = None) -> None:
        super().__init__(space)
        self.hang_file = hang_file

    def evaluate(self, architecture: Any, budget: int, key: str = "") -> Dict[str, Any]:
        if self.hang_file and key.endswith(f"_{HANG_STEP}_0"):
            Path(self.hang_file).write_text(key)
            time.sleep(120)
        return super().evaluate(architecture, budget)


def _search(folder: Path, hang_file: Optional[str] = None) -> RandomSearch:
    return RandomSearch(HangingEvaluator(tiny_chain_space(), hang_file), children_per_step=CHILDREN, budget=1,
                        reward="final", steps_per_epoch=STEPS, storage=f"sqlite:///{folder / 'children.db'}",
                        heartbeat_interval=1, grace_period=2, seed=3)


def _fit(folder: Path, search: RandomSearch, ckpt_path: Optional[str] = None) -> RandomSearch:
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=folder)
    trainer.fit(search, ckpt_path=ckpt_path)
    return search


def _run_until_killed(folder: str, hang_file: str) -> None:
    """The subprocess: a search that hangs in a child (and is killed there)."""
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _fit(Path(folder), _search(Path(folder), hang_file))


def test_a_killed_search_resumed_on_its_storage_retries_the_dead_child_and_continues(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    hang_file = tmp_path / "hanging"
    code = (f"from tests.nas.test_child_search_restart import _run_until_killed; "
            f"_run_until_killed({str(killed)!r}, {str(hang_file)!r})")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not hang_file.exists():
            if proc.poll() is not None:
                pytest.fail(f"the search exited before hanging: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the search never reached the hanging child"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    queue = ChildQueue(f"sqlite:///{killed / 'children.db'}", "randomsearch", tiny_chain_space().decisions(),
                       heartbeat_interval=1, grace_period=2)
    hung_key = hang_file.read_text().replace("_", "/")
    states = {k: [t.state.name for t in ts] for k, ts in queue.trials_by_key().items()}
    assert states[hung_key] == ["RUNNING"]  # the killed process left its child running ...
    assert states[hung_key[:-1] + "1"] == ["WAITING"]  # ... and the step's other child submitted

    resumed = _fit(killed, _search(killed), ckpt_path=str(killed / "checkpoints" / "last.ckpt"))
    full = _fit(reference, _search(reference))

    assert [(h["architecture"], h["reward"]) for h in resumed.history] == \
        [(h["architecture"], h["reward"]) for h in full.history]
    trials = queue.trials_by_key()
    assert len(trials) == STEPS * CHILDREN
    dead, retry = trials[hung_key]
    assert dead.state.name == "FAIL" and "fail_reason" not in dead.user_attrs  # failed by the heartbeat
    assert retry.state.name == "COMPLETE" and retry.system_attrs["retry_history"] == [dead.number]
    assert retry.params == dead.params and retry.user_attrs["architecture"] == dead.user_attrs["architecture"]
    # no child was evaluated twice: every other key has exactly one trial, COMPLETE
    assert all([t.state.name for t in ts] == ["COMPLETE"] for k, ts in trials.items() if k != hung_key)
    record = [h for h in resumed.history if h["trial"] == retry.number]
    assert record and record[0]["retry_of"] == [dead.number]


def test_a_resumed_search_adopts_finished_children_and_fails_waiting_ones_it_no_longer_proposes(tmp_path):
    space = tiny_chain_space()
    search = _search(tmp_path)
    queue = ChildQueue(f"sqlite:///{tmp_path / 'children.db'}", "randomsearch", space.decisions())
    search._queue = queue
    search._session = "s"
    actions = search.propose(2)
    arch = space.to_json(space.decode(actions[0]))
    other = space.to_json(space.decode(actions[1]))
    key = f"{search.search_name}/0/0"
    queue.submit(key, actions[0], arch, 1, "final")
    assert search._adopt(key, arch, queue.trials_by_key([key])[key])  # same child, still waiting: adopted
    assert not search._adopt(key, other, queue.trials_by_key([key])[key])  # proposed differently: superseded
    old = queue.trials_by_key([key])[key][0]
    assert old.state.name == "FAIL" and "superseded" in old.user_attrs["fail_reason"]


def test_heartbeat_settings_are_checked():
    space = tiny_chain_space()
    with pytest.raises(ValueError, match="heartbeat_interval"):
        RandomSearch(MatchEvaluator(space), heartbeat_interval=-1)
    with pytest.raises(ValueError, match="grace_period"):
        RandomSearch(MatchEvaluator(space), grace_period=0)
    with pytest.raises(ValueError, match="max_retry"):
        RandomSearch(MatchEvaluator(space), max_retry=-2)
    with pytest.raises(ValueError, match="storage='memory' lives in this process only, so n_workers=2"):
        RandomSearch(MatchEvaluator(space), storage="memory", n_workers=2)

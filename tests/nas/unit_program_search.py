"""The end-to-end check shared by the searches over unit programs (update rules, activations): one controller step
of two children through RLSearch, every child recorded with its formula and the reward its seeded training gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_automl.nas.rl_search import RLSearch
from lit_automl.nas.unit_programs import UnitProgramEvaluator
from tests.trainers import quiet_trainer


def check_two_child_search(evaluator: UnitProgramEvaluator, tmp_path: Path, algorithm: str) -> None:
    """Run one controller step of 2 children with ``algorithm`` and check the record against fresh evaluations."""
    search = RLSearch(evaluator, children_per_step=2, budget=1, reward="final", hidden_size=8, num_layers=1,
                      steps_per_epoch=1, storage=f"sqlite:///{tmp_path / 'search.db'}", study_name="search",
                      on_child_failure="zero", lr=0.05, algorithm=algorithm)
    quiet_trainer(tmp_path, max_steps=1).fit(search)
    assert len(search.history) == 2 and search.controller_steps == 1
    assert [r["state"] for r in search.history] == ["COMPLETE", "COMPLETE"], search.history
    for record in search.history:
        program = evaluator.space.from_json(record["architecture"])
        assert record["architecture"]["formula"] == program.formula()
        again = evaluator.evaluate(program, 1)  # the seeded child, trained again
        assert record["reward"] == pytest.approx(again["val_acc"])
        assert record.get("lr") == again.get("lr")  # the chosen learning rate of a grid reaches the record

"""benchmarks/nas_strategies.py: the tabular protocol's bookkeeping and its command-line checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))  # the script imports _harness as a sibling module
_spec = importlib.util.spec_from_file_location("nas_strategies", _DIR / "nas_strategies.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_the_found_cell_is_the_best_reward_so_far_and_keeps_the_first_on_ties():
    rewards = [0.5, 0.7, 0.6, 0.7, 0.9]
    tests = [0.40, 0.65, 0.99, 0.10, 0.80]
    assert bench._test_of_best(rewards, tests) == [0.40, 0.65, 0.65, 0.65, 0.80]


@pytest.mark.parametrize("argv, match", [
    (["--parts", "tabular"], "needs --tabular PATH"),
    (["--parts", "tabular", "--tabular", "x.pth", "--tabular-children", "10"], "--tabular-children must be"),
])
def test_bad_tabular_options_are_refused(argv, match, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert match in capsys.readouterr().err

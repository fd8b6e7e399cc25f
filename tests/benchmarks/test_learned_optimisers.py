"""benchmarks/learned_optimisers.py: the searched-vs-hand-designed tables' bookkeeping and a tiny run of each part."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_DIR))  # the script imports _harness as a sibling module
_spec = importlib.util.spec_from_file_location("learned_optimisers", _DIR / "learned_optimisers.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclass looks its module up while the script is being executed
_spec.loader.exec_module(bench)

TINY = dict(limit_train_batches=2, limit_val_batches=1)


def _child(child, reward, rule, state="COMPLETE"):
    return {"child": child, "reward": reward, "state": state, "architecture": {"rule": rule}}


def test_top_found_ranks_distinct_completed_children_by_reward_first_on_ties():
    a, b, c, d, e = (f"g 1 identity identity {op}" for op in ("mul", "add", "sub", "div", "keep"))
    history = [_child(0, 0.5, a), _child(1, 0.9, b), _child(2, 0.0, c, state="FAIL"), _child(3, 0.9, d),
               _child(4, 0.9, b), _child(5, 0.7, e)]
    found = bench.top_found(history, 3, bench.UpdateRuleSpace())
    assert [(f.name, f.spec, f.formula, f.reward) for f in found] == [
        ("found #1", b, "(g + 1)", 0.9), ("found #2", d, "g / (1 + delta)", 0.9), ("found #3", e, "g", 0.7)]
    assert [f.spec for f in bench.top_found(history[:1], 3, bench.UpdateRuleSpace())] == [a]  # fewer than k


def test_choose_lr_takes_the_best_mean_and_skips_an_lr_where_a_seed_diverged():
    assert bench.choose_lr({0.1: [0.5, 0.7], 0.01: [0.6, 0.5], 1.0: [0.9, math.nan]}) == 0.1
    assert bench.choose_lr({0.1: [0.6], 0.01: [0.6]}) == 0.01  # ties: the smaller lr
    assert bench.choose_lr({0.1: [math.nan]}) is None


def test_the_test_split_is_the_digits_test_set_not_the_validation_hold_out():
    val, test = bench.digits(), bench.digits(test=True)
    val.setup("fit"), test.setup("fit")
    assert len(val.val_dataloader().dataset) == 300 and len(test.val_dataloader().dataset) == 360
    assert val.train_indices == test.train_indices  # the same training images


def _assert_table(header, rows, what, names):
    assert header == [what, "formula", "lr", "val acc", "test acc", "search reward", "seeds diverged"]
    assert [r[0] for r in rows] == names
    for row in rows:
        assert len(row) == len(header)
        for cell in row[3:5]:
            value = float(cell.split(" ± ")[0])
            assert math.isfinite(value) and 0.0 <= value <= 1.0, row
        assert row[-1] == "0/1", row


def test_rules_part_runs_on_a_tiny_budget(capsys):
    header, rows = bench.part_rules(children=2, per_step=2, epochs=1, grid=[0.01], tune_seeds=[1], report_seeds=[2],
                                    filters=4, top_k=2, trainer_kwargs=TINY)
    _assert_table(header, rows, "update rule", ["found #1", "found #2", *bench.RULE_BASELINES])
    assert [float(r[5]) for r in rows[:2]] == sorted((float(r[5]) for r in rows[:2]), reverse=True)
    assert all(r[5] == "" and r[2] == "0.01" for r in rows[2:])
    assert "2 rules of 2 units sampled by PPO" in capsys.readouterr().out


def test_activations_part_runs_on_a_tiny_budget(capsys):
    header, rows = bench.part_activations(children=2, per_step=2, epochs=1, report_seeds=[1], width=2, top_k=2,
                                          trainer_kwargs=TINY)
    found = len(rows) - len(bench.ACTIVATION_BASELINES)  # a child that diverged is not among the found
    assert 1 <= found <= 2
    _assert_table(header, rows, "activation", [f"found #{k + 1}" for k in range(found)] + list(bench.ACTIVATION_BASELINES))
    assert {r[2] for r in rows} == {"0.1"}  # one training setup for every activation
    assert [r[1] for r in rows[found:]] == ["max(max(x, 0), max(x, 0))", "sigmoid(beta*x) * x", "sigmoid(x) * x"]
    assert "2 activations of 1 core unit(s) sampled by PPO" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--children", "--act-children"])
def test_bad_children_counts_are_refused(flag, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--parts", "rules", flag, "6"])
    assert f"{flag} must be a positive multiple of 4" in capsys.readouterr().err

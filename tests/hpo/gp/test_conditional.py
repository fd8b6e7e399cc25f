"""Conditional spaces: the union space, activity patterns, decider rules found from trials, the
values a pattern allows its deciders, and one pattern's space with its map into the full rows."""

import math

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from lit_automl.hpo.gp.conditional import (DeciderRule, PatternSpace, allowed_values, decider_rules, patterns,
                                           union_search_space)
from lit_automl.hpo.gp.search_space import SearchSpace

U = FloatDistribution(0.0, 1.0)
DEPTH = IntDistribution(1, 3)
SPACE = {"depth": DEPTH, "lr": U, "w0": U, "w1": U, "w2": U}


def _depth_params(depth, **extra):
    """depth in {1, 2, 3}; width w_k only for k < depth."""
    return {"depth": depth, "lr": 0.5, **{f"w{k}": 0.1 * (k + 1) for k in range(depth)}, **extra}


def test_union_search_space_keeps_every_name_once_and_drops_conflicts():
    trials = [optuna.trial.create_trial(params=p, distributions=d, value=0.0) for p, d in [
        ({"b": 0.5, "a": 1}, {"b": U, "a": DEPTH}),
        ({"a": 2, "c": 0.1}, {"a": DEPTH, "c": U}),
        ({"c": 3.0}, {"c": FloatDistribution(0.0, 5.0)}),  # c with another range: left out
    ]]
    union = union_search_space(trials)
    assert list(union) == ["a", "b"] and union["a"] == DEPTH and union["b"] == U


def test_patterns_in_order_of_first_appearance():
    params = [_depth_params(2), _depth_params(1), _depth_params(2), _depth_params(3)]
    assert patterns(params) == [frozenset({"depth", "lr", "w0", "w1"}), frozenset({"depth", "lr", "w0"}),
                                frozenset({"depth", "lr", "w0", "w1", "w2"})]


def test_decider_rules_find_depth_and_not_a_free_categorical():
    params = [_depth_params(d, act=a) for d, a in [(1, "relu"), (2, "tanh"), (3, "relu"), (2, "relu")]]
    space = {**SPACE, "act": CategoricalDistribution(["relu", "tanh"])}
    rules = decider_rules(params, space)
    assert set(rules) == {DeciderRule("depth", "w1", frozenset({2, 3}), frozenset({1})),
                          DeciderRule("depth", "w2", frozenset({3}), frozenset({1, 2}))}
    # A_P(depth): pattern of depth 2 -> {2, 3} & {1, 2} = {2}; depth 1 -> {1}; depth 3 -> {3}
    for d in (1, 2, 3):
        assert allowed_values(rules, frozenset(_depth_params(d))) == {"depth": frozenset({d})}


def test_nested_deciders():
    """bn (only for depth >= 2) decides mom; depth decides w1 but not mom (its values overlap)."""
    params = [_depth_params(1), _depth_params(2, bn=False), _depth_params(2, bn=True, mom=0.9),
              _depth_params(3, bn=True, mom=0.5), _depth_params(3, bn=False)]
    space = {**SPACE, "bn": CategoricalDistribution([False, True]), "mom": U}
    rules = decider_rules(params, space)
    parents = {(r.parent, r.child) for r in rules}
    assert ("bn", "mom") in parents and ("depth", "w1") in parents and ("depth", "mom") not in parents
    allowed = allowed_values(rules, frozenset(params[3]))  # depth 3 with bn and mom
    assert allowed == {"depth": frozenset({3}), "bn": frozenset({True})}
    # w1 active allows depth in {2, 3}, w2 inactive allows {1, 2}: together {2}
    assert allowed_values(rules, frozenset(_depth_params(2, bn=False)))["depth"] == frozenset({2})


def test_pattern_space_maps_rows_into_the_full_space():
    full = SearchSpace({**SPACE, "opt": CategoricalDistribution(["sgd", "adam", "rms"])})
    pattern = frozenset({"depth", "lr", "w0", "w1", "opt"})
    sub = PatternSpace(full, pattern, {"depth": frozenset({2}), "opt": frozenset({"rms", "sgd"})})
    assert sub.space.fixed == {"depth": 2}  # one allowed value: fixed, no column
    assert sub.space.distributions["opt"] == CategoricalDistribution(["sgd", "rms"])  # the full order
    assert sub.space.dim == 3 + 2
    z = torch.tensor([[0.25, 0.5, 0.75, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)  # lr w0 w1 opt=rms
    x = sub.to_full(z)
    expected = full.encode_active({"depth": 2, "lr": 0.25, "w0": 0.5, "w1": 0.75, "opt": "rms"})
    torch.testing.assert_close(x[0].detach(), expected, equal_nan=True)
    assert math.isnan(float(x.detach()[0, full.columns_of("w2")[0]]))
    (grad,) = torch.autograd.grad(torch.nan_to_num(x).sum(), z)  # the continuous columns are copied
    assert grad[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert sub.decode(z[0].detach()) == {"depth": 2, "lr": 0.25, "w0": 0.5, "w1": 0.75, "opt": "rms"}
    rows = sub.encode_many([{"depth": 2, "lr": 0.25, "w0": 0.5, "w1": 0.75, "opt": "rms", "other": 1}])
    torch.testing.assert_close(sub.to_full(rows)[0], expected, equal_nan=True)


def test_pattern_space_bad_input():
    full = SearchSpace(SPACE)
    with pytest.raises(ValueError, match=r"pattern names \['width'\] are not in the space"):
        PatternSpace(full, frozenset({"depth", "width"}), {})
    with pytest.raises(ValueError, match=r"no allowed value of 'depth'"):
        PatternSpace(full, frozenset({"depth"}), {"depth": frozenset({7})})


def test_stepped_float_decider_is_matched_by_its_step():
    """A stepped-float decider restricted to 0.3 (computed 0 + 3 * 0.1 = 0.30000000000000004)
    still encodes a trial that stored 0.3."""
    scale = FloatDistribution(0.0, 0.5, step=0.1)
    full = SearchSpace({"scale": scale, "lr": U, "extra": U})
    params = [{"scale": 0.3, "lr": 0.5, "extra": 0.2}, {"scale": 0.1, "lr": 0.4}, {"scale": 0.5, "lr": 0.1}]
    rules = decider_rules(params, full.distributions)
    assert rules == [DeciderRule("scale", "extra", frozenset({0.3}), frozenset({0.1, 0.5}))]
    sub = PatternSpace(full, frozenset(params[0]), allowed_values(rules, frozenset(params[0])))
    assert set(sub.space.fixed) == {"scale"} and sub.space.fixed["scale"] == pytest.approx(0.3)
    torch.testing.assert_close(sub.to_full(sub.encode_many(params[:1]))[0], full.encode_active(params[0]))

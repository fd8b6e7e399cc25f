"""Tests for the shared LSTM controller (Zoph & Le 2017 Sec. 3); its updates: test_policy_gradient.py."""

from __future__ import annotations

import math

import pytest
import torch

from lit_automl.nas.controller import Controller, Decision


def _layered_space():
    """3 layers x (categorical of 3 choices, anchor): anchors have 0, 1, 2 bits."""
    return [
        Decision.categorical("f0", 3),
        Decision.anchor("a0"),
        Decision.categorical("f1", 3),
        Decision.anchor("a1"),
        Decision.categorical("f2", 3),
        Decision.anchor("a2"),
    ]


# --------------------------------------------------------------------------- #
# (1) log-probabilities
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("temperature,tanh_constant", [(None, None), (2.0, 1.5)])
def test_log_prob_matches_independent_recomputation(temperature, tanh_constant):
    torch.manual_seed(0)
    ctrl = Controller(_layered_space(), hidden_size=8, num_layers=2,
                      temperature=temperature, tanh_constant=tanh_constant, init_range=0.5)
    g = torch.Generator().manual_seed(1)
    actions, lp, ent = ctrl.sample(64, generator=g)
    assert lp.shape == (64,) and ent.shape == (64,)
    assert all(len(a[1]) == 0 and len(a[3]) == 1 and len(a[5]) == 2 for a in actions)

    logits = [lg.detach() for lg in ctrl.step_logits(actions)]
    expected = torch.zeros(64)
    expected_ent = torch.zeros(64)
    for b, seq in enumerate(actions):
        for d, act, lg in zip(ctrl.decisions, seq, logits):
            row = lg[b].double()
            if d.kind == "categorical":
                assert row.shape == (3,)
                logz = torch.log(torch.exp(row).sum())
                expected[b] += float(row[act] - logz)
                p = torch.exp(row - logz)
                expected_ent[b] += float(-(p * torch.log(p)).sum())
            else:
                for j, bit in enumerate(act):
                    p1 = 1.0 / (1.0 + math.exp(-float(row[j])))
                    expected[b] += math.log(p1 if bit == 1 else 1.0 - p1)
                    expected_ent[b] += -(p1 * math.log(p1) + (1 - p1) * math.log(1 - p1))
    torch.testing.assert_close(lp.detach(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent.detach(), expected_ent, atol=1e-5, rtol=1e-5)

    lp2, ent2 = ctrl.log_prob(actions)
    torch.testing.assert_close(lp2.detach(), lp.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ent2.detach(), ent.detach(), atol=1e-6, rtol=1e-6)
    if tanh_constant is not None:
        assert max(float(lg.abs().max()) for lg in logits if lg.numel()) <= tanh_constant
    # differentiable
    lp2.sum().backward()
    assert ctrl.heads[0].weight.grad is not None and ctrl.v.weight.grad is not None


def test_probabilities_sum_to_one_over_whole_space():
    torch.manual_seed(0)
    space = [Decision.categorical("a", 2), Decision.anchor("x"), Decision.categorical("b", 3),
             Decision.anchor("y"), Decision.anchor("z")]
    ctrl = Controller(space, hidden_size=6, init_range=0.5)
    seqs = [[a, [], b, [s], [t, u]] for a in range(2) for b in range(3)
            for s in range(2) for t in range(2) for u in range(2)]
    lp, _ = ctrl.log_prob(seqs)
    assert float(lp.detach().exp().sum()) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- #
# (4) validation
# --------------------------------------------------------------------------- #
def test_bad_specs_raise():
    with pytest.raises(ValueError, match=r"\[\]"):
        Controller([])
    with pytest.raises(ValueError, match="0"):
        Decision.categorical("op", 0)
    with pytest.raises(ValueError, match="'bogus'.*categorical.*anchor"):
        Decision("op", kind="bogus", num_choices=3)
    with pytest.raises(ValueError, match="'op'"):
        Controller([Decision.categorical("op", 2), Decision.categorical("op", 3)])
    with pytest.raises(ValueError, match="4"):
        Decision("a", kind="anchor", num_choices=4)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(hidden_size=0), "hidden_size.*0"),
    (dict(num_layers=-1), "num_layers.*-1"),
    (dict(temperature=0.0), "temperature.*0.0"),
    (dict(tanh_constant=-2.5), "tanh_constant.*-2.5"),
])
def test_bad_controller_args_raise(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Controller([Decision.categorical("op", 2)], **kwargs)


def test_bad_actions_raise():
    ctrl = Controller([Decision.categorical("op", 2), Decision.anchor("a"), Decision.anchor("b")], hidden_size=4)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ctrl.log_prob([[5, [], [1]]])
    with pytest.raises(ValueError, match="length 1"):
        ctrl.log_prob([[0, [], [1, 0]]])
    with pytest.raises(ValueError, match="0/1"):
        ctrl.log_prob([[0, [], [3]]])


def test_prefix_sampling_and_log_prob_match_the_full_rollout_prefix():
    """A growing space samples the first `length` decisions; log_prob of that prefix is its own sum."""
    torch.manual_seed(0)
    decisions = [Decision.categorical("a", 3), Decision.anchor("s0"), Decision.categorical("b", 4), Decision.anchor("s1")]
    ctrl = Controller(decisions, hidden_size=8, num_layers=1)
    actions, lp, _ = ctrl.sample(5, length=3)
    assert all(len(a) == 3 for a in actions)
    lp2, _ = ctrl.log_prob(actions)
    assert torch.allclose(lp, lp2)
    # the prefix log-prob equals the per-step terms of the full sequence's first three decisions
    full = [a + [[1]] for a in actions]
    logits = ctrl.step_logits(full)
    manual = sum(torch.log_softmax(logits[i], -1).gather(1, torch.tensor([[a[i]] for a in actions])).squeeze(1)
                 for i in (0, 2))
    assert torch.allclose(lp2, manual, atol=1e-6)
    with pytest.raises(ValueError, match="length must be in 1..4"):
        ctrl.sample(1, length=5)
    with pytest.raises(ValueError, match="same length"):
        ctrl.log_prob([actions[0], actions[1][:2]])


# --------------------------------------------------------------------------- #
# (5) per-decision tanh constants (ENAS: op decisions use the constant / op_tanh_reduce)
# --------------------------------------------------------------------------- #
@pytest.mark.usefixtures("single_thread")
def test_per_decision_tanh_constants_bound_each_decisions_logits_by_its_own_constant():
    torch.manual_seed(0)
    constants = [0.3, None, 3.0, 1.0, None, 0.5]
    shaped = Controller(_layered_space(), hidden_size=8, temperature=0.5, tanh_constant=constants, init_range=2.0)
    raw = Controller(_layered_space(), hidden_size=8, temperature=0.5, init_range=2.0)
    raw.load_state_dict(shaped.state_dict())
    assert shaped.tanh_constants == constants and raw.tanh_constants == [None] * 6
    actions, _, _ = shaped.sample(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, base = shaped.step_logits(actions), raw.step_logits(actions)
    assert base[0].abs().max() > 1.0, "the raw logits must exceed the small constants for the bound to matter"
    for i, (c, g, b) in enumerate(zip(constants, got, base)):
        expected = b if c is None else c * torch.tanh(b)
        torch.testing.assert_close(g, expected, msg=lambda m, i=i: f"decision {i}: {m}")
        if c is not None and g.numel():
            assert float(g.abs().max()) <= c
    assert float(got[2].abs().max()) > 0.3  # decision 2's bound is its own 3.0, not decision 0's 0.3
    # one number still applies to every decision
    single = Controller(_layered_space(), hidden_size=8, tanh_constant=1.5)
    assert single.tanh_constants == [1.5] * 6


@pytest.mark.parametrize("value,needle", [
    ([1.0, 2.0], r"tanh_constant must be a positive number, None, or a list of 6 such values \(one per "
                 r"decision\), got \[1.0, 2.0\]"),
    ("1.5", r"list of 6 such values.*got '1.5'"),
    ([1.0, None, -2.0, 1.0, 1.0, 1.0], r"tanh_constant\[2\].*-2.0"),
    ([1.0, None, 0.0, 1.0, 1.0, 1.0], r"tanh_constant\[2\].*0.0"),
])
@pytest.mark.usefixtures("single_thread")
def test_bad_per_decision_tanh_constants_are_refused_naming_the_value(value, needle):
    with pytest.raises(ValueError, match=needle):
        Controller(_layered_space(), hidden_size=4, tanh_constant=value)

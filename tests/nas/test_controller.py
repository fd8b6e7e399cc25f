"""Tests for the shared LSTM controller (Zoph & Le 2017 Sec. 3) and its trainers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_automl.nas.controller import (
    Controller,
    Decision,
    PPOTrainer,
    ReinforceTrainer,
    reinforce_loss,
)


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


BEST = [2, [], 0, [1], 1, [0, 1]]


def _bandit_reward(seq) -> float:
    """1 for the best sequence, at most 0.1 * (fraction of matching atomic choices) otherwise."""
    if seq == BEST:
        return 1.0
    atoms = lambda s: [s[0], *s[1], s[2], *s[3], s[4], *s[5]]  # noqa: E731
    match = sum(int(x == y) for x, y in zip(atoms(seq), atoms(BEST)))
    return 0.1 * match / 6


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
# (2) bandit: both trainers concentrate on the best sequence
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("trainer_cls,kwargs", [
    (ReinforceTrainer, dict(lr=0.01, baseline_decay=0.9)),
    (PPOTrainer, dict(lr=0.01, epochs=3, baseline_decay=0.9)),
])
def test_bandit_concentrates_on_best_sequence(trainer_cls, kwargs, seed):
    # 3 categorical decisions x 3 choices + 3 anchors (0 + 1 + 2 bits): 216 sequences.
    torch.manual_seed(seed)
    ctrl = Controller(_layered_space(), hidden_size=16, num_layers=1)
    trainer = trainer_cls(ctrl, **kwargs)
    g = torch.Generator().manual_seed(seed)
    p_best = 0.0
    for step in range(400):
        with torch.no_grad():
            actions, _, _ = ctrl.sample(16, generator=g)
        stats = trainer.step(actions, [_bandit_reward(a) for a in actions])
        if step % 20 == 19:
            with torch.no_grad():
                p_best = float(ctrl.log_prob([BEST])[0].exp())
            if p_best > 0.8:
                break
    assert p_best > 0.8, f"{trainer_cls.__name__}: P(best)={p_best:.3f} after {step + 1} steps"
    assert set(stats) >= {"loss", "reward_mean", "baseline", "entropy"}


# --------------------------------------------------------------------------- #
# (3) unbiasedness of the REINFORCE estimator on a 2-arm bandit
# --------------------------------------------------------------------------- #
def test_reinforce_gradient_is_unbiased_two_arms():
    torch.manual_seed(0)
    ctrl = Controller([Decision.categorical("arm", 2)], hidden_size=4, num_layers=1, init_range=0.8)
    params = [p for p in ctrl.parameters()]
    R = torch.tensor([0.2, 1.0])  # reward per arm
    b = 0.7  # fixed baseline (biased would show if it leaked into the gradient)

    # exact: grad of J = sum_a p(a) R(a)
    lp_all, _ = ctrl.log_prob([[0], [1]])
    J = (lp_all.exp() * R).sum()
    exact = torch.autograd.grad(J, [p for p in params], allow_unused=True)
    exact = torch.cat([(e if e is not None else torch.zeros_like(p)).reshape(-1) for e, p in zip(exact, params)])
    assert exact.norm() > 1e-3

    # Monte Carlo: K independent batch estimates of the REINFORCE gradient
    g = torch.Generator().manual_seed(123)
    K, N = 20, 2000
    ests = []
    for _ in range(K):
        actions, _, _ = ctrl.sample(N, generator=g)
        rewards = R[torch.tensor([a[0] for a in actions])]
        lp, _ = ctrl.log_prob(actions)
        loss = reinforce_loss(lp, rewards, b)
        grads = torch.autograd.grad(-loss, params, allow_unused=True)
        ests.append(torch.cat([(q if q is not None else torch.zeros_like(p)).reshape(-1)
                               for q, p in zip(grads, params)]))
    ests = torch.stack(ests)  # [K, P]
    mean = ests.mean(0)
    se = ests.std(0) / math.sqrt(K)
    # Tolerance: 5 standard errors per coordinate (+1e-6 for exact-zero coords),
    # and relative L2 error below 5% over all K*N = 40k samples.
    assert bool(((mean - exact).abs() <= 5 * se + 1e-6).all())
    assert float((mean - exact).norm() / exact.norm()) < 0.05


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


def test_bad_trainer_args_and_actions_raise():
    ctrl = Controller([Decision.categorical("op", 2), Decision.anchor("a"), Decision.anchor("b")], hidden_size=4)
    with pytest.raises(ValueError, match="lr.*-0.1"):
        ReinforceTrainer(ctrl, lr=-0.1)
    with pytest.raises(ValueError, match="baseline_decay.*1.5"):
        ReinforceTrainer(ctrl, baseline_decay=1.5)
    with pytest.raises(ValueError, match="clip_epsilon.*0"):
        PPOTrainer(ctrl, clip_epsilon=0)
    with pytest.raises(ValueError, match="epochs.*0"):
        PPOTrainer(ctrl, epochs=0)
    with pytest.raises(ValueError, match="entropy_weight.*-1"):
        PPOTrainer(ctrl, entropy_weight=-1)
    t = ReinforceTrainer(ctrl)
    with pytest.raises(ValueError, match="2 rewards"):
        t.step([[0, [], [1]]], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ctrl.log_prob([[5, [], [1]]])
    with pytest.raises(ValueError, match="length 1"):
        ctrl.log_prob([[0, [], [1, 0]]])
    with pytest.raises(ValueError, match="0/1"):
        ctrl.log_prob([[0, [], [3]]])


# --------------------------------------------------------------------------- #
# (5) state_dict round trip
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("trainer_cls", [ReinforceTrainer, PPOTrainer])
def test_state_dict_round_trip_keeps_baseline(trainer_cls):
    torch.manual_seed(0)
    space = [Decision.categorical("op", 3), Decision.anchor("a"), Decision.anchor("b")]
    t1 = trainer_cls(Controller(space, hidden_size=6), lr=0.01)
    g = torch.Generator().manual_seed(0)
    for rs in ([0.1, 0.5, 0.9], [0.3, 0.2, 0.4]):
        actions, _, _ = t1.controller.sample(3, generator=g)
        t1.step(actions, rs)
    assert t1.baseline is not None and t1.baseline != pytest.approx(0.5)  # EMA moved it off the first mean
    state = t1.state_dict()

    torch.manual_seed(99)
    t2 = trainer_cls(Controller(space, hidden_size=6), lr=0.01)
    assert t2.baseline is None
    t2.load_state_dict(state)
    assert t2.baseline == t1.baseline and t2.num_updates == 2
    for k, v in t1.controller.state_dict().items():
        torch.testing.assert_close(t2.controller.state_dict()[k], v)
    # identical next update
    actions, _, _ = t1.controller.sample(4, generator=torch.Generator().manual_seed(5))
    s1 = t1.step(actions, [1.0, 0.0, 0.5, 0.2])
    s2 = t2.step(actions, [1.0, 0.0, 0.5, 0.2])
    assert s1["baseline"] == pytest.approx(s2["baseline"])
    assert s1["loss"] == pytest.approx(s2["loss"], abs=1e-6)
    for k, v in t1.controller.state_dict().items():
        torch.testing.assert_close(t2.controller.state_dict()[k], v)


def test_prefix_sampling_and_log_prob_match_the_full_rollout_prefix():
    """A growing space samples the first `length` decisions; log_prob of that prefix is its own sum."""
    from lit_automl.nas.controller import Controller, Decision

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

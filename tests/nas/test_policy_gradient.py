"""Tests for the controller's policy-gradient updates (REINFORCE, PPO) and the EMA baseline."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lit_automl.nas.controller import Controller, Decision
from lit_automl.nas.policy_gradient import PPO, Reinforce, reinforce_loss
from tests.nas.test_controller import _layered_space

BEST = [2, [], 0, [1], 1, [0, 1]]


def _bandit_reward(seq) -> float:
    """1 for the best sequence, at most 0.1 * (fraction of matching atomic choices) otherwise."""
    if seq == BEST:
        return 1.0
    atoms = lambda s: [s[0], *s[1], s[2], *s[3], s[4], *s[5]]  # noqa: E731
    match = sum(int(x == y) for x, y in zip(atoms(seq), atoms(BEST)))
    return 0.1 * match / 6


def _adam(ctrl: Controller, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(ctrl.parameters(), lr=lr)


# --------------------------------------------------------------------------- #
# (1) bandit: both update rules concentrate on the best sequence
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule_cls,kwargs", [
    (Reinforce, dict(baseline_decay=0.9)),
    (PPO, dict(epochs=3, baseline_decay=0.9)),
])
def test_bandit_concentrates_on_best_sequence(rule_cls, kwargs, seed):
    # 3 categorical decisions x 3 choices + 3 anchors (0 + 1 + 2 bits): 216 sequences.
    torch.manual_seed(seed)
    ctrl = Controller(_layered_space(), hidden_size=16, num_layers=1)
    rule, optimizer = rule_cls(**kwargs), _adam(ctrl, 0.01)
    g = torch.Generator().manual_seed(seed)
    p_best = 0.0
    for step in range(400):
        with torch.no_grad():
            actions, _, _ = ctrl.sample(16, generator=g)
        stats = rule.step(ctrl, optimizer, actions, [_bandit_reward(a) for a in actions])
        if step % 20 == 19:
            with torch.no_grad():
                p_best = float(ctrl.log_prob([BEST])[0].exp())
            if p_best > 0.8:
                break
    assert p_best > 0.8, f"{rule_cls.__name__}: P(best)={p_best:.3f} after {step + 1} steps"
    assert set(stats) >= {"loss", "reward_mean", "baseline", "entropy"}


# --------------------------------------------------------------------------- #
# (2) unbiasedness of the REINFORCE estimator on a 2-arm bandit
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
# (3) validation (the learning rate is RLSearch's: tests/nas/test_rl_search.py)
# --------------------------------------------------------------------------- #
def test_bad_update_args_and_rewards_raise():
    ctrl = Controller([Decision.categorical("op", 2), Decision.anchor("a"), Decision.anchor("b")], hidden_size=4)
    with pytest.raises(ValueError, match="baseline_decay.*1.5"):
        Reinforce(baseline_decay=1.5)
    with pytest.raises(ValueError, match="clip_epsilon.*0"):
        PPO(clip_epsilon=0)
    with pytest.raises(ValueError, match="epochs.*0"):
        PPO(epochs=0)
    with pytest.raises(ValueError, match="entropy_weight.*-1"):
        PPO(entropy_weight=-1)
    with pytest.raises(ValueError, match="2 rewards"):
        Reinforce().step(ctrl, _adam(ctrl, 6e-4), [[0, [], [1]]], [1.0, 2.0])


# --------------------------------------------------------------------------- #
# (4) state_dict round trip: the baseline through the rule, policy and optimiser through their own
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("rule_cls", [Reinforce, PPO])
def test_state_dict_round_trip_keeps_baseline(rule_cls):
    torch.manual_seed(0)
    space = [Decision.categorical("op", 3), Decision.anchor("a"), Decision.anchor("b")]
    c1 = Controller(space, hidden_size=6)
    t1, o1 = rule_cls(), _adam(c1, 0.01)
    g = torch.Generator().manual_seed(0)
    for rs in ([0.1, 0.5, 0.9], [0.3, 0.2, 0.4]):
        actions, _, _ = c1.sample(3, generator=g)
        t1.step(c1, o1, actions, rs)
    assert t1.baseline.value is not None and t1.baseline.value != pytest.approx(0.5)  # EMA moved it off the first mean
    # a checkpoint's copy: the live optimiser would otherwise share (and mutate) its state tensors
    state = copy.deepcopy({"rule": t1.state_dict(), "controller": c1.state_dict(), "optimizer": o1.state_dict()})

    torch.manual_seed(99)
    c2 = Controller(space, hidden_size=6)
    t2, o2 = rule_cls(), _adam(c2, 0.01)
    assert t2.baseline.value is None
    t2.load_state_dict(state["rule"])
    c2.load_state_dict(state["controller"])
    o2.load_state_dict(state["optimizer"])
    assert t2.baseline.value == t1.baseline.value and t2.baseline.num_updates == 2
    for k, v in c1.state_dict().items():
        torch.testing.assert_close(c2.state_dict()[k], v)
    # identical next update
    actions, _, _ = c1.sample(4, generator=torch.Generator().manual_seed(5))
    s1 = t1.step(c1, o1, actions, [1.0, 0.0, 0.5, 0.2])
    s2 = t2.step(c2, o2, actions, [1.0, 0.0, 0.5, 0.2])
    assert s1["baseline"] == pytest.approx(s2["baseline"])
    assert s1["loss"] == pytest.approx(s2["loss"], abs=1e-6)
    for k, v in c1.state_dict().items():
        torch.testing.assert_close(c2.state_dict()[k], v)


# --------------------------------------------------------------------------- #
# (5) an optional penalty term (ENAS's skip KL): its own gradient is added to the policy gradient
# --------------------------------------------------------------------------- #
class _RecordGrads:
    """An "optimiser" that records the gradients it is stepped with and leaves the parameters alone."""

    def __init__(self, params):
        self.params, self.steps = list(params), []

    def step(self):
        self.steps.append([p.grad.clone() for p in self.params])


def _penalty(controller, actions):
    log_prob, _ = controller.log_prob(actions)
    return 0.3 * log_prob.pow(2).mean() + 0.1 * controller.heads[0].weight.pow(2).sum()


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("rule_cls,kwargs", [(Reinforce, dict(entropy_weight=0.01)),
                                             (PPO, dict(epochs=2, entropy_weight=0.01))])
def test_penalty_adds_its_own_autograd_gradient_to_the_policy_gradient(rule_cls, kwargs):
    torch.manual_seed(0)
    ctrl = Controller(_layered_space(), hidden_size=6, init_range=0.5)
    params = list(ctrl.parameters())
    actions, _, _ = ctrl.sample(5, generator=torch.Generator().manual_seed(3))
    rewards = [0.1, 0.9, 0.4, 0.3, 0.7]
    calls = []

    def penalty(controller, acts):
        calls.append(acts)
        return _penalty(controller, acts)

    plain, penalised = _RecordGrads(params), _RecordGrads(params)
    s_plain = rule_cls(**kwargs).step(ctrl, plain, actions, rewards)
    s_pen = rule_cls(**kwargs).step(ctrl, penalised, actions, rewards, penalty=penalty)
    own = torch.autograd.grad(_penalty(ctrl, actions), params, allow_unused=True)
    own = [torch.zeros_like(p) if g is None else g for p, g in zip(params, own)]
    assert float(sum(g.abs().sum() for g in own)) > 0
    epochs = kwargs.get("epochs", 1)
    assert len(plain.steps) == len(penalised.steps) == epochs and len(calls) == epochs  # every optimiser step
    assert all(acts is actions for acts in calls)
    for without, with_ in zip(plain.steps, penalised.steps):
        for a, b, g in zip(without, with_, own):
            torch.testing.assert_close(b, a + g, rtol=1e-5, atol=1e-7)
    # the reported loss includes it too
    assert s_pen["loss"] == pytest.approx(s_plain["loss"] + float(_penalty(ctrl, actions).detach()), abs=1e-6)

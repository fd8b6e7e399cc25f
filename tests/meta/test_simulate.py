"""Learning to simulate (Ruiz et al., ICLR 2019): the simulator's moments, the REINFORCE step against a
by-hand score-function estimate, the reward rising toward a known best psi, resume, bad input."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.meta import GaussianMixtureSimulator, GaussianPsiPolicy, LearningToSimulate
from lit_automl.nas.policy_gradient import Reinforce
from tests.resume_harness import assert_same_state, run_resumed

REAL = dict(real_means=[[-1.0, 0.0], [1.0, 0.0]], real_stds=0.5)


def test_simulator_samples_have_the_stated_class_means_covariances_and_priors():
    means = [[-1.0, 2.0], [3.0, 0.5]]
    stds = [[0.5, 1.0], [2.0, 0.3]]
    sim = GaussianMixtureSimulator(means, stds, priors=[1.0, 3.0])
    n = 40000
    x, y = sim.sample(n, torch.Generator().manual_seed(0))
    x = x.double()
    share = float((y == 1).double().mean())
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)  # 4 standard errors of a proportion
    for c in range(2):
        xc = x[y == c]
        nc = xc.shape[0]
        sd = torch.tensor(stds[c], dtype=torch.float64)
        # 4 standard errors: sd / sqrt(n) for a mean, about sd^2 sqrt(2 / n) for a variance
        assert ((xc.mean(0) - torch.tensor(means[c], dtype=torch.float64)).abs() < 4 * sd / math.sqrt(nc)).all()
        cov = torch.cov(xc.T)
        assert ((cov.diagonal() - sd**2).abs() < 4 * sd**2 * math.sqrt(2 / nc)).all()
        assert abs(float(cov[0, 1])) < 4 * float(sd[0] * sd[1]) / math.sqrt(nc)  # independent coordinates
    moved = sim.with_values({"mean1_0": -5.0, "std0_1": 0.1, "prior0": 3.0})
    assert (moved.get("mean1_0"), moved.get("std0_1"), moved.get("prior0")) == (-5.0, 0.1, 0.8)
    # prior0 is a weight next to the normalised prior1 (0.75): 3 / (3 + 0.75)
    assert sim.get("mean1_0") == 3.0  # the original is unchanged


def test_reinforce_step_equals_a_by_hand_score_function_estimate_float64():
    policy = GaussianPsiPolicy([0.0, 0.0], [1.0, 1.0], init=[0.3, 0.6], std=0.2, learn_std=True).double()
    torch.testing.assert_close(policy.to_psi(policy.mean.detach()), torch.tensor([0.3, 0.6], dtype=torch.float64))
    optimizer = torch.optim.SGD(policy.parameters(), lr=1.0)  # the parameter change is minus the gradient
    rule = Reinforce(baseline_decay=0.9)
    u = torch.tensor([[0.1, 0.7], [0.5, 0.4], [0.35, 0.9], [0.2, 0.55]], dtype=torch.float64)
    batches = [(torch.tensor([0.25, 0.5, 0.75, 1.0]), 0.625),  # first update: the baseline is the batch mean
               (torch.tensor([0.0, 0.0, 1.0, 1.0]), 0.625)]  # then the moving average (0.625, not 0.5)
    for rewards, baseline in batches:
        mu, s = policy.mean.detach().clone(), policy.log_std.detach().exp()
        adv = (rewards.double() - baseline)[:, None]  # [m, 1]
        z = (u - mu) / s  # [m, d]
        # d/dmu log N(u; mu, s) = (u - mu) / s^2, d/dlog s log N = z^2 - 1; ascent on mean_k adv_k * score_k
        grad_mu = (adv * z / s).mean(0)
        grad_log_s = (adv * (z**2 - 1)).mean(0)
        log_s = policy.log_std.detach().clone()
        rule.step(policy, optimizer, u, rewards)
        torch.testing.assert_close(policy.mean.detach(), mu + grad_mu, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(policy.log_std.detach(), log_s + grad_log_s, rtol=1e-12, atol=1e-12)
    assert rule.baseline.value == pytest.approx(0.9 * 0.625 + 0.1 * 0.5)


def short_run(root, seed: int = 0, epochs: int = 6, **kw) -> LearningToSimulate:
    pl.seed_everything(seed, verbose=False)
    args = dict(REAL, psi_ranges={"mean1_0": [-3, 3], "mean1_1": [-3, 3]}, psi_init={"mean1_0": -1.0, "mean1_1": -1.0},
                batch=8, samples=100, val_samples=500, train_steps=30, updates_per_epoch=10, seed=seed)
    module = LearningToSimulate(**{**args, **kw})
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         default_root_dir=str(root),
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_reward_rises_and_the_policy_moves_to_the_real_mixture(seed, tmp_path):
    # The real classes sit at (-1, 0) and (1, 0) with std 0.5; psi is the simulated class-1 mean, starting at
    # (-1, -1) (a horizontal boundary at y = -0.5). The best psi is the real (1, 0): any other class-1 mean
    # moves the learned boundary off the real perpendicular bisector. (A start on the wrong side of class 0,
    # e.g. (-2, 0.5), flips the labels and the policy settles at reward 0.5: the landscape is not concave.)
    module = short_run(tmp_path, seed)
    history = module.reward_history
    assert len(history) == 60
    first, last = sum(history[:10]) / 10, sum(history[-10:]) / 10
    # Over seeds 0-5: first 0.71-0.80, last 0.92-0.96 (rise >= 0.15); the Bayes accuracy is 0.977.
    assert last > first + 0.1 and last > 0.9
    psi = torch.tensor([module.best_psi()["mean1_0"], module.best_psi()["mean1_1"]])
    start = torch.tensor([-1.0, -1.0])
    best = torch.tensor([1.0, 0.0])
    # Near the optimum the reward is flat (accuracy within noise of 0.977 over a neighbourhood of about 0.5),
    # so we ask the distance to the best psi to shrink to under a quarter of its start (2.24), not to vanish
    # (over seeds 0-5 it ends at 0.11-0.5).
    assert float((psi - best).norm()) < float((start - best).norm()) / 4


def make_module():
    return LearningToSimulate(**REAL, psi_ranges={"mean1_0": [-3, 3], "std1_1": [0.1, 2.0]}, batch=4, samples=50,
                              val_samples=200, train_steps=10, updates_per_epoch=3, seed=3)


def test_resume_equals_uninterrupted(tmp_path):
    runs = run_resumed(make_module, lambda: None, tmp_path, {"max_epochs": 1}, max_epochs=2)
    assert_same_state(runs.full, runs.resumed)
    assert runs.full.reward_history == runs.resumed.reward_history and len(runs.full.reward_history) == 6
    assert runs.full.policy_gradient.state_dict() == runs.resumed.policy_gradient.state_dict()
    torch.testing.assert_close(runs.full.trainer.optimizers[0].state_dict()["state"][0]["exp_avg"],
                               runs.resumed.trainer.optimizers[0].state_dict()["state"][0]["exp_avg"], rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(psi_ranges={}), "psi_ranges must name at least one"),
    (dict(psi_ranges={"mean1_0": [1.0, 1.0]}), r"psi_ranges\['mean1_0'\] high must be"),
    (dict(psi_ranges={"mean1_0": [2.0, -1.0]}), r"psi_ranges\['mean1_0'\] high must be"),
    (dict(psi_ranges={"mean1_0": [1.0]}), "must be a \\[low, high\\] pair"),
    (dict(psi_ranges={"mean7_0": [0, 1]}), "unknown simulator parameter 'mean7_0'"),
    (dict(psi_ranges={"std0_0": [0.0, 1.0]}), "must lie above 0"),
    (dict(psi_ranges={"prior0": [-1.0, 1.0]}), "must lie at or above 0"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, psi_init={"mean1_0": 5.0}), r"psi_init\['mean1_0'\] must be"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, psi_init={"mean1_0": 1.0}), "strictly inside"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, psi_init={"mean0_0": 0.5}), "psi_init names"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, batch=0), "batch must be an int >= 1"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, samples=0), "samples must be an int >= 1"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, policy_std=0.0), "policy_std must be"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, real_stds=-1.0), "stds must be finite numbers > 0"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, real_means=[[0.0, 0.0]]), "at least 2 classes"),
    (dict(psi_ranges={"mean1_0": [0, 1]}, real_priors=[1.0]), "priors must be 2 numbers"),
])
def test_bad_input_is_refused_with_a_clear_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearningToSimulate(**{**REAL, **kwargs})


def test_ddp_is_refused():
    fake = SimpleNamespace(trainer=SimpleNamespace(world_size=2), hparams=SimpleNamespace(batch=8))
    with pytest.raises(ValueError, match="runs on one process"):
        LearningToSimulate.setup(fake, "fit")

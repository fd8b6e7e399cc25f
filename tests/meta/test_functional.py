"""The one functional inner loop: SGD / Adam updates, first vs second order, what it records."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_automl.meta.functional import InnerAdam, InnerSGD, adaptable_names, inner_loop, task_loss
from lit_automl.meta.models import ConvNet4, SinusoidMLP

mse = nn.functional.mse_loss


def data(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, torch.randn(n, 1, generator=g)


def test_sgd_steps_match_torch_optim():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = inner_loop(model, params, {}, data(), mse, steps=3, optimizer=InnerSGD(0.1),
                     adapt=list(params), first_order=True).params
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        mse(model(data()[0]), data()[1]).backward()
        opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(out[n], p.detach())


def test_adam_beta1_zero_matches_torch_optim_and_carries_state():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    update = InnerAdam(0.05, betas=(0.0, 0.999))
    first = inner_loop(model, params, {}, data(0), mse, steps=2, optimizer=update, adapt=list(params), first_order=True)
    second = inner_loop(model, first.params, {}, data(1), mse, steps=2, optimizer=update, adapt=list(params),
                        first_order=True, state=first.state)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, betas=(0.0, 0.999))
    for seed in (0, 0, 1, 1):
        opt.zero_grad()
        x, y = data(seed)
        mse(model(x), y).backward()
        opt.step()
    assert float(second.state["step"]) == 4
    for n, p in model.named_parameters():
        torch.testing.assert_close(second.params[n], p.detach(), rtol=1e-5, atol=1e-6)


def test_second_order_keeps_the_graph_first_order_drops_it():
    model = nn.Linear(3, 1)
    params = dict(model.named_parameters())
    x, y = data()
    for first_order in (False, True):
        phi = inner_loop(model, params, {}, (x, y), mse, steps=1, optimizer=InnerSGD(0.1), adapt=list(params),
                         first_order=first_order).params
        loss = task_loss(model, phi, {}, (x, y), mse)
        grads = torch.autograd.grad(loss, list(params.values()))
        # First order: d phi / d theta = I, so the gradient is the plain gradient at phi.
        phi_leaf = {n: p.detach().requires_grad_() for n, p in phi.items()}
        plain = torch.autograd.grad(task_loss(model, phi_leaf, {}, (x, y), mse), list(phi_leaf.values()))
        same = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads, plain))
        assert same == first_order


def test_record_gives_the_trajectory_losses_and_gradients():
    model = nn.Linear(3, 1)
    params = {n: p.detach() for n, p in model.named_parameters()}
    res = inner_loop(model, params, {}, data(), mse, steps=4, optimizer=InnerSGD(0.1), adapt=list(params),
                     first_order=True, record=True)
    assert len(res.trajectory) == 5 and len(res.grads) == 4 and len(res.losses) == 4
    for i in range(4):
        for n in params:
            torch.testing.assert_close(res.trajectory[i + 1][n], res.trajectory[i][n] - 0.1 * res.grads[i][n])
    torch.testing.assert_close(res.final_loss, task_loss(model, res.trajectory[4], {}, data(), mse))
    assert res.losses[-1] > res.final_loss  # gradient descent on a convex loss with a small step


def test_only_named_parameters_move_and_norm_layers_are_outer_only():
    model = ConvNet4(n_way=3, hidden=4, blocks=2)
    names = adaptable_names(model)
    assert not any("1.weight" in n or "1.bias" in n for n in names if n.startswith("features.1"))
    assert all(not n.startswith(("features.1.", "features.4.")) for n in names)  # the BatchNorm2d layers
    assert set(adaptable_names(model, adapt_norm=True)) == {n for n, _ in model.named_parameters()}
    params = {n: p.detach() for n, p in model.named_parameters()}
    x, y = torch.randn(6, 1, 8, 8), torch.arange(3).repeat(2)
    out = inner_loop(model, params, {}, (x, y), nn.functional.cross_entropy, steps=2, optimizer=InnerSGD(0.5),
                     adapt=names, first_order=True).params
    for n in params:
        assert torch.equal(out[n], params[n]) != (n in names)


@pytest.mark.parametrize("bad", [dict(steps=-1), dict(steps=1.5)])
def test_bad_steps(bad):
    model = SinusoidMLP()
    params = dict(model.named_parameters())
    with pytest.raises(ValueError, match="inner steps"):
        inner_loop(model, params, {}, data(n=4)[:1] + (torch.zeros(4, 1),), mse, optimizer=InnerSGD(0.1),
                   adapt=list(params), first_order=True, **bad)


@pytest.mark.parametrize("make", [lambda: InnerSGD(0.0), lambda: InnerSGD(-1), lambda: InnerAdam(0.0),
                                  lambda: InnerAdam(0.1, betas=(1.0, 0.9))])
def test_bad_inner_optimizer_settings(make):
    with pytest.raises(ValueError, match=r"must (be|lie)"):
        make()


@pytest.mark.parametrize("first_order", [False, True])
def test_autograd_and_functional_gradients_agree(first_order):
    torch.manual_seed(0)
    model = ConvNet4(n_way=3, hidden=4, blocks=2)
    params = dict(model.named_parameters())
    support = (torch.randn(6, 1, 8, 8), torch.arange(3).repeat(2))
    query = (torch.randn(6, 1, 8, 8), torch.arange(3).repeat(2))
    grads = []
    for functional in (False, True):
        phi = inner_loop(model, params, {}, support, nn.functional.cross_entropy, steps=2, optimizer=InnerSGD(0.3),
                         adapt=adaptable_names(model), first_order=first_order, functional_grads=functional).params
        loss = task_loss(model, phi, {}, query, nn.functional.cross_entropy)
        grads.append(torch.autograd.grad(loss, list(params.values())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class LearnedStepSGD:
    """``phi <- phi - lr * g`` with a learnable tensor ``lr``: the simplest learned update rule."""

    def __init__(self, lr: torch.Tensor) -> None:
        self.lr = lr

    def init_state(self, params):
        return {}

    def step(self, params, grads, state):
        return {n: params[n] - self.lr * grads[n] for n in grads}, state


@pytest.mark.parametrize("functional", [False, True])
def test_detach_grads_keeps_the_update_path_and_drops_second_derivatives(functional):
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    x, y = (t.double() for t in data())
    phi0 = {n: p.detach() for n, p in model.named_parameters()}
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    res = inner_loop(model, phi0, {}, (x, y), mse, steps=2, optimizer=LearnedStepSGD(lr), adapt=list(phi0),
                     first_order=False, detach_grads=True, record=True, functional_grads=functional)
    final = task_loss(model, res.params, {}, (x, y), mse)
    (got,) = torch.autograd.grad(final + res.losses[1], [lr])
    # By hand, the g^i constants: phi^1 = phi^0 - lr g^0, phi^2 = phi^1 - lr g^1, so
    # d f(phi^2)/d lr = -grad f(phi^2) . (g^0 + g^1) and d f(phi^1)/d lr = -grad f(phi^1) . g^0.
    g0, g1 = res.grads
    phi2 = {n: p.detach().requires_grad_() for n, p in res.params.items()}
    grad2 = torch.autograd.grad(task_loss(model, phi2, {}, (x, y), mse), list(phi2.values()))
    expected = -sum((g * (g0[n] + g1[n])).sum() for n, g in zip(phi2, grad2))
    expected = expected - sum((g1[n] * g0[n]).sum() for n in phi0)  # grad f(phi^1) = g^1
    torch.testing.assert_close(got, expected)
    # Second order differs (it differentiates g^1 through phi^1); first order has no path to lr.
    leaves = {n: p.clone().requires_grad_() for n, p in phi0.items()}
    second = inner_loop(model, leaves, {}, (x, y), mse, steps=2, optimizer=LearnedStepSGD(lr), adapt=list(phi0),
                        first_order=False)
    (full,) = torch.autograd.grad(task_loss(model, second.params, {}, (x, y), mse) + second.losses[1], [lr])
    assert not torch.allclose(full, got)
    first = inner_loop(model, phi0, {}, (x, y), mse, steps=2, optimizer=LearnedStepSGD(lr), adapt=list(phi0),
                       first_order=True)
    assert not first.losses[1].requires_grad


def test_detach_grads_and_first_order_together_are_refused():
    model = nn.Linear(3, 1)
    params = dict(model.named_parameters())
    with pytest.raises(ValueError, match="detach_grads"):
        inner_loop(model, params, {}, data(), mse, steps=1, optimizer=InnerSGD(0.1), adapt=list(params),
                   first_order=True, detach_grads=True)

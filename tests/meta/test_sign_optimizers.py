"""PowerSign / AddSign (Bello et al., ICML 2017, Sec. 5) against the paper's formulas written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lit_automl.meta import AddSign, PowerSign
from lit_automl.meta.sign_optimizers import sign_decay


def _grads(steps: int, n: int = 6) -> list:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, generator=g, dtype=torch.float64) for _ in range(steps)]


def _run(opt_cls, grads, w0, **kwargs):
    w = torch.nn.Parameter(w0.clone())
    opt = opt_cls([w], **kwargs)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    return w.detach(), opt


def _by_hand(grads, w0, lr, beta, rule, decay=lambda t: 1.0):
    """The paper's update written with plain tensor arithmetic: m updated first, then its sign read."""
    w, m = w0.clone(), torch.zeros_like(w0)
    for t, g in enumerate(grads):
        m = beta * m + (1 - beta) * g
        w = w - lr * rule(decay(t) * torch.sign(g) * torch.sign(m)) * g
    return w


@pytest.mark.parametrize("decay", ["none", "linear", "cosine", "restart"])
def test_power_sign_and_add_sign_follow_the_paper_formula(decay):
    grads, w0 = _grads(7), torch.linspace(-1, 1, 6, dtype=torch.float64)
    T = 5 if decay != "none" else None
    f = {"none": lambda t: 1.0, "linear": lambda t: 1 - min(t, 5) / 5,
         "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * min(t, 5) / 5)),
         "restart": lambda t: 0.5 * (1 + math.cos(math.pi * (min(t, 5) % 5) / 5))}[decay]
    got, _ = _run(PowerSign, grads, w0, lr=0.1, sign_decay=decay, decay_steps=T)
    want = _by_hand(grads, w0, 0.1, 0.9, lambda s: math.e ** s, f)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got, _ = _run(AddSign, grads, w0, lr=0.1, alpha=1.0, sign_decay=decay, decay_steps=T)
    want = _by_hand(grads, w0, 0.1, 0.9, lambda s: 1.0 + s, f)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_first_step_scales_the_gradient_by_e_and_by_two():
    # at the first step m = (1 - beta) g has g's sign: PowerSign moves by e * lr * g, AddSign by 2 * lr * g
    g, w0 = torch.tensor([0.5, -2.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    torch.testing.assert_close(_run(PowerSign, [g], w0, lr=0.1)[0], -0.1 * math.e * g)
    torch.testing.assert_close(_run(AddSign, [g], w0, lr=0.1)[0], -0.2 * g)
    torch.testing.assert_close(_run(PowerSign, [g], w0, lr=0.1, alpha=2.0)[0], -0.2 * g)


def test_sign_decay_values():
    assert sign_decay("none", 7) == 1.0
    assert [sign_decay("linear", t, 4) for t in (0, 2, 4, 9)] == [1.0, 0.5, 0.0, 0.0]
    assert sign_decay("cosine", 2, 4) == pytest.approx(0.5) and sign_decay("cosine", 4, 4) == pytest.approx(0.0)
    assert sign_decay("cosine", 2, 4, num_periods=1.0) == pytest.approx(0.0)
    assert sign_decay("restart", 0, 4, num_periods=2) == 1.0 and sign_decay("restart", 2, 4, num_periods=2) == 1.0
    assert sign_decay("restart", 1, 4, num_periods=2) == pytest.approx(0.5)  # (2 * 1) mod 4 = 2: half way


def test_state_dict_round_trip_continues_identically():
    grads, w0 = _grads(6), torch.ones(6, dtype=torch.float64)
    full, _ = _run(AddSign, grads, w0, lr=0.05, sign_decay="linear", decay_steps=6)
    half, opt = _run(AddSign, grads[:3], w0, lr=0.05, sign_decay="linear", decay_steps=6)
    w = torch.nn.Parameter(half.clone())
    fresh = AddSign([w], lr=0.05, sign_decay="linear", decay_steps=6)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.state[w]["step"] == 3
    for g in grads[3:]:
        w.grad = g.clone()
        fresh.step()
    torch.testing.assert_close(w.detach(), full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0), "lr must be a number > 0"),
    (dict(beta=1.0), "beta must be a number in"),
    (dict(sign_decay="exp"), "sign_decay must be one of"),
    (dict(sign_decay="linear"), "decay_steps must be an int >= 1"),
    (dict(decay_steps=10), "needs a sign_decay other than 'none'"),
    (dict(sign_decay="linear", decay_steps=5, num_periods=2), "applies to the 'cosine' and 'restart'"),
    (dict(alpha=0.0), "alpha must be a number > 0"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PowerSign([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_add_sign_refuses_a_negative_offset():
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        AddSign([torch.nn.Parameter(torch.zeros(1))], alpha=-1.0)

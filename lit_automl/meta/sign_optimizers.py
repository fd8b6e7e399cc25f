"""PowerSign and AddSign: the two optimisers found by neural optimiser search, ready to use.

Bello, Zoph, Vasudevan & Le, "Neural Optimizer Search with Reinforcement Learning", ICML 2017, Sec. 5:

* PowerSign: ``w <- w - lr * alpha^(f(t) * sign(g) * sign(m)) * g`` (``alpha = e`` by default);
* AddSign:   ``w <- w - lr * (alpha + f(t) * sign(g) * sign(m)) * g`` (``alpha = 1`` by default);

``m`` the running average of the gradient, ``m <- beta m + (1 - beta) g`` with ``beta = 0.9``, updated with the
current gradient *before* its sign is read (as in the authors' TensorFlow kernels, ``tf.contrib.opt``'s
``ApplyPowerSign`` / ``ApplyAddSign``), and ``f(t)`` an optional *sign decay* (:func:`sign_decay`): ``none``
(``f = 1``), ``linear`` ``1 - t/T``, ``cosine`` ``0.5 (1 + cos(2 pi n t / T))`` (``n = 0.5`` periods by default,
i.e. ``0.5 (1 + cos(pi t / T))``) and ``restart`` ``0.5 (1 + cos(pi ((n t) mod T) / T))`` (SGDR-like, ``n = 1``
by default). The paper's Sec. 5 names the linear, cyclical (cosine) and restart decays; the formulas, the defaults
of ``n`` and the clipping ``t <- min(t, T)`` here are those of the authors' ``tf.contrib.opt.sign_decay``, which we
checked (the paper's own text could not be re-read while this was written).
``t`` counts the updates taken before the current one (0 at the first update, TensorFlow's ``global_step``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional

import torch
from torch.optim import Optimizer

from lit_automl._checks import check_choice, check_int, check_real

__all__ = ["AddSign", "ElementwiseOptimizer", "PowerSign", "SIGN_DECAYS", "sign_decay"]

SIGN_DECAYS = ("none", "linear", "cosine", "restart")
"""The sign-decay schedules ``f(t)`` of Bello et al. 2017 Sec. 5 (``none``: ``f = 1``)."""

DEFAULT_PERIODS = {"cosine": 0.5, "restart": 1.0}
"""Periods ``n`` of the cyclical decays when none is given (``tf.contrib.opt.sign_decay``'s defaults)."""


def sign_decay(kind: str, t: int, decay_steps: Optional[int] = None, num_periods: Optional[float] = None) -> float:
    """``f(t)`` of the sign-decay ``kind`` at update ``t`` (0-based) over ``decay_steps`` ``T`` (Bello et al. Sec. 5).

    ``t`` is clipped to ``T`` (the authors' code), so the linear and half-period cosine decays stay at 0 after ``T``.
    """
    check_choice("sign_decay", kind, SIGN_DECAYS, sort=False)
    if kind == "none":
        return 1.0
    T = check_int("decay_steps", decay_steps, low=1, hint=f"the T of the {kind!r} sign decay")
    t = min(check_int("t", t, low=0), T)
    if kind == "linear":
        return (T - t) / T
    n = DEFAULT_PERIODS[kind] if num_periods is None else check_real("num_periods", num_periods, low=0, low_open=True)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(2.0 * math.pi * n * t / T))
    return 0.5 * (1.0 + math.cos(math.pi * ((n * t) % T) / T))


class ElementwiseOptimizer(Optimizer):
    """An optimiser whose step is ``w <- w - lr * direction(w)`` per parameter with a dense gradient: the loop of
    PowerSign / AddSign here and of :class:`~lit_automl.nas.update_rules.UpdateRuleOptimizer` (Bello et al. 2017)."""

    def direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """The update direction of parameter ``p`` (its optimiser state advanced by this step)."""
        raise NotImplementedError(f"{type(self).__name__} must define direction()")

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """One update ``w <- w - lr * direction(w)`` of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError(f"{type(self).__name__} does not support sparse gradients")
                p.sub_(self.direction(p, group).broadcast_to(p.shape), alpha=group["lr"])
        return loss


class _SignOptimizer(ElementwiseOptimizer):
    """The shared part of PowerSign / AddSign: arguments, the running average ``m`` and the step count."""

    def __init__(self, params: Iterable[Any], lr: float, alpha: float, beta: float, sign_decay: str,
                 decay_steps: Optional[int], num_periods: Optional[float]) -> None:
        check_real("lr", lr, low=0, low_open=True)
        check_real("beta", beta, low=0, high=1, high_open=True)
        check_choice("sign_decay", sign_decay, SIGN_DECAYS, sort=False)
        if sign_decay == "none":
            if decay_steps is not None:
                raise ValueError(f"decay_steps={decay_steps!r} needs a sign_decay other than 'none' "
                                 f"(one of {list(SIGN_DECAYS[1:])})")
        else:
            check_int("decay_steps", decay_steps, low=1, hint=f"the T of the {sign_decay!r} sign decay: total updates")
        if num_periods is not None:
            if sign_decay not in DEFAULT_PERIODS:
                raise ValueError(f"num_periods={num_periods!r} applies to the 'cosine' and 'restart' sign decays, "
                                 f"not {sign_decay!r}")
            check_real("num_periods", num_periods, low=0, low_open=True)
        defaults = dict(lr=float(lr), alpha=float(alpha), beta=float(beta), sign_decay=sign_decay,
                        decay_steps=decay_steps, num_periods=num_periods)
        super().__init__(params, defaults)

    def agreement(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """``f(t) sign(g) sign(m)`` of parameter ``p`` after updating its ``m`` and step count (Sec. 5)."""
        g = p.grad
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m = state["exp_avg"]
        m.mul_(group["beta"]).add_(g, alpha=1.0 - group["beta"])
        f = sign_decay(group["sign_decay"], state["step"], group["decay_steps"], group["num_periods"])
        state["step"] += 1
        return torch.sign(g) * torch.sign(m) * f

    def scale(self, agreement: torch.Tensor, alpha: float) -> torch.Tensor:
        """The factor multiplying the gradient (PowerSign / AddSign)."""
        raise NotImplementedError

    def direction(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """``scale(f(t) sign(g) sign(m)) * g``: the step is ``w <- w - lr * direction``."""
        return self.scale(self.agreement(p, group), group["alpha"]) * p.grad


class PowerSign(_SignOptimizer):
    """PowerSign (Bello et al. 2017, Sec. 5): ``w <- w - lr * alpha^(f(t) sign(g) sign(m)) * g``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (> 0; ``1e-3`` is ours, the paper tunes it per task).
        alpha: the base (> 0, ``e`` in the paper: the update is ``e * g`` where gradient and average agree,
            ``g / e`` where they disagree).
        beta: decay of the running average ``m`` (0.9, the paper's).
        sign_decay: ``"none"``, ``"linear"``, ``"cosine"`` or ``"restart"`` (:func:`sign_decay`).
        decay_steps: ``T`` of the sign decay (total updates; required unless ``sign_decay="none"``).
        num_periods: ``n`` of the cosine / restart decays (0.5 / 1 by default, the authors' code).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, alpha: float = math.e, beta: float = 0.9,
                 sign_decay: str = "none", decay_steps: Optional[int] = None,
                 num_periods: Optional[float] = None) -> None:
        check_real("alpha", alpha, low=0, low_open=True, hint="the base of PowerSign's power")
        super().__init__(params, lr, alpha, beta, sign_decay, decay_steps, num_periods)

    def scale(self, agreement: torch.Tensor, alpha: float) -> torch.Tensor:
        """``alpha^agreement`` (Sec. 5)."""
        return torch.exp(agreement * math.log(alpha))


class AddSign(_SignOptimizer):
    """AddSign (Bello et al. 2017, Sec. 5): ``w <- w - lr * (alpha + f(t) sign(g) sign(m)) * g``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (> 0; ``1e-3`` is ours, the paper tunes it per task).
        alpha: the offset (>= 0, 1 in the paper: the update is ``2 g`` where gradient and average agree, 0 where
            they disagree).
        beta, sign_decay, decay_steps, num_periods: as :class:`PowerSign`.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, alpha: float = 1.0, beta: float = 0.9,
                 sign_decay: str = "none", decay_steps: Optional[int] = None,
                 num_periods: Optional[float] = None) -> None:
        check_real("alpha", alpha, low=0, hint="the offset of AddSign")
        super().__init__(params, lr, alpha, beta, sign_decay, decay_steps, num_periods)

    def scale(self, agreement: torch.Tensor, alpha: float) -> torch.Tensor:
        """``alpha + agreement`` (Sec. 5)."""
        return alpha + agreement

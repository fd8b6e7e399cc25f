"""The one functional inner loop shared by MAML, Reptile and LEAP.

Notation: ``theta`` the meta-parameters (the model's own parameters, never modified here),
``phi^i`` the task parameters after ``i`` inner steps (``phi^0 = theta``), ``f(phi)`` the task
loss on the support data, ``g^i = grad f(phi^i)``. The model is called with
``torch.func.functional_call`` on a parameter dict, so nothing is copied and the same code runs
inside ``torch.func.vmap`` over the tasks of a meta-batch.

* second order (MAML, Finn et al. 2017, eq. 1): ``g^i`` is kept in the autograd graph, so a loss at
  ``phi^k`` differentiates through every inner step back to ``theta``;
* first order (FOMAML, Finn et al. 2017 Sec. 5.2; Reptile; LEAP): ``g^i`` is detached, and
  ``d phi^k / d theta`` is the identity;
* detached gradients (``detach_grads``; learned optimisers, Andrychowicz et al. 2016 Sec. 2.1): ``g^i``
  is an input, not differentiated (no second derivatives), but the path ``phi^{i+1} = update(phi^i, g^i)``
  and the losses ``f(phi^i)`` keep their graph, so a loss differentiates to the update rule's own
  parameters (an LSTM optimiser's weights) and to ``phi^0``.

Only the parameters named in ``adapt`` move in the inner loop; the others (e.g. batch-norm scale and
shift, which MAML's code learns in the outer loop only) stay at ``theta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from lit_automl._checks import check_int, check_real

Params = Dict[str, torch.Tensor]
Batch = Tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "InnerSGD", "InnerAdam", "InnerOptimizer", "InnerLoopResult", "inner_loop", "task_loss", "adaptable_names",
]


def task_loss(model: nn.Module, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
              batch: Batch, loss_fn: LossFn) -> torch.Tensor:
    """``loss_fn(model_{params}(x), y)`` with the model called functionally."""
    x, y = batch
    return loss_fn(functional_call(model, (dict(params), dict(buffers)), (x,)), y)


def adaptable_names(model: nn.Module, adapt_norm: bool = False) -> List[str]:
    """Names of the parameters the inner loop moves, in ``named_parameters`` order.

    Normalisation layers' affine parameters are left out unless ``adapt_norm`` (MAML's code adapts
    only the conv / linear weights and biases in the inner loop; batch-norm offsets are outer-only).
    """
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    skip = set()
    if not adapt_norm:
        for module_name, module in model.named_modules():
            if isinstance(module, norm_types):
                skip.update(f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False))
    names = [n for n, p in model.named_parameters() if p.requires_grad and n not in skip]
    if not names:
        raise ValueError(f"{type(model).__name__} has no parameters the inner loop can adapt")
    return names


class InnerSGD:
    """Plain gradient descent ``phi <- phi - lr * g`` (MAML, LEAP); stateless."""

    def __init__(self, lr: float) -> None:
        self.lr = check_real("inner step size", lr, low=0, low_open=True)

    def init_state(self, params: Mapping[str, torch.Tensor]) -> Params:
        return {}

    def step(self, params: Params, grads: Params, state: Params) -> Tuple[Params, Params]:
        return {n: params[n] - self.lr * grads[n] for n in grads}, state


class InnerAdam:
    """Adam as a pure update on dicts (Kingma & Ba 2015, Alg. 1); Reptile uses beta1 = 0.

    State: ``step`` (a 0-dim tensor), ``exp_avg.<name>`` and ``exp_avg_sq.<name>`` per parameter.
    """

    def __init__(self, lr: float, betas: Tuple[float, float] = (0.0, 0.999), eps: float = 1e-8) -> None:
        self.lr = check_real("inner step size", lr, low=0, low_open=True)
        if len(betas) != 2:
            raise ValueError(f"Adam betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(check_real(f"Adam betas[{i}]", b, low=0, high=1, high_open=True) for i, b in enumerate(betas))
        self.eps = check_real("Adam eps", eps, low=0, low_open=True)

    def init_state(self, params: Mapping[str, torch.Tensor]) -> Params:
        state: Params = {"step": torch.zeros((), dtype=torch.float64)}
        for n, p in params.items():
            state[f"exp_avg.{n}"] = torch.zeros_like(p)
            state[f"exp_avg_sq.{n}"] = torch.zeros_like(p)
        return state

    def step(self, params: Params, grads: Params, state: Params) -> Tuple[Params, Params]:
        b1, b2 = self.betas
        t = state["step"] + 1
        new_state: Params = {"step": t}
        bc1, bc2 = 1 - b1 ** float(t), 1 - b2 ** float(t)
        out: Params = {}
        for n, g in grads.items():
            m = b1 * state[f"exp_avg.{n}"] + (1 - b1) * g
            v = b2 * state[f"exp_avg_sq.{n}"] + (1 - b2) * g * g
            new_state[f"exp_avg.{n}"], new_state[f"exp_avg_sq.{n}"] = m, v
            out[n] = params[n] - self.lr * (m / bc1) / ((v / bc2).sqrt() + self.eps)
        return out, new_state


InnerOptimizer = Union[InnerSGD, InnerAdam]


@dataclass
class InnerLoopResult:
    """What :func:`inner_loop` returns.

    ``params``: every parameter (adapted ones at ``phi^k``, the rest at ``theta``); ``losses``: the
    support loss ``f(phi^i)`` that step ``i`` descended, i = 0..k-1 (detached when first
    order); with ``record``: ``trajectory`` = adapted params ``phi^0..phi^k`` (detached), ``grads``
    = ``g^0..g^{k-1}`` (detached) and ``final_loss`` = ``f(phi^k)`` on the last step's batch.
    """

    params: Params
    losses: List[torch.Tensor]
    state: Params
    trajectory: List[Params] = field(default_factory=list)
    grads: List[Params] = field(default_factory=list)
    final_loss: Optional[torch.Tensor] = None


def inner_loop(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    support: Union[Batch, Sequence[Batch]],
    loss_fn: LossFn,
    steps: int,
    optimizer: InnerOptimizer,
    adapt: Sequence[str],
    first_order: bool,
    state: Optional[Params] = None,
    record: bool = False,
    functional_grads: bool = False,
    detach_grads: bool = False,
) -> InnerLoopResult:
    """Run ``steps`` inner updates from ``params`` on ``support``.

    ``support`` is one ``(x, y)`` batch used at every step (MAML, LEAP) or a list of batches,
    step ``i`` using ``support[i % len]`` (Reptile's minibatches). Gradients come from
    ``torch.autograd.grad``, or with ``functional_grads`` from ``torch.func.grad_and_value``,
    which the loop needs inside ``torch.func.vmap`` (and which costs more per call outside it).

    ``detach_grads`` (with ``first_order=False``): the gradients ``g^i`` enter the optimizer's step as
    constants, while the parameters and the recorded ``losses`` keep their graph (the L2L meta-gradient,
    Andrychowicz et al. 2016 Sec. 2.1: "dropping the second derivatives"); ``first_order=True`` would also
    cut ``d phi^{i+1} / d phi^i`` to the identity and with it the gradient to the optimizer's parameters.
    """
    check_int("inner steps", steps, low=0)
    if first_order and detach_grads:
        raise ValueError("detach_grads=True keeps the update path in the graph and first_order=True cuts it: "
                         "pass one of them (first_order alone already detaches the gradients)")
    batches: List[Batch] = [support] if _is_batch(support) else list(support)  # type: ignore[list-item]
    if not batches:
        raise ValueError("support must be an (inputs, targets) pair or a non-empty list of them")
    fixed = {n: p for n, p in params.items() if n not in set(adapt)}
    current: Params = {n: params[n] for n in adapt}
    state = optimizer.init_state(current) if state is None else state

    def loss_of(adapted: Params, batch: Batch) -> torch.Tensor:
        return task_loss(model, {**fixed, **adapted}, buffers, batch, loss_fn)

    def autograd_grad_and_value(adapted: Params, batch: Batch) -> Tuple[Params, torch.Tensor]:
        with torch.enable_grad():
            if first_order:
                adapted = {n: p.detach().requires_grad_() for n, p in adapted.items()}
            elif detach_grads:  # a constant phi^0 (a truncation's start) becomes a leaf to take g^0 at
                adapted = {n: p if p.requires_grad else p.detach().requires_grad_() for n, p in adapted.items()}
            loss = loss_of(adapted, batch)
            grads = torch.autograd.grad(loss, list(adapted.values()), create_graph=not (first_order or detach_grads),
                                        retain_graph=not first_order)
        return dict(zip(adapted, grads)), loss

    grad_fn = grad_and_value(loss_of) if functional_grads else autograd_grad_and_value
    result = InnerLoopResult(params={}, losses=[], state=state)
    for i in range(steps):
        batch = batches[i % len(batches)]
        grads, loss = grad_fn(current, batch)
        if first_order:
            grads = {n: g.detach() for n, g in grads.items()}
            loss = loss.detach()
        elif detach_grads:
            grads = {n: g.detach() for n, g in grads.items()}
        if record:
            result.trajectory.append({n: p.detach() for n, p in current.items()})
            result.grads.append({n: g.detach() for n, g in grads.items()})
        result.losses.append(loss)
        current, state = optimizer.step(current, grads, state)
        if first_order:
            # d phi / d theta = I: keep theta's graph, drop the inner gradient's.
            current = {n: params[n] + (p - params[n]).detach() for n, p in current.items()}
    if record:
        result.trajectory.append({n: p.detach() for n, p in current.items()})
        with torch.no_grad():
            result.final_loss = loss_of({n: p.detach() for n, p in current.items()}, batches[(steps - 1) % len(batches)] if steps else batches[0])
    result.params = {**fixed, **current}
    result.state = state
    return result


def _is_batch(obj: object) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj)

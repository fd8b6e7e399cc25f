"""The DARTS bilevel hypergradient, written once for every search that uses it (CNN cells, recurrent cells).

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 2.3.

Notation: ``w`` the network weights, ``alpha`` the architecture parameters, ``L_train`` /
``L_val`` the losses on the training and the architecture's (validation) batch, ``xi`` the
virtual-step size, ``d(w)`` the weight optimiser's own update direction.

* first order (``xi = 0``): ``grad_alpha L_val(w, alpha)``;
* second order (``xi > 0``, eq. 7-8): with the virtual step ``w' = w - xi * d(w)``,

      d(w) = T(grad_w L_train(w, alpha)) + wd * w + momentum * buf,

  ``T`` an optional transform of the gradient (identity for the CNN search; the authors' recurrent
  search clips it to the weight clip norm, ``rnn/architect.py`` ``_compute_unrolled_model``),
  ``wd`` / ``momentum`` / ``buf`` the weight optimiser's weight decay, momentum and momentum buffer
  (0 / 0 / none for plain SGD), the gradient is

      grad_alpha L_val(w', alpha)
        - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / (2 eps),
      w+- = w +- eps * v,   v = grad_w' L_val(w', alpha),   eps = eps_0 / ||v||   (eps_0 = 0.01).

Every loss is evaluated functionally at the weights it needs (``loss(params, buffers, batch,
edge_weights)``, usually ``torch.func.functional_call``): the model is never copied, its weights
are never changed, and the buffers handed in are the only ones the virtual passes touch.
Gradients computed here are averaged over DDP ranks (:func:`~lit_automl.distributed.all_reduce_mean`).
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from lit_automl._checks import check_real
from lit_automl.distributed import all_reduce_mean

__all__ = ["BilevelGradient", "LossFn", "architecture_gradient", "clip_total_norm", "sgd_settings"]

LossFn = Callable[[Mapping[str, Tensor], Mapping[str, Tensor], Any, Sequence[Tensor]], Any]
"""``loss(params, buffers, batch, edge_weights)`` -> a scalar tensor, or ``(scalar, aux)`` where ``aux`` is
anything the evaluation also produced (a recurrent model's next hidden state)."""

GradTransform = Callable[[List[Tensor]], List[Tensor]]


class BilevelGradient(NamedTuple):
    """``grads`` one tensor per architecture parameter (rank-averaged); ``val_loss`` the detached
    ``L_val`` at ``w`` (first order) or ``w'`` (second order); ``val_aux`` the ``aux`` that evaluation
    returned (``None`` for a loss returning a plain scalar)."""

    grads: List[Tensor]
    val_loss: Tensor
    val_aux: Any


def _split(out: Any) -> Tuple[Tensor, Any]:
    """``(scalar, aux)`` from a loss result (a scalar tensor or a pair)."""
    if isinstance(out, Tensor):
        return out, None
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Tensor):
        return out[0], out[1]
    raise TypeError(f"the loss must return a scalar tensor or a (scalar tensor, aux) pair, got {type(out).__name__}")


def sgd_settings(optimizer: Optional[torch.optim.Optimizer]) -> Tuple[float, float]:
    """``(momentum, weight_decay)`` of the optimiser's first group; ``(0, 0)`` without one."""
    if optimizer is None:
        return 0.0, 0.0
    group = optimizer.param_groups[0]
    return float(group.get("momentum", 0.0)), float(group.get("weight_decay", 0.0))


def clip_total_norm(max_norm: float) -> GradTransform:
    """A gradient transform scaling the gradients by ``max_norm / (||g|| + 1e-6)`` when that is below 1
    (the total 2-norm over all tensors; ``torch.nn.utils.clip_grad_norm_``'s rule, without touching ``.grad``)."""
    max_norm = check_real("max_norm", max_norm, low=0, low_open=True)

    def clip(grads: List[Tensor]) -> List[Tensor]:
        total = torch.cat([g.reshape(-1) for g in grads]).norm()  # scalar
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        return [g * coef for g in grads]

    return clip


def architecture_gradient(
    loss: LossFn,
    names: Sequence[str],
    weights: Sequence[Tensor],
    buffers: Mapping[str, Tensor],
    alphas: Sequence[Tensor],
    edge_weights: Callable[[Sequence[Tensor]], Sequence[Tensor]],
    train: Any,
    val: Any,
    xi: float,
    weight_optimizer: Optional[torch.optim.Optimizer] = None,
    eps: float = 0.01,
    grad_transform: Optional[GradTransform] = None,
) -> BilevelGradient:
    """The DARTS architecture gradient (module docstring), averaged over ranks.

    Args:
        loss: ``loss(params, buffers, batch, edge_weights)`` (:data:`LossFn`).
        names, weights: the weight parameters' names (as ``params`` keys) and the live parameters, in one
            order; they are read (detached), never changed; the optimiser's momentum buffers are looked up by them.
        buffers: the buffers every evaluation uses (hand in a copy: batch-norm passes update them).
        alphas: the architecture parameters (leaf tensors that require grad).
        edge_weights: ``alphas -> the edge weights the loss takes`` (softmax for DARTS).
        train, val: the training and the architecture's batch, passed to ``loss`` as they are.
        xi: the virtual-step size; 0 gives the first-order gradient.
        weight_optimizer: the weight optimiser whose direction the virtual step follows (its weight
            decay, momentum and momentum buffers); ``None``: a plain gradient step.
        eps: ``eps_0`` of the finite-difference step ``eps = eps_0 / ||v||``.
        grad_transform: applied to ``grad_w L_train(w)`` (rank-averaged) before the virtual step, e.g.
            :func:`clip_total_norm`.
    """
    xi = check_real("xi", xi, low=0, allowed="a virtual-step size >= 0 (0: first order)")
    eps = check_real("eps", eps, low=0, low_open=True)
    alphas = list(alphas)
    w = [p.detach() for p in weights]  # autograd keeps only what the architecture gradient needs

    if xi == 0:
        loss_val, aux = _split(loss(dict(zip(names, w)), buffers, val, edge_weights(alphas)))
        grads = torch.autograd.grad(loss_val, alphas)
        return BilevelGradient(all_reduce_mean(grads), loss_val.detach(), aux)

    # Virtual step: w' = w - xi * (T(grad_w L_train(w)) + wd * w + momentum * buf).
    w_req = [t.requires_grad_() for t in (p.clone() for p in w)]
    fixed = [a.detach() for a in edge_weights(alphas)]
    loss_train, _ = _split(loss(dict(zip(names, w_req)), buffers, train, fixed))
    g_train = all_reduce_mean(torch.autograd.grad(loss_train, w_req))
    if grad_transform is not None:
        g_train = list(grad_transform(list(g_train)))
    momentum, wd = sgd_settings(weight_optimizer)
    with torch.no_grad():
        w_unrolled = []
        for p, w_i, g in zip(weights, w, g_train):
            step = g + wd * w_i
            buf = weight_optimizer.state.get(p, {}).get("momentum_buffer") if weight_optimizer else None
            if buf is not None and momentum:
                step = step + momentum * buf
            w_unrolled.append((w_i - xi * step).requires_grad_())

    # grad_alpha L_val(w') and v = grad_w' L_val(w').
    loss_val, aux = _split(loss(dict(zip(names, w_unrolled)), buffers, val, edge_weights(alphas)))
    grads = all_reduce_mean(torch.autograd.grad(loss_val, alphas + w_unrolled))
    d_alpha, v = grads[: len(alphas)], grads[len(alphas):]

    # Finite-difference Hessian-vector product (eq. 8): [grad_alpha L_train(w+) - grad_alpha L_train(w-)] / (2 eps).
    step_size = eps / torch.cat([t.reshape(-1) for t in v]).norm().clamp_min(1e-12)
    with torch.no_grad():
        w_plus = [w_i + step_size * v_i for w_i, v_i in zip(w, v)]
        w_minus = [w_i - step_size * v_i for w_i, v_i in zip(w, v)]
    g_plus = torch.autograd.grad(_split(loss(dict(zip(names, w_plus)), buffers, train, edge_weights(alphas)))[0],
                                 alphas)
    g_minus = torch.autograd.grad(_split(loss(dict(zip(names, w_minus)), buffers, train, edge_weights(alphas)))[0],
                                  alphas)
    hvp = all_reduce_mean([(gp - gm) / (2 * step_size) for gp, gm in zip(g_plus, g_minus)])
    return BilevelGradient([da - xi * h for da, h in zip(d_alpha, hvp)], loss_val.detach(), aux)

"""The one bilevel hypergradient (lit_automl.nas.bilevel) against autograd on a tiny smooth model, float64."""

from __future__ import annotations

import pytest
import torch

from lit_automl.nas.bilevel import architecture_gradient, clip_total_norm

pytestmark = pytest.mark.usefixtures("single_thread")

NAMES = ["W", "b"]


def loss(params, buffers, batch, edge_weights):
    """A smooth two-op 'mixed edge': sum_k w_k * f_k(x W + b), f = (tanh, sigmoid); squared error; aux = the mean output."""
    x, y = batch
    (w,) = edge_weights
    h = x @ params["W"] + params["b"]  # (N, 3)
    out = w[0] * torch.tanh(h) + w[1] * torch.sigmoid(h)  # (N, 3)
    buffers["calls"] += 1  # the buffers handed in are the ones the passes touch
    return ((out - y) ** 2).mean(), out.mean().detach()


def setup(seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.nn.Parameter(scale * torch.randn(4, 3, generator=g, dtype=torch.float64)),
               torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))]
    alpha = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_()

    def batch():
        return torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)

    return weights, alpha, batch(), batch()


def softmax(alphas):
    return [alphas[0].softmax(-1)]


def run(weights, alpha, train, val, xi, opt=None, eps=0.01, transform=None):
    buffers = {"calls": torch.zeros(())}
    return architecture_gradient(loss, NAMES, weights, buffers, [alpha], softmax, train, val, xi, opt, eps=eps,
                                 grad_transform=transform), buffers


def exact_unrolled(weights, alpha, train, val, xi, wd=0.0, momentum_buf=None, momentum=0.0):
    """grad_alpha L_val(w - xi (grad_w L_train(w, alpha) + wd w + mu buf), alpha), differentiated through the step."""
    w = [p.detach().requires_grad_() for p in weights]
    params = dict(zip(NAMES, w))
    buffers = {"calls": torch.zeros(())}
    g = torch.autograd.grad(loss(params, buffers, train, softmax([alpha]))[0], w, create_graph=True)
    bufs = momentum_buf or [torch.zeros_like(p) for p in w]
    w1 = [wi - xi * (gi + wd * wi + momentum * b) for wi, gi, b in zip(w, g, bufs)]
    return torch.autograd.grad(loss(dict(zip(NAMES, w1)), buffers, val, softmax([alpha]))[0], [alpha])[0]


def test_first_order_is_autograds_gradient_of_the_validation_loss_and_returns_its_aux():
    weights, alpha, train, val = setup()
    result, buffers = run(weights, alpha, train, val, xi=0.0)
    direct_loss, direct_aux = loss(dict(zip(NAMES, weights)), {"calls": torch.zeros(())}, val, softmax([alpha]))
    direct = torch.autograd.grad(direct_loss, [alpha])[0]
    torch.testing.assert_close(result.grads[0], direct, rtol=1e-12, atol=0)
    assert result.val_loss.item() == pytest.approx(direct_loss.item()) and not result.val_loss.requires_grad
    assert result.val_aux == pytest.approx(direct_aux.item())
    assert buffers["calls"].item() == 1 and result.grads[0].abs().sum() > 0


def test_second_order_matches_the_exact_unrolled_gradient_with_the_optimisers_momentum_and_decay():
    weights, alpha, train, val = setup()
    opt = torch.optim.SGD(weights, lr=0.5, momentum=0.9, weight_decay=0.01)
    buffers = {"calls": torch.zeros(())}
    loss(dict(zip(NAMES, weights)), buffers, train, softmax([alpha]))[0].backward()  # a real step fills momentum
    opt.step()
    before = [p.detach().clone() for p in weights]
    xi = 0.5
    result, buffers = run(weights, alpha, train, val, xi, opt, eps=1e-6)
    exact = exact_unrolled(weights, alpha, train, val, xi, wd=0.01, momentum=0.9,
                           momentum_buf=[opt.state[p]["momentum_buffer"] for p in weights])
    first = run(weights, alpha, train, val, 0.0)[0].grads[0]
    torch.testing.assert_close(result.grads[0], exact, rtol=1e-6, atol=1e-10)
    assert (first - exact).norm() > 1e-3 * exact.norm()  # the second-order term is not negligible here
    assert buffers["calls"].item() == 4  # train at w, val at w', train at w+ and w-
    assert all(torch.equal(p, b) for p, b in zip(weights, before))  # the weights are never changed


def test_the_transform_applies_to_the_virtual_steps_gradient_only():
    """With a clip that binds, the result is grad_alpha L_val(w') - xi * H v, w' stepped along the CLIPPED
    gradient and the Hessian-vector product taken at w with v = grad_w' L_val(w') (exact by double backward)."""
    weights, alpha, train, val = setup()
    xi, max_norm = 2.0, 0.05
    opt = torch.optim.SGD(weights, lr=xi, weight_decay=1e-3)  # plain SGD with weight decay: the RNN search's
    result, _ = run(weights, alpha, train, val, xi, opt, eps=1e-6, transform=clip_total_norm(max_norm))

    w = [p.detach().requires_grad_() for p in weights]
    fresh = {"calls": torch.zeros(())}
    g = torch.autograd.grad(loss(dict(zip(NAMES, w)), fresh, train, [softmax([alpha])[0].detach()])[0], w)
    norm = torch.cat([t.reshape(-1) for t in g]).norm()
    assert norm > max_norm  # the clip binds
    w1 = [(wi - xi * (gi * max_norm / (norm + 1e-6) + 1e-3 * wi)).detach().requires_grad_() for wi, gi in zip(w, g)]
    lv = loss(dict(zip(NAMES, w1)), fresh, val, softmax([alpha]))[0]
    d_alpha, *v = torch.autograd.grad(lv, [alpha, *w1])
    g_train = torch.autograd.grad(loss(dict(zip(NAMES, w)), fresh, train, softmax([alpha]))[0], w, create_graph=True)
    hvp = torch.autograd.grad(sum((gt * vi).sum() for gt, vi in zip(g_train, v)), [alpha])[0]
    torch.testing.assert_close(result.grads[0], d_alpha - xi * hvp, rtol=1e-6, atol=1e-10)
    unclipped, _ = run(weights, alpha, train, val, xi, opt, eps=1e-6)
    assert (unclipped.grads[0] - result.grads[0]).norm() > 1e-2 * result.grads[0].norm()  # and it matters


def test_clip_total_norm_scales_only_above_the_limit():
    g = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]  # total norm 5
    clipped = clip_total_norm(1.0)(g)
    assert torch.cat(clipped).norm().item() == pytest.approx(1.0, rel=1e-6)
    assert [t.tolist() for t in clip_total_norm(10.0)(g)] == [[3.0, 0.0], [4.0]]


@pytest.mark.parametrize("kwargs, match", [
    ({"xi": -0.1}, r"xi must be a virtual-step size >= 0 \(0: first order\), got -0.1"),
    ({"xi": 0.1, "eps": 0.0}, r"eps must be a number > 0, got 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    weights, alpha, train, val = setup()
    with pytest.raises(ValueError, match=match):
        run(weights, alpha, train, val, **kwargs)


def test_bad_loss_result_and_clip_norm_are_refused():
    weights, alpha, train, val = setup()
    with pytest.raises(TypeError, match=r"the loss must return a scalar tensor or a \(scalar tensor, aux\) pair, got list"):
        architecture_gradient(lambda *a: [1.0], NAMES, weights, {}, [alpha], softmax, train, val, 0.0)
    with pytest.raises(ValueError, match=r"max_norm must be a number > 0, got -1"):
        clip_total_norm(-1)

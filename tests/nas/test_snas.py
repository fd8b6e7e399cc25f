"""SNAS: concrete samples, resource cost, single-level fit, genotype, resume, DDP, bad input."""

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_automl.callbacks import TemperatureAnnealing
from lit_automl.nas.snas import SNAS, expected_resource_cost, gumbel_softmax_sample, score_function_resource_grad
from lit_automl.spaces import Genotype
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed
from tests.trainers import SyntheticImages

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, alpha_lr=0.05)


pytestmark = pytest.mark.usefixtures("single_thread")


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 2, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                      limit_val_batches=0, **kw)


def gumbel(shape, seed):
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return -torch.log(-torch.log(u))


def test_relaxed_sample_is_differentiable_in_alpha():
    alpha = torch.tensor([[0.3, -0.2, 1.0, 0.1], [0.0, 0.5, -0.5, 0.2]], dtype=torch.float64, requires_grad=True)
    noise, v = gumbel(alpha.shape, 1), torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    f = lambda a: (gumbel_softmax_sample(a, 0.7, noise=noise) * v).sum()
    (grad,) = torch.autograd.grad(f(alpha), alpha)
    assert grad.abs().sum() > 0
    eps = 1e-6
    fd = torch.zeros_like(alpha)
    with torch.no_grad():
        for idx in [(i, j) for i in range(2) for j in range(4)]:
            e = torch.zeros_like(alpha)
            e[idx] = eps
            fd[idx] = (f(alpha + e) - f(alpha - e)) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)
    # Straight-through: one-hot forward, relaxed gradient.
    hard = gumbel_softmax_sample(alpha, 0.7, noise=noise, hard=True)
    assert set(hard.detach().flatten().tolist()) <= {0.0, 1.0} and torch.all(hard.detach().sum(-1) == 1)
    (g_hard,) = torch.autograd.grad((hard * v).sum(), alpha)
    torch.testing.assert_close(g_hard, grad)


def test_hard_frequencies_match_softmax_and_relaxed_mean_approaches_them():
    alpha = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    n = 4000
    a = alpha.expand(n, 4)
    noise = gumbel((n, 4), 7)
    hard = gumbel_softmax_sample(a, 1.0, noise=noise, hard=True)
    freq = hard.mean(0)
    p = torch.softmax(alpha, -1)
    sd = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() < 4 * sd), (freq, p)
    gaps = [(gumbel_softmax_sample(a, tau, noise=noise).mean(0) - freq).abs().max().item() for tau in (1.0, 0.3, 0.03)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01, gaps


def test_defaults_are_the_cifar10_search_settings():
    """Pins the documented defaults (sources in the SNAS docstring)."""
    defaults = dict(SNAS().hparams)
    assert {k: defaults[k] for k in ("C", "layers", "steps", "multiplier", "stem_multiplier", "num_classes",
                                     "in_channels", "primitives", "input_size")} == dict(
        C=16, layers=8, steps=4, multiplier=4, stem_multiplier=3, num_classes=10, in_channels=3, primitives="darts",
        input_size=32)
    assert (defaults["tau"], defaults["hard"], defaults["resource"], defaults["resource_weight"]) == (1.0, False, None, 0.0)
    assert (defaults["w_lr"], defaults["w_lr_min"], defaults["w_momentum"], defaults["w_weight_decay"],
            defaults["grad_clip"]) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (defaults["alpha_lr"], tuple(defaults["alpha_betas"]), defaults["alpha_weight_decay"],
            defaults["alpha_grad_clip"], defaults["alpha_init_std"]) == (3e-4, (0.5, 0.999), 1e-3, 10.0, 0.01)


def test_expected_resource_cost_matches_monte_carlo_and_score_function():
    g = torch.Generator().manual_seed(0)
    alphas = [torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    costs = [torch.rand(5, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    exact = expected_resource_cost(alphas, costs)
    n = 20000
    samples, total = [], torch.zeros(n, dtype=torch.float64)
    for i, (a, c) in enumerate(zip(alphas, costs)):
        z = gumbel_softmax_sample(a.expand(n, 5, 8), 1.0, noise=gumbel((n, 5, 8), 10 + i), hard=True)
        samples.append(z)
        total += (z * c).sum((-1, -2))
    assert abs(total.mean() - exact) < 4 * total.std() / math.sqrt(n)
    # The score-function term is an unbiased estimate of d E[C] / d alpha.
    a_req = [a.clone().requires_grad_() for a in alphas]
    exact_grad = torch.autograd.grad(expected_resource_cost(a_req, costs), a_req)
    sf = score_function_resource_grad([a.expand(n, 5, 8) for a in alphas], samples, costs)
    for est, ex in zip(sf, exact_grad):
        se = est.std(0) / math.sqrt(n)
        assert torch.all((est.mean(0) - ex).abs() < 5 * se + 1e-6)


def test_op_costs_params_and_flops():
    m = SNAS(**TINY, resource="params")
    normal, reduce = m.resource_costs
    prims = list(m.primitives)
    assert normal.shape == m.model.alpha_shape
    assert torch.all(normal[:, prims.index("none")] == 0) and torch.all(normal[:, prims.index("skip_connect")] == 0)
    assert torch.all(normal[:, prims.index("sep_conv_5x5")] > normal[:, prims.index("sep_conv_3x3")])
    flops = SNAS(**TINY, resource="flops", input_size=8).resource_costs
    assert torch.all(flops[0][:, prims.index("sep_conv_3x3")] > 0) and torch.all(flops[0][:, prims.index("none")] == 0)
    assert torch.all(flops[0][:, prims.index("max_pool_3x3")] > 0)


def test_tiny_fit_moves_alphas_and_genotype_keeps_every_non_none_edge(tmp_path):
    pl.seed_everything(0)
    m = SNAS(**TINY, resource="params", resource_weight=1.0)
    before = [a.detach().clone() for a in m.arch_parameters()]
    trainer(tmp_path).fit(m, SyntheticImages())
    assert all(not torch.allclose(a, b) for a, b in zip(m.arch_parameters(), before))
    prims = list(m.primitives)
    with torch.no_grad():
        m.alpha_normal.zero_()
        m.alpha_normal[:, prims.index("sep_conv_3x3")] = 1.0
        m.alpha_normal[1, prims.index("none")] = 5.0       # node 0 keeps only input 0
        m.alpha_normal[4, prims.index("skip_connect")] = 5.0
        m.alpha_reduce.zero_()
        m.alpha_reduce[:, prims.index("none")] = 5.0         # all none: strongest non-none edge kept
        m.alpha_reduce[3, prims.index("max_pool_3x3")] = 2.0
    g = m.genotype()
    assert isinstance(g, Genotype)
    assert [list(n) for n in g.normal] == [[("sep_conv_3x3", 0)],
                                           [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 2)]]
    assert list(g.reduce[1]) == [("max_pool_3x3", 1)]


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    a, b = SNAS(**TINY, memory_format="contiguous_format"), SNAS(**TINY, memory_format="channels_last")
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-4, atol=1e-5)
        wa = a.sample_edge_weights(a.noise_generator(2))
        torch.testing.assert_close(b.model(x.contiguous(memory_format=torch.channels_last), *wa), a.model(x, *wa),
                                   rtol=1e-4, atol=1e-5)


def test_noise_depends_only_on_seed_and_step():
    m = SNAS(**TINY)
    a = m.sample_edge_weights(m.noise_generator(5))
    b = m.sample_edge_weights(m.noise_generator(5))
    c = m.sample_edge_weights(m.noise_generator(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], c[0])


def test_resume_continues_with_the_same_alphas(tmp_path):
    runs = run_resumed(lambda: SNAS(**TINY, epochs=3), lambda: SyntheticImages(seed=5), tmp_path, {"max_epochs": 1},
                       seed=3, callbacks=lambda: [TemperatureAnnealing(schedule="exponential", decay=0.5)],
                       max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    full, resumed = runs.full, runs.resumed
    for a, b in zip(resumed.arch_parameters(), full.arch_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ck = torch.load(runs.checkpoint, weights_only=False)
    assert not torch.allclose(ck["state_dict"]["alpha_normal"], full.alpha_normal)
    assert resumed.temperature == full.temperature == 0.5
    assert "alpha_normal" in ck["state_dict"] and ck["snas_temperature"] == 1.0


def test_test_step_scores_the_mean_architecture(tmp_path):
    pl.seed_everything(0)
    m = SNAS(**TINY)
    loader = SyntheticImages().train_dataloader()
    (result,) = trainer(tmp_path, limit_test_batches=1).test(m, dataloaders=loader, verbose=False)
    x, y = next(iter(loader))
    m.eval()
    with torch.no_grad():
        acc = float((m(x).argmax(-1) == y).float().mean())
    assert result["test/acc"] == pytest.approx(acc)


@pytest.mark.parametrize("kwargs, match", [
    ({"tau": 0.0}, "tau must be a number > 0, got 0.0"),
    ({"tau": -1}, "got -1"),
    ({"resource": "memory"}, "resource must be one of.*'memory'"),
    ({"resource_weight": 1.0}, "resource_weight=1.0 needs resource"),
    ({"w_lr": 0.0}, "w_lr must be > 0"),
    ({"alpha_grad_clip": -1.0}, "alpha_grad_clip must be a number >= 0"),
    ({"memory_format": "nhwc"}, "memory_format must be one of.*'nhwc'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SNAS(**{**TINY, **kwargs})


def test_bad_temperature_at_runtime():
    m = SNAS(**TINY)
    with pytest.raises(ValueError, match="got 0"):
        m.temperature = 0
    with pytest.raises(ValueError, match=r"got -0.5"):
        gumbel_softmax_sample(torch.zeros(3), -0.5)
    with pytest.raises(ValueError, match="'flop'"):
        m.op_costs("flop")


class _AlphaGradNorms(pl.Callback):
    """Norm of the alphas' gradient when the architecture optimiser steps (after any clipping)."""

    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if any(p is pl_module.alpha_normal for p in params):
            self.norms.append(float(torch.cat([a.grad.flatten() for a in pl_module.arch_parameters()]).norm()))


def test_alpha_gradient_norm_is_clipped(tmp_path):
    norms = {}
    for clip in (0.0, 1e-3):
        pl.seed_everything(0)
        rec = _AlphaGradNorms()
        trainer(tmp_path, limit_train_batches=1, callbacks=[rec]).fit(SNAS(**TINY, alpha_grad_clip=clip), SyntheticImages())
        norms[clip] = rec.norms
    assert len(norms[0.0]) == len(norms[1e-3]) == 1
    assert norms[0.0][0] > 1e-2, "unclipped alpha gradient is too small for this check"
    assert norms[1e-3][0] == pytest.approx(1e-3, rel=1e-3)


def _gumbel_like_module(alphas, generator):
    """The noise ``sample_edge_weights`` draws from ``generator`` (same recipe, same order)."""
    out = []
    for a in alphas:
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64).clamp(1e-20, 1.0 - 1e-12)
        out.append((-torch.log(-torch.log(u))).to(a.dtype))
    return out


def _hook_ops(model, ran):
    """Forward hooks recording ``(cell, edge, op)`` for every candidate op that runs."""
    handles = []
    for c, cell in enumerate(model.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                handles.append(op.register_forward_hook(lambda mod, inp, out, key=(c, e, k): ran.add(key)))
    return handles


def test_hard_runs_only_the_sampled_op_and_alpha_gradient_is_relaxed():
    torch.manual_seed(0)
    tau = 0.7
    m = SNAS(**TINY, hard=True, tau=tau)
    with torch.no_grad():  # distinct, non-trivial probabilities
        for a in m.arch_parameters():
            a.copy_(torch.randn(a.shape))
    prims = list(m.primitives)
    ran = set()
    handles = _hook_ops(m.model, ran)
    weights = m.sample_edge_weights(m.noise_generator(7))
    for w in weights:
        w.retain_grad()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    F.cross_entropy(m.model(x, *weights), y).backward()
    for h in handles:
        h.remove()

    noise = _gumbel_like_module(m.arch_parameters(), m.noise_generator(7))
    for t, (a, w, g) in enumerate(zip(m.arch_parameters(), weights, noise)):
        sel = (a.detach() + g).argmax(-1)                                    # Gumbel-max sample
        torch.testing.assert_close(w.detach(), F.one_hot(sel, a.shape[-1]).to(w), rtol=0, atol=1e-6)
        # Every cell of this type ran exactly the sampled op on each edge (nothing for `none`).
        cells = [c for c, cell in enumerate(m.model.cells) if cell.reduction == bool(t)]
        expected = {(c, e, int(k)) for c in cells for e, k in enumerate(sel) if prims[int(k)] != "none"}
        assert {key for key in ran if key[0] in cells} == expected
        # The loss sees only the sampled weights ...
        dw = w.grad
        off = torch.ones_like(dw, dtype=torch.bool).scatter_(-1, sel[:, None], False)
        assert torch.all(dw[off] == 0)
        # ... and the alpha gradient is the relaxed sample's Jacobian applied to it:
        # d/d alpha_j of softmax((alpha + g) / tau)_k = soft_k (delta_jk - soft_j) / tau.
        soft = torch.softmax((a.detach() + g) / tau, -1)
        g_sel = dw.gather(-1, sel[:, None])
        s_sel = soft.gather(-1, sel[:, None])
        relaxed = g_sel * s_sel * (F.one_hot(sel, a.shape[-1]).to(soft) - soft) / tau
        torch.testing.assert_close(a.grad, relaxed, rtol=1e-5, atol=1e-8)
    assert any(a.grad.abs().sum() > 0 for a in m.arch_parameters())


class RecordOpsRun(pl.Callback):
    """Per rank: the set of ``(cell, edge, op)`` that ran in each training step (forward hooks)."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def on_train_start(self, trainer, pl_module):
        self.steps, self.current = [], set()
        self.handles = _hook_ops(pl_module.model, self.current)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(sorted(self.current))
        self.current.clear()

    def on_train_end(self, trainer, pl_module):
        for h in self.handles:
            h.remove()
        torch.save(self.steps, Path(self.dirpath) / f"ops{trainer.global_rank}.pt")


class HardFromEpoch1(pl.Callback):
    """Relaxed samples in epoch 0, hard (straight-through) ones from epoch 1: both in one DDP spawn."""

    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.hparams.hard = trainer.current_epoch >= 1


@pytest.mark.ddp
def test_ddp_relaxed_then_hard_samples_the_same_architecture_on_both_ranks(tmp_path):
    pl.seed_everything(0)
    m = SNAS(**TINY)
    before = [a.detach().clone() for a in m.arch_parameters()]
    ranks = fit_ddp(m, SyntheticImages(batch_size=4), tmp_path, find_unused_parameters=True,
                    callbacks=[HardFromEpoch1(), RecordOpsRun(str(tmp_path))], max_epochs=2, limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    ops = [torch.load(tmp_path / f"ops{r}.pt") for r in range(2)]
    assert len(ops[0]) == 4 and ops[0] == ops[1], "both ranks must run the same sampled ops every step"
    hard = ops[0][2:]  # the steps of epoch 1
    assert hard[0] != hard[1], "a new architecture is sampled every step"
    for step in hard:
        per_edge = {}
        for c, e, k in step:
            per_edge.setdefault((c, e), []).append(k)
        assert all(len(k) == 1 for k in per_edge.values()), "hard samples run at most one op per edge"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    for key, b in zip(("alpha_normal", "alpha_reduce"), before):
        assert not torch.allclose(s0[key], b)
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=1e-7)

"""BayesNAS: ARD closed forms, Gauss-Newton curvature, the module's update and pruning, resume, DDP, bad input."""

import math

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.nas.ard import (
    ard_gamma,
    ard_omega,
    combine_with_parent,
    ggn_diagonal,
    laplace_covariance,
    mc_ggn_diagonal,
)
from lit_automl.nas.bayesnas import BayesNAS, idle_parameters, prune_masks
from lit_automl.spaces import Genotype, NetworkCIFAR
from lit_automl.spaces.geometry import edge_endpoints as cell_edges
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed
from tests.trainers import SyntheticImages

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1)
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


class PruneQuantile(pl.Callback):
    """Before each ARD update, set the threshold to a quantile of the previous update's alive gammas
    (0 at the first update, when every gamma still has its initial value). Stateless, so resumable."""

    def __init__(self, q: float = 0.4):
        self.q = q

    def on_train_epoch_end(self, trainer, module):  # runs before the module's own hook
        alive = torch.cat([module.op_gamma[c][module.alive(c)] for c in range(2)])
        module.prune_threshold = 0.0 if trainer.current_epoch == 0 else float(alive.quantile(self.q))


class RecordMasks(pl.Callback):
    def __init__(self):
        self.masks = []

    def on_train_epoch_start(self, trainer, module):
        self.masks.append(torch.stack([module.alive(0), module.alive(1)]).clone())

    def on_train_end(self, trainer, module):
        self.masks.append(torch.stack([module.alive(0), module.alive(1)]).clone())


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 2, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                      limit_val_batches=0, **kw)


# --------------------------------------------------------------------------- closed forms (ard.py)

def linear_gaussian(seed=0, n=12, p=5):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, p, generator=g, dtype=F64)
    gamma = torch.rand(p, generator=g, dtype=F64) + 0.2
    return phi, gamma


def test_omega_is_the_sparse_bayesian_weight_of_a_linear_gaussian_model():
    # E(s) = 0.5 ||y - Phi s||^2 has Hessian Phi^T Phi and the Laplace posterior is exact; the ARD
    # weight is omega_i^2 = Phi_i^T (lam I + Phi Gamma Phi^T)^{-1} Phi_i = d/d gamma_i log|lam I + Phi Gamma Phi^T|.
    phi, gamma = linear_gaussian()
    lam = 0.3
    omega = ard_omega(gamma, phi.T @ phi, lam)
    sigma_y = lam * torch.eye(phi.shape[0], dtype=F64) + phi @ torch.diag(gamma) @ phi.T
    wipf = torch.einsum("ni,nm,mi->i", phi, torch.linalg.inv(sigma_y), phi)
    torch.testing.assert_close(omega**2, wipf, rtol=1e-10, atol=1e-12)
    g = gamma.clone().requires_grad_()
    (grad,) = torch.autograd.grad(torch.logdet(lam * torch.eye(phi.shape[0], dtype=F64) + phi @ torch.diag(g) @ phi.T), g)
    torch.testing.assert_close(omega**2, grad, rtol=1e-10, atol=1e-12)


def test_laplace_covariance_is_the_inverse_hessian_of_the_negative_log_posterior():
    phi, gamma = linear_gaussian(1)
    y = torch.randn(phi.shape[0], dtype=F64, generator=torch.Generator().manual_seed(3))
    lam = 0.5

    def neg_log_posterior(s):
        return 0.5 * ((y - phi @ s) ** 2).sum() / lam + 0.5 * (s**2 / gamma).sum()

    hess = torch.autograd.functional.hessian(neg_log_posterior, torch.zeros(phi.shape[1], dtype=F64))
    torch.testing.assert_close(laplace_covariance(gamma, phi.T @ phi, lam), torch.linalg.inv(hess), rtol=1e-10, atol=1e-12)
    # With a diagonal Hessian the elementwise form agrees with the matrix form.
    h = torch.rand(5, dtype=F64) * 3
    torch.testing.assert_close(laplace_covariance(gamma, h, lam), torch.diagonal(laplace_covariance(gamma, torch.diag(h), lam)))
    torch.testing.assert_close(ard_omega(gamma, h, lam), ard_omega(gamma, torch.diag(h), lam))


def test_gamma_update_minimises_the_variational_bound_and_parents_dominate():
    s = torch.tensor([0.7, -0.02, 1.5], dtype=F64)
    omega = torch.tensor([0.9, 2.0, 0.1], dtype=F64)
    gamma = ard_gamma(s, omega)
    grid = torch.logspace(-5, 3, 20001, dtype=F64)
    for i in range(3):
        bound = s[i] ** 2 / grid + omega[i] ** 2 * grid
        assert abs(math.log(grid[bound.argmin()] / gamma[i])) < 2e-3
    assert float(ard_gamma(torch.tensor(0.3), torch.tensor(0.0))) > 1e300  # no curvature: no evidence to prune
    child = torch.tensor([2.0, 0.5, 3.0], dtype=F64)
    parent = torch.tensor([2.0, 0.0, math.inf], dtype=F64)
    torch.testing.assert_close(combine_with_parent(child, parent), torch.tensor([1.0, 0.0, 3.0], dtype=F64))


class GatedModel:
    """Logits = sum_p s_p A_p x (linear in the switches) or with a tanh hidden layer (nonlinear)."""

    def __init__(self, nonlinear: bool, seed: int = 0, n: int = 6, d: int = 4, k: int = 3, p: int = 5):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=g, dtype=F64)
        self.a = torch.randn(p, k, d, generator=g, dtype=F64)
        self.y = torch.randint(0, k, (n,), generator=g)
        self.nonlinear = nonlinear

    def logits(self, s):
        z = torch.einsum("p,pkd,nd->nk", s, self.a, self.x)
        return torch.tanh(z) * 2 if self.nonlinear else z


def test_gauss_newton_diagonal_equals_the_hessian_when_logits_are_linear_in_the_switches():
    model = GatedModel(nonlinear=False)
    s = torch.tensor([0.5, -1.0, 0.3, 0.8, 0.1], dtype=F64)
    hess = torch.autograd.functional.hessian(
        lambda v: torch.nn.functional.cross_entropy(model.logits(v), model.y), s)
    torch.testing.assert_close(ggn_diagonal(model.logits, s), torch.diagonal(hess), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonlinear", [False, True])
def test_sampled_label_estimate_is_unbiased_for_the_gauss_newton_diagonal(nonlinear):
    model = GatedModel(nonlinear=nonlinear, seed=1)
    s = torch.tensor([0.5, -1.0, 0.3, 0.8, 0.1], dtype=F64, requires_grad=True)
    exact = ggn_diagonal(model.logits, s.detach())
    logits = model.logits(s)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([mc_ggn_diagonal(logits, [s], gen)[0] for _ in range(3000)])
    se = draws.std(0) / math.sqrt(len(draws))
    assert torch.all((draws.mean(0) - exact).abs() < 5 * se + 1e-12), (draws.mean(0), exact)


# --------------------------------------------------------------------------- the module's update

def closed_form_update(m, curvature, threshold):
    """Independent float64 re-computation of one BayesNAS update (plain loops over edges and ops)."""
    hp, edges = m.hparams, cell_edges(m.model.steps)
    out = []
    for c in range(2):
        s_e, s_k = [t.detach().to(F64) for t in m.switches(c)]
        g_e_old, g_k_old = m.edge_gamma[c].clone(), m.op_gamma[c].clone()
        h_e, h_k = curvature[2 + c], curvature[c]

        def omega(g, h, lam):
            cov = 1.0 / (1.0 / g + h / lam)  # C = (Gamma^{-1} + H / lambda)^{-1}
            return math.sqrt(1.0 / g - cov / g**2)

        g_e = [abs(float(s_e[e])) / omega(float(g_e_old[e]), float(h_e[e]), hp.lambda_origin) for e in range(len(edges))]
        relevance = {}
        for e, (src, node) in enumerate(edges):
            if src >= 2:
                g_e[e] = 1.0 / (1.0 / g_e[e] + 1.0 / relevance[src])
            relevance[node] = relevance.get(node, 0.0) + g_e[e]
        g_k = torch.zeros_like(g_k_old)
        for e in range(len(edges)):
            for k, name in enumerate(m.primitives):
                if name != "none":
                    raw = abs(float(s_k[e, k])) / omega(float(g_k_old[e, k]), float(h_k[e, k]), hp.lambda_child)
                    g_k[e, k] = 1.0 / (1.0 / raw + 1.0 / g_e[e])
        keep = g_k >= threshold
        out.append((torch.tensor(g_e, dtype=F64), g_k, keep))
    return out


def test_module_update_equals_the_closed_form_and_prunes_below_threshold():
    torch.manual_seed(0)
    m = BayesNAS(**TINY, lambda_origin=0.05, lambda_child=0.02)
    with torch.no_grad():
        for p in m.arch_parameters():
            p.copy_(torch.randn_like(p))
        m.op_gamma.mul_(torch.rand_like(m.op_gamma) + 0.5)
        m.edge_gamma.mul_(torch.rand_like(m.edge_gamma) + 0.5)
    curvature = [torch.rand_like(p, dtype=F64) * 0.1 for p in m.arch_parameters()]
    expected = closed_form_update(m, curvature, threshold=0.0)
    threshold = float(torch.cat([g[m.alive(c)] for c, (_, g, _) in enumerate(expected)]).quantile(0.3))
    expected = closed_form_update(m, curvature, threshold)
    m.prune_threshold = threshold
    m.ard_update(curvature)
    for c, (g_e, g_k, keep) in enumerate(expected):
        for sl in [slice(0, 2), slice(2, 5)]:  # a node left empty keeps its strongest op
            if not keep[sl].any():
                e, k = divmod(int(g_k[sl].flatten().argmax()), g_k.shape[1])
                keep[sl.start + e, k] = True
        assert torch.equal(m.alive(c), keep)
        torch.testing.assert_close(m.op_gamma[c], g_k * keep, rtol=1e-12, atol=0)
        torch.testing.assert_close(m.edge_gamma[c], g_e * keep.any(-1), rtol=1e-12, atol=0)
    assert 0 < int(m.alive(0).sum() + m.alive(1).sum()) < 70


def test_prune_masks_only_remove_and_keep_every_node_connected():
    edge_alive = torch.tensor([True, True, False, True, True])
    op_alive = torch.ones(5, 3, dtype=torch.bool)
    op_alive[3, 1] = False
    gamma = torch.tensor([[0.1, 0.9, 0.2], [0.3, 0.1, 0.1], [5.0, 5.0, 5.0], [0.2, 9.0, 0.4], [0.1, 0.3, 0.05]], dtype=F64)
    new_edges, new_ops = prune_masks(edge_alive, op_alive, gamma, threshold=0.5, steps=2)
    assert new_ops.tolist() == [[False, True, False], [False, False, False], [False, False, False],
                                [False, False, True], [False, False, False]]
    assert new_edges.tolist() == [True, False, False, True, False]  # node 3 keeps its best alive op (edge 3, op 2)


def test_fit_prunes_monotonically_pruned_ops_are_zero_and_not_run(tmp_path):
    pl.seed_everything(0)
    m = BayesNAS(**TINY)
    rec = RecordMasks()
    trainer(tmp_path, max_epochs=3, callbacks=[PruneQuantile(0.4), rec]).fit(m, SyntheticImages())
    masks = rec.masks
    for before, after in zip(masks, masks[1:]):
        assert torch.all(after <= before), "a pruned op came back"
    assert int(masks[-1].sum()) < int(masks[0].sum()) < 70 + 1
    for c in range(2):
        for sl in [slice(0, 2), slice(2, 5)]:
            assert m.alive(c)[sl].any()
        weights = m.edge_weights()[c]
        assert torch.all(weights[~m.alive(c)] == 0) and torch.all(weights[m.alive(c)] != 0)

    calls = {}
    for ci, cell in enumerate(m.model.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                op.register_forward_hook(lambda *a, key=(int(cell.reduction), e, k): calls.__setitem__(key, True))
    m.eval()
    m(torch.randn(2, 1, 8, 8))
    ran = {(c, e, k) for c, e, k in calls}
    alive = {(c, e, k) for c in range(2) for e, k in m.alive(c).nonzero().tolist()}
    assert ran == alive

    g = m.genotype()
    listed = set()
    for c, cell in enumerate((g.normal, g.reduce)):
        for i, node in enumerate(cell):
            for op, src in node:
                e = cell_edges(2).index((src, i + 2))
                listed.add((c, e, list(m.primitives).index(op)))
    assert listed == alive
    net = NetworkCIFAR(g, C=4, layers=3, in_channels=1, auxiliary=False)
    assert net(torch.randn(2, 1, 8, 8))[0].shape == (2, 10)
    assert Genotype.parse(str(g)) == g


def test_resume_continues_with_the_same_switches_gammas_and_masks(tmp_path):
    runs = run_resumed(lambda: BayesNAS(**TINY), lambda: SyntheticImages(seed=5), tmp_path, {"max_epochs": 1}, seed=3,
                       callbacks=lambda: [PruneQuantile(0.3)], max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    full, resumed = runs.full, runs.resumed
    ck = torch.load(runs.checkpoint, weights_only=False)
    for a, b in zip(resumed.arch_parameters(), full.arch_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for name in ("op_mask", "edge_mask"):
        assert torch.equal(getattr(resumed, name), getattr(full, name))
    for name in ("op_gamma", "edge_gamma", "op_omega", "edge_omega"):
        torch.testing.assert_close(getattr(resumed, name), getattr(full, name), rtol=1e-4, atol=1e-8)
    assert not torch.equal(ck["state_dict"]["op_mask"], full.op_mask)
    assert ck["state_dict"]["op_gamma"].dtype == F64 and "bayesnas" in ck


def test_idle_parameters_are_exactly_those_pruning_cut_off_from_the_loss():
    # steps=3, multiplier=2: node 2 is not concatenated and whole cells can lose their readers.
    for seed in range(6):
        torch.manual_seed(seed)
        m = BayesNAS(**{**TINY, "layers": 4, "steps": 3})
        m.prune_threshold = 0.6
        m.ard_update([torch.rand_like(p, dtype=F64) for p in m.arch_parameters()])
        loss = torch.nn.functional.cross_entropy(m(torch.randn(2, 1, 8, 8)), torch.tensor([1, 2]))
        loss.backward()
        no_grad = {n for n, p in m.named_parameters() if p.grad is None}
        idle = {id(p) for p in idle_parameters(m.model, [m.alive(0).tolist(), m.alive(1).tolist()])}
        assert no_grad == {n for n, p in m.named_parameters() if id(p) in idle}


@pytest.mark.parametrize("kwargs, match", [
    ({"lambda_origin": 0.0}, "lambda_origin must be a number > 0.0, got 0.0"),
    ({"lambda_child": -1}, "lambda_child must be a number > 0.0, got -1"),
    ({"prune_threshold": -0.1}, r"prune_threshold must be a number >= 0.0, got -0.1"),
    ({"gamma_init": 0}, "gamma_init must be a number > 0.0, got 0"),
    ({"node_dependency": "yes"}, "node_dependency must be True or False, got 'yes'"),
    ({"curvature_every": 0}, "curvature_every must be a positive int, got 0"),
    ({"seed": 1.5}, "seed must be an int, got 1.5"),
    ({"alpha_momentum": 1.0}, r"alpha_momentum must be in \[0, 1\), got 1.0"),
    ({"w_lr": 0.0}, "w_lr must be > 0"),
    ({"primitives": ["none"]}, "no operation other than 'none'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesNAS(**{**TINY, **kwargs})


def test_bad_batch_is_refused():
    m = BayesNAS(**TINY)
    with pytest.raises(TypeError, match="expects \\(inputs, targets\\) batches, got dict"):
        m.training_step({"train": None}, 0)


@pytest.mark.ddp
def test_ddp_gammas_masks_and_switches_identical_on_both_ranks(tmp_path):
    pl.seed_everything(0)
    m = BayesNAS(**TINY)
    ranks = fit_ddp(m, SyntheticImages(batch_size=4), tmp_path, max_epochs=3, callbacks=[PruneQuantile(0.5)])
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert int(s0["op_mask"].sum()) < 70, "nothing was pruned"
    for key in ("op_mask", "edge_mask"):
        assert torch.equal(s0[key], s1[key])
    for key in ("op_gamma", "edge_gamma", "op_omega", "edge_omega", "alpha_normal", "alpha_reduce",
                "edge_normal", "edge_reduce"):
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=1e-7)

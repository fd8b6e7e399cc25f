"""HessianEigenvalueMonitor: power iteration, the DARTS-ES rule, hooks, state, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lit_automl.callbacks import HessianEigenvalueMonitor, darts_es_rule, dominant_hessian_eigenvalue
from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.darts import DARTS
from lit_automl.spaces import Genotype
from tests.callbacks.helpers import callback_of, saved_state
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer

OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "sep_conv_5x5")
# Tiny DARTS: 1 node per cell and three cheap ops keep each Hessian-vector product fast on a busy CPU.
TINY = dict(C=4, layers=3, steps=1, multiplier=1, stem_multiplier=1, in_channels=1, order=1,
            primitives=["skip_connect", "avg_pool_3x3", "sep_conv_3x3"])


pytestmark = pytest.mark.usefixtures("single_thread")


def quadratic(eigenvalues, seed=0):
    """Symmetric A with the given spectrum, and 0.5 x^T A x over x split into two parameters."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    x1 = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(n - 4, generator=g, dtype=torch.float64, requires_grad=True)

    def loss():
        x = torch.cat([x1.reshape(-1), x2])
        return 0.5 * x @ A @ x

    return A, [x1, x2], loss


def test_recovers_the_dominant_eigenvalue_of_a_quadratic():
    A, params, loss = quadratic([5.0, 2.0, 1.0, -0.5, 0.25, 0.1])
    lam, v = dominant_hessian_eigenvalue(loss, params, iterations=200, tol=1e-12, generator=torch.Generator().manual_seed(1))
    expected = torch.linalg.eigvalsh(A)
    assert lam == pytest.approx(float(expected.abs().max()), rel=1e-8) and lam == pytest.approx(5.0, rel=1e-8)
    assert v.dtype == torch.float64 and v.shape == (6,) and float(v.norm()) == pytest.approx(1.0)
    torch.testing.assert_close(A @ v, lam * v, rtol=0, atol=1e-4)
    assert all(p.grad is None for p in params)


def test_a_negative_eigenvalue_of_largest_magnitude_is_returned_with_its_sign():
    # Power iteration finds the eigenvalue of largest |lambda|; here that is -6, not the largest (3).
    A, params, loss = quadratic([-6.0, 3.0, 1.0, 0.5, -0.2, 0.1], seed=2)
    lam, v = dominant_hessian_eigenvalue(loss, params, iterations=300, tol=1e-12)
    evs = torch.linalg.eigvalsh(A)
    assert lam == pytest.approx(float(evs[evs.abs().argmax()]), rel=1e-8) and lam == pytest.approx(-6.0, rel=1e-8)
    torch.testing.assert_close(A @ v, lam * v, rtol=0, atol=1e-4)


def test_tolerance_stops_early_and_zero_hessian_gives_zero():
    A, params, loss = quadratic([4.0, 0.1, 0.1, 0.1, 0.1, 0.1])
    calls = []

    def counting():
        calls.append(1)
        return loss()

    lam, _ = dominant_hessian_eigenvalue(counting, params, iterations=100, tol=1e-3)
    assert lam == pytest.approx(4.0, rel=1e-3) and len(calls) == 1  # one loss, many products
    w = torch.ones(3, requires_grad=True)
    assert dominant_hessian_eigenvalue(lambda: (2 * w).sum(), [w])[0] == 0.0  # linear loss: H = 0


@pytest.mark.parametrize("kwargs, match", [
    ({"iterations": 0}, "iterations must be an int >= 1, got 0"),
    ({"tol": -1.0}, "tol must be a number >= 0, got -1.0"),
])
def test_function_bad_arguments(kwargs, match):
    _, params, loss = quadratic([1.0] * 6)
    with pytest.raises(ValueError, match=match):
        dominant_hessian_eigenvalue(loss, params, **kwargs)
    with pytest.raises(ValueError, match="requires_grad"):
        dominant_hessian_eigenvalue(loss, [torch.zeros(2)])


def test_darts_hessian_vector_product_matches_finite_differences():
    """One iteration returns v0^T H v0 and H v0 / |H v0|; checked against central differences of the gradient."""
    torch.manual_seed(0)
    m = DARTS(**TINY).double().train()
    with torch.no_grad():
        for a in m.alphas.values():
            a.normal_()
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (6,))
    m.alpha_normal.grad = torch.full_like(m.alpha_normal, 7.0)  # must be left alone
    cb = HessianEigenvalueMonitor(power_iterations=1, tol=0.0, seed=3)
    buffers = {n: b.clone() for n, b in m.named_buffers()}
    lam, v1 = cb.compute_eigenvalue(m, [(x, y)], epoch=4)

    assert m.training and all(mod.training for mod in m.modules())  # train mode restored
    assert all(torch.equal(b, buffers[n]) for n, b in m.named_buffers())  # eval mode: stats untouched
    assert torch.equal(m.alpha_normal.grad, torch.full_like(m.alpha_normal, 7.0))
    assert m.alpha_reduce.grad is None and all(p.grad is None for p in m.weight_parameters())

    m.eval()
    params = [m.alpha_normal, m.alpha_reduce]
    v0 = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(3 + 4), dtype=torch.float64)
    v0 = v0 / v0.norm()

    def grad_at(shift):
        with torch.no_grad():
            for p, d in zip(params, torch.split(shift, [p.numel() for p in params])):
                p.add_(d.view_as(p))
        g = torch.autograd.grad(F.cross_entropy(m(x), y), params)
        with torch.no_grad():
            for p, d in zip(params, torch.split(shift, [p.numel() for p in params])):
                p.sub_(d.view_as(p))
        return torch.cat([t.reshape(-1) for t in g])

    eps = 1e-5
    hv0 = (grad_at(eps * v0) - grad_at(-eps * v0)) / (2 * eps)
    assert lam == pytest.approx(float(v0 @ hv0), rel=1e-5)
    torch.testing.assert_close(v1, hv0 / hv0.norm(), rtol=0, atol=1e-6)


def test_darts_eigenvalue_matches_the_explicit_hessian():
    torch.manual_seed(1)
    m = DARTS(**TINY).eval()
    with torch.no_grad():
        for a in m.alphas.values():
            a.normal_()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    lam, v = HessianEigenvalueMonitor(power_iterations=100, tol=1e-6).compute_eigenvalue(m, [(x, y)])

    params = [m.alpha_normal, m.alpha_reduce]  # the order of m.alphas
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(F.cross_entropy(m(x), y), params, create_graph=True)])
    rows = [torch.cat([t.reshape(-1) for t in torch.autograd.grad(g[i], params, retain_graph=True)]) for i in range(len(g))]
    H = torch.stack(rows).double()
    evs = torch.linalg.eigvalsh(0.5 * (H + H.T))
    assert lam == pytest.approx(float(evs[evs.abs().argmax()]), rel=1e-3)
    torch.testing.assert_close(H @ v, lam * v, rtol=0, atol=1e-3 * abs(lam))


def test_train_mode_probe_restores_running_statistics():
    torch.manual_seed(0)
    m = DARTS(**TINY).eval()
    buffers = {n: b.clone() for n, b in m.named_buffers()}
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    lam, _ = HessianEigenvalueMonitor(power_iterations=2, mode="train").compute_eigenvalue(m, [(x, y)])
    assert torch.isfinite(torch.tensor(lam))
    assert not m.training and all(torch.equal(b, buffers[n]) for n, b in m.named_buffers())


# --------------------------------------------------------------------------- DARTS-ES
def make_genotype(epoch: int) -> Genotype:
    """A distinct genotype per epoch (< 28)."""
    return Genotype([(OPS[1 + epoch % 6], 0), (OPS[1 + epoch // 6 % 6], 1)], [2], [("max_pool_3x3", 0), ("skip_connect", 1)], [2])


# Flat for 10 epochs, then rising by 0.1 per epoch: with window 5 and k 5 the ratio
# avg(i-5)/avg(i) is 0.98, 0.94, 0.89, 0.83, 0.77 at epochs 10..14 and 0.729 at epoch 15.
RISING = [1.0] * 10 + [1.0 + 0.1 * (e - 9) for e in range(10, 20)]


def test_darts_es_rule_stops_exactly_when_the_ratio_first_drops_below_the_threshold():
    ratios = [darts_es_rule(RISING[: i + 1])[1] for i in range(len(RISING))]
    assert ratios[:9] == [None] * 9 and ratios[9] == pytest.approx(1.0)
    assert ratios[14] == pytest.approx(1.0 / 1.3) and ratios[14] > 0.75
    assert ratios[15] == pytest.approx(1.02 / 1.4) and ratios[15] < 0.75
    stops = [darts_es_rule(RISING[: i + 1])[0] for i in range(len(RISING))]
    assert stops.index(True) == 15
    assert darts_es_rule([-1.0] * 10) == (False, None)  # no positive mean: no stop

    cb = HessianEigenvalueMonitor(early_stop=True)
    decisions = [cb.check(e, lam, make_genotype(e)) for e, lam in enumerate(RISING[:16])]
    assert [stop for stop, _ in decisions] == [False] * 15 + [True]
    assert "0.7286 < 0.75" in decisions[15][1] and "epoch 10" in decisions[15][1]
    assert cb.genotypes[10] == str(make_genotype(10))


def test_check_without_early_stop_only_records():
    cb = HessianEigenvalueMonitor()
    assert all(cb.check(e, lam) == (False, "") for e, lam in enumerate(RISING))
    assert cb.eigenvalues[15] == pytest.approx(1.6) and cb.genotypes == {}


class PairedToy(Dataset):
    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"train": (self.x[i], self.y[i]), "val": (self.x[i], self.y[i])}


class ToySearch(pl.LightningModule):
    """A linear model gated by softmax(alpha): non-zero Hessian in alpha; its genotype names the epoch."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.alpha = nn.Parameter(torch.linspace(-1, 1, 6).view(2, 3))

    @property
    def alphas(self):
        return {"normal": self.alpha}

    def genotype(self) -> Genotype:
        return make_genotype(self.current_epoch)

    def forward(self, x):
        return self.layer(x) * torch.softmax(self.alpha, dim=-1).sum(0)

    def training_step(self, batch, batch_idx):
        x, y = batch["train"]
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(PairedToy(), batch_size=4)


class ScriptedEigenvalues(HessianEigenvalueMonitor):
    """The RISING sequence instead of a measurement, to drive DARTS-ES through a real fit."""

    def compute_eigenvalue(self, pl_module, batches, epoch=0):
        assert len(batches) == 1 and batches[0][0].shape == (4, 4)  # the last "val" half of the epoch
        return RISING[epoch], None


def test_darts_es_stops_a_fit_and_returns_the_genotype_of_k_epochs_before(tmp_path):
    cb = ScriptedEigenvalues(early_stop=True)
    trainer = quiet_trainer(tmp_path, max_epochs=30, callbacks=[cb], logger=False)
    trainer.fit(ToySearch())
    assert cb.stopped_epoch == 15 and trainer.current_epoch == 16
    assert sorted(cb.eigenvalues) == list(range(16))
    assert cb.genotype_at_stop() == make_genotype(10) != make_genotype(15)
    assert "ratio 0.7286" in cb.stop_reason
    assert trainer.callback_metrics["arch/hessian_es_ratio"] == pytest.approx(1.02 / 1.4)
    assert trainer.callback_metrics["arch/hessian_eigenvalue"] == pytest.approx(1.6)


def test_state_dict_round_trip_resumes_the_rule():
    first = HessianEigenvalueMonitor(early_stop=True)
    for e in range(12):
        assert first.check(e, RISING[e], make_genotype(e)) == (False, "")
    state = first.state_dict()
    saved = torch.load(_save(state), weights_only=True)  # plain values only
    assert saved == state
    resumed = HessianEigenvalueMonitor(early_stop=True)
    resumed.load_state_dict(saved)
    assert [resumed.check(e, RISING[e], make_genotype(e))[0] for e in range(12, 16)] == [False, False, False, True]
    assert resumed.genotypes[10] == str(make_genotype(10))


def _save(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_checkpoint_resume_continues_counting(tmp_path):
    runs = run_resumed(ToySearch, lambda: None, tmp_path, {"max_epochs": 12},
                       callbacks=lambda: [ScriptedEigenvalues(early_stop=True)], max_epochs=30, limit_train_batches=2)
    resumed = callback_of(runs.resumed_trainer, ScriptedEigenvalues)
    saved = saved_state(runs.checkpoint, resumed)
    assert saved["stopped_epoch"] is None and [e for e, _ in saved["eigenvalues"]] == list(range(12))
    assert resumed.stopped_epoch == 15 and resumed.genotype_at_stop() == make_genotype(10)
    assert callback_of(runs.full_trainer, ScriptedEigenvalues).stopped_epoch == 15


# --------------------------------------------------------------------------- real fits
def test_fit_logs_the_eigenvalue_on_the_arch_half(tmp_path):
    cb = HessianEigenvalueMonitor(power_iterations=3)
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[cb], logger=False)
    trainer.fit(ToySearch())
    assert sorted(cb.eigenvalues) == [0, 1]
    assert trainer.callback_metrics["arch/hessian_eigenvalue"] == pytest.approx(cb.eigenvalues[1])
    assert cb.eigenvalues[0] != 0.0 and cb.stopped_epoch is None and not cb._captured


def test_darts_fit_with_the_validation_loader(tmp_path):
    pl.seed_everything(0)
    m = DARTS(**TINY)
    cb = HessianEigenvalueMonitor(power_iterations=2, source="val_dataloader", every_n_epochs=2)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                            num_sanity_val_steps=0, callbacks=[cb])
    trainer.fit(m, BilevelDataModule(DigitsDataModule(batch_size=4), seed=0))
    assert list(cb.eigenvalues) == [0] and "arch/hessian_eigenvalue" in trainer.callback_metrics
    assert m.training


def test_unpaired_batches_with_arch_half_are_named(tmp_path):
    class Unpaired(ToySearch):
        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def train_dataloader(self):
            return DataLoader([(torch.randn(4), 1)] * 4, batch_size=2)

    with pytest.raises(TypeError, match="needs paired training batches"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[HessianEigenvalueMonitor()], logger=False).fit(Unpaired())


def test_module_without_alphas_is_named(tmp_path):
    class NoAlphas(ToySearch):
        alphas = None

    with pytest.raises(AttributeError, match="NoAlphas.alphas"):
        quiet_trainer(tmp_path, max_epochs=1, callbacks=[HessianEigenvalueMonitor()], logger=False).fit(NoAlphas())


class RecordEigenvalues(pl.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        cb = next(c for c in trainer.callbacks if isinstance(c, HessianEigenvalueMonitor))
        Path(self.dirpath, f"eig{trainer.global_rank}.json").write_text(json.dumps(cb.state_dict()))


@pytest.mark.ddp
def test_ddp_eigenvalue_is_the_one_of_the_loss_over_all_ranks(tmp_path):
    """Each rank holds half of the 8 samples; the all-reduced products give the Hessian of the mean loss over all 8."""
    pl.seed_everything(0)
    ranks = fit_ddp(ToySearch(), None, tmp_path, callbacks=[HessianEigenvalueMonitor(power_iterations=2, tol=0.0),
                                                             RecordEigenvalues(str(tmp_path))])
    states = [json.loads((tmp_path / f"eig{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"]
    assert states[0]["eigenvalues"] == states[1]["eigenvalues"] and len(states[0]["eigenvalues"]) == 1

    m = ToySearch()
    m.load_state_dict(ranks[0]["state_dict"])
    data = PairedToy()
    expected, _ = HessianEigenvalueMonitor(power_iterations=2, tol=0.0).compute_eigenvalue(m, [(data.x, data.y)], epoch=0)
    assert states[0]["eigenvalues"][0][1] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"every_n_epochs": 0}, "every_n_epochs must be an int >= 1, got 0"),
    ({"num_batches": 1.5}, "num_batches must be an int >= 1, got 1.5"),
    ({"power_iterations": -2}, "power_iterations must be an int >= 1, got -2"),
    ({"tol": "small"}, "tol must be a number >= 0, got 'small'"),
    ({"source": "test"}, r"source must be one of \['arch_half', 'val_dataloader'\], got 'test'"),
    ({"mode": "inference"}, r"mode must be one of \['eval', 'train'\], got 'inference'"),
    ({"early_stop": 1}, "early_stop must be True or False, got 1"),
    ({"threshold": 1.5}, r"threshold must be a number in \(0, 1\).*got 1.5"),
    ({"window": 0}, "window must be an int >= 1, got 0"),
    ({"early_stop": True, "every_n_epochs": 2}, "early_stop=True needs every_n_epochs=1.*got every_n_epochs=2"),
    ({"loss_fn": "ce"}, "loss_fn must be callable.*got 'ce'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HessianEigenvalueMonitor(**kwargs)

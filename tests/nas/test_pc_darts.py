"""PC-DARTS: partial channels, edge normalisation, warm-up, derivation by alpha * beta."""

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.pc_darts import PCDARTS, node_softmax
from lit_automl.spaces.cells import SearchCell
from lit_automl.spaces.ops import DARTS_OPS
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, alpha_lr=0.05,
            partial_channels=2, arch_warmup_epochs=0)


def digits(batch_size: int = 16, seed: int = 0) -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=seed), seed=seed)


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 0, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def test_paper_defaults():
    hp = PCDARTS().hparams
    assert (hp.partial_channels, hp.order, hp.arch_warmup_epochs) == (4, 1, 15)
    assert (hp.C, hp.layers, hp.steps) == (16, 8, 4)
    assert (hp.w_lr, hp.w_lr_min, hp.w_momentum, hp.w_weight_decay, hp.grad_clip) == (0.1, 0.0, 0.9, 3e-4, 5.0)
    assert (hp.alpha_lr, tuple(hp.alpha_betas), hp.alpha_weight_decay, hp.alpha_init_std) == (6e-4, (0.5, 0.999), 1e-3, 1e-3)


def test_every_edge_runs_a_quarter_of_its_channels():
    m = PCDARTS()
    for cell in m.model.cells:
        for edge in cell.edges:
            assert edge.partial_channels == 4
            convs = [mod for mod in edge.modules() if isinstance(mod, torch.nn.Conv2d)]
            assert convs and all(conv.in_channels == edge.C // 4 for conv in convs)


def test_architecture_parameters_in_order_and_only_in_adam():
    m = PCDARTS(**TINY, epochs=2)
    (w_opt, a_opt), _ = m.configure_optimizers()
    a_ids = [id(p) for g in a_opt.param_groups for p in g["params"]]
    assert a_ids == [id(m.alpha_normal), id(m.alpha_reduce), id(m.beta_normal), id(m.beta_reduce)]
    assert not {id(p) for g in w_opt.param_groups for p in g["params"]} & set(a_ids)
    assert m.beta_normal.shape == (m.model.num_edges,)
    assert set(m.alphas) == {"normal", "reduce"} and m.alphas["normal"] is m.alpha_normal


def test_node_softmax_normalises_each_node_s_incoming_edges():
    beta = torch.randn(14)
    w = node_softmax(beta, steps=4)
    sums = [chunk.sum().item() for chunk in torch.split(w, [2, 3, 4, 5])]
    assert sums == pytest.approx([1.0] * 4)
    torch.testing.assert_close(w[2:5], torch.softmax(beta[2:5], 0))
    with pytest.raises(ValueError, match=r"beta must have shape \(14,\) for steps=4, got \(5,\)"):
        node_softmax(torch.randn(5), steps=4)


def test_edge_scale_weights_the_whole_edge_including_the_bypass():
    """PC-DARTS eq. 3: beta multiplies f_{i,j}, whose bypassed channels are part of it."""
    torch.manual_seed(0)
    cell = SearchCell(2, 2, 4, 4, 4, reduction=False, reduction_prev=False, primitives=DARTS_OPS, partial_channels=2)
    s0, s1 = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(5, len(DARTS_OPS)), -1)
    scale = torch.rand(5)
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    n0 = scale[0] * cell.edges[0](states[0], w[0]) + scale[1] * cell.edges[1](states[1], w[1])
    states.append(n0)
    n1 = sum(scale[2 + j] * cell.edges[2 + j](h, w[2 + j]) for j, h in enumerate(states))
    torch.testing.assert_close(cell(s0, s1, w, edge_scale=scale), torch.cat([n0, n1], 1))


def test_beta_gradient_matches_finite_differences():
    torch.manual_seed(0)
    m = PCDARTS(**TINY).double()
    x, y = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m(x), y)

    with torch.no_grad():
        m.beta_normal.copy_(torch.randn(5, dtype=torch.float64))
    grad = torch.autograd.grad(loss(), m.beta_normal)[0]
    eps = 1e-6
    for e in range(5):
        with torch.no_grad():
            m.beta_normal[e] += eps
            up = loss().item()
            m.beta_normal[e] -= 2 * eps
            down = loss().item()
            m.beta_normal[e] += eps
        assert grad[e].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)


def test_genotype_ranks_edges_by_alpha_times_beta():
    m = PCDARTS(**TINY)
    with torch.no_grad():
        m.alpha_normal.zero_()
        sep = DARTS_OPS.index("sep_conv_3x3")
        m.alpha_normal[:, sep] = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0])
        # Node 1 (edges 2, 3, 4): alpha alone prefers inputs 0 and 1; beta favours inputs 1 and 2 strongly.
        m.beta_normal.copy_(torch.tensor([0.0, 0.0, -5.0, 5.0, 5.0]))
    node1 = m.genotype().normal[1]
    assert sorted(j for _, j in node1) == [1, 2]
    strengths = m.edge_strengths()["normal"]
    torch.testing.assert_close(strengths.sum(-1)[2:].sum(), torch.tensor(1.0))


def test_alphas_and_betas_frozen_during_warmup(tmp_path):
    class Record(pl.Callback):
        def __init__(self):
            self.snapshots = []

        def on_train_epoch_end(self, trainer, pl_module):
            self.snapshots.append([a.detach().clone() for a in pl_module.arch_parameters()])

    pl.seed_everything(0)
    m = PCDARTS(**{**TINY, "arch_warmup_epochs": 1})
    start = [a.detach().clone() for a in m.arch_parameters()]
    weights0 = m.model.classifier.weight.detach().clone()
    rec = Record()
    trainer(tmp_path, max_epochs=2, callbacks=[rec]).fit(m, digits())
    assert all(torch.equal(a, b) for a, b in zip(rec.snapshots[0], start))
    assert all(not torch.allclose(a, b) for a, b in zip(rec.snapshots[1], start))
    assert not torch.allclose(m.model.classifier.weight, weights0)


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    runs = run_resumed(lambda: PCDARTS(**{**TINY, "arch_warmup_epochs": 1}, epochs=3), lambda: digits(seed=5),
                       tmp_path, {"max_epochs": 2}, seed=3, max_epochs=3, limit_train_batches=3, limit_val_batches=0)
    for a, b in zip(runs.resumed.arch_parameters(), runs.full.arch_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert "beta_reduce" in torch.load(runs.checkpoint, weights_only=True)["state_dict"]


@pytest.mark.parametrize("kwargs, match", [
    ({"partial_channels": 3}, r"partial_channels=3 must divide the edge's 4 channels"),
    ({"partial_channels": 0}, "partial_channels must be a positive int"),
    ({"arch_warmup_epochs": -1}, "arch_warmup_epochs must be an int >= 0, got -1"),
    ({"primitives": []}, "primitives must name at least one operation"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCDARTS(**{**TINY, **kwargs})


@pytest.mark.ddp
def test_ddp_alphas_and_betas_identical_on_both_ranks(tmp_path):
    pl.seed_everything(0)
    m = PCDARTS(**TINY)
    before = m.beta_normal.detach().clone()
    ranks = fit_ddp(m, digits(batch_size=8), tmp_path, limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert not torch.allclose(s0["beta_normal"], before)
    for key in ("alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"):
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=1e-7)

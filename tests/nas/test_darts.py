"""DARTS as a LightningModule: training, genotype derivation, DDP, resume, bad input."""

import pytest
import pytorch_lightning as pl
import torch

from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.darts import DARTS
from lit_automl.spaces.derive import edge_entropy
from lit_automl.spaces import Genotype
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, alpha_lr=0.05)


def digits(batch_size: int = 16, seed: int = 0) -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=seed), seed=seed)


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def test_paper_defaults():
    m = DARTS()
    hp = m.hparams
    assert (hp.C, hp.layers, hp.steps, hp.order) == (16, 8, 4, 2)
    assert (hp.w_lr, hp.w_lr_min, hp.w_momentum, hp.w_weight_decay, hp.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (hp.alpha_lr, tuple(hp.alpha_betas), hp.alpha_weight_decay) == (3e-4, (0.5, 0.999), 1e-3)
    assert m.alpha_normal.shape == (14, 8) and m.alpha_normal.abs().max() < 1e-2
    # The published supernet: about 1.9M weights; alphas are not among them.
    assert round(sum(p.numel() for p in m.weight_parameters()) / 1e6, 1) == 1.9
    ids = {id(p) for p in m.weight_parameters()}
    assert all(id(a) not in ids for a in m.arch_parameters())


def test_optimisers_keep_alphas_out_of_the_weight_optimiser(tmp_path):
    m = DARTS(**TINY, epochs=3)
    (w_opt, a_opt), scheds = m.configure_optimizers()
    w_ids = {id(p) for g in w_opt.param_groups for p in g["params"]}
    a_ids = [id(p) for g in a_opt.param_groups for p in g["params"]]
    assert a_ids == [id(m.alpha_normal), id(m.alpha_reduce)]
    assert not w_ids & set(a_ids)
    assert isinstance(w_opt, torch.optim.SGD) and isinstance(a_opt, torch.optim.Adam)


@pytest.mark.parametrize("order", [1, 2])
def test_search_moves_alphas_and_lowers_entropy(tmp_path, order):
    pl.seed_everything(0)
    m = DARTS(**TINY, order=order)
    before = [a.detach().clone() for a in m.arch_parameters()]
    ent_before = edge_entropy(m.alpha_normal)
    trainer(tmp_path, max_epochs=2).fit(m, digits())
    assert all(not torch.allclose(a, b) for a, b in zip(m.arch_parameters(), before))
    assert edge_entropy(m.alpha_normal) < ent_before
    g = m.genotype()
    assert isinstance(g, Genotype) and len(g.normal) == 2 and all(len(node) == 2 for node in g.normal)


def test_cosine_schedule_by_epoch(tmp_path):
    m = DARTS(**TINY, order=1, epochs=4)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(m, digits())
    lr = t.optimizers[0].param_groups[0]["lr"]
    import math
    expected = 0.001 + (0.025 - 0.001) * (1 + math.cos(math.pi * 2 / 4)) / 2
    assert lr == pytest.approx(expected)


def test_genotype_derivation_follows_the_paper():
    m = DARTS(**TINY)
    prims = list(m.primitives)
    with torch.no_grad():
        m.alpha_normal.zero_()
        # node 0: edges 0, 1; node 1: edges 2, 3, 4 (inputs 0, 1, node 0)
        m.alpha_normal[0, prims.index("none")] = 10.0  # 'none' dominant: never chosen, weak edge
        m.alpha_normal[0, prims.index("sep_conv_3x3")] = 1.0
        m.alpha_normal[1, prims.index("max_pool_3x3")] = 3.0
        m.alpha_normal[2, prims.index("dil_conv_5x5")] = 2.0
        m.alpha_normal[3, prims.index("skip_connect")] = 0.5
        m.alpha_normal[4, prims.index("sep_conv_5x5")] = 4.0
    g = m.genotype()
    assert g.normal[0] == (("max_pool_3x3", 1), ("sep_conv_3x3", 0))
    assert g.normal[1] == (("sep_conv_5x5", 2), ("dil_conv_5x5", 0))
    assert tuple(g.normal_concat) == (2, 3)


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    runs = run_resumed(lambda: DARTS(**TINY, order=2, epochs=4), lambda: digits(seed=5), tmp_path,
                       {"max_epochs": 2}, seed=3, max_epochs=3, limit_train_batches=3, limit_val_batches=0)
    for a, b in zip(runs.resumed.arch_parameters(), runs.full.arch_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ck = torch.load(runs.checkpoint, weights_only=True)
    assert not torch.allclose(ck["state_dict"]["alpha_normal"], runs.full.alpha_normal)
    assert "alpha_normal" in ck["state_dict"] and "rng_states" in ck


class _Unpaired(pl.LightningDataModule):
    def train_dataloader(self):
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def test_unpaired_batches_are_refused(tmp_path):
    with pytest.raises(TypeError, match="paired batches.*BilevelDataModule"):
        trainer(tmp_path, limit_val_batches=0).fit(DARTS(**TINY), _Unpaired())


@pytest.mark.parametrize("kwargs, match", [
    ({"order": 3}, "order must be 1"),
    ({"C": 0}, "C must be a positive int"),
    ({"layers": -1}, "layers must be a positive int"),
    ({"num_classes": 0}, "num_classes must be a positive int"),
    ({"primitives": ["sep_conv_3x3", "conv_9x9"]}, "conv_9x9.*valid names"),
    ({"primitives": "nasnet_typo"}, "unknown op set 'nasnet_typo'"),
    ({"memory_format": "nhwc"}, "memory_format must be one of"),
    ({"w_lr": 0.0}, "w_lr must be > 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        DARTS(**{**TINY, **kwargs})


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        DARTS(**TINY)(torch.randn(2, 3, 8, 8))


class SecondOrderFromEpoch1(pl.Callback):
    """First-order steps in epoch 0, second-order ones from epoch 1: both orders in one DDP spawn."""

    def on_train_epoch_start(self, trainer, pl_module):
        pl_module.hparams.order = 1 if trainer.current_epoch == 0 else 2


@pytest.mark.ddp
def test_ddp_alphas_move_and_stay_identical(tmp_path):
    pl.seed_everything(0)
    m = DARTS(**TINY, order=1)
    before = m.alpha_normal.detach().clone()
    ranks = fit_ddp(m, digits(batch_size=8), tmp_path, callbacks=[SecondOrderFromEpoch1()], max_epochs=2,
                    limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert not torch.allclose(s0["alpha_normal"], before)
    for key in ("alpha_normal", "alpha_reduce"):
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=1e-7)
    # Weights too (batch-norm running statistics are per rank: DDP does not sync them).
    for key in s0:
        if "running_" not in key and "num_batches_tracked" not in key:
            torch.testing.assert_close(s0[key], s1[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("order", [1, 2])
def test_architecture_gradient_leaves_the_supernet_as_it_found_it(order):
    """Both orders read the running statistics and weights without moving them; first order is the
    plain gradient of the validation loss (the supernet's own forward)."""
    torch.manual_seed(0)
    m = DARTS(**TINY, order=order, epochs=1).double()
    g = torch.Generator().manual_seed(3)
    half = lambda: (torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (6,), generator=g))  # noqa: E731
    train, val = half(), half()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    w_opt = m.configure_optimizers()[0][0]
    grads, _ = m.architecture_gradient(train, val, 0.0 if order == 1 else 0.1, w_opt)
    for key, value in m.state_dict().items():
        assert torch.equal(value, before[key]), key
    if order == 1:
        reference = DARTS(**TINY, order=1).double()
        reference.load_state_dict(before)
        loss = torch.nn.functional.cross_entropy(reference(val[0]), val[1])
        for a, b in zip(grads, torch.autograd.grad(loss, reference.arch_parameters())):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kwargs", [{}, {"partial_channels": 2}])
def test_supernet_ties_no_weights(kwargs):
    """``DARTS.loss`` runs ``functional_call(..., tie_weights=False)``: a tied parameter or buffer
    would keep its module value under a second name instead of taking the functional one."""
    from lit_automl.nas.pc_darts import PCDARTS

    m = (PCDARTS if kwargs else DARTS)(**TINY, **kwargs)
    for named in (m.model.named_parameters, m.model.named_buffers):
        assert len(list(named())) == len(list(named(remove_duplicate=False)))

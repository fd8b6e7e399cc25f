"""DARTS on the NAS-Bench-201 cell (space="nb201"): the authors' search settings, a tiny search of each order
writing the arch and the skip fraction, the architecture gradient against autograd, resume, refusals."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_automl.callbacks import GenotypeLogger
from lit_automl.nas.bayesnas import BayesNAS
from lit_automl.nas.darts import DARTS
from lit_automl.nas.pc_darts import PCDARTS
from lit_automl.nas.pdarts import PDARTS
from lit_automl.nas.snas import SNAS
from lit_automl.spaces.nb201 import NB201_OPS, NB201Arch
from lit_automl.spaces.nb201_supernet import NB201SearchNetwork, skip_fraction
from tests.nas.test_darts import digits, trainer
from tests.nas.test_darts_gradient import batches, exact_unrolled_gradient, rel_err, sgd_with_momentum
from tests.resume_harness import run_resumed

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: 1 torch thread (tests/conftest.py)

TINY = dict(space="nb201", C=4, cells_per_stage=1, in_channels=1, alpha_lr=0.05)


def test_nb201_space_defaults_are_the_authors_search():
    m = DARTS(space="nb201")
    assert isinstance(m.model, NB201SearchNetwork) and len(m.model.cells) == 3 * 5 + 2  # N=5 per stage, 2 blocks
    assert m.model.stem[0].out_channels == 16 and m.primitives == NB201_OPS
    assert list(m.alphas) == ["cell"] and m.alpha_cell.shape == (6, 5) and m.alpha_cell.abs().max() < 1e-2
    assert m.arch_parameters() == [m.alpha_cell]
    ids = {id(p) for p in m.weight_parameters()}
    assert id(m.alpha_cell) not in ids
    assert [id(p) for g in m.architecture_optimizer().param_groups for p in g["params"]] == [id(m.alpha_cell)]


def test_genotype_follows_the_alpha_argmax_and_skip_fraction_is_logged():
    m = DARTS(**TINY)
    with torch.no_grad():
        m.alpha_cell.copy_(torch.tensor([[0, 5, 0, 0, 0], [0, 5, 0, 0, 0], [9, 0, 0, 0, 0],
                                         [0, 0, 0, 5, 0], [0, 5, 0, 0, 0], [0, 0, 5, 0, 0]], dtype=torch.float))
    arch = m.genotype()
    assert str(arch) == "|skip_connect~0|+|skip_connect~0|none~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_1x1~2|"
    assert m.epoch_metrics()["search/skip_fraction"] == 0.5


@pytest.mark.parametrize("order", [1, 2])
def test_search_moves_the_alphas_and_writes_the_arch(tmp_path, order):
    pl.seed_everything(0)
    m = DARTS(**TINY, order=order)
    before = m.alpha_cell.detach().clone()
    logger = GenotypeLogger(dirpath=tmp_path / "run", verbose=False)
    t = trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[logger])
    t.fit(m, digits())
    assert not torch.allclose(m.alpha_cell, before)
    arch = m.genotype()
    assert isinstance(arch, NB201Arch)
    assert NB201Arch.parse((tmp_path / "run" / "genotype.txt").read_text().strip()) == arch
    assert len((tmp_path / "run" / "genotypes.txt").read_text().splitlines()) == 2
    assert t.callback_metrics["search/skip_fraction"].item() == pytest.approx(skip_fraction(arch))


def tiny_nb201(**kw) -> DARTS:
    torch.manual_seed(0)
    return DARTS(**{"space": "nb201", "C": 3, "cells_per_stage": 1, "in_channels": 1, "alpha_init_std": 0.5,
                    **kw}).double()


def test_first_order_gradient_is_the_val_loss_gradient():
    m = tiny_nb201(order=1)
    train, val = batches()
    grads, _ = m.architecture_gradient(train, val, xi=0.0)
    direct = torch.autograd.grad(F.cross_entropy(m(val[0]), val[1]), m.arch_parameters())
    assert rel_err(grads, direct) < 1e-10 and grads[0].abs().sum() > 0


def test_second_order_matches_the_exact_unrolled_gradient():
    """As tests/nas/test_darts_gradient.py for the DARTS space: a small finite-difference step (no kink crossed)
    gives the exact one-step unrolled gradient, which differs from the first-order one."""
    m = tiny_nb201(order=2, unrolled_eps=1e-5)
    opt = sgd_with_momentum(m)
    train, val = batches()
    grads, _ = m.architecture_gradient(train, val, 0.025, opt)
    exact = exact_unrolled_gradient(m, train, val, 0.025, opt)
    first = torch.autograd.grad(F.cross_entropy(m(val[0]), val[1]), m.arch_parameters())
    assert rel_err(grads, exact) < 1e-6
    assert rel_err(first, exact) > 1e-5


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    runs = run_resumed(lambda: DARTS(**TINY, order=1, epochs=3), lambda: digits(seed=5), tmp_path,
                       {"max_epochs": 1}, seed=3, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    torch.testing.assert_close(runs.resumed.alpha_cell, runs.full.alpha_cell, rtol=1e-5, atol=1e-6)
    assert runs.resumed.genotype() == runs.full.genotype()
    assert "alpha_cell" in torch.load(runs.checkpoint, weights_only=True)["state_dict"]


@pytest.mark.parametrize("cls", [SNAS, PCDARTS, PDARTS, BayesNAS])  # OneShot searches nb201 too
def test_methods_without_the_nb201_space_refuse_it(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__} does not search space='nb201': it supports \['darts'\]"):
        cls(space="nb201", C=4, in_channels=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"space": "nb101"}, "space must be one of"),
    ({"space": "nb201", "layers": 5}, "layers is not used"),
    ({"space": "nb201", "steps": 3}, "steps is not used"),
    ({"space": "nb201", "cells_per_stage": 0}, "cells_per_stage"),
    ({"space": "nb201", "checkpoint_cells": True}, "checkpoint_cells must be False or 'auto'"),
    ({"space": "nb201", "primitives": ["skip_connect", "sep_conv_3x3"]}, "benchmark's ops"),
    ({"cells_per_stage": 3}, "space='darts' does not use it"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DARTS(**{"C": 4, "in_channels": 1, **kwargs})


@pytest.mark.ddp
def test_ddp_the_one_cell_alpha_moves_and_stays_identical_on_both_ranks(tmp_path):
    from tests.ddp_harness import fit_ddp

    pl.seed_everything(0)
    m = DARTS(space="nb201", C=3, cells_per_stage=1, in_channels=1, order=2, alpha_lr=0.05)
    before = m.alpha_cell.detach().clone()
    ranks = fit_ddp(m, digits(batch_size=8), tmp_path, max_epochs=1, limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert [k for k in s0 if k.startswith("alpha")] == ["alpha_cell"]
    assert not torch.allclose(s0["alpha_cell"], before)
    torch.testing.assert_close(s0["alpha_cell"], s1["alpha_cell"], rtol=0, atol=1e-7)
    for key in s0:  # the weights too (batch-norm running statistics are per rank: DDP does not sync them)
        if "running_" not in key and "num_batches_tracked" not in key:
            torch.testing.assert_close(s0[key], s1[key], rtol=1e-5, atol=1e-6, msg=key)

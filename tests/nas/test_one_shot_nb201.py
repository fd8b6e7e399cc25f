"""OneShot on the NAS-Bench-201 cell (space="nb201"): path masks per node at the paper's rate, uniform cell
sampling, one-shot scores against a forward by hand and the benchmark's network with the shared weights, a tiny
fit and ranking with its files and checkpoint, OneShotEvaluator on an nb201 checkpoint through random search,
bad input."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from lit_automl.nas import OneShot, RandomSearch
from lit_automl.nas.model_metrics import forward_flops
from lit_automl.nas.one_shot import (
    NB201_NODE_EDGES,
    RANKING_FILE,
    join_paths,
    node_slices,
    one_shot_correct,
    path_drop_prob,
    sample_path_mask,
)
from lit_automl.nas.one_shot_evaluator import OneShotEvaluator
from lit_automl.spaces import DartsCellSpace, NB201Space, count_parameters
from lit_automl.spaces.nb201 import NB201_OPS, NB201Arch, NB201Network
from lit_automl.spaces.sampling import sample_genotype
from tests.nas.test_one_shot_evaluator import Data
from tests.spaces.test_nb201_supernet import network_state_from, one_hot
from tests.trainers import quiet_trainer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(space="nb201", C=4, cells_per_stage=1, in_channels=1, num_samples=6)
ARCH = NB201Arch.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
NODES = ((0, 1), (1, 3), (3, 6))  # rows of the edges into nodes 1, 2, 3, written out from NB201_EDGES


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A OneShot NB201 supernet trained 2 steps on the synthetic images, saved as a Lightning checkpoint."""
    folder = tmp_path_factory.mktemp("one_shot_nb201")
    torch.manual_seed(0)
    trainer = quiet_trainer(folder, max_epochs=1, limit_val_batches=0, logger=False)
    trainer.fit(OneShot(**TINY, rank_after_fit=False), Data())
    trainer.save_checkpoint(folder / "one_shot.ckpt")
    return folder / "one_shot.ckpt"


def hand_weights(arch: NB201Arch, join: str) -> torch.Tensor:
    """The cell's one-hot rows with ``none`` a zero row; join="mean" written out: every node weights each of its
    non-``none`` edges 1 / (their number)."""
    w = one_hot(arch)
    w[:, 0] = 0.0  # none is no path
    for a, b in NODES:
        if join == "mean":
            w[a:b] /= max(1.0, float(w[a:b].sum()))
    return w


# --------------------------------------------------------------------------- masks


def test_node_geometry_and_masks_drop_at_r_to_the_one_over_k():
    assert NB201_NODE_EDGES == tuple(slice(a, b) for a, b in NODES)
    r, n = 0.3, 2000
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([sample_path_mask(NB201_NODE_EDGES, NB201_OPS, r, g) for _ in range(n)])  # (n, 6, 5)
    assert torch.all(masks[:, :, 0] == 0)  # none is never a path
    for (a, b), k in zip(NODES, (4, 8, 12)):  # node j reads j nodes through the 4 non-none ops
        q = path_drop_prob(r, k)
        kept = masks[:, a:b, 1:].reshape(n, k)
        assert torch.all(kept.sum(-1) >= 1)
        # Each path is dropped with q = r^(1/k); when all k are (probability r), one comes back: P(drop) = q - r / k.
        freq, expected = 1 - kept.mean().item(), q - r / k
        assert abs(freq - expected) < 5 * math.sqrt(expected * (1 - expected) / (n * k)), (k, freq, expected)
        one = (kept.sum(-1) == 1).float().mean().item()
        p_one = r + k * (1 - q) * q ** (k - 1)  # revived, or a natural single survivor
        assert abs(one - p_one) < 5 * math.sqrt(p_one * (1 - p_one) / n), (k, one, p_one)


def test_every_node_keeps_a_path_and_the_module_draws_one_mask_per_ghost():
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        mask = sample_path_mask(NB201_NODE_EDGES, NB201_OPS, 0.999, g)
        assert [int(mask[a:b].sum()) for a, b in NODES] == [1, 1, 1]  # r^(1/k) ~ 1: only the revived path
        w = join_paths(mask, NB201_NODE_EDGES, "mean")
        assert [float(w[a:b].sum()) for a, b in NODES] == [1.0, 1.0, 1.0]
    module = OneShot(**TINY, rank_after_fit=False)
    masks = module.path_masks(3, num_masks=2, rate=0.0)
    assert len(masks) == 2 and all(len(m) == 1 and m[0].shape == (6, 5) for m in masks)  # one cell type
    assert torch.all(masks[0][0][:, 1:] == 1) and torch.all(masks[0][0][:, 0] == 0)  # rate 0: every path
    torch.testing.assert_close(module.path_weights(masks[0][0]), join_paths(masks[0][0], NB201_NODE_EDGES))


def test_cells_are_sampled_uniformly_and_distinct():
    module = OneShot(**TINY, rank_after_fit=False)
    cells = module.sample_architectures(2000)
    assert len(set(cells)) == 2000 and all(isinstance(c, NB201Arch) for c in cells)
    assert cells[:5] == module.sample_architectures(5)  # seeded: the same draws again
    ops = [op for c in cells for op in c.ops]
    sd = math.sqrt(0.2 * 0.8 / len(ops))
    for name in NB201_OPS:  # NB201Space's uniform distribution: every op 1/5 on every edge, none included
        assert abs(ops.count(name) / len(ops) - 0.2) < 5 * sd, name
    # Cells with no path from input to output are sampled too, at their share of the 15,625.
    share = sum(c.is_zero for c in NB201Space()) / 15625
    zero = sum(c.is_zero for c in cells) / len(cells)
    assert share > 0 and abs(zero - share) < 5 * math.sqrt(share * (1 - share) / len(cells)), (zero, share)


# --------------------------------------------------------------------------- scoring


def randomised(module: OneShot) -> OneShot:
    torch.manual_seed(3)
    with torch.no_grad():  # values everywhere, so a path or weight used in the wrong place shows
        for p in module.model.parameters():
            p.normal_(0.0, 0.5)
    return module


@pytest.mark.parametrize("join", ["sum", "mean"])
def test_score_is_a_forward_by_hand_and_the_benchmark_network(join):
    module = randomised(OneShot(**{**TINY, "cells_per_stage": 2}, join=join, rank_after_fit=False))
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    buffers = {k: v.clone() for k, v in module.named_buffers()}
    weights = hand_weights(ARCH, join)
    (w,) = module.edge_weights(ARCH)
    torch.testing.assert_close(w, weights, rtol=0, atol=0)
    direct = copy.deepcopy(module.model).train()  # batch norm on the batch's own statistics
    logits = module.one_shot_logits(x, ARCH)
    torch.testing.assert_close(logits, direct(x, weights), rtol=1e-5, atol=1e-5)
    assert int(one_shot_correct(module, [ARCH], [(x, y)])[0]) == int((direct(x, weights).argmax(-1) == y).sum())
    for k, v in module.named_buffers():  # scoring leaves the running statistics alone
        assert torch.equal(v, buffers[k]), k
    if join == "sum":  # one-hot weights: the benchmark's network of the cell with the shared weights
        network = NB201Network(ARCH, C=4, N=2, num_classes=10, in_channels=1)
        network.load_state_dict(network_state_from(module.model, ARCH, network), strict=False)
        torch.testing.assert_close(logits, network.train()(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- fit, ranking, checkpoint


def test_a_tiny_fit_ranks_nb201_cells_and_writes_arch_strings(tmp_path):
    torch.manual_seed(0)
    module = OneShot(**TINY)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=0, logger=False, default_root_dir=tmp_path)
    trainer.fit(module, Data())
    assert len(module.last_masks) == 1 and len(module.last_masks[0]) == 1
    ranking = module.ranking
    cells = [entry.genotype for entry in ranking]
    assert len(ranking) == 6 and set(cells) == set(module.sample_architectures(6))
    correct, total = module.evaluate_architectures(cells, Data().val_dataloader())
    assert [e.correct for e in ranking] == correct and total == 24
    assert [e.correct for e in ranking] == sorted(correct, reverse=True) and module.genotype() == cells[0]
    lines = [json.loads(line) for line in (tmp_path / RANKING_FILE).read_text().splitlines()]
    assert [NB201Arch.parse(d["genotype"]) for d in lines] == cells
    assert (tmp_path / "genotype.txt").read_text().strip() == str(cells[0])
    assert NB201Space().from_json(tmp_path / "genotype.json") == cells[0]
    trainer.save_checkpoint(tmp_path / "ranked.ckpt")
    loaded = OneShot.load_from_checkpoint(tmp_path / "ranked.ckpt")
    assert loaded.ranking == ranking and loaded.genotype() == cells[0]


def test_evaluator_on_an_nb201_checkpoint_through_random_search(checkpoint, tmp_path):
    evaluator = OneShotEvaluator(str(checkpoint), Data, batches=2)
    assert isinstance(evaluator.space, NB201Space) and (evaluator.space.C, evaluator.space.N) == (4, 1)
    module = OneShot.load_from_checkpoint(checkpoint)
    search = RandomSearch(evaluator, children_per_step=2, budget=1, reward="final", steps_per_epoch=2,
                          storage=f"sqlite:///{tmp_path / 'children.db'}", study_name="s", seed=0)
    quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=None).fit(search)
    assert len(search.history) == 4
    cells = [evaluator.space.from_json(record["architecture"]) for record in search.history]
    correct, total = module.evaluate_architectures(cells, Data().val_dataloader(), max_batches=2)
    for record, cell, c in zip(search.history, cells, correct):
        assert record["reward"] == record["val_acc"] == c / total  # OneShot's own ranking code, the same counts
        network, metrics = NB201Network(cell, C=4, N=1, num_classes=10, in_channels=1), evaluator.evaluate(cell)
        assert metrics["correct"] == c and metrics["params"] == count_parameters(network, exclude_auxiliary=False)
        assert metrics["flops"] == forward_flops(network, (1, 8, 8)) > 0
    assert isinstance(search.best_architecture(), NB201Arch)
    wide = OneShotEvaluator(checkpoint, Data, batches=1, space=NB201Space(C=6, N=2)).evaluate(ARCH)
    assert wide["params"] == count_parameters(NB201Network(ARCH, C=6, N=2, num_classes=10, in_channels=1))


def test_bad_input(checkpoint):
    nb201 = OneShot(**TINY, rank_after_fit=False)
    darts = OneShot(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, rank_after_fit=False)
    genotype = sample_genotype(2, 2, darts.primitives)
    with pytest.raises(ValueError, match=r"NAS-Bench-201 cells \(space='nb201'\): it scores an NB201Arch, got Genotype"):
        nb201.edge_weights(genotype)
    with pytest.raises(ValueError, match=r"DARTS cells \(space='darts'\): it scores a Genotype, got NB201Arch"):
        darts.edge_weights(ARCH)
    small = OneShot(**TINY, primitives=["none", "skip_connect", "nor_conv_3x3"], rank_after_fit=False)
    with pytest.raises(ValueError, match=r"edge 0->2 has op 'avg_pool_3x3', which the supernet does not have"):
        small.edge_weights(ARCH)
    assert all(set(c.ops) <= {"none", "skip_connect", "nor_conv_3x3"} for c in small.sample_architectures(20))
    with pytest.raises(ValueError, match=r"does not use it .*layers|layers is not used"):
        OneShot(**TINY, layers=3)
    for bad in (0, [], [slice(2, 1)], "3", True):
        with pytest.raises(ValueError, match="steps|nodes"):
            node_slices(bad)
    with pytest.raises(ValueError, match=r"trained with space='nb201' scores NAS-Bench-201 cells: space must be an "
                                         r"NB201Space, got DartsCellSpace"):
        OneShotEvaluator(checkpoint, Data, space=DartsCellSpace(steps=2, multiplier=2))
    with pytest.raises(ValueError):
        OneShotEvaluator(checkpoint, Data, batches=1).evaluate(genotype)

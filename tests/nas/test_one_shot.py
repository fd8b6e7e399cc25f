"""One-shot search with path dropout: masks, rate ramp, architecture sampling, one-shot evaluation,
ranking files, L2 on used paths only, resume, DDP, bad input."""

import copy
import csv
import json
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.nn.parallel import DistributedDataParallel

from lit_automl.nas.one_shot import (
    RANKING_FILE,
    OneShot,
    join_paths,
    path_drop_prob,
    ramped_drop_rate,
    sample_path_mask,
)
from lit_automl.spaces.sampling import genotype_edge_weights, sample_genotype
from lit_automl.spaces import DARTS_OPS, Genotype
from lit_automl.spaces.networks import NetworkCIFAR
from tests.ddp_harness import fit_ddp
from tests.resume_harness import run_resumed

TINY = dict(C=4, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, num_samples=6)


pytestmark = pytest.mark.usefixtures("single_thread")


class Synthetic(pl.LightningDataModule):
    def __init__(self, n: int = 32, n_val: int = 24, batch_size: int = 8, seed: int = 0):
        super().__init__()
        self.n, self.n_val, self.batch_size, self.seed = n, n_val, batch_size, seed

    def _loader(self, n: int, offset: int):
        g = torch.Generator().manual_seed(self.seed + offset)
        x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=self.batch_size)

    def train_dataloader(self):
        return self._loader(self.n, 0)

    def val_dataloader(self):
        return self._loader(self.n_val, 1000)


class RecordMasks(pl.Callback):
    """Masks used at every training step, and (per rank, at fit end) the ranking, to a file."""

    def __init__(self, path=None):
        self.path, self.masks = path, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.masks[trainer.global_step - 1] = [[m.clone() for m in pair] for pair in pl_module.last_masks]

    def on_fit_end(self, trainer, pl_module):
        if self.path is not None:
            torch.save({"masks": self.masks, "ranking": [e.to_dict() for e in pl_module.ranking]},
                       f"{self.path}/record{trainer.global_rank}.pt")


def trainer(tmp_path, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0, "logger": False, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def hand_weights(genotype, steps=2, prims=DARTS_OPS):
    """Edge weights for a genotype built independently of the module's helper."""
    rows = [(i, j) for i in range(steps) for j in range(i + 2)]
    out = []
    for cell in (genotype.normal, genotype.reduce):
        w = torch.zeros(len(rows), len(prims))
        for i, node in enumerate(cell):
            for op, j in node:
                w[rows.index((i, j)), prims.index(op)] = 1.0
        out.append(w)
    return out


# --------------------------------------------------------------------------- masks


def test_per_path_drop_rate_is_r_to_the_one_over_k():
    r, n = 0.3, 3000
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([sample_path_mask(2, DARTS_OPS, r, g) for _ in range(n)])  # (n, 5, 8)
    for rows, k in ((slice(0, 2), 14), (slice(2, 5), 21)):
        q = path_drop_prob(r, k)
        assert q == pytest.approx(r ** (1 / k)) and q ** k == pytest.approx(r)
        kept = masks[:, rows, 1:].reshape(n, k)
        # Each path is dropped with q; when all k are, one comes back: P(drop) = q - r / k.
        freq = 1 - kept.mean().item()
        expected = q - r / k
        sd = math.sqrt(expected * (1 - expected) / (n * k))
        assert abs(freq - expected) < 5 * sd, (k, freq, expected)
        # The revival rule fires with probability r: exactly one path kept that often, plus the
        # natural single survivors k (1 - q) q^(k-1).
        one = (kept.sum(-1) == 1).float().mean().item()
        p_one = r + k * (1 - q) * q ** (k - 1)
        assert abs(one - p_one) < 5 * math.sqrt(p_one * (1 - p_one) / n)


def test_every_node_keeps_a_path_and_none_is_never_one():
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        mask = sample_path_mask(3, DARTS_OPS, 0.999, g)
        assert torch.all(mask[:, 0] == 0)  # none
        assert [int(mask[a:b].sum() >= 1) for a, b in ((0, 2), (2, 5), (5, 9))] == [1, 1, 1]
    full = sample_path_mask(3, DARTS_OPS, 0.0, g)
    assert torch.all(full[:, 1:] == 1) and torch.all(full[:, 0] == 0)
    # join="mean": each node averages its kept paths; "sum" leaves the 0/1 mask.
    w = join_paths(mask, 3, "mean")
    assert [round(float(w[a:b].sum()), 6) for a, b in ((0, 2), (2, 5), (5, 9))] == [1.0, 1.0, 1.0]
    assert torch.equal((w > 0).float(), mask) and torch.equal(join_paths(mask, 3, "sum"), mask)


def test_masks_depend_only_on_seed_and_step():
    a, b, c = OneShot(**TINY, seed=3), OneShot(**TINY, seed=3), OneShot(**TINY, seed=4)
    m5 = a.path_masks(5, num_masks=2, rate=0.5)
    torch.testing.assert_close(m5, b.path_masks(5, num_masks=2, rate=0.5))
    assert not torch.equal(m5[0][0], a.path_masks(6, rate=0.5)[0][0])
    assert not torch.equal(m5[0][0], c.path_masks(5, rate=0.5)[0][0])
    assert not torch.equal(m5[0][0], m5[1][0])  # ghost batches get their own masks
    torch.manual_seed(123)  # the global RNG plays no part
    torch.testing.assert_close(m5, a.path_masks(5, num_masks=2, rate=0.5))


def test_rate_schedule_ramps_linearly_and_is_logged_per_epoch(tmp_path):
    assert [ramped_drop_rate(t, 5, 0.4) for t in range(6)] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.4])
    assert ramped_drop_rate(0, 1, 0.4) == 0.4
    m = OneShot(**TINY, drop_rate=0.3, rank_after_fit=False)
    assert m.drop_rate_at(2, total_steps=7) == pytest.approx(0.1)
    rec = RecordMasks()
    t = trainer(tmp_path, max_epochs=2, callbacks=[rec], logger=CSVLogger(tmp_path, name="log", version=0))
    t.fit(m, Synthetic())
    assert m.total_steps() == 4
    assert torch.all(rec.masks[0][0][0][:, 1:] == 1)  # rate 0 at step 0: every path runs
    with open(tmp_path / "log" / "version_0" / "metrics.csv") as f:
        rates = [float(row["one_shot/drop_rate"]) for row in csv.DictReader(f) if row.get("one_shot/drop_rate")]
    assert rates == pytest.approx([0.1, 0.3])  # after steps 1 and 3 of 4


# --------------------------------------------------------------------------- architectures


def test_sampled_architectures_are_valid_darts_genotypes():
    m = OneShot(**TINY)
    archs = m.sample_architectures(25)
    assert len(set(archs)) == 25 and archs == m.sample_architectures(25)
    for g in archs:
        for cell in (g.normal, g.reduce):
            for i, node in enumerate(cell):
                inputs = [j for _, j in node]
                assert len(node) == 2 and len(set(inputs)) == 2 and all(0 <= j < i + 2 for j in inputs)
                assert all(op in DARTS_OPS and op != "none" for op, _ in node)
        assert list(g.normal_concat) == [2, 3]
    net = NetworkCIFAR(archs[0], C=4, layers=3, auxiliary=False, in_channels=1)
    logits, _ = net(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10)
    # Uniform over the 7 ops and, for node 1, over the 3 input pairs.
    gen = torch.Generator().manual_seed(0)
    draws = [sample_genotype(2, 2, DARTS_OPS, gen) for _ in range(700)]
    ops = [op for g in draws for op, _ in g.flat_edges("normal")]
    for name in DARTS_OPS[1:]:
        assert abs(ops.count(name) / len(ops) - 1 / 7) < 0.03
    pairs = [tuple(j for _, j in g.normal[1]) for g in draws]
    assert {p: round(pairs.count(p) / 700, 1) for p in set(pairs)} == {(0, 1): 0.3, (0, 2): 0.3, (1, 2): 0.3}


@pytest.mark.parametrize("join, scale", [("mean", 0.5), ("sum", 1.0)])
def test_one_shot_evaluation_equals_a_direct_supernet_forward(join, scale):
    torch.manual_seed(0)
    m = OneShot(**TINY, join=join)
    g = m.sample_architectures(1)[0]
    x = torch.randn(16, 1, 8, 8)
    running = {k: v.clone() for k, v in m.model.named_buffers()}
    got = m.one_shot_logits(x, g)
    for k, v in m.model.named_buffers():
        assert torch.equal(v, running[k]), f"{k} changed"
    direct = copy.deepcopy(m.model).train()
    weights = [scale * w for w in hand_weights(g)]  # two paths per node: averaged or summed
    torch.testing.assert_close(got, direct(x, *weights))
    torch.testing.assert_close(genotype_edge_weights(g, DARTS_OPS, 2), hand_weights(g))
    # An op the architecture does not use plays no part.
    op_names = [op for op, _ in g.flat_edges("normal")]
    unused = next(k for k, name in enumerate(DARTS_OPS) if name not in op_names and name.startswith("sep"))
    with torch.no_grad():
        for p in m.model.cells[0].edges[0].ops[unused].parameters():
            p.add_(1.0)
    torch.testing.assert_close(m.one_shot_logits(x, g), got)
    # Batch-wise counts, through the dataloader path.
    loader = Synthetic(n_val=16).val_dataloader()
    (correct,), total = m.evaluate_architectures([g], loader)
    expected = sum(int((direct(xb, *weights).argmax(-1) == yb).sum()) for xb, yb in loader)
    assert (correct, total) == (expected, 16)


def test_weight_decay_touches_only_the_paths_a_step_used(tmp_path):
    torch.manual_seed(0)
    m = OneShot(**TINY, drop_rate=0.9, rank_after_fit=False)
    before = {k: v.clone() for k, v in m.model.named_parameters()}
    trainer(tmp_path, limit_train_batches=1).fit(m, Synthetic())  # one step, at rate 0.9
    w_normal, w_reduce = m.last_masks[0]
    moved = {k for k, v in m.model.named_parameters() if not torch.equal(v, before[k])}
    for c, cell in enumerate(m.model.cells):
        w = w_reduce if cell.reduction else w_normal
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge.ops):
                names = {f"cells.{c}.edges.{e}.ops.{k}.{n}" for n, _ in op.named_parameters()}
                if names:
                    assert (names <= moved) if w[e, k] else not (names & moved), (c, e, k)
    assert "classifier.weight" in moved


# --------------------------------------------------------------------------- ranking


def test_fit_ranks_sorted_and_writes_the_best(tmp_path):
    torch.manual_seed(0)
    m = OneShot(**TINY)
    with pytest.raises(RuntimeError, match="no ranking yet"):
        m.genotype()
    trainer(tmp_path).fit(m, Synthetic())
    lines = [json.loads(s) for s in (tmp_path / RANKING_FILE).read_text().splitlines()]
    assert [d["rank"] for d in lines] == list(range(1, 7)) and sorted(d["sample"] for d in lines) == list(range(6))
    keys = [(-d["accuracy"], d["sample"]) for d in lines]
    assert keys == sorted(keys)
    assert all(d["total"] == 24 and d["accuracy"] == d["correct"] / 24 for d in lines)
    best = m.genotype()
    assert Genotype.from_dict(lines[0]["genotype"]) == best == m.ranking[0].genotype
    assert Genotype.load(tmp_path / "genotype.txt") == best == Genotype.load(tmp_path / "genotype.json")
    assert (tmp_path / "genotype.png").stat().st_size > 0
    # The recorded accuracy is the one-shot accuracy of that architecture.
    (correct,), _ = m.evaluate_architectures([best], Synthetic().val_dataloader())
    assert correct == lines[0]["correct"]


def test_resume_continues_with_the_same_masks_and_ranking(tmp_path):
    # epochs=2 fixes the drop-rate ramp's length, so the interrupted fit (max_epochs=1) draws the same masks.
    records = []

    def record():
        records.append(RecordMasks())
        return [records[-1]]

    runs = run_resumed(lambda: OneShot(**TINY, drop_rate=0.5, seed=7, epochs=2), Synthetic, tmp_path,
                       {"max_epochs": 1}, callbacks=record, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    full, resumed, t, ckpt = runs.full, runs.resumed, runs.full_trainer, runs.checkpoint
    rec_full, rec_res = records[0], records[2]
    assert sorted(rec_res.masks) == [2, 3]
    for step in (2, 3):
        torch.testing.assert_close(rec_res.masks[step], rec_full.masks[step])
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    assert [e.to_dict() for e in resumed.ranking] == [e.to_dict() for e in full.ranking]
    ck = torch.load(ckpt, weights_only=False)
    assert "rng_states" in ck and ck["one_shot_ranking"] == []
    # A checkpoint written after ranking carries it.
    t.save_checkpoint(tmp_path / "ranked.ckpt")
    loaded = OneShot.load_from_checkpoint(tmp_path / "ranked.ckpt")
    assert loaded.genotype() == full.genotype()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"drop_rate": 1.0}, r"drop_rate must be a number in \[0, 1\).*got 1.0"),
    ({"drop_rate": -0.1}, r"got -0.1"),
    ({"num_samples": 0}, r"num_samples must be an int >= 1, got 0"),
    ({"ghost_batch_size": 0}, r"ghost_batch_size must be an int >= 1 or None, got 0"),
    ({"rank_batches": 2.5}, r"rank_batches must be an int >= 1 or None, got 2.5"),
    ({"seed": -1}, r"seed must be an int >= 0, got -1"),
    ({"rank_after_fit": "yes"}, r"rank_after_fit must be True or False, got 'yes'"),
    ({"w_lr": 0.0}, r"w_lr must be > 0, got 0.0"),
    ({"primitives": ["none"]}, r"other than 'none'"),
    ({"join": "max"}, r"join must be one of \('mean', 'sum'\), got 'max'"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OneShot(**{**TINY, **kwargs})


def test_bad_use(tmp_path):
    m = OneShot(**TINY)
    with pytest.raises(RuntimeError, match="attach a Trainer"):
        m.drop_rate_at(3)
    g = m.sample_architectures(1)[0]
    with pytest.raises(ValueError, match="'none' is not a path"):
        m.edge_weights(Genotype(normal=[[("none", 0)], [("skip_connect", 1)]], normal_concat=[2, 3],
                                reduce=g.reduce, reduce_concat=[2, 3]))
    with pytest.raises(ValueError, match="steps=2"):
        m.edge_weights(sample_genotype(3, 2, DARTS_OPS))
    with pytest.raises(TypeError, match=r"\(inputs, targets\)"):
        m.training_step({"x": 1}, 0)
    t = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    m.trainer = t
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:  # a one-process DDP wrapper without find_unused_parameters, as the strategy would hold it
        t.strategy.model = DistributedDataParallel(m)
        with pytest.raises(ValueError, match="find_unused_parameters=True"):
            m.on_fit_start()
    finally:
        torch.distributed.destroy_process_group()


def test_test_step_scores_the_best_ranked_architecture(tmp_path):
    torch.manual_seed(0)
    m = OneShot(**TINY)
    t = trainer(tmp_path)
    t.fit(m, Synthetic())
    loader = Synthetic().val_dataloader()
    (result,) = t.test(m, dataloaders=loader, verbose=False)
    (correct,), total = m.evaluate_architectures([m.genotype()], loader)
    assert result["test/acc"] == pytest.approx(correct / total)


# --------------------------------------------------------------------------- DDP


@pytest.mark.ddp
def test_ddp_masks_weights_and_ranking_identical_on_both_ranks(tmp_path):
    pl.seed_everything(0)
    m = OneShot(**TINY, drop_rate=0.5, ghost_batch_size=2)
    ranks = fit_ddp(m, Synthetic(batch_size=4), tmp_path, find_unused_parameters=True,
                    callbacks=[RecordMasks(str(tmp_path))], limit_train_batches=2, default_root_dir=tmp_path)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    for key, value in ranks[0]["state_dict"].items():
        if "running_" in key or "num_batches_tracked" in key:
            continue  # per-rank batch-norm averages (unused: evaluation normalises with batch statistics)
        torch.testing.assert_close(value, ranks[1]["state_dict"][key], rtol=0, atol=1e-7, msg=key)
    r0, r1 = (torch.load(tmp_path / f"record{r}.pt", weights_only=False) for r in (0, 1))
    assert sorted(r0["masks"]) == [0, 1]
    torch.testing.assert_close(r0["masks"], r1["masks"])
    assert len(r0["masks"][1]) == 2  # two ghost batches of 2 per rank batch of 4
    assert r0["ranking"] == r1["ranking"] and len(r0["ranking"]) == 6
    assert all(e["total"] == 24 for e in r0["ranking"])  # the whole validation set, shared out
    assert (tmp_path / RANKING_FILE).exists()

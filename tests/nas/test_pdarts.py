"""P-DARTS: stage transitions, skip-connect refinement, staged fits, resume, CLI, DDP, bad input."""

import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_automl.callbacks.skip_dropout import SkipDropoutDecay
from lit_automl.cli import main
from lit_automl.run_config import AutoMLCLI
from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
from lit_automl.nas.pdarts import PDARTS, fit_stages, refine_skip_connects, strongest_ops
from lit_automl.spaces import Genotype
from lit_automl.spaces.derive import derive_cell
from lit_automl.spaces.ops import DARTS_OPS
from tests.ddp_harness import fit_ddp

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TINY = dict(C=4, steps=2, multiplier=2, stem_multiplier=1, in_channels=1, alpha_lr=0.05, arch_warmup_epochs=0)
THREE = dict(TINY, stage_layers=(3, 4, 5), stage_num_ops=(8, 5, 3), stage_skip_dropout=(0.0, 0.2, 0.4))
TWO = dict(TINY, stage_layers=(3, 4), stage_num_ops=(8, 3), stage_skip_dropout=(0.0, 0.3))
EDGES = 5  # steps=2: node 0 has edges 0-1, node 1 edges 2-4


pytestmark = pytest.mark.usefixtures("single_thread")


def digits(batch_size: int = 16, seed: int = 0) -> BilevelDataModule:
    return BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=seed), seed=seed)


def trainer(root, **kw) -> pl.Trainer:
    kw = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0, "logger": False,
          "enable_checkpointing": False, **kw}
    return pl.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, num_sanity_val_steps=0, **kw)


def skips(nodes) -> int:
    return sum(op == "skip_connect" for node in nodes for op, _ in node)


def test_paper_defaults():
    m = PDARTS()
    hp = m.hparams
    assert (tuple(hp.stage_layers), tuple(hp.stage_num_ops), tuple(hp.stage_skip_dropout)) == ((5, 11, 17), (8, 5, 3), (0.0, 0.4, 0.7))
    assert (hp.C, hp.steps, hp.order, hp.arch_warmup_epochs, hp.max_skip_connects) == (16, 4, 1, 10, 2)
    assert (hp.w_lr, hp.w_lr_min, hp.w_momentum, hp.w_weight_decay, hp.grad_clip) == (0.025, 0.0, 0.9, 3e-4, 5.0)
    assert (hp.alpha_lr, tuple(hp.alpha_betas), hp.alpha_weight_decay, hp.alpha_grad_clip) == (6e-4, (0.5, 0.999), 1e-3, 5.0)
    assert (m.stage, m.num_stages, len(m.model.cells), m.alpha_normal.shape) == (0, 3, 5, (14, 8))
    assert hp.surviving_ops is None and m.model.skip_dropout == 0.0


def test_strongest_ops_keeps_exactly_the_k_strongest():
    names = [["none", "a", "b", "c"], ["p", "q", "r", "s"]]
    w = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.4, 0.4, 0.1]])
    assert strongest_ops(w, names, 2) == [["none", "b"], ["q", "r"]]  # 'none' competes; column order kept
    assert strongest_ops(w, names, 1) == [["none"], ["q"]]  # tie: the lower column survives
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.4"):
        strongest_ops(w, names, 5)


def test_next_stage_is_a_fresh_network_over_the_strongest_ops():
    torch.manual_seed(0)
    m = PDARTS(**THREE)
    with torch.no_grad():
        m.alpha_normal.copy_(torch.randn(EDGES, 8) * 3)
        m.alpha_reduce.copy_(torch.randn(EDGES, 8) * 3)
    s1 = m.next_stage()
    for cell, alpha in m.alphas.items():
        top = torch.topk(F.softmax(alpha.detach(), -1), 5, dim=1).indices
        assert s1.surviving_ops[cell] == [[DARTS_OPS[j] for j in sorted(row.tolist())] for row in top]
    assert (s1.stage, len(s1.model.cells), s1.alpha_normal.shape) == (1, 4, (EDGES, 5))
    assert s1.alpha_normal.abs().max() < 0.01  # fresh alphas
    assert not torch.equal(s1.model.stem[0].weight, m.model.stem[0].weight)  # fresh weights
    assert s1.model.skip_dropout == pytest.approx(0.2) and s1.initial_skip_dropout == pytest.approx(0.2)
    with torch.no_grad():
        s1.alpha_normal.copy_(torch.randn(EDGES, 5))
    s2 = s1.next_stage()
    assert s2.alpha_normal.shape == (EDGES, 3) and len(s2.model.cells) == 5 and s2.is_last_stage
    for cell in ("normal", "reduce"):
        assert all(set(b) <= set(a) for a, b in zip(s1.surviving_ops[cell], s2.surviving_ops[cell]))
    assert s2.next_stage() is None


def reference_refine(probs, ops, steps, M):
    """The authors' loop, written independently: zero 'none', build the cell (best op per edge, two
    strongest edges per node), zero the weakest chosen skip-connect, repeat."""
    probs = [[0.0 if n == "none" else p for p, n in zip(row, names)] for row, names in zip(probs, ops)]
    while True:
        nodes, start = [], 0
        for i in range(steps):
            n = i + 2
            best = [max(range(len(ops[start + j])), key=lambda c: probs[start + j][c]) for j in range(n)]
            keep = sorted(range(n), key=lambda j: probs[start + j][best[j]])[-2:]
            nodes.append([(start + j, ops[start + j][best[j]], j) for j in keep])
            start += n
        chosen = [(probs[e][ops[e].index("skip_connect")], e) for node in nodes for e, op, _ in node if op == "skip_connect"]
        if len(chosen) <= M:
            return [sorted((op, j) for _, op, j in node) for node in nodes]
        _, e = min(chosen)
        probs[e][ops[e].index("skip_connect")] = 0.0


@pytest.mark.parametrize("seed", range(40))
def test_refinement_keeps_exactly_M_strongest_skip_connects(seed):
    rng = random.Random(seed)
    steps, M = 4, 2
    ops = [rng.sample([o for o in DARTS_OPS if o not in ("none", "skip_connect")], 2) + ["skip_connect"] for _ in range(14)]
    for e in rng.sample(range(14), 3):
        ops[e][0] = "none"
    bias = [0.4, 1.0, 1.5, 3.0][seed % 4]  # from no skip-connect to eight in the unrefined cell
    w = torch.tensor([[rng.random() * (bias if n == "skip_connect" else 1.0) for n in names] for names in ops])
    w = F.softmax(w, dim=1)
    plain = derive_cell(w, ops, steps)
    refined = refine_skip_connects(w, ops, steps, M)
    assert skips(refined) == min(skips(plain), M)
    if skips(plain) <= M:
        assert refined == plain
    assert all(op != "none" for node in refined for op, _ in node)
    assert [sorted(node) for node in refined] == reference_refine(w.tolist(), ops, steps, M)


def test_refinement_replaces_the_weakest_skip_by_the_next_best_op_or_edge():
    ops = [["none", "sep_conv_3x3", "skip_connect"]] * EDGES
    w = torch.tensor([
        [0.0, 0.1, 0.9],   # node 0, input 0: skip 0.9
        [0.0, 0.3, 0.7],   # node 0, input 1: skip 0.7 -> weakest skip, falls back to sep_conv_3x3
        [0.0, 0.2, 0.8],   # node 1, input 0: skip 0.8
        [0.0, 0.05, 0.75], # node 1, input 1: skip 0.75 -> second weakest; its edge then loses to input 2
        [0.0, 0.6, 0.1],   # node 1, input 2: sep_conv 0.6
    ])
    assert skips(derive_cell(w, ops, 2)) == 4
    assert refine_skip_connects(w, ops, 2, 2) == [
        (("skip_connect", 0), ("sep_conv_3x3", 1)),
        (("skip_connect", 0), ("sep_conv_3x3", 2)),
    ]
    assert skips(refine_skip_connects(w, ops, 2, 0)) == 0
    with pytest.raises(ValueError, match="max_skip_connects must be an int >= 0, got -1"):
        refine_skip_connects(w, ops, 2, -1)


def test_genotype_refined_in_the_last_stage_only_and_never_none():
    m = PDARTS(**TWO)
    prims = list(DARTS_OPS)
    with torch.no_grad():
        m.alpha_normal.zero_()
        m.alpha_normal[:, prims.index("skip_connect")] = 3.0
        m.alpha_normal[:, prims.index("none")] = 5.0
    g0 = m.genotype()
    assert all(op == "skip_connect" for node in g0.normal for op, _ in node)  # intermediate: plain derivation
    last = m.at_stage(1, {c: [["none", "skip_connect", "sep_conv_3x3"]] * EDGES for c in ("normal", "reduce")})
    with torch.no_grad():
        last.alpha_normal.copy_(torch.tensor([[5.0, 3.0, 1.0]] * EDGES))
    g1 = last.genotype()
    assert isinstance(g1, Genotype) and "none" not in g1.op_names()
    assert skips(g1.normal) == 2 and skips(last.at_stage(1, last.surviving_ops).genotype().normal) <= 2
    unrefined = PDARTS(**{**TWO, "max_skip_connects": None, "stage": 1, "surviving_ops": last.surviving_ops})
    unrefined.load_state_dict(last.state_dict())
    assert skips(unrefined.genotype().normal) == 4


def test_fit_stages_runs_every_stage_and_checkpoints_record_stage_and_ops(tmp_path):
    pl.seed_everything(0)
    seen = []

    def make_trainer(stage):
        seen.append(stage)
        return trainer(tmp_path / f"stage_{stage}", enable_checkpointing=True)

    final = fit_stages(PDARTS(**THREE), make_trainer, digits())
    assert seen == [0, 1, 2] and final.stage == 2 and final.alpha_normal.shape == (EDGES, 3)
    assert final.alpha_normal.abs().max() > 0.01  # the alphas moved in the last stage
    assert skips(final.genotype().normal) <= 2
    for stage in (1, 2):
        (ckpt,) = (tmp_path / f"stage_{stage}" / "checkpoints").glob("*.ckpt")
        hp = torch.load(ckpt, weights_only=True)["hyper_parameters"]
        assert hp["stage"] == stage and len(hp["surviving_ops"]["normal"][0]) == (5, 3)[stage - 1]
    assert hp["surviving_ops"] == final.surviving_ops
    loaded = PDARTS.load_from_checkpoint(ckpt)  # the hyperparameters rebuild the stage's supernet
    assert loaded.stage == 2 and loaded.surviving_ops == final.surviving_ops
    torch.testing.assert_close(loaded.alpha_normal, final.alpha_normal)


def test_resume_a_stage_from_its_checkpoint_continues_identically(tmp_path):
    ops = {c: [["max_pool_3x3", "skip_connect", "sep_conv_3x3"]] * EDGES for c in ("normal", "reduce")}

    def run(max_epochs, ckpt=None):
        pl.seed_everything(3)
        stage0 = PDARTS(**{**TWO, "epochs": 3})
        t = trainer(tmp_path, max_epochs=max_epochs, callbacks=[SkipDropoutDecay()])
        if ckpt is None:
            module = stage0.at_stage(1, ops)
            t.fit(module, digits(seed=5))
            return module, t
        return fit_stages(stage0, lambda stage: t, digits(seed=5), ckpt_path=ckpt), t

    full, _ = run(3)
    part, t = run(2)
    ckpt = tmp_path / "stage1.ckpt"
    t.save_checkpoint(ckpt)
    resumed, t2 = run(3, ckpt=str(ckpt))
    assert resumed.stage == 1 and resumed.surviving_ops == ops
    for a, b in zip(resumed.arch_parameters(), full.arch_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(part.alpha_normal, full.alpha_normal)
    assert t2.current_epoch == 3 and resumed.model.skip_dropout == pytest.approx(full.model.skip_dropout)


def tiny_cli_args(arch_warmup_epochs: int, **trainer: int) -> list:
    """Command-line overrides of the digits recipe: a two-stage tiny search and a short trainer."""
    return ["--model.init_args.C=4", "--model.init_args.steps=2", "--model.init_args.multiplier=2",
            "--model.init_args.stage_layers=[3,4]", "--model.init_args.stage_num_ops=[8,3]",
            "--model.init_args.stage_skip_dropout=[0.0,0.3]", f"--model.init_args.arch_warmup_epochs={arch_warmup_epochs}",
            *(f"--trainer.{k}={v}" for k, v in trainer.items()),
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_cli_runs_every_stage_writes_the_genotype_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = tiny_cli_args(arch_warmup_epochs=1, max_epochs=2, limit_train_batches=2, limit_val_batches=1)
    main(["fit", "-c", str(RECIPES / "pdarts_digits.yaml"), *tiny])
    run = tmp_path / "runs" / "pdarts_digits" / "search"
    assert sorted(p.name for p in run.iterdir()) == ["stage_0", "stage_1"]
    final = Genotype.load(run / "stage_1" / "genotype.txt")
    assert skips(final.normal) <= 2 and "none" not in final.op_names()
    assert (run / "stage_1" / "genotype.png").exists() and (run / "stage_0" / "config.yaml").exists()
    metrics = (run / "stage_1" / "metrics.csv").read_text().splitlines()[0]
    assert "pdarts/skip_dropout" in metrics and "pdarts/stage" in metrics
    ckpt = run / "stage_1" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["stage"] == 1
    main(["fit", "-c", str(RECIPES / "pdarts_digits.yaml"), *tiny, f"--ckpt_path={ckpt}"])  # already complete
    resumed = tmp_path / "runs" / "pdarts_digits" / "search_2"  # a new folder: the first run is kept
    assert Genotype.load(resumed / "stage_1" / "genotype.txt") == final
    assert not (resumed / "stage_0").exists()  # stage 0 not rerun
    assert sorted(p.name for p in run.iterdir()) == ["stage_0", "stage_1"]


def test_stages_from_a_cli_built_without_a_subcommand(tmp_path, monkeypatch):
    """``AutoMLCLI(run=False)`` (scripts, benchmarks): ``stage_trainer`` reads the top-level trainer config."""
    monkeypatch.chdir(tmp_path)
    tiny = tiny_cli_args(arch_warmup_epochs=0, max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "pdarts_digits.yaml"), *tiny], run=False)
    final = fit_stages(cli.model, cli.stage_trainer, datamodule=cli.datamodule)
    assert final.stage == 1 and final.is_last_stage
    run = tmp_path / "runs" / "pdarts_digits" / "search"
    assert sorted(p.name for p in run.iterdir()) == ["stage_0", "stage_1"]


@pytest.mark.ddp
def test_ddp_later_stage_alphas_stay_identical(tmp_path):
    pl.seed_everything(0)
    rng = random.Random(0)
    ops = {c: [sorted(rng.sample(DARTS_OPS, 3), key=DARTS_OPS.index) for _ in range(EDGES)] for c in ("normal", "reduce")}
    m = PDARTS(**{**TWO, "stage": 1, "surviving_ops": ops})
    before = m.alpha_normal.detach().clone()
    ranks = fit_ddp(m, digits(batch_size=8), tmp_path, callbacks=[SkipDropoutDecay()], limit_train_batches=2)
    assert ranks[0]["fingerprints"] != ranks[1]["fingerprints"], "ranks must see different data"
    s0, s1 = ranks[0]["state_dict"], ranks[1]["state_dict"]
    assert s0["alpha_normal"].shape == (EDGES, 3) and not torch.allclose(s0["alpha_normal"], before)
    for key in ("alpha_normal", "alpha_reduce"):
        torch.testing.assert_close(s0[key], s1[key], rtol=0, atol=1e-7)


GOOD_OPS = {c: [["none", "skip_connect", "sep_conv_3x3"]] * EDGES for c in ("normal", "reduce")}


@pytest.mark.parametrize("kwargs, match", [
    ({"stage_num_ops": (8, 8)}, r"stage_num_ops must shrink .* got \[8, 8\]"),
    ({"stage_layers": (4, 3)}, r"stage_layers must increase .* got \[4, 3\]"),
    ({"stage_num_ops": (9, 3)}, r"more candidates than the 8 primitives.*must be 8"),
    ({"stage_num_ops": (7, 3)}, r"fewer candidates than the 8 primitives.*must be 8"),
    ({"stage_num_ops": (8, 1)}, r"stage_num_ops must hold ints >= 2"),
    ({"stage_skip_dropout": (0.0,)}, r"one entry per stage, got lengths 2, 2 and 1"),
    ({"stage_skip_dropout": (0.0, 1.0)}, r"rates in \[0, 1\)"),
    ({"stage_layers": ()}, r"stage_layers must be a non-empty sequence"),
    ({"primitives": []}, r"at least one operation"),
    ({"max_skip_connects": -1}, r"max_skip_connects must be an int >= 0 .* got -1"),
    ({"stage": 2}, r"stage must be an int in 0\.\.1 \(2 stages\), got 2"),
    ({"surviving_ops": GOOD_OPS}, r"stage 0 searches the full op set"),
    ({"stage": 1}, r"stage 1 needs surviving_ops"),
    ({"stage": 1, "surviving_ops": {c: [["none", "skip_connect"]] * EDGES for c in ("normal", "reduce")}},
     r"must list 3 ops \(stage 1 searches 3 per edge\)"),
    ({"stage": 1, "surviving_ops": {c: [["none", "skip_connect", "conv_9x9"]] * EDGES for c in ("normal", "reduce")}},
     r"ops \['conv_9x9'\] outside primitives"),
    ({"stage": 1, "surviving_ops": {"normal": GOOD_OPS["normal"]}}, r"got \['normal'\]"),
    ({"alpha_grad_clip": -1.0}, r"alpha_grad_clip must be a number >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PDARTS(**{**TWO, **kwargs})


def test_a_checkpoint_without_stage_is_refused(tmp_path):
    path = tmp_path / "darts.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"C": 4}}, path)
    with pytest.raises(ValueError, match=r"not a P-DARTS stage checkpoint.*\['stage', 'surviving_ops'\]"):
        PDARTS(**TWO).for_checkpoint(path)

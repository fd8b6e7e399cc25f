"""DARTSRecurrent: the DARTS recurrent-cell search (Liu et al., ICLR 2019, Sec. 3.1.2) on a tiny PTB-format corpus."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call

import lit_automl.nas.darts_rnn as darts_rnn
from lit_automl.callbacks import GenotypeLogger
from lit_automl.datamodules import PTBDataModule
from lit_automl.nas import DARTSRecurrent
from lit_automl.spaces.op_names import get_recurrent_op_set
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype
from tests.nas.test_retrain_rnn import write_corpus
from tests.resume_harness import run_resumed

pytestmark = pytest.mark.usefixtures("single_thread")

NO_DROPOUT = dict(dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0, dropout_e=0.0)
TINY = dict(emsize=8, nhid=8, **NO_DROPOUT)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def search_data(tmp_path: Path, **kwargs) -> PTBDataModule:
    folder = write_corpus(tmp_path / "ptb")
    return PTBDataModule(str(folder), **{"batch_size": 4, "eval_batch_size": 2, "bptt": 6, "search": True, **kwargs})


def trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, max_epochs=1)
    return pl.Trainer(**{**options, **kwargs})


def windows(seed: int, vocab: int = 13, steps: int = 5, batch: int = 3):
    """A training and a validation window with random starting hidden states (float64 models)."""
    g = torch.Generator().manual_seed(seed)

    def one():
        tokens = torch.randint(0, vocab, (steps + 1, batch), generator=g)
        return tokens[:-1], tokens[1:], 0.5 * torch.randn(batch, 8, generator=g, dtype=torch.float64)

    return one(), one()


def tiny_double(**kwargs) -> DARTSRecurrent:
    torch.manual_seed(0)
    module = DARTSRecurrent(vocab_size=13, alpha_init_std=0.5, **{**TINY, "steps": 3, **kwargs}).double()
    module.train()
    return module


def val_nll(module: DARTSRecurrent, params, window) -> torch.Tensor:
    """NLL of the language model at ``params`` (names of named_parameters) on ``window``, softmax(alpha) with grad."""
    data, target, hidden = window
    buffers = {n: b.clone() for n, b in module.model.named_buffers()}
    with module.cell_weights(module.edge_weights()[0]):
        out = functional_call(module.model, (params, buffers), (data, hidden))
    return F.cross_entropy(out.logits.reshape(-1, 13), target.reshape(-1))


# ---------------------------------------------------------------------- settings


def test_paper_defaults_and_the_optimisers():
    hp = DARTSRecurrent().hparams
    assert (hp.emsize, hp.nhid, hp.steps, hp.primitives, hp.order) == (300, 300, 8, "darts_rnn", 2)
    assert (hp.dropout, hp.dropout_h, hp.dropout_x, hp.dropout_i, hp.dropout_e) == (0.75, 0.25, 0.75, 0.2, 0.0)
    assert (hp.lr, hp.weight_decay, hp.clip, hp.alpha, hp.beta) == (20.0, 5e-7, 0.25, 0.0, 1e-3)
    assert (hp.arch_lr, hp.arch_weight_decay, list(hp.arch_betas), hp.alpha_init_std) == (3e-3, 1e-3, [0.9, 0.999], 1e-3)
    module = DARTSRecurrent(vocab_size=20, **TINY)
    assert get_recurrent_op_set("darts_rnn") == ("none", "tanh", "relu", "sigmoid", "identity")
    assert module.arch_alpha.shape == (36, 5) and module.alphas["recurrent"] is module.arch_alpha
    w_opt, a_opt = module.configure_optimizers()
    weight_ids = {id(p) for g in w_opt.param_groups for p in g["params"]}
    assert id(module.arch_alpha) not in weight_ids  # the architecture stays out of the weight optimiser
    assert weight_ids == {id(p) for p in module.model.parameters()}
    assert [p for g in a_opt.param_groups for p in g["params"]] == [module.arch_alpha]
    assert type(w_opt) is torch.optim.SGD and w_opt.param_groups[0]["momentum"] == 0
    assert (w_opt.param_groups[0]["lr"], w_opt.param_groups[0]["weight_decay"]) == (20.0, 5e-7)
    assert type(a_opt) is torch.optim.Adam and a_opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert (a_opt.param_groups[0]["lr"], a_opt.param_groups[0]["weight_decay"]) == (3e-3, 1e-3)
    assert "arch_alpha" in module.state_dict() and not any(k.startswith("_pending") for k in module.state_dict())


def test_alpha_starts_small_and_random():
    torch.manual_seed(0)
    alpha = DARTSRecurrent(vocab_size=20, **TINY).arch_alpha.detach()
    assert 0.5e-3 < alpha.std().item() < 2e-3 and alpha.abs().max() < 1e-2


# ---------------------------------------------------------------------- architecture gradient


def test_first_order_gradient_is_autograds_of_the_validation_nll_and_advances_the_validation_stream():
    module = tiny_double(order=1)
    train, val = windows(1)
    result = module.architecture_gradient(train, val, 0.0)
    out = module(val[0], val[2])
    direct = torch.autograd.grad(F.cross_entropy(out.logits.reshape(-1, 13), val[1].reshape(-1)), module.arch_alpha)[0]
    torch.testing.assert_close(result.grads[0], direct, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(result.val_aux, out.hidden.detach())
    assert result.grads[0].abs().sum() > 0


def test_second_order_matches_the_exact_unrolled_gradient_of_the_clipped_sgd_step():
    """With the clip not binding, grad_alpha L_val(w - xi (grad_w L_train + wd w)) differentiated exactly
    through the step equals the finite-difference second order (float64, small eps)."""
    module = tiny_double(unrolled_eps=1e-6, clip=1e6)
    opt = torch.optim.SGD(module.model.parameters(), lr=1.0, weight_decay=0.01)
    train, val = windows(2)
    xi = 1.0
    result = module.architecture_gradient(train, val, xi, opt)

    names = [n for n, _ in module.model.named_parameters()]
    w = [p.detach().clone().requires_grad_() for _, p in module.model.named_parameters()]
    g = torch.autograd.grad(val_nll(module, dict(zip(names, w)), train), w, create_graph=True)
    unrolled = [wi - xi * (gi + 0.01 * wi) for wi, gi in zip(w, g)]
    exact = torch.autograd.grad(val_nll(module, dict(zip(names, unrolled)), val), module.arch_alpha)[0]
    first = module.architecture_gradient(train, val, 0.0).grads[0]
    torch.testing.assert_close(result.grads[0], exact, rtol=1e-5, atol=1e-9)
    assert (first - exact).norm() > 1e-2 * exact.norm()  # the second-order term matters here


def test_the_search_step_uses_this_windows_learning_rate_and_the_clipped_plain_sgd(tmp_path, monkeypatch):
    calls = []
    real = darts_rnn.architecture_gradient

    def spy(*args, **kwargs):
        calls.append((args[8], args[9], kwargs["grad_transform"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(darts_rnn, "architecture_gradient", spy)
    data = search_data(tmp_path, variable_length=True, seed=3)
    data.setup()
    scales = [b["train"]["lr_scale"] for b in data.search_windows()][:3]
    data = search_data(tmp_path, variable_length=True, seed=3)
    trainer(tmp_path, limit_train_batches=3, limit_val_batches=0).fit(DARTSRecurrent(lr=2.0, **TINY), datamodule=data)
    assert [xi for xi, _, _ in calls] == pytest.approx([2.0 * s for s in scales]) and len(set(scales)) > 1
    opt = calls[0][1]
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0
    big = [torch.full((4,), 1.0)]
    assert torch.cat(calls[0][2](big)).norm().item() == pytest.approx(0.25, rel=1e-5)  # clipped to clip=0.25
    calls.clear()
    order1 = DARTSRecurrent(order=1, **TINY)
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=0).fit(order1, datamodule=search_data(tmp_path))
    assert [xi for xi, _, _ in calls] == [0.0, 0.0]


def test_architecture_passes_leave_weights_and_running_statistics_untouched():
    module = tiny_double()
    opt = torch.optim.SGD(module.model.parameters(), lr=1.0, weight_decay=0.01)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.architecture_gradient(*windows(3), 1.0, opt)
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert module.model.cell.weights is None  # no graph left on the cell


# ---------------------------------------------------------------------- the search


def test_a_short_search_moves_alpha_carries_both_streams_and_derives_a_valid_cell(tmp_path):
    pl.seed_everything(0)
    module = DARTSRecurrent(arch_lr=0.05, **TINY)
    fit = trainer(tmp_path, max_epochs=2, limit_val_batches=2, callbacks=[GenotypeLogger(tmp_path / "g", plot=False)])
    fit.fit(module, datamodule=search_data(tmp_path))
    assert module.architecture_changed() is True
    assert module.model.vocab_size == module.hparams.vocab_size == 13
    assert module._hidden is not None and module._search_hidden is not None
    assert not torch.equal(module._hidden, module._search_hidden)
    genotype = module.genotype()
    assert isinstance(genotype, RecurrentGenotype) and len(genotype.recurrent) == 8
    assert list(genotype.concat) == list(range(1, 9))
    for i, (op, pred) in enumerate(genotype.recurrent):
        assert op in ("tanh", "relu", "sigmoid", "identity") and 0 <= pred <= i
    metrics = fit.callback_metrics
    assert math.isfinite(metrics["val/loss"]) and metrics["val/ppl"].item() == pytest.approx(math.exp(metrics["val/loss"]))
    assert "search/arch_loss" in metrics and "arch/entropy_recurrent" in metrics
    history = (tmp_path / "g" / "genotypes.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in history] == ["epoch 0", "epoch 1"]
    assert RecurrentGenotype.load(tmp_path / "g" / "genotype.txt") == genotype


def test_the_weight_step_leaves_alpha_alone(tmp_path):
    """With a zero architecture learning rate only the weight steps run an update: alpha must stay where it
    started (its zero gradient from the weight step must not reach it) while the weights move."""
    pl.seed_everything(1)
    module = DARTSRecurrent(arch_lr=1e-12, arch_weight_decay=0.0, vocab_size=13, **TINY)
    alpha, weights = module.arch_alpha.detach().clone(), module.model.cell.W0.detach().clone()
    trainer(tmp_path, limit_train_batches=3, limit_val_batches=0).fit(module, datamodule=search_data(tmp_path))
    torch.testing.assert_close(module.arch_alpha.detach(), alpha, rtol=0, atol=1e-10)
    assert not torch.equal(module.model.cell.W0.detach(), weights)


def test_resume_equals_the_uninterrupted_run(tmp_path):
    folder = write_corpus(tmp_path / "ptb")

    def data():
        return PTBDataModule(str(folder), batch_size=4, eval_batch_size=2, bptt=6, variable_length=True, search=True)

    runs = run_resumed(lambda: DARTSRecurrent(emsize=8, nhid=8, dropout=0.2, dropout_x=0.1, arch_lr=0.05), data,
                       tmp_path / "runs", {"max_epochs": 1}, max_epochs=2, limit_val_batches=2)
    torch.testing.assert_close(runs.full.arch_alpha, runs.resumed.arch_alpha, rtol=0, atol=0)
    for (name, a), b in zip(runs.full.named_parameters(), runs.resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert runs.full.architecture_changed() and runs.resumed.genotype() == runs.full.genotype()
    rebuilt = DARTSRecurrent.load_from_checkpoint(runs.checkpoint)
    assert rebuilt.model.vocab_size == 13 and rebuilt.architecture_changed() is True


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"order": 3}, r"order must be 1 \(first order\) or 2 \(second order\), got 3"),
    ({"lr": -1.0}, r"lr must be a number > 0, got -1.0"),
    ({"arch_lr": 0}, r"arch_lr must be a number > 0, got 0"),
    ({"clip": 0}, r"clip must be a number > 0, got 0"),
    ({"dropout_x": 1.0}, r"dropout_x must be a probability in \[0, 1\), got 1.0"),
    ({"arch_betas": (0.9,)}, r"arch_betas must be two numbers in \[0, 1\) \(Adam's betas\), got \[0.9\]"),
    ({"arch_betas": (0.9, 1.5)}, r"arch_betas must hold numbers in \[0, 1\) \(Adam's betas\), got \(0.9, 1.5\)"),
    ({"order": 1, "unrolled_eps": 0.1}, r"order=1 does not use it .*got unrolled_eps=0.1"),
    ({"steps": 1}, r"steps must be an int >= 2"),
    ({"primitives": ["none"]}, r"primitives must be unique recurrent op names"),
    ({"vocab_size": 1}, r"vocab_size must be an int >= 2 or None, got 1"),
])
def test_bad_arguments_name_the_value_and_what_is_allowed(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DARTSRecurrent(**kwargs)


def test_batches_of_the_wrong_form_are_refused_with_what_is_expected(tmp_path):
    plain = PTBDataModule(str(write_corpus(tmp_path / "ptb")), batch_size=4, eval_batch_size=2, bptt=6)
    with pytest.raises(TypeError, match=r"DARTSRecurrent expects paired batches \{'train': LMBatch, 'val': LMBatch\} "
                                         r"\(PTBDataModule\(search=True\)\); got a mapping with keys "
                                         r"\['data', 'lr_scale', 'target'\]"):
        trainer(tmp_path, limit_train_batches=1).fit(DARTSRecurrent(**TINY), datamodule=plain)
    module = DARTSRecurrent(vocab_size=13, **TINY)
    window = {"data": torch.zeros(3, 2, dtype=torch.long), "target": torch.zeros(3, 2, dtype=torch.long), "lr_scale": 1.0}
    with pytest.raises(TypeError, match=r"batch\['val'\] must be an LMBatch \{'data', 'target', 'lr_scale'\}, got tuple"):
        module.split_batch({"train": window, "val": (window["data"], window["target"])})
    with pytest.raises(ValueError, match=r"batch\['train'\]: data and target must both be \(time, batch\) token ids, "
                                         r"got \(6,\) and \(3, 2\)"):
        module.split_batch({"train": {**window, "data": torch.zeros(6, dtype=torch.long)}, "val": window})
    with pytest.raises(TypeError, match=r"got list"):
        module.split_batch([window, window])


def test_a_vocabulary_other_than_the_datamodules_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"DARTSRecurrent was built with vocab_size=99 but the datamodule "
                                         r"PTBDataModule has vocab_size=13"):
        trainer(tmp_path).fit(DARTSRecurrent(vocab_size=99, **TINY), datamodule=search_data(tmp_path))


# ---------------------------------------------------------------------- recipes


def test_the_paper_recipe_carries_the_papers_search_settings(tmp_path, monkeypatch):
    from lit_automl.run_config import AutoMLCLI

    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "darts_rnn_ptb.yaml")], run=False)
    hp, data = cli.model.hparams, cli.datamodule
    assert isinstance(cli.model, DARTSRecurrent)
    assert (hp.emsize, hp.nhid, hp.steps, hp.primitives, hp.order) == (300, 300, 8, "darts_rnn", 2)
    assert (hp.dropout, hp.dropout_h, hp.dropout_x, hp.dropout_i, hp.dropout_e) == (0.75, 0.25, 0.75, 0.2, 0.0)
    assert (hp.lr, hp.weight_decay, hp.clip, hp.alpha, hp.beta) == (20.0, 5e-7, 0.25, 0.0, 1e-3)
    assert (hp.arch_lr, hp.arch_weight_decay, list(hp.arch_betas)) == (3e-3, 1e-3, [0.9, 0.999])
    assert (data.batch_size, data.eval_batch_size, data.bptt, data.search) == (256, 10, 35, True)
    assert data.expected_vocab_size == 10_000 and cli.trainer.max_epochs == 50
    assert any(isinstance(c, GenotypeLogger) for c in cli.trainer.callbacks)


def test_the_tiny_recipe_runs_end_to_end_on_a_tiny_corpus(tmp_path, monkeypatch):
    from lit_automl.cli import main

    monkeypatch.chdir(tmp_path)
    folder = write_corpus(tmp_path / "ptb")
    main(["fit", "-c", str(RECIPES / "darts_rnn_tiny.yaml"), f"--data.init_args.data_dir={folder}",
          "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / "darts_rnn_tiny" / "search"
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    ppl = [float(row.split(",")[header.index("val/ppl")]) for row in lines[1:] if row.split(",")[header.index("val/ppl")]]
    assert len(ppl) == 3 and all(math.isfinite(v) and 1 < v < 100 for v in ppl)
    genotype = RecurrentGenotype.load(run / "genotype.txt")
    history = (run / "genotypes.txt").read_text().splitlines()
    assert len(genotype.recurrent) == 8 and len(history) == 3 and history[-1] == f"epoch 2: {genotype}"
    checkpoint = next((run / "checkpoints").glob("*.ckpt"))
    assert DARTSRecurrent.load_from_checkpoint(checkpoint).architecture_changed() is True


def test_a_diverged_search_stops_with_what_went_non_finite(tmp_path):
    pl.seed_everything(0)
    module = DARTSRecurrent(batch_norm=False, lr=50.0, clip=100.0, **TINY)  # the cell's states explode without it
    with pytest.raises(FloatingPointError, match=r"DARTSRecurrent search diverged at epoch \d+, batch \d+: training NLL "
                                                 r".*lower lr=50.0 or clip=100.0, or keep batch_norm=True"):
        trainer(tmp_path, max_epochs=3, limit_val_batches=0).fit(module, datamodule=search_data(tmp_path))


# ---------------------------------------------------------------------- DDP


class RecordTokens(pl.Callback):
    """Per rank: the token sums of the training and the architecture's windows, saved to a file."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.sums: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sums.append((int(batch["train"]["data"].sum()), int(batch["val"]["data"].sum())))

    def on_train_end(self, trainer, pl_module):
        torch.save(self.sums, Path(self.dirpath) / f"tokens{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_ranks_search_disjoint_columns_and_keep_identical_alpha_and_weights(tmp_path):
    from tests.ddp_harness import fit_ddp

    folder = write_corpus(tmp_path / "ptb")

    def data():
        return PTBDataModule(str(folder), batch_size=4, eval_batch_size=2, bptt=6, variable_length=True, search=True)

    probe = data()
    probe.setup()
    torch.manual_seed(0)
    module = DARTSRecurrent(vocab_size=probe.vocab_size, arch_lr=0.05, **TINY)
    initial = module.arch_alpha.detach().clone()
    ranks = fit_ddp(module, data(), tmp_path, callbacks=[RecordTokens(str(tmp_path))], limit_train_batches=3)
    tokens = [torch.load(tmp_path / f"tokens{r}.pt") for r in range(2)]
    assert len(tokens[0]) == len(tokens[1]) == 3
    assert all(a[0] != b[0] and a[1] != b[1] for a, b in zip(*tokens)), "ranks must read different columns"
    states = [r["state_dict"] for r in ranks]
    assert not torch.equal(states[0]["arch_alpha"], initial)
    for key, value in states[0].items():
        if "running_" in key or key.endswith("num_batches_tracked"):
            continue  # batch-norm statistics are each rank's own (DDP broadcasts rank 0's before each forward)
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0, msg=key)

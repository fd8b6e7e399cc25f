"""RetrainRNN: the DARTS / AWD-LSTM language-model training on a tiny Penn Treebank-format corpus."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_automl.callbacks import NTASGD
from lit_automl.datamodules import PTBDataModule
from lit_automl.nas.retrain_rnn import RetrainRNN
from tests.resume_harness import run_resumed

SENTENCES = [["the", "cat", "sat", "on", "a", "mat"], ["a", "dog", "ran", "to", "the", "park"], ["N", "<unk>", "N"]]
TINY = dict(emsize=8, nhid=8, dropout=0.0, dropout_h=0.0, dropout_x=0.0, dropout_i=0.0, dropout_e=0.0)


def write_corpus(folder: Path, seed: int = 0) -> Path:
    """Tiny files in the ptb.{train,valid,test}.txt format (leading space, one sentence per line): three
    sentences in random order, so there is something to learn; every word appears in training."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", 60), ("valid", 12), ("test", 12)):
        chosen = SENTENCES if split == "train" else []
        chosen = chosen + [rng.choice(SENTENCES) for _ in range(lines - len(chosen))]
        text = "".join(" " + " ".join(words) + " \n" for words in chosen)
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


def corpus(tmp_path: Path, **kwargs) -> PTBDataModule:
    return PTBDataModule(str(write_corpus(tmp_path / "ptb")), **{"batch_size": 4, "eval_batch_size": 2,
                                                                  "test_batch_size": 1, "bptt": 6, **kwargs})


def trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, max_epochs=1)
    return pl.Trainer(**{**options, **kwargs})


def test_paper_defaults_and_the_vocabulary_read_from_the_datamodule(tmp_path):
    hp = RetrainRNN().hparams
    assert (hp.emsize, hp.nhid, hp.lr, hp.clip, hp.weight_decay, hp.alpha, hp.beta, hp.nonmono) == \
        (850, 850, 20.0, 0.25, 8e-7, 0.0, 1e-3, 5)
    assert (hp.dropout, hp.dropout_h, hp.dropout_x, hp.dropout_i, hp.dropout_e) == (0.75, 0.25, 0.75, 0.2, 0.1)
    assert hp.genotype.startswith("Genotype(recurrent=[('sigmoid', 0), ('relu', 1)")
    data = corpus(tmp_path, variable_length=False)
    model = RetrainRNN(**TINY)
    trainer(tmp_path, limit_train_batches=1, limit_val_batches=1).fit(model, datamodule=data)
    assert model.model.vocab_size == data.vocab_size == model.hparams.vocab_size
    assert [type(c) for c in model.configure_callbacks()] == [NTASGD]
    assert RetrainRNN(nonmono=None, vocab_size=20, **TINY).configure_callbacks() == []


def test_one_step_is_sgd_at_lr_times_the_windows_scale(tmp_path):
    """No dropout, no clipping in effect, no TAR: the update is -lr * lr_scale * grad of the NLL."""
    pl.seed_everything(0)
    data = corpus(tmp_path, variable_length=True, bptt=8)
    data.setup("fit")
    model = RetrainRNN(vocab_size=data.vocab_size, lr=0.5, clip=1e9, beta=0.0, weight_decay=0.0, nonmono=None, **TINY)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference = corpus(tmp_path, variable_length=True, bptt=8)  # its own pass counter: the fit's first window
    reference.setup("fit")
    batch = next(iter(reference.train_dataloader()))
    assert batch["lr_scale"] != 1.0  # a variable-length window
    out = model.model(batch["data"])
    nll = F.cross_entropy(out.logits.reshape(-1, data.vocab_size), batch["target"].reshape(-1))
    grads = dict(zip(before, torch.autograd.grad(nll, list(model.parameters()))))
    trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=data)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * batch["lr_scale"] * grads[name])
    assert model.optimizers().param_groups[0]["lr"] == 0.5  # restored after the step


def test_validation_perplexity_is_exp_of_the_token_weighted_nll_with_carried_state(tmp_path):
    pl.seed_everything(1)
    data = corpus(tmp_path, variable_length=False)
    model = RetrainRNN(nonmono=None, **TINY)
    fit = trainer(tmp_path, limit_train_batches=2)
    fit.fit(model, datamodule=data)
    model.eval()
    total, tokens, hidden = 0.0, 0, None
    with torch.no_grad():
        for batch in data.val_dataloader():
            out = model.model(batch["data"], hidden)
            hidden = out.hidden
            total += F.cross_entropy(out.logits.reshape(-1, data.vocab_size), batch["target"].reshape(-1),
                                     reduction="sum").item()
            tokens += batch["target"].numel()
    assert fit.callback_metrics["val/loss"].item() == pytest.approx(total / tokens, rel=1e-5)
    assert fit.callback_metrics["val/ppl"].item() == pytest.approx(math.exp(total / tokens), rel=1e-5)
    result = fit.test(model, datamodule=data, verbose=False)[0]
    assert math.isfinite(result["test/ppl"]) and result["test/ppl"] == pytest.approx(math.exp(result["test/loss"]))


def test_training_lowers_the_validation_perplexity(tmp_path):
    pl.seed_everything(2)
    data = corpus(tmp_path, variable_length=False)
    model = RetrainRNN(nonmono=None, **TINY)  # the paper's lr 20 and clip 0.25
    first = trainer(tmp_path).validate(model, datamodule=data, verbose=False)[0]["val/ppl"]
    assert first == pytest.approx(data.vocab_size, rel=0.05)  # near uniform over the vocabulary at the start
    fit = trainer(tmp_path, max_epochs=12)
    fit.fit(model, datamodule=data)
    assert fit.callback_metrics["val/ppl"].item() < first / 2


def test_resume_equals_the_uninterrupted_run_and_the_checkpoint_rebuilds(tmp_path):
    folder = write_corpus(tmp_path / "ptb")

    def data():
        return PTBDataModule(str(folder), batch_size=4, eval_batch_size=2, bptt=6, variable_length=True)

    runs = run_resumed(lambda: RetrainRNN(nonmono=0, dropout=0.2, dropout_e=0.1, emsize=8, nhid=8), data,
                       tmp_path / "runs", {"max_epochs": 2}, max_epochs=3, limit_val_batches=2)
    for (name, a), b in zip(runs.full.named_parameters(), runs.resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    rebuilt = RetrainRNN.load_from_checkpoint(runs.checkpoint)
    assert rebuilt.model.vocab_size == runs.full.model.vocab_size


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0}, r"lr must be a number > 0, got 0"),
    ({"clip": -1}, r"clip must be a number > 0, got -1"),
    ({"beta": -0.1}, r"beta must be a number >= 0, got -0.1"),
    ({"nonmono": -1}, r"nonmono must be an int >= 0 or None, got -1"),
    ({"vocab_size": 1}, r"vocab_size must be an int >= 2 or None, got 1"),
    ({"genotype": "DARTS_V9"}, r"DARTS_V9"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RetrainRNN(**kwargs)


def test_a_vocabulary_other_than_the_datamodules_is_refused(tmp_path):
    model = RetrainRNN(vocab_size=99, **TINY)
    with pytest.raises(ValueError, match=r"built with vocab_size=99 but the datamodule PTBDataModule has "
                                         r"vocab_size=13: set vocab_size=13 or leave it None"):
        trainer(tmp_path).fit(model, datamodule=corpus(tmp_path))


RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_the_paper_recipe_carries_the_papers_settings(tmp_path, monkeypatch):
    from lit_automl.run_config import AutoMLCLI

    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "retrain_rnn_ptb.yaml")], run=False)
    hp, data = cli.model.hparams, cli.datamodule
    assert (hp.emsize, hp.nhid, hp.lr, hp.clip, hp.weight_decay, hp.beta, hp.nonmono) == (850, 850, 20.0, 0.25, 8e-7,
                                                                                         1e-3, 5)
    assert (hp.dropout, hp.dropout_h, hp.dropout_x, hp.dropout_i, hp.dropout_e) == (0.75, 0.25, 0.75, 0.2, 0.1)
    assert (data.batch_size, data.eval_batch_size, data.test_batch_size, data.bptt) == (64, 10, 1, 35)
    assert data.variable_length and data.expected_vocab_size == 10_000 and cli.trainer.max_epochs == 8000


def test_the_tiny_recipe_runs_end_to_end_on_a_tiny_corpus(tmp_path, monkeypatch):
    from lit_automl.cli import main

    monkeypatch.chdir(tmp_path)
    folder = write_corpus(tmp_path / "ptb")
    main(["fit", "-c", str(RECIPES / "retrain_rnn_tiny.yaml"), f"--data.init_args.data_dir={folder}",
          "--trainer.enable_progress_bar=false"])
    lines = (tmp_path / "runs" / "rnn_tiny" / "retrain" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    ppl = [float(row.split(",")[header.index("val/ppl")]) for row in lines[1:] if row.split(",")[header.index("val/ppl")]]
    assert len(ppl) == 3 and all(math.isfinite(v) for v in ppl) and ppl[-1] < ppl[0]


class RecordEvaluation(pl.Callback):
    """Per rank: the validation loss and the token sums of the training windows, saved to a file."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.token_sums: list = []
        self.val_loss = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.token_sums.append(int(batch["data"].sum()))

    def on_validation_end(self, trainer, pl_module):
        self.val_loss = float(trainer.callback_metrics["val/loss"])

    def on_train_end(self, trainer, pl_module):
        torch.save({"tokens": self.token_sums, "val_loss": self.val_loss},
                   Path(self.dirpath) / f"eval{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_ranks_train_on_disjoint_columns_stay_identical_and_share_one_validation_perplexity(tmp_path):
    from tests.ddp_harness import fit_ddp

    folder = write_corpus(tmp_path / "ptb")
    data = PTBDataModule(str(folder), batch_size=2, eval_batch_size=2, bptt=6, variable_length=True)
    data.setup()
    model = RetrainRNN(vocab_size=data.vocab_size, nonmono=None, **TINY)
    ranks = fit_ddp(model, PTBDataModule(str(folder), batch_size=2, eval_batch_size=2, bptt=6, variable_length=True),
                    tmp_path, callbacks=[RecordEvaluation(str(tmp_path))], limit_train_batches=3,
                    limit_val_batches=None)
    records = [torch.load(tmp_path / f"eval{r}.pt") for r in range(2)]
    assert records[0]["tokens"] != records[1]["tokens"], "ranks must read different columns"
    for key, value in ranks[0]["state_dict"].items():
        torch.testing.assert_close(value, ranks[1]["state_dict"][key], rtol=0, atol=0, msg=key)
    assert records[0]["val_loss"] == records[1]["val_loss"]
    # the reduced validation loss is the single-process one over all 2 x 2 columns
    single = RetrainRNN(vocab_size=data.vocab_size, nonmono=None, **TINY)
    single.load_state_dict(ranks[0]["state_dict"])
    whole = PTBDataModule(str(folder), batch_size=4, eval_batch_size=4, bptt=6)
    result = trainer(tmp_path).validate(single, datamodule=whole, verbose=False)[0]
    assert result["val/loss"] == pytest.approx(records[0]["val_loss"], rel=1e-5)

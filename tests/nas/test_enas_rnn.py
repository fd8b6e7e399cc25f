"""ENASRecurrent: ENAS recurrent-cell search on (tiny) Penn Treebank files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_automl.datamodules import PTBDataModule
from lit_automl.nas.enas import ENAS
from lit_automl.nas.enas_rnn import ENASRecurrent
from lit_automl.spaces import ENASMicroSpace, ENASRecurrentSpace
from lit_automl.spaces.enas_rnn import ENASRecurrentArch
from tests.nas.test_retrain_rnn import TINY, trainer, write_corpus
from tests.resume_harness import run_resumed

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def search_data(folder: Path, **kwargs) -> PTBDataModule:
    return PTBDataModule(str(folder), **{"batch_size": 4, "eval_batch_size": 2, "bptt": 6, "search": True, **kwargs})


def module(**kwargs) -> ENASRecurrent:
    return ENASRecurrent(ENASRecurrentSpace(num_nodes=4), **{**TINY, "num_aggregate": 2, "derive_samples": 3,
                                                            "controller_hidden": 8, **kwargs})


def first_batch(folder: Path):
    data = search_data(folder)
    data.setup("fit")
    return data, next(iter(data.train_dataloader()))


def test_the_reward_is_c_over_the_childs_perplexity_on_the_validation_window_and_leaves_the_stream(tmp_path):
    data, batch = first_batch(write_corpus(tmp_path / "ptb"))
    m = module(vocab_size=data.vocab_size, dropout=0.5, dropout_e=0.3, reward_constant=80.0)
    tokens = m.sample_children(1, 0, 1)[0][0]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    reward = m.score(tokens, batch["val"])
    # by hand: the child's LM from a zero state, dropout off
    m.model.eval()
    m.model.cell.architecture = m.space.decode(tokens)
    out = m.model(batch["val"]["data"])
    nll = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), batch["val"]["target"].reshape(-1))
    assert not reward.requires_grad and float(reward) == pytest.approx(80.0 / math.exp(float(nll)), rel=1e-5)
    assert m._val_hidden is None, "scoring must not advance the validation stream"
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)


def test_a_search_updates_omega_every_step_and_the_controller_every_num_aggregate_samples(tmp_path):
    folder = write_corpus(tmp_path / "ptb")
    data = search_data(folder)
    data.setup("fit")
    m = module(vocab_size=data.vocab_size, num_aggregate=3, controller_lr=0.05)
    controller0 = [p.detach().clone() for p in m.controller.parameters()]
    omega0 = [p.detach().clone() for p in m.model.parameters()]
    trainer(tmp_path, limit_train_batches=5, limit_val_batches=0).fit(m, datamodule=data)
    assert m.search_steps == 5
    assert m.policy.baseline.num_updates == 1 and len(m.pending) == 2  # 5 samples: one update of 3, 2 pending
    assert any(not torch.equal(a, b) for a, b in zip(controller0, m.controller.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(omega0, m.model.parameters()))
    assert m.best_tokens is not None and m._val_hidden is not None
    arch = m.best_architecture
    assert isinstance(arch, ENASRecurrentArch) and arch.num_nodes == 4
    written = json.loads((tmp_path / "architecture.json").read_text())
    assert m.space.from_json(written) == arch


def test_the_learning_rate_decays_per_epoch_from_lr_decay_start(tmp_path):
    folder = write_corpus(tmp_path / "ptb")
    seen = []

    class RecordLR(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(pl_module.hparams.lr * pl_module.lr_factor())

    trainer(tmp_path, max_epochs=4, limit_train_batches=1, limit_val_batches=0, callbacks=[RecordLR()]).fit(
        module(lr_decay=0.5, lr_decay_start=2), datamodule=search_data(folder))
    assert seen == [20.0, 20.0, 10.0, 5.0]


def test_derive_keeps_the_best_scoring_sample_and_validation_scores_it(tmp_path):
    data, batch = first_batch(write_corpus(tmp_path / "ptb"))
    m = module(vocab_size=data.vocab_size, derive_samples=4)
    tokens, score = m.derive(batch["val"], key=7)
    candidates, _ = m.sample_children(4, 7, 2)
    scores = [float(m.score(t, batch["val"])) for t in candidates]
    assert score == pytest.approx(max(scores)) and tokens == candidates[scores.index(max(scores))]


def test_resume_equals_the_uninterrupted_search(tmp_path):
    folder = write_corpus(tmp_path / "ptb")
    runs = run_resumed(lambda: module(dropout=0.2, controller_lr=0.05), lambda: search_data(folder, variable_length=True),
                       tmp_path / "runs", {"max_epochs": 2}, max_epochs=3, limit_val_batches=2)
    for (name, a), b in zip(runs.full.named_parameters(), runs.resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert runs.full.policy_state() == runs.resumed.policy_state()


def test_bad_input_is_refused_with_what_is_allowed(tmp_path):
    with pytest.raises(TypeError, match=r"space must be an ENASRecurrentSpace .*ENASMicroSpace.*lit_automl.nas.ENAS"):
        ENASRecurrent(ENASMicroSpace())
    with pytest.raises(TypeError, match=r"ENASRecurrentSpace.*searched by lit_automl.nas.ENASRecurrent"):
        ENAS(ENASRecurrentSpace())
    with pytest.raises(ValueError, match=r"lr must be a number > 0, got 0"):
        module(lr=0)
    with pytest.raises(ValueError, match=r"reward_constant must be a number > 0, got -80"):
        module(reward_constant=-80)
    with pytest.raises(ValueError, match=r"num_aggregate must be an int >= 1, got 0"):
        module(num_aggregate=0)
    with pytest.raises(ValueError, match=r"num_nodes must be an int >= 2.*got 1"):
        ENASRecurrentSpace(num_nodes=1)
    with pytest.raises(ValueError, match=r"'nodes' list"):
        ENASRecurrentSpace().from_json({"cells": []})
    with pytest.raises(ValueError, match=r"activation"):
        ENASRecurrentSpace(num_nodes=2).from_json({"nodes": [[0, "tanh"], [1, "gelu"]]})
    folder = write_corpus(tmp_path / "ptb")
    m = module()
    with pytest.raises(TypeError, match=r"paired windows .*PTBDataModule\(search=True\)"):
        trainer(tmp_path, limit_train_batches=1).fit(m, datamodule=PTBDataModule(str(folder), batch_size=4, bptt=6))


def test_the_paper_recipe_carries_the_search_settings(tmp_path, monkeypatch):
    from lit_automl.run_config import AutoMLCLI

    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "enas_rnn_ptb.yaml")], run=False)
    m, data = cli.model, cli.datamodule
    hp = m.hparams
    assert m.space.num_nodes == 12 and (hp.emsize, hp.nhid) == (720, 720)
    assert (hp.dropout, hp.dropout_h, hp.dropout_x, hp.dropout_i, hp.dropout_e) == (0.75, 0.25, 0.75, 0.0, 0.25)
    assert (hp.lr, hp.clip, hp.weight_decay, hp.lr_decay, hp.lr_decay_start) == (20.0, 0.25, 1e-7, 0.95, 12)
    assert (m.settings["temperature"], m.settings["tanh_constant"], m.settings["entropy_weight"],
            m.settings["num_aggregate"], hp.reward_constant) == (5.0, 2.5, 1e-3, 10, 80.0)
    assert (hp.controller_hidden, hp.controller_lr, hp.baseline_decay) == (100, 3.5e-4, 0.99)
    assert m.controller.tanh_constants == [2.5] * len(m.controller.decisions) and m.controller.temperature == 5.0
    assert (data.batch_size, data.bptt, data.search, data.expected_vocab_size) == (20, 35, True, 10_000)
    assert cli.trainer.max_epochs == 100


def test_the_tiny_recipe_runs_end_to_end_on_a_tiny_corpus(tmp_path, monkeypatch):
    from lit_automl.cli import main

    monkeypatch.chdir(tmp_path)
    folder = write_corpus(tmp_path / "ptb")
    main(["fit", "-c", str(RECIPES / "enas_rnn_tiny.yaml"), f"--data.init_args.data_dir={folder}",
          "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / "enas_rnn_tiny" / "search"
    arch = ENASRecurrentSpace(num_nodes=4).from_json(json.loads((run / "architecture.json").read_text()))
    assert arch.num_nodes == 4
    assert len(val_ppl(run)) == 3 and all(math.isfinite(v) for v in val_ppl(run))
    # the derived cell is retrained from scratch by the final-training recipe, from the file the search wrote
    main(["fit", "-c", str(RECIPES / "retrain_rnn_tiny.yaml"), f"--data.init_args.data_dir={folder}",
          f"--model.init_args.genotype={run / 'architecture.json'}", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false"])
    retrained = tmp_path / "runs" / "rnn_tiny" / "retrain"
    assert len(val_ppl(retrained)) == 1 and math.isfinite(val_ppl(retrained)[0])
    from lit_automl.nas.retrain_rnn import RetrainRNN

    checkpoint = next((retrained / "checkpoints").glob("*.ckpt"))
    assert RetrainRNN.load_from_checkpoint(checkpoint).genotype == arch


def val_ppl(run: Path) -> list:
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("val/ppl")
    return [float(row.split(",")[column]) for row in lines[1:] if row.split(",")[column]]


def test_retrain_rnn_builds_a_derived_enas_cell_with_only_its_matrices(tmp_path):
    from lit_automl.nas.retrain_rnn import RetrainRNN
    from lit_automl.spaces.enas_rnn import ENASRecurrentCell

    space = ENASRecurrentSpace(num_nodes=4)
    arch = space.decode([0, 0, 1, 1, 2, 0, 3])  # tanh; 2 <- 1 relu; 3 <- 2 identity; 4 <- 1 sigmoid
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps(space.to_json(arch)))
    torch.manual_seed(0)
    model = RetrainRNN(str(path), vocab_size=10, nonmono=None, **TINY)
    names = sorted(n for n, _ in model.model.cell.named_parameters())
    assert names == ["w_edges.2_1_relu", "w_edges.3_2_identity", "w_edges.4_1_sigmoid", "w_first.1_0_tanh"]
    ninp = nhid = TINY["nhid"]
    expected = 10 * ninp + 10 + (ninp + nhid) * 2 * nhid + 3 * nhid * 2 * nhid  # embedding (tied), bias, W_1, 3 edges
    assert sum(p.numel() for p in model.parameters()) == expected
    # the same numbers as the shared cell running that child with the same matrices
    shared = ENASRecurrentCell(ninp, nhid, 4, 0.0, 0.0)
    for name, p in model.model.cell.named_parameters():
        dict(shared.named_parameters())[name].data.copy_(p)
    shared.architecture = arch
    x, h = torch.randn(5, 3, ninp), torch.randn(3, nhid)
    torch.testing.assert_close(model.model.cell(x, h)[0], shared(x, h)[0])
    with pytest.raises(ValueError, match=r"fixed to .*no weights for"):
        model.model.cell.architecture = space.decode([1, 0, 1, 1, 2, 0, 3])
    assert RetrainRNN(model.hparams.genotype, vocab_size=10, **TINY).genotype == arch  # the kept JSON resolves
    with pytest.raises(ValueError, match=r"node 2 activation"):
        RetrainRNN('{"nodes": [[0, "tanh"], [1, "gelu"]]}', vocab_size=10)


class RecordChildren(pl.Callback):
    """Per rank: the child sampled for omega at every step (the module's keyed draw) and the training window's
    token sum, saved to a file with the policy state."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.children: list = []
        self.tokens: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.children.append(pl_module.sample_children(1, pl_module.search_steps, 0)[0][0])
        self.tokens.append(int(batch["train"]["data"].sum()))

    def on_train_end(self, trainer, pl_module):
        torch.save({"children": self.children, "policy": pl_module.policy_state(), "tokens": self.tokens},
                   Path(self.dirpath) / f"children{trainer.global_rank}.pt")


@pytest.mark.ddp
def test_ddp_ranks_sample_the_same_children_and_stay_identical(tmp_path):
    from tests.ddp_harness import fit_ddp

    folder = write_corpus(tmp_path / "ptb")
    data = search_data(folder, batch_size=2)
    data.setup("fit")
    ranks = fit_ddp(module(vocab_size=data.vocab_size, controller_lr=0.05), search_data(folder, batch_size=2), tmp_path,
                    find_unused_parameters=True, callbacks=[RecordChildren(str(tmp_path))], limit_train_batches=4,
                    default_root_dir=tmp_path)
    records = [torch.load(tmp_path / f"children{r}.pt") for r in range(2)]
    assert records[0]["children"] == records[1]["children"] and len(records[0]["children"]) == 4
    assert records[0]["policy"] == records[1]["policy"], "rewards are averaged over ranks, so baselines agree"
    assert records[0]["tokens"] != records[1]["tokens"], "ranks must read different columns"
    for key, value in ranks[0]["state_dict"].items():
        torch.testing.assert_close(value, ranks[1]["state_dict"][key], rtol=0, atol=0, msg=key)

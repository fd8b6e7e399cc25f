"""The ENAS recipes: the CIFAR-10 micro search carries the paper's and the authors' settings and runs on tiny
CIFAR files; the digits recipes run end to end through ``lit-automl fit`` and write the derived architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lit_automl.callbacks import GenotypeLogger
from lit_automl.cli import main
from lit_automl.datamodules import BilevelDataModule, CIFAR10DataModule, DigitsDataModule
from lit_automl.nas.enas import ENAS
from lit_automl.run_config import AutoMLCLI
from lit_automl.spaces import ENASMacroSpace, ENASMicroSpace, Genotype
from lit_automl.spaces.enas_macro import ENASMacroArchitecture, ENASMacroNetwork
from tests.datamodules.test_cifar import _build_tree

pytestmark = pytest.mark.usefixtures("single_thread")

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_the_cifar_recipe_carries_the_paper_and_authors_search_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "enas_micro_cifar10.yaml")], run=False)
    m, data, trainer = cli.model, cli.datamodule, cli.trainer
    assert isinstance(m, ENAS) and isinstance(m.space, ENASMicroSpace) and m.kind == "micro"
    # cifar10_micro_search.sh: child_num_cells 5, child_num_layers 6, child_out_filters 20
    assert (m.space.num_nodes, m.space.num_layers, m.space.C) == (5, 6, 20)
    assert len(m.model.cells) == 8 and [i for i, c in enumerate(m.model.cells) if c.reduction] == [2, 5]
    assert len(m.controller.decisions) == 2 * 4 * 5
    hp = m.hparams
    # omega: lr 0.05 -> 0.0005 cosine, T_0 10, T_mul 2, l2 1e-4, keep_prob 0.9; Nesterov 0.9, clip 5 (paper Sec. 3.2)
    assert (hp.w_lr, hp.w_lr_min, hp.lr_T_0, hp.lr_T_mul) == (0.05, 0.0005, 10, 2)
    assert (hp.w_momentum, hp.w_nesterov, hp.grad_clip, hp.keep_prob) == (0.9, True, 5.0, 0.9)
    (w_opt, c_opt), _ = m.configure_optimizers()
    assert w_opt.param_groups[0]["weight_decay"] == 1e-4 and m.model.dropout.p == pytest.approx(0.1)
    # controller: the paper's 1 x 100 LSTM, Adam 3.5e-4, init 0.1; the script's tanh 1.1 / 2.5, entropy 1e-4,
    # num_aggregate 10; main.py's baseline decay 0.99 (controller_bl_dec)
    assert (hp.controller_hidden, hp.controller_layers, hp.controller_lr, hp.controller_init_range) == (100, 1, 3.5e-4, 0.1)
    assert (c_opt.param_groups[0]["betas"], c_opt.param_groups[0]["eps"]) == ((0.0, 0.999), 1e-3)
    assert m.settings["entropy_weight"] == 1e-4 and m.settings["num_aggregate"] == 10
    assert m.settings["skip_weight"] == 0.0 and hp.baseline_decay == 0.99 and hp.derive_samples == 10
    ops = [d.name.rsplit(".", 1)[-1].startswith("op") for d in m.controller.decisions]
    assert m.controller.tanh_constants == [pytest.approx(1.1 / 2.5) if op else 1.1 for op in ops]
    # data: 45k / 5k (data_utils.read_data, num_valids=5000), batch 160, crop + flip, no Cutout; 150 epochs
    assert isinstance(data, BilevelDataModule) and isinstance(data.datamodule, CIFAR10DataModule)
    assert data.train_portion == 0.9 and int(50_000 * data.train_portion) == 45_000
    assert data.mode == "max_size_cycle", "an epoch is one pass over the weights' 45k, as the authors'"
    assert data.batch_size == 160 and data.datamodule.augment and data.datamodule.cutout_length == 0
    assert trainer.max_epochs == 150
    assert any(isinstance(c, GenotypeLogger) for c in trainer.callbacks)
    assert any(isinstance(c, ModelCheckpoint) and c.save_last for c in trainer.callbacks)


def test_the_cifar_recipe_runs_at_full_size_on_tiny_cifar_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _build_tree(tmp_path / "cifar", 10)  # 15 training images: 13 for omega, 2 for the controller
    main(["fit", "-c", str(RECIPES / "enas_micro_cifar10.yaml"), f"--data.init_args.datamodule.init_args.data_dir="
          f"{tmp_path / 'cifar'}", "--data.init_args.datamodule.init_args.num_workers=0", "--trainer.accelerator=cpu",
          "--trainer.devices=1", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
          "--trainer.limit_val_batches=1", "--model.init_args.derive_samples=2", *QUIET])
    run = tmp_path / "runs" / "enas_micro_cifar10" / "search"
    genotype = Genotype.load(run / "genotype.txt")
    assert Genotype.from_dict(json.loads((run / "architecture.json").read_text())) == genotype
    assert ENASMicroSpace().encode(genotype)  # a cell of the paper's space: 5 nodes over the 5 ENAS ops
    assert (run / "checkpoints" / "last.ckpt").exists()


@pytest.mark.parametrize("name,space", [("enas_micro_digits", ENASMicroSpace), ("enas_macro_digits", ENASMacroSpace)])
def test_the_digits_recipe_parses_with_its_small_settings(name, space, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / f"{name}.yaml")], run=False)
    m = cli.model
    assert isinstance(m, ENAS) and isinstance(m.space, space)
    assert isinstance(cli.datamodule.datamodule, DigitsDataModule) and m.hparams.in_channels == 1
    assert m.hparams.controller_lr == 0.01 and m.settings["num_aggregate"] == 5  # raised in YAML, not in code
    assert 1 <= cli.trainer.max_epochs <= 15
    if space is ENASMacroSpace:
        assert m.settings["skip_weight"] == 0.8  # the authors' penalty stays on
    else:
        assert any(isinstance(c, GenotypeLogger) for c in cli.trainer.callbacks)


@pytest.mark.parametrize("name", ["enas_micro_digits", "enas_macro_digits"])
def test_the_digits_recipe_runs_from_the_command_line_and_writes_the_derived_architecture(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / f"{name}.yaml"), "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
          "--trainer.limit_val_batches=1", "--model.init_args.num_aggregate=2", "--model.init_args.derive_samples=2",
          *QUIET])
    run = tmp_path / "runs" / name / "search"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_epoch", "controller/reward_epoch", "controller/score_epoch", "search/derived_score",
            "val/acc"} <= set(header)
    record = json.loads((run / "architecture.json").read_text())
    if "micro" in name:
        genotype = Genotype.from_dict(record)
        assert Genotype.load(run / "genotype.txt") == genotype == Genotype.load(run / "genotype.json")
        assert (run / "genotype.png").read_bytes()[:4] == b"\x89PNG"
        assert len((run / "genotypes.txt").read_text().splitlines()) == 1
        assert ENASMicroSpace(num_nodes=3).encode(genotype)
    else:
        arch = ENASMacroArchitecture.from_json(record)
        assert ENASMacroSpace(num_layers=6).encode(arch)
        assert "controller/skip_rate_epoch" in header


def test_the_found_macro_network_retrains_from_the_file_the_search_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / "enas_macro_digits.yaml"), "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--model.init_args.num_aggregate=2",
          "--model.init_args.derive_samples=2", *QUIET])
    found = ENASMacroArchitecture.from_json(tmp_path / "runs" / "enas_macro_digits" / "search" / "architecture.json")
    main(["fit", "-c", str(RECIPES / "retrain_enas_macro_digits.yaml"), "--trainer.max_epochs=1",
          "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *QUIET])
    run = tmp_path / "runs" / "enas_macro_digits" / "retrain"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/acc" in header
    checkpoint = torch.load(next((run / "checkpoints").glob("*.ckpt")), weights_only=False)
    keys = [k for k in checkpoint["state_dict"] if k.startswith("net.ops.")]
    assert keys, "the retrained network's op weights are in the checkpoint"
    net = ENASMacroNetwork(found, in_channels=1, num_classes=10, out_filters=12)
    assert sorted(checkpoint["state_dict"][k].shape for k in keys) == sorted(
        v.shape for k, v in net.state_dict().items() if k.startswith("ops."))

"""The ``lit-automl`` entry point and the shipped recipes: every recipe parses, and the quickstart
pair (search on digits, then retrain the genotype it wrote) runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_automl.cli import main
from lit_automl.run_config import AutoMLCLI
from lit_automl.hpo.models import DigitsCNN
from lit_automl.meta import MAML, L2LMetaTrainer, Leap, Reptile
from lit_automl.meta import LearningToSimulate, LearningToSimulateDigits
from lit_automl.meta.blackbox_rnn import BlackBoxRNN
from lit_automl.nas import DARTS, NASRL, ChildClassifier, NASNetSearch, Retrain
from lit_automl.nas.bayesnas import BayesNAS
from lit_automl.nas.darts_rnn import DARTSRecurrent
from lit_automl.nas.enas import ENAS
from lit_automl.nas.enas_rnn import ENASRecurrent
from lit_automl.nas.evolution import RandomSearch, RegularizedEvolution
from lit_automl.nas.sampler_search import SamplerSearch
from lit_automl.nas.one_shot import OneShot
from lit_automl.nas.pc_darts import PCDARTS
from lit_automl.nas.pdarts import PDARTS
from lit_automl.nas.pnas import PNAS
from lit_automl.nas.retrain_rnn import RetrainRNN
from lit_automl.nas.rl_search import RLSearch
from lit_automl.nas.snas import SNAS
from lit_automl.spaces import Genotype

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
EXPECTED = {
    "darts_digits.yaml": DARTS,
    "darts_cifar10.yaml": DARTS,
    "darts_nb201_digits.yaml": DARTS,
    "darts_nb201_cifar10.yaml": DARTS,
    "darts_rnn_ptb.yaml": DARTSRecurrent,
    "darts_rnn_tiny.yaml": DARTSRecurrent,
    "enas_micro_digits.yaml": ENAS,
    "enas_macro_digits.yaml": ENAS,
    "enas_micro_cifar10.yaml": ENAS,
    "enas_rnn_ptb.yaml": ENASRecurrent,
    "enas_rnn_tiny.yaml": ENASRecurrent,
    "retrain_enas_macro_digits.yaml": ChildClassifier,
    "evolution_nb201_digits.yaml": RegularizedEvolution,
    "evolution_cifar10.yaml": RegularizedEvolution,
    "tpe_nb201_cifar10.yaml": SamplerSearch,
    "random_nb201_digits.yaml": RandomSearch,
    "tpe_nb201_digits.yaml": SamplerSearch,
    "evolution_nb201_tabular.yaml": RegularizedEvolution,
    "evolution_one_shot_digits.yaml": RegularizedEvolution,
    "retrain_digits.yaml": Retrain,
    "retrain_rnn_ptb.yaml": RetrainRNN,
    "retrain_rnn_tiny.yaml": RetrainRNN,
    "retrain_cifar10.yaml": Retrain,
    "maml_sinusoid.yaml": MAML,
    "maml_digits.yaml": MAML,
    "maml_omniglot.yaml": MAML,
    "reptile_digits.yaml": Reptile,
    "leap_digits.yaml": Leap,
    "l2l_quadratic.yaml": L2LMetaTrainer,
    "l2l_mlp_digits.yaml": L2LMetaTrainer,
    "l2l_mlp_mnist.yaml": L2LMetaTrainer,
    "learning_to_simulate_gmm.yaml": LearningToSimulate,
    "learning_to_simulate_digits.yaml": LearningToSimulateDigits,
    "hpo_digits.yaml": DigitsCNN,
    "nas_rl_digits.yaml": NASRL,
    "nas_rl_cifar10.yaml": NASRL,
    "nasnet_digits.yaml": NASNetSearch,
    "nasnet_cifar10.yaml": NASNetSearch,
    "fractalnet_digits.yaml": ChildClassifier,
    "pc_darts_digits.yaml": PCDARTS,
    "pc_darts_cifar10.yaml": PCDARTS,
    "snas_digits.yaml": SNAS,
    "snas_cifar10.yaml": SNAS,
    "pdarts_digits.yaml": PDARTS,
    "pdarts_cifar10.yaml": PDARTS,
    "one_shot_digits.yaml": OneShot,
    "one_shot_cifar10.yaml": OneShot,
    "bayesnas_digits.yaml": BayesNAS,
    "bayesnas_cifar10.yaml": BayesNAS,
    "pnas_digits.yaml": PNAS,
    "pnas_cifar10.yaml": PNAS,
    "optimizer_search_digits.yaml": RLSearch,
    "optimizer_search_cifar10.yaml": RLSearch,
    "activation_search_digits.yaml": RLSearch,
    "activation_search_cifar10.yaml": RLSearch,
    "blackbox_rnn_gp_prior.yaml": BlackBoxRNN,
    "blackbox_rnn_paper.yaml": BlackBoxRNN,
}


def test_every_recipe_is_covered():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_parses_and_builds(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if name == "retrain_enas_macro_digits.yaml":  # it reads the architecture the macro search writes
        search = tmp_path / "runs" / "enas_macro_digits" / "search"
        search.mkdir(parents=True)
        layers = [{"op": "conv_3x3", "skips": list(range(i))} for i in range(6)]
        (search / "architecture.json").write_text(json.dumps({"layers": layers}))
    if name == "evolution_nb201_tabular.yaml":  # it reads the benchmark folder the user downloads
        folder = tmp_path / "data" / "NATS-tss-v1_0-3ffb9-simple"
        folder.mkdir(parents=True)
        (folder / "meta.pickle.pbz2").write_bytes(b"")  # only its presence is checked until a child is looked up
    if name == "evolution_one_shot_digits.yaml":  # it reads the checkpoint recipes/one_shot_digits.yaml writes
        import torch

        ckpt = tmp_path / "runs" / "one_shot_digits" / "search" / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        hparams = dict(C=8, layers=5, steps=4, multiplier=4, stem_multiplier=3, primitives="darts", num_classes=10,
                       in_channels=1)  # only the hyperparameters are read until a child is scored
        torch.save({"hyper_parameters": hparams, "one_shot_ranking": [], "state_dict": {}}, ckpt)
    cli = AutoMLCLI(args=["-c", str(RECIPES / name)], run=False)
    assert isinstance(cli.model, EXPECTED[name])
    assert cli.trainer.max_epochs >= 1


def test_one_recipe_runs_any_strategy_by_naming_it_on_the_command_line(tmp_path, monkeypatch):
    # the documented way to compare strategies on one space and evaluator: --model=<strategy> over a recipe
    monkeypatch.chdir(tmp_path)
    recipe = str(RECIPES / "random_nb201_digits.yaml")
    base = AutoMLCLI(args=["-c", recipe], run=False).model
    evolution = AutoMLCLI(args=["-c", recipe, "--model=RegularizedEvolution", "--model.init_args.population_size=6",
                                "--model.init_args.sample_size=2", "--model.init_args.storage=sqlite:///s.db"],
                          run=False).model
    assert type(evolution).__name__ == "RegularizedEvolution"
    assert (evolution.hparams.population_size, evolution.hparams.sample_size) == (6, 2)
    assert evolution.hparams.storage == "sqlite:///s.db"
    assert type(evolution.evaluator.space) is type(base.evaluator.space)  # the recipe's evaluator and space kept
    assert (evolution.evaluator.space.C, evolution.hparams.budget) == (base.evaluator.space.C, base.hparams.budget)


def test_sample_based_cifar_recipes_carry_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evolution = AutoMLCLI(args=["-c", str(RECIPES / "evolution_cifar10.yaml")], run=False).model
    hp, space = evolution.hparams, evolution.evaluator.space
    assert (hp.population_size, hp.sample_size, hp.aging, hp.budget, hp.reward) == (100, 25, True, 25, "final")
    assert (space.num_blocks, space.combine, space.N, space.F) == (5, ("add",), 3, 24)
    assert sorted(space.ops) == sorted(["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
                                        "max_pool_3x3", "dil_conv_3x3", "conv_7x1_1x7"])
    bo = AutoMLCLI(args=["-c", str(RECIPES / "tpe_nb201_cifar10.yaml")], run=False).model
    ev = bo.evaluator
    assert (ev.space.C, ev.space.N, bo.hparams.budget) == (16, 5, 12)
    assert (ev.child_kwargs["lr"], ev.child_kwargs["weight_decay"], ev.child_kwargs["nesterov"]) == (0.1, 5e-4, True)
    assert ev.datamodule.val_size == 25000


def test_cifar_recipes_carry_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    search = AutoMLCLI(args=["-c", str(RECIPES / "darts_cifar10.yaml")], run=False)
    hp = search.model.hparams
    assert (hp.C, hp.layers, hp.order, hp.w_lr, hp.alpha_lr) == (16, 8, 2, 0.025, 3e-4)
    assert search.trainer.max_epochs == 50
    retrain = AutoMLCLI(args=["-c", str(RECIPES / "retrain_cifar10.yaml")], run=False)
    hp = retrain.model.hparams
    assert (hp.C, hp.layers, hp.auxiliary, hp.auxiliary_weight, hp.drop_path_prob) == (36, 20, True, 0.4, 0.2)
    assert retrain.trainer.max_epochs == 600
    assert retrain.datamodule.cutout_length == 16


def test_darts_nb201_cifar_recipe_carries_the_authors_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "darts_nb201_cifar10.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.space, hp.C, hp.cells_per_stage, hp.order, hp.w_lr, hp.w_lr_min, hp.w_weight_decay) == (
        "nb201", 16, 5, 1, 0.025, 0.001, 5e-4)
    assert (hp.alpha_lr, hp.alpha_weight_decay, hp.grad_clip) == (3e-4, 1e-3, 5.0)
    assert cli.trainer.max_epochs == 50 and cli.datamodule.datamodule.batch_size == 64


def test_pc_darts_cifar_recipe_carries_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = AutoMLCLI(args=["-c", str(RECIPES / "pc_darts_cifar10.yaml")], run=False)
    hp = cli.model.hparams
    assert (hp.partial_channels, hp.order, hp.arch_warmup_epochs, hp.w_lr, hp.alpha_lr) == (4, 1, 15, 0.1, 6e-4)
    assert cli.trainer.max_epochs == 50 and cli.datamodule.datamodule.batch_size == 256


def test_search_then_retrain_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    main(["fit", "-c", str(RECIPES / "darts_digits.yaml"), "--model.init_args.C=4", "--model.init_args.layers=3", *tiny])
    run = tmp_path / "runs" / "darts_digits" / "search"
    genotype = Genotype.load(run / "genotype.txt")
    assert len((run / "genotypes.txt").read_text().splitlines()) == 2
    assert (run / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    assert "arch/entropy_normal" in (run / "metrics.csv").read_text().splitlines()[0]

    main(["fit", "-c", str(RECIPES / "retrain_digits.yaml"), f"--model.init_args.genotype={run / 'genotype.txt'}",
          "--model.init_args.C=4", "--model.init_args.layers=3", *tiny])
    retrained = tmp_path / "runs" / "darts_digits" / "retrain"
    assert Genotype.load(retrained / "genotype.json") == genotype
    assert (retrained / "checkpoints" / "last.ckpt").exists()


def test_unknown_genotype_name_is_refused_with_the_valid_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"'NOT_A_CELL'.*DARTS_V2"):
        AutoMLCLI(args=["-c", str(RECIPES / "retrain_digits.yaml"), "--model.init_args.genotype=NOT_A_CELL"], run=False)


@pytest.mark.parametrize("name", ["maml_sinusoid.yaml", "maml_digits.yaml", "reptile_digits.yaml", "leap_digits.yaml"])
def test_meta_recipes_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--data.init_args.val_tasks=4", "--data.init_args.tasks_per_batch=2"]
    if "sinusoid" not in name:
        tiny += ["--model.init_args.model.init_args.hidden=4", "--model.init_args.eval_inner_steps=2"]
    main(["fit", "-c", str(RECIPES / name), *tiny])
    metrics = (tmp_path / "runs" / name.removesuffix(".yaml") / "version_0" / "metrics.csv").read_text()
    assert "val/loss" in metrics.splitlines()[0]


def test_meta_recipes_carry_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sin = AutoMLCLI(args=["-c", str(RECIPES / "maml_sinusoid.yaml")], run=False)
    hp = sin.model.hparams
    assert (hp.inner_lr, hp.inner_steps, hp.meta_lr, sin.datamodule.k_shot, sin.datamodule.tasks_per_batch) == (0.01, 1, 1e-3, 10, 25)
    assert sum(p.numel() for p in sin.model.model.parameters()) == 1761  # 1-40-40-1
    omni = AutoMLCLI(args=["-c", str(RECIPES / "maml_omniglot.yaml")], run=False)
    hp = omni.model.hparams
    assert (hp.inner_lr, hp.inner_steps, hp.eval_inner_steps, omni.datamodule.tasks_per_batch) == (0.4, 1, 3, 32)


def test_rl_search_cifar_recipes_carry_the_paper_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nas_rl = AutoMLCLI(args=["-c", str(RECIPES / "nas_rl_cifar10.yaml")], run=False).model
    hp = nas_rl.hparams
    assert (hp.algorithm, hp.children_per_step, hp.budget, hp.reward) == ("reinforce", 8, 50, "max_last5_cubed")
    assert (hp.hidden_size, hp.num_layers, hp.lr, hp.init_range) == (35, 2, 6e-4, 0.08)
    assert (hp.initial_layers, hp.layers_increment, hp.grow_every) == (6, 2, 1600)
    ev = nas_rl.evaluator
    assert ev.child_kwargs["lr"] == 0.1 and ev.child_kwargs["weight_decay"] == 1e-4 and ev.child_kwargs["nesterov"]
    assert ev.datamodule.val_size == 5000 and ev.space.num_filters == (24, 36, 48, 64)
    nasnet = AutoMLCLI(args=["-c", str(RECIPES / "nasnet_cifar10.yaml")], run=False).model
    hp = nasnet.hparams
    assert (hp.algorithm, hp.hidden_size, hp.num_layers, hp.lr, hp.entropy_weight, hp.init_range) == (
        "ppo", 100, 1, 3.5e-4, 1e-5, 0.1)
    assert len(nasnet.decisions) == 2 * 5 * 5 and nasnet.space.N == 2


def test_nas_rl_search_from_the_command_line_writes_the_best_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / "nas_rl_digits.yaml"), "--trainer.max_epochs=1", "--model.init_args.steps_per_epoch=2",
          "--model.init_args.children_per_step=2", "--model.init_args.budget=1", "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / "nas_rl_digits" / "search"
    assert (run / "best_architecture.txt").read_text().startswith("layer 0")
    assert len((run / "children.jsonl").read_text().splitlines()) == 4
    import optuna

    study = optuna.load_study(study_name="nasrl", storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_nas_worker_evaluates_waiting_children_of_the_recipe_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lit_automl.cli import nas_worker_main
    from lit_automl.nas.workqueue import ChildQueue
    from lit_automl.spaces import ChainSpace

    space = ChainSpace(num_layers=6)
    url = f"sqlite:///{tmp_path / 'children.db'}"
    queue = ChildQueue(url, "nasrl", space.decisions())
    for i in range(2):
        actions = [0, 0, 0, []] + [1, 1, 1, [1]]
        arch = space.decode(actions)
        queue.submit(f"manual/0/{i}", actions, space.to_json(arch), 1, "final")
    done = nas_worker_main(["-c", str(RECIPES / "nas_rl_digits.yaml"), "--storage", url, "--max-children", "2",
                            "--threads", "1"])
    assert done == 2
    trials = queue.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(0 < t.value <= 1 and len(t.user_attrs["val_acc_history"]) == 1 for t in trials)
    with pytest.raises(ValueError, match="needs the storage the controller uses"):
        nas_worker_main(["-c", str(RECIPES / "nas_rl_digits.yaml"), "--max-children", "1"])
    with pytest.raises(ValueError, match="model is a ChildSearch.*RLSearch.*got DARTS"):
        nas_worker_main(["-c", str(RECIPES / "darts_digits.yaml"), "--storage", url])


def test_no_subcommand_prints_the_usage_without_importing_lightning(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lit-automl" in err and "error: expected a subcommand, one of fit, validate, test, predict, hpo, " \
        "nas-worker" in err


def test_nas_worker_refuses_bad_flags_and_overrides_naming_the_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lit_automl.cli import nas_worker_main

    recipe = str(RECIPES / "nas_rl_digits.yaml")
    with pytest.raises(ValueError, match=r"--max-children must be an int >= 1, got 0"):
        nas_worker_main(["-c", recipe, "--max-children", "0"])
    with pytest.raises(ValueError, match=r"--poll-interval must be a number > 0, got -1.0"):
        nas_worker_main(["-c", recipe, "--poll-interval", "-1"])
    with pytest.raises(ValueError, match=r"lit-automl nas-worker: unknown option '--workers'"):
        nas_worker_main(["-c", recipe, "--workers", "2"])


def test_build_from_config_applies_overrides_and_refuses_bad_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lit_automl.run_config import build_from_config

    model, datamodule, trainer = build_from_config(RECIPES / "darts_digits.yaml",
                                                   {"trainer.max_epochs": 1, "model.init_args.C": 4})
    assert isinstance(model, DARTS) and model.hparams.C == 4 and trainer.max_epochs == 1 and datamodule is not None
    with pytest.raises(ValueError, match=r"config override keys must be dotted names.*got ''"):
        build_from_config(RECIPES / "darts_digits.yaml", {"": 1})

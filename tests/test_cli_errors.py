"""Bad input on the ``lit-automl`` command line: one ``error:`` line naming the bad value, exit
status 2, no traceback (``LIT_AUTOML_DEBUG=1`` / ``--traceback`` show it); resume exact or refused;
no run overwrites an earlier one; no third-party adverts in a run's output."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

from lit_automl.cli import main
from lit_automl.console import error_line, exit_status

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
DARTS = str(RECIPES / "darts_digits.yaml")
RETRAIN = str(RECIPES / "retrain_digits.yaml")
HPO = str(RECIPES / "hpo_digits.yaml")
NAS_RL = str(RECIPES / "nas_rl_digits.yaml")
# A DARTS search that fits in seconds: 3 cells of 2 channels, one batch each way.
TINY_FIT = ["--model.init_args.C", "2", "--model.init_args.layers", "3", "--model.init_args.steps", "2",
            "--model.init_args.multiplier", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"]


def run(args: List[str], capsys) -> Tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``lit-automl args`` run in this process."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> str:
    """Exactly one ``error:`` line, no traceback, and each fragment in that line."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIT_AUTOML_DEBUG", raising=False)
    return tmp_path


def broken_yaml(folder: Path) -> Path:
    path = folder / "broken.yaml"
    path.write_text("model:\n  class_path: lit_automl.nas.DARTS\n   init_args: [\n")
    return path


BAD_COMMANDS = [
    # (arguments, fragments the one error line must hold)
    (["fit", "-c", DARTS, "--model.init_args.C", "0"], ["DARTS", "C must be", "got 0"]),
    (["fit", "-c", DARTS, "--model.init_args.order", "3"], ["order must be 1 (first order) or 2", "got 3"]),
    (["fit", "-c", DARTS, "--model.init_args.primitives", "fancy_ops"], ["fancy_ops", "'darts'", "'nasnet'"]),
    (["fit", "-c", DARTS, "--model.init_args.C", "abc"], ["model.init_args.C", "expected int", "'abc'"]),
    (["fit", "-c", DARTS, "--model.init_args.alpha_lr", "-1"], ["alpha_lr", "-1"]),
    (["fit", "-c", DARTS, "--model.init_args.genotype", "DARTS_V2"], ["'genotype' is not accepted", "DARTS"]),
    (["fit", "-c", DARTS, "--model.class_path", "lit_automl.nas.NoSuchSearch"], ["NoSuchSearch"]),
    (["fit", "-c", DARTS, "--model=Evolutionn"], ["model:", "'Evolutionn'", "RegularizedEvolution", "RandomSearch",
                                                  "SamplerSearch", "RLSearch", "DARTS", "MAML"]),
    (["fit", "-c", DARTS, "--trainer.max_epochs", "many"], ["trainer.max_epochs: expected int or None, got 'many'"]),
    (["fit", "-c", DARTS, "--trainer.precision", "17"], ["trainer.precision", "'bf16-mixed'", "got '17'"]),
    (["fit", "-c", DARTS, "--trainer.accelerator", "gpu"], ["trainer:", "gpu"]),
    (["fit", "-c", DARTS, "--trainer.logger", "5"], ["trainer.logger", "Logger", "got '5'"]),
    (["fit", "-c", DARTS, "--data.init_args.datamodule.init_args.batch_size", "0"],
     ["DigitsDataModule", "batch_size", "got 0"]),
    (["fit", "-c", DARTS, "--data.init_args.datamodule.class_path", "lit_automl.datamodules.Nope"], ["Nope"]),
    (["fit", "-c", DARTS, "--bogus", "1"], ["--bogus"]),
    (["fitt", "-c", DARTS], ["'fitt'", "'fit'"]),
    (["fit", "-c", "no_such_recipe.yaml"], ["no_such_recipe.yaml", "does not exist"]),
    (["fit", "-c", "."], ["'.'", "not a file"]),
    (["fit", "-c", RETRAIN, "--model.init_args.genotype", "DARTS_V9"], ["DARTS_V9"]),
    (["fit", "-c", RETRAIN, "--model.init_args.genotype", "missing_genotype.txt"], ["missing_genotype.txt"]),
    (["fit", "-c", DARTS, "--ckpt_path", "missing.ckpt"], ["--ckpt_path 'missing.ckpt'", "no such file"]),
    (["validate", "-c", DARTS, "--ckpt_path", "missing.ckpt"], ["missing.ckpt", "no such file"]),
    (["hpo", "-c", HPO, "--n-trials", "0"], ["--n-trials", "got 0"]),
    (["hpo", "-c", HPO, "--n-trials", "2.5"], ["--n-trials", "'2.5'"]),
    (["hpo", "--n-trials", "2"], ["-c/--config"]),
    (["hpo", "-c", HPO, "--trials", "3"], ["unknown option '--trials'"]),
    (["hpo", "-c", HPO, "--trainer.max_epochs"], ["'--trainer.max_epochs' needs a value"]),
    (["nas-worker", "-c", NAS_RL, "--max-children", "0"], ["--max-children", "got 0"]),
    (["nas-worker", "-c", NAS_RL, "--poll-interval", "soon"], ["--poll-interval", "'soon'"]),
    (["nas-worker", "-c", DARTS, "--storage", "sqlite:///x.db"], ["RLSearch", "DARTS"]),
]


@pytest.mark.parametrize("args, fragments", BAD_COMMANDS, ids=[" ".join(a[:1] + a[3:])[:60] for a, _ in BAD_COMMANDS])
def test_a_bad_command_line_is_one_error_line_and_exit_status_2(args, fragments, in_tmp, capsys):
    code, _, err = run(args, capsys)
    assert code == 2, err
    assert_one_error_line(err, *fragments)


def test_a_yaml_syntax_error_names_the_file_line_and_column(in_tmp, capsys):
    path = broken_yaml(in_tmp)
    code, _, err = run(["fit", "-c", str(path)], capsys)
    assert code == 2
    line = assert_one_error_line(err, str(path), "line 3, column 13", "YAML syntax")
    assert "unicode string" not in line
    code, _, err = run(["hpo", "-c", str(path)], capsys)
    assert code == 2
    assert_one_error_line(err, str(path), "line 3")


@pytest.mark.parametrize("text, found", [("", "an empty file"), ("- 1\n- 2\n", "a list"), ("3\n", "a int")])
def test_a_config_that_is_not_a_mapping_is_refused_naming_what_it_holds(text, found, in_tmp, capsys):
    path = in_tmp / "odd.yaml"
    path.write_text(text)
    code, _, err = run(["fit", "-c", str(path)], capsys)
    assert code == 2
    assert_one_error_line(err, str(path), "expected a mapping of settings", found)


def test_debug_switches_show_the_traceback(in_tmp, capsys, monkeypatch):
    with pytest.raises(ValueError, match="order must be 1"):
        main(["fit", "-c", DARTS, "--model.init_args.order", "3", "--traceback"])
    monkeypatch.setenv("LIT_AUTOML_DEBUG", "1")
    with pytest.raises(Exception, match="does not exist"):
        main(["fit", "-c", "no_such_recipe.yaml"])
    monkeypatch.setenv("LIT_AUTOML_DEBUG", "0")
    assert run(["fit", "-c", "no_such_recipe.yaml"], capsys)[0] == 2


def test_a_failure_while_running_is_exit_status_1_with_the_debug_hint():
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as err:
        assert exit_status(err) == 1
        assert error_line(err) == "ZeroDivisionError: division by zero (rerun with LIT_AUTOML_DEBUG=1 " \
                                  "(or --traceback) for the traceback)"


# ------------------------------------------------------------------ runs: folders, noise, resume
def fit_tiny(capsys, *extra: str) -> Tuple[int, str, str]:
    return run(["fit", "-c", DARTS, *TINY_FIT, *extra], capsys)


def test_a_second_run_gets_a_new_folder_and_the_output_says_where_everything_went(in_tmp, capsys, caplog, recwarn):
    code, out, err = fit_tiny(capsys)
    assert code == 0, err
    first = in_tmp / "runs" / "darts_digits" / "search"
    assert f"lit-automl fit: run folder {Path('runs/darts_digits/search')} (" in out
    metrics = (first / "metrics.csv").read_text()
    genotype = (first / "genotype.txt").read_text()
    code, out, err = fit_tiny(capsys, "--seed_everything", "1")
    assert code == 0, err
    second = in_tmp / "runs" / "darts_digits" / "search_2"
    assert "holds an earlier run: this run writes to runs/darts_digits/search_2" in caplog.text
    assert "run folder runs/darts_digits/search_2 (" in out
    assert (second / "metrics.csv").is_file() and (second / "config.yaml").is_file()
    assert (first / "metrics.csv").read_text() == metrics and (first / "genotype.txt").read_text() == genotype
    # no adverts, no pytree deprecation noise, no logger version in the progress bar
    assert "💡 Tip" not in out + err + caplog.text
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]
    assert not re.search(r"v_num=", out + err)

    # resume: the same settings resume (into a new folder); changed ones are refused, each listed
    ckpt = next((first / "checkpoints").glob("*.ckpt"))
    code, out, err = fit_tiny(capsys, "--ckpt_path", str(ckpt), "--trainer.max_epochs", "2")
    assert code == 0, err
    assert "run folder runs/darts_digits/search_3 (" in out
    code, _, err = fit_tiny(capsys, "--ckpt_path", str(ckpt), "--model.init_args.C", "4",
                            "--model.init_args.alpha_lr", "0.1")
    assert code == 2
    assert_one_error_line(err, "C: checkpoint 2, now 4", "alpha_lr: checkpoint 0.05, now 0.1", "--ckpt_path")
    assert not (in_tmp / "runs" / "darts_digits" / "search_4").exists()

    # a damaged checkpoint is named, without torch's weights_only=False advice
    truncated = in_tmp / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    random_bytes = in_tmp / "random.ckpt"
    random_bytes.write_bytes(os.urandom(4096))
    for bad in (truncated, random_bytes):
        code, _, err = fit_tiny(capsys, "--ckpt_path", str(bad))
        assert code == 2
        assert "weights_only=False" not in assert_one_error_line(err, str(bad), "expected a checkpoint")

    # a checkpoint saved from the Python API: the error says how to resume it
    checkpoint = torch.load(ckpt, weights_only=True)
    del checkpoint["hyper_parameters"]["_class_path"]
    api = in_tmp / "api.ckpt"
    torch.save(checkpoint, api)
    code, _, err = fit_tiny(capsys, "--ckpt_path", str(api))
    assert code == 2
    assert_one_error_line(err, "saved from the Python API", "'lit_automl.nas.darts.DARTS'", "_class_path")


def test_an_open_progress_bar_is_ended_before_the_error_line(capsys):
    from tqdm import tqdm

    from lit_automl.console import close_progress_bars

    bar = tqdm(total=3, leave=False)
    bar.update(1)
    close_progress_bars()
    assert capsys.readouterr().err.endswith("\n")
    close_progress_bars()  # nothing open: nothing written
    assert capsys.readouterr().err == ""


def test_a_missing_optional_package_is_bad_input_without_the_debug_hint():
    err = ModuleNotFoundError("Requirement 'torch_xla>=1.13' not met")
    assert exit_status(err) == 2 and error_line(err) == "Requirement 'torch_xla>=1.13' not met"


def test_read_checkpoint_names_a_zip_that_is_no_torch_archive_and_a_dict_without_weights(tmp_path):
    import zipfile

    from lit_automl.resume import read_checkpoint

    archive = tmp_path / "notes.ckpt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match=r"^--ckpt_path '.*notes.ckpt' cannot be read \(\w+: .*\); expected a checkpoint"):
        read_checkpoint(archive)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(2)}, plain)
    with pytest.raises(ValueError, match=r"^stage '.*plain.pt' holds no Lightning checkpoint \(no 'state_dict'\)"):
        read_checkpoint(plain, name="stage")

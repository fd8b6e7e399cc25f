"""Shared fixtures and helpers of the HPO tests."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import torch

from lit_automl.hpo.config import HPOSettings


@pytest.fixture
def one_thread(tmp_path, monkeypatch):
    """Run in ``tmp_path`` with one torch thread: on 2 shared cores OpenMP spin-waits make tiny models
    about 100x slower with 2 threads."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_settings(tmp_path, space, **section) -> HPOSettings:
    """Settings of a small single-objective study (random sampler, no pruning, no report) in ``tmp_path/run``."""
    data = {"study_name": "t", "metric": "val/acc", "direction": "maximize", "search_space": space, "n_trials": 1,
            "sampler": "random", "seed": 0, "pruner": "nop", "run_dir": str(tmp_path / "run"), "progress_bar": False,
            "report": False, **section}
    return HPOSettings.from_mapping(data)


def tiny_recipe(max_epochs: int, **trainer: Any) -> Dict[str, Any]:
    """A recipe of the tiny digits CNN on CPU: ``max_epochs`` epochs of 2 training and 2 validation batches."""
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_epochs": max_epochs, "limit_train_batches": 2,
            "limit_val_batches": 2, "num_sanity_val_steps": 0, "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "tiny"}},
            **trainer,
        },
        "model": {"class_path": "lit_automl.hpo.models.DigitsCNN", "init_args": {"channels": 4, "hidden": 8}},
        "data": {"class_path": "lit_automl.datamodules.DigitsDataModule", "init_args": {"batch_size": 32}},
    }


SPACE = {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
         "model.init_args.optimizer": ["adam", "sgd"],
         "model.init_args.momentum": {"type": "float", "low": 0.5, "high": 0.9, "condition": {"model.init_args.optimizer": "sgd"}}}
"""The digits CNN's optimiser space, momentum only for SGD."""

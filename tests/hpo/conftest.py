"""Shared fixtures and helpers of the HPO tests."""

from __future__ import annotations

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

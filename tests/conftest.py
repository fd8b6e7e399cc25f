"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread for every test: on 2 shared cores OpenMP spin-waits make tiny models far slower with
    2 threads (a test that needs more sets them itself)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

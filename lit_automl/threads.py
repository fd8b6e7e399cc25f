"""One torch / BLAS / OpenMP thread for small workloads, restored afterwards.

Tiny matrices and tiny networks (a GP's Cholesky factor, PNAS's predictor ensemble, a search's bookkeeping)
run many times slower on 2 threads of 2 busy cores than on 1: the threads wait for each other longer than
they compute. :func:`single_threaded` pins one thread for a block, thread-safely and re-entrantly.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import threadpoolctl
import torch

__all__ = ["single_threaded"]

_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "saved": 1}


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch and the BLAS / OpenMP pools on one thread for the block (restored when the last
    concurrent block ends): the GP's matrices are small, and threads cost more than they save (a
    10 x 10 Cholesky with its backward pass took 17 ms on 2 threads of 2 busy cores against
    0.1 ms on 1)."""
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_STATE["depth"] += 1
    try:
        with threadpoolctl.threadpool_limits(1):
            yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])



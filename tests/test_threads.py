"""lit_automl.threads: one thread for a block, restored after the outermost block."""

from __future__ import annotations

from lit_automl.threads import single_threaded


def test_single_threaded_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_threaded():
            assert torch.get_num_threads() == 1
            with single_threaded():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

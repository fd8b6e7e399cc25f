"""What a child network costs, measured: FLOPs of one forward and latency on the current device.

Every evaluator reports these next to the accuracy, so any search can be multi-objective (accuracy vs
FLOPs vs latency). FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward of a
single example (a multiply-add counts as 2 FLOPs, as torch counts them). Latency is the median wall time
of a forward in eval mode without gradients, after one warm-up forward, at batch 1 and at the training
batch, on the device the network's parameters are on (CUDA is synchronised around each forward).
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, Sequence

import torch
from torch import nn

from lit_automl._checks import check_int
from lit_automl.spaces.networks import preserved_modes

__all__ = ["forward_flops", "forward_latency", "network_costs"]


def _device(network: nn.Module) -> torch.device:
    param = next(network.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _inputs(network: nn.Module, shape: Sequence[int], batch: int) -> torch.Tensor:
    return torch.randn(batch, *shape, device=_device(network))


def forward_flops(network: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward of a single example of ``input_shape`` (channels, height, width)."""
    from torch.utils.flop_counter import FlopCounterMode

    with preserved_modes(network), torch.no_grad():
        network.eval()
        counter = FlopCounterMode(display=False)
        with counter:
            network(_inputs(network, input_shape, 1))
    return int(counter.get_total_flops())


def forward_latency(network: nn.Module, input_shape: Sequence[int], batch_size: int, repeats: int = 5) -> float:
    """Median seconds of a forward of ``batch_size`` examples (eval mode, no gradients, after one warm-up)."""
    batch_size = check_int("batch_size", batch_size, low=1)
    repeats = check_int("repeats", repeats, low=1)
    x = _inputs(network, input_shape, batch_size)
    cuda = x.device.type == "cuda"
    times = []
    with preserved_modes(network), torch.no_grad():
        network.eval()
        for i in range(repeats + 1):
            if cuda:
                torch.cuda.synchronize(x.device)
            start = time.perf_counter()
            network(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            if i:  # the first forward warms up (allocations, kernel selection)
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_costs(network: nn.Module, input_shape: Sequence[int], batch_size: int) -> Dict[str, float]:
    """``{"flops", "latency_batch1", "latency_batch"}`` of ``network`` (module docstring)."""
    return {"flops": float(forward_flops(network, input_shape)),
            "latency_batch1": forward_latency(network, input_shape, 1),
            "latency_batch": forward_latency(network, input_shape, batch_size)}

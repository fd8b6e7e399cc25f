"""Collective helpers for gradients computed outside ``manual_backward``.

DDP all-reduces only the gradients that flow through its backward hooks. Gradients a method
computes with ``torch.autograd.grad`` (unrolled or finite-difference hypergradients, policy
gradients) must be averaged over ranks explicitly, or the ranks drift apart.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (counts, totals); a no-op on one process."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Average ``tensors`` over all ranks with one flat all-reduce; a no-op on one process."""
    tensors = list(tensors)
    n = world_size()
    if n == 1 or not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(n)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def require_find_unused_parameters(model: Any, reason: str) -> None:
    """Refuse a ``DistributedDataParallel`` ``model`` (a strategy's wrapped module; anything else passes) without
    ``find_unused_parameters``: a method whose steps leave parameters unused (``reason`` says why) would
    make DDP wait for their gradients forever."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel) and not model.find_unused_parameters:
        raise ValueError(f"{reason}: DDP needs find_unused_parameters=True "
                         "(strategy='ddp_find_unused_parameters_true' or DDPStrategy(find_unused_parameters=True))")

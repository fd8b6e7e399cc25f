"""Batch norm whose batch statistics stay accurate in float32 for channels_last inputs on CPU.

Notation: ``x`` (N, C, H, W); per channel over the n = N*H*W values, ``mean``, ``var`` (biased)
and ``invstd = 1 / sqrt(var + eps)``; ``y = (x - mean) * invstd * weight + bias``.

torch's CPU training kernel for channels_last float32 inputs loses precision in ``var`` when a
channel's mean is large next to its spread (measured: relative error 5e-5 at mean/std = 30, where
the contiguous kernel gives 1e-6). In a DARTS supernet that error reaches the architecture
gradient (relative 1e-3 against float64, against 5e-7 in the contiguous layout). Here the
statistics come from the two-pass formula (the mean, then the mean squared deviation from it) on
the (n, C) matrix a channels_last tensor is in memory, the centred matrix is normalised in place
into the output, and the gradient comes from torch's own batch-norm backward with those
statistics: the same function, the contiguous layout's accuracy, one full-size allocation.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def uses_channels_last_kernel(x: torch.Tensor) -> bool:
    """Whether torch's CPU batch norm would run its channels_last kernel on ``x``."""
    return x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous() \
        and x.is_contiguous(memory_format=torch.channels_last)


class _BatchStatisticsNorm(torch.autograd.Function):
    """Training-mode batch norm from given-accuracy statistics: returns ``(y, mean, var)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        N, C, H, W = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, C)  # (n, C): a view of channels_last memory
        mean = rows.mean(0)  # (C,)
        centered = rows - mean  # (n, C): the one full-size tensor, normalised in place into the output
        var = torch.linalg.vecdot(centered, centered, dim=0) / centered.shape[0]  # (C,)
        invstd = torch.rsqrt(var + eps)  # (C,)
        scale = invstd if weight is None else invstd * weight
        centered.mul_(scale)
        if bias is not None:
            centered.add_(bias)
        y = centered.view(N, H, W, C).permute(0, 3, 1, 2)  # (N, C, H, W), channels_last
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor, _mean: Any, _var: Any) -> Tuple[Optional[torch.Tensor], ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
                ctx.needs_input_grad[2]]
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True,
            ctx.eps, mask)
        return grad_x, grad_w, grad_b, None


def batch_norm(x: torch.Tensor, running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
               weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], momentum: float,
               eps: float) -> torch.Tensor:
    """``F.batch_norm(..., training=True)``: normalise with the batch statistics and move the running
    ones (when given) by ``momentum``, the variance unbiased as torch does; for channels_last CPU
    inputs the statistics are computed accurately (module docstring), else torch's kernel runs."""
    if not uses_channels_last_kernel(x):
        return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    n = x.numel() // x.shape[1]  # >= 2: a single value per channel (1, C, 1, 1) is contiguous, torch refuses it
    y, mean, var = _BatchStatisticsNorm.apply(x, weight, bias, eps)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * (n / (n - 1)), momentum)
    return y


class BatchNorm2d(nn.BatchNorm2d):
    """:class:`nn.BatchNorm2d` (same arguments, parameters and state-dict keys) that trains through
    :func:`batch_norm`; evaluation and contiguous inputs run torch's kernels unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and uses_channels_last_kernel(x)):
            return super().forward(x)
        self._check_input_dim(x)
        momentum = self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        tracked = self.track_running_stats
        return batch_norm(x, self.running_mean if tracked else None, self.running_var if tracked else None,
                          self.weight, self.bias, 0.0 if momentum is None else momentum, self.eps)

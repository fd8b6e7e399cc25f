"""Drop path: zero a whole path for a random subset of the batch.

Used on every non-identity path of evaluation cells (Zoph et al., "Learning Transferable
Architectures", CVPR 2018, Sec. 4 ScheduledDropPath; DARTS retraining, Liu et al. 2019, Sec. 3.2).
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool = True) -> torch.Tensor:
    """Zero each sample's path with probability ``drop_prob``; rescale survivors by 1/(1-p).

    Identity when not ``training`` or ``drop_prob == 0``, so the expectation is unchanged.
    """
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
    if not training or drop_prob == 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep_prob).div_(keep_prob)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; ``drop_prob`` may be changed between steps."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob!r}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"

"""Drop path: zero a whole path for a random subset of the batch.

Used on every non-identity path of evaluation cells (Zoph et al., "Learning Transferable
Architectures", CVPR 2018, Sec. 4 ScheduledDropPath; DARTS retraining, Liu et al. 2019, Sec. 3.2).

:func:`sample_keep_mask` is the other form of drop path: choose which of several parallel paths
survive, keeping at least one (FractalNet's local drop-path, Larsson et al., ICLR 2017, Sec. 3.1;
one-shot path dropout, Bender et al., ICML 2018, Sec. 3).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from lit_automl._checks import check_int, check_real, check_sequence

_DROP_PROB = dict(low=0.0, high=1.0, high_open=True, allowed="in [0, 1)")


def drop_path(x: torch.Tensor, drop_prob: float, training: bool = True) -> torch.Tensor:
    """Zero each sample's path with probability ``drop_prob``; rescale survivors by 1/(1-p).

    Identity when not ``training`` or ``drop_prob == 0``, so the expectation is unchanged.
    """
    drop_prob = check_real("drop_prob", drop_prob, **_DROP_PROB)
    if not training or drop_prob == 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep_prob).div_(keep_prob)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; ``drop_prob`` may be changed between steps."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = check_real("drop_prob", drop_prob, **_DROP_PROB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def sample_keep_mask(
    num_paths: int,
    drop_prob: float,
    batch_shape: Sequence[int] = (),
    min_keep: int = 1,
    generator: Optional[torch.Generator] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> torch.Tensor:
    """Which of ``num_paths`` parallel paths survive: a bool mask of shape ``(*batch_shape, num_paths)``.

    Each path is dropped independently with probability ``drop_prob``. A mask row with fewer than
    ``min_keep`` survivors then has ``min_keep - survivors`` of its dropped paths revived, chosen
    uniformly at random without replacement; with ``min_keep=1`` this is FractalNet's rule "a join
    drops each input with fixed probability, but we make sure at least one survives" (Larsson et
    al., ICLR 2017, Sec. 3.1): when all are dropped, one uniformly random path comes back. The same
    rule serves one-shot path dropout (Bender et al., ICML 2018, Sec. 3: rate r**(1/k) over k
    incoming paths, at least one kept). Each path is therefore kept with probability
    ``E[max(S, min_keep)] / num_paths``, S ~ Binomial(num_paths, 1 - drop_prob).

    ``batch_shape=()`` gives one mask for a whole mini-batch (FractalNet's implementation samples
    per mini-batch); ``batch_shape=(N,)`` one per sample. Random numbers come from ``generator``
    (or torch's global generator), on ``device`` (default CPU).
    """
    num_paths = check_int("num_paths", num_paths, low=1, allowed="a positive int")
    drop_prob = check_real("drop_prob", drop_prob, **_DROP_PROB)
    min_keep = check_int("min_keep", min_keep, low=0, high=num_paths, allowed=f"an int in [0, num_paths={num_paths}]")
    batch_shape = check_sequence("batch_shape", batch_shape, lambda n, v: check_int(n, v, low=0),
                                 allowed="non-negative ints")
    shape = batch_shape + (num_paths,)
    dropped = torch.rand(shape, generator=generator, device=device) < drop_prob
    if min_keep == 0:
        return ~dropped
    deficit = (min_keep - (~dropped).sum(-1, keepdim=True)).clamp_(min=0)
    # Rank the dropped paths of each row in a uniformly random order (kept paths rank after them);
    # reviving the first `deficit` of them picks a uniform random subset of the dropped paths.
    priority = torch.rand(shape, generator=generator, device=device).masked_fill_(~dropped, 2.0)
    rank = priority.argsort(-1).argsort(-1)
    return ~dropped | (rank < deficit)

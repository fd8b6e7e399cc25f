"""The networks of the meta-learning papers' benchmarks.

* :class:`SinusoidMLP`: Finn et al., ICML 2017, Sec. 5.1 -- 1 -> 40 -> 40 -> 1 with ReLU.
* :class:`ConvNet4`: Finn et al. 2017, Sec. 5.2 (after Vinyals et al. 2016) -- four blocks of 3x3
  convolution with 64 filters, batch normalisation and ReLU; on Omniglot the blocks downsample
  with stride-2 convolutions instead of max-pooling, and the 64 feature maps are averaged over
  space before the linear head (as in the authors' code). Batch normalisation uses the statistics
  of the batch it sees, at meta-training and at test time alike (``track_running_stats=False``, as
  in the authors' code), so the networks keep no running buffers and vmap over tasks works.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lit_automl._checks import check_choice, check_int

__all__ = ["SinusoidMLP", "ConvNet4"]


class SinusoidMLP(nn.Module):
    """Regression MLP ``in_features -> hidden... -> out_features`` with ReLU (MAML Sec. 5.1: 40, 40)."""

    def __init__(self, hidden: Sequence[int] = (40, 40), in_features: int = 1, out_features: int = 1) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        for name, value in (("in_features", in_features), ("out_features", out_features), *(("hidden", h) for h in hidden)):
            check_int(name, value, low=1)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet4(nn.Module):
    """The 4-block convolutional few-shot classifier (MAML Sec. 5.2).

    Args:
        n_way: number of output classes (the N of N-way tasks).
        in_channels: image channels (1 for Omniglot and digits).
        hidden: filters per block (64 on Omniglot, 32 on MiniImagenet).
        downsample: ``"stride"`` (stride-2 convolutions, the paper's Omniglot model) or
            ``"max_pool"`` (stride 1 then 2x2 max-pooling, the MiniImagenet model).
        blocks: number of conv blocks (4 in the paper; fewer for tiny inputs such as 8x8 digits).
    """

    def __init__(self, n_way: int = 5, in_channels: int = 1, hidden: int = 64, downsample: str = "stride",
                 blocks: int = 4) -> None:
        super().__init__()
        for name, value in (("n_way", n_way), ("in_channels", in_channels), ("hidden", hidden), ("blocks", blocks)):
            check_int(name, value, low=1)
        check_choice("downsample", downsample, ("stride", "max_pool"))
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(blocks):
            stride = 2 if downsample == "stride" else 1
            layers += [nn.Conv2d(channels, hidden, 3, stride=stride, padding=1),
                       nn.BatchNorm2d(hidden, track_running_stats=False), nn.ReLU()]
            if downsample == "max_pool":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = hidden
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"ConvNet4 expects images (batch, channels, height, width), got shape {tuple(x.shape)}")
        return self.head(self.features(x).mean(dim=(2, 3)))

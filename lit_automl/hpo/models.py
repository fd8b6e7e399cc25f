"""A small CNN for the 8x8 digits, with the hyperparameters an HPO recipe tunes.

Two 3x3 convolutions (``channels`` and ``2 * channels`` filters, ReLU), 2x2 max pooling, dropout
and a hidden linear layer; trained with Adam, AdamW or SGD with momentum. Logs ``train/loss``,
``val/loss`` and ``val/acc`` (averaged over ranks), the metrics ``recipes/hpo_digits.yaml`` tunes.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsCNN", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _number(name: str, value: Any, low: float, high: float, high_open: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and low <= float(value) and (
        float(value) < high if high_open else float(value) <= high
    )
    if not ok:
        raise ValueError(f"{name} must be a number in [{low}, {high}{')' if high_open else ']'}, got {value!r}")
    return float(value)


class DigitsCNN(pl.LightningModule):
    """Conv(c) - Conv(2c) - MaxPool - Dropout - Linear(hidden) - Linear(classes) for ``in_channels x 8 x 8`` images.

    Args:
        channels: filters of the first convolution (the second has twice as many).
        hidden: width of the hidden linear layer.
        dropout: dropout probability before the hidden layer, in [0, 1).
        lr: learning rate (> 0).
        weight_decay: L2 penalty (decoupled for ``adamw``), >= 0.
        optimizer: one of ``adam``, ``adamw``, ``sgd``.
        momentum: SGD momentum in [0, 1) (unused by Adam / AdamW).
        num_classes, in_channels, image_size: the data's shape.
    """

    def __init__(
        self,
        channels: int = 16,
        hidden: int = 64,
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        momentum: float = 0.9,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 8,
    ) -> None:
        super().__init__()
        _positive_int("channels", channels)
        _positive_int("hidden", hidden)
        _positive_int("num_classes", num_classes)
        _positive_int("in_channels", in_channels)
        if _positive_int("image_size", image_size) % 2:
            raise ValueError(f"image_size must be even (2x2 pooling), got {image_size!r}")
        _number("dropout", dropout, 0.0, 1.0, high_open=True)
        if _number("lr", lr, 0.0, float("inf")) <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        _number("weight_decay", weight_decay, 0.0, float("inf"))
        _number("momentum", momentum, 0.0, 1.0, high_open=True)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Sequential(
            nn.Linear(2 * channels * (image_size // 2) ** 2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log("test/acc", (logits.argmax(-1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        return cls(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

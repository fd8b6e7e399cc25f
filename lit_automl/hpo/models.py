"""A small CNN for the 8x8 digits, with the hyperparameters an HPO recipe tunes.

Two 3x3 convolutions (``channels`` and ``2 * channels`` filters, ReLU), 2x2 max pooling, dropout
and a hidden linear layer; trained with Adam, AdamW or SGD with momentum. Logs ``train/loss``,
``val/loss`` and ``val/acc`` (averaged over ranks), the metrics ``recipes/hpo_digits.yaml`` tunes.
"""

from __future__ import annotations


import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real

__all__ = ["DigitsCNN", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")




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
        for name, value in (("channels", channels), ("hidden", hidden), ("num_classes", num_classes),
                            ("in_channels", in_channels), ("image_size", image_size)):
            check_int(name, value, low=1)
        if image_size % 2:
            raise ValueError(f"image_size must be even (2x2 pooling), got {image_size!r}")
        check_real("dropout", dropout, low=0.0, high=1.0, high_open=True)
        check_real("lr", lr, low=0.0, low_open=True)
        check_real("weight_decay", weight_decay, low=0.0)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_choice("optimizer", optimizer, OPTIMIZERS)
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

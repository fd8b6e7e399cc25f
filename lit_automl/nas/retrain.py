"""Train the evaluation network of a genotype from scratch with the DARTS evaluation protocol.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 3.2 and
A.1.2 (CIFAR-10): 20 cells, 36 initial channels, 600 epochs, batch size 96, SGD with
momentum 0.9, learning rate 0.025 cosine-annealed to 0 over the run, weight decay 3e-4,
gradient-norm clipping at 5, auxiliary tower weight 0.4, drop path 0.2 (raised linearly over
the run by :class:`lit_automl.callbacks.ScheduledDropPath`) and cutout 16 (a data transform).
The constructor defaults are this setting; the number of epochs is the Trainer's
``max_epochs`` unless ``epochs`` is given.

Typical use::

    model = Retrain("DARTS_V2")
    trainer = pl.Trainer(max_epochs=600, callbacks=[ScheduledDropPath()])
    trainer.fit(model, datamodule=cifar10)   # batch size 96, cutout 16 in the data

Gradient clipping needs no Trainer flag: :meth:`Retrain.configure_gradient_clipping` clips the
gradient norm to ``grad_clip`` itself (leave ``Trainer(gradient_clip_val=...)`` unset).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, Optional, Tuple, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_warn
from torch import nn
from torch.optim import Optimizer
from torchmetrics.classification import MulticlassAccuracy

from lit_automl.spaces.genotype import Genotype, resolve_genotype
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet

__all__ = ["Retrain", "NETWORKS"]

NETWORKS: Dict[str, type] = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}
"""Evaluation network by name: ``"cifar"`` (32x32 inputs), ``"imagenet"`` (224x224, mobile setting)."""


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_real(name: str, value: Any, low: float, high: float, *, high_open: bool = False) -> None:
    """``value`` must be a real number in [low, high] (or [low, high) if ``high_open``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    ok = ok and low <= float(value) and (float(value) < high if high_open else float(value) <= high)
    if not ok:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


class Retrain(pl.LightningModule):
    """Train a genotype's evaluation network from scratch (DARTS Sec. 3.2, A.1.2).

    Args:
        genotype: anything :func:`~lit_automl.spaces.genotype.resolve_genotype` takes: a
            published name (``"DARTS_V2"``), a path to a genotype file, the text form or JSON.
            A :class:`Genotype` object is accepted too. The hyperparameters store the resolved
            text form, so a checkpoint rebuilds the same network without the original file.
        network: ``"cifar"`` (:class:`NetworkCIFAR`) or ``"imagenet"`` (:class:`NetworkImageNet`).
        C: initial channels (36 in the paper for CIFAR-10).
        layers: number of cells (20 for CIFAR-10).
        num_classes: classes of the data set.
        in_channels: channels of the input images.
        auxiliary: add the auxiliary head at 2/3 depth (needs 32x32 inputs for ``"cifar"``).
        auxiliary_weight: weight of the auxiliary head's loss (0.4).
        drop_path_prob: the *maximum* drop-path probability, reached at the end of the run; a
            schedule callback (:class:`~lit_automl.callbacks.ScheduledDropPath`) raises the
            network's value from 0 to it. Without such a callback the network keeps 0 and a
            warning says so.
        lr: initial SGD learning rate (0.025).
        lr_min: learning rate at the end of the cosine schedule (0).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay (3e-4).
        grad_clip: maximum gradient norm (5); ``None`` or ``0`` disables clipping.
        epochs: length of the cosine schedule in epochs; ``None`` uses ``Trainer(max_epochs)``.
    """

    def __init__(
        self,
        genotype: str = "DARTS_V2",
        network: str = "cifar",
        C: int = 36,
        layers: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        auxiliary: bool = True,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.2,
        lr: float = 0.025,
        lr_min: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: Optional[float] = 5.0,
        epochs: Optional[int] = None,
    ) -> None:
        super().__init__()
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {sorted(NETWORKS)}, got {network!r}")
        for name, value in (("C", C), ("layers", layers), ("num_classes", num_classes), ("in_channels", in_channels)):
            _check_int(name, value)
        if not isinstance(auxiliary, bool):
            raise ValueError(f"auxiliary must be True or False, got {auxiliary!r}")
        _check_real("auxiliary_weight", auxiliary_weight, 0.0, math.inf, high_open=True)
        _check_real("drop_path_prob", drop_path_prob, 0.0, 1.0, high_open=True)
        _check_real("lr", lr, 0.0, math.inf, high_open=True)
        if lr == 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        _check_real("lr_min", lr_min, 0.0, float(lr))
        _check_real("momentum", momentum, 0.0, 1.0, high_open=True)
        _check_real("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        if grad_clip is not None:
            _check_real("grad_clip", grad_clip, 0.0, math.inf, high_open=True)
        if epochs is not None:
            _check_int("epochs", epochs)

        resolved: Genotype = resolve_genotype(genotype)
        # Store the resolved text (not a name or a file path) so checkpoints are self-contained.
        genotype = str(resolved)
        self.save_hyperparameters()

        self._genotype = resolved
        self.net: nn.Module = NETWORKS[network](
            resolved,
            C=C,
            num_classes=num_classes,
            layers=layers,
            auxiliary=auxiliary,
            drop_path_prob=0.0,  # start of the schedule; a callback raises it
            in_channels=in_channels,
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self._drop_path_set = False
        self._drop_path_warned = False

    # ----------------------------------------------------------------- architecture
    def genotype(self) -> Genotype:
        """The genotype being trained (same interface as the search modules' ``genotype()``)."""
        return self._genotype

    @property
    def drop_path_prob(self) -> float:
        """Drop-path probability the network uses now; schedule callbacks set it every epoch."""
        return float(self.net.drop_path_prob)

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        _check_real("drop_path_prob", value, 0.0, 1.0, high_open=True)
        self.net.drop_path_prob = float(value)
        self._drop_path_set = True

    # ----------------------------------------------------------------- forward / loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of the main head (the auxiliary logits are only used for the loss)."""
        return self.net(x)[0]

    def criterion(
        self, logits: torch.Tensor, logits_aux: Optional[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """Cross entropy, plus ``auxiliary_weight`` times the auxiliary head's when it ran (Sec. A.1.2)."""
        loss = F.cross_entropy(logits, target)
        if logits_aux is not None:
            loss = loss + self.hparams.auxiliary_weight * F.cross_entropy(logits_aux, target)
        return loss

    @staticmethod
    def _unpack(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"Retrain expects batches (images, labels), got {type(batch).__name__}")
        return batch[0], batch[1]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits, logits_aux = self.net(x)
        loss = self.criterion(logits, logits_aux, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits, _ = self.net(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test", self.test_acc)

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self) -> None:
        self._drop_path_set = False
        clip = self.trainer.gradient_clip_val
        if clip is not None and self.hparams.grad_clip:
            raise ValueError(
                f"Retrain clips the gradient norm itself (grad_clip={self.hparams.grad_clip!r}); "
                f"Trainer(gradient_clip_val={clip!r}) would clip a second time. Set Retrain(grad_clip=...) "
                "and leave the Trainer flag unset, or set Retrain(grad_clip=None) to let the Trainer clip"
            )

    def on_train_epoch_start(self) -> None:
        # Callbacks' on_train_epoch_start runs before the module's, so a schedule has set it by now.
        if not self._drop_path_set and self.hparams.drop_path_prob > 0 and not self._drop_path_warned:
            self._drop_path_warned = True
            rank_zero_warn(
                f"Retrain(drop_path_prob={self.hparams.drop_path_prob}) is the maximum of a schedule, but no "
                "callback set `drop_path_prob`; training runs with drop path "
                f"{self.drop_path_prob}. Add lit_automl.callbacks.ScheduledDropPath() to the Trainer's callbacks"
            )
        self.log("drop_path_prob", self.drop_path_prob, on_step=False, on_epoch=True)

    # ----------------------------------------------------------------- optimisation
    def schedule_epochs(self) -> int:
        """Length of the cosine schedule: ``epochs`` or the Trainer's ``max_epochs``."""
        if self.hparams.epochs is not None:
            return int(self.hparams.epochs)
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"Retrain(epochs=None) takes the cosine schedule length from Trainer(max_epochs), which is "
                f"{max_epochs!r}; set Trainer(max_epochs=...) or Retrain(epochs=...)"
            )
        return int(max_epochs)

    def configure_optimizers(self) -> Dict[str, Any]:
        """SGD with momentum and weight decay, cosine-annealed per epoch from ``lr`` to ``lr_min`` (Sec. A.1.2)."""
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.schedule_epochs(), eta_min=hp.lr_min
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: Optional[Union[int, float]] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clip the gradient norm to ``grad_clip`` (DARTS clips at 5), without any Trainer flag.

        With ``grad_clip`` None or 0 the Trainer's own ``gradient_clip_val`` (if any) applies.
        """
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=float(self.hparams.grad_clip), gradient_clip_algorithm="norm")
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

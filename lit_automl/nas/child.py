"""Train any classification network with SGD: the child model of sample-based searches.

Sample-based searches (NAS-RL, NASNet, evolution, ...) train every sampled *child* network for a
short budget and read its validation accuracy; the final architecture is trained the same way for
longer. :class:`ChildClassifier` is that training for any ``nn.Module`` whose ``forward(x)``
returns logits, or ``(logits, aux_logits)`` with an auxiliary head (NASNet, DARTS evaluation
networks). The defaults are NAS-RL's child training (Zoph & Le, "Neural Architecture Search with
Reinforcement Learning", ICLR 2017, Sec. 4.1: momentum optimiser, learning rate 0.1, weight decay
1e-4, momentum 0.9, Nesterov); the cosine schedule is this library's default (the paper names no
schedule; ``schedule="constant"`` keeps the rate fixed).

The module records the validation accuracy of every epoch in :attr:`ChildClassifier.val_acc_history`
(the NAS-RL reward reads the last five epochs).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple, Union

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities.rank_zero import rank_zero_warn
from torch import nn
from torch.optim import Optimizer
from torchmetrics.classification import MulticlassAccuracy

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.nas.data_checks import check_against_datamodule, nonfinite_count

__all__ = ["ChildClassifier", "SCHEDULES", "split_logits"]

SCHEDULES = ("cosine", "constant")


def split_logits(output: Union[torch.Tensor, Tuple[torch.Tensor, Optional[torch.Tensor]]]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(logits, aux_logits or None)`` from a network output that is logits or such a pair."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[0], torch.Tensor):
        return output[0], output[1]
    raise ValueError(
        "a child network's forward must return logits (a Tensor) or (logits, aux_logits), got "
        f"{type(output).__name__}"
    )


class ChildClassifier(pl.LightningModule):
    """SGD training of one network for classification; records the per-epoch validation accuracy.

    Args:
        network: the model; ``forward(x)`` returns logits or ``(logits, aux_logits)``.
        num_classes: classes of the data (for the accuracy metrics).
        lr: initial learning rate (0.1, Zoph & Le 2017 Sec. 4.1).
        momentum: SGD momentum (0.9, ibid.).
        nesterov: Nesterov momentum (True, ibid.).
        weight_decay: L2 weight decay (1e-4, ibid.).
        schedule: ``"cosine"`` (annealed per epoch to 0 over ``epochs``; ours) or ``"constant"``.
        epochs: length of the cosine schedule; ``None`` uses ``Trainer(max_epochs)``.
        auxiliary_weight: weight of the auxiliary head's loss when the network returns one (0.4,
            as in NASNet / DARTS evaluation).
        drop_path_prob: maximum drop-path probability for a schedule callback
            (:class:`~lit_automl.callbacks.ScheduledDropPath`); forwarded to ``network.drop_path_prob``.
            Networks without that attribute must leave it 0.
        grad_clip: gradient-norm clipping (``None``: off, the NAS-RL setting); clipped here, so
            ``Trainer(gradient_clip_val)`` must stay unset when it is given.
        lr_min: learning rate at the end of the cosine schedule (0).

    Subclasses that build their network from an architecture (:class:`~lit_automl.nas.Retrain`)
    pass it to ``__init__``; the training, evaluation and optimisation code is this class's.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int = 10,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        schedule: str = "cosine",
        epochs: Optional[int] = None,
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.0,
        grad_clip: Optional[float] = None,
        lr_min: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        check_int("num_classes", num_classes, low=2)
        check_real("lr", lr, low=0.0, high=math.inf, low_open=True, high_open=True)
        check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_bool("nesterov", nesterov)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        check_real("weight_decay", weight_decay, low=0.0, high=math.inf, high_open=True)
        check_choice("schedule", schedule, SCHEDULES, sort=False)
        check_int("epochs", epochs, low=1, allow_none=True)
        check_real("auxiliary_weight", auxiliary_weight, low=0.0, high=math.inf, high_open=True)
        check_real("drop_path_prob", drop_path_prob, low=0.0, high=1.0, high_open=True)
        if drop_path_prob > 0 and not hasattr(network, "drop_path_prob"):
            raise ValueError(
                f"drop_path_prob={drop_path_prob!r} needs a network with a `drop_path_prob` attribute; "
                f"{type(network).__name__} has none (use drop_path_prob=0)"
            )
        check_real("grad_clip", grad_clip, low=0.0, high=math.inf, low_open=True, high_open=True, allow_none=True)
        check_real("lr_min", lr_min, low=0.0, high=float(lr))
        self.save_hyperparameters(ignore=["network"])
        # The code reads these, not ``hparams``: a subclass saves its own hyperparameters (Retrain: the genotype).
        self.settings: Dict[str, Any] = dict(
            lr=float(lr), momentum=float(momentum), nesterov=nesterov, weight_decay=float(weight_decay),
            schedule=schedule, epochs=epochs, auxiliary_weight=float(auxiliary_weight),
            drop_path_prob=float(drop_path_prob), grad_clip=grad_clip, lr_min=float(lr_min),
        )
        self.net = network
        if hasattr(network, "drop_path_prob"):
            network.drop_path_prob = 0.0  # the start of a schedule; ScheduledDropPath raises it
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_history: List[float] = []
        self._drop_path_set = False
        self._drop_path_warned = False

    # ----------------------------------------------------------------- drop path
    @property
    def drop_path_prob(self) -> float:
        """The network's current drop-path probability (0 for networks without drop path)."""
        return float(getattr(self.net, "drop_path_prob", 0.0))

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        check_real("drop_path_prob", value, low=0.0, high=1.0, high_open=True)
        if not hasattr(self.net, "drop_path_prob"):
            if value > 0:
                raise ValueError(f"{type(self.net).__name__} has no drop path; cannot set drop_path_prob={value!r}")
            return
        self.net.drop_path_prob = float(value)
        self._drop_path_set = True

    # ----------------------------------------------------------------- steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (the auxiliary head only enters the training loss)."""
        return split_logits(self.net(x))[0]

    @staticmethod
    def _unpack(batch: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"ChildClassifier expects batches (images, labels), got {type(batch).__name__}")
        return batch[0], batch[1]

    def criterion(self, logits: torch.Tensor, logits_aux: Optional[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Cross entropy, plus ``auxiliary_weight`` times the auxiliary head's when it ran."""
        loss = F.cross_entropy(logits, target)
        if logits_aux is not None and self.settings["auxiliary_weight"]:
            loss = loss + self.settings["auxiliary_weight"] * F.cross_entropy(logits_aux, target)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits, aux = split_logits(self.net(x))
        loss = self.criterion(logits, aux, y)
        if not torch.isfinite(loss):
            bad = nonfinite_count(x)
            cause = (f"the input images of this batch hold {bad} non-finite values: the data is at fault" if bad else
                     f"the inputs are finite: training diverged (lower lr={self.settings['lr']} or set grad_clip)")
            raise FloatingPointError(f"child training loss is {float(loss)} at epoch {self.current_epoch}, batch "
                                     f"{batch_idx}; {cause}")
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = self._unpack(batch)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage == "val")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test", self.test_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # compute() reduces across ranks, so every rank records the same value
        self.val_acc_history.append(float(self.val_acc.compute()))

    def setup(self, stage: str) -> None:
        """Refuse a ``num_classes`` other than the datamodule's (the metrics and the network's outputs follow it)."""
        check_against_datamodule(type(self).__name__, getattr(self.trainer, "datamodule", None),
                                 {"num_classes": ("num_classes", self.hparams.num_classes)})

    def on_fit_start(self) -> None:
        self._drop_path_set = False
        clip = self.trainer.gradient_clip_val
        if clip is not None and self.settings["grad_clip"]:
            raise ValueError(
                f"{type(self).__name__} clips the gradient norm itself (grad_clip={self.settings['grad_clip']!r}); "
                f"Trainer(gradient_clip_val={clip!r}) would clip a second time. Set {type(self).__name__}(grad_clip=...) "
                f"and leave the Trainer flag unset, or set {type(self).__name__}(grad_clip=None) to let the Trainer clip"
            )

    def on_train_epoch_start(self) -> None:
        # Callbacks' on_train_epoch_start runs before the module's, so a schedule has set it by now.
        if not self._drop_path_set and self.settings["drop_path_prob"] > 0 and not self._drop_path_warned:
            self._drop_path_warned = True
            rank_zero_warn(
                f"{type(self).__name__}(drop_path_prob={self.settings['drop_path_prob']}) is the maximum of a schedule, "
                f"but no callback set `drop_path_prob`; training runs with drop path {self.drop_path_prob}. Add "
                "lit_automl.callbacks.ScheduledDropPath() to the Trainer's callbacks"
            )
        self.log("drop_path_prob", self.drop_path_prob, on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["val_acc_history"] = list(self.val_acc_history)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self.val_acc_history = list(checkpoint.get("val_acc_history", []))

    # ----------------------------------------------------------------- optimisation
    def schedule_epochs(self) -> int:
        """Length of the cosine schedule: ``epochs`` or the Trainer's ``max_epochs``."""
        if self.settings["epochs"] is not None:
            return int(self.settings["epochs"])
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"{type(self).__name__}(epochs=None) takes the cosine schedule length from Trainer(max_epochs), which "
                f"is {max_epochs!r}; set Trainer(max_epochs=...) or {type(self).__name__}(epochs=...)"
            )
        return int(max_epochs)

    def configure_optimizers(self) -> Any:
        hp = SimpleNamespace(**self.settings)
        optimizer = torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov, weight_decay=hp.weight_decay
        )
        if hp.schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.schedule_epochs(), eta_min=hp.lr_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: Optional[Union[int, float]] = None,
        gradient_clip_algorithm: Optional[str] = None,
    ) -> None:
        """Clip the gradient norm to ``grad_clip`` when set; otherwise the Trainer's flag applies."""
        if self.settings["grad_clip"]:
            self.clip_gradients(optimizer, gradient_clip_val=float(self.settings["grad_clip"]), gradient_clip_algorithm="norm")
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

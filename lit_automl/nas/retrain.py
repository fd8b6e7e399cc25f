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
from typing import Dict, Optional

from torch import nn

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.nas.child import ChildClassifier
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet
from lit_automl.spaces.published import resolve_genotype

__all__ = ["Retrain", "NETWORKS"]

NETWORKS: Dict[str, type] = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}
"""Evaluation network by name: ``"cifar"`` (32x32 inputs), ``"imagenet"`` (224x224, mobile setting)."""


class Retrain(ChildClassifier):
    """Train a genotype's evaluation network from scratch (DARTS Sec. 3.2, A.1.2).

    The training, evaluation and optimisation code is :class:`~lit_automl.nas.child.ChildClassifier`'s
    (SGD without Nesterov here, cosine to ``lr_min``, gradient clipping, auxiliary loss, drop-path schedule).

    Args:
        genotype: anything :func:`~lit_automl.spaces.published.resolve_genotype` takes: a
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
        check_choice("network", network, NETWORKS)
        for name, value in (("C", C), ("layers", layers), ("num_classes", num_classes), ("in_channels", in_channels)):
            check_int(name, value, low=1)
        check_bool("auxiliary", auxiliary)
        check_real("grad_clip", grad_clip, low=0.0, high=math.inf, high_open=True, allow_none=True)

        resolved: Genotype = resolve_genotype(genotype)
        net: nn.Module = NETWORKS[network](
            resolved,
            C=C,
            num_classes=num_classes,
            layers=layers,
            auxiliary=auxiliary,
            drop_path_prob=0.0,  # start of the schedule; a callback raises it
            in_channels=in_channels,
        )
        super().__init__(
            net, num_classes=num_classes, lr=lr, momentum=momentum, nesterov=False, weight_decay=weight_decay,
            schedule="cosine", epochs=epochs, auxiliary_weight=auxiliary_weight, drop_path_prob=drop_path_prob,
            grad_clip=grad_clip or None, lr_min=lr_min,  # 0 turns clipping off, as None does
        )
        # Store the resolved text (not a name or a file path) so checkpoints are self-contained.
        genotype = str(resolved)
        self.save_hyperparameters()
        self._genotype = resolved

    # ----------------------------------------------------------------- architecture
    def genotype(self) -> Genotype:
        """The genotype being trained (same interface as the search modules' ``genotype()``)."""
        return self._genotype

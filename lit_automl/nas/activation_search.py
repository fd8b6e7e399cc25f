"""Activation search: the controller samples activation functions, a small ResNet trained with each scores it.

Ramachandran, Zoph & Le, "Searching for Activation Functions", ICLR workshop 2018, Sec. 2-3: the RNN controller
emits the five tokens of each core unit (input1, input2, unary1, unary2, binary; Fig. 2), each sampled activation
replaces ReLU in a child ResNet-20 trained on CIFAR-10 for 10K steps, and the child's validation accuracy is the
reward (PPO with an exponential-moving-average baseline in the paper; REINFORCE or PPO here through
:class:`~lit_automl.nas.rl_search.RLSearch`). The searches of the paper used one or two core units (Sec. 3: the best
functions found have one or two; more complex ones did worse): :class:`ActivationSpace` takes ``num_units``, default
1 (Swish is one core unit), and the paper-settings recipe uses 2.

* :class:`ActivationSpace`: the :class:`~lit_automl.spaces.decisions.DecisionSpace` of activations of ``num_units``
  core units over chosen unary / binary vocabularies (the language of :mod:`lit_automl.nas.activations`);
* :func:`activation_resnet`: the child, a CIFAR ResNet (He et al. 2016 Sec. 4.2: a 3x3 stem, three stages of
  ``blocks`` basic blocks at ``width``, ``2 width``, ``4 width`` channels, identity shortcuts with zero padding
  where the shape changes, global average pooling, a linear classifier) with every ReLU replaced by the activation
  (per-channel betas at each place); ``blocks=3, width=16`` is ResNet-20, the paper's child;
* :class:`ActivationEvaluator`: trains that child for ``budget`` epochs through the shared machinery of
  :mod:`lit_automl.nas.unit_programs` (:class:`~lit_automl.nas.child.ChildClassifier`,
  :func:`~lit_automl.nas.evaluator.fit_child`), as the update-rule search does.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_int, check_real
from lit_automl.nas.activations import Activation, ActivationProgram, parse_activation
from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.evaluator import DataModuleFactory
from lit_automl.nas.unit_programs import UnitProgramEvaluator, UnitSpace

__all__ = ["ActivationEvaluator", "ActivationSpace", "activation_resnet"]


class ActivationSpace(UnitSpace):
    """Activations of ``num_units`` core units as controller decisions (Ramachandran et al. 2018, Sec. 2, Fig. 2).

    Args:
        num_units: core units per activation (1: ``b(u1(x), u2(x))``; unit ``k`` may also read ``o1 .. o<k-1>``).
            The paper's searches used 1 and 2 (Sec. 3); 1 is our default.
        unaries, binaries: the vocabularies (default: all of :data:`~lit_automl.nas.activations.UNARIES`,
            ``BINARIES``); an empty one is refused. The only input token besides earlier outputs is ``x``.
    """

    program = ActivationProgram
    record_key = "activation"

    def __init__(self, num_units: int = 1, unaries: Optional[Sequence[str]] = None,
                 binaries: Optional[Sequence[str]] = None) -> None:
        super().__init__(num_units, None, unaries, binaries)

    def parse(self, text: Union[str, ActivationProgram]) -> ActivationProgram:
        """The activation of a token string or a name (:func:`~lit_automl.nas.activations.parse_activation`)."""
        return parse_activation(text)


class _BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN plus the shortcut, then act (He et al. 2016, Sec. 4.2: option A shortcuts)."""

    def __init__(self, c_in: int, c_out: int, stride: int, program: ActivationProgram) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = Activation(program, num_channels=c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = Activation(program, num_channels=c_out)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:  # zero-padded channels: the shortcut has no parameters (option A)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
        return self.act2(out + shortcut)


def activation_resnet(in_channels: int, num_classes: int, activation: Union[str, ActivationProgram] = "relu",
                      width: int = 16, blocks: int = 3) -> nn.Sequential:
    """A CIFAR ResNet of ``6 blocks + 2`` layers with ``activation`` in place of every ReLU (He et al. 2016
    Sec. 4.2; ``width=16, blocks=3``: ResNet-20, Ramachandran et al. 2018's search child, Sec. 3)."""
    program = parse_activation(activation)
    check_int("width", width, low=1)
    check_int("blocks", blocks, low=1)
    layers: List[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                               Activation(program, num_channels=width)]
    c_in = width
    for stage in range(3):
        c_out = width * 2 ** stage
        for i in range(blocks):
            layers.append(_BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1, program))
            c_in = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


class ActivationEvaluator(UnitProgramEvaluator):
    """Scores an activation by training :func:`activation_resnet` with it for ``budget`` epochs (Ramachandran et al.
    2018, Sec. 3: ResNet-20 on CIFAR-10 for 10K steps; reward = validation accuracy).

    Args:
        space: the :class:`ActivationSpace` searched.
        datamodule: a factory of the data (its validation split gives the reward), as for
            :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        lr, momentum, weight_decay: the child's SGD (0.1, 0.9, 1e-4: He et al. 2016's CIFAR ResNet training; the
            paper's search-time optimiser was not checked), with the cosine schedule of
            :class:`~lit_automl.nas.child.ChildClassifier` (ours). Weight decay also applies to the betas.
        width, blocks: the child ResNet (16 and 3: ResNet-20).
        trainer_kwargs, run_dir, seed: as :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        num_classes, in_channels: override the datamodule's attributes.
    """

    space_type = ActivationSpace

    def __init__(self, space: ActivationSpace, datamodule: DataModuleFactory, lr: float = 0.1, momentum: float = 0.9,
                 weight_decay: float = 1e-4, width: int = 16, blocks: int = 3,
                 trainer_kwargs: Optional[Dict[str, Any]] = None, run_dir: Optional[str] = None,
                 num_classes: Optional[int] = None, in_channels: Optional[int] = None, seed: Optional[int] = 0) -> None:
        if not isinstance(space, ActivationSpace):
            raise ValueError(f"space must be an ActivationSpace, got {type(space).__name__}")
        self.lr = check_real("lr", lr, low=0, low_open=True)
        self.momentum = check_real("momentum", momentum, low=0, high=1, high_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, low=0)
        activation_resnet(1, 2, "relu", width, blocks)  # validates width / blocks here rather than in the first child
        self.width, self.blocks = width, blocks
        super().__init__(space, datamodule, trainer_kwargs, run_dir, num_classes, in_channels, seed)

    def child(self, program: ActivationProgram) -> Tuple[nn.Module, ChildClassifier]:
        """:func:`activation_resnet` with the activation, trained by SGD."""
        network = activation_resnet(self.in_channels, self.num_classes, program, self.width, self.blocks)
        return network, ChildClassifier(network, num_classes=self.num_classes, lr=self.lr, momentum=self.momentum,
                                        nesterov=False, weight_decay=self.weight_decay)

    def evaluate(self, architecture: Union[str, ActivationProgram], budget: int,
                 key: Optional[str] = None) -> Dict[str, Any]:
        """Train the child with the activation (a token string or a name such as ``"relu"``) for ``budget`` epochs;
        per-epoch validation accuracy (``"val_acc"`` the last), parameters, time, and the activation
        (``"activation"``, ``"formula"``)."""
        return super().evaluate(architecture, budget, key)

"""NAS-RL: REINFORCE over a chain-structured CNN space (Zoph & Le, ICLR 2017).

The paper's CIFAR-10 search (Sec. 4.1):

* controller: 2-layer LSTM, 35 hidden units, Adam lr 6e-4, weights uniform in [-0.08, 0.08];
* ``m = 8`` child architectures per controller replica and update (Sec. 3.2);
* children: chain CNNs (:class:`~lit_automl.spaces.chain.ChainSpace`; filter height / width in
  {1, 3, 5, 7}, filters in {24, 36, 48, 64}, skip connections by anchor-point attention), trained
  for 50 epochs with Nesterov momentum 0.9, lr 0.1, weight decay 1e-4
  (:class:`~lit_automl.nas.evaluator.TrainingEvaluator`'s defaults);
* reward: the maximum validation accuracy of the last 5 epochs, cubed;
* depth schedule: children start with 6 layers and grow by 2 every 1,600 sampled children.

The recurrent-cell search on Penn Treebank of the same paper uses the same controller with a
different decision list (see the ENAS / recurrent-cell spaces).
"""

from __future__ import annotations

from typing import Any, Optional

from lit_automl._checks import check_bool, check_int
from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.rl_search import RLSearch

__all__ = ["NASRL"]


class NASRL(RLSearch):
    """NAS-RL (Zoph & Le 2017, Sec. 3 and 4.1) as a LightningModule; defaults are the paper's CIFAR-10 search.

    Args:
        evaluator: trains the children; its space must be a
            :class:`~lit_automl.spaces.chain.ChainSpace` when ``grow_depth`` is on (the space is
            declared at the *maximum* depth, the controller samples the first layers of it).
        grow_depth: apply the paper's schedule of increasing depth (Sec. 4.1).
        initial_layers: depth of the first children (6).
        layers_increment: layers added at each growth (2).
        grow_every: sampled children between growths (1,600).
        Other arguments: :class:`~lit_automl.nas.rl_search.RLSearch`, whose defaults are this
        paper's (REINFORCE, ``m=8``, 50 epochs, reward ``max_last5_cubed``, 2 x 35 LSTM, Adam lr
        6e-4, init 0.08).
    """

    def __init__(
        self,
        evaluator: Evaluator,
        grow_depth: bool = True,
        initial_layers: int = 6,
        layers_increment: int = 2,
        grow_every: int = 1600,
        **kwargs: Any,
    ) -> None:
        super().__init__(evaluator, **kwargs)
        check_bool("grow_depth", grow_depth)
        check_int("initial_layers", initial_layers, low=1)
        check_int("layers_increment", layers_increment, low=0)
        check_int("grow_every", grow_every, low=1)
        if grow_depth:
            max_layers = getattr(self.space, "num_layers", None)
            if not hasattr(self.space, "num_decisions") or max_layers is None:
                raise ValueError(
                    f"grow_depth=True needs a layered space with num_layers and num_decisions(layers) "
                    f"(ChainSpace); got {type(self.space).__name__}. Set grow_depth=False for other spaces"
                )
            if initial_layers > max_layers:
                raise ValueError(
                    f"initial_layers={initial_layers} exceeds the space's maximum depth num_layers={max_layers}; "
                    "declare the ChainSpace at the maximum depth the schedule should reach"
                )

    def current_layers(self) -> Optional[int]:
        """Depth of the children sampled now: ``initial + increment * (children // grow_every)``, capped at the space's."""
        hp = self.hparams
        if not hp.grow_depth:
            return None
        depth = hp.initial_layers + hp.layers_increment * (self.children_sampled // hp.grow_every)
        return min(depth, int(self.space.num_layers))

    def decision_length(self) -> Optional[int]:
        layers = self.current_layers()
        return None if layers is None else int(self.space.num_decisions(layers))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        super().training_step(batch, batch_idx)
        layers = self.current_layers()
        if layers is not None:
            self.log("search/child_layers", float(layers), on_step=True, on_epoch=False, batch_size=1)

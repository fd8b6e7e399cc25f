"""NASNet search: PPO over the NASNet cell space (Zoph, Vasudevan, Shlens & Le, CVPR 2018).

The paper's search (Sec. 3 and Appendix A):

* the controller emits ``2 x 5B`` softmax predictions (B = 5 blocks per cell, normal cell then
  reduction cell; :class:`~lit_automl.spaces.nasnet.NASNetCellSpace`);
* it is a one-layer LSTM with 100 hidden units, weights initialised uniformly in [-0.1, 0.1],
  trained with Proximal Policy Optimization (lr 0.00035, entropy penalty weight 0.00001,
  exponential-moving-average baseline with decay 0.95);
* the children are small NASNet networks (``N = 2``) whose validation accuracy at the end of
  training is the reward; the children were trained on a global work queue of hundreds of GPUs
  (here: an Optuna study served by worker processes, :mod:`lit_automl.nas.workqueue`);
* the final architecture is trained with ScheduledDropPath (Sec. 4), which the evaluator can also
  run in every child (``TrainingEvaluator(drop_path_prob=...)``).

``children_per_step=8`` and ``budget=20`` epochs are this library's defaults (the paper's work
queue updates asynchronously and does not state a batch of architectures per update).
"""

from __future__ import annotations

from typing import Any

from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.rl_search import RLSearch

__all__ = ["NASNetSearch"]


class NASNetSearch(RLSearch):
    """NASNet (Zoph et al. 2018, Sec. 3, Appendix A) as a LightningModule; defaults are the paper's controller.

    Args:
        evaluator: trains the children; its space is normally a
            :class:`~lit_automl.spaces.nasnet.NASNetCellSpace`.
        algorithm, budget, reward, hidden_size, num_layers, init_range, lr, entropy_weight: as in
        :class:`~lit_automl.nas.rl_search.RLSearch`, with the paper's values above (PPO, 1 x 100
        LSTM, lr 3.5e-4, init 0.1, entropy weight 1e-5; reward ``"final"``: the validation accuracy
        at the end of child training; ``budget=20`` is ours).
        Other arguments (``baseline_decay`` 0.95 as in the paper, ``children_per_step`` 8):
        :class:`~lit_automl.nas.rl_search.RLSearch`.
    """

    def __init__(
        self, evaluator: Evaluator, algorithm: str = "ppo", budget: int = 20, reward: str = "final",
        hidden_size: int = 100, num_layers: int = 1, init_range: float = 0.1, lr: float = 3.5e-4,
        entropy_weight: float = 1e-5, **kwargs: Any,
    ) -> None:
        super().__init__(
            evaluator, algorithm=algorithm, budget=budget, reward=reward, hidden_size=hidden_size,
            num_layers=num_layers, init_range=init_range, lr=lr, entropy_weight=entropy_weight, **kwargs,
        )

"""Progressive Neural Architecture Search on the shared child record.

Liu, Zoph, Neumann, Shlens, Hua, Li, Fei-Fei, Yuille, Huang & Murphy, "Progressive Neural
Architecture Search", ECCV 2018, Algorithm 1 (Sec. 3.2): cells are searched from simple to complex.

* Level 1: every unique one-block cell (136 with the paper's 8 ops) is trained.
* Level ``b = 2 .. B``: every cell of the beam is expanded by every possible block (symmetric blocks
  counted once, :func:`~lit_automl.spaces.pnas.unique_blocks`); the surrogate
  (:class:`~lit_automl.nas.pnas_predictor.PredictorEnsemble`), fitted on every child measured so far,
  ranks the candidates by its mean prediction; the top ``K`` are trained and become the beam.
* When level ``B`` is trained the search ends (Lightning is stopped through ``trainer.should_stop``) and
  its result is the best cell of level ``B`` (Algorithm 1's ``top-1(S_B, C)``); every child is in the
  record (``children.jsonl``, the Optuna study).

Paper settings: ``B = 5``, ``K = 256`` (Sec. 5.1: 136 + 4 x 256 = 1,160 children), children trained 20
epochs (the evaluator's ``budget``), reward the validation accuracy (``"final"``). Algorithm 1 refits the
predictor after each level ("update-predictor"); here it is refitted, from scratch and on all measured
children, when the next level is built -- the same fit, done when it is needed. At each level ``b >= 2``
the Spearman rank correlation between the predictions and the measured rewards of the level's children
(the predictor before it sees them; Sec. 5.3) is computed when the level is complete; ``pnas/spearman`` logs
the latest level's value at every step from then on (``spearman_per_level`` keeps them all).

Steps: ``propose(n)`` hands out up to ``n`` children of the current level (a step never mixes levels:
the next level needs every reward of this one). Checkpoints hold the level, beam, pending children, their
predictions and every measured ``(tokens, reward)``; the ensemble is not saved: its fit is a pure
function of the measured data and a generator keyed by ``(seed, level)``
(:func:`~lit_automl.rng.keyed_generator`), so a resumed search refits the same ensemble.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn
from scipy.stats import spearmanr

from lit_automl._checks import ArgumentTypeError, check_int
from lit_automl.nas.child_search import Actions, ChildSearch
from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.pnas_predictor import PredictorEnsemble
from lit_automl.rng import keyed_generator
from lit_automl.threads import single_threaded
from lit_automl.spaces.pnas import PNASCellSpace, count_unique_blocks

__all__ = ["PNAS"]

Cell = List[int]


class PNAS(ChildSearch):
    """PNAS (Liu et al., ECCV 2018, Algorithm 1; module docstring) over a
    :class:`~lit_automl.spaces.pnas.PNASCellSpace`, whose ``num_blocks`` is ``B``.

    Args:
        evaluator: trains children; ``evaluator.space`` must be a ``PNASCellSpace``.
        beam_size: ``K``, cells kept and trained per level after the first (256, Sec. 5.1).
        predictor: ``"lstm"`` (the paper's) or ``"mlp"`` (:mod:`lit_automl.nas.pnas_predictor`).
        ensemble_size: predictors in the ensemble (5, Sec. 5.1).
        predictor_epochs, predictor_batch_size: the predictor's training (20 and 32, ours: not in the paper).
        predictor_lr: Adam's learning rate (0.01, Sec. 5.1).
        children_per_step: children trained per search step (8: the paper trains a level's K in parallel).
        budget: epochs per child (20, Sec. 5.1).
        reward: the child reward (``"final"``: the validation accuracy, which the predictor regresses).
        Other arguments: :class:`~lit_automl.nas.child_search.ChildSearch`'s.

    Documented attributes: ``level`` (blocks of the current level's cells, 0 before the first), ``beam``
    (the last trained level's cells), ``pending`` (this level's cells not yet proposed), ``level_cells`` /
    ``level_predictions`` / ``level_rewards`` (this level's cells, their predicted and measured rewards),
    ``measured`` (every ``(tokens, reward)`` so far), ``spearman_per_level`` (``{level: rho}`` for levels
    2 .. B), ``predictor`` (the ensemble last fitted, or None), ``finished``.
    """

    checkpoint_key = "pnas"

    def __init__(self, evaluator: Evaluator, beam_size: int = 256, predictor: str = "lstm", ensemble_size: int = 5,
                 predictor_epochs: int = 20, predictor_batch_size: int = 32, predictor_lr: float = 0.01,
                 children_per_step: int = 8, budget: int = 20, reward: str = "final", **kwargs: Any) -> None:
        check_int("beam_size", beam_size, low=1)
        space = getattr(evaluator, "space", None)
        if not isinstance(space, PNASCellSpace):
            raise ArgumentTypeError(f"PNAS grows PNAS cells block by block: evaluator.space must be a "
                             f"lit_automl.spaces.PNASCellSpace, got {type(space).__name__}")
        ensemble_args = dict(num_inputs=space.num_blocks + 1, num_ops=len(space.ops), kind=predictor,
                             size=ensemble_size, lr=predictor_lr, epochs=predictor_epochs,
                             batch_size=predictor_batch_size)
        try:  # the ensemble checks its settings; say which PNAS arguments they are
            PredictorEnsemble(**ensemble_args)
        except ValueError as err:
            raise type(err)(f"PNAS predictor settings (predictor -> kind, ensemble_size -> size, predictor_lr -> lr, "
                            f"predictor_epochs -> epochs, predictor_batch_size -> batch_size): {err}") from None
        super().__init__(evaluator, children_per_step=children_per_step, budget=budget, reward=reward, **kwargs)
        self._ensemble_args = ensemble_args
        self.level = 0
        self.beam: List[Cell] = []
        self.pending: List[Cell] = []
        self.level_cells: List[Cell] = []
        self.level_predictions: Optional[List[float]] = None
        self.level_rewards: List[float] = []
        self.measured: List[Tuple[Cell, float]] = []
        self.spearman_per_level: Dict[int, float] = {}
        self.finished = False
        self.predictor: Optional[PredictorEnsemble] = None

    @property
    def num_blocks(self) -> int:
        """``B``: the space's blocks per cell."""
        return self.space.num_blocks

    def level_sizes(self) -> List[int]:
        """Children trained at each level ``1 .. B``: ``|B_1|``, then ``min(K, beam x new blocks)``."""
        sizes = [count_unique_blocks(0, len(self.space.ops))]
        for b in range(1, self.num_blocks):
            sizes.append(min(self.hparams.beam_size, sizes[-1] * count_unique_blocks(b, len(self.space.ops))))
        return sizes

    def on_fit_start(self) -> None:
        super().on_fit_start()
        n = self.hparams.children_per_step
        steps = sum(math.ceil(s / n) for s in self.level_sizes())
        available = self.trainer.max_epochs * self.hparams.steps_per_epoch if self.trainer.max_epochs else None
        rank_zero_info(f"PNAS: levels of {self.level_sizes()} children ({sum(self.level_sizes())} in all), "
                       f"{steps} steps of {n}")
        if available is not None and available > 0 and available < steps:
            rank_zero_warn(f"PNAS needs {steps} steps to finish level B={self.num_blocks}, but max_epochs x "
                           f"steps_per_epoch = {available}: the search will stop before its last level")

    def on_train_start(self) -> None:
        if self.finished:  # a finished search resumed with a larger max_epochs has nothing to propose
            self.trainer.should_stop = True

    # ------------------------------------------------------------------ Algorithm 1
    def _fit_predictor(self) -> PredictorEnsemble:
        cells = [c for c, _ in self.measured]
        rewards = [r for _, r in self.measured]
        generator = keyed_generator(self.hparams.seed, self.level)
        return PredictorEnsemble(**self._ensemble_args).fit(cells, rewards, generator)

    def _next_level(self) -> None:
        """Build level ``level + 1``: all one-block cells, or the top-K expansions of the beam."""
        if self.level >= self.num_blocks:
            raise RuntimeError(f"the PNAS search is finished (level B={self.num_blocks} trained): nothing to propose")
        if self.level == 0:
            cells, predictions = self.space.one_block_cells(), None
        else:
            seen = set()
            candidates: List[Cell] = []
            for cell in self.beam:
                for child in self.space.expand(cell):
                    if tuple(child) not in seen:
                        seen.add(tuple(child))
                        candidates.append(child)
            with single_threaded():  # small networks: 2 threads of 2 busy cores fit ~10x slower than 1
                self.predictor = self._fit_predictor()
                scores = self.predictor.predict(candidates).tolist()
            order = sorted(range(len(candidates)), key=lambda i: -scores[i])[: self.hparams.beam_size]  # stable: ties by order
            cells, predictions = [candidates[i] for i in order], [float(scores[i]) for i in order]
        self.level += 1
        self.level_cells = [list(c) for c in cells]
        self.level_predictions = predictions
        self.level_rewards = []
        self.pending = [list(c) for c in cells]

    def propose(self, n: int) -> Actions:
        if not self.pending:
            self._next_level()
        out, self.pending = self.pending[:n], self.pending[n:]
        return [list(c) for c in out]

    def observe(self, actions: Actions, rewards: List[float]) -> Dict[str, float]:
        """Record the children; when the level is complete, it becomes the beam (Spearman logged), and after
        level ``B`` the search stops."""
        for a, r in zip(actions, rewards):
            self.measured.append(([int(t) for t in a], float(r)))  # type: ignore[union-attr]
            self.level_rewards.append(float(r))
        if not self.pending and len(self.level_rewards) == len(self.level_cells):  # the level is complete
            self.beam = [list(c) for c in self.level_cells]
            if self.level_predictions is not None:
                self.spearman_per_level[self.level] = self.spearman()
            if self.level == self.num_blocks:
                self.finished = True
                self._keep_best_of_last_level()
                if self._trainer is not None:
                    self.trainer.should_stop = True
        stats = {"pnas/level": float(self.level), "pnas/measured": float(len(self.measured))}
        if self.spearman_per_level:
            stats["pnas/spearman"] = self.spearman_per_level[max(self.spearman_per_level)]
        return stats

    def spearman(self) -> float:
        """Spearman's rank correlation of the current level's predictions with its measured rewards (NaN when
        either is constant)."""
        if self.level_predictions is None:
            raise ValueError("level 1 is not predicted: its cells are all trained")
        n = len(self.level_rewards)
        rho = spearmanr(self.level_predictions[:n], self.level_rewards).statistic
        return float(rho)

    def _keep_best_of_last_level(self) -> None:
        """The search's result is the best trained cell of level B (Algorithm 1: top-1(S_B, C))."""
        n = len(self.level_cells)
        last = [h for h in self.history[-n:] if h["state"] == "COMPLETE"] if len(self.history) >= n else []
        if last:
            self.best = max(last, key=lambda h: h["reward"])

    # ------------------------------------------------------------------ checkpoints
    def strategy_state(self) -> Dict[str, Any]:
        return {"level": self.level, "beam": self.beam, "pending": self.pending, "level_cells": self.level_cells,
                "level_predictions": self.level_predictions, "level_rewards": self.level_rewards,
                "measured": [[c, r] for c, r in self.measured], "finished": self.finished,
                "spearman_per_level": dict(self.spearman_per_level)}

    def load_strategy_state(self, state: Dict[str, Any]) -> None:
        self.level = int(state["level"])
        self.beam = [list(c) for c in state["beam"]]
        self.pending = [list(c) for c in state["pending"]]
        self.level_cells = [list(c) for c in state["level_cells"]]
        preds = state["level_predictions"]
        self.level_predictions = None if preds is None else [float(p) for p in preds]
        self.level_rewards = [float(r) for r in state["level_rewards"]]
        self.measured = [(list(c), float(r)) for c, r in state["measured"]]
        self.finished = bool(state["finished"])
        self.spearman_per_level = {int(k): float(v) for k, v in state["spearman_per_level"].items()}
        self.predictor = None  # refitted, identically, when the next level is built


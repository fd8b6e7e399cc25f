"""Train a recurrent cell's language model for ``budget`` epochs: the evaluator of recurrent-cell search.

Zoph & Le, "Neural Architecture Search with Reinforcement Learning", ICLR 2017, Sec. 4.2: the
controller samples a recurrent cell (:class:`~lit_automl.spaces.NASRLCellSpace`, or any
:class:`~lit_automl.spaces.decisions.DecisionSpace` of recurrent cells such as
:class:`~lit_automl.spaces.ENASRecurrentSpace`), the child language model is trained on Penn Treebank
and its validation perplexity gives the reward (``c / ppl^2``, ``c = 80``;
:data:`~lit_automl.nas.evaluator.PERPLEXITY_REWARDS`). Children are trials of the same child queue as
image children (:class:`~lit_automl.nas.RLSearch`), so the search resumes and spreads over workers alike.

The child's training is this library's AWD-LSTM / DARTS protocol (:class:`~lit_automl.nas.RetrainRNN`:
SGD lr 20 scaled by ``seq_len / bptt``, clip 0.25, weight decay 8e-7, TAR 1e-3, hidden state carried) on
a smaller model; the paper does not give its child protocol in enough detail to follow it, so the sizes
here (emsize = nhid = 200, output / input / embedding dropout 0.5 / 0.2 / 0.1, no dropout inside the cell,
which the NAS-RL tree cell does not have) are ours. No averaging (a child trains ``budget`` epochs of SGD).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl

from lit_automl._checks import ArgumentTypeError, check_int
from lit_automl.nas.evaluator import DataModuleFactory, Evaluator, build_datamodule, check_trainer_kwargs, fit_child
from lit_automl.nas.retrain_rnn import RetrainRNN
from lit_automl.spaces.decisions import DecisionSpace
from lit_automl.spaces.networks import count_parameters

__all__ = ["LMTrainingEvaluator"]


class _PerplexityHistory(pl.Callback):
    """The validation perplexity after every training epoch."""

    def __init__(self) -> None:
        self.history: List[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and "val/ppl" in trainer.callback_metrics:
            self.history.append(float(trainer.callback_metrics["val/ppl"]))


class LMTrainingEvaluator(Evaluator):
    """Train the language model of a recurrent cell for ``budget`` epochs (module docstring).

    Args:
        space: a :class:`~lit_automl.spaces.decisions.DecisionSpace` whose architectures are recurrent cells
            (:class:`~lit_automl.spaces.NASRLCellSpace`, :class:`~lit_automl.spaces.ENASRecurrentSpace`).
        datamodule: a factory of the data (a :class:`~lit_automl.datamodules.PTBDataModule` class, lambda or
            recipe spec); built once, here, and shared by every child.
        emsize, nhid, dropout, dropout_h, dropout_x, dropout_i, dropout_e, lr, weight_decay, clip, alpha,
            beta: the child's :class:`~lit_automl.nas.RetrainRNN` settings (see the module docstring).
        trainer_kwargs, run_dir, seed: as :class:`~lit_automl.nas.TrainingEvaluator`'s.
    """

    def __init__(self, space: DecisionSpace, datamodule: DataModuleFactory, emsize: int = 200, nhid: int = 200,
                 dropout: float = 0.5, dropout_h: float = 0.0, dropout_x: float = 0.0, dropout_i: float = 0.2,
                 dropout_e: float = 0.1, lr: float = 20.0, weight_decay: float = 8e-7, clip: float = 0.25,
                 alpha: float = 0.0, beta: float = 1e-3, trainer_kwargs: Optional[Dict[str, Any]] = None,
                 run_dir: Optional[str] = None, seed: Optional[int] = 0) -> None:
        if not isinstance(space, DecisionSpace):
            raise ArgumentTypeError(f"space must be a DecisionSpace of recurrent cells (e.g. NASRLCellSpace, "
                                    f"ENASRecurrentSpace), got {type(space).__name__}")
        self.space = space
        self.datamodule = build_datamodule(datamodule)
        self._data_state = self.datamodule.state_dict()  # every child starts from it (PTB's training-pass count)
        self.child_kwargs = dict(emsize=emsize, nhid=nhid, dropout=dropout, dropout_h=dropout_h, dropout_x=dropout_x,
                                 dropout_i=dropout_i, dropout_e=dropout_e, lr=lr, weight_decay=weight_decay,
                                 clip=clip, alpha=alpha, beta=beta, nonmono=None)
        RetrainRNN(**self.child_kwargs)  # validate the child settings once, here, rather than in the first worker
        self.trainer_kwargs = check_trainer_kwargs(trainer_kwargs)
        self.run_dir = run_dir
        self.seed = check_int("seed", seed, allow_none=True)

    def evaluate(self, architecture: Any, budget: int, key: Optional[str] = None) -> Dict[str, Any]:
        """Train ``architecture``'s language model for ``budget`` epochs; per-epoch validation perplexity,
        parameters, time."""
        check_int("budget (epochs)", budget, low=1)
        if self.seed is not None:  # before the model is built: the seed fixes its initialisation too
            pl.seed_everything(self.seed, workers=True, verbose=False)
        self.datamodule.load_state_dict(self._data_state)
        self.datamodule.setup("fit")
        module = RetrainRNN(architecture, vocab_size=self.datamodule.vocab_size, **self.child_kwargs)
        record = _PerplexityHistory()
        seconds, _ = fit_child(module, self.datamodule, budget, callbacks=[record], run_dir=self.run_dir, key=key,
                               trainer_kwargs=self.trainer_kwargs)
        history = record.history
        if not history:
            raise RuntimeError(f"the child trained {budget} epoch(s) but recorded no validation perplexity: the "
                               "Trainer must run validation (check limit_val_batches / check_val_every_n_epoch in "
                               "trainer_kwargs)")
        if not all(math.isfinite(p) for p in history):
            raise FloatingPointError(f"child validation perplexity is not finite: {history}")
        return {"val_ppl_history": history, "val_ppl": history[-1], "params": count_parameters(module.model),
                "train_seconds": seconds, "epochs": budget}

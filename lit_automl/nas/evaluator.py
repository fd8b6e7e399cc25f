"""``evaluate(architecture, budget) -> metrics``: the one interface of sample-based search.

An RL controller, an evolution loop or an Optuna sampler proposes architectures; an *evaluator*
says how good each is. :class:`TrainingEvaluator` builds the child network from the search space
and trains it with Lightning for ``budget`` epochs (NAS-RL, Zoph & Le ICLR 2017 Sec. 4.1; NASNet,
Zoph et al. CVPR 2018 Sec. 4). Other evaluators (shared one-shot weights, tabular benchmarks)
implement the same method.

Evaluators are picklable, so worker processes receive them whole; each evaluation builds a fresh
network and a fresh Trainer.

A :class:`TrainingEvaluator` takes its data as a *factory*, ``Callable[[], LightningDataModule]``
(the pattern of Lightning's ``OptimizerCallable``): a recipe gives the datamodule's ``class_path``
and ``init_args`` and jsonargparse turns them into that callable, so the datamodule nested in a
search's arguments is built by the evaluator, not by LightningCLI's top-level ``data:`` machinery.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real
from lit_automl.nas.child import ChildClassifier
from lit_automl.spaces.decisions import DecisionSpace, SequentialSpace
from lit_automl.spaces.networks import count_parameters

__all__ = ["ACCURACY_REWARDS", "DataModuleFactory", "build_datamodule", "Evaluator", "PERPLEXITY_REWARDS", "PPL_REWARD_CONSTANT", "REWARDS",
           "TrainingEvaluator", "check_trainer_kwargs", "describe_reward", "fit_child", "reward_from_metrics"]

DataModuleFactory = Callable[[], pl.LightningDataModule]
"""Builds the datamodule children train on: a LightningDataModule class, a lambda, or a recipe's
``class_path`` / ``init_args`` spec (which jsonargparse turns into such a callable)."""


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit info lines (device summary, tips) while children train."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero",
                                                    "lightning_fabric", "lightning_fabric.utilities.rank_zero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def build_datamodule(factory: Any) -> pl.LightningDataModule:
    """The datamodule ``factory()`` returns; an instance or a non-callable is refused with the fix."""
    fix = ("datamodule must be a LightningDataModule factory (a callable returning one: its class, a lambda, "
           "or a recipe's class_path spec)")
    if isinstance(factory, pl.LightningDataModule):
        raise ValueError(f"{fix}, got the instance {type(factory).__name__}(...); pass "
                         f"`lambda: {type(factory).__name__}(...)` or the class instead")
    if not callable(factory):
        raise ValueError(f"{fix}, got {factory!r}")
    datamodule = factory()
    if not isinstance(datamodule, pl.LightningDataModule):
        raise ValueError(f"{fix}; the factory returned {type(datamodule).__name__}")
    return datamodule


REWARD_WINDOW = 5
"""The ``last 5`` epochs of ``max_last5`` rewards (Zoph & Le 2017, Sec. 4.1)."""

ACCURACY_REWARDS = {"max_last5_cubed": 3, "max_last5": 1, "final": None}
"""Reward definitions over the per-epoch validation accuracies (``val_acc_history``):

* ``max_last5_cubed``: the maximum validation accuracy of the last 5 epochs, cubed (NAS-RL,
  Zoph & Le 2017 Sec. 4.1);
* ``max_last5``: the same, not cubed;
* ``final``: the last epoch's validation accuracy (NASNet, Zoph et al. 2018 Sec. 4 uses the
  accuracy of the held-out validation set at the end of child training).

Each name maps to the power the best of the last 5 accuracies is raised to (``None``: the last one).
"""

PERPLEXITY_REWARDS = {"c_over_ppl_squared": 2, "c_over_ppl": 1}
"""Reward definitions over the per-epoch validation perplexities of language-model children
(``val_ppl_history``): ``c / ppl^2`` (NAS-RL's Penn Treebank search, Zoph & Le 2017 Sec. 4.2) and
``c / ppl`` (ENAS, Pham et al. 2018 Sec. 3.1), ``ppl`` the last epoch's, ``c`` = :data:`PPL_REWARD_CONSTANT`."""

PPL_REWARD_CONSTANT = 80.0
"""``c`` of the perplexity rewards (80 in both papers)."""

REWARDS = (*ACCURACY_REWARDS, *PERPLEXITY_REWARDS)
"""Every reward name a child queue computes."""


def reward_from_metrics(metrics: Mapping[str, Any], reward: str) -> float:
    """The scalar reward ``reward`` (one of :data:`REWARDS`) of an evaluation's metrics."""
    check_choice("reward", reward, REWARDS)
    if reward in PERPLEXITY_REWARDS:
        history = metrics.get("val_ppl_history")
        if not history:
            raise ValueError(f"metrics carry no validation perplexities (val_ppl_history={history!r}); cannot compute "
                             f"{reward!r} (a language-model evaluator such as LMTrainingEvaluator records them)")
        return PPL_REWARD_CONSTANT / float(history[-1]) ** PERPLEXITY_REWARDS[reward]
    power = ACCURACY_REWARDS[reward]
    history = metrics.get("val_acc_history")
    if not history:
        raise ValueError(f"metrics carry no validation accuracies (val_acc_history={history!r}); cannot compute {reward!r}")
    if power is None:
        return float(history[-1])
    return max(float(a) for a in history[-REWARD_WINDOW:]) ** power


def describe_reward(reward: str, budget: int) -> str:
    """What reward ``reward`` of a child trained ``budget`` epochs is, in words (e.g.
    ``"(max validation accuracy of the last 5 of 50 child epochs)^3"``)."""
    check_choice("reward", reward, REWARDS)
    budget = check_int("budget", budget, low=1)
    if reward in PERPLEXITY_REWARDS:
        after = "the 1 child epoch" if budget == 1 else f"the last of {budget} child epochs"
        power = PERPLEXITY_REWARDS[reward]
        ppl = f"validation perplexity after {after}"
        return f"{PPL_REWARD_CONSTANT:g} / ({ppl})" + (f"^{power}" if power != 1 else "")
    power = ACCURACY_REWARDS[reward]
    if budget == 1:
        value = "validation accuracy after the 1 child epoch"
    elif power is None:
        value = f"validation accuracy after the last of {budget} child epochs"
    elif budget <= REWARD_WINDOW:
        value = f"max validation accuracy over all {budget} child epochs"
    else:
        value = f"max validation accuracy of the last {REWARD_WINDOW} of {budget} child epochs"
    return value if power in (None, 1) else f"({value})^{power}"


class Evaluator(abc.ABC):
    """Scores one architecture of a :class:`~lit_automl.spaces.decisions.DecisionSpace`.

    ``space`` decodes the JSON record of an architecture (as stored with each Optuna trial).
    """

    space: DecisionSpace

    @abc.abstractmethod
    def evaluate(self, architecture: Any, budget: int) -> Dict[str, Any]:
        """Metrics of ``architecture`` trained or scored for ``budget`` units (epochs for training).

        Must contain ``params`` and the history a reward reads: ``val_acc_history`` (list of floats, one
        per epoch; :data:`ACCURACY_REWARDS`) or ``val_ppl_history`` (:data:`PERPLEXITY_REWARDS`).
        """


FORBIDDEN_TRAINER_KWARGS = {"max_epochs", "callbacks", "logger", "default_root_dir"}


def check_trainer_kwargs(trainer_kwargs: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """A child's extra ``pl.Trainer`` arguments; those the evaluator sets itself are refused."""
    forbidden = FORBIDDEN_TRAINER_KWARGS & set(trainer_kwargs or {})
    if forbidden:
        raise ValueError(
            f"trainer_kwargs may not set {sorted(forbidden)}: the evaluator sets max_epochs from the budget, "
            "its own callbacks and logger (run_dir)"
        )
    return dict(trainer_kwargs or {})


def fit_child(module: pl.LightningModule, datamodule: pl.LightningDataModule, budget: int, *,
              callbacks: List[pl.Callback], run_dir: Optional[str], key: Optional[str],
              trainer_kwargs: Dict[str, Any]) -> Tuple[float, torch.device]:
    """Train one child ``module`` for ``budget`` epochs on ``datamodule`` (quietly, CPU unless
    ``trainer_kwargs`` say otherwise, logged under ``<run_dir>/child_<key>`` when ``run_dir`` is given);
    returns the seconds it took and the device it trained on."""
    logger: Any = False
    if run_dir is not None:
        from pytorch_lightning.loggers import CSVLogger

        logger = CSVLogger(str(Path(run_dir)), name=f"child_{key}" if key else "child", version="")
    kwargs = dict(accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0)
    kwargs.update(trainer_kwargs)
    start = time.perf_counter()
    with _quiet_lightning():
        trainer = pl.Trainer(max_epochs=budget, callbacks=callbacks, logger=logger, **kwargs)
        trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - start, trainer.strategy.root_device


class TrainingEvaluator(Evaluator):
    """Train the child network of an architecture with Lightning for ``budget`` epochs.

    Args:
        space: the search space that builds networks (``space.build(arch, in_channels, num_classes, image_size)``).
        datamodule: a factory of the data the children train on (its validation split gives the
            reward): the datamodule's class, a lambda, or a recipe's ``class_path`` spec. It is
            called once, here; the datamodule it returns (``self.datamodule``) serves every child,
            and its ``num_classes`` / ``in_channels`` / ``image_size`` attributes are used unless
            given. A datamodule instance is refused: pass a factory instead.
        lr, momentum, nesterov, weight_decay, schedule, auxiliary_weight, grad_clip: the child's
            :class:`~lit_automl.nas.child.ChildClassifier` settings (NAS-RL's by default).
        drop_path_prob: maximum of a :class:`~lit_automl.callbacks.ScheduledDropPath` schedule run
            during each child's training (0: no drop path).
        trainer_kwargs: extra ``pl.Trainer`` arguments for each child (e.g. ``accelerator``,
            ``devices``, ``strategy="ddp"`` to train one child on several devices).
        run_dir: where each child's Lightning logs go (``<run_dir>/child_<key>``); ``None`` turns
            child logging off.
        num_classes, in_channels, image_size: override the datamodule's attributes.
        seed: seed of each child's weight initialisation and data order (``None``: not seeded).
    """

    def __init__(
        self,
        space: SequentialSpace,
        datamodule: DataModuleFactory,
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 1e-4,
        schedule: str = "cosine",
        auxiliary_weight: float = 0.4,
        drop_path_prob: float = 0.0,
        grad_clip: Optional[float] = None,
        trainer_kwargs: Optional[Dict[str, Any]] = None,
        run_dir: Optional[str] = None,
        num_classes: Optional[int] = None,
        in_channels: Optional[int] = None,
        image_size: Optional[int] = None,
        seed: Optional[int] = 0,
    ) -> None:
        if not isinstance(space, SequentialSpace):
            raise ValueError(
                f"space must be a SequentialSpace (e.g. ChainSpace, NASNetCellSpace), "
                f"got {type(space).__name__}"
            )
        self.space = space
        self.datamodule = build_datamodule(datamodule)
        self.num_classes = self._data_attr("num_classes", num_classes)
        self.in_channels = self._data_attr("in_channels", in_channels)
        self.image_size = self._data_attr("image_size", image_size)
        self.trainer_kwargs = check_trainer_kwargs(trainer_kwargs)
        self.run_dir = run_dir
        self.seed = check_int("seed", seed, allow_none=True)
        self.child_kwargs = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
            auxiliary_weight=auxiliary_weight, drop_path_prob=drop_path_prob, grad_clip=grad_clip,
        )
        # validate the child settings once, here, rather than in the first worker
        ChildClassifier(nn.Linear(1, 2), num_classes=2, **{**self.child_kwargs, "drop_path_prob": 0.0})
        check_real("drop_path_prob", drop_path_prob, low=0, high=1, high_open=True)

    def _data_attr(self, name: str, given: Optional[int]) -> int:
        value = given if given is not None else getattr(self.datamodule, name, None)
        return check_int(name, value, low=1, hint=f"give TrainingEvaluator({name}=...) or use a datamodule with "
                                                  f"a `{name}` attribute")

    def build(self, architecture: Any) -> nn.Module:
        """The child network of ``architecture``."""
        return self.space.build(architecture, self.in_channels, self.num_classes, self.image_size)

    def evaluate(self, architecture: Any, budget: int, key: Optional[str] = None) -> Dict[str, Any]:
        """Train ``architecture`` for ``budget`` epochs; per-epoch validation accuracy, parameters, time."""
        check_int("budget (epochs)", budget, low=1)
        if self.seed is not None:  # before the network is built: the seed fixes its initialisation too
            pl.seed_everything(self.seed, workers=True, verbose=False)
        network = self.build(architecture)
        module = ChildClassifier(network, num_classes=self.num_classes, epochs=budget, **self.child_kwargs)
        callbacks: List[pl.Callback] = []
        if self.child_kwargs["drop_path_prob"] > 0:
            from lit_automl.callbacks import ScheduledDropPath

            callbacks.append(ScheduledDropPath(self.child_kwargs["drop_path_prob"], epochs=budget))
        seconds, device = fit_child(module, self.datamodule, budget, callbacks=callbacks, run_dir=self.run_dir,
                                    key=key, trainer_kwargs=self.trainer_kwargs)
        history = list(module.val_acc_history)
        if len(history) < 1:
            raise RuntimeError(
                f"the child trained {budget} epoch(s) but recorded no validation accuracy: the datamodule "
                "needs a val_dataloader and the Trainer must run validation (check limit_val_batches / "
                "check_val_every_n_epoch in trainer_kwargs)"
            )
        if not all(math.isfinite(a) for a in history):
            raise FloatingPointError(f"child validation accuracy is not finite: {history}")
        costs = self.costs(network, device)
        return {
            "val_acc_history": history,
            "val_acc": history[-1],
            "max_val_acc_last5": max(history[-5:]),
            "params": count_parameters(network, exclude_auxiliary=False),
            "train_seconds": seconds,
            "epochs": budget,
            **costs,
        }

    def costs(self, network: nn.Module, device: torch.device) -> Dict[str, float]:
        """FLOPs and latency (batch 1 and the training batch) of the trained child on the device it trained on
        (:func:`~lit_automl.nas.model_metrics.network_costs`)."""
        from lit_automl.nas.model_metrics import network_costs

        batch = getattr(self.datamodule, "batch_size", None)
        batch = batch if isinstance(batch, int) and batch > 0 else 1
        network.to(device)
        try:
            return network_costs(network, (self.in_channels, self.image_size, self.image_size), batch)
        finally:
            network.cpu()

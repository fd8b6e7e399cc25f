"""Report a monitored metric to an Optuna trial every epoch and stop the fit when the pruner says so.

Optuna prunes a trial from its *intermediate values*: the objective calls ``trial.report(value,
step)`` and then ``trial.should_prune()``, which asks the study's pruner (e.g.
:class:`~optuna.pruners.MedianPruner`, :class:`~optuna.pruners.SuccessiveHalvingPruner`,
:class:`~optuna.pruners.HyperbandPruner`) whether the trial is unpromising compared with the
other trials at the same step. Here the step is the epoch.

Under DDP only global rank zero talks to Optuna: it holds the trial, reports, asks the pruner and
broadcasts the decision, so every rank stops at the same epoch (a prune raised in one rank alone
would leave the others waiting in the next collective). The trial's number and parameters are
broadcast from rank zero at setup, so every rank records the same ones. With ``ddp_spawn`` the
trial is pickled into the worker processes: its study must live in a storage those processes
share (an RDB URL or a journal file), not in memory.

Pruning does not raise inside the fit: the callback sets ``trainer.should_stop`` (like
:class:`~pytorch_lightning.callbacks.EarlyStopping`), records ``pruned_epoch`` on itself and, from
rank zero, as the trial's user attributes ``pruned_epoch`` / ``prune_reason``; the objective then
raises :class:`optuna.TrialPruned` so the study records the trial as PRUNED.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.rank_zero import rank_zero_debug, rank_zero_info

from lit_automl._checks import check_bool

if TYPE_CHECKING:  # Optuna is imported when the callback is made, not with lit_automl.callbacks
    import optuna

__all__ = ["CONTINUE", "ERROR", "MissingMetricError", "OptunaPruning", "PRUNE", "STOP_NON_FINITE"]

CONTINUE = "continue"
PRUNE = "prune"
STOP_NON_FINITE = "stop_non_finite"
ERROR = "error"


class MissingMetricError(RuntimeError):
    """The monitored metric was not among the metrics the module logged."""


def missing_metric_message(monitor: str, logged: Any, who: str = "OptunaPruning") -> str:
    names = sorted(str(k) for k in logged)
    return (
        f"{who} monitors {monitor!r}, which was never logged; the module logged {names}. "
        "Log it with self.log(...) or choose one of those"
    )


class OptunaPruning(Callback):
    """Report ``monitor`` to an Optuna trial at each epoch end and stop every rank when the trial is pruned.

    Args:
        trial: the running trial (:class:`optuna.trial.Trial`); single-objective, since Optuna's
            pruners work on one intermediate value per step.
        monitor: the logged metric to report, e.g. ``"val/acc"``.
        check_on_train_epoch_end: report at the end of the training epoch (after that epoch's
            validation) instead of at validation end; ``None`` chooses as EarlyStopping does: at
            training-epoch end when validation runs once per epoch, else at every validation end.
        check_finite: stop (without pruning) when the metric is NaN or infinite; the objective then
            records the trial as FAIL.
        verbose: log each report on rank zero (info level for prunes and stops, debug otherwise).

    Attributes:
        history: ``[(epoch, value), ...]`` reported so far (rank zero's values, on every rank).
        pruned_epoch: the epoch at which the pruner stopped the fit, else ``None``.
        stop_reason: why the fit was stopped, else ``None``.
        trial_number, params: the trial's number and parameters as broadcast from rank zero at setup.
    """

    def __init__(
        self,
        trial: "optuna.trial.BaseTrial",
        monitor: str,
        check_on_train_epoch_end: Optional[bool] = None,
        check_finite: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        import optuna

        if not isinstance(trial, optuna.trial.BaseTrial) or isinstance(trial, optuna.trial.FrozenTrial):
            raise TypeError(f"trial must be a running optuna.trial.Trial (from study.ask() or an objective), got {trial!r}")
        study = getattr(trial, "study", None)
        if study is not None and len(study.directions) > 1:
            raise ValueError(
                f"OptunaPruning needs a single-objective study; study {study.study_name!r} has "
                f"{len(study.directions)} objectives and Optuna's pruners do not support multi-objective trials"
            )
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the non-empty name of a logged metric, e.g. 'val/acc', got {monitor!r}")
        check_bool("check_finite", check_finite)
        check_bool("verbose", verbose)
        if check_on_train_epoch_end is not None:
            check_bool("check_on_train_epoch_end", check_on_train_epoch_end)
        self._trial: Optional["optuna.trial.BaseTrial"] = trial
        self.monitor = monitor
        self.check_finite = check_finite
        self.verbose = verbose
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.trial_number: Optional[int] = getattr(trial, "number", None)
        self.params: Dict[str, Any] = dict(trial.params)
        self.history: List[Tuple[int, float]] = []
        self.pruned_epoch: Optional[int] = None
        self.stop_reason: Optional[str] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    @property
    def trial(self) -> Optional["optuna.trial.BaseTrial"]:
        """The trial on global rank zero; ``None`` on the other ranks once the fit has set up."""
        return self._trial

    # ----------------------------------------------------------------- the decision
    def decide(self, value: float, epoch: int, should_prune: bool) -> Tuple[str, str]:
        """What to do after ``value`` was reported for ``epoch`` and the pruner answered ``should_prune``.

        Returns ``(decision, reason)``: ``decision`` is ``"continue"``, ``"prune"`` or
        ``"stop_non_finite"``; ``reason`` is a sentence for the log and the trial's user attributes.
        A non-finite value is never reported to Optuna, so the pruner's answer is ignored then.
        """
        trial = "trial" if self.trial_number is None else f"trial {self.trial_number}"
        if self.check_finite and not math.isfinite(value):
            return STOP_NON_FINITE, f"{self.monitor} = {value} at epoch {epoch} is not finite; stopping {trial}"
        if should_prune:
            return PRUNE, f"{trial} pruned by the study's pruner at epoch {epoch} ({self.monitor} = {value:.6g})"
        return CONTINUE, f"{trial}: epoch {epoch}: reported {self.monitor} = {value:.6g}"

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
        if stage != "fit":
            return
        from optuna.storages import InMemoryStorage

        storage = getattr(self._trial, "storage", None)
        if trainer.world_size > 1 and isinstance(storage, InMemoryStorage):
            raise ValueError(
                f"OptunaPruning with {trainer.world_size} processes needs the study in a storage every process "
                "shares (an RDB URL such as sqlite:///study.db, or a JournalStorage file), got an in-memory storage"
            )
        payload = (self.trial_number, self.params) if trainer.is_global_zero else None
        self.trial_number, self.params = trainer.strategy.broadcast(payload, src=0)
        if not trainer.is_global_zero:
            self._trial = None  # only rank zero talks to Optuna

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._check_on_train_epoch_end and not self._skip(trainer):
            self._check(trainer)

    @staticmethod
    def _skip(trainer: "pl.Trainer") -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _check(self, trainer: "pl.Trainer") -> None:
        logs = trainer.callback_metrics
        if self.monitor not in logs:  # the same keys on every rank, so every rank raises together
            raise MissingMetricError(missing_metric_message(self.monitor, logs.keys()))
        epoch = trainer.current_epoch
        payload = None
        if trainer.is_global_zero:
            payload = self._report(logs[self.monitor], epoch)
        decision, reason, value = trainer.strategy.broadcast(payload, src=0)
        self.history.append((epoch, value))
        if decision == ERROR:
            raise RuntimeError(reason)
        if decision == CONTINUE:
            if self.verbose:
                rank_zero_debug(f"OptunaPruning: {reason}")
            return
        trainer.should_stop = True
        self.stop_reason = reason
        if decision == PRUNE:
            self.pruned_epoch = epoch
        if self.verbose:
            rank_zero_info(f"OptunaPruning: {reason}")

    def _report(self, metric: Any, epoch: int) -> Tuple[str, str, float]:
        """Rank zero: report to the trial, ask the pruner, record the outcome; never raises (the other ranks wait)."""
        value = math.nan
        try:
            value = float(torch.as_tensor(metric).detach().float().squeeze())
            should_prune = False
            if math.isfinite(value):
                self._trial.report(value, step=epoch)
                should_prune = self._trial.should_prune()
            decision, reason = self.decide(value, epoch, should_prune)
            if decision == PRUNE:
                self._trial.set_user_attr("pruned_epoch", epoch)
                self._trial.set_user_attr("prune_reason", reason)
            elif decision == STOP_NON_FINITE:
                self._trial.set_user_attr("fail_reason", reason)
        except Exception as err:  # noqa: BLE001 - handed to every rank, which raise together
            decision, reason = ERROR, f"OptunaPruning: reporting {self.monitor} to Optuna failed: {type(err).__name__}: {err}"
        return decision, reason, value

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {
            "monitor": self.monitor,
            "trial_number": self.trial_number,
            "history": list(self.history),
            "pruned_epoch": self.pruned_epoch,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore what was reported; Optuna keeps the intermediate values itself."""
        self.history = [tuple(item) for item in state_dict.get("history", [])]
        self.pruned_epoch = state_dict.get("pruned_epoch")
        self.stop_reason = state_dict.get("stop_reason")

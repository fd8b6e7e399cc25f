"""One Optuna trial = one Lightning fit of the recipe with the trial's parameters.

:class:`LightningObjective` is the *objective function* Optuna's ``study.optimize`` calls with a
:class:`~optuna.trial.Trial`. It samples the search space (define-by-run: conditional parameters
are suggested only when active), writes ``trial_<n>/config.yaml`` (the recipe with the parameters
merged), builds model, data and trainer with :func:`~lit_automl.run_config.build_from_config`
and calls ``Trainer.fit``. It returns the monitored metric(s) from the last
validation, so Optuna records the trial as COMPLETE.

* Every epoch the metric is reported to the trial by :class:`~lit_automl.callbacks.OptunaPruning`;
  when the study's pruner prunes it, the fit stops and the objective raises
  :class:`optuna.TrialPruned` (state PRUNED, user attribute ``pruned_epoch``).
* An exception, a NaN / infinite metric or training loss, or a batch holding NaN / infinity
  (:class:`~lit_automl.hpo.finite.FiniteGuard`, unless ``hpo.check_finite: false``) makes the trial
  FAIL, so it is never the best trial nor in ``best.yaml``; the reason is stored in the
  trial's user attribute ``fail_reason`` (and the traceback in ``trial_<n>/error.txt``) and the
  exception is re-raised for ``study.optimize(catch=...)``, so the study goes on.
* ``num_parameters`` is a built-in metric (the model's parameter count), e.g. for an accuracy vs
  size multi-objective study.

Multi-process trials (``trainer.strategy: ddp_spawn``, ``devices: 2``) need an RDB or journal
storage: this process creates the trial and samples its parameters; the spawned ranks receive the
model built from them; rank zero reports to the shared storage and broadcasts the prune decision.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import socket
import traceback
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import optuna
import pytorch_lightning as pl
import torch
from optuna.trial import TrialState
from pytorch_lightning.callbacks import ModelCheckpoint

from lit_automl.callbacks.optuna_pruning import MissingMetricError, OptunaPruning, missing_metric_message
from lit_automl.hpo.config import HPOSettings, dump_config, merge_params
from lit_automl.hpo.finite import FiniteGuard, NonFiniteInputError, NonFiniteMetricError

__all__ = ["PARAM_COUNT", "LightningObjective", "NonFiniteInputError", "NonFiniteMetricError", "fail_reason_of"]

PARAM_COUNT = "num_parameters"
_LOGGERS_WITH_NAME_AND_VERSION = ("CSVLogger", "TensorBoardLogger")


def fail_reason_of(err: BaseException) -> str:
    """A one-line reason, ``Type: message``.

    An error that quotes its cause (jsonargparse wraps a constructor's ``ValueError`` that way) is
    replaced by the cause; for an error relayed from a spawned rank (its traceback as text) the
    traceback's last line is kept.
    """
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if inner is None or not str(inner).strip() or str(inner).strip() not in str(err):
            break
        err = inner
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and ("Traceback" in text or "terminated with the following error" in text):
        return lines[-1][:1000]
    return f"{type(err).__name__}: {' '.join(lines)}"[:1000]


def start_method(strategy: Any) -> Optional[str]:
    """The process start method of a recipe's ``trainer.strategy`` setting (``None`` when it has none).

    A name is looked up in Lightning's ``StrategyRegistry`` (``ddp`` -> ``popen``, ``ddp_spawn`` ->
    ``spawn``); ``auto`` / unset is what Lightning picks for several devices outside a notebook,
    ``ddp``; a ``class_path`` spec uses its ``start_method`` argument or the class's default.
    """
    from pytorch_lightning.strategies import StrategyRegistry

    if strategy is None or strategy == "auto":
        strategy = "ddp"
    if isinstance(strategy, str):
        if strategy not in StrategyRegistry:
            return None
        entry = StrategyRegistry[strategy]
        cls, params = entry["strategy"], entry["init_params"]
    elif isinstance(strategy, Mapping) and isinstance(strategy.get("class_path"), str):
        module, _, name = strategy["class_path"].rpartition(".")
        cls, params = getattr(importlib.import_module(module), name), strategy.get("init_args") or {}
    else:
        return None
    default = inspect.signature(cls).parameters.get("start_method")
    return params.get("start_method", None if default is None else default.default)


def _refuse_per_rank_relaunch(trainer: pl.Trainer, strategy: Any) -> None:
    """Refuse strategies that re-run the command line per rank: each rank would run a study of its own."""
    if trainer.world_size > 1 and start_method(strategy) == "popen":
        raise ValueError(
            f"trainer strategy {type(trainer.strategy).__name__} with start_method 'popen' (strategy: ddp) re-runs "
            "`lit-automl hpo` for every rank, so every rank would create trials of its own; "
            "use strategy: ddp_spawn for multi-process trials"
        )


class LightningObjective:
    """The objective: ``objective(trial)`` fits the recipe with the trial's parameters.

    Args:
        base_config: the recipe as a dict, without its ``hpo`` section.
        settings: the study settings (search space, objectives, checkpointing).
        run_dir: the study's run folder; trial ``n`` writes to ``run_dir/trial_<n>/``.
    """

    def __init__(self, base_config: Mapping[str, Any], settings: HPOSettings, run_dir: Union[str, Path]) -> None:
        self.base_config = dict(base_config)
        self.settings = settings
        self.run_dir = Path(run_dir)

    # ----------------------------------------------------------------- configs
    def trial_dir(self, number: int) -> Path:
        return self.run_dir / f"trial_{number}"

    def trial_config(self, params: Mapping[str, Any], trial_dir: Path) -> Dict[str, Any]:
        """The recipe with ``params`` merged and the trial's outputs (logs, checkpoints) sent to ``trial_dir``."""
        config = merge_params(self.base_config, params)
        trainer = config.setdefault("trainer", {})
        if not isinstance(trainer, dict):
            raise ValueError(f"the recipe's trainer section must be a mapping, got {trainer!r}")
        trainer["default_root_dir"] = str(trial_dir)
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if isinstance(logger, dict) and isinstance(logger.get("init_args"), dict):
                args = logger["init_args"]
                if "save_dir" in args:
                    args["save_dir"] = str(trial_dir)
                    if str(logger.get("class_path", "")).endswith(_LOGGERS_WITH_NAME_AND_VERSION):
                        args["name"], args["version"] = "logs", ""
        if self.settings.checkpoint and self._checkpoint_metric() is not None:
            trainer["enable_checkpointing"] = True
        return config

    def _checkpoint_metric(self) -> Optional[str]:
        metric = self.settings.objectives[0].metric
        return None if metric == PARAM_COUNT else metric

    # ----------------------------------------------------------------- the objective
    def __call__(self, trial: optuna.trial.Trial) -> Union[float, List[float]]:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial_dir = self.trial_dir(trial.number)
        trial.set_user_attr("trial_dir", str(trial_dir))
        try:
            params = self.settings.space.sample(trial)
            config = self.trial_config(params, trial_dir)
            header = f"trial {trial.number} of study {trial.study.study_name}\nparams: {params}"
            path = dump_config(config, trial_dir / "config.yaml", header=header)
            values = self._fit(trial, path, trial_dir, config["trainer"].get("strategy"))
        except optuna.TrialPruned:
            raise
        except Exception as err:
            reason = fail_reason_of(err)
            trial.set_user_attr("fail_reason", reason)
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
            raise
        return values[0] if len(values) == 1 else values

    def _fit(self, trial: "optuna.trial.Trial", config_path: Path, trial_dir: Path, strategy: Any) -> List[float]:
        from lit_automl.run_config import build_from_config

        callbacks: List[pl.Callback] = [FiniteGuard()] if self.settings.check_finite else []
        first = self.settings.objectives[0]
        pruning = None
        if not self.settings.multi_objective and first.metric != PARAM_COUNT:
            pruning = OptunaPruning(trial, monitor=first.metric)
            callbacks.append(pruning)
        ckpt_metric = self._checkpoint_metric() if self.settings.checkpoint else None
        if ckpt_metric is not None:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=str(trial_dir / "checkpoints"),
                    filename="best",
                    monitor=ckpt_metric,
                    mode="max" if first.direction == "maximize" else "min",
                    save_top_k=1,
                    auto_insert_metric_name=False,
                    enable_version_counter=False,
                )
            )
        model, datamodule, trainer = build_from_config(config_path, callbacks=callbacks)
        _refuse_per_rank_relaunch(trainer, strategy)
        trainer.fit(model, datamodule=datamodule)

        stored = self._stored(trial)
        attrs = stored.user_attrs if stored is not None else {}
        pruned_epoch = attrs.get("pruned_epoch", pruning.pruned_epoch if pruning is not None else None)
        if pruned_epoch is not None:
            raise optuna.TrialPruned(attrs.get("prune_reason") or f"trial {trial.number} pruned at epoch {pruned_epoch}")
        ckpt = trial_dir / "checkpoints" / "best.ckpt"
        if ckpt.exists():
            trial.set_user_attr("checkpoint", str(ckpt))
        trial.set_user_attr("epochs_trained", int(trainer.current_epoch))
        return [self._value(o.metric, model, trainer, attrs) for o in self.settings.objectives]

    @staticmethod
    def _stored(trial: optuna.trial.Trial) -> Optional[optuna.trial.FrozenTrial]:
        """The trial as the storage has it now (other processes, e.g. DDP rank zero, may have written to it)."""
        for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number == trial.number:
                return frozen
        return None

    @staticmethod
    def _value(metric: str, model: pl.LightningModule, trainer: pl.Trainer, attrs: Mapping[str, Any]) -> float:
        if metric == PARAM_COUNT:
            return float(sum(p.numel() for p in model.parameters()))
        logged = trainer.callback_metrics
        if metric not in logged:
            raise MissingMetricError(missing_metric_message(metric, logged.keys(), who="the study"))
        value = float(torch.as_tensor(logged[metric]).detach().float().squeeze())
        if not math.isfinite(value):
            raise NonFiniteMetricError(
                attrs.get("fail_reason") or f"{metric} = {value} after epoch {trainer.current_epoch} is not finite"
            )
        return value

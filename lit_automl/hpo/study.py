"""Run a study: open (or resume) it, enqueue known configurations, optimise, report.

``n_trials`` is the study's total of *finished* trials (COMPLETE or PRUNED), not this worker's:
Optuna's :class:`~optuna.study.MaxTrialsCallback` stops every worker on the same study once the
storage holds that many, so several ``lit-automl hpo`` processes (on one machine with SQLite or a
journal file, or on several with PostgreSQL) share the work, and a resumed study runs only what is
missing. Failed trials do not count; ``max_failures`` failures in a row stop this worker with an
error naming the last reason. Known good configurations are added with ``study.enqueue_trial``
(``skip_if_exists``, so resuming does not add them twice); the sampler proposes the rest.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from lit_automl._checks import check_int
from lit_automl.hpo.config import HPOSettings
from lit_automl.hpo.objective import LightningObjective
from lit_automl.hpo.registry import make_pruner, make_sampler
from lit_automl.hpo.stored_space import check_stored_space
from lit_automl.storage import make_storage, open_study

__all__ = [
    "FINISHED",
    "FailureLimit",
    "StartupOnlyWarning",
    "StudyFailedError",
    "TrialProgressBar",
    "create_study",
    "run_study",
    "startup_trials",
    "warn_if_startup_only",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
log = logging.getLogger(__name__)


class StudyFailedError(RuntimeError):
    """Raised when ``max_failures`` trials in a row failed."""


class StartupOnlyWarning(UserWarning):
    """The study ends before its model-based sampler has seen enough trials to be used once."""


_MODELS = {"gp": "Gaussian process", "optuna-gp": "Gaussian process", "tpe": "TPE model"}


def startup_trials(sampler: optuna.samplers.BaseSampler) -> int:
    """How many completed trials ``sampler`` proposes without its model (0 for samplers without one)."""
    value = getattr(sampler, "n_startup_trials", getattr(sampler, "_n_startup_trials", 0))
    return int(value) if isinstance(value, int) else 0


def warn_if_startup_only(name: str, sampler: optuna.samplers.BaseSampler, n_trials: int) -> bool:
    """Warn (:class:`StartupOnlyWarning`) when ``n_trials`` ends the study before ``sampler`` uses its model."""
    startup = startup_trials(sampler)
    if name not in _MODELS or n_trials > startup:
        return False
    warnings.warn(
        f"sampler {name!r} proposes its first {startup} trials without its {_MODELS[name]} (n_startup_trials="
        f"{startup}), so with n_trials={n_trials} the {_MODELS[name]} is never used; it needs n_trials >= "
        f"{startup + 1} (its model is fitted once {startup} trials have completed), or use --sampler random",
        StartupOnlyWarning,
        stacklevel=3,
    )
    return True


class FailureLimit:
    """Study callback: raise :class:`StudyFailedError` after ``max_failures`` consecutive FAIL trials of this worker."""

    def __init__(self, max_failures: int) -> None:
        self.max_failures = check_int("max_failures", max_failures, low=1)
        self.in_a_row = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        if self.in_a_row >= self.max_failures:
            reason = trial.user_attrs.get("fail_reason", "no reason recorded (see the log)")
            raise StudyFailedError(
                f"study {study.study_name!r} stopped: {self.in_a_row} trials in a row failed "
                f"(max_failures={self.max_failures}); the last, trial {trial.number}, failed with: {reason}"
            )


class TrialProgressBar:
    """Study callback: a tqdm bar over the study's finished trials (shared by all workers), best value shown."""

    def __init__(self, study: optuna.Study, total: int, enabled: bool = True) -> None:
        self.total = total
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=min(_n_finished(study), total), desc=study.study_name, unit="trial")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.bar is None:
            return
        self.bar.n = min(_n_finished(study), self.total)
        if len(study.directions) == 1:
            try:
                self.bar.set_postfix(best=f"{study.best_value:.4g}", refresh=False)
            except ValueError:  # no completed trial yet: nothing to show
                self.bar.set_postfix(best="-", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def create_study(settings: HPOSettings, run_dir: Path) -> optuna.Study:
    """Open the study in its storage (created or resumed) with the sampler and pruner by name.

    A resumed study must have the same directions, metrics and search space (each difference is listed).
    """
    storage = make_storage(
        settings.storage,
        run_dir,
        heartbeat_interval=settings.heartbeat_interval,
        grace_period=settings.grace_period,
        max_retry=settings.max_retry,
    )
    sampler = make_sampler(settings.sampler_name, seed=settings.seed, **settings.sampler_kwargs)
    warn_if_startup_only(settings.sampler_name, sampler, settings.n_trials)
    pruner = make_pruner(settings.pruner_name, **settings.pruner_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = open_study(storage, settings.study_name, settings.directions, sampler, pruner, settings.metric_names)
        check_stored_space(study, settings.space)
        for params in settings.enqueue:
            study.enqueue_trial(dict(params), skip_if_exists=True)
    return study


def run_study(settings: HPOSettings, base_config: Mapping[str, Any]) -> Dict[str, Any]:
    """Optimise until the study has ``settings.n_trials`` finished trials, then write the report.

    Returns the report (see :func:`lit_automl.hpo.report.write_report`) plus ``study`` and ``run_dir``.
    """
    run_dir = settings.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    study = create_study(settings, run_dir)
    objective = LightningObjective(base_config, settings, run_dir)
    done = _n_finished(study)
    if done >= settings.n_trials:
        log.info(f"study {study.study_name!r} already has {done} finished trials (n_trials={settings.n_trials})")
    else:
        bar = TrialProgressBar(study, settings.n_trials, enabled=settings.progress_bar)
        callbacks = [
            MaxTrialsCallback(settings.n_trials, states=FINISHED),
            FailureLimit(settings.max_failures),
            bar,
        ]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                study.optimize(
                    objective,
                    n_trials=None,
                    timeout=settings.timeout,
                    catch=(Exception,),
                    callbacks=callbacks,
                    gc_after_trial=True,
                )
        finally:
            bar.close()
    result: Dict[str, Any] = {"study": study, "run_dir": run_dir}
    if settings.report:
        from lit_automl.hpo.report import write_report

        result.update(write_report(study, base_config, run_dir))
    return result

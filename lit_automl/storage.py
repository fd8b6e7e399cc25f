"""Where a study lives, and creating or resuming it.

Optuna keeps a study (its trials, parameters, intermediate values and states) in a *storage*:

* nothing given: SQLite in the run folder, ``sqlite:///runs/<study>/study.db`` (one machine,
  a few processes);
* ``journal:PATH`` or a path ending in ``.log`` / ``.journal``: Optuna's append-only journal file,
  :class:`~optuna.storages.journal.JournalStorage` over
  :class:`~optuna.storages.journal.JournalFileBackend` (many processes on one machine);
* any SQLAlchemy URL (``postgresql://``, ``mysql://``, ``sqlite:///``): an
  :class:`~optuna.storages.RDBStorage` (workers on several machines).

RDB storages get heartbeats: each running trial records one every ``heartbeat_interval`` seconds,
and whenever a worker asks for a new trial, Optuna's ``fail_stale_trials`` marks trials silent for
longer than ``grace_period`` as FAIL (their worker died) and
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` (Optuna 5's name for
RetryFailedTrialCallback) re-enqueues their parameters ``max_retry``
times. Journal storages have no heartbeat in Optuna.

A study is resumed by opening the same storage with the same study name: finished trials stay.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

if TYPE_CHECKING:  # Optuna is imported where a storage is made, not with this module
    import optuna
    from optuna.storages import BaseStorage

__all__ = ["default_storage_url", "make_storage", "open_study"]

_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


def default_storage_url(run_dir: Union[str, Path]) -> str:
    """SQLite in the run folder."""
    return f"sqlite:///{Path(run_dir) / 'study.db'}"


def make_storage(
    url: Optional[str],
    run_dir: Union[str, Path],
    heartbeat_interval: int = 60,
    grace_period: Optional[int] = None,
    max_retry: int = 1,
) -> BaseStorage:
    """The storage for ``url`` (``None``: SQLite in ``run_dir``), heartbeats on for RDB URLs.

    Args:
        url: ``None``, ``journal:PATH`` / ``PATH.log``, or a SQLAlchemy URL.
        run_dir: the run folder (created) for the default SQLite file.
        heartbeat_interval: seconds between heartbeats of a running trial; 0 turns heartbeats off.
        grace_period: seconds without a heartbeat after which a running trial is failed
            (``None``: Optuna's default, twice the interval).
        max_retry: how many times a trial failed by the heartbeat is re-enqueued.
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    run_dir = Path(run_dir)
    if url is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        url = default_storage_url(run_dir)
    if not isinstance(url, str) or not url:
        raise ValueError(f"storage must be a URL string, got {url!r}")
    if url.startswith("journal:") or (("://" not in url) and url.endswith(_JOURNAL_SUFFIXES)):
        path = Path(url[len("journal:"):] if url.startswith("journal:") else url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(
            f"storage {url!r} is neither a SQLAlchemy URL (sqlite:///study.db, postgresql://user:pw@host/db, "
            f"mysql://...) nor a journal file (journal:PATH or a path ending in {', '.join(_JOURNAL_SUFFIXES)})"
        )
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        kwargs = {}
        if heartbeat_interval:
            kwargs = {
                "heartbeat_interval": heartbeat_interval,
                "grace_period": grace_period,
                "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
            }
        return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def open_study(
    storage: BaseStorage,
    study_name: str,
    directions: Sequence[str],
    sampler: Optional[optuna.samplers.BaseSampler] = None,
    pruner: Optional[optuna.pruners.BasePruner] = None,
    metric_names: Optional[Sequence[str]] = None,
) -> optuna.Study:
    """Create the study or, when ``study_name`` exists in ``storage``, resume it (same directions required)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=list(directions),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    found = [d.name.lower() for d in study.directions]
    if found != list(directions):
        raise ValueError(
            f"study {study_name!r} exists in this storage with directions {found}, but the recipe asks for "
            f"{list(directions)}; use another study name or storage"
        )
    if metric_names:
        names = list(metric_names)
        if study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                study.set_metric_names(names)
        elif list(study.metric_names) != names:
            raise ValueError(
                f"study {study_name!r} exists with metrics {list(study.metric_names)}, but the recipe asks for "
                f"{names}; use another study name or storage"
            )
    return study

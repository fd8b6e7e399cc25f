"""Where a study lives, and creating or resuming it.

Optuna keeps a study (its trials, parameters, intermediate values and states) in a *storage*:

* nothing given: SQLite in the run folder, ``sqlite:///runs/<study>/study.db`` (one machine,
  a few processes);
* ``journal:PATH`` or a path ending in ``.log`` / ``.journal``: Optuna's append-only journal file,
  :class:`~optuna.storages.journal.JournalStorage` over
  :class:`~optuna.storages.journal.JournalFileBackend` (many processes on one machine);
* ``memory``: Optuna's in-memory storage, for one process that needs no record after it ends (e.g. a
  search over a tabular benchmark, where a lookup costs less than any database write);
* any SQLAlchemy URL (``postgresql://``, ``mysql://``, ``sqlite:///``): an
  :class:`~optuna.storages.RDBStorage` (workers on several machines). A bare ``postgresql://``
  URL uses SQLAlchemy 2's default PostgreSQL driver, psycopg 3 (``pip install 'lit-automl[postgresql]'``);
  :func:`check_storage_url` names the pip package of any driver that is missing.

SQLite files are opened in write-ahead-log mode with ``synchronous=NORMAL`` (:func:`fast_sqlite_commits`):
readers (workers polling the queue) no longer block the writer, and a commit does not wait for the disk,
which made each child or trial record cost tens of milliseconds per write before. A crashed process
loses nothing it committed; only a power cut can lose the last commits (SQLite's documented guarantee
for WAL with NORMAL). Keep SQLite files on a local disk (WAL needs shared memory; NFS is unsupported).

RDB storages get heartbeats: each running trial records one every ``heartbeat_interval`` seconds,
and whenever a worker asks for a new trial, Optuna's ``fail_stale_trials`` marks trials silent for
longer than ``grace_period`` as FAIL (their worker died) and
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` (Optuna 5's name for
RetryFailedTrialCallback) re-enqueues their parameters ``max_retry``
times. Journal storages have no heartbeat in Optuna.

A study is resumed by opening the same storage with the same study name: finished trials stay.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from lit_automl._checks import ArgumentTypeError

if TYPE_CHECKING:  # Optuna is imported where a storage is made, not with this module
    import optuna
    from optuna.storages import BaseStorage

__all__ = ["DRIVER_PACKAGES", "check_storage_url", "default_storage_url", "fast_sqlite_commits", "is_journal",
           "make_storage", "open_study"]

_JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
MEMORY = "memory"

DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "psycopg2cffi": "psycopg2cffi",
    "mysqldb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
    "cymysql": "cymysql",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
    "oracledb": "oracledb",
    "cx_oracle": "cx_Oracle",
}
"""SQLAlchemy driver name -> the pip package that provides it (named when the driver is missing)."""

_EXTRAS = {"psycopg": "lit-automl[postgresql]"}  # drivers this distribution offers as an extra


def default_storage_url(run_dir: Union[str, Path]) -> str:
    """SQLite in the run folder."""
    return f"sqlite:///{Path(run_dir) / 'study.db'}"


def is_journal(url: str) -> bool:
    """``journal:PATH``, or a path (no ``://``) ending in ``.log`` / ``.journal`` / ``.jsonl``."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(_JOURNAL_SUFFIXES))


def _masked(url: Any) -> str:
    """A SQLAlchemy URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def check_storage_url(url: Any, name: str = "storage") -> str:
    """``url`` if it names a storage this machine can open; otherwise a one-line ``ValueError`` / ``ImportError``.

    Accepted: ``journal:PATH`` or a journal file path, or a SQLAlchemy URL whose database SQLAlchemy knows
    and whose driver is installed (checked by importing it; nothing connects). A missing driver names the URL
    scheme and the pip package to install. Errors quote the URL with its password hidden.
    """
    if not isinstance(url, str) or not url:
        error = ValueError if isinstance(url, str) else ArgumentTypeError
        raise error(f"{name} must be a storage URL string (sqlite:///study.db, postgresql://user:pw@host/db, "
                         f"journal:PATH, memory), got {url!r}")
    if url == MEMORY:
        return url
    if is_journal(url):
        if url == "journal:":
            raise ValueError(f"{name} {url!r} names no file; use journal:PATH")
        return url
    if "://" not in url:
        raise ValueError(
            f"{name} {url!r} is neither a SQLAlchemy URL (sqlite:///study.db, postgresql://user:pw@host/db, "
            f"mysql://...), {MEMORY!r} nor a journal file (journal:PATH or a path ending in {', '.join(_JOURNAL_SUFFIXES)})"
        )
    from sqlalchemy import dialects
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        hidden = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        raise ValueError(f"{name} {hidden!r} is not a valid SQLAlchemy URL; expected "
                         "dialect[+driver]://user:password@host[:port]/database, e.g. postgresql://user:pw@host/db") from None
    shown = _masked(parsed)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"{name} {shown!r}: unknown database {parsed.drivername!r} in the URL scheme; SQLAlchemy knows "
            f"{', '.join(f'{d}://' for d in dialects.__all__)} (optionally +driver, e.g. postgresql+psycopg2://)"
        ) from None
    if getattr(dialect, "is_async", False):
        raise ValueError(f"{name} {shown!r}: {dialect.driver!r} is an asyncio driver; Optuna's RDB storage needs a "
                         f"synchronous one, e.g. {parsed.get_backend_name()}:// with its default driver")
    try:
        dialect.import_dbapi()
    except ImportError as err:
        package = DRIVER_PACKAGES.get(dialect.driver, err.name or dialect.driver)
        extra = f" (or pip install '{_EXTRAS[dialect.driver]}')" if dialect.driver in _EXTRAS else ""
        raise ImportError(
            f"{name} {shown!r}: the URL scheme {parsed.drivername + '://'!r} uses SQLAlchemy's {dialect.driver!r} "
            f"driver, whose module {err.name or dialect.driver!r} is not installed; install it with: "
            f"pip install '{package}'{extra}"
        ) from None
    return url


def fast_sqlite_commits(engine: Any) -> None:
    """Open every connection of a SQLite ``engine`` with ``journal_mode=WAL`` and ``synchronous=NORMAL``
    (module docstring), dropping the connections already pooled so none is left in the old mode."""
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def make_storage(
    url: Optional[str],
    run_dir: Union[str, Path],
    heartbeat_interval: int = 60,
    grace_period: Optional[int] = None,
    max_retry: int = 1,
) -> BaseStorage:
    """The storage for ``url`` (``None``: SQLite in ``run_dir``), heartbeats on for RDB URLs.

    Args:
        url: ``None``, ``memory``, ``journal:PATH`` / ``PATH.log``, or a SQLAlchemy URL (see :func:`check_storage_url`).
        run_dir: the run folder (created) for the default SQLite file.
        heartbeat_interval: seconds between heartbeats of a running trial; 0 turns heartbeats off.
        grace_period: seconds without a heartbeat after which a running trial is failed
            (``None``: Optuna's default, twice the interval).
        max_retry: how many times a trial failed by the heartbeat is re-enqueued.

    A database that cannot be reached raises a one-line ``ConnectionError`` naming the URL (password hidden).
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import InMemoryStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    run_dir = Path(run_dir)
    if url is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        url = default_storage_url(run_dir)
    check_storage_url(url)
    if url == MEMORY:
        return InMemoryStorage()
    if is_journal(url):
        path = Path(url[len("journal:"):] if url.startswith("journal:") else url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

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
        try:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            if url.startswith("sqlite"):
                fast_sqlite_commits(storage.engine)
            return storage
        except SQLAlchemyError as err:
            cause = err.orig if getattr(err, "orig", None) is not None else err
            reason = " ".join(str(cause).split())
            raise ConnectionError(f"storage {_masked(make_url(url))!r}: cannot open the database: "
                                  f"{type(cause).__name__}: {reason}") from None


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

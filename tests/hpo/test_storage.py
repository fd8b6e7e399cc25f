"""Storages: SQLite in the run folder by default, journal files, RDB URLs with heartbeats; and three `lit-automl hpo`
workers on one PostgreSQL study, one killed mid-trial (its trial failed by Optuna's heartbeat, the study completes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from lit_automl.storage import check_storage_url, make_storage, open_study

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("LIT_AUTOML_TEST_POSTGRES_URL")
README_URL = "postgresql://user:pw@host/db"  # the README's `lit-automl hpo --storage` URL


class Sleep(pl.Callback):
    """Makes a trial last long enough to be killed in the middle."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds

    def on_train_start(self, trainer, pl_module):
        time.sleep(self.seconds)


def test_the_default_is_sqlite_in_the_run_folder_with_heartbeats(tmp_path):
    storage = make_storage(None, tmp_path / "run", heartbeat_interval=7, grace_period=20, max_retry=2)
    assert isinstance(storage, RDBStorage) and storage.url == f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    assert storage.heartbeat_interval == 7 and storage.grace_period == 20
    assert isinstance(storage.heartbeat_stale_trial_callback, RetryHeartbeatStaleTrialCallback)
    assert make_storage(None, tmp_path / "run", heartbeat_interval=0).heartbeat_interval is None  # 0 turns them off


def test_sqlite_files_commit_through_a_write_ahead_log_without_waiting_for_the_disk(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with storage.engine.connect() as connection:
        pragmas = [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in ("journal_mode", "synchronous")]
    assert pragmas == ["wal", 1]  # synchronous=NORMAL is 1 (FULL, SQLite's default, is 2)
    assert len(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}").trials) == 2


def test_memory_is_an_in_process_storage():
    assert check_storage_url("memory") == "memory"
    assert isinstance(make_storage("memory", "unused"), optuna.storages.InMemoryStorage)


def test_journal_files_and_urls(tmp_path):
    for spec in (f"journal:{tmp_path / 'a' / 'j'}", str(tmp_path / "b.log")):
        assert isinstance(make_storage(spec, tmp_path), JournalStorage)
    assert (tmp_path / "a" / "j").exists()
    assert isinstance(make_storage(f"sqlite:///{tmp_path / 'c' / 'x.db'}", tmp_path), RDBStorage)
    with pytest.raises(ValueError, match=r"storage 'runs/study' is neither a SQLAlchemy URL.*journal:PATH"):
        make_storage("runs/study", tmp_path)


def test_a_journal_study_is_shared_by_two_handles_and_resumes(tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    first = open_study(make_storage(url, tmp_path), "s", ["maximize"], metric_names=["val/acc"])
    trial = first.ask()
    trial.suggest_float("x", 0, 1)
    first.tell(trial, 0.5)
    second = open_study(make_storage(url, tmp_path), "s", ["maximize"], metric_names=["val/acc"])
    assert [t.value for t in second.trials] == [0.5]
    with pytest.raises(ValueError, match=r"exists with metrics \['val/acc'\], but the recipe asks for \['val/loss'\]"):
        open_study(make_storage(url, tmp_path), "s", ["maximize"], metric_names=["val/loss"])


def test_the_readmes_postgresql_url_has_its_driver_installed():
    from sqlalchemy.engine import make_url

    assert make_url(README_URL).get_dialect().driver == "psycopg"  # SQLAlchemy 2 maps postgresql:// to psycopg 3
    assert check_storage_url(README_URL) == README_URL  # imports the driver; connects nowhere


def test_a_missing_driver_names_the_url_scheme_and_the_pip_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(ImportError, match=r"^storage 'postgresql://user:\*\*\*@host/db': the URL scheme 'postgresql://' "
                                          r"uses SQLAlchemy's 'psycopg' driver, whose module 'psycopg' is not installed; "
                                          r"install it with: pip install 'psycopg\[binary\]' \(or pip install "
                                          r"'lit-automl\[postgresql\]'\)$"):
        make_storage(README_URL, tmp_path)


def test_an_unreachable_database_is_one_line_naming_the_url_without_its_password(tmp_path):
    with pytest.raises(ConnectionError) as caught:
        make_storage("postgresql://user:secret@127.0.0.1:1/db", tmp_path)  # port 1: nothing listens
    message = str(caught.value)
    assert message.startswith("storage 'postgresql://user:***@127.0.0.1:1/db': cannot open the database: ")
    assert "Connection refused" in message and "secret" not in message and "\n" not in message


def worker_recipe(tmp_path: Path, n_trials: int) -> Path:
    recipe = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
                    "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False,
                    "logger": False, "callbacks": [{"class_path": f"{__name__}.Sleep", "init_args": {"seconds": 1.0}}]},
        "model": {"class_path": "lit_automl.hpo.models.DigitsCNN", "init_args": {"channels": 2, "hidden": 4}},
        "data": {"class_path": "lit_automl.datamodules.DigitsDataModule", "init_args": {"batch_size": 32}},
        "hpo": {"metric": "val/acc", "direction": "maximize", "n_trials": n_trials, "sampler": "random", "pruner": "nop",
                "search_space": {"model.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.skipif(not POSTGRES_URL, reason="LIT_AUTOML_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
@pytest.mark.timeout(180)
def test_three_workers_on_one_postgresql_study_survive_a_worker_killed_mid_trial(tmp_path):
    # the README's URL form: a bare postgresql:// scheme (SQLAlchemy's default driver), user:password@host[:port]/db
    assert re.fullmatch(r"postgresql://[^:@/]+:[^@/]+@[^/:]+(:\d+)?/\w+", POSTGRES_URL), POSTGRES_URL
    n_trials, name = 12, f"workers_{uuid.uuid4().hex[:10]}"
    command = [sys.executable, "-m", "lit_automl.cli", "hpo", "-c", str(worker_recipe(tmp_path, n_trials)),
               "--storage", POSTGRES_URL, "--study-name", name, "--run-dir", str(tmp_path / "run"),
               "--heartbeat-interval", "1", "--grace-period", "3", "--max-retry", "1", "--no-progress-bar", "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    logs = [open(tmp_path / f"worker{i}.log", "w+") for i in range(3)]
    workers = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    storage = RDBStorage(POSTGRES_URL)
    try:
        victim, killed = workers[0], None
        deadline = time.time() + 90
        while killed is None and time.time() < deadline:  # wait for the victim to be inside a trial, then SIGKILL it
            time.sleep(0.1)
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if t.user_attrs.get("worker", "").endswith(f":{victim.pid}") and t.params:  # sampled, now fitting
                    victim.send_signal(signal.SIGKILL)
                    killed = t.number
        assert killed is not None, "the victim never started a trial"
        assert victim.wait(timeout=30) == -signal.SIGKILL
        for w in workers[1:]:
            assert w.wait(timeout=120) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        output = []
        for log in logs:
            log.seek(0)
            output.append(log.read())
            log.close()

    study = optuna.load_study(study_name=name, storage=storage)
    trials = {t.number: t for t in study.trials}
    try:
        assert trials[killed].state == TrialState.FAIL  # failed by fail_stale_trials, not by the objective
        assert "fail_reason" not in trials[killed].user_attrs
        retries = [t for t in trials.values() if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed]
        assert len(retries) == 1 and retries[0].params == trials[killed].params
        assert sum(t.state == TrialState.COMPLETE for t in trials.values()) >= n_trials  # the study reached its total
        assert not [t.number for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        finished = {int(n) for text in output for n in re.findall(r"Trial (\d+) finished with value", text)}
        assert finished and all(trials[n].state == TrialState.COMPLETE and trials[n].value is not None for n in finished)
        assert {n for n, t in trials.items() if t.state == TrialState.COMPLETE} == finished  # nothing finished is lost
        for n in finished:  # each trial's artifacts in the shared run folder
            assert (tmp_path / "run" / f"trial_{n}" / "checkpoints" / "best.ckpt").exists()
        workers_seen = {t.user_attrs["worker"] for t in trials.values()}
        assert len(workers_seen) == 3
    except AssertionError:
        print("\n".join(output))
        raise
    finally:
        optuna.delete_study(study_name=name, storage=storage)

"""Children of a search as trials of one Optuna study: the controller enqueues, workers evaluate.

NAS-RL trained its children on hundreds of GPUs behind a parameter server (Zoph & Le, ICLR 2017,
Sec. 3.2 "Accelerate training with parallelism and asynchronous updates"); NASNet used a global
work queue (Zoph et al., CVPR 2018, Sec. 3). Here the queue is an Optuna study:

* the controller :meth:`ChildQueue.submit` s each sampled child as a WAITING trial (its decisions
  as the trial's parameters, the architecture's JSON, budget and reward definition as user
  attributes);
* a worker :meth:`ChildQueue.claim` s a WAITING trial by moving it to RUNNING through the
  storage's atomic state transition (``BaseStorage.set_trial_state_values`` returns False when
  another worker was first), evaluates it and tells the study the reward, or FAIL with the reason;
* the controller waits for its children with :meth:`ChildQueue.wait`.

A child's key is ``<search>/<step>/<index>``: the same child of a search proposed again after a resume
(the strategy's state comes back from the checkpoint, so it proposes the same children) finds its trial
and adopts it — a finished child is not trained twice, a waiting one is not submitted twice. The newest
trial of a key is the child's (:meth:`ChildQueue.newest`).

Heartbeats (RDB storages, ``heartbeat_interval > 0``): while a child is evaluated, a thread records a
heartbeat every ``heartbeat_interval`` seconds; the controller and the workers call Optuna's
``fail_stale_trials`` as they poll, so a child whose process died (killed worker, killed search) is
failed once it has been silent for ``grace_period`` seconds and re-enqueued as a WAITING trial with the
same key, parameters and architecture (Optuna's ``RetryHeartbeatStaleTrialCallback``, ``max_retry``
times), which a live worker, or the resumed search, then evaluates.

The storage is any Optuna storage several processes can share: SQLite or a journal file on one
machine, PostgreSQL / MySQL across machines (``lit-automl nas-worker -c RECIPE`` on each). Every
child is on record in the study.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Union

from lit_automl._checks import check_int
from lit_automl.storage import make_storage
from lit_automl.nas.evaluator import Evaluator, reward_from_metrics
from lit_automl.spaces.decisions import ANCHOR, Action, Decision, validate_actions

if TYPE_CHECKING:  # Optuna is imported when a queue is opened, not with this module (nor with lit_automl.nas)
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = ["ChildQueue", "ClaimedChild", "actions_to_params", "decision_distributions", "params_to_actions", "run_worker",
           "spawn_workers"]

log = logging.getLogger(__name__)

STOP_ATTR = "search_finished"


def actions_to_params(decisions: Sequence[Decision], actions: Sequence[Action]) -> Dict[str, int]:
    """Optuna parameters of an action sequence: one per categorical decision, one per anchor bit."""
    validate_actions(decisions, actions)
    params: Dict[str, int] = {}
    for d, a in zip(decisions, actions):
        if d.kind == ANCHOR:
            for j, bit in enumerate(a):  # type: ignore[arg-type]
                params[f"{d.name}[{j}]"] = int(bit)
        else:
            params[d.name] = int(a)  # type: ignore[arg-type]
    return params


def params_to_actions(decisions: Sequence[Decision], params: Dict[str, int], length: int) -> List[Action]:
    """Inverse of :func:`actions_to_params` for the first ``length`` decisions."""
    actions: List[Action] = []
    n_anchor = 0
    for d in decisions[:length]:
        if d.kind == ANCHOR:
            actions.append([int(params[f"{d.name}[{j}]"]) for j in range(n_anchor)])
            n_anchor += 1
        else:
            actions.append(int(params[d.name]))
    return actions


def decision_distributions(decisions: Sequence[Decision], length: int) -> Dict[str, "CategoricalDistribution"]:
    """The Optuna distributions of the first ``length`` decisions' parameters (:func:`actions_to_params`)."""
    from optuna.distributions import CategoricalDistribution

    out: Dict[str, CategoricalDistribution] = {}
    n_anchor = 0
    for d in decisions[:length]:
        if d.kind == ANCHOR:
            for j in range(n_anchor):
                out[f"{d.name}[{j}]"] = CategoricalDistribution((0, 1))
            n_anchor += 1
        else:
            out[d.name] = CategoricalDistribution(tuple(range(int(d.num_choices))))
    return out


@dataclass
class ClaimedChild:
    """A child a worker owns: its trial and what to evaluate."""

    trial: optuna.trial.Trial
    trial_id: int
    key: str
    architecture: Dict[str, Any]
    budget: int
    reward: str


class ChildQueue:
    """The study that holds a search's children (see the module docstring).

    Args:
        storage: an Optuna storage, or a URL for :func:`lit_automl.storage.make_storage`
            (``None``: SQLite in ``run_dir``).
        study_name: the study (created when missing; direction maximise: the value is the reward).
        run_dir: folder of the default SQLite file.
        decisions: the space's decisions (parameter names and choices).
        heartbeat_interval: seconds between heartbeats of a child being evaluated (RDB storages given by
            URL; 0: no heartbeats, a child whose process died stays RUNNING).
        grace_period: seconds without a heartbeat after which a RUNNING child is failed (``None``: Optuna's
            default, twice the interval).
        max_retry: how many times a child failed by the heartbeat is re-enqueued.
    """

    def __init__(
        self,
        storage: Union[BaseStorage, str, None],
        study_name: str,
        decisions: Sequence[Decision],
        run_dir: Union[str, Path] = "runs/nas",
        heartbeat_interval: int = 0,
        grace_period: Optional[int] = None,
        max_retry: int = 1,
    ) -> None:
        import optuna
        from optuna.storages import BaseStorage

        if not isinstance(study_name, str) or not study_name:
            raise ValueError(f"study_name must be a non-empty string, got {study_name!r}")
        check_int("heartbeat_interval", heartbeat_interval, low=0, hint="0 turns heartbeats off")
        check_int("grace_period", grace_period, low=1, allow_none=True, hint="None: twice heartbeat_interval")
        check_int("max_retry", max_retry, low=0)
        self.storage_url = storage if isinstance(storage, str) or storage is None else None
        self.storage = storage if isinstance(storage, BaseStorage) else make_storage(
            storage, run_dir, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry)
        self.max_retry = max_retry
        self._last_stale_check = -float("inf")
        self.study_name = study_name
        self.decisions = list(decisions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(
                storage=self.storage, study_name=study_name, direction="maximize",
                sampler=optuna.samplers.RandomSampler(), load_if_exists=True,
            )
        if [d.name.lower() for d in self.study.directions] != ["maximize"]:
            raise ValueError(f"study {study_name!r} exists with directions {self.study.directions}; a child queue maximises the reward")
        self.study_id = self.storage.get_study_id_from_name(study_name)

    # ------------------------------------------------------------------ controller side
    def submit(
        self, key: str, actions: Sequence[Action], architecture: Dict[str, Any], budget: int, reward: str,
        attrs: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Enqueue one child as a WAITING trial."""
        params = actions_to_params(self.decisions, actions)
        user_attrs = {
            "child_key": key, "architecture": architecture, "budget": int(budget), "reward_name": reward,
            "num_decisions": len(actions), **(attrs or {}),
        }
        self.study.enqueue_trial(params, user_attrs=user_attrs)

    @property
    def heartbeat_interval(self) -> int:
        """Seconds between heartbeats of a child being evaluated (0: this storage records none)."""
        interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)()  # RDB storages only
        return int(interval) if interval else 0

    def fail_stale(self, force: bool = False) -> None:
        """Fail (and re-enqueue, up to ``max_retry`` times) RUNNING children silent for the grace period:
        Optuna's ``fail_stale_trials``, at most once per heartbeat interval unless ``force``."""
        interval = self.heartbeat_interval
        if not interval or (not force and time.monotonic() - self._last_stale_check < interval):
            return
        import optuna

        self._last_stale_check = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def trials_by_key(self, keys: Optional[Sequence[str]] = None) -> Dict[str, List[FrozenTrial]]:
        """Every trial of each key (all of this study's children when ``keys`` is None), oldest first."""
        wanted = None if keys is None else set(keys)
        out: Dict[str, List[FrozenTrial]] = {}
        # through the study: its storage cache re-reads only the trials that are new or not finished
        for t in self.study.get_trials(deepcopy=False):
            k = t.user_attrs.get("child_key")
            if k is not None and (wanted is None or k in wanted):
                out.setdefault(k, []).append(t)
        for trials in out.values():
            trials.sort(key=lambda t: t.number)
        return out

    def newest(self, key: str) -> Optional[FrozenTrial]:
        """The child's trial: the newest trial of ``key`` (a retry supersedes the trial it retries)."""
        trials = self.trials_by_key([key]).get(key)
        return trials[-1] if trials else None

    def retry_pending(self, trial: FrozenTrial) -> bool:
        """Whether a FAIL ``trial`` was failed by the heartbeat and its retry is still to be enqueued."""
        return (trial.state.name == "FAIL" and "fail_reason" not in trial.user_attrs and self.heartbeat_interval > 0
                and len(trial.system_attrs.get("retry_history", [])) < self.max_retry)

    def finished(self, keys: Sequence[str]) -> Dict[str, FrozenTrial]:
        """The keys whose child is done: its newest trial COMPLETE, or FAIL with no retry to come."""
        out: Dict[str, FrozenTrial] = {}
        for k, trials in self.trials_by_key(keys).items():
            t = trials[-1]
            if t.state.name == "COMPLETE" or (t.state.name == "FAIL" and not self.retry_pending(t)):
                out[k] = t
        return out

    @staticmethod
    def fail_reason(trial: FrozenTrial) -> str:
        """Why a FAIL child failed: its recorded reason, else the heartbeat's verdict."""
        if "fail_reason" in trial.user_attrs:
            return str(trial.user_attrs["fail_reason"])
        return ("its process stopped sending heartbeats (killed or crashed) and no retry is left "
                f"(retries: {trial.system_attrs.get('retry_history', [])})")

    def wait(
        self, keys: Sequence[str], timeout: Optional[float] = None, poll_interval: float = 0.2,
        work: Optional["Evaluator"] = None,
    ) -> Dict[str, FrozenTrial]:
        """Block until every child in ``keys`` is COMPLETE or FAIL; with ``work``, evaluate WAITING ones here too.

        Raises TimeoutError naming the children still open after ``timeout`` seconds.
        """
        start = time.monotonic()
        while True:
            self.fail_stale()
            done = self.finished(keys)
            if len(done) == len(set(keys)):
                return done
            claimed = self.claim() if work is not None else None
            if claimed is not None:
                self.evaluate(claimed, work)  # type: ignore[arg-type]
                continue
            if timeout is not None and time.monotonic() - start > timeout:
                missing = sorted(set(keys) - set(done))
                raise TimeoutError(
                    f"{len(missing)} child(ren) not finished after {timeout:.0f} s: {missing[:8]}; are workers "
                    f"running on study {self.study_name!r} (lit-automl nas-worker)?"
                )
            time.sleep(poll_interval)

    def abandon_waiting(self, keep_prefix: str, reason: str) -> int:
        """Fail WAITING children whose key does not start with ``keep_prefix`` (left by another search's
        interrupted run); returns how many."""
        from optuna.trial import TrialState

        n = 0
        for t in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
            key = t.user_attrs.get("child_key")
            if key is None or key.startswith(keep_prefix):
                continue
            n += self.fail_waiting(t, reason)
        return n

    def fail_waiting(self, trial: FrozenTrial, reason: str) -> bool:
        """Fail a WAITING child with ``reason`` (False when a worker claimed it first)."""
        from optuna.trial import TrialState

        tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
            return False
        self.storage.set_trial_user_attr(tid, "fail_reason", reason)
        self.storage.set_trial_state_values(tid, TrialState.FAIL)
        return True

    def set_stopped(self, search_id: str) -> None:
        """Tell the workers of ``search_id`` to exit once the queue is empty."""
        self.study.set_user_attr(f"{STOP_ATTR}:{search_id}", True)

    def stopped(self, search_id: Optional[str]) -> bool:
        attrs = self.storage.get_study_user_attrs(self.study_id)
        if search_id is None:
            return False
        return bool(attrs.get(f"{STOP_ATTR}:{search_id}", False))

    # ------------------------------------------------------------------ worker side
    def claim(self) -> Optional[ClaimedChild]:
        """Take one WAITING child (WAITING -> RUNNING atomically), or None when there is none."""
        import optuna
        from optuna.trial import TrialState

        self.fail_stale()
        # Read through the study (not the raw storage) so the study's storage cache knows the trial
        # before optuna.trial.Trial writes its parameters.
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if "child_key" not in t.user_attrs:
                continue  # not ours (e.g. a trial enqueued by hand); leave it
            tid = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
            if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                continue  # another worker was first
            trial = optuna.trial.Trial(self.study, tid)
            length = int(t.user_attrs["num_decisions"])
            for name, dist in decision_distributions(self.decisions, length).items():
                trial.suggest_categorical(name, dist.choices)  # the enqueued values: records the params
            return ClaimedChild(
                trial=trial, trial_id=tid, key=t.user_attrs["child_key"], architecture=t.user_attrs["architecture"],
                budget=int(t.user_attrs["budget"]), reward=t.user_attrs["reward_name"],
            )
        return None

    def evaluate(self, claimed: ClaimedChild, evaluator: Evaluator) -> Optional[float]:
        """Evaluate a claimed child and tell the study: the reward, or FAIL with the reason (returns None)."""
        from optuna.trial import TrialState

        trial = claimed.trial
        try:
            with self._heartbeats(claimed.trial_id):
                architecture = evaluator.space.from_json(claimed.architecture)
                kwargs = {"key": claimed.key.replace("/", "_")} if _accepts_key(evaluator) else {}
                metrics = evaluator.evaluate(architecture, claimed.budget, **kwargs)
                reward = reward_from_metrics(metrics, claimed.reward)
        except Exception as err:  # a failing child is recorded with its reason, never hidden
            reason = f"{type(err).__name__}: {err}"
            trial.set_user_attr("fail_reason", reason)
            trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("child %s failed: %s", claimed.key, reason)
            return None
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        trial.set_user_attr("worker_pid", os.getpid())
        self.study.tell(trial, reward)
        return reward

    @contextmanager
    def _heartbeats(self, trial_id: int) -> Iterator[None]:
        """Record a heartbeat of ``trial_id`` now and every heartbeat interval until the block ends."""
        interval = self.heartbeat_interval
        if not interval:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while True:
                self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, name=f"child-heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _accepts_key(evaluator: Evaluator) -> bool:
    import inspect

    return "key" in inspect.signature(evaluator.evaluate).parameters


def run_worker(
    storage: Union[BaseStorage, str, None],
    study_name: str,
    evaluator: Evaluator,
    search_id: Optional[str] = None,
    run_dir: Union[str, Path] = "runs/nas",
    poll_interval: float = 0.5,
    max_children: Optional[int] = None,
    num_threads: Optional[int] = None,
    idle_timeout: Optional[float] = None,
    heartbeat_interval: int = 0,
    grace_period: Optional[int] = None,
    max_retry: int = 1,
) -> int:
    """Evaluate children of ``study_name`` until the search ``search_id`` says stop (or ``max_children``).

    With ``search_id=None`` the worker serves any search on the study until ``max_children``, until
    no child has waited for ``idle_timeout`` seconds, or forever (stop it with Ctrl-C). Returns the
    number of children evaluated. The heartbeat arguments are :class:`ChildQueue`'s (give the search's).
    """
    if num_threads is not None:
        import torch

        torch.set_num_threads(int(num_threads))
    queue = ChildQueue(storage, study_name, evaluator.space.decisions(), run_dir, heartbeat_interval=heartbeat_interval,
                       grace_period=grace_period, max_retry=max_retry)
    done = 0
    idle_since = time.monotonic()
    while max_children is None or done < max_children:
        claimed = queue.claim()
        if claimed is None:
            if queue.stopped(search_id):
                break
            if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                log.info("no child waited for %.0f s; worker exits after %d children", idle_timeout, done)
                break
            time.sleep(poll_interval)
            continue
        queue.evaluate(claimed, evaluator)
        done += 1
        idle_since = time.monotonic()
    return done


def _worker_entry(storage_url: str, study_name: str, evaluator: Evaluator, search_id: str, run_dir: str,
                  num_threads: Optional[int], heartbeats: Dict[str, Any]) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_worker(storage_url, study_name, evaluator, search_id=search_id, run_dir=run_dir, num_threads=num_threads,
               **heartbeats)


def spawn_workers(
    n: int, storage_url: str, study_name: str, evaluator: Evaluator, search_id: str, run_dir: str,
    num_threads: Optional[int] = None,
    heartbeat_interval: int = 0,
    grace_period: Optional[int] = None,
    max_retry: int = 1,
) -> List[multiprocessing.process.BaseProcess]:
    """Start ``n`` local worker processes (spawn context; the evaluator is pickled to each)."""
    heartbeats = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period, "max_retry": max_retry}
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for _ in range(n):
        p = ctx.Process(
            target=_worker_entry, args=(storage_url, study_name, evaluator, search_id, run_dir, num_threads, heartbeats), daemon=True
        )
        p.start()
        procs.append(p)
    return procs

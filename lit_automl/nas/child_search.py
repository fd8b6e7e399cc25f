"""The record every sample-based architecture search shares: children proposed, evaluated as trials, observed.

A strategy (the RL controller of :class:`~lit_automl.nas.rl_search.RLSearch`, random search,
regularized evolution, ...) only says which children to evaluate next (:meth:`ChildSearch.propose`)
and what it learns from their rewards (:meth:`ChildSearch.observe`); this base owns everything
else, once: every child is a trial of one Optuna study (:mod:`lit_automl.nas.workqueue`), evaluated
in this process (``n_workers=0``), by local worker processes (``n_workers > 0``) or by
``lit-automl nas-worker`` processes on other machines sharing an RDB storage, so a search resumes
after a crash and spreads over machines alike; a failing child is a failed trial with its reason.
A resumed search proposes the children of its interrupted step again and adopts their trials (finished
ones are not trained twice); with heartbeats (RDB storages) the child a killed process was evaluating is
failed and retried (:mod:`lit_automl.nas.workqueue`).

As a LightningModule: one *training step* is one search step (``children_per_step`` children),
so Lightning's progress bar, loggers, checkpointing and ``max_epochs`` (times ``steps_per_epoch``
steps) drive the search. The module provides its own ``train_dataloader`` (placeholder step tokens);
the children's data lives in the evaluator. Under ``strategy="ddp"`` rank 0 proposes and submits,
children and rewards are broadcast, and every rank observes the same rewards, so strategies stay
identical. The run folder gets ``best_architecture.txt/.json`` (and the cell picture for cell
genotypes), ``children.jsonl``, ``search_history.png`` and, by default, ``study.db``.

Phases of a training step, as named in the code: ``propose`` -> ``evaluate`` -> ``observe``.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, IterableDataset

from lit_automl._checks import ArgumentTypeError, check_choice, check_int, check_real
from lit_automl.nas.evaluator import REWARDS, Evaluator, describe_reward
from lit_automl.nas.workqueue import ChildQueue, spawn_workers
from lit_automl.spaces.decisions import Action

__all__ = ["ChildSearch", "FAILURE_POLICIES"]

FAILURE_POLICIES = ("raise", "zero")

Actions = List[List[Action]]


class _StepTokens(IterableDataset):
    """``n`` placeholder items: one controller step each (iterable, so no DistributedSampler splits them)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class ChildSearch(pl.LightningModule):
    """Base of the sample-based searches (module docstring); subclasses define :meth:`propose` and
    :meth:`observe`, and may add state to checkpoints with :meth:`strategy_state` / :meth:`load_strategy_state`.

    Args:
        evaluator: scores children (``evaluator.space`` is the search space).
        children_per_step: children proposed and evaluated per training step.
        budget: the evaluator's budget for every child (epochs for training).
        reward: one of :data:`lit_automl.nas.evaluator.REWARDS`.
        steps_per_epoch: search steps per Lightning epoch.
        storage: Optuna storage URL of the child study (``None``: SQLite in the run folder; ``"memory"``: kept
            in this process only, no record after the run, for tabular benchmarks where lookups are cheaper than
            database writes).
        study_name: the child study's name (``None``: the class name in lower case).
        n_workers: local worker processes evaluating children (0: this process evaluates them).
        threads_per_worker: torch threads in each local worker (``None``: torch's default).
        child_timeout: seconds to wait for one step's children before failing the search.
        on_child_failure: ``"raise"`` stops the search with the child's error; ``"zero"`` gives a
            failed child reward 0 and logs a warning with the reason.
        heartbeat_interval: seconds between heartbeats of a child being evaluated (RDB storages; 0: none,
            so the child of a killed process stays RUNNING). 60, as the HPO studies'.
        grace_period: seconds without a heartbeat before a RUNNING child is failed (``None``: twice the
            interval).
        max_retry: how many times a child failed by the heartbeat is evaluated again.
        seed: seed of the strategy's random draws (``self.generator``).
    """

    unsaved_arguments: tuple = ("evaluator",)
    """Constructor arguments kept out of ``hparams`` (objects a checkpoint does not pickle; recipes rebuild them)."""

    step_name = "step"
    """What one training step is called in messages (RLSearch: ``"controller step"``)."""

    checkpoint_key = "child_search"
    """Where the search record lives in a checkpoint (RLSearch keeps its historical ``"rl_search"``)."""

    def __init__(self, evaluator: Evaluator, children_per_step: int = 8, budget: int = 50,
                 reward: str = "max_last5_cubed", steps_per_epoch: int = 10, storage: Optional[str] = None,
                 study_name: Optional[str] = None, n_workers: int = 0, threads_per_worker: Optional[int] = None,
                 child_timeout: Optional[float] = None, on_child_failure: str = "raise", heartbeat_interval: int = 60,
                 grace_period: Optional[int] = None, max_retry: int = 1, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(evaluator, Evaluator):
            raise ArgumentTypeError(
                f"evaluator must be an Evaluator (e.g. TrainingEvaluator), got {type(evaluator).__name__}"
            )
        check_choice("reward", reward, REWARDS)
        check_choice("on_child_failure", on_child_failure, FAILURE_POLICIES)
        for name, value in (("children_per_step", children_per_step), ("budget", budget),
                            ("steps_per_epoch", steps_per_epoch)):
            check_int(name, value, low=1)
        check_int("n_workers", n_workers, low=0)
        if storage == "memory" and n_workers > 0:
            raise ValueError(f"storage='memory' lives in this process only, so n_workers={n_workers} worker processes "
                             "cannot share it: use a SQLite file or a database URL, or n_workers=0")
        check_int("threads_per_worker", threads_per_worker, low=1, allow_none=True)
        check_real("child_timeout", child_timeout, low=0, low_open=True, allow_none=True,
                   allowed="a number of seconds > 0 or None")
        check_int("heartbeat_interval", heartbeat_interval, low=0, hint="0 turns heartbeats off")
        check_int("grace_period", grace_period, low=1, allow_none=True, hint="None: twice heartbeat_interval")
        check_int("max_retry", max_retry, low=0)
        check_int("seed", seed)
        self.save_hyperparameters(ignore=list(self.unsaved_arguments))
        self.automatic_optimization = False
        self.evaluator = evaluator
        self.space = evaluator.space
        self.decisions = self.space.decisions()
        self.generator = torch.Generator().manual_seed(seed)
        # search record (plain values; saved in checkpoints)
        self.search_name = uuid.uuid4().hex[:12]  # this search's id across resumes
        self.children_sampled = 0
        self.search_steps = 0
        self.history: List[Dict[str, Any]] = []  # one entry per evaluated child
        self.best: Optional[Dict[str, Any]] = None
        self._queue: Optional[ChildQueue] = None
        self._workers: List[Any] = []
        self._session = ""

    def __getstate__(self) -> Dict[str, Any]:
        # torch.Generator objects do not survive spawn pickling (DDP spawn, worker processes): ship its state
        state = dict(self.__dict__)
        state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        generator_state = state.pop("generator")
        super().__setstate__(state)
        self.generator = torch.Generator()
        self.generator.set_state(torch.frombuffer(bytearray(generator_state), dtype=torch.uint8))

    @property
    def reward_description(self) -> str:
        """The children's reward in words, from the ``reward`` and ``budget`` settings."""
        return describe_reward(self.hparams.reward, self.hparams.budget)

    # ------------------------------------------------------------------ what a strategy defines
    def propose(self, n: int) -> Actions:
        """The action sequences of the next ``n`` children (rank 0 only; drawn from ``self.generator``)."""
        raise NotImplementedError(f"{type(self).__name__} must define propose()")

    def observe(self, actions: Actions, rewards: List[float]) -> Dict[str, float]:
        """Learn from the children's rewards (every rank, the same values); returns metrics to log."""
        raise NotImplementedError(f"{type(self).__name__} must define observe()")

    def strategy_state(self) -> Dict[str, Any]:
        """The strategy's own state for checkpoints (parameters and optimisers are Lightning's)."""
        return {}

    def load_strategy_state(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`strategy_state`."""

    # ------------------------------------------------------------------ Lightning plumbing
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_StepTokens(self.hparams.steps_per_epoch), batch_size=None)

    def configure_callbacks(self) -> List[pl.Callback]:
        """:class:`~lit_automl.callbacks.StepCheckpoint`: ``checkpoints/last.ckpt`` in the run folder after every
        search step, so a killed search resumes from its last step (``--ckpt_path .../last.ckpt``); none when
        the Trainer has one already (a recipe's own, which Lightning would otherwise replace with this)."""
        from lit_automl.callbacks.step_checkpoint import StepCheckpoint

        trainer = self._trainer
        if trainer is not None and any(isinstance(c, StepCheckpoint) for c in trainer.callbacks):
            return []
        return [StepCheckpoint()]

    def configure_optimizers(self) -> Any:
        """No optimiser: a strategy without parameters (RLSearch returns the controller's Adam)."""
        return None

    def setup(self, stage: str) -> None:
        """Refuse DDP for a strategy without parameters: DDP cannot wrap it, and ranks would not evaluate
        children side by side anyway (workers do)."""
        from pytorch_lightning.strategies import DDPStrategy

        if isinstance(self.trainer.strategy, DDPStrategy) and not any(p.requires_grad for p in self.parameters()):
            raise ValueError(
                f"{type(self).__name__} has no parameters, so DDP has nothing to synchronise: run it on one process "
                f"and evaluate children in parallel with n_workers={max(2, self.hparams.n_workers)} or "
                "`lit-automl nas-worker` processes on a shared storage")

    def run_dir(self) -> Path:
        """The run folder: the Trainer's log dir, else its root dir (call on every rank: it broadcasts under DDP)."""
        trainer = self._trainer
        if trainer is None:
            return Path("runs") / type(self).__name__.lower()
        return Path(trainer.log_dir or trainer.default_root_dir)

    def on_fit_start(self) -> None:
        self._session = f"{self.search_name}/{uuid.uuid4().hex[:8]}"
        run_dir = self.run_dir()  # on every rank: Trainer.log_dir is a collective under DDP
        if self.trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            hp = self.hparams
            rank_zero_info(f"{type(self).__name__}: reward = {self.reward_description} (reward={hp.reward!r}), "
                           f"{hp.children_per_step} children per {self.step_name}")
            study_name = hp.study_name or type(self).__name__.lower()
            storage = hp.storage
            if storage is None and hp.n_workers > 0:
                storage = f"sqlite:///{run_dir / 'children.db'}"
            self._queue = ChildQueue(storage, study_name, self.decisions, run_dir, **self.heartbeat_settings())
            self._queue.fail_stale(force=True)  # children of a killed run: failed, and retried under their keys
            stale = self._queue.abandon_waiting(
                keep_prefix=f"{self.search_name}/",
                reason=f"left WAITING by an earlier session of another search than {self.search_name}",
            )
            if stale:
                rank_zero_warn(f"{stale} child trial(s) left waiting by an interrupted run were marked FAIL")
            if hp.n_workers > 0:
                if storage is None or self._queue.storage_url is None:
                    raise ValueError("n_workers > 0 needs a storage URL that worker processes can open")
                self._workers = spawn_workers(
                    hp.n_workers, storage, study_name, self.evaluator, self._session, str(run_dir), hp.threads_per_worker,
                    **self.heartbeat_settings(),
                )
                rank_zero_info(f"{hp.n_workers} child worker process(es) started on study {study_name!r} ({storage})")

    def heartbeat_settings(self) -> Dict[str, Any]:
        """The child queue's heartbeat arguments (the controller's, its workers' and ``nas-worker``'s)."""
        hp = self.hparams
        return {"heartbeat_interval": hp.heartbeat_interval, "grace_period": hp.grace_period, "max_retry": hp.max_retry}

    def _stop_workers(self) -> None:
        if self._queue is not None:
            self._queue.set_stopped(self._session)
        for p in self._workers:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        self._workers = []

    def on_fit_end(self) -> None:
        self._stop_workers()
        run_dir = self.run_dir()  # on every rank: Trainer.log_dir is a collective under DDP
        if self.trainer.is_global_zero and self.best is not None:
            self.write_results(run_dir)

    def teardown(self, stage: str) -> None:
        self._stop_workers()

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: Any, batch_idx: int) -> None:
        strategy = self.trainer.strategy
        actions: Optional[Actions] = None
        if self.trainer.is_global_zero:
            actions = self.propose(self.hparams.children_per_step)
        actions = strategy.broadcast(actions, src=0)
        rewards: Optional[List[float]] = None
        if self.trainer.is_global_zero:
            rewards = self._evaluate(actions)
        rewards = strategy.broadcast(rewards, src=0)
        stats = self.observe(actions, rewards)
        self.search_steps += 1
        self.children_sampled += len(actions)
        r = torch.tensor(rewards, dtype=torch.float64)
        self.log_dict(
            {**stats, "search/reward_mean": float(r.mean()), "search/reward_max": float(r.max()),
             "search/children": float(self.children_sampled),
             "search/best_reward": float(self.best["reward"]) if self.best else float("nan")},
            on_step=True, on_epoch=False, batch_size=len(actions),
        )
        self.log("reward", float(r.mean()), prog_bar=True, on_step=True, on_epoch=False, batch_size=len(actions))
        # the bar counts steps; show the evaluations and the best reward next to it
        self.log("children", float(self.children_sampled), prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=len(actions))
        if self.best is not None:
            self.log("best", float(self.best["reward"]), prog_bar=True, on_step=True, on_epoch=False,
                     batch_size=len(actions))

    def _evaluate(self, actions: List[List[Action]]) -> List[float]:
        """Submit, wait, collect rewards (rank 0)."""
        assert self._queue is not None, "on_fit_start opens the child queue"
        hp = self.hparams
        step = self.search_steps
        keys = [f"{self.search_name}/{step}/{i}" for i in range(len(actions))]
        archs = [self.space.decode(a) for a in actions]
        records = [self.space.to_json(arch) for arch in archs]
        known = self._queue.trials_by_key(keys)
        for key, a, record in zip(keys, actions, records):
            if self._adopt(key, record, known.get(key, [])):
                continue
            self._queue.submit(key, a, record, hp.budget, hp.reward, {"search_step": step, "session": self._session})
        done = self._queue.wait(keys, timeout=hp.child_timeout, work=self.evaluator if hp.n_workers == 0 else None)
        rewards: List[float] = []
        for key, a, arch in zip(keys, actions, archs):
            trial = done[key]
            if trial.state.name == "FAIL":
                reason = self._queue.fail_reason(trial)
                if hp.on_child_failure == "raise":
                    raise RuntimeError(
                        f"child {key} (trial {trial.number}) failed: {reason}\narchitecture: {self.space.to_json(arch)}\n"
                        "set on_child_failure='zero' to give failed children reward 0 instead"
                    )
                rank_zero_warn(f"child {key} (trial {trial.number}) failed, reward 0: {reason}")
                reward = 0.0
            else:
                reward = float(trial.value)
            rewards.append(reward)
            record = {
                "child": self.children_sampled + len(rewards) - 1, "trial": trial.number, "step": step,
                "reward": reward, "state": trial.state.name, "architecture": self.space.to_json(arch),
                "params": trial.user_attrs.get("params"), "train_seconds": trial.user_attrs.get("train_seconds"),
                "retry_of": trial.system_attrs.get("retry_history"),
                **{k: trial.user_attrs[k] for k in ("val_acc", "val_ppl", "lr") if k in trial.user_attrs},
            }
            self.history.append(record)
            if trial.state.name == "COMPLETE" and (self.best is None or reward > self.best["reward"]):
                self.best = record
        if not all(math.isfinite(x) for x in rewards):
            raise FloatingPointError(f"non-finite rewards {rewards} at search step {step}")
        return rewards

    def _adopt(self, key: str, record: Dict[str, Any], trials: List[Any]) -> bool:
        """Whether the child ``key`` of an earlier session (a resumed search proposing it again) stands: its
        newest trial holds this architecture and is done or still to come. A waiting trial proposed
        differently is failed with the reason; a failed one is submitted again."""
        if not trials:
            return False
        assert self._queue is not None
        newest = trials[-1]
        same = newest.user_attrs.get("architecture") == record and newest.user_attrs.get("budget") == self.hparams.budget
        # a RUNNING child is adopted only when heartbeats will fail it should its process be dead
        alive = newest.state.name == "RUNNING" and self._queue.heartbeat_interval > 0
        if same and (newest.state.name in ("COMPLETE", "WAITING") or alive or self._queue.retry_pending(newest)):
            return True
        if newest.state.name == "WAITING":
            self._queue.fail_waiting(newest, f"superseded: search {self.search_name} proposed another child as {key} "
                                             "after a resume")
        return False

    # ------------------------------------------------------------------ results
    def best_architecture(self) -> Any:
        """The best child so far, decoded (None before any child finished)."""
        return None if self.best is None else self.space.from_json(self.best["architecture"])

    def write_results(self, run_dir: Path) -> None:
        """``best_architecture.json`` (the best child's record: reward, trial, metrics, architecture), ``.txt``
        (``.png`` for cell genotypes), ``children.jsonl`` and ``search_history.png`` in ``run_dir``."""
        run_dir.mkdir(parents=True, exist_ok=True)
        best = self.best_architecture()
        (run_dir / "best_architecture.json").write_text(json.dumps({**self.best, "architecture": self.best["architecture"]}, indent=2, default=str))  # type: ignore[index]
        (run_dir / "best_architecture.txt").write_text(f"{best}\n")
        with open(run_dir / "children.jsonl", "w") as fh:
            for rec in self.history:
                fh.write(json.dumps(rec, default=str) + "\n")
        self._plot_history(run_dir / "search_history.png")
        self._plot_best(best, run_dir)
        rank_zero_info(
            f"best child: reward {self.best['reward']:.4f} = {self.reward_description} "  # type: ignore[index]
            f"(trial {self.best['trial']}, step {self.best['step']})\n"  # type: ignore[index]
            f"{best}\nwritten to {run_dir / 'best_architecture.txt'}"
        )

    def _plot_history(self, path: Path) -> None:
        """Child rewards and the best so far against children evaluated and, when every child reports its
        training seconds (real, or simulated by a tabular benchmark), against their running sum."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [h["child"] for h in self.history]
        ys = [h["reward"] for h in self.history]
        best, running = -math.inf, []
        for y in ys:
            best = max(best, y)
            running.append(best)
        seconds = [h.get("train_seconds") for h in self.history]
        timed = bool(seconds) and all(isinstance(t, (int, float)) for t in seconds)
        fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 3.5), squeeze=False)
        clock = list(itertools.accumulate(seconds)) if timed else []
        for ax, x, label in zip(axes[0], (xs, clock), ("children evaluated", "training seconds, summed")):
            ax.scatter(x, ys, s=10, alpha=0.6, label="child reward")
            ax.plot(x, running, color="C1", label="best so far")
            ax.set_xlabel(label)
            ax.set_ylabel(f"reward ({self.hparams.reward})")
            ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def _plot_best(self, best: Any, run_dir: Path) -> None:
        """For a cell genotype: ``best_architecture.txt`` in the published text form and the cell picture
        ``best_architecture.png``; for a NAS-Bench-201 cell its picture (``best_architecture.json`` stays the
        child's record)."""
        from lit_automl.spaces.genotype import Genotype
        from lit_automl.spaces.nb201 import NB201Arch

        if isinstance(best, Genotype):
            from lit_automl.spaces.plot import plot_genotype

            best.save(run_dir / "best_architecture.txt")
            plot_genotype(best, run_dir / "best_architecture.png")
        elif isinstance(best, NB201Arch):
            from lit_automl.spaces.plot import plot_nb201_cell

            plot_nb201_cell(best, run_dir / "best_architecture.png", title=f"best cell: reward {self.best['reward']:.4f}")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint[self.checkpoint_key] = {
            "search_name": self.search_name, "children_sampled": self.children_sampled,
            "search_steps": self.search_steps, "history": list(self.history), "best": self.best,
            "generator": self.generator.get_state(), **self.strategy_state(),
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint[self.checkpoint_key]
        self.search_name = state["search_name"]
        self.children_sampled = int(state["children_sampled"])
        self.search_steps = int(state["search_steps"] if "search_steps" in state else state["controller_steps"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.generator.set_state(state["generator"])
        self.load_strategy_state(state)

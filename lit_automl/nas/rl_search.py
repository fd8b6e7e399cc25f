"""Policy-gradient architecture search: a controller samples children, an evaluator scores them.

The loop of Zoph & Le ("Neural Architecture Search with Reinforcement Learning", ICLR 2017,
Sec. 3.1-3.2) and Zoph et al. ("Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, Sec. 3): each controller step samples ``m`` architectures from the
autoregressive controller, trains each child, turns its validation accuracy into a reward and
updates the controller with REINFORCE or PPO.

As a LightningModule: one *training step* is one controller update, so Lightning's progress
bar, loggers, checkpointing and ``max_epochs`` (times ``steps_per_epoch`` updates) drive the
search; ``Trainer(max_steps)`` counts optimiser steps: one per update for REINFORCE, ``ppo_epochs``
per update for PPO. The module
provides its own ``train_dataloader`` (``steps_per_epoch`` step tokens per epoch); the children's
data lives in the evaluator. Children are trials of one Optuna study
(:mod:`lit_automl.nas.workqueue`): evaluated in this process (``n_workers=0``), by local worker
processes (``n_workers > 0``) or by ``lit-automl nas-worker`` processes on other machines sharing
an RDB storage. Under ``strategy="ddp"`` rank 0 samples and submits, actions and rewards are
broadcast, and every rank applies the same (all-reduced) controller update, so controllers stay
identical; DDP is not a way to run children side by side (use workers for that).

Phases of a training step, as named in the code: ``sample`` -> ``evaluate`` -> ``update``.
"""

from __future__ import annotations

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
from lit_automl.nas.controller import Controller
from lit_automl.nas.evaluator import REWARDS, Evaluator, describe_reward
from lit_automl.nas.policy_gradient import PPO, PolicyGradient, Reinforce
from lit_automl.nas.workqueue import ChildQueue, spawn_workers
from lit_automl.spaces.decisions import Action

__all__ = ["RLSearch", "ALGORITHMS", "FAILURE_POLICIES"]

ALGORITHMS = ("reinforce", "ppo")
FAILURE_POLICIES = ("raise", "zero")


class _StepTokens(IterableDataset):
    """``n`` placeholder items: one controller step each (iterable, so no DistributedSampler splits them)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class RLSearch(pl.LightningModule):
    """Controller + evaluator + child queue; see the module docstring.

    Args:
        evaluator: scores children (``evaluator.space`` is the search space).
        algorithm: ``"reinforce"`` (Zoph & Le 2017) or ``"ppo"`` (Zoph et al. 2018).
        children_per_step: ``m`` architectures per controller update.
        budget: epochs each child trains.
        reward: one of :data:`lit_automl.nas.evaluator.REWARDS`.
        hidden_size, num_layers, init_range, temperature, tanh_constant: the controller
            (:class:`~lit_automl.nas.controller.Controller`).
        lr: the controller's Adam learning rate (:meth:`configure_optimizers`).
        baseline_decay, entropy_weight: the policy-gradient update
            (:mod:`~lit_automl.nas.policy_gradient`); ``clip_epsilon`` and ``ppo_epochs`` for PPO.
        steps_per_epoch: controller steps per Lightning epoch.
        storage: Optuna storage URL of the child study (``None``: SQLite in the run folder).
        study_name: the child study's name (``None``: the class name in lower case).
        n_workers: local worker processes evaluating children (0: this process evaluates them).
        threads_per_worker: torch threads in each local worker (``None``: torch's default).
        child_timeout: seconds to wait for one step's children before failing the search.
        on_child_failure: ``"raise"`` stops the search with the child's error; ``"zero"`` gives a
            failed child reward 0 and logs a warning with the reason.
        seed: seed of the controller's sampling.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        algorithm: str = "reinforce",
        children_per_step: int = 8,
        budget: int = 50,
        reward: str = "max_last5_cubed",
        hidden_size: int = 35,
        num_layers: int = 2,
        init_range: float = 0.08,
        temperature: Optional[float] = None,
        tanh_constant: Optional[float] = None,
        lr: float = 6e-4,
        baseline_decay: float = 0.95,
        entropy_weight: float = 0.0,
        clip_epsilon: float = 0.2,
        ppo_epochs: int = 4,
        steps_per_epoch: int = 10,
        storage: Optional[str] = None,
        study_name: Optional[str] = None,
        n_workers: int = 0,
        threads_per_worker: Optional[int] = None,
        child_timeout: Optional[float] = None,
        on_child_failure: str = "raise",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(evaluator, Evaluator):
            raise ArgumentTypeError(
                f"evaluator must be an Evaluator (e.g. TrainingEvaluator), got {type(evaluator).__name__}"
            )
        check_choice("algorithm", algorithm, ALGORITHMS, sort=False)
        check_choice("reward", reward, REWARDS)
        check_choice("on_child_failure", on_child_failure, FAILURE_POLICIES)
        for name, value in (("children_per_step", children_per_step), ("budget", budget),
                            ("steps_per_epoch", steps_per_epoch)):
            check_int(name, value, low=1)
        check_int("n_workers", n_workers, low=0)
        check_int("threads_per_worker", threads_per_worker, low=1, allow_none=True)
        check_real("child_timeout", child_timeout, low=0, low_open=True, allow_none=True,
                   allowed="a number of seconds > 0 or None")
        check_int("seed", seed)
        check_real("lr", lr, low=0, low_open=True)
        self.save_hyperparameters(ignore=["evaluator"])
        self.automatic_optimization = False
        self.evaluator = evaluator
        self.space = evaluator.space
        self.decisions = self.space.decisions()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the controller's initial weights follow ``seed`` too
            self.controller = Controller(
                self.decisions, hidden_size=hidden_size, num_layers=num_layers, temperature=temperature,
                tanh_constant=tanh_constant, init_range=init_range,
            )
        self.policy_gradient: PolicyGradient = (
            Reinforce(baseline_decay=baseline_decay, entropy_weight=entropy_weight) if algorithm == "reinforce"
            else PPO(clip_epsilon=clip_epsilon, epochs=ppo_epochs, baseline_decay=baseline_decay,
                     entropy_weight=entropy_weight)
        )
        self.generator = torch.Generator().manual_seed(seed)
        # search record (plain values; saved in checkpoints)
        self.search_name = uuid.uuid4().hex[:12]  # this search's id across resumes
        self.children_sampled = 0
        self.controller_steps = 0
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

    # ------------------------------------------------------------------ what subclasses tune
    def decision_length(self) -> Optional[int]:
        """How many decisions the controller samples now (``None``: all). NAS-RL grows it."""
        return None

    # ------------------------------------------------------------------ Lightning plumbing
    def train_dataloader(self) -> DataLoader:
        return DataLoader(_StepTokens(self.hparams.steps_per_epoch), batch_size=None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The controller's Adam (Zoph & Le Sec. 4.1); Lightning steps and checkpoints it."""
        return torch.optim.Adam(self.controller.parameters(), lr=self.hparams.lr)

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
                           f"{hp.children_per_step} children per controller step")
            study_name = hp.study_name or type(self).__name__.lower()
            storage = hp.storage
            if storage is None and hp.n_workers > 0:
                storage = f"sqlite:///{run_dir / 'children.db'}"
            self._queue = ChildQueue(storage, study_name, self.decisions, run_dir)
            stale = self._queue.abandon_waiting(
                keep_prefix=self._session, reason=f"left WAITING by an earlier session of search {self.search_name}"
            )
            if stale:
                rank_zero_warn(f"{stale} child trial(s) left waiting by an interrupted run were marked FAIL")
            if hp.n_workers > 0:
                if storage is None or self._queue.storage_url is None:
                    raise ValueError("n_workers > 0 needs a storage URL that worker processes can open")
                self._workers = spawn_workers(
                    hp.n_workers, storage, study_name, self.evaluator, self._session, str(run_dir), hp.threads_per_worker
                )
                rank_zero_info(f"{hp.n_workers} child worker process(es) started on study {study_name!r} ({storage})")

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
        # Phase 1: sample m architectures (rank 0; broadcast so every rank updates on the same data)
        actions: Optional[List[List[Action]]] = None
        if self.trainer.is_global_zero:
            with torch.no_grad():
                actions, _, _ = self.controller.sample(
                    self.hparams.children_per_step, generator=self.generator, length=self.decision_length()
                )
        actions = strategy.broadcast(actions, src=0)
        # Phase 2: evaluate them as trials of the child study
        rewards: Optional[List[float]] = None
        if self.trainer.is_global_zero:
            rewards = self._evaluate(actions)
        rewards = strategy.broadcast(rewards, src=0)
        # Phase 3: update the controller (identical on every rank)
        # Lightning's optimiser wrapper steps, so Trainer(max_steps) counts optimiser steps:
        # one per controller update for REINFORCE, ``ppo_epochs`` per update for PPO.
        stats = self.policy_gradient.step(self.controller, self.optimizers(), actions, rewards)
        self.controller_steps += 1
        self.children_sampled += len(actions)
        r = torch.tensor(rewards, dtype=torch.float64)
        self.log_dict(
            {
                "controller/reward_mean": float(r.mean()), "controller/reward_max": float(r.max()),
                "controller/baseline": stats["baseline"], "controller/entropy": stats["entropy"],
                "controller/loss": stats["loss"], "search/children": float(self.children_sampled),
                "search/best_reward": float(self.best["reward"]) if self.best else float("nan"),
            },
            on_step=True, on_epoch=False, batch_size=len(actions),
        )
        self.log("reward", float(r.mean()), prog_bar=True, on_step=True, on_epoch=False, batch_size=len(actions))

    def _evaluate(self, actions: List[List[Action]]) -> List[float]:
        """Submit, wait, collect rewards (rank 0)."""
        assert self._queue is not None, "on_fit_start opens the child queue"
        hp = self.hparams
        step = self.controller_steps
        keys = [f"{self._session}/{step}/{i}" for i in range(len(actions))]
        archs = [self.space.decode(a) for a in actions]
        for key, a, arch in zip(keys, actions, archs):
            self._queue.submit(key, a, self.space.to_json(arch), hp.budget, hp.reward, {"controller_step": step})
        done = self._queue.wait(keys, timeout=hp.child_timeout, work=self.evaluator if hp.n_workers == 0 else None)
        rewards: List[float] = []
        for key, a, arch in zip(keys, actions, archs):
            trial = done[key]
            if trial.state.name == "FAIL":
                reason = trial.user_attrs.get("fail_reason", "no reason recorded")
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
                "params": trial.user_attrs.get("params"),
                **{k: trial.user_attrs[k] for k in ("val_acc", "val_ppl") if k in trial.user_attrs},
            }
            self.history.append(record)
            if trial.state.name == "COMPLETE" and (self.best is None or reward > self.best["reward"]):
                self.best = record
        if not all(math.isfinite(x) for x in rewards):
            raise FloatingPointError(f"non-finite rewards {rewards} at controller step {step}")
        return rewards

    # ------------------------------------------------------------------ results
    def best_architecture(self) -> Any:
        """The best child so far, decoded (None before any child finished)."""
        return None if self.best is None else self.space.from_json(self.best["architecture"])

    def write_results(self, run_dir: Path) -> None:
        """``best_architecture.json`` / ``.txt``, ``children.jsonl`` and ``search_history.png`` in ``run_dir``."""
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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [h["child"] for h in self.history]
        ys = [h["reward"] for h in self.history]
        best, running = -math.inf, []
        for y in ys:
            best = max(best, y)
            running.append(best)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.scatter(xs, ys, s=10, alpha=0.6, label="child reward")
        ax.plot(xs, running, color="C1", label="best so far")
        ax.set_xlabel("children sampled")
        ax.set_ylabel(f"reward ({self.hparams.reward})")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def _plot_best(self, best: Any, run_dir: Path) -> None:
        """The best architecture's files (text, JSON, picture) when it is a cell genotype."""
        from lit_automl.spaces.genotype import Genotype

        if isinstance(best, Genotype):
            from lit_automl.spaces.genotype_files import save_genotype_files

            save_genotype_files(best, run_dir, stem="best_architecture")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["rl_search"] = {
            "search_name": self.search_name, "children_sampled": self.children_sampled,
            "controller_steps": self.controller_steps, "history": list(self.history), "best": self.best,
            "policy_gradient": self.policy_gradient.state_dict(), "generator": self.generator.get_state(),
        }

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint["rl_search"]
        self.search_name = state["search_name"]
        self.children_sampled = int(state["children_sampled"])
        self.controller_steps = int(state["controller_steps"])
        self.history = list(state["history"])
        self.best = state["best"]
        if "policy_gradient" not in state:  # checkpoints written before the baseline had its own state_dict
            state["policy_gradient"] = {"baseline": {"value": state["baseline"], "num_updates": state["num_updates"]}}
        self.policy_gradient.load_state_dict(state["policy_gradient"])
        self.generator.set_state(state["generator"])

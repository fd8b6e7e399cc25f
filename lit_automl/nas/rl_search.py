"""Policy-gradient architecture search: a controller samples children, an evaluator scores them.

The loop of Zoph & Le ("Neural Architecture Search with Reinforcement Learning", ICLR 2017,
Sec. 3.1-3.2) and Zoph et al. ("Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, Sec. 3): each controller step samples ``m`` architectures from the
autoregressive controller, trains each child, turns its validation accuracy into a reward and
updates the controller with REINFORCE or PPO.

The search record (children as trials of one Optuna study, workers, resume, run-folder files, DDP)
is :class:`~lit_automl.nas.child_search.ChildSearch`'s; this module adds the controller: ``propose``
samples from it, ``observe`` takes the policy-gradient step. ``Trainer(max_steps)`` counts optimiser
steps: one per update for REINFORCE, ``ppo_epochs`` per update for PPO. Under ``strategy="ddp"`` every
rank applies the same (all-reduced) controller update, so controllers stay identical; DDP is not a way
to run children side by side (use workers for that).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from lit_automl._checks import check_choice, check_real
from lit_automl.nas.child_search import FAILURE_POLICIES, ChildSearch
from lit_automl.nas.controller import Controller
from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.policy_gradient import PPO, PolicyGradient, Reinforce
from lit_automl.spaces.decisions import Action

__all__ = ["RLSearch", "ALGORITHMS", "FAILURE_POLICIES"]

ALGORITHMS = ("reinforce", "ppo")


class RLSearch(ChildSearch):
    """Controller + evaluator + child queue; see the module docstring and :class:`ChildSearch`.

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
        seed: seed of the controller's sampling and of its initial weights.
        storage, study_name, n_workers, threads_per_worker, child_timeout, on_child_failure: the child record's
            (:class:`~lit_automl.nas.child_search.ChildSearch`).
    """

    checkpoint_key = "rl_search"
    step_name = "controller step"

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
        heartbeat_interval: int = 60,
        grace_period: Optional[int] = None,
        max_retry: int = 1,
        seed: int = 0,
    ) -> None:
        check_choice("algorithm", algorithm, ALGORITHMS, sort=False)
        check_real("lr", lr, low=0, low_open=True)
        super().__init__(evaluator, children_per_step=children_per_step, budget=budget, reward=reward,
                         steps_per_epoch=steps_per_epoch, storage=storage, study_name=study_name, n_workers=n_workers,
                         threads_per_worker=threads_per_worker, child_timeout=child_timeout,
                         on_child_failure=on_child_failure, heartbeat_interval=heartbeat_interval,
                         grace_period=grace_period, max_retry=max_retry, seed=seed)
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

    @property
    def controller_steps(self) -> int:
        """Controller updates so far (one per search step)."""
        return self.search_steps

    # ------------------------------------------------------------------ what subclasses tune
    def decision_length(self) -> Optional[int]:
        """How many decisions the controller samples now (``None``: all). NAS-RL grows it."""
        return None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The controller's Adam (Zoph & Le Sec. 4.1); Lightning steps and checkpoints it."""
        return torch.optim.Adam(self.controller.parameters(), lr=self.hparams.lr)

    # ------------------------------------------------------------------ the strategy
    def propose(self, n: int) -> List[List[Action]]:
        """``n`` children sampled from the controller (its first :meth:`decision_length` decisions)."""
        with torch.no_grad():
            actions, _, _ = self.controller.sample(n, generator=self.generator, length=self.decision_length())
        return actions

    def observe(self, actions: List[List[Action]], rewards: List[float]) -> Dict[str, float]:
        """One REINFORCE / PPO update (identical on every rank).

        Lightning's optimiser wrapper steps, so Trainer(max_steps) counts optimiser steps:
        one per controller update for REINFORCE, ``ppo_epochs`` per update for PPO."""
        stats = self.policy_gradient.step(self.controller, self.optimizers(), actions, rewards)
        return {"controller/reward_mean": stats["reward_mean"], "controller/baseline": stats["baseline"],
                "controller/entropy": stats["entropy"], "controller/loss": stats["loss"]}

    def strategy_state(self) -> Dict[str, Any]:
        return {"policy_gradient": self.policy_gradient.state_dict()}

    def load_strategy_state(self, state: Dict[str, Any]) -> None:
        if "policy_gradient" not in state:  # checkpoints written before the baseline had its own state_dict
            state["policy_gradient"] = {"baseline": {"value": state["baseline"], "num_updates": state["num_updates"]}}
        self.policy_gradient.load_state_dict(state["policy_gradient"])

"""Policy-gradient updates of the controller: REINFORCE and PPO losses with an EMA reward baseline.

* Williams, "Simple statistical gradient-following algorithms for connectionist reinforcement
  learning", Machine Learning 1992 (REINFORCE).
* Zoph & Le, "Neural Architecture Search with Reinforcement Learning", ICLR 2017, Sec. 3.2:
  REINFORCE over ``m`` sampled architectures per update with an exponential-moving-average
  baseline of the rewards.
* Schulman et al., "Proximal Policy Optimization Algorithms", 2017, Eq. 7 (clipped surrogate),
  which Zoph, Vasudevan, Shlens & Le ("Learning Transferable Architectures for Scalable Image
  Recognition", CVPR 2018) use to train the NASNet controller.

An update rule (:class:`Reinforce`, :class:`PPO`) holds the loss settings and the baseline, never the
policy or its optimiser: :meth:`PolicyGradient.step` is handed both, so the optimiser belongs to
whoever owns the training loop (``RLSearch.configure_optimizers``, checkpointed by Lightning) and the
baseline is saved through the rule's own ``state_dict``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from lit_automl._checks import check_int, check_real
from lit_automl.distributed import all_reduce_mean
from lit_automl.nas.controller import Controller
from lit_automl.spaces.decisions import ActionSeq

__all__ = ["EMABaseline", "PPO", "PolicyGradient", "Reinforce", "ppo_loss", "reinforce_loss"]

Rewards = Union[Sequence[float], Tensor]
Penalty = Callable[[Controller, Sequence[ActionSeq]], Tensor]
"""A differentiable term added to the policy loss, computed from the controller and the actions (ENAS's
skip-connection KL penalty, :func:`lit_automl.nas.enas.skip_penalty`)."""


def reinforce_loss(
    log_prob: Tensor, rewards: Tensor, baseline: Union[float, Tensor], entropy: Optional[Tensor] = None,
    entropy_weight: float = 0.0,
) -> Tensor:
    """REINFORCE surrogate (Williams 1992; Zoph & Le Sec. 3.2).

    ``mean_k[-(R_k - b) * log p(a_k)] - entropy_weight * mean_k[H_k]``; its
    negated gradient is the unbiased estimate
    ``1/m sum_k (R_k - b) grad log p(a_k)`` of ``grad E[R]``.
    log_prob, rewards, entropy: [m].
    """
    adv = (rewards - baseline).detach()  # [m]
    loss = -(adv * log_prob).mean()
    if entropy is not None and entropy_weight:
        loss = loss - entropy_weight * entropy.mean()
    return loss


def ppo_loss(
    log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_epsilon: float = 0.2,
    entropy: Optional[Tensor] = None, entropy_weight: float = 0.0,
) -> Tuple[Tensor, Tensor]:
    """Clipped surrogate (Schulman et al. 2017, Eq. 7), negated for minimisation.

    Returns (loss, ratio [m]) with ratio = exp(logp_new - logp_old).
    """
    ratio = torch.exp(log_prob - old_log_prob.detach())  # [m]
    adv = advantages.detach()
    surr = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * adv)
    loss = -surr.mean()
    if entropy is not None and entropy_weight:
        loss = loss - entropy_weight * entropy.mean()
    return loss, ratio


class EMABaseline:
    """Exponential moving average of the mean reward, ``b <- decay * b + (1 - decay) * mean(R)`` (Zoph & Le Sec. 3.2).

    ``value`` is ``None`` until the first update; the first batch uses its own mean reward as
    baseline (ours: the paper does not say how ``b`` starts).
    """

    def __init__(self, decay: float = 0.95) -> None:
        self.decay = check_real("baseline_decay", decay, low=0, high=1, high_open=True)
        self.value: Optional[float] = None
        self.num_updates = 0

    def for_batch(self, rewards: Tensor) -> float:
        """The baseline to subtract from this batch's rewards: the average so far, or the batch mean at first."""
        return float(rewards.mean()) if self.value is None else self.value

    def update(self, rewards: Tensor) -> None:
        mean_r = float(rewards.mean())
        self.value = mean_r if self.value is None else self.decay * self.value + (1 - self.decay) * mean_r
        self.num_updates += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"value": self.value, "num_updates": self.num_updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.value = state["value"]
        self.num_updates = int(state["num_updates"])


class PolicyGradient:
    """One controller update from ``m`` sampled action sequences and their rewards (see the module docstring).

    Subclasses implement :meth:`_update`; :meth:`step` validates the rewards, computes the
    baseline, runs the update and moves the baseline.
    """

    def __init__(self, baseline_decay: float = 0.95, entropy_weight: float = 0.0) -> None:
        self.baseline = EMABaseline(baseline_decay)
        self.entropy_weight = check_real("entropy_weight", entropy_weight, low=0)

    def step(self, controller: Controller, optimizer: Any, actions: Sequence[ActionSeq],
             rewards: Rewards, penalty: Optional[Penalty] = None) -> Dict[str, float]:
        """Update ``controller`` with ``optimizer`` (anything with ``step()``) and return the update's statistics;
        ``penalty(controller, actions)``, when given, is added to the loss of every optimiser step."""
        r = torch.as_tensor(rewards, dtype=torch.float32, device=controller.start.device).reshape(-1)  # [m]
        if r.numel() == 0 or r.numel() != len(actions):
            raise ValueError(
                f"need one reward per action sequence and at least one: got {r.numel()} rewards "
                f"for {len(actions)} sequences"
            )
        if not bool(torch.isfinite(r).all()):
            raise ValueError(f"rewards must be finite, got {r.tolist()!r}")
        b = self.baseline.for_batch(r)
        stats = self._update(controller, optimizer, actions, r, b, penalty)
        self.baseline.update(r)
        return {
            **stats, "reward_mean": float(r.mean()), "advantage_mean": float((r - b).mean()),
            "baseline": float(self.baseline.value),  # type: ignore[arg-type]
        }

    def _update(self, controller: Controller, optimizer: Any, actions: Sequence[ActionSeq], rewards: Tensor,
                baseline: float, penalty: Optional[Penalty]) -> Dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def _penalised(loss: Tensor, controller: Controller, actions: Sequence[ActionSeq],
                   penalty: Optional[Penalty]) -> Tensor:
        return loss if penalty is None else loss + penalty(controller, actions)

    @staticmethod
    def _apply(controller: Controller, optimizer: Any, loss: Tensor) -> None:
        """One optimiser step on ``loss``; gradients averaged over DDP ranks.

        ``torch.autograd.grad`` (not ``backward``) so no DDP reducer hook fires: the controller
        lives outside any DDP forward, and the explicit all-reduce keeps ranks identical.
        """
        params = [p for p in controller.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = all_reduce_mean([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()

    def state_dict(self) -> Dict[str, Any]:
        """The baseline (the policy and the optimiser are checkpointed by their owners)."""
        return {"baseline": self.baseline.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.baseline.load_state_dict(state["baseline"])


class Reinforce(PolicyGradient):
    """REINFORCE with the EMA baseline (Williams 1992; Zoph & Le 2017 Sec. 3.2).

    One :meth:`step` is one controller update from ``m`` sampled architectures (the mean over
    them, Sec. 3.2). ``baseline_decay=0.95`` and ``entropy_weight=0.0`` are ours (the paper gives
    no values); the learning rate (Zoph & Le Sec. 4.1: Adam, 6e-4) belongs to the optimiser.
    """

    def _update(self, controller: Controller, optimizer: Any, actions: Sequence[ActionSeq], rewards: Tensor,
                baseline: float, penalty: Optional[Penalty]) -> Dict[str, float]:
        log_prob, entropy = controller.log_prob(actions)  # [m], [m]
        loss = reinforce_loss(log_prob, rewards, baseline, entropy, self.entropy_weight)
        loss = self._penalised(loss, controller, actions, penalty)
        self._apply(controller, optimizer, loss)
        return {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean()),
                "log_prob": float(log_prob.detach().mean())}


class PPO(PolicyGradient):
    """PPO with the clipped surrogate (Schulman et al. 2017), as used for the controller of Zoph et al. (CVPR 2018).

    Advantage ``A = R - b`` with the EMA baseline ``b`` (as in Zoph & Le Sec. 3.2);
    ``clip_epsilon=0.2`` (Schulman et al. 2017). ``epochs=4`` optimiser steps over each batch,
    ``baseline_decay=0.95`` and ``entropy_weight=0.0`` are our defaults (NASNet's search sets the
    paper's entropy weight 1e-5 and lr 3.5e-4, :class:`~lit_automl.nas.nasnet.NASNetSearch`).
    """

    def __init__(self, clip_epsilon: float = 0.2, epochs: int = 4, baseline_decay: float = 0.95,
                 entropy_weight: float = 0.0) -> None:
        super().__init__(baseline_decay, entropy_weight)
        self.clip_epsilon = check_real("clip_epsilon", clip_epsilon, low=0, high=1, low_open=True, high_open=True)
        self.epochs = check_int("epochs", epochs, low=1)

    def _update(self, controller: Controller, optimizer: Any, actions: Sequence[ActionSeq], rewards: Tensor,
                baseline: float, penalty: Optional[Penalty]) -> Dict[str, float]:
        adv = rewards - baseline  # [m]
        with torch.no_grad():
            old_log_prob, _ = controller.log_prob(actions)  # [m]
        loss, entropy, clip_frac = torch.zeros(()), torch.zeros(()), 0.0
        for _ in range(self.epochs):
            log_prob, entropy = controller.log_prob(actions)
            loss, ratio = ppo_loss(log_prob, old_log_prob, adv, self.clip_epsilon, entropy, self.entropy_weight)
            loss = self._penalised(loss, controller, actions, penalty)
            self._apply(controller, optimizer, loss)
            clip_frac = float(((ratio.detach() - 1).abs() > self.clip_epsilon).float().mean())
        return {"loss": float(loss.detach()), "entropy": float(entropy.detach().mean()), "clip_fraction": clip_frac}

"""ENAS's controller phase, shared by the CNN search (:class:`~lit_automl.nas.enas.ENAS`) and the recurrent
search (:class:`~lit_automl.nas.enas_rnn.ENASRecurrent`).

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018, Sec. 2.2: with the
shared weights omega fixed, a child ``m ~ pi(m; theta)`` is scored on one validation minibatch, the
sample's entropy is added to its reward (``R + w_H * H``, the authors' ``build_trainer``), and theta is
updated by REINFORCE with a moving-average baseline (:class:`~lit_automl.nas.policy_gradient.Reinforce`)
from every ``num_aggregate`` samples. Deriving: the best of ``derive_samples`` children scored on one
validation minibatch. Every draw comes from a generator keyed by ``(seed, step, phase)``
(:func:`~lit_automl.rng.keyed_generator`), so DDP ranks sample the same children and a resumed run the
children an uninterrupted one would.

:class:`ENASPolicyMixin` is mixed into a LightningModule that defines ``score(tokens, batch)`` (a child's
reward signal on one validation minibatch, already averaged over ranks) and calls
:meth:`ENASPolicyMixin.init_policy` in its constructor after ``save_hyperparameters``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from lit_automl._checks import check_int, check_real
from lit_automl.nas.controller import Controller
from lit_automl.nas.policy_gradient import Reinforce
from lit_automl.rng import keyed_generator
from lit_automl.spaces.decisions import ANCHOR, ActionSeq, SequentialSpace

__all__ = ["CONTROLLER", "DERIVE", "ENASPolicyMixin", "INITIAL", "OMEGA", "skip_penalty"]

OMEGA, CONTROLLER, DERIVE, INITIAL = 0, 1, 2, 3
"""Phase keys of the keyed draws: omega's child, the controller's sample, deriving, the child before any."""

PROGRESS_BAR = ("train/loss", "controller/reward")

POLICY_SETTINGS = ("temperature", "tanh_constant", "op_tanh_reduce", "entropy_weight", "num_aggregate", "skip_weight")


def skip_penalty(controller: Controller, actions: Sequence[ActionSeq], target: float) -> Tensor:
    """ENAS's skip-connection penalty (Sec. 2.2; ``general_controller.py``): per anchor decision with bits, the KL
    divergence ``sum_j KL(Bernoulli(p_j) || Bernoulli(target))`` of its skip probabilities ``p_j``, averaged over
    those decisions and the samples. Differentiable in the controller's parameters."""
    logits = controller.step_logits(actions)
    terms = []
    for d, lg in zip(controller.decisions, logits):
        if d.kind != ANCHOR or lg.shape[-1] == 0:
            continue
        p = torch.sigmoid(lg)  # [n, k]
        kl = p * torch.log(p / target) + (1 - p) * torch.log((1 - p) / (1 - target))
        terms.append(kl.sum(-1))  # [n]
    if not terms:
        return logits[0].new_zeros(())
    return torch.stack(terms, dim=1).mean()


class ENASPolicyMixin:
    """The controller phase of ENAS (module docstring). Attributes: ``space``, ``controller``, ``policy``
    (the REINFORCE rule and its baseline), ``settings`` (the resolved policy settings), ``pending`` (samples
    awaiting the next update), ``best_tokens`` / ``best_score`` (the last derivation), ``search_steps``."""

    hparams: Any
    log_dict: Any
    log: Any
    current_epoch: int

    def init_policy(self, space: SequentialSpace, defaults: Mapping[str, Any], given: Mapping[str, Any], *,
                    controller_hidden: int, controller_layers: int, controller_init_range: float,
                    baseline_decay: float, skip_target: float, derive_samples: int, seed: int,
                    controller_lr: float, controller_betas: Sequence[float], controller_eps: float) -> None:
        """Resolve the settings left ``None`` from ``defaults``, validate them, build the controller and the rule."""
        s = {k: defaults[k] if given.get(k) is None else given[k] for k in POLICY_SETTINGS}
        for name in ("temperature", "tanh_constant"):
            check_real(name, s[name], low=0, allow_none=True, hint="0 switches it off")
        check_real("op_tanh_reduce", s["op_tanh_reduce"], low=0, low_open=True)
        check_real("entropy_weight", s["entropy_weight"], low=0)
        check_real("skip_weight", s["skip_weight"], low=0)
        check_int("num_aggregate", s["num_aggregate"], low=1)
        for name, value in (("controller_lr", controller_lr), ("controller_eps", controller_eps),
                            ("controller_init_range", controller_init_range)):
            check_real(name, value, low=0, low_open=True)
        check_real("baseline_decay", baseline_decay, low=0, high=1, high_open=True)
        check_real("skip_target", skip_target, low=0, high=1, low_open=True, high_open=True)
        for name, value in (("controller_hidden", controller_hidden), ("controller_layers", controller_layers),
                            ("derive_samples", derive_samples)):
            check_int(name, value, low=1)
        check_int("seed", seed, low=0)
        if (isinstance(controller_betas, (str, bytes)) or not isinstance(controller_betas, Sequence)
                or len(controller_betas) != 2):
            raise ValueError(f"controller_betas must be a pair of numbers in [0, 1) (Adam's betas), got {controller_betas!r}")
        for i, beta in enumerate(controller_betas):
            check_real(f"controller_betas[{i}]", beta, low=0, high=1, high_open=True)
        decisions = space.decisions()
        if s["skip_weight"] and not any(d.kind == ANCHOR for d in decisions):
            raise ValueError(f"skip_weight penalises skip connections; {type(space).__name__} has none, "
                             f"got skip_weight={s['skip_weight']!r}")
        self.space, self.settings = space, s
        self.controller = Controller(
            decisions, hidden_size=controller_hidden, num_layers=controller_layers,
            temperature=s["temperature"] or None, init_range=controller_init_range,
            tanh_constant=[self._tanh_constant(d.name) for d in decisions])
        self.policy = Reinforce(baseline_decay=baseline_decay, entropy_weight=0.0)  # the entropy goes into the reward
        self.search_steps = 0
        self.pending: List[Tuple[ActionSeq, float]] = []
        self.best_tokens: Optional[ActionSeq] = None
        self.best_score: Optional[float] = None
        self._derived_epoch: Optional[int] = None
        self._last_val: Any = None  # the validation minibatch derivations score on (remember_val)
        self._last_val_size = 0

    def _tanh_constant(self, decision: str) -> Optional[float]:
        """The decision's tanh constant: op decisions divide the space's by ``op_tanh_reduce`` (authors' code)."""
        c = self.settings["tanh_constant"]
        if not c:
            return None
        is_op = decision.rsplit(".", 1)[-1] in ("op", "op_x", "op_y")
        return c / self.settings["op_tanh_reduce"] if is_op else c

    def controller_optimizer(self) -> torch.optim.Optimizer:
        """The controller's Adam (learning rate, betas and eps from the hyperparameters)."""
        hp = self.hparams
        return torch.optim.Adam(self.controller.parameters(), lr=hp.controller_lr, betas=tuple(hp.controller_betas),
                                eps=hp.controller_eps)

    # ------------------------------------------------------------------ children

    def sample_children(self, n: int, *keys: int) -> Tuple[List[ActionSeq], Tensor]:
        """``n`` children drawn from the policy with a generator keyed by ``(seed, *keys)``: the same on every
        DDP rank and after a resume. Returns their tokens and sample entropies ``[n]`` (detached)."""
        with torch.no_grad():
            actions, _, entropy = self.controller.sample(n, generator=keyed_generator(self.hparams.seed, *keys))
        return actions, entropy

    def score(self, tokens: ActionSeq, batch: Any) -> Tensor:
        """A child's reward signal on one validation minibatch, averaged over DDP ranks."""
        raise NotImplementedError(f"{type(self).__name__} must define score()")

    def best_architecture_tokens(self) -> ActionSeq:
        """The tokens of :attr:`best_architecture`."""
        return self.best_tokens if self.best_tokens is not None else self.sample_children(1, 0, INITIAL)[0][0]

    @property
    def best_architecture(self) -> Any:
        """The best derived child so far (before the first derivation: a child drawn with key ``(seed, 0, 3)``)."""
        return self.space.decode(self.best_architecture_tokens())

    # ------------------------------------------------------------------ the controller phase

    def controller_sample(self, val: Any, optimizer: Any) -> Dict[str, Tensor]:
        """Phase 2 for this step: one child scored on ``val``; the controller is updated once ``num_aggregate``
        samples are pending. Returns the metrics to log."""
        actions, entropy = self.sample_children(1, self.search_steps, CONTROLLER)
        score = self.score(actions[0], val)
        self.pending.append((actions[0], float(score) + self.settings["entropy_weight"] * float(entropy[0])))
        metrics = {"controller/score": score.detach()}
        if len(self.pending) >= self.settings["num_aggregate"]:
            metrics.update(self.controller_update(optimizer))
        return metrics

    def controller_update(self, optimizer: Any) -> Dict[str, Tensor]:
        """One REINFORCE update from the pending samples (their mean gradient); the buffer is emptied."""
        actions = [a for a, _ in self.pending]
        rewards = [r for _, r in self.pending]
        penalty = None
        if self.settings["skip_weight"]:
            weight, target = self.settings["skip_weight"], self.hparams.skip_target

            def penalty(controller: Controller, acts: Sequence[ActionSeq]) -> Tensor:
                return weight * skip_penalty(controller, acts, target)

        optimizer.zero_grad()
        stats = self.policy.step(self.controller, optimizer, actions, rewards, penalty=penalty)
        self.pending = []
        out = {"controller/reward": stats["reward_mean"], "controller/baseline": stats["baseline"],
               "controller/entropy": stats["entropy"]}
        anchors = [i for i, d in enumerate(self.controller.decisions) if d.kind == ANCHOR]
        if anchors:
            bits = [b for a in actions for i in anchors for b in a[i]]
            out["controller/skip_rate"] = sum(bits) / max(1, len(bits))
        return {k: torch.tensor(float(v)) for k, v in out.items()}

    def log_search_metrics(self, metrics: Dict[str, Tensor], batch_size: int) -> None:
        """Log a step's metrics per step and per epoch; the progress bar shows the training loss and the reward."""
        shown = {k: v for k, v in metrics.items() if k in PROGRESS_BAR}
        self.log_dict(shown, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log_dict({k: v for k, v in metrics.items() if k not in shown}, on_step=True, on_epoch=True,
                      batch_size=batch_size)

    # ------------------------------------------------------------------ deriving

    def derive(self, batch: Any, num_samples: Optional[int] = None, key: int = 0) -> Tuple[ActionSeq, float]:
        """Sample ``num_samples`` children (default ``derive_samples``), score each on ``batch`` and return the
        best one's tokens and score (Sec. 2.2). Call on every rank under DDP (scores are all-reduced)."""
        n = check_int("num_samples", self.hparams.derive_samples if num_samples is None else num_samples, low=1)
        actions, _ = self.sample_children(n, key, DERIVE)
        scores = [float(self.score(a, batch)) for a in actions]
        best = max(range(n), key=scores.__getitem__)
        return actions[best], scores[best]

    def remember_val(self, batch: Any, size: int) -> None:
        """Keep ``batch`` (of ``size`` examples or tokens) for deriving unless it is smaller than the one kept:
        an epoch's last minibatch is often a remainder (15 of 719 digits), whose scores move in coarse steps."""
        if self._last_val is None or size >= self._last_val_size:
            self._last_val, self._last_val_size = batch, size

    def derive_for_epoch(self, batch: Any) -> None:
        """Derive on ``batch`` (keyed by the epoch) and log the best score: at the epoch's last training step, so
        epoch-end callbacks (GenotypeLogger), which Lightning runs before the module's epoch end, see this
        epoch's result; :meth:`derive_at_epoch_end` covers epochs that stop before their last batch."""
        self.best_tokens, self.best_score = self.derive(batch, key=self.current_epoch)
        self._derived_epoch = self.current_epoch
        self.log("search/derived_score", self.best_score, on_step=False, on_epoch=True)

    def derive_at_epoch_end(self, batch: Any) -> None:
        """Derive on the epoch's last validation batch unless this epoch has derived already."""
        if batch is not None and self._derived_epoch != self.current_epoch:
            self.derive_for_epoch(batch)

    def write_architecture(self, folder: Path) -> List[str]:
        """Write ``architecture.json`` (the space's JSON of :attr:`best_architecture`) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "architecture.json"
        path.write_text(json.dumps(self.space.to_json(self.best_architecture), indent=2) + "\n")
        return [path.name]

    def policy_state(self) -> Dict[str, Any]:
        """What a checkpoint needs beyond the parameters and optimisers."""
        return {"search_steps": self.search_steps, "pending": [list(p) for p in self.pending],
                "policy": self.policy.state_dict(), "best_tokens": self.best_tokens, "best_score": self.best_score}

    def load_policy_state(self, state: Mapping[str, Any]) -> None:
        self.search_steps = int(state["search_steps"])
        self.pending = [(a, float(r)) for a, r in state["pending"]]
        self.policy.load_state_dict(state["policy"])
        self.best_tokens, self.best_score = state["best_tokens"], state["best_score"]

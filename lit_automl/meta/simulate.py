"""Learning to simulate: a policy over simulator parameters psi, trained with REINFORCE on the accuracy
that a model trained on the simulated data reaches on real validation data.

Ruiz, Schulter & Chandraker, "Learning to Simulate", ICLR 2019, Sec. 3 (as we read it): a policy
``pi_omega(psi)`` proposes simulator parameters; for each of ``K`` sampled psi the simulator generates
a labelled training set, a main-task model is trained on it, and its accuracy on real validation data
is the reward ``R``; ``omega`` is updated with the score-function (REINFORCE) gradient
``1/K sum_k (R_k - b) grad log pi_omega(psi_k)`` with a moving-average baseline ``b``. Continuous
psi get a Gaussian policy (a categorical one serves discrete psi; both simulators here have only
continuous psi, so only the Gaussian is implemented). The stored copies of the paper we could
search showed only its abstract and introduction, which confirm the loop (a non-differentiable
simulator, the accuracy of a model trained on its data as the objective, RL on psi, convergence to
the optimal psi in controlled experiments); the Gaussian policy and the moving-average baseline are
from our reading of Sec. 3 and were not re-checked against the text.

Our choices (the paper does not fix them for this simulator): the policy is ``N(mu, diag(sigma^2))``
over ``u = logit((psi - low) / (high - low))`` per parameter, with a fixed ``sigma`` (``policy_std``,
learnable with ``learn_std``); the ``batch`` datasets of one update share their random numbers
(``common_noise``); simulator parameters not searched
are known and equal to the real mixture's (a controlled experiment: the best psi is the real one);
the REINFORCE update and its exponential-moving-average baseline are the project's one
implementation, :class:`lit_automl.nas.policy_gradient.Reinforce`, driven by Adam.

Two simulators share the loop (:class:`SimulatorSearch`): :class:`LearningToSimulate` searches a
class-conditional Gaussian mixture whose held-out samples are the real data, :class:`LearningToSimulateDigits` a
renderer of digits (:class:`~lit_automl.meta.digits_simulator.DigitsRenderer`: rotation, scale, translation,
pixel noise) whose real data is held-out digits; in both the best psi is known, the real data's own.

One training step is one policy update over ``batch`` sampled psi. All randomness (psi draws,
simulated data, model initialisation, the real validation set) comes from generators keyed by
``(seed, update, ...)`` (:func:`lit_automl.rng.keyed_generator`), so a resumed run repeats an
uninterrupted one. DDP is refused: an update is a few milliseconds of small models and the psi
batch is not worth splitting across processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.meta.gmm_simulator import GaussianMixtureSimulator, classifier_accuracy, train_classifiers
from lit_automl.nas.policy_gradient import Reinforce
from lit_automl.rng import keyed_generator

__all__ = ["ControllerPsiPolicy", "GaussianPsiPolicy", "LearningToSimulate", "LearningToSimulateDigits",
           "SimulatorSearch"]


class GaussianPsiPolicy(nn.Module):
    """Gaussian policy over the logits of psi rescaled to ``(0, 1)`` (Ruiz et al. 2019, Sec. 3; the squashing is ours).

    ``pi(u) = N(u; mean, diag(exp(log_std)^2))``; ``psi = low + sigmoid(u) (high - low)`` stays inside its range
    and, unlike clipping, never leaves the policy on a flat region without gradient. The log probability is of
    ``u`` (the action). Duck-types the part of
    :class:`~lit_automl.nas.controller.Controller` that :class:`~lit_automl.nas.policy_gradient.Reinforce`
    uses: ``log_prob(actions) -> (log_prob [m], entropy [m])`` and ``start`` (a parameter on its device).
    """

    def __init__(self, low: Sequence[float], high: Sequence[float], init: Optional[Sequence[float]] = None,
                 std: float = 0.3, learn_std: bool = False) -> None:
        super().__init__()
        low_t, high_t = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        if low_t.dim() != 1 or low_t.numel() < 1 or low_t.shape != high_t.shape:
            raise ValueError(f"low and high must be equally long, non-empty lists, got {low!r} and {high!r}")
        if not bool((low_t < high_t).all()):
            raise ValueError(f"every range must have low < high, got low={low!r}, high={high!r}")
        std = check_real("policy_std", std, low=0, low_open=True)
        check_bool("learn_std", learn_std)
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)
        share = torch.full_like(low_t, 0.5) if init is None else (torch.as_tensor(init, dtype=torch.float32) - low_t) / (
            high_t - low_t)
        if not bool(((share > 0) & (share < 1)).all()):
            raise ValueError(f"the initial psi must lie strictly inside (low, high), got {init!r} for low={low!r}, "
                             f"high={high!r}")
        self.mean = nn.Parameter(torch.logit(share))
        self.log_std = nn.Parameter(torch.full_like(low_t, float(torch.tensor(std).log())), requires_grad=learn_std)

    @property
    def start(self) -> Tensor:
        """The policy's mean (``PolicyGradient.step`` puts rewards on ``start.device``)."""
        return self.mean

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` actions ``u [n, d]`` drawn from the policy (no gradient)."""
        with torch.no_grad():
            noise = torch.randn(n, self.mean.numel(), generator=generator).to(self.mean)
            return self.mean + self.log_std.exp() * noise

    def log_prob(self, actions: Union[Tensor, Sequence[Sequence[float]]]) -> Tuple[Tensor, Tensor]:
        """``log pi(u_k)`` and the policy's entropy, each ``[m]`` (summed over the ``d`` parameters)."""
        u = torch.as_tensor(actions, dtype=self.mean.dtype, device=self.mean.device).reshape(-1, self.mean.numel())
        dist = torch.distributions.Normal(self.mean, self.log_std.exp())
        return dist.log_prob(u).sum(-1), dist.entropy().sum().expand(u.shape[0])

    def to_psi(self, u: Tensor) -> Tensor:
        """Simulator parameters ``[m, d]`` from actions ``u [m, d]``: ``low + sigmoid(u) (high - low)``."""
        return self.low + torch.sigmoid(u) * (self.high - self.low)

    def mean_psi(self) -> Tensor:
        """The policy mean in simulator units ``[d]``."""
        return self.to_psi(self.mean.detach())


class ControllerPsiPolicy(nn.Module):
    """The project's one controller (:class:`~lit_automl.nas.controller.Controller`) over psi on a grid: one
    categorical decision per parameter, ``bins`` values evenly spaced from ``low`` to ``high`` (Ruiz et al. 2019,
    Sec. 3 model discrete simulator parameters by categorical distributions; the grid over continuous ones is ours).

    Same interface as :class:`GaussianPsiPolicy`: ``start``, ``sample``, ``log_prob``, ``to_psi``, ``mean_psi``
    (here the mode: the controller's most probable value of each decision, taken greedily in its order).
    """

    def __init__(self, names: Sequence[str], low: Sequence[float], high: Sequence[float], bins: int = 11,
                 hidden_size: int = 32) -> None:
        super().__init__()
        from lit_automl.nas.controller import Controller
        from lit_automl.spaces.decisions import Decision

        self.bins = check_int("bins", bins, low=2, hint="grid points per simulator parameter")
        self.controller = Controller([Decision.categorical(n, bins) for n in names], hidden_size=hidden_size,
                                     num_layers=1)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    @property
    def start(self) -> Tensor:
        return self.controller.start

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> List[List[int]]:
        """``n`` grid-index sequences (no gradient)."""
        with torch.no_grad():
            return [list(a) for a in self.controller.sample(n, generator)[0]]

    def log_prob(self, actions: Sequence[Sequence[int]]) -> Tuple[Tensor, Tensor]:
        """``log pi(a_k)`` and the entropy, each ``[m]`` (the controller's)."""
        return self.controller.log_prob([list(a) for a in actions])

    def to_psi(self, actions: Sequence[Sequence[int]]) -> Tensor:
        """Simulator parameters ``[m, d]``: ``low + a (high - low) / (bins - 1)``."""
        a = torch.as_tensor([list(x) for x in actions], dtype=torch.float32, device=self.low.device)
        return self.low + a * (self.high - self.low) / (self.bins - 1)

    def mean_psi(self) -> Tensor:
        """The mode in simulator units ``[d]``: each decision's most probable grid value given the earlier ones."""
        chosen: List[int] = []
        with torch.no_grad():
            for i in range(len(self.controller.decisions)):
                logits = self.controller.step_logits([chosen + [0]])[i]  # decision i sees only earlier tokens
                chosen.append(int(logits.argmax(-1)))
        return self.to_psi([chosen])[0]


POLICIES = ("gaussian", "controller")

RangeSpec = Union[Sequence[float], Tuple[float, float]]


class SimulatorSearch(pl.LightningModule):
    """Learning to simulate over any simulator of the shared interface (Ruiz et al. 2019, Sec. 3; module docstring).

    A subclass builds the "real" simulator (``parameter_names``, ``get``, ``with_values``, ``sample``,
    ``num_classes``) and passes it here as ``real``; the searched parameters start from its values, the others stay
    at them; :meth:`validation_data` gives the real validation set the reward is measured on.

    Args (shared by every simulator):
        psi_ranges: the searched simulator parameters, ``name -> [low, high]``.
        psi_init: the policy's initial mean in simulator units (``name -> value``; default: range centres).
        batch: psi sampled per policy update (the paper's ``K``).
        samples: simulated training samples per psi.
        policy: ``"gaussian"`` (:class:`GaussianPsiPolicy`, the default) or ``"controller"``
            (:class:`ControllerPsiPolicy`: the project's LSTM controller over a grid of ``bins`` values per parameter,
            11 by default, ours; ``psi_init`` does not apply to it and is refused).
        policy_std, learn_std: the Gaussian policy's standard deviation in logit units (0.3, fixed; ours).
        lr: the policy's Adam learning rate (0.1, ours).
        baseline_decay: the EMA baseline's decay (0.9, ours).
        hidden, train_steps, train_lr: the main-task model (``hidden=0``: logistic regression), trained by
            ``train_steps`` full-batch Adam steps with ``train_lr`` (0, 50, 0.1: ours).
        common_noise: simulate the ``batch`` datasets of one update from the same random numbers (common random
            numbers, ours: the paper draws them independently, ``False``), so reward differences within an update
            come from psi rather than from sampling noise, a variance reduction of the REINFORCE estimate.
        updates_per_epoch: policy updates per Lightning epoch.
        seed: keys every random draw (module docstring).
    """

    def __init__(self, real: Any, psi_ranges: Mapping[str, RangeSpec], psi_init: Optional[Mapping[str, float]] = None,
                 batch: int = 8, samples: int = 200, policy_std: float = 0.3, learn_std: bool = False,
                 lr: float = 0.1, baseline_decay: float = 0.9, hidden: int = 0, train_steps: int = 50,
                 train_lr: float = 0.1, common_noise: bool = True, updates_per_epoch: int = 10,
                 seed: int = 0, policy: str = "gaussian", bins: int = 11) -> None:
        super().__init__()
        check_choice("policy", policy, POLICIES)
        if policy == "controller" and psi_init is not None:
            raise ValueError(f"psi_init={dict(psi_init)!r} applies to the Gaussian policy; the controller starts "
                             "near-uniform over its grid: drop psi_init or use policy='gaussian'")
        self.automatic_optimization = False
        self.real = real
        if not isinstance(psi_ranges, Mapping) or not psi_ranges:
            raise ValueError(f"psi_ranges must name at least one simulator parameter with its [low, high] range "
                             f"(valid names: {', '.join(self.real.parameter_names())}), got {psi_ranges!r}")
        self.psi_names = list(psi_ranges)
        low, high = [], []
        for name, bounds in psi_ranges.items():
            self.real.get(name)  # refuses an unknown name
            if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence) or len(bounds) != 2:
                raise ValueError(f"psi_ranges[{name!r}] must be a [low, high] pair, got {bounds!r}")
            lo = check_real(f"psi_ranges[{name!r}] low", bounds[0])
            hi = check_real(f"psi_ranges[{name!r}] high", bounds[1], low=lo, low_open=True,
                            hint="the low end of its range: an empty range searches nothing")
            self.check_psi_range(name, lo, hi, bounds)
            low.append(lo)
            high.append(hi)
        init = None
        if psi_init is not None:
            unknown = sorted(set(psi_init) - set(self.psi_names))
            if unknown:
                raise ValueError(f"psi_init names {unknown} that psi_ranges does not search ({self.psi_names})")
            init = [check_real(f"psi_init[{n!r}]", psi_init.get(n, (lo + hi) / 2), low=lo, high=hi)
                    for n, lo, hi in zip(self.psi_names, low, high)]
        check_int("batch", batch, low=1)
        check_bool("common_noise", common_noise)
        check_int("samples", samples, low=1)
        check_int("updates_per_epoch", updates_per_epoch, low=1)
        check_int("seed", seed, low=0)
        check_real("lr", lr, low=0, low_open=True)
        check_int("hidden", hidden, low=0)
        check_int("train_steps", train_steps, low=1)
        check_real("train_lr", train_lr, low=0, low_open=True)
        self.save_hyperparameters(ignore=["real"])
        if policy == "controller":
            self.policy: nn.Module = ControllerPsiPolicy(self.psi_names, low, high, bins)
        else:
            self.policy = GaussianPsiPolicy(low, high, init, policy_std, learn_std)
        self.policy_gradient = Reinforce(baseline_decay=baseline_decay)
        self.val_x, self.val_y = self.validation_data()
        self.reward_history: List[float] = []  # mean reward of every update so far (checkpointed)
        self.psi_history: List[List[float]] = []  # the policy mean (simulator units) after every update

    def check_psi_range(self, name: str, low: float, high: float, bounds: RangeSpec) -> None:
        """Refuse a range the simulator cannot take (a subclass names its parameters' limits)."""

    def validation_data(self) -> Tuple[Tensor, Tensor]:
        """The real validation set ``(x [n, D], y [n])`` the reward is measured on."""
        raise NotImplementedError(f"{type(self).__name__} must define validation_data()")

    # ------------------------------------------------------------------ the reward
    def rewards(self, psi: Tensor, update: int) -> Tensor:
        """Real-validation accuracy ``[m]`` of a main-task model trained on data simulated with each ``psi [m, d]``
        (Ruiz et al. 2019, Sec. 3: the reward)."""
        hp = self.hparams
        xs, ys = [], []
        for k, row in enumerate(psi.detach().double().cpu()):
            sim = self.real.with_values(dict(zip(self.psi_names, row.tolist())))
            x, y = sim.sample(hp.samples, keyed_generator(hp.seed, update, 1, 0 if hp.common_noise else k))
            xs.append(x)
            ys.append(y)
        params = train_classifiers(torch.stack(xs), torch.stack(ys), self.real.num_classes, hp.hidden,
                                   hp.train_steps, hp.train_lr, keyed_generator(hp.seed, update, 2))
        return classifier_accuracy(params, self.val_x, self.val_y)

    # ------------------------------------------------------------------ Lightning
    def setup(self, stage: str) -> None:
        """Refuse DDP (module docstring)."""
        if self.trainer.world_size > 1:
            raise ValueError(f"LearningToSimulate runs on one process (an update trains {self.hparams.batch} tiny "
                             f"models in milliseconds); got a trainer with world_size={self.trainer.world_size}")

    def train_dataloader(self) -> DataLoader:
        """``updates_per_epoch`` placeholder items: one policy update each (the data is simulated in the step)."""
        return DataLoader(range(self.hparams.updates_per_epoch), batch_size=None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on the policy (ours: the paper's optimiser for omega is not fixed here)."""
        return torch.optim.Adam([p for p in self.policy.parameters() if p.requires_grad], lr=self.hparams.lr)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One policy update: sample ``batch`` psi, score them, one REINFORCE step (Ruiz et al. 2019, Sec. 3)."""
        update = self.global_step  # one optimiser step per update
        u = self.policy.sample(self.hparams.batch, keyed_generator(self.hparams.seed, update, 0))  # [m, d]
        rewards = self.rewards(self.policy.to_psi(u), update)  # [m]
        stats = self.policy_gradient.step(self.policy, self.optimizers(), u, rewards)
        self.reward_history.append(float(rewards.mean()))
        mean_psi = self.policy.mean_psi()
        self.psi_history.append(mean_psi.tolist())
        self.log_dict({"train/reward_mean": float(rewards.mean()), "train/reward_max": float(rewards.max()),
                       "train/baseline": stats["baseline"], "train/loss": stats["loss"],
                       **{f"policy/{n}": float(v) for n, v in zip(self.psi_names, mean_psi)}},
                      prog_bar=False, batch_size=1)

    def best_psi(self) -> Dict[str, float]:
        """The policy mean in simulator units, by parameter name."""
        return dict(zip(self.psi_names, self.policy.mean_psi().tolist()))

    def on_train_end(self) -> None:
        """``best_psi.json`` (the policy mean, the real values, the rewards) and ``simulation_history.png`` (the
        mean reward and each searched parameter against policy updates, the real value dashed) in the run folder."""
        if not self.reward_history:
            return
        trainer = self.trainer
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"best_psi": self.best_psi(), "real_psi": {n: self.real.get(n) for n in self.psi_names},
                  "updates": len(self.reward_history), "first_reward_mean": self.reward_history[0],
                  "last_reward_mean": self.reward_history[-1]}
        (run_dir / "best_psi.json").write_text(json.dumps(record, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 1 + len(self.psi_names), figsize=(4 * (1 + len(self.psi_names)), 3.2),
                                 squeeze=False)
        updates = range(1, len(self.reward_history) + 1)
        axes[0][0].plot(updates, self.reward_history)
        axes[0][0].set(xlabel="policy update", ylabel="mean reward (real validation accuracy)")
        for k, (ax, name) in enumerate(zip(axes[0][1:], self.psi_names)):
            ax.plot(list(range(1, len(self.psi_history) + 1)), [row[k] for row in self.psi_history],
                    label="policy mode" if self.hparams.policy == "controller" else "policy mean")
            ax.axhline(self.real.get(name), color="C1", linestyle="--", label="real value")
            ax.set(xlabel="policy update", ylabel=name)
            ax.legend(loc="best")
        fig.tight_layout()
        fig.savefig(run_dir / "simulation_history.png", dpi=110)
        plt.close(fig)

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["learning_to_simulate"] = {"policy_gradient": self.policy_gradient.state_dict(),
                                              "reward_history": list(self.reward_history),
                                              "psi_history": [list(r) for r in self.psi_history]}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint["learning_to_simulate"]
        self.policy_gradient.load_state_dict(state["policy_gradient"])
        self.reward_history = list(state["reward_history"])
        self.psi_history = [list(r) for r in state["psi_history"]]


class LearningToSimulate(SimulatorSearch):
    """Learning to simulate on a class-conditional Gaussian mixture (module docstring; Ruiz et al. 2019, Sec. 3).

    Args:
        real_means, real_stds, real_priors: the "real" mixture
            (:class:`~lit_automl.meta.gmm_simulator.GaussianMixtureSimulator`); its held-out samples are the
            real validation data.
        psi_ranges: the searched simulator parameters, ``name -> [low, high]`` (names from
            ``GaussianMixtureSimulator.parameter_names()``: ``mean{c}_{d}``, ``std{c}_{d}``, ``prior{c}``); the
            others stay at the real mixture's values.
        val_samples: real validation samples (drawn once, from ``seed``).
        psi_init, batch, samples, policy, bins, policy_std, learn_std, lr, baseline_decay, hidden, train_steps,
            train_lr, common_noise, updates_per_epoch, seed: as :class:`SimulatorSearch`.
    """

    def __init__(self, real_means: List[List[float]], psi_ranges: Mapping[str, RangeSpec],
                 real_stds: Union[float, List[float], List[List[float]]] = 1.0, real_priors: Optional[List[float]] = None,
                 psi_init: Optional[Mapping[str, float]] = None, batch: int = 8, samples: int = 200,
                 val_samples: int = 1000, policy_std: float = 0.3, learn_std: bool = False, lr: float = 0.1,
                 baseline_decay: float = 0.9, hidden: int = 0, train_steps: int = 50, train_lr: float = 0.1,
                 common_noise: bool = True, updates_per_epoch: int = 10, seed: int = 0, policy: str = "gaussian",
                 bins: int = 11) -> None:
        self.val_samples = check_int("val_samples", val_samples, low=1)
        super().__init__(GaussianMixtureSimulator(real_means, real_stds, real_priors), psi_ranges, psi_init, batch,
                         samples, policy_std, learn_std, lr, baseline_decay, hidden, train_steps, train_lr,
                         common_noise, updates_per_epoch, seed, policy=policy, bins=bins)

    def check_psi_range(self, name: str, low: float, high: float, bounds: RangeSpec) -> None:
        if name.startswith("std") and low <= 0:
            raise ValueError(f"psi_ranges[{name!r}] must lie above 0 (a standard deviation), got {bounds!r}")
        if name.startswith("prior") and low < 0:
            raise ValueError(f"psi_ranges[{name!r}] must lie at or above 0 (a prior weight), got {bounds!r}")

    def validation_data(self) -> Tuple[Tensor, Tensor]:
        """``val_samples`` draws of the real mixture (from ``seed``)."""
        return self.real.sample(self.val_samples, keyed_generator(self.hparams.seed))


class LearningToSimulateDigits(SimulatorSearch):
    """Learning to simulate with a rendering simulator over digits (Ruiz et al. 2019, Sec. 3; module docstring).

    The simulator (:class:`~lit_automl.meta.digits_simulator.DigitsRenderer`) renders training digits -- the
    training split of scikit-learn's 8x8 digits -- under psi (rotation, scale, translation, pixel noise); the real
    validation data is the held-out split rendered under ``real_psi`` (default: the plain held-out digits, so the
    best psi is known: no warp, no noise). Parameters not searched stay at ``real_psi``'s values, as in the
    Gaussian-mixture case. The main-task model sees the 64 pixels (in [0, 1]) flattened.

    Args:
        psi_ranges: the searched renderer parameters, ``name -> [low, high]`` (names of
            :data:`~lit_automl.meta.digits_simulator.DIGITS_PARAMETERS`).
        real_psi: the real domain's parameters (``name -> value``; default: the identity, plain digits).
        test_fraction: the held-out share of the digits (0.2; the split is stratified and keyed by ``seed``).
        psi_init, batch, samples, policy, bins, policy_std, learn_std, lr, baseline_decay, hidden, train_steps,
            train_lr, common_noise, updates_per_epoch, seed: as :class:`SimulatorSearch`.
    """

    def __init__(self, psi_ranges: Mapping[str, RangeSpec], real_psi: Optional[Mapping[str, float]] = None,
                 psi_init: Optional[Mapping[str, float]] = None, batch: int = 8, samples: int = 200,
                 test_fraction: float = 0.2, policy_std: float = 0.3, learn_std: bool = False, lr: float = 0.1,
                 baseline_decay: float = 0.9, hidden: int = 0, train_steps: int = 50, train_lr: float = 0.1,
                 common_noise: bool = True, updates_per_epoch: int = 10, seed: int = 0, policy: str = "gaussian",
                 bins: int = 11) -> None:
        from lit_automl.datamodules import DigitsDataModule
        from lit_automl.meta.digits_simulator import DigitsRenderer

        data = DigitsDataModule(test_fraction=test_fraction, seed=check_int("seed", seed, low=0), normalize=False)
        data.setup("fit")
        (train_x, train_y), (self_val_x, self_val_y) = data.train_dataset.tensors, data.val_dataset.tensors
        real = DigitsRenderer(train_x, train_y, data.num_classes, **dict(real_psi or {}))
        self._held_out = (self_val_x, self_val_y)
        super().__init__(real, psi_ranges, psi_init, batch, samples, policy_std, learn_std, lr, baseline_decay,
                         hidden, train_steps, train_lr, common_noise, updates_per_epoch, seed, policy=policy, bins=bins)

    def check_psi_range(self, name: str, low: float, high: float, bounds: RangeSpec) -> None:
        if name == "scale" and low <= 0:
            raise ValueError(f"psi_ranges['scale'] must lie above 0 (a scale factor), got {bounds!r}")
        if name == "noise" and low < 0:
            raise ValueError(f"psi_ranges['noise'] must lie at or above 0 (a noise standard deviation), got {bounds!r}")

    def validation_data(self) -> Tuple[Tensor, Tensor]:
        """The held-out digits rendered under ``real_psi`` (its noise drawn from ``seed``)."""
        x, y = self._held_out
        return self.real.render(x, keyed_generator(self.hparams.seed)), y

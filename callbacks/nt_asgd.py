"""Non-monotonically triggered averaged SGD (NT-ASGD), the training of the DARTS and ENAS language models.

Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language Models", ICLR 2018, Sec. 3
(Algorithm 1): train with plain SGD; once the validation loss has not improved on the best of all
but the last ``nonmono`` checks, keep averaging the iterates; evaluate, and finish, with the
average. The trigger is the authors' (and DARTS's ``rnn/train.py``): at a check with loss ``v`` and
earlier losses ``L``, start when ``len(L) > nonmono`` and ``v > min(L[:-nonmono])``.

The authors' code switches the optimiser to ``torch.optim.ASGD(t0=0, lambd=0)``, whose steps are
plain SGD steps (``lambd=0``) and whose ``ax`` is the running mean of the iterates from the second
step after the switch on (torch's ``mu`` is 1 for the first two steps; we follow the code, which
the published perplexities come from, rather than Algorithm 1's mean from the switch). Here the
module's SGD keeps stepping and this callback keeps that mean, so any module and optimiser
configuration works unchanged. Validation runs on the averaged weights once averaging has begun
(the current weights before), and at the end of fit the average is written into the module.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from lit_automl._checks import check_choice, check_int

__all__ = ["NTASGD", "nonmonotone_trigger"]


def nonmonotone_trigger(value: float, history: Sequence[float], nonmono: int, mode: str = "min") -> Tuple[bool, str]:
    """``(start averaging?, reason)`` for a check with ``value`` after the earlier checks ``history``."""
    if len(history) <= nonmono:
        return False, ""
    before = history[: len(history) - nonmono]  # (history[:-0] would be empty)
    best = min(before) if mode == "min" else max(before)
    worse = value > best if mode == "min" else value < best
    if not worse:
        return False, ""
    return True, (f"{value:.6g} is no better than {best:.6g}, the best before the last {nonmono} checks: "
                  "averaging the weights from now on")


class NTASGD(Callback):
    """Start averaging the weights at the non-monotone trigger (module docstring).

    Args:
        monitor: the logged validation metric (the module must log it every validation).
        nonmono: checks without improvement that trigger averaging (5, the paper's and DARTS's value).
        mode: ``"min"`` for a loss (default), ``"max"`` for a score.
    """

    def __init__(self, monitor: str = "val/loss", nonmono: int = 5, mode: str = "min") -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be a logged metric's name, got {monitor!r}")
        self.monitor = monitor
        self.nonmono = check_int("nonmono", nonmono, low=0)
        self.mode = check_choice("mode", mode, ("min", "max"), sort=False)
        self.history: List[float] = []
        self.started_epoch: Optional[int] = None
        self.start_reason: Optional[str] = None
        self.averaged_steps = 0
        self._average: Optional[List[torch.Tensor]] = None  # running mean of each parameter
        self._swapped = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @property
    def averaging(self) -> bool:
        return self.started_epoch is not None

    # ------------------------------------------------------------------ averaging
    @staticmethod
    def _parameters(pl_module: pl.LightningModule) -> List[torch.Tensor]:
        return [p for p in pl_module.parameters() if p.requires_grad]

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.averaging:
            return
        params = self._parameters(pl_module)
        step = self.averaged_steps + 1  # steps since averaging began, this one included
        mu = 1.0 / max(1, step - 1)  # torch's ASGD(t0=0): 1, 1, 1/2, 1/3, ...
        if self._average is None or mu == 1.0:
            self._average = [p.detach().clone() for p in params]
        else:
            for avg, p in zip(self._average, params):
                avg.add_(p.detach() - avg, alpha=mu)
        self.averaged_steps = step

    @torch.no_grad()
    def _swap(self, pl_module: pl.LightningModule) -> None:
        for avg, p in zip(self._average or [], self._parameters(pl_module)):
            current = p.detach().clone()
            p.copy_(avg)
            avg.copy_(current)
        self._swapped = not self._swapped

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._average is not None and not self._swapped:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._swapped:
            self._swap(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The averaged weights become the module's (the papers' final model)."""
        if self._average is not None:
            with torch.no_grad():
                for avg, p in zip(self._average, self._parameters(pl_module)):
                    p.copy_(avg)
            rank_zero_info(f"NTASGD: the module now holds the average of its last {self.averaged_steps} iterates")

    # ------------------------------------------------------------------ trigger
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(f"NTASGD monitors {self.monitor!r}, which the module did not log; logged metrics: "
                           f"{sorted(trainer.callback_metrics)}")
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            raise ValueError(f"NTASGD: {self.monitor} is {value} at epoch {trainer.current_epoch}")
        start, reason = (False, "") if self.averaging else nonmonotone_trigger(value, self.history, self.nonmono,
                                                                                 self.mode)
        self.history.append(value)
        if not self.averaging and trainer.strategy.reduce_boolean_decision(start, all=False):
            self.started_epoch = trainer.current_epoch
            self.start_reason = reason or "another rank triggered averaging"
            rank_zero_info(f"NTASGD at epoch {trainer.current_epoch}: {self.monitor} {self.start_reason}")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {"history": list(self.history), "started_epoch": self.started_epoch, "start_reason": self.start_reason,
                "averaged_steps": self.averaged_steps,
                "average": None if self._average is None else [t.detach().cpu().clone() for t in self._average]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.started_epoch = state_dict["started_epoch"]
        self.start_reason = state_dict["start_reason"]
        self.averaged_steps = state_dict["averaged_steps"]
        self._average = state_dict["average"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Averages restored from a checkpoint move to the module's device."""
        if self._average is not None:
            self._average = [avg.to(p.device, p.dtype) for avg, p in zip(self._average, self._parameters(pl_module))]

"""The stop decision of a callback that may end a search, written once (DARTS+, DARTS-ES).

As Lightning's ``EarlyStopping`` does: the callback decides on its rank with a pure method
returning ``(decision, reason)``; the decision is reduced over ranks with
``trainer.strategy.reduce_boolean_decision(..., all=False)`` (any rank's stop stops every rank at
the same epoch) and sets ``trainer.should_stop``; the first stop's epoch and reason are kept, and
checkpointed with the callback's other state.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

__all__ = ["StoppingCallback"]


class StoppingCallback(Callback):
    """A callback that may stop the fit; ``stopped_epoch`` and ``stop_reason`` record the first stop."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped_epoch: Optional[int] = None
        self.stop_reason: Optional[str] = None

    def stop_if(self, trainer: "pl.Trainer", should_stop: bool, reason: str, other_rank: str) -> bool:
        """Reduce ``should_stop`` over ranks and stop the fit on any; True when this is the first stop.

        ``reason`` is this rank's (empty when it did not decide to stop); ``other_rank`` is recorded
        instead when only another rank did.
        """
        if not trainer.strategy.reduce_boolean_decision(should_stop, all=False):
            return False
        trainer.should_stop = True
        if self.stopped_epoch is not None:
            return False
        self.stopped_epoch = trainer.current_epoch
        self.stop_reason = reason or other_rank
        return True

    def state_dict(self) -> Dict[str, Any]:
        return {"stopped_epoch": self.stopped_epoch, "stop_reason": self.stop_reason}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.stopped_epoch = state_dict.get("stopped_epoch")
        self.stop_reason = state_dict.get("stop_reason")

"""Search methods: one LightningModule (or search loop) per method, plus retraining."""

from lit_automl.nas.controller import Controller, Decision, PPOTrainer, ReinforceTrainer
from lit_automl.nas.darts import DARTS
from lit_automl.nas.retrain import Retrain

__all__ = ["Controller", "DARTS", "Decision", "PPOTrainer", "ReinforceTrainer", "Retrain"]

"""Optuna outer loops: HPO of any LightningModule (``lit-automl hpo``) and a GP sampler."""

from lit_automl.hpo.gp import GPSampler

__all__ = ["GPSampler"]

"""Optuna outer loops: HPO of any LightningModule, and a GP sampler."""

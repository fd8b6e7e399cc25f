"""Optuna outer loops: HPO of any LightningModule (``lit-automl hpo``) and a GP sampler.

``GPSampler`` is imported on first use (it needs torch, scipy and Optuna), so the study machinery's
light modules, such as :mod:`lit_automl.hpo.registry` for ``lit-automl hpo --help``, import fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GPSampler"]


def __getattr__(name: str) -> Any:
    if name == "GPSampler":
        from lit_automl.hpo.gp.sampler import GPSampler

        return GPSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

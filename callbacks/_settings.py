"""Settings a callback reads from the module when its own argument is left at ``None``."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

__all__ = ["MissingSettingError", "module_hparam"]


class MissingSettingError(AttributeError, ValueError):
    """The module lacks a setting the callback reads (an ``AttributeError``; also a ``ValueError``:
    the callback's ``None`` argument cannot be resolved)."""


def module_hparam(pl_module: "pl.LightningModule", key: str, callback: str, argument: str) -> Any:
    """``pl_module.hparams[key]``, read because ``callback(argument=None)``; missing: an error naming both fixes."""
    hparams = getattr(pl_module, "hparams", {})
    if key not in hparams:
        raise MissingSettingError(
            f"{callback}({argument}=None) reads `{type(pl_module).__name__}.hparams.{key}`, which is not set; "
            f"pass {callback}({argument}=...) or save it in the module with save_hyperparameters()"
        )
    return hparams[key]

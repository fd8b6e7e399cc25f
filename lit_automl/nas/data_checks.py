"""Checks of what a method is handed against what it was built for, written once for the nas modules:
settings against the datamodule's declared attributes (at setup), and the count of non-finite values a
batch holds (read only once a loss is not finite, to say whether the data is at fault)."""

from __future__ import annotations

from typing import Any, Mapping, Tuple

import torch

__all__ = ["check_against_datamodule", "nonfinite_count"]


def nonfinite_count(x: torch.Tensor) -> int:
    """How many entries of ``x`` are NaN or infinite (0 for integer tensors)."""
    if not torch.is_floating_point(x):
        return 0
    return int((~torch.isfinite(x)).sum())


def check_against_datamodule(owner: str, datamodule: Any, settings: Mapping[str, Tuple[str, Any]]) -> None:
    """Refuse settings that differ from what ``datamodule`` declares: ``settings`` maps a datamodule attribute
    to ``(setting name, value)``; an attribute the datamodule lacks (or ``None``) is not compared."""
    for attribute, (setting, value) in settings.items():
        try:
            declared = getattr(datamodule, attribute, None)
        except AttributeError:  # a wrapper forwarding an attribute its inner datamodule lacks
            declared = None
        if declared is not None and declared != value:
            raise ValueError(f"{owner} was built with {setting}={value!r} but the datamodule "
                             f"{type(datamodule).__name__} has {attribute}={declared!r}: set {setting}={declared!r}")

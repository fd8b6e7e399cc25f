"""Checks of what a method is handed against what it was built for, written once for the nas modules:
settings against the datamodule's declared attributes (at setup). The count of non-finite values a
batch holds is :func:`lit_automl.nonfinite.nonfinite_count`, re-exported here for the nas modules."""

from __future__ import annotations

from typing import Any, Mapping, Tuple

from lit_automl.nonfinite import nonfinite_count

__all__ = ["check_against_datamodule", "nonfinite_count"]


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

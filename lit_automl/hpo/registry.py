"""Optuna samplers and pruners by name.

Samplers (:class:`optuna.samplers.BaseSampler`) propose a trial's parameters from the history of
the study; pruners (:class:`optuna.pruners.BasePruner`) decide from a trial's intermediate values
(reported every epoch) whether to stop it early. ``gp`` is this project's Gaussian-process
sampler, ``lit_automl.hpo.gp.sampler.GPSampler``; ``optuna-gp`` is Optuna's own ``GPSampler``, for
comparison. Each is imported only when asked for, so listing the names (``lit-automl hpo --help``)
imports no Optuna.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:  # Optuna is imported when a sampler or pruner is made, not with the registry
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler", "named_spec", "pruner_spec"]

SAMPLERS: Dict[str, str] = {
    "tpe": "optuna.samplers:TPESampler",
    "random": "optuna.samplers:RandomSampler",
    "gp": "lit_automl.hpo.gp.sampler:GPSampler",
    "optuna-gp": "optuna.samplers:GPSampler",
    "nsga2": "optuna.samplers:NSGAIISampler",
}
"""Sampler names and the ``module:Class`` each builds (imported when asked for)."""

PRUNERS: Dict[str, str] = {
    "median": "optuna.pruners:MedianPruner",
    "successive_halving": "optuna.pruners:SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners:HyperbandPruner",
    "percentile": "optuna.pruners:PercentilePruner",
    "threshold": "optuna.pruners:ThresholdPruner",
    "nop": "optuna.pruners:NopPruner",
}
"""Pruner names and the ``module:Class`` each builds (imported when asked for)."""


def _class_of(registry: Dict[str, str], name: str, what: str) -> type:
    """The class ``registry[name]`` names, imported now; a failed import says which to choose instead."""
    module, cls = registry[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as err:
        raise ImportError(
            f"{what} {name!r} is {module}.{cls}, which could not be imported ({err}); "
            f"choose another {what}: {sorted(n for n in registry if n != name)}"
        ) from err


def make_sampler(name: str, seed: Optional[int] = None, **kwargs: Any) -> "BaseSampler":
    """A sampler by name (``tpe``, ``random``, ``gp``, ``optuna-gp``, ``nsga2``), seeded with ``seed``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {sorted(SAMPLERS)}")
    cls = _class_of(SAMPLERS, name, "sampler")
    try:
        return cls(seed=seed, **kwargs)
    except TypeError as err:
        raise TypeError(f"sampler {name!r} rejected its options {kwargs}: {err}") from err


def named_spec(spec: Union[None, str, Mapping[str, Any]], registry: Mapping[str, str],
               what: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """A sampler or pruner given as ``'median'`` or ``{name: median, n_startup_trials: 5}``, as
    ``(name, kwargs)``; ``None`` stays ``None``; ``registry`` names the choices in the error."""
    if spec is None:
        return None, {}
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], kwargs
    raise ValueError(f"{what} must be a name or a mapping with 'name' (one of {sorted(registry)}), got {spec!r}")


def pruner_spec(spec: Union[None, str, Mapping[str, Any]]) -> Tuple[Optional[str], Dict[str, Any]]:
    """:func:`named_spec` of a pruner."""
    return named_spec(spec, PRUNERS, "pruner")


def make_pruner(name: str, **kwargs: Any) -> "BasePruner":
    """A pruner by name (``median``, ``successive_halving``, ``hyperband``, ``percentile``, ``threshold``, ``nop``)."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; valid pruners: {sorted(PRUNERS)}")
    cls = _class_of(PRUNERS, name, "pruner")
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"pruner {name!r} has no option(s) {unknown}; its options: {allowed}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # Optuna's own check of an option's value
        raise type(err)(f"pruner {name!r} rejected its options {kwargs}: {err}") from None

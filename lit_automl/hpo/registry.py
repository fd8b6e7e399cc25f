"""Optuna samplers and pruners by name.

Samplers (:class:`optuna.samplers.BaseSampler`) propose a trial's parameters from the history of
the study; pruners (:class:`optuna.pruners.BasePruner`) decide from a trial's intermediate values
(reported every epoch) whether to stop it early. ``gp`` is this project's Gaussian-process
sampler, ``lit_automl.hpo.gp.sampler.GPSampler``, imported only when asked for; ``optuna-gp`` is
Optuna's own ``GPSampler``, for comparison.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import optuna

__all__ = ["PRUNERS", "SAMPLERS", "make_pruner", "make_sampler", "pruner_spec"]


def _gp(seed: Optional[int], **kwargs: Any) -> optuna.samplers.BaseSampler:
    try:
        module = importlib.import_module("lit_automl.hpo.gp.sampler")
        cls = getattr(module, "GPSampler")
    except (ImportError, AttributeError) as err:
        raise ImportError(
            f"sampler 'gp' is lit_automl.hpo.gp.sampler.GPSampler, which could not be imported ({err}); "
            f"choose another sampler: {sorted(n for n in SAMPLERS if n != 'gp')}"
        ) from err
    return cls(seed=seed, **kwargs)


SAMPLERS: Dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed, **kw: optuna.samplers.TPESampler(seed=seed, **kw),
    "random": lambda seed, **kw: optuna.samplers.RandomSampler(seed=seed, **kw),
    "gp": _gp,
    "optuna-gp": lambda seed, **kw: optuna.samplers.GPSampler(seed=seed, **kw),
    "nsga2": lambda seed, **kw: optuna.samplers.NSGAIISampler(seed=seed, **kw),
}

PRUNERS: Dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "nop": optuna.pruners.NopPruner,
}


def make_sampler(name: str, seed: Optional[int] = None, **kwargs: Any) -> optuna.samplers.BaseSampler:
    """A sampler by name (``tpe``, ``random``, ``gp``, ``optuna-gp``, ``nsga2``), seeded with ``seed``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {sorted(SAMPLERS)}")
    try:
        return SAMPLERS[name](seed, **kwargs)
    except TypeError as err:
        raise TypeError(f"sampler {name!r} rejected its options {kwargs}: {err}") from err


def pruner_spec(spec: Union[None, str, Mapping[str, Any]]) -> Tuple[Optional[str], Dict[str, Any]]:
    """``'median'`` or ``{name: median, n_startup_trials: 5}`` as ``(name, kwargs)``; ``None`` stays ``None``."""
    if spec is None:
        return None, {}
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return spec["name"], kwargs
    raise ValueError(f"pruner must be a name or a mapping with 'name' (one of {sorted(PRUNERS)}), got {spec!r}")


def make_pruner(name: str, **kwargs: Any) -> optuna.pruners.BasePruner:
    """A pruner by name (``median``, ``successive_halving``, ``hyperband``, ``percentile``, ``threshold``, ``nop``)."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; valid pruners: {sorted(PRUNERS)}")
    cls = PRUNERS[name]
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"pruner {name!r} has no option(s) {unknown}; its options: {allowed}")
    return cls(**kwargs)

"""A search space declared in YAML, keyed by LightningCLI dotted config paths.

Each entry names one hyperparameter by the path it overrides in a LightningCLI config, e.g.
``model.init_args.lr``, and maps it to one of Optuna's distributions
(:class:`~optuna.distributions.FloatDistribution`, :class:`~optuna.distributions.IntDistribution`,
:class:`~optuna.distributions.CategoricalDistribution`)::

    search_space:
      model.init_args.lr:        {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      model.init_args.channels:  {type: int, low: 8, high: 32, step: 8}
      model.init_args.optimizer: {type: categorical, choices: [adam, sgd]}
      model.init_args.momentum:  {type: float, low: 0.5, high: 0.99,
                                  condition: {model.init_args.optimizer: sgd}}

A ``condition`` makes a parameter *conditional*: it is suggested only when every parameter it
names has taken the given value (or one of a list of values). Optuna's define-by-run API records
only the parameters a trial suggested, so an inactive parameter is absent from
``trial.params`` and from the trial's config (the class default applies). A list is shorthand for
a categorical entry: ``model.init_args.optimizer: [adam, sgd]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lit_automl._checks import check_bool

__all__ = ["Param", "SearchSpace", "TYPES", "describe_distribution", "read_yaml"]

TYPES = ("float", "int", "categorical")
_FIELDS = {
    "float": ("type", "low", "high", "log", "step", "condition"),
    "int": ("type", "low", "high", "log", "step", "condition"),
    "categorical": ("type", "choices", "condition"),
}
_CHOICE_TYPES = (type(None), bool, int, float, str)


def read_yaml(path: Union[str, Path]) -> Any:
    """A YAML file's content; a syntax error is one line naming the file, line and column."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{at}: {problem}") from None


def describe_distribution(distribution: BaseDistribution) -> str:
    """An Optuna distribution in the search space's words: ``float in [0.0001, 0.1] log``, ``categorical ['a', 'b']``."""
    if isinstance(distribution, CategoricalDistribution):
        return f"categorical {list(distribution.choices)!r}"
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        kind = "float" if isinstance(distribution, FloatDistribution) else "int"
        text = f"{kind} in [{distribution.low!r}, {distribution.high!r}]"
        if distribution.log:
            text += " log"
        if distribution.step is not None and not (kind == "int" and distribution.step == 1):
            text += f" step {distribution.step!r}"
        return text
    return repr(distribution)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a dotted config ``key``, an Optuna distribution and an optional condition.

    ``condition`` maps other parameters' keys to the tuple of values that activate this one.
    """

    key: str
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Tuple[Any, ...] = ()
    condition: Mapping[str, Tuple[Any, ...]] = field(default_factory=dict)

    @property
    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is suggested from."""
        if self.type == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return CategoricalDistribution(self.choices)

    def to_spec(self) -> Dict[str, Any]:
        """The YAML / JSON entry this parameter parses from (what a study stores as its declared space)."""
        if self.type == "categorical":
            spec: Dict[str, Any] = {"type": self.type, "choices": list(self.choices)}
        else:
            spec = {"type": self.type, "low": self.low, "high": self.high, "log": self.log}
            if self.step is not None:
                spec["step"] = self.step
        if self.condition:
            spec["condition"] = {key: list(values) for key, values in self.condition.items()}
        return spec

    def describe(self) -> str:
        """``float in [0.5, 0.9] if model.init_args.optimizer in ['sgd']``: distribution and condition."""
        text = describe_distribution(self.distribution)
        conditions = [f"{key} in {list(values)!r}" for key, values in self.condition.items()]
        return f"{text} if {' and '.join(conditions)}" if conditions else text

    def is_active(self, values: Mapping[str, Any]) -> bool:
        """True when every parameter named in ``condition`` is present in ``values`` with an allowed value."""
        return all(key in values and values[key] in allowed for key, allowed in self.condition.items())

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask ``trial`` for a value (``suggest_float`` / ``suggest_int`` / ``suggest_categorical``)."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))

    def check_value(self, value: Any, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` if ``value`` is outside this parameter's distribution."""
        if self.type == "categorical":
            if value not in self.choices:
                raise ValueError(f"{where}: {self.key}={value!r} is not one of its choices {list(self.choices)!r}")
            return
        if not _is_number(value) or (self.type == "int" and not float(value).is_integer()):
            raise ValueError(f"{where}: {self.key} must be {'an int' if self.type == 'int' else 'a number'}, got {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"{where}: {self.key}={value!r} is outside [{self.low}, {self.high}]")


class SearchSpace:
    """An ordered set of :class:`Param`; a parameter comes after every parameter its condition names.

    Args:
        params: the parameters; their order is kept where conditions allow.
    """

    def __init__(self, params: Iterable[Param]) -> None:
        params = list(params)
        if not params:
            raise ValueError("search_space is empty; declare at least one parameter (type: float, int or categorical)")
        self.params: Tuple[Param, ...] = tuple(_order(params))
        self._by_key = {p.key: p for p in self.params}

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], where: str = "search_space") -> "SearchSpace":
        """Parse ``{dotted.key: {type: ..., ...}}``; every error names the key and what is allowed."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{where} must be a mapping of dotted config keys to parameter specs, got {mapping!r}")
        params = [_parse_param(key, spec, where) for key, spec in mapping.items()]
        keys = {p.key for p in params}
        for p in params:
            for other, allowed in p.condition.items():
                if other not in keys:
                    raise ValueError(
                        f"{where}[{p.key!r}]: condition refers to unknown parameter {other!r}; "
                        f"known parameters: {sorted(keys)}"
                    )
                if other == p.key:
                    raise ValueError(f"{where}[{p.key!r}]: a condition cannot refer to the parameter itself")
                ref = next(q for q in params if q.key == other)
                for value in allowed:
                    try:
                        ref.check_value(value, f"{where}[{p.key!r}].condition")
                    except ValueError as err:
                        raise ValueError(str(err)) from None
        return cls(params)

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "SearchSpace":
        """Read a YAML file that is either the mapping itself or has a ``search_space:`` section."""
        data = read_yaml(path)
        if isinstance(data, Mapping) and "search_space" in data:
            data = data["search_space"]
        return cls.from_dict(data, where=f"{path}: search_space")

    # ----------------------------------------------------------------- use
    @property
    def keys(self) -> List[str]:
        return [p.key for p in self.params]

    def __getitem__(self, key: str) -> Param:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self.params)

    def to_spec(self) -> Dict[str, Dict[str, Any]]:
        """``{key: entry}``, the mapping :meth:`from_dict` parses back into this space."""
        return {p.key: p.to_spec() for p in self.params}

    def sample(self, trial: optuna.trial.BaseTrial) -> Dict[str, Any]:
        """Suggest every active parameter on ``trial`` (define-by-run); inactive ones are left out."""
        values: Dict[str, Any] = {}
        for p in self.params:
            if p.is_active(values):
                values[p.key] = p.suggest(trial)
        return values

    def check_values(self, values: Mapping[str, Any], where: str) -> Dict[str, Any]:
        """Validate a (partial) configuration, e.g. one to ``enqueue_trial``: known keys, in range, active."""
        if not isinstance(values, Mapping) or not values:
            raise ValueError(f"{where}: expected a non-empty mapping of search-space keys to values, got {values!r}")
        unknown = sorted(set(values) - set(self._by_key))
        if unknown:
            raise ValueError(f"{where}: unknown parameter(s) {unknown}; the search space has {self.keys}")
        for key, value in values.items():
            param = self._by_key[key]
            param.check_value(value, where)
            if not param.is_active(values):
                raise ValueError(
                    f"{where}: {key} is only active when {dict(param.condition)} (values given: {dict(values)})"
                )
        return dict(values)


# --------------------------------------------------------------------- parsing helpers
def _parse_param(key: Any, spec: Any, where: str) -> Param:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ValueError(f"{where}: keys must be dotted LightningCLI config paths like 'model.init_args.lr', got {key!r}")
    at = f"{where}[{key!r}]"
    if isinstance(spec, (list, tuple)):
        spec = {"type": "categorical", "choices": list(spec)}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{at}: expected a mapping with 'type' (one of {list(TYPES)}) or a list of choices, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"{at}: type must be one of {list(TYPES)}, got {kind!r}")
    unknown = sorted(set(spec) - set(_FIELDS[kind]))
    if unknown:
        raise ValueError(f"{at}: unknown field(s) {unknown} for type {kind}; allowed: {list(_FIELDS[kind])}")
    condition = _parse_condition(spec.get("condition"), at)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ValueError(f"{at}: choices must be a non-empty list, got {choices!r}")
        bad = [c for c in choices if not isinstance(c, _CHOICE_TYPES)]
        if bad:
            raise ValueError(f"{at}: choices must be null, bool, int, float or str (Optuna stores these), got {bad!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"{at}: choices must be distinct, got {list(choices)!r}")
        return Param(key, kind, choices=tuple(choices), condition=condition)

    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{at}: {name} must be a finite number, got {value!r}")
        if kind == "int" and not float(value).is_integer():
            raise ValueError(f"{at}: {name} must be an int for type int, got {value!r}")
    if not low < high:
        raise ValueError(f"{at}: low must be < high, got low={low!r}, high={high!r}")
    check_bool(f"{at}: log", log, allowed="true or false")
    if log and low <= 0:
        raise ValueError(f"{at}: log: true needs low > 0, got low={low!r}")
    if step is not None:
        if log:
            raise ValueError(f"{at}: step and log: true cannot be combined (Optuna's distributions allow one), got step={step!r}")
        if not _is_number(step) or step <= 0 or (kind == "int" and not float(step).is_integer()):
            raise ValueError(f"{at}: step must be a positive {'int' if kind == 'int' else 'number'}, got {step!r}")
    if kind == "int":
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    else:
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Param(key, kind, low=low, high=high, log=log, step=step, condition=condition)


def _parse_condition(condition: Any, at: str) -> Dict[str, Tuple[Any, ...]]:
    if condition is None:
        return {}
    if not isinstance(condition, Mapping) or not condition:
        raise ValueError(
            f"{at}: condition must be a non-empty mapping of parameter key to a value or a list of values, "
            f"got {condition!r}"
        )
    parsed = {}
    for other, allowed in condition.items():
        allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        if not allowed:
            raise ValueError(f"{at}: condition on {other!r} lists no values")
        parsed[str(other)] = allowed
    return parsed


def _order(params: Sequence[Param]) -> List[Param]:
    """Topological order (a parameter after those its condition names), stable otherwise."""
    ordered: List[Param] = []
    done: set = set()
    pending = list(params)
    while pending:
        ready = [p for p in pending if all(k in done for k in p.condition)]
        if not ready:
            cycle = sorted(p.key for p in pending)
            raise ValueError(f"search_space: conditions form a cycle among {cycle}; a condition must name an earlier decision")
        for p in ready:
            ordered.append(p)
            done.add(p.key)
        pending = [p for p in pending if p.key not in done]
    return ordered

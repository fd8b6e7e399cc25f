"""Conditional search spaces for the arc kernel (Swersky, Duvenaud, Snoek, Hutter & Osborne 2013,
arXiv 1409.4011): the modelled space, each trial's activity pattern, the parameters that decide
activity, and the search space of one pattern with the map of its rows into the full encoding.

Notation::

    U            the union space: name -> distribution of every parameter of the completed trials
                 (a name seen with two different distributions is left out, as Optuna's
                 intersection space leaves it out)
    P            an activity pattern: the names of U a trial has (its active parameters)
    p -> q       a decider rule: parent p (a discrete or categorical parameter) decides whether q
                 is active. Found from the completed trials (ours; the paper takes the relevance
                 functions delta_i as given): p is present in every trial that has q, and the
                 values p took with q active (on) and with q inactive (off) are both non-empty and
                 disjoint. ``depth`` in {1, 2, 3} with ``width_1`` only for depth >= 2 gives
                 depth -> width_1 with on = {2, 3}, off = {1} once those values have been seen.
    A_P(p)       values allowed to parent p in pattern P: the intersection over its rules p -> q of
                 on (q in P) or off (q not in P). Every trial of P satisfies its pattern's rules,
                 so A_P(p) holds at least the values seen with P.

A proposal for pattern P takes its deciders from A_P (a single value: held fixed; several: a
categorical over them), so the values returned agree with the pattern they were modelled under.
Limits (stated, not hidden): a decider is found only among discrete and categorical parameters (a
continuous threshold, or activity set by something outside the trial, is not), and a decider value
not yet seen in a completed trial is not proposed. Where the objective then asks for a parameter
outside the pattern, the sampler's independent sampler draws it with an UnmodelledParameterWarning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Sequence

import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial
from torch import Tensor

from lit_automl.hpo.gp.search_space import DTYPE, SearchSpace

__all__ = ["DeciderRule", "PatternSpace", "allowed_values", "decider_rules", "patterns", "union_search_space"]


def union_search_space(trials: Sequence[FrozenTrial]) -> Dict[str, BaseDistribution]:
    """U: every parameter of ``trials`` with its distribution, sorted by name; a parameter seen with
    two different distributions is left out (the independent sampler draws it)."""
    union: Dict[str, BaseDistribution] = {}
    conflicting = set()
    for trial in trials:
        for name, dist in trial.distributions.items():
            if union.setdefault(name, dist) != dist:
                conflicting.add(name)
    return {name: union[name] for name in sorted(union) if name not in conflicting}


def patterns(params: Sequence[Mapping[str, Any]]) -> List[FrozenSet[str]]:
    """The distinct activity patterns (names present) of ``params``, in order of first appearance."""
    seen: Dict[FrozenSet[str], None] = {}
    for p in params:
        seen.setdefault(frozenset(p), None)
    return list(seen)


def _is_discrete(dist: BaseDistribution) -> bool:
    return isinstance(dist, (CategoricalDistribution, IntDistribution)) or (
        isinstance(dist, FloatDistribution) and dist.step is not None)


@dataclass(frozen=True)
class DeciderRule:
    """``parent`` takes a value in ``on`` where ``child`` is active and in ``off`` where it is not."""

    parent: str
    child: str
    on: FrozenSet[Any]
    off: FrozenSet[Any]


def decider_rules(params: Sequence[Mapping[str, Any]], space: Mapping[str, BaseDistribution]) -> List[DeciderRule]:
    """The rules p -> q found in the completed trials' ``params`` (module docstring) over ``space``."""
    rules = []
    for child in space:
        with_child = [p for p in params if child in p]
        if not with_child or len(with_child) == len(params):
            continue  # never or always active: nothing decides it
        for parent, dist in space.items():
            if parent == child or not _is_discrete(dist) or any(parent not in p for p in with_child):
                continue
            on = frozenset(p[parent] for p in with_child)
            off = frozenset(p[parent] for p in params if child not in p and parent in p)
            if off and not on & off:
                rules.append(DeciderRule(parent, child, on, off))
    return rules


def allowed_values(rules: Sequence[DeciderRule], pattern: FrozenSet[str]) -> Dict[str, FrozenSet[Any]]:
    """A_P(p) for each parent p in ``pattern`` that has rules."""
    allowed: Dict[str, FrozenSet[Any]] = {}
    for rule in rules:
        if rule.parent in pattern:
            values = rule.on if rule.child in pattern else rule.off
            allowed[rule.parent] = allowed.get(rule.parent, values) & values
    return allowed


def _values(dist: BaseDistribution) -> List[Any]:
    """All values of a discrete or categorical distribution, in its own order."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = 1 if dist.step is None else dist.step  # log ints have step 1
    n = int(round((dist.high - dist.low) / step)) + 1
    return [dist.to_external_repr(dist.low + k * step) for k in range(n)]


def _index(dist: BaseDistribution, value: Any) -> int:
    """The position of ``value`` in :func:`_values` (numeric values by their step, so that float
    rounding does not matter)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.to_internal_repr(value)
    return int(round((value - dist.low) / (1 if dist.step is None else dist.step)))


class PatternSpace:
    """The parameters of one activity pattern as a :class:`SearchSpace` of their own, in which a
    decider takes only its allowed values (one: fixed, no column; several: a categorical over them,
    in the distribution's order), with the map of its rows into rows of the full space (NaN in the
    inactive columns; differentiable in the continuous columns, which are copied).

    Args:
        full: the encoding of the union space U.
        pattern: the active parameter names P (a subset of U).
        allowed: A_P, parent name -> allowed values (:func:`allowed_values`).
    """

    def __init__(self, full: SearchSpace, pattern: FrozenSet[str], allowed: Mapping[str, FrozenSet[Any]]) -> None:
        unknown = sorted(set(pattern) - set(full.distributions))
        if unknown:
            raise ValueError(f"pattern names {unknown} are not in the space {sorted(full.distributions)}")
        self.full, self.pattern = full, frozenset(pattern)
        restricted: Dict[str, List[Any]] = {}
        dists: Dict[str, BaseDistribution] = {}
        self._canonical: Dict[str, tuple] = {}  # restricted name -> (its distribution in U, all its values)
        for name, dist in full.distributions.items():
            if name not in self.pattern:
                continue
            dists[name] = dist
            if name in allowed:
                wanted = {_index(dist, v) for v in allowed[name]}
                values = [v for k, v in enumerate(_values(dist)) if k in wanted]
                if not values:
                    raise ValueError(f"no allowed value of {name!r} in {dist!r}: {sorted(allowed[name], key=repr)}")
                if len(values) < len(_values(dist)):
                    restricted[name] = values
                    dists[name] = CategoricalDistribution(values)
                    self._canonical[name] = (dist, _values(dist))
        self.space = SearchSpace(dists)
        self.base = torch.full((full.dim,), float("nan"), dtype=DTYPE)  # (D,) inactive columns stay NaN
        sub_columns: List[int] = []
        full_columns: List[int] = []
        self._tables: List[tuple] = []  # (sub columns, full columns, full encodings (K, width))
        for name in dists:
            cols = full.columns_of(name)
            if name not in restricted:
                sub_columns += self.space.columns_of(name)
                full_columns += cols
                continue
            table = torch.stack([full.encode_active({name: v})[cols] for v in restricted[name]])  # (K, width)
            if name in self.space.fixed:
                self.base[cols] = table[0]
            else:
                self._tables.append((torch.tensor(self.space.columns_of(name)), torch.tensor(cols), table))
        self._sub_index = torch.tensor(sub_columns, dtype=torch.int64)
        self._full_index = torch.tensor(full_columns, dtype=torch.int64)

    def to_full(self, x: Tensor) -> Tensor:
        """Rows (B, D) of the full space from rows x (B, D_P) of this pattern's space."""
        out = self.base.repeat(x.shape[0], 1).index_copy(1, self._full_index, x[:, self._sub_index])
        for sub_cols, full_cols, table in self._tables:
            out = out.index_copy(1, full_cols, table[x[:, sub_cols].argmax(dim=1)])
        return out

    def decode(self, row: Tensor) -> Dict[str, Any]:
        """The pattern's name -> value mapping from one row (D_P,) of its space."""
        return self.space.decode(row)

    def encode_many(self, params: Sequence[Mapping[str, Any]]) -> Tensor:
        """Rows (N, D_P) of this pattern's space for trials of the pattern (their other names ignored;
        a restricted decider's value matched by its position, so float rounding does not matter)."""
        def canonical(name: str, value: Any) -> Any:
            if name not in self._canonical:
                return value
            dist, values = self._canonical[name]
            return values[_index(dist, value)]

        return self.space.encode_many([{n: canonical(n, p[n]) for n in self.space.distributions} for p in params])

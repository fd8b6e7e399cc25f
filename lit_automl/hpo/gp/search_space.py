"""Optuna distributions <-> rows of the unit cube [0, 1]^D, the GP's input space (Snoek et al.
2012 scale inputs to the unit hypercube).

Notation::

    u in [0, 1]     one encoded coordinate;  D the number of encoded columns
    [a, b]          a parameter's range (low, high)

    float, linear            u = (x - a) / (b - a)
    float, log               u = (log x - log a) / (log b - log a)
    float with step q, int   relaxed to a continuous coordinate, value k-th of n = (b - a) / q + 1:
                             the n values own equal bins of [0, 1]; value k is encoded at its bin's
                             centre u_k = (k + 1/2) / n, and u decodes to the value whose bin holds it
    int, log (step 1)        u = (log x - log(a - 1/2)) / (log(b + 1/2) - log(a - 1/2));
                             u decodes to round(x) (value k owns [k - 1/2, k + 1/2) in log space)
    categorical, K choices   K one-hot columns; decoding takes the argmax
    a single value           no column; always that value

Continuous coordinates are the ones L-BFGS-B may move (:attr:`SearchSpace.continuous`); the
discrete ones (:attr:`SearchSpace.discrete`) and the one-hot groups (:attr:`SearchSpace.categorical`)
are searched by enumeration or local search (optimize.py).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor

__all__ = ["CategoricalCoordinate", "ContinuousCoordinate", "DiscreteCoordinate", "SearchSpace"]

DTYPE = torch.float64


class ContinuousCoordinate:
    """A float parameter without step: one column, linear or log."""

    def __init__(self, name: str, dist: FloatDistribution, column: int) -> None:
        self.name, self.dist, self.column = name, dist, column
        self.log = dist.log
        self.a = math.log(dist.low) if dist.log else dist.low
        self.b = math.log(dist.high) if dist.log else dist.high

    def encode(self, value: float) -> List[float]:
        x = math.log(value) if self.log else float(value)
        return [(x - self.a) / (self.b - self.a)]

    def decode(self, u: np.ndarray) -> float:
        x = self.a + float(np.clip(u[0], 0.0, 1.0)) * (self.b - self.a)
        value = math.exp(x) if self.log else x
        return float(min(max(value, self.dist.low), self.dist.high))


class DiscreteCoordinate:
    """An int parameter, or a float parameter with a step: one relaxed column whose values are
    the encodings of the parameter's n values."""

    def __init__(self, name: str, dist: FloatDistribution | IntDistribution, column: int) -> None:
        self.name, self.dist, self.column = name, dist, column
        self.is_int = isinstance(dist, IntDistribution)
        self.log = dist.log
        self.step = 1 if (self.log or dist.step is None) else dist.step
        self.n_values = int(round((dist.high - dist.low) / self.step)) + 1
        if self.log:
            self.a, self.b = math.log(dist.low - 0.5), math.log(dist.high + 0.5)

    def value_of(self, index: int) -> float | int:
        """The parameter value with index k (0..n-1)."""
        if self.is_int:
            return int(self.dist.low + index * self.step)
        return float(min(self.dist.low + index * self.step, self.dist.high))

    def index_of_value(self, value: float) -> int:
        return int(round((value - self.dist.low) / self.step))

    def encoded(self, index: Tensor) -> Tensor:
        """u_k for integer indices k (any shape)."""
        index = index.to(DTYPE)
        if self.log:
            return (torch.log(self.dist.low + index) - self.a) / (self.b - self.a)
        return (index + 0.5) / self.n_values

    def index(self, u: Tensor) -> Tensor:
        """The index whose bin holds u (any shape), as int64."""
        if self.log:
            x = torch.exp(self.a + u.clamp(0.0, 1.0) * (self.b - self.a))
            k = torch.round(x) - self.dist.low
        else:
            k = torch.floor(u * self.n_values)
        return k.clamp(0, self.n_values - 1).to(torch.int64)

    def encode(self, value: float) -> List[float]:
        return [float(self.encoded(torch.tensor(self.index_of_value(value))))]

    def decode(self, u: np.ndarray) -> float | int:
        return self.value_of(int(self.index(torch.tensor(float(u[0]), dtype=DTYPE))))


class CategoricalCoordinate:
    """A categorical parameter with K choices: K one-hot columns starting at ``column``."""

    def __init__(self, name: str, dist: CategoricalDistribution, column: int) -> None:
        self.name, self.dist, self.column = name, dist, column
        self.n_choices = len(dist.choices)

    @property
    def columns(self) -> List[int]:
        return list(range(self.column, self.column + self.n_choices))

    def encode(self, value: Any) -> List[float]:
        one_hot = [0.0] * self.n_choices
        one_hot[self.dist.to_internal_repr(value)] = 1.0
        return one_hot

    def decode(self, u: np.ndarray) -> Any:
        return self.dist.to_external_repr(int(np.argmax(u)))


Coordinate = ContinuousCoordinate | DiscreteCoordinate | CategoricalCoordinate


class SearchSpace:
    """The encoding of an Optuna search space (a name -> distribution mapping) into [0, 1]^D.

    Parameters with a single value take no column (:attr:`fixed`). Raises ``TypeError`` for a
    distribution type it does not know.
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution]) -> None:
        self.distributions = dict(distributions)
        self.fixed: Dict[str, Any] = {}
        self.coordinates: List[Coordinate] = []
        column = 0
        for name, dist in self.distributions.items():
            if dist.single():
                self.fixed[name] = dist.to_external_repr(dist.to_internal_repr(
                    dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low))
                continue
            if isinstance(dist, CategoricalDistribution):
                coord: Coordinate = CategoricalCoordinate(name, dist, column)
                column += coord.n_choices
            elif isinstance(dist, IntDistribution) or (isinstance(dist, FloatDistribution) and dist.step is not None):
                coord = DiscreteCoordinate(name, dist, column)
                column += 1
            elif isinstance(dist, FloatDistribution):
                coord = ContinuousCoordinate(name, dist, column)
                column += 1
            else:
                raise TypeError(f"parameter {name!r} has distribution {dist!r}; supported: FloatDistribution, "
                                "IntDistribution, CategoricalDistribution")
            self.coordinates.append(coord)
        self.dim = column
        self.continuous = [c for c in self.coordinates if isinstance(c, ContinuousCoordinate)]
        self.discrete = [c for c in self.coordinates if isinstance(c, DiscreteCoordinate)]
        self.categorical = [c for c in self.coordinates if isinstance(c, CategoricalCoordinate)]
        self.continuous_columns = [c.column for c in self.continuous]

    @property
    def n_params(self) -> int:
        """Number of parameters with a column (the dimension of the domain, one per parameter)."""
        return len(self.coordinates)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` gives every parameter of the space a value inside its distribution."""
        return all(name in params and _in(dist, params[name]) for name, dist in self.distributions.items())

    def encode(self, params: Mapping[str, Any]) -> Tensor:
        """One row (D,) for a name -> value mapping; ValueError names a missing or out-of-range value."""
        row: List[float] = []
        for coord in self.coordinates:
            if coord.name not in params:
                raise ValueError(f"parameter {coord.name!r} is missing from {dict(params)!r}")
            value = params[coord.name]
            if not _in(coord.dist, value):
                raise ValueError(f"parameter {coord.name!r}={value!r} is outside {coord.dist!r}")
            row.extend(coord.encode(value))
        return torch.tensor(row, dtype=DTYPE)

    def encode_active(self, params: Mapping[str, Any]) -> Tensor:
        """One row (D,) in which the columns of the parameters absent from ``params`` (inactive in
        that trial) hold NaN, the arc kernel's mark of inactivity (kernels.py); ValueError names an
        out-of-range value."""
        row = torch.full((self.dim,), math.nan, dtype=DTYPE)
        for coord in self.coordinates:
            if coord.name in params:
                value = params[coord.name]
                if not _in(coord.dist, value):
                    raise ValueError(f"parameter {coord.name!r}={value!r} is outside {coord.dist!r}")
                encoded = coord.encode(value)
                row[coord.column:coord.column + len(encoded)] = torch.tensor(encoded, dtype=DTYPE)
        return row

    def columns_of(self, name: str) -> List[int]:
        """The encoded columns of parameter ``name`` (none for a single-valued one)."""
        for coord in self.coordinates:
            if coord.name == name:
                return coord.columns if isinstance(coord, CategoricalCoordinate) else [coord.column]
        if name in self.fixed:
            return []
        raise ValueError(f"parameter {name!r} is not in the space {sorted(self.distributions)}")

    def encode_many(self, params: Sequence[Mapping[str, Any]]) -> Tensor:
        """Rows (N, D)."""
        if len(params) == 0:
            return torch.zeros(0, self.dim, dtype=DTYPE)
        return torch.stack([self.encode(p) for p in params])

    def decode(self, row: Tensor | np.ndarray) -> Dict[str, Any]:
        """A name -> value mapping (with the single-valued parameters) from one row (D,)."""
        u = np.asarray(row.detach().numpy() if isinstance(row, Tensor) else row, dtype=np.float64)
        if u.shape != (self.dim,):
            raise ValueError(f"row has shape {u.shape}, expected ({self.dim},)")
        params: Dict[str, Any] = {}
        for coord in self.coordinates:
            width = coord.n_choices if isinstance(coord, CategoricalCoordinate) else 1
            params[coord.name] = coord.decode(u[coord.column:coord.column + width])
        params.update(self.fixed)
        return {name: params[name] for name in self.distributions}

    def from_unit(self, u: Tensor) -> Tensor:
        """Rows (B, D) from points u (B, n_params) of the unit cube, one coordinate per parameter:
        continuous as is, discrete to the value whose bin holds u, categorical to choice floor(u K)."""
        x = torch.zeros(u.shape[0], self.dim, dtype=DTYPE)
        for j, coord in enumerate(self.coordinates):
            if isinstance(coord, ContinuousCoordinate):
                x[:, coord.column] = u[:, j]
            elif isinstance(coord, DiscreteCoordinate):
                x[:, coord.column] = coord.encoded(coord.index(u[:, j]))
            else:
                k = torch.floor(u[:, j] * coord.n_choices).clamp(0, coord.n_choices - 1).to(torch.int64)
                x[torch.arange(u.shape[0]), coord.column + k] = 1.0
        return x

    def project(self, x: Tensor) -> Tensor:
        """Snap rows (B, D) onto the space: discrete columns to their values, one-hot groups to the
        argmax, continuous columns clipped to [0, 1]."""
        x = x.clone()
        for coord in self.continuous:
            x[:, coord.column] = x[:, coord.column].clamp(0.0, 1.0)
        for coord in self.discrete:
            x[:, coord.column] = coord.encoded(coord.index(x[:, coord.column]))
        for coord in self.categorical:
            cols = coord.columns
            k = x[:, cols].argmax(dim=1)
            x[:, cols] = torch.nn.functional.one_hot(k, coord.n_choices).to(DTYPE)
        return x


def _in(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False

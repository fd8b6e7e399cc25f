"""Maximisation of an acquisition function over an encoded search space (search_space.py).

Notation::

    a(x)      the acquisition, x (B, D) -> (B,), differentiable in the continuous columns
    C         number of candidates screened;  R number of local starts

``lbfgsb`` (default):
    1. screening: C scrambled Sobol points (one coordinate per parameter, mapped into the space)
       plus optional extra candidates (e.g. the best observed inputs), a(x) in batches;
    2. the R best distinct candidates start a local search that alternates
       a. L-BFGS-B (scipy, gradients by autograd) over the continuous columns only, all R starts
          in one run on the sum of their (independent) values, the practice of BoTorch
          (Balandat et al. 2020);
       b. one pass over the discrete and categorical parameters, each in turn set to the best of
          its values (all values when it has at most ``max_enumerate``, else the values at
          index offsets +-1, +-2, +-4, ... from the current one); one-hot columns are never given
          to L-BFGS-B;
       until a pass changes nothing (at most ``max_rounds`` rounds).
``direct``:
    DIRECT (Jones, Perttunen & Stuckman 1993; scipy.optimize.direct) over the continuous and the
    relaxed discrete columns (snapped to their values inside the objective), with the categorical
    parameters held at the best screened candidate's; then step 2b from its result. This is the
    global optimiser Brochu et al. 2010 (Sec. 2.3.3) use.
The best point seen (screened candidates included) is returned.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from lit_automl.hpo.gp.search_space import DTYPE, CategoricalCoordinate, DiscreteCoordinate, SearchSpace

__all__ = ["OPTIMIZERS", "maximize_acquisition"]

AcquisitionFn = Callable[[Tensor], Tensor]


def _evaluate(acq: AcquisitionFn, x: Tensor, batch_size: int = 512) -> Tensor:
    """a(x) without gradients, in batches: x (B, D) -> (B,)."""
    with torch.no_grad():
        return torch.cat([acq(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _sobol(space: SearchSpace, n: int, rng: np.random.Generator) -> Tensor:
    engine = torch.quasirandom.SobolEngine(space.n_params, scramble=True, seed=int(rng.integers(2**31)))
    return space.from_unit(engine.draw(n, dtype=DTYPE))


def _lbfgsb_continuous(acq: AcquisitionFn, x: Tensor, values: Tensor, space: SearchSpace,
                       max_iter: int) -> Tuple[Tensor, Tensor]:
    """L-BFGS-B over the continuous columns of all rows of x (R, D) at once; rows that did not
    improve keep their old value."""
    cols = torch.tensor(space.continuous_columns, dtype=torch.int64)
    shape = (x.shape[0], cols.shape[0])
    scale = float(values.abs().mean().clamp_min(1e-300))  # objective of order 1 for the tolerances

    def objective(flat: np.ndarray) -> Tuple[float, np.ndarray]:
        z = torch.as_tensor(flat, dtype=DTYPE).view(shape).requires_grad_(True)
        total = -acq(x.index_copy(1, cols, z)).sum() / scale
        (grad,) = torch.autograd.grad(total, z)
        return total.item(), grad.numpy().ravel()

    import scipy.optimize  # here, not at module level: scipy is a heavy import

    result = scipy.optimize.minimize(objective, x[:, cols].numpy().ravel(), jac=True, method="L-BFGS-B",
                                     bounds=[(0.0, 1.0)] * (shape[0] * shape[1]),
                                     options={"maxiter": max_iter, "ftol": 1e-5})
    proposal = x.index_copy(1, cols, torch.as_tensor(result.x, dtype=DTYPE).view(shape).clamp(0.0, 1.0))
    new_values = _evaluate(acq, proposal)
    better = new_values > values
    return torch.where(better[:, None], proposal, x), torch.where(better, new_values, values)


def _options(coord: DiscreteCoordinate | CategoricalCoordinate, x: Tensor, max_enumerate: int) -> Tensor:
    """Candidate value indices per row, (R, K)."""
    if isinstance(coord, CategoricalCoordinate):
        return torch.arange(coord.n_choices).expand(x.shape[0], coord.n_choices)
    if coord.n_values <= max_enumerate:
        return torch.arange(coord.n_values).expand(x.shape[0], coord.n_values)
    current = coord.index(x[:, coord.column])  # (R,)
    powers = 2 ** torch.arange(int(np.ceil(np.log2(coord.n_values))))
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), powers, -powers])
    return (current[:, None] + offsets[None]).clamp(0, coord.n_values - 1)


def _set_value(coord: DiscreteCoordinate | CategoricalCoordinate, x: Tensor, index: Tensor) -> Tensor:
    """Rows x (R, K, D) with the parameter set to value index (R, K)."""
    x = x.clone()
    if isinstance(coord, CategoricalCoordinate):
        x[..., coord.columns] = torch.nn.functional.one_hot(index, coord.n_choices).to(DTYPE)
    else:
        x[..., coord.column] = coord.encoded(index)
    return x


def _discrete_pass(acq: AcquisitionFn, x: Tensor, values: Tensor, space: SearchSpace,
                   max_enumerate: int) -> Tuple[Tensor, Tensor, bool]:
    """Each discrete / categorical parameter in turn to its best value; returns whether any row changed."""
    changed = False
    for coord in [*space.discrete, *space.categorical]:
        index = _options(coord, x, max_enumerate)  # (R, K)
        trial = _set_value(coord, x[:, None, :].expand(-1, index.shape[1], -1), index)  # (R, K, D)
        trial_values = _evaluate(acq, trial.reshape(-1, x.shape[1])).view(index.shape)  # (R, K)
        best_values, best = trial_values.max(dim=1)
        better = best_values > values
        if bool(better.any()):
            changed = True
            x = torch.where(better[:, None], trial[torch.arange(x.shape[0]), best], x)
            values = torch.where(better, best_values, values)
    return x, values, changed


def _screen(acq: AcquisitionFn, space: SearchSpace, rng: np.random.Generator, n_candidates: int,
            extra: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    candidates = _sobol(space, n_candidates, rng)
    if extra is not None and extra.shape[0] > 0:
        candidates = torch.cat([candidates, space.project(extra.to(DTYPE))])
    return candidates, _evaluate(acq, candidates)


def _local_lbfgsb(acq: AcquisitionFn, space: SearchSpace, candidates: Tensor, values: Tensor, n_starts: int,
                  max_rounds: int, max_enumerate: int, max_iter: int, direct_maxfun: int) -> Tuple[Tensor, Tensor]:
    unique, inverse = torch.unique(candidates, dim=0, return_inverse=True)
    unique_values = torch.full((unique.shape[0],), -torch.inf, dtype=DTYPE).scatter_reduce(0, inverse, values, "amax")
    order = torch.argsort(unique_values, descending=True)[:n_starts]
    x, vals = unique[order], unique_values[order]
    continuous = (lambda x, v: _lbfgsb_continuous(acq, x, v, space, max_iter)) if space.continuous else None
    return _alternate(acq, x, vals, space, max_rounds, max_enumerate, continuous)


def _local_direct(acq: AcquisitionFn, space: SearchSpace, candidates: Tensor, values: Tensor, n_starts: int,
                  max_rounds: int, max_enumerate: int, max_iter: int, direct_maxfun: int) -> Tuple[Tensor, Tensor]:
    base = candidates[int(values.argmax())]
    cols = [*space.continuous_columns, *[c.column for c in space.discrete]]
    if cols:
        cols_t = torch.tensor(cols, dtype=torch.int64)

        def objective(z: np.ndarray) -> float:
            x = space.project(base.index_copy(0, cols_t, torch.as_tensor(z, dtype=DTYPE))[None])
            return -float(_evaluate(acq, x)[0])

        import scipy.optimize  # here, not at module level: scipy is a heavy import

        result = scipy.optimize.direct(objective, [(0.0, 1.0)] * len(cols), maxfun=direct_maxfun)
        base = space.project(base.index_copy(0, cols_t, torch.as_tensor(result.x, dtype=DTYPE))[None])[0]
    return _alternate(acq, base[None], _evaluate(acq, base[None]), space, max_rounds, max_enumerate, None)


def _alternate(acq: AcquisitionFn, x: Tensor, vals: Tensor, space: SearchSpace, max_rounds: int, max_enumerate: int,
               continuous: Optional[Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]]) -> Tuple[Tensor, Tensor]:
    """Alternate a continuous refinement (if any) with discrete / categorical passes until nothing changes."""
    for _ in range(max_rounds):
        if continuous is not None:
            x, vals = continuous(x, vals)
        if not space.discrete and not space.categorical:
            break
        x, vals, changed = _discrete_pass(acq, x, vals, space, max_enumerate)
        if not changed:
            break
    return x, vals


OPTIMIZERS: Dict[str, Callable[..., Tuple[Tensor, Tensor]]] = {
    "lbfgsb": _local_lbfgsb,
    "direct": _local_direct,
}


def maximize_acquisition(acq: AcquisitionFn, space: SearchSpace, rng: np.random.Generator, *,
                         method: str = "lbfgsb", n_candidates: int = 2048, n_starts: int = 10,
                         extra_candidates: Optional[Tensor] = None, max_rounds: int = 5, max_enumerate: int = 64,
                         max_iter: int = 200, direct_maxfun: int = 500) -> Tuple[Tensor, float]:
    """argmax_x a(x) over ``space``; returns the row (D,) and its value. See the module docstring."""
    if method not in OPTIMIZERS:
        raise ValueError(f"method={method!r} is not one of {sorted(OPTIMIZERS)}")
    if space.dim == 0:
        raise ValueError("the search space has no encoded columns (all parameters have a single value)")
    candidates, values = _screen(acq, space, rng, n_candidates, extra_candidates)
    x, vals = OPTIMIZERS[method](acq, space, candidates, values, n_starts, max_rounds, max_enumerate, max_iter,
                                 direct_maxfun)
    best = int(vals.argmax())
    if float(vals[best]) >= float(values.max()):
        return x[best], float(vals[best])
    i = int(values.argmax())
    return candidates[i], float(values[i])

"""Sinusoid regression tasks of Finn et al., "Model-Agnostic Meta-Learning", ICML 2017, Sec. 5.1.

A task is ``y = A sin(x - phase)`` with amplitude ``A ~ U[0.1, 5.0]`` and phase
``phase ~ U[0, pi]``; its ``K`` support and ``Q`` query inputs are drawn independently
from ``U[-5, 5]``. The paper uses K = 10 (also 5 and 20) and a meta-batch of 25 tasks;
the reference code draws the query set like the support set (``update_batch_size``
points each). Tasks are seeded exactly as the episodic image tasks
(:mod:`lit_automl.datamodules.episodes`): the sampler yields
``mix_seed(seed, split_code, epoch, i)`` and the dataset builds task ``i`` from it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from lit_automl._checks import ArgumentTypeError, check_int, check_real

from .episodes import SPLITS, Episode, check_split
from .tasks import TaskDataModule

__all__ = ["SinusoidDataModule", "SinusoidTaskDataset"]


def check_range(name: str, value: object) -> tuple[float, float]:
    """``value`` as a pair ``(low, high)`` of finite numbers with ``low < high``."""
    message = f"{name} must be a pair (low, high) of finite numbers with low < high, got {value!r}"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ArgumentTypeError(message)
    try:
        low, high = (check_real(f"{name}[{i}]", v) for i, v in enumerate(value))
    except ValueError:  # ArgumentTypeError included
        raise ValueError(message) from None
    if not low < high:
        raise ValueError(message)
    return low, high


class SinusoidTaskDataset(Dataset):
    """``dataset[seed]`` is the task built from a generator seeded with ``seed``.

    Draw order: ``u = torch.rand(2)`` gives ``amplitude = a0 + (a1 - a0) * u[0]`` and
    ``phase = p0 + (p1 - p0) * u[1]``; then ``K + Q`` inputs ``x``, the first ``K`` being the
    support set. Everything is float32 and ``y = amplitude * torch.sin(x - phase)``.
    Returns ``{"support": (x [K, 1], y [K, 1]), "query": (x [Q, 1], y [Q, 1])}``.
    """

    def __init__(
        self,
        k_shot: int,
        q_queries: int,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        input_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.k_shot = check_int("k_shot", k_shot, low=1)
        self.q_queries = check_int("q_queries", q_queries, low=1, hint="the query set of a task cannot be empty")
        self.amplitude_range = check_range("amplitude_range", amplitude_range)
        self.phase_range = check_range("phase_range", phase_range)
        self.input_range = check_range("input_range", input_range)

    @staticmethod
    def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u

    def _draw(self, seed: int, with_points: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        g = torch.Generator()
        g.manual_seed(check_int("task seed", seed, low=0))
        u = torch.rand(2, generator=g)
        amplitude = self._uniform(u[0], self.amplitude_range)
        phase = self._uniform(u[1], self.phase_range)
        x = None
        if with_points:
            x = self._uniform(torch.rand(self.k_shot + self.q_queries, 1, generator=g), self.input_range)
        return amplitude, phase, x

    def task_params(self, seed: int) -> tuple[float, float]:
        """``(amplitude, phase)`` of the task with this seed (float32 values as Python floats)."""
        amplitude, phase, _ = self._draw(seed, with_points=False)
        return float(amplitude), float(phase)

    def __getitem__(self, seed: int) -> Episode:
        amplitude, phase, x = self._draw(seed, with_points=True)
        assert x is not None
        y = amplitude * torch.sin(x - phase)
        k = self.k_shot
        return {"support": (x[:k], y[:k]), "query": (x[k:], y[k:])}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k_shot={self.k_shot}, q_queries={self.q_queries}, amplitude_range="
            f"{self.amplitude_range}, phase_range={self.phase_range}, input_range={self.input_range})"
        )


class SinusoidDataModule(TaskDataModule):
    """Sinusoid regression meta-batches (Finn et al., ICML 2017, Sec. 5.1).

    Batches: ``{"support": (x_s, y_s), "query": (x_q, y_q)}``, all float32, ``x_s``/``y_s``
    ``[T, K, 1]`` and ``x_q``/``y_q`` ``[T, Q, 1]`` with ``T = tasks_per_batch`` per process
    (under DDP the effective meta-batch is ``tasks_per_batch * world_size``).

    Defaults: ``k_shot=10`` (paper's main setting), ``q_queries=10`` (the reference code
    draws as many query as support points), ``tasks_per_batch=25`` (the paper's
    meta-batch) and the paper's ranges. Ours: ``train_batches=100`` meta-batches per
    training epoch per process, ``val_tasks=100`` and ``test_tasks=600`` fixed tasks (the
    same every epoch). ``n_way`` is None (regression). Use :meth:`task_parameters` for the
    amplitude/phase of every task of a split, in sampler order (before any DDP sharding).
    Other arguments: :class:`~lit_automl.datamodules.tasks.TaskDataModule`.
    """

    n_way = None
    input_dim = 1
    output_dim = 1

    def __init__(
        self,
        k_shot: int = 10,
        q_queries: int = 10,
        tasks_per_batch: int = 25,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        input_range: tuple[float, float] = (-5.0, 5.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(k_shot=k_shot, q_queries=q_queries, tasks_per_batch=tasks_per_batch, **kwargs)
        # checked once, by the task dataset that uses them
        self._tasks = SinusoidTaskDataset(self.k_shot, self.q_queries, amplitude_range, phase_range, input_range)
        self.amplitude_range = self._tasks.amplitude_range
        self.phase_range = self._tasks.phase_range
        self.input_range = self._tasks.input_range

    def _build_datasets(self) -> dict[str, Dataset]:
        return {s: self._tasks for s in SPLITS}  # the split enters through the sampler's seeds

    def task_parameters(self, split: str, epoch: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """``{"amplitude": [n], "phase": [n]}`` (float32) of the tasks of ``split`` in ``epoch``, in sampler order."""
        dataset = self.dataset(check_split(split))
        params = [dataset.task_params(s) for s in self.sampler(split, world_size).seeds(epoch)]  # type: ignore[attr-defined]
        amplitude, phase = zip(*params)
        return {"amplitude": torch.tensor(amplitude), "phase": torch.tensor(phase)}

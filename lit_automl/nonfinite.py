"""Counting NaN and infinite values, written once: the nas modules read it only once a loss is not
finite (to say whether the data is at fault); the HPO guard checks every batch of a trial with it."""

from __future__ import annotations

from typing import Any, Iterator, List, Mapping, Tuple

import torch

__all__ = ["check_finite_losses", "non_finite_tensors", "nonfinite_count"]


def nonfinite_count(x: torch.Tensor) -> int:
    """How many entries of ``x`` are NaN or infinite (0 for integer tensors)."""
    if not torch.is_floating_point(x):
        return 0
    return int((~torch.isfinite(x)).sum())


def check_finite_losses(what: str, losses: Mapping[str, torch.Tensor], fix: str) -> None:
    """Stop a run whose ``losses`` (scalars by name) are not all finite: ``FloatingPointError`` saying ``what``
    diverged, every loss's value, and ``fix`` (the settings to lower). One host sync when all are finite."""
    values = list(losses.values())
    if bool(torch.isfinite(torch.stack([v.detach().reshape(()) for v in values])).all()):
        return
    listed = ", ".join(f"{name} {float(v)}" for name, v in losses.items())
    raise FloatingPointError(f"{what}: {listed}; {fix}")


def _tensors(value: Any, path: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """Every floating-point tensor in a (nested) batch, with its path (``batch[0]``, ``batch['x']``)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{path}[{i}]")


def non_finite_tensors(batch: Any) -> List[str]:
    """``["batch[0]: 3 NaN, 0 inf of 2048 values", ...]`` for each tensor of ``batch`` that is not all finite."""
    found = list(_tensors(batch, "batch"))
    if not found or bool(torch.stack([torch.isfinite(t).all() for _, t in found]).all()):  # one sync
        return []
    out = []
    for path, tensor in found:
        nan = int(torch.isnan(tensor).sum())
        inf = int(torch.isinf(tensor).sum())
        if nan or inf:
            out.append(f"{path}: {nan} NaN, {inf} inf of {tensor.numel()} values")
    return out

"""Save and restore the torch / numpy / python RNG states with a checkpoint.

A search resumed from a checkpoint continues with the random streams it was stopped with, so it
ends where an uninterrupted run ends (data order comes from samplers seeded by (seed, epoch)).
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def collect_rng_states() -> Dict[str, Any]:
    """The current RNG states of torch (CPU and CUDA when present), numpy and python."""
    states: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _plain_numpy_state(),
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Restore states written by :func:`collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


def _plain_numpy_state() -> list:
    # Plain python values, so the checkpoint loads with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]

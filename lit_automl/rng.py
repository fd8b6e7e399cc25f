"""Save and restore the torch / numpy / python RNG states with a checkpoint.

A search resumed from a checkpoint continues with the random streams it was stopped with, so it
ends where an uninterrupted run ends (data order comes from samplers seeded by (seed, epoch)).
"""

from __future__ import annotations

import random
from typing import Any, Dict, MutableMapping

import numpy as np
import torch


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU generator that is a pure function of integer ``keys`` (e.g. ``(seed, step)``).

    Methods draw per-step architecture noise or masks from it, so every DDP rank and a resumed run
    draw the same values; distinct key tuples give independent streams (numpy ``SeedSequence``).
    """
    # The key count leads: numpy pads entropy with zeros, so (3, 7) and (3, 7, 0) would collide.
    state = np.random.SeedSequence((len(keys), *(int(k) for k in keys))).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


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


CHECKPOINT_KEY = "rng_states"


def save_rng_states(checkpoint: MutableMapping[str, Any]) -> None:
    """Store the RNG states in a Lightning checkpoint dict (call from ``on_save_checkpoint``)."""
    checkpoint[CHECKPOINT_KEY] = collect_rng_states()


def load_rng_states(checkpoint: MutableMapping[str, Any], who: str) -> None:
    """Restore the RNG states of a checkpoint (call from ``on_load_checkpoint``); warns when it has none."""
    if CHECKPOINT_KEY in checkpoint:
        restore_rng_states(checkpoint[CHECKPOINT_KEY])
    else:
        from pytorch_lightning.utilities import rank_zero_warn

        rank_zero_warn(f"{who}: the checkpoint has no RNG states, so the resumed run will not repeat an uninterrupted one")

"""Published cells by name, and turning a user's genotype spec (name, file, text, JSON) into a Genotype.

The cells are re-typed from the code released with each paper (CIFAR-10 searches); the DARTS-family
ones print exactly as released (:class:`~lit_automl.spaces.genotype.Genotype`'s text form).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from lit_automl._checks import lookup
from lit_automl.spaces.genotype import Genotype

__all__ = ["GenotypeSpec", "PUBLISHED_GENOTYPES", "get_genotype", "resolve_genotype"]

# Re-typed from the cells released with each paper (CIFAR-10 searches).
_DARTS_V1 = Genotype(  # DARTS, first-order search (Liu et al., ICLR 2019)
    normal=[
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)
_DARTS_V2 = Genotype(  # DARTS, second-order search (Liu et al., ICLR 2019)
    normal=[
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("skip_connect", 0), ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)
_PDARTS = Genotype(  # P-DARTS (Chen et al., ICCV 2019)
    normal=[
        ("skip_connect", 0), ("dil_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 0), ("dil_conv_5x5", 4),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("avg_pool_3x3", 0), ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
        ("max_pool_3x3", 0), ("dil_conv_3x3", 1),
        ("dil_conv_3x3", 1), ("dil_conv_5x5", 3),
    ],
    reduce_concat=[2, 3, 4, 5],
)
_PC_DARTS = Genotype(  # PC-DARTS, CIFAR-10 search (Xu et al., ICLR 2020)
    normal=[
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
        ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("sep_conv_5x5", 1), ("max_pool_3x3", 0),
        ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 3),
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
    ],
    reduce_concat=[2, 3, 4, 5],
)

# NASNet-A (Zoph et al., CVPR 2018, Fig. 4), re-typed from the cells of the TensorFlow reference
# (tensorflow/models, research/slim/nets/nasnet/nasnet_utils.py).  The reference numbers its
# hidden states 0 = c_{k-1}, 1 = c_{k-2}; here they are swapped to this module's convention.
# "identity" is ``skip_connect``; every node adds.  The concat lists are the reference's
# unused-state flags: c_{k-2} and all five blocks in the normal cell (6 states, hence the 768 =
# 6 x 128 penultimate filters of NASNet-A 6@768), blocks 1-4 in the reduction cell.  Note that
# these flags are hand-set in the reference and keep two states that a block does read (c_{k-2}
# in the normal cell, block 1 in the reduction cell); the literal rule of Sec. 3 ("all of the
# unused hidden states ... are concatenated") would give [2..6] and [4, 5, 6], which is what
# DARTS' re-typed "NASNet" genotype uses.
_NASNET_A = Genotype(
    normal=[
        ("sep_conv_5x5", 1), ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1), ("skip_connect", 0),
        ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
    ],
    normal_concat=[0, 2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1), ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
        ("skip_connect", 3), ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2), ("max_pool_3x3", 1),
    ],
    reduce_concat=[3, 4, 5, 6],
)

PUBLISHED_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": _DARTS_V1,
    "DARTS_V2": _DARTS_V2,
    "DARTS": _DARTS_V2,  # the cell reported as "DARTS" in the paper is the second-order one
    "PDARTS": _PDARTS,
    "PC_DARTS": _PC_DARTS,
    "NASNet_A": _NASNET_A,
}
"""Published genotypes by name; ``"DARTS"`` is an alias of ``"DARTS_V2"``; ``"NASNet_A"`` has 5 nodes per cell."""


def _name_key(name: str) -> str:
    return name.strip().upper().replace("-", "_").replace(" ", "_")


def get_genotype(name: str) -> Genotype:
    """A published genotype by name (case and ``-``/``_`` insensitive); an unknown name lists the valid ones
    (:class:`~lit_automl._checks.UnknownNameError`, a ``KeyError`` and a ``ValueError``)."""
    if isinstance(name, str) and name not in PUBLISHED_GENOTYPES:
        name = {_name_key(k): k for k in PUBLISHED_GENOTYPES}.get(_name_key(name), name)
    return lookup(PUBLISHED_GENOTYPES, name, "published genotype")


GenotypeSpec = Union[str, os.PathLike, Genotype]
"""What :func:`resolve_genotype` accepts."""


def resolve_genotype(spec: GenotypeSpec) -> Genotype:
    """Turn a user-facing spec into a :class:`Genotype`.

    Accepted, in this order: a ``Genotype`` (returned as is); a published name
    (see :data:`PUBLISHED_GENOTYPES`); a path to an existing file (``Genotype.load``);
    text starting with ``Genotype(`` (``Genotype.parse``); a JSON object string
    (``Genotype.from_json``).  Anything else raises ValueError listing these forms.
    """
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, os.PathLike):
        return Genotype.load(spec)
    if not isinstance(spec, str):
        raise ValueError(f"genotype spec must be a str, a path or a Genotype, got {type(spec).__name__}: {spec!r}")
    text = spec.strip()
    if _name_key(text) in {_name_key(k) for k in PUBLISHED_GENOTYPES}:
        return get_genotype(text)
    if text and "\n" not in text and len(text) < 4096:
        try:
            is_file = Path(text).expanduser().is_file()
        except OSError:
            is_file = False
        if is_file:
            return Genotype.load(Path(text).expanduser())
    if text.startswith("Genotype("):
        return Genotype.parse(text)
    if text.startswith("{"):
        return Genotype.from_json(text)
    raise ValueError(
        f"cannot resolve genotype spec {spec!r}: expected a published name {sorted(PUBLISHED_GENOTYPES)}, "
        "a path to an existing genotype file (.json or text form), text starting with 'Genotype(', "
        "or a JSON object string"
    )


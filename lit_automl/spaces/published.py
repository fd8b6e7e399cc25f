"""Published cells by name, and turning a user's genotype spec (name, file, text, JSON) into a genotype.

The cells are re-typed from the code released with each paper: CNN cells (CIFAR-10 searches) in
:data:`PUBLISHED_GENOTYPES`, recurrent cells (Penn Treebank searches) in
:data:`PUBLISHED_RECURRENT_GENOTYPES`, two registries so that a lookup returns the type it is asked
for. The DARTS-family ones print exactly as released.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, TypeVar, Union

from lit_automl._checks import lookup
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype

__all__ = ["GenotypeSpec", "PUBLISHED_GENOTYPES", "PUBLISHED_RECURRENT_GENOTYPES", "RecurrentGenotypeSpec",
           "get_genotype", "get_recurrent_genotype", "resolve_genotype", "resolve_recurrent_genotype"]

G = TypeVar("G", Genotype, RecurrentGenotype)

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

# ENAS micro, CIFAR-10 (Pham et al., ICML 2018, Sec. 2.3 / Fig. 7): the authors' final arc
# (``scripts/cifar10_micro_final.sh``), decoded by lit_automl.spaces.enas_micro; "identity" is
# ``skip_connect``, every node adds, and each cell outputs its loose ends.
_ENAS = Genotype(
    normal=[
        ("avg_pool_3x3", 0), ("sep_conv_3x3", 0),
        ("skip_connect", 0), ("sep_conv_5x5", 0),
        ("skip_connect", 0), ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 1), ("sep_conv_5x5", 0),
        ("avg_pool_3x3", 0), ("sep_conv_5x5", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0), ("avg_pool_3x3", 0),
        ("sep_conv_5x5", 1), ("sep_conv_5x5", 3),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("max_pool_3x3", 0), ("sep_conv_5x5", 1),
    ],
    reduce_concat=[2, 4, 5, 6],
)

# AmoebaNet-A (Real et al., AAAI 2019, Fig. 4), as the DARTS-family repositories list it (quark0/darts
# cnn/genotypes.py "AmoebaNet"): five-node cells whose concat lists skip the nodes read by others.
_AMOEBANET_A = Genotype(
    normal=[
        ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1), ("skip_connect", 1),
        ("skip_connect", 0), ("avg_pool_3x3", 1),
    ],
    normal_concat=[4, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5),
    ],
    reduce_concat=[3, 4, 6],
)

# PNASNet-5 (Liu et al., ECCV 2018, Fig. 1 / Table 1), as the DARTS-family repositories list it (their
# ``PNASNet``, from the authors' released TF ``pnasnet.py``): one cell used as normal and reduction cell,
# its output concatenating all five blocks. Table 1's 3.2M parameters are at N=3, F=48 in PNASNet's layout
# of 3N cells with two of them strided, i.e. NetworkCIFAR(C=48, layers=9).
_PNASNET_5_CELL = [
    ("sep_conv_5x5", 0), ("max_pool_3x3", 0),
    ("sep_conv_7x7", 1), ("max_pool_3x3", 1),
    ("sep_conv_5x5", 1), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 4), ("max_pool_3x3", 1),
    ("sep_conv_3x3", 0), ("skip_connect", 1),
]
_PNASNET_5 = Genotype(normal=_PNASNET_5_CELL, normal_concat=[2, 3, 4, 5, 6],
                      reduce=_PNASNET_5_CELL, reduce_concat=[2, 3, 4, 5, 6])

PUBLISHED_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": _DARTS_V1,
    "DARTS_V2": _DARTS_V2,
    "DARTS": _DARTS_V2,  # the cell reported as "DARTS" in the paper is the second-order one
    "PDARTS": _PDARTS,
    "PC_DARTS": _PC_DARTS,
    "NASNet_A": _NASNET_A,
    "ENAS": _ENAS,
    "AmoebaNet_A": _AMOEBANET_A,
    "PNASNet_5": _PNASNET_5,
}
"""Published genotypes by name; ``"DARTS"`` is an alias of ``"DARTS_V2"``; ``"NASNet_A"``, ``"ENAS"`` and
``"AmoebaNet_A"`` have 5 nodes per cell, as has ``"PNASNet_5"``."""


# DARTS recurrent cells (Liu et al., ICLR 2019, Sec. 3.1.2, Penn Treebank), re-typed from the authors'
# rnn/genotypes.py: 8 nodes, the output averages all of them.
_DARTS_V1_RNN = RecurrentGenotype(  # first-order search
    recurrent=[("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3),
               ("relu", 4), ("identity", 1), ("relu", 5), ("relu", 1)],
    concat=range(1, 9),
)
_DARTS_V2_RNN = RecurrentGenotype(  # second-order search
    recurrent=[("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1),
               ("tanh", 2), ("sigmoid", 5), ("tanh", 3), ("relu", 5)],
    concat=range(1, 9),
)

PUBLISHED_RECURRENT_GENOTYPES: dict[str, RecurrentGenotype] = {
    "DARTS_V1": _DARTS_V1_RNN,
    "DARTS_V2": _DARTS_V2_RNN,
    "DARTS": _DARTS_V2_RNN,  # the authors' DARTS = DARTS_V2, as for the CNN cells
}
"""Published recurrent genotypes by name; ``"DARTS"`` is an alias of ``"DARTS_V2"``."""


def _name_key(name: str) -> str:
    return name.strip().upper().replace("-", "_").replace(" ", "_")


def _get(registry: Mapping[str, G], name: str, what: str) -> G:
    """``registry[name]``, case and ``-``/``_`` insensitive; a miss lists the valid names."""
    if isinstance(name, str) and name not in registry:
        name = {_name_key(k): k for k in registry}.get(_name_key(name), name)
    return lookup(registry, name, what)


def get_genotype(name: str) -> Genotype:
    """A published CNN genotype by name (case and ``-``/``_`` insensitive); an unknown name lists the valid ones
    (:class:`~lit_automl._checks.UnknownNameError`, a ``KeyError`` and a ``ValueError``)."""
    return _get(PUBLISHED_GENOTYPES, name, "published genotype")


def get_recurrent_genotype(name: str) -> RecurrentGenotype:
    """A published recurrent genotype by name, as :func:`get_genotype`; a miss lists the recurrent names."""
    return _get(PUBLISHED_RECURRENT_GENOTYPES, name, "published recurrent genotype")


GenotypeSpec = Union[str, os.PathLike, Genotype]
"""What :func:`resolve_genotype` accepts."""
RecurrentGenotypeSpec = Union[str, os.PathLike, RecurrentGenotype]
"""What :func:`resolve_recurrent_genotype` accepts."""


def _resolve(spec: Union[str, os.PathLike, G], cls: type, registry: Mapping[str, G], what: str) -> G:
    """The shared resolution of :func:`resolve_genotype` and :func:`resolve_recurrent_genotype`."""
    if isinstance(spec, cls):
        return spec
    if isinstance(spec, os.PathLike):
        return cls.load(spec)
    if not isinstance(spec, str):
        raise ValueError(f"{what} spec must be a str, a path or a {cls.__name__}, got {type(spec).__name__}: {spec!r}")
    text = spec.strip()
    if _name_key(text) in {_name_key(k) for k in registry}:
        return _get(registry, text, f"published {what}")
    if text and "\n" not in text and len(text) < 4096:
        try:
            is_file = Path(text).expanduser().is_file()
        except OSError:
            is_file = False
        if is_file:
            return cls.load(Path(text).expanduser())
    if text.startswith("Genotype("):
        return cls.parse(text)
    if text.startswith("{"):
        return cls.from_json(text)
    raise ValueError(
        f"cannot resolve {what} spec {spec!r}: expected a published name {sorted(registry)}, "
        f"a path to an existing {what} file (.json or text form), text starting with 'Genotype(', "
        "or a JSON object string"
    )


def resolve_genotype(spec: GenotypeSpec) -> Genotype:
    """Turn a user-facing spec into a :class:`Genotype`.

    Accepted, in this order: a ``Genotype`` (returned as is); a published name
    (see :data:`PUBLISHED_GENOTYPES`); a path to an existing file (``Genotype.load``);
    text starting with ``Genotype(`` (``Genotype.parse``); a JSON object string
    (``Genotype.from_json``).  Anything else raises ValueError listing these forms.
    """
    return _resolve(spec, Genotype, PUBLISHED_GENOTYPES, "genotype")


def resolve_recurrent_genotype(spec: RecurrentGenotypeSpec) -> RecurrentGenotype:
    """Turn a user-facing spec into a :class:`~lit_automl.spaces.recurrent_genotype.RecurrentGenotype`: the
    forms of :func:`resolve_genotype`, names from :data:`PUBLISHED_RECURRENT_GENOTYPES`."""
    return _resolve(spec, RecurrentGenotype, PUBLISHED_RECURRENT_GENOTYPES, "recurrent genotype")

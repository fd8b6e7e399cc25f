"""The names of the candidate operations, apart from their implementations (standard library only).

The genotype reader (:mod:`lit_automl.spaces.genotype`, pure Python) checks op names here without
importing torch. :mod:`lit_automl.spaces.ops` builds every name listed here, and
:func:`~lit_automl.spaces.ops.register_op` adds the name of each new operation to
:data:`OP_NAMES`, so a name is known here exactly when it can be built.
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence, Set, Tuple, Type, Union

from lit_automl._checks import UnknownNameError, lookup

__all__ = ["DARTS_OPS", "DARTS_RNN_OPS", "ENAS_OPS", "NASNET_OPS", "OP_NAMES", "OP_SETS", "RECURRENT_OP_NAMES", "RECURRENT_OP_SETS",
           "check_op_names", "get_recurrent_op_set",
           "resolve_recurrent_primitives"]

DARTS_OPS: Tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The 8 operations of the DARTS search space (Liu et al., ICLR 2019, Sec. 3.1.1)."""

NASNET_OPS: Tuple[str, ...] = (
    "skip_connect",  # identity
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dilated_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
"""The 13 operations of the NASNet search space, in the order of Zoph et al. (2018), Sec. 3."""

ENAS_OPS: Tuple[str, ...] = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",  # identity (a factorized reduction on stride-2 edges)
)
"""The 5 operations of the ENAS micro search space (Pham et al., ICML 2018, Sec. 2.3), in the order of
the authors' op tokens (``micro_child.py``: 0/1 = two stacked separable convs 3x3/5x5, as DARTS's
``SepConv``; 2 = avg pool, 3 = max pool, 4 = identity)."""

OP_SETS: Dict[str, Tuple[str, ...]] = {"darts": DARTS_OPS, "nasnet": NASNET_OPS, "enas": ENAS_OPS}
"""Named candidate lists (the order is the column order of architecture parameters)."""

OP_NAMES: Set[str] = {name for names in OP_SETS.values() for name in names}
"""Every operation name that can be built: the op sets' and those ``register_op`` added."""


def check_op_names(where: str, names: Iterable[str], error: Type[UnknownNameError] = UnknownNameError) -> None:
    """Every name in ``names`` is a known operation; else ``error`` (an :class:`UnknownNameError`, a
    ``KeyError`` and a ``ValueError``) naming the unknown ones and listing the valid names."""
    unknown = sorted({n for n in names if n not in OP_NAMES}, key=str)
    if unknown:
        raise error(f"{where} uses unregistered operation(s) {unknown}; valid names are: "
                    f"{', '.join(sorted(OP_NAMES))} (lit_automl.spaces.register_op adds one)")


# --------------------------------------------------------------------------- recurrent cells
# Kept apart from the CNN names above: a recurrent node applies an activation to a gated state,
# a CNN edge an operation on feature maps, so neither genotype may name the other's operations.
DARTS_RNN_OPS: Tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")
"""The 5 activations of the DARTS recurrent search space (Liu et al., ICLR 2019, Sec. 3.1.2), in the
column order of the authors' ``rnn/genotypes.py`` ``PRIMITIVES``; ``none`` is the zero op of the
search cell only, never part of a derived cell."""

RECURRENT_OP_SETS: Dict[str, Tuple[str, ...]] = {"darts_rnn": DARTS_RNN_OPS}
"""Named candidate lists of recurrent cells (the column order of their architecture parameters)."""

RECURRENT_OP_NAMES: Set[str] = {name for names in RECURRENT_OP_SETS.values() for name in names}
"""Every activation name a recurrent cell may use (``none`` only while searching)."""


def get_recurrent_op_set(name: str) -> Tuple[str, ...]:
    """The recurrent candidate list registered as ``name`` in :data:`RECURRENT_OP_SETS` (e.g. ``"darts_rnn"``);
    an unknown name raises :class:`UnknownNameError` listing the valid ones."""
    return lookup(RECURRENT_OP_SETS, name, "recurrent op set")


def resolve_recurrent_primitives(primitives: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """The column names of a recurrent cell's architecture weights: a recurrent op-set name
    (:func:`get_recurrent_op_set`) or a non-empty list of unique names from :data:`RECURRENT_OP_NAMES`."""
    if isinstance(primitives, str):
        return get_recurrent_op_set(primitives)
    names = tuple(primitives)
    valid = sorted(RECURRENT_OP_NAMES)
    unknown = sorted(str(n) for n in set(names) - RECURRENT_OP_NAMES)
    if unknown:
        raise ValueError(f"primitives: unknown recurrent op(s) {', '.join(map(repr, unknown))}; valid names are: "
                         f"{valid}; got {list(names)!r} (unknown: {unknown})")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"primitives must be a recurrent op-set name or a non-empty list of unique recurrent op names "
                         f"from {valid}, got {list(names)!r}")
    return names


# --------------------------------------------------------------------------- NAS-Bench-201
NB201_OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The 5 operations of the NAS-Bench-201 cell (Dong & Yang, ICLR 2020, Sec. 2.1), in the benchmark's order
(``NAS_BENCH_201`` in the authors' ``cell_operations.py``): the token order of every edge."""

OP_SETS["nb201"] = NB201_OPS
OP_NAMES.update(NB201_OPS)
__all__ += ["NB201_OPS"]

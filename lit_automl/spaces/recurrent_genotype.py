"""The genotype of a DARTS recurrent cell (Liu et al., ICLR 2019, Sec. 3.1.2; Penn Treebank search).

A recurrent cell starts from one state ``s0`` (computed from the input ``x_t`` and the previous hidden
state ``h_{t-1}``) and has ``steps`` intermediate nodes; node ``i`` (0-based) holds state ``i + 1``
and reads one earlier state, its *predecessor* in ``0..i``, through one activation. The cell's
output ``h_t`` is the average of the states listed in ``concat`` (DARTS: every node, ``range(1, 9)``).

``recurrent`` holds one ``(activation, predecessor)`` pair per node, in node order; activations are
the recurrent op names of :mod:`lit_automl.spaces.op_names` (never ``none``, the search cell's zero
op, and never a CNN operation). The type accepts any cell of at least 1 node: a 1-node cell is a
well-defined discrete cell. The search cell's own minimum (2 nodes, so that a node has a choice of
predecessor) is checked where that cell is built, not here.

The text form is the one the authors release, ``Genotype(recurrent=[('sigmoid', 0), ...],
concat=range(1, 9))``, read without evaluation by :func:`~lit_automl.spaces.genotype_text.parse_call`;
JSON and files work as for the CNN :class:`~lit_automl.spaces.genotype.Genotype` (pure Python).
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping

from lit_automl._checks import UnknownNameError
from lit_automl.spaces.genotype import Genotype, UnknownOperationError
from lit_automl.spaces.genotype_text import InvalidPart, parse_call
from lit_automl.spaces.op_names import RECURRENT_OP_NAMES

__all__ = ["RecurrentGenotype", "RecurrentNode", "UnknownActivationError", "num_recurrent_edges",
           "recurrent_edge_slices"]

RecurrentNode = tuple[str, int]
"""One node: ``(activation, predecessor)``."""

_FIELDS = ("recurrent", "concat")
_EXPECTED = "a recurrent genotype in the text form Genotype(recurrent=[...], concat=...) or its JSON"


class UnknownActivationError(InvalidPart, UnknownNameError):
    """An activation that is not a recurrent op name: an :class:`InvalidPart` (the text reader quotes
    it) and an :class:`~lit_automl._checks.UnknownNameError` listing the valid names."""


def num_recurrent_edges(steps: int) -> int:
    """Edges of a recurrent search cell: node ``i`` reads states ``0..i``, so ``steps * (steps + 1) / 2``."""
    return steps * (steps + 1) // 2


def recurrent_edge_slices(steps: int) -> List[slice]:
    """Per node, the rows of its incoming edges in the node-major edge order (node ``i``: ``i + 1`` rows,
    from states ``0..i``)."""
    return [slice(i * (i + 1) // 2, i * (i + 1) // 2 + i + 1) for i in range(steps)]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _activations() -> str:
    return ", ".join(sorted(RECURRENT_OP_NAMES - {"none"}))


def _normalise_node(node: Any, pos: int) -> RecurrentNode:
    """Node ``pos`` as a validated ``(activation, predecessor)`` pair."""
    where = f"recurrent node {pos} (state {pos + 1})"
    if not _is_seq(node) or len(node) != 2:
        raise InvalidPart(f"{where}: a node must be a pair (activation, predecessor), got {node!r}", "recurrent",
                          (pos,), f"{where}: a node must be a pair (activation, predecessor)")
    activation, predecessor = node
    if not isinstance(activation, str):
        raise InvalidPart(f"{where}: activation must be one of {_activations()}, got {activation!r}", "recurrent",
                          (pos, 0), f"{where}: activation must be a string literal, one of {_activations()}")
    if activation == "none":
        raise InvalidPart(f"{where}: activation 'none' is the search cell's zero op and cannot be part of a "
                          f"derived cell; allowed: {_activations()}", "recurrent", (pos, 0))
    if activation not in RECURRENT_OP_NAMES:
        raise UnknownActivationError(f"{where}: unknown activation {activation!r}; valid names are: {_activations()}",
                                     "recurrent", (pos, 0), error=UnknownOperationError)
    earlier = "" if pos == 0 else ", 1 = node 0" if pos == 1 else f", 1..{pos} = nodes 0..{pos - 1}"
    allowed = f"allowed 0..{pos} (0 = s0, the cell's initial state{earlier})"
    if not _is_int(predecessor):
        raise InvalidPart(f"{where}: predecessor must be an int, got {predecessor!r}; {allowed}", "recurrent",
                          (pos, 1), f"{where}: predecessor must be an int literal; {allowed}")
    if int(predecessor) not in range(pos + 1):
        raise InvalidPart(f"{where}: predecessor {predecessor!r} out of range; {allowed}", "recurrent", (pos, 1))
    return (activation, int(predecessor))


def _normalise_recurrent(recurrent: Any) -> tuple[RecurrentNode, ...]:
    if not _is_seq(recurrent):
        raise InvalidPart(f"recurrent must be a list of (activation, predecessor) pairs, got "
                          f"{type(recurrent).__name__}: {recurrent!r}", "recurrent", (),
                          "recurrent must be a list of (activation, predecessor) pairs")
    if len(recurrent) == 0:
        raise InvalidPart("recurrent has no nodes; a recurrent cell needs at least 1", "recurrent")
    return tuple(_normalise_node(node, pos) for pos, node in enumerate(recurrent))


def _normalise_concat(concat: Any, steps: int) -> tuple[int, ...]:
    allowed = f"allowed 0..{steps} (0 = s0, i = the state of node i - 1; DARTS averages 1..{steps})"
    if isinstance(concat, range):
        concat = list(concat)
    if not _is_seq(concat):
        raise InvalidPart(f"concat must be a list of ints or range(start, stop) (the states averaged into the "
                          f"output), got {type(concat).__name__}: {concat!r}", "concat", (),
                          "concat must be a list of ints or range(start, stop)")
    if len(concat) == 0:
        raise InvalidPart(f"concat is empty; list at least one state, {allowed}", "concat")
    for k, value in enumerate(concat):
        if not _is_int(value):
            raise InvalidPart(f"concat: state index must be an int, got {value!r} ({type(value).__name__}); {allowed}",
                              "concat", (k,), "concat: state index must be an int literal")
        if int(value) not in range(steps + 1):
            raise InvalidPart(f"concat: state index {value!r} out of range; {allowed}", "concat", (k,))
    values = tuple(int(v) for v in concat)
    if len(set(values)) != len(values):
        raise InvalidPart(f"concat {list(values)} repeats a state index", "concat")
    return values


def _concat_text(concat: tuple[int, ...]) -> str:
    """``range(a, b)`` for a run of consecutive states (as the authors print it), a list otherwise."""
    if len(concat) >= 2 and concat == tuple(range(concat[0], concat[-1] + 1)):
        return f"range({concat[0]}, {concat[-1] + 1})"
    return "[" + ", ".join(str(v) for v in concat) + "]"


@dataclass(frozen=True, repr=False)
class RecurrentGenotype:
    """A derived DARTS recurrent cell: ``recurrent`` (one ``(activation, predecessor)`` per node) and
    ``concat`` (the states averaged into the output).

    Lists, tuples and ``range`` are accepted and stored as tuples, so equality and hashing do not
    depend on the input form. Invalid content raises ``ValueError`` naming the bad value and what is
    allowed; an unknown activation raises :class:`UnknownActivationError` listing the valid ones.
    """

    recurrent: tuple[RecurrentNode, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "recurrent", _normalise_recurrent(self.recurrent))
        object.__setattr__(self, "concat", _normalise_concat(self.concat, len(self.recurrent)))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes (DARTS: 8)."""
        return len(self.recurrent)

    def op_names(self) -> set[str]:
        """Every activation the cell uses."""
        return {activation for activation, _ in self.recurrent}

    # ----------------------------------------------------------------- text form
    def __str__(self) -> str:
        """The authors' text form, e.g. ``Genotype(recurrent=[('sigmoid', 0), ...], concat=range(1, 9))``."""
        nodes = ", ".join(f"({activation!r}, {predecessor})" for activation, predecessor in self.recurrent)
        return f"Genotype(recurrent=[{nodes}], concat={_concat_text(self.concat)})"

    __repr__ = __str__

    @classmethod
    def parse(cls, text: str) -> "RecurrentGenotype":
        """Read the text form (nothing is evaluated: :func:`~lit_automl.spaces.genotype_text.parse_call`).

        Any problem raises :class:`~lit_automl.spaces.genotype_text.GenotypeParseError` quoting the
        offending text; an unknown activation :class:`~lit_automl.spaces.genotype.UnknownOperationError`.
        """
        return parse_call(text, "Genotype", _FIELDS, (), cls)

    # ----------------------------------------------------------------- JSON / files
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"recurrent": [[activation, predecessor], ...], "concat": [...]}``."""
        return {"recurrent": [[a, p] for a, p in self.recurrent], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RecurrentGenotype":
        """Inverse of :meth:`to_dict`; wrong keys (e.g. a CNN genotype's) raise ``ValueError`` naming them."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a recurrent genotype dict must be a mapping, got {type(data).__name__}: {data!r}")
        missing = [k for k in _FIELDS if k not in data]
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if missing or unknown:
            raise ValueError(f"recurrent genotype dict must have exactly the keys {list(_FIELDS)}; "
                             f"missing {missing}, unknown {unknown}")
        return cls(recurrent=data["recurrent"], concat=data["concat"])

    # The JSON text and file forms are the CNN Genotype's own methods, which work through
    # to_dict / from_dict / parse / str of the class they are called on.
    to_json = Genotype.to_json
    from_json = Genotype.__dict__["from_json"]
    save = Genotype.save

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RecurrentGenotype":
        """Read a file written by :meth:`save` (text form, or JSON for ``.json`` / text starting with ``{``);
        errors name the file (and, for malformed text, the line and column)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recurrent genotype file {path} does not exist (expected {_EXPECTED})")
        return Genotype.load.__func__(cls, path)  # type: ignore[attr-defined]

"""One genotype type for every cell-based NAS method.

A *genotype* is the discrete architecture a cell-based search derives: a normal
cell and a reduction cell, each a small DAG of intermediate nodes.  The index
convention and the text form are the ones of DARTS (Liu, Simonyan and Yang,
"DARTS: Differentiable Architecture Search", ICLR 2019), which most later
methods (P-DARTS, PC-DARTS, GDAS, SNAS, ...) reuse:

* index 0 is the cell input ``c_{k-2}``, index 1 is ``c_{k-1}``;
* intermediate node ``i`` (0-based) has index ``i + 2``, and each of its edges
  ``(op_name, input_index)`` may read any index ``< i + 2``;
* ``*_concat`` lists the node indices whose outputs are concatenated into the
  cell output ``c_k``: intermediate nodes (DARTS) and, for NASNet (Zoph et al.,
  "Learning Transferable Architectures for Scalable Image Recognition", CVPR
  2018, Sec. 3), also the cell inputs 0 and 1;
* ``*_combine`` (optional) says per node how its edges are combined: ``"add"``
  (DARTS and every cell that does not say otherwise) or ``"concat"`` (NASNet's
  second combination method, Sec. 3 step 5).  When every node of a cell adds,
  the field is left out of the text and JSON forms, so DARTS-family genotypes
  read and print exactly as published.

DARTS keeps exactly two edges per node and writes a cell as a *flat* list of
``2 * steps`` edges.  Methods such as SNAS keep every non-``none`` edge, so a
node here holds any number (>= 1) of edges; such genotypes use a *nested* text
form with one list per node.

This module is pure Python (no torch): the type, its validation, its printed text form and
its JSON and file forms. Reading the text form is :mod:`lit_automl.spaces.genotype_text`; the
published cells are :mod:`lit_automl.spaces.published`. Cell layout: :mod:`lit_automl.spaces.geometry`.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from lit_automl._checks import UnknownNameError, check_choice
from lit_automl.spaces.genotype_text import GenotypeParseError, InvalidPart, parse_call, quote
from lit_automl.spaces.geometry import CELL_TYPES, node_inputs, node_state, num_states
from lit_automl.spaces.op_names import check_op_names

__all__ = [
    "COMBINE_METHODS",
    "Edge",
    "Node",
    "CellNodes",
    "CellView",
    "Genotype",
    "GenotypeParseError",
    "InvalidPart",
    "UnknownOperationError",
]

Edge = tuple[str, int]
"""One edge: ``(op_name, input_index)``."""
Node = tuple[Edge, ...]
"""One intermediate node: the edges summed into it."""
CellNodes = tuple[Node, ...]
"""One cell: its intermediate nodes in order."""

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_OPTIONAL_FIELDS = ("normal_combine", "reduce_combine")
_ALL_FIELDS = _FIELDS + _OPTIONAL_FIELDS
COMBINE_METHODS = ("add", "concat")
"""How a node combines its edges: element-wise sum, or concatenation along channels."""


class UnknownOperationError(GenotypeParseError, UnknownNameError):
    """Genotype text or JSON naming an operation that cannot be built: a :class:`GenotypeParseError`
    (the reader's error) and an :class:`~lit_automl._checks.UnknownNameError` (the op registry's)."""


class CellView(NamedTuple):
    """One cell of a genotype: its nodes and the node indices concatenated into its output."""

    nodes: CellNodes
    concat: tuple[int, ...]

    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.nodes)


# --------------------------------------------------------------------------- validation
# Each failure is an InvalidPart naming the field and the path to the bad part of the value as given
# (the text reader quotes that part); ``literal`` words a wrong type the way the text form needs it.
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _allowed_inputs(node_pos: int) -> str:
    """The input indices node ``node_pos`` may read, in words."""
    hi = node_inputs(node_pos)[-1]
    if hi < 2:
        return "allowed 0..1 (0 = c_{k-2}, 1 = c_{k-1})"
    return f"allowed 0..{hi} (0 = c_{{k-2}}, 1 = c_{{k-1}}, 2..{hi} = earlier intermediate nodes)"


def _normalise_edge(name: str, edge: Any, pos: int, j: int, path: tuple[int, ...]) -> Edge:
    """Edge ``j`` of node ``pos``; ``path`` locates it in the cell's value."""
    where = f"{name} node {pos} edge {j}"
    if not _is_seq(edge) or len(edge) != 2:
        raise InvalidPart(f"{where}: an edge must be a pair: expected (op_name, input_index), got {edge!r}", name, path,
                          f"{name} node {pos}: an edge must be a pair (op_name, input_index)")
    op, index = edge
    if not isinstance(op, str):
        raise InvalidPart(f"{where} {tuple(edge)!r}: op name must be a non-empty str, got {op!r}", name, path + (0,),
                          f"{name} node {pos}: op name must be a string literal")
    if not op.strip():
        raise InvalidPart(f"{where} {tuple(edge)!r}: op name must be a non-empty str, got {op!r}", name, path)
    if not _is_int(index):
        raise InvalidPart(
            f"{where} {tuple(edge)!r}: input index must be an int, got {index!r} ({type(index).__name__}); "
            f"{_allowed_inputs(pos)}", name, path + (1,), f"{name} node {pos}: input index must be an int literal")
    if int(index) not in node_inputs(pos):
        raise InvalidPart(f"{where} {tuple(edge)!r}: input index {index!r} out of range for node {pos} "
                          f"(index {node_state(pos)}); {_allowed_inputs(pos)}", name, path)
    return (op, int(index))


def _normalise_cell(name: str, cell: Any) -> CellNodes:
    """Turn a flat (DARTS) or nested cell description into a validated tuple of nodes."""
    if not _is_seq(cell):
        raise InvalidPart(f"{name} must be a list of edges or a list of nodes (flat DARTS form or nested form), "
                          f"got {type(cell).__name__}: {cell!r}", name, (), f"{name} must be a list of edges or a list of nodes")
    if len(cell) == 0:
        raise InvalidPart(f"{name} has no intermediate nodes; a cell needs at least 1", name)
    # An item is an edge if it is a sequence whose first element is a scalar, a node otherwise.
    kinds = ["node" if _is_seq(item) and (len(item) == 0 or _is_seq(item[0])) else "edge" for item in cell]
    if len(set(kinds)) > 1:
        bad = next(i for i, k in enumerate(kinds) if k != kinds[0])
        raise InvalidPart(f"{name} mixes flat edges and nested nodes: item 0 is an {kinds[0]} but item {bad} "
                          f"({cell[bad]!r}) is an {kinds[bad]}; use one form per cell", name, (bad,))
    if kinds[0] == "edge":  # flat: edge k is edge k % 2 of node k // 2
        if len(cell) % 2:
            raise InvalidPart(
                f"{name} has {len(cell)} edge{'' if len(cell) == 1 else 's'} in flat form; the flat DARTS form needs "
                "2 edges per node (an even count) - use the nested form [[edges of node 0], [edges of node 1], ...] "
                "for other edge counts", name)
        return tuple(tuple(_normalise_edge(name, cell[k], k // 2, k % 2, (k,)) for k in (2 * pos, 2 * pos + 1))
                     for pos in range(len(cell) // 2))
    nodes: list[Node] = []
    for pos, raw in enumerate(cell):
        if len(raw) == 0:
            raise InvalidPart(f"{name} node {pos} (index {node_state(pos)}) is empty; a node needs at least 1 edge", name, (pos,))
        nodes.append(tuple(_normalise_edge(name, edge, pos, j, (pos, j)) for j, edge in enumerate(raw)))
    return tuple(nodes)


def _normalise_concat(name: str, concat: Any, steps: int) -> tuple[int, ...]:
    states = f"0..{num_states(steps) - 1}"
    allowed = (f"allowed 2..{num_states(steps) - 1} (the intermediate nodes of a {steps}-node cell) "
               "or 0..1 (the cell inputs c_{k-2}, c_{k-1}, which NASNet concatenates when unused)")
    if isinstance(concat, range):
        concat = list(concat)
    if not _is_seq(concat):
        raise InvalidPart(f"{name} must be a list of ints or range(start, stop) (the node indices to concatenate), "
                          f"got {type(concat).__name__}: {concat!r}", name, (),
                          f"{name} must be a list of ints or range(start, stop)")
    if len(concat) == 0:
        raise InvalidPart(f"{name} is empty; list at least one node index in {states}", name)
    for k, value in enumerate(concat):
        if not _is_int(value):
            raise InvalidPart(f"{name}: concat index must be an int, got {value!r} ({type(value).__name__}); {allowed}",
                              name, (k,), f"{name}: concat index must be an int literal")
        if int(value) not in range(num_states(steps)):
            raise InvalidPart(f"{name}: concat index {value!r} out of range; {allowed}", name, (k,))
    values = tuple(int(v) for v in concat)
    if len(set(values)) != len(values):
        raise InvalidPart(f"{name} {list(values)} repeats a node index", name)
    return values


def _normalise_combine(name: str, combine: Any, steps: int) -> tuple[str, ...]:
    """A full per-node tuple of combination methods; empty or None means every node adds."""
    if combine is None or (_is_seq(combine) and len(combine) == 0):
        return ("add",) * steps
    if not _is_seq(combine):
        raise InvalidPart(f"{name} must be a list of one method per node from {list(COMBINE_METHODS)}, "
                          f"got {type(combine).__name__}: {combine!r}", name, (),
                          f"{name} must be a list of combine methods {list(COMBINE_METHODS)}")
    if len(combine) != steps:
        raise InvalidPart(f"{name} has {len(combine)} entries but the cell has {steps} nodes; give one method per node",
                          name)
    for pos, value in enumerate(combine):
        if not isinstance(value, str) or value not in COMBINE_METHODS:
            literal = None if isinstance(value, str) else f"{name} node {pos}: combine method must be a string literal"
            raise InvalidPart(f"{name} node {pos}: unknown combine method {value!r}; allowed {list(COMBINE_METHODS)}",
                              name, (pos,), literal)
    return tuple(combine)


# --------------------------------------------------------------------------- the type
@dataclass(frozen=True, repr=False)
class Genotype:
    """A derived cell-based architecture: normal and reduction cell plus their output concat lists.

    ``normal`` / ``reduce`` accept either the flat DARTS form (a list of ``2 * steps``
    ``(op, index)`` edges, two per node in order) or a nested form (one list of edges
    per node, any number >= 1 each); both are stored nested, as tuples, so equality
    and hashing do not depend on the input form.  ``range`` concat lists are accepted.
    ``normal_combine`` / ``reduce_combine`` give one method per node from
    :data:`COMBINE_METHODS`; left out (or empty) they mean "every node adds", and they are
    always stored in full, so an explicit all-``"add"`` list equals the default.
    Invalid content raises ``ValueError`` naming the bad value and the allowed range.
    """

    normal: CellNodes
    normal_concat: tuple[int, ...]
    reduce: CellNodes
    reduce_concat: tuple[int, ...]
    normal_combine: tuple[str, ...] = ()
    reduce_combine: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            nodes = _normalise_cell(cell, getattr(self, cell))
            object.__setattr__(self, cell, nodes)
        for cell in CELL_TYPES:
            steps = len(getattr(self, cell))
            for field, normalise in ((f"{cell}_concat", _normalise_concat), (f"{cell}_combine", _normalise_combine)):
                object.__setattr__(self, field, normalise(field, getattr(self, field), steps))

    # ----------------------------------------------------------------- views
    @property
    def steps(self) -> int:
        """Number of intermediate nodes of the normal cell (DARTS' ``steps``, 4 for the published cells)."""
        return len(self.normal)

    @property
    def is_flat(self) -> bool:
        """True when every node has exactly two edges, i.e. the genotype fits the flat DARTS form."""
        return all(len(node) == 2 for node in self.normal + self.reduce)

    @property
    def all_add(self) -> bool:
        """True when every node of both cells sums its edges (the DARTS meaning of a genotype)."""
        return all(c == "add" for c in self.normal_combine + self.reduce_combine)

    def combine(self, cell: str = "normal") -> tuple[str, ...]:
        """The per-node combination methods of ``cell`` ("normal" or "reduce")."""
        check_choice("cell", cell, CELL_TYPES)
        return getattr(self, f"{cell}_combine")

    def cells(self) -> dict[str, CellView]:
        """``{"normal": CellView(nodes, concat), "reduce": CellView(nodes, concat)}``."""
        return {cell: CellView(getattr(self, cell), getattr(self, f"{cell}_concat")) for cell in CELL_TYPES}

    def op_names(self) -> set[str]:
        """Every op name used by either cell (e.g. to check against an op registry)."""
        return {op for cell in (self.normal, self.reduce) for node in cell for op, _ in node}

    def flat_edges(self, cell: str = "normal") -> tuple[Edge, ...]:
        """The edges of ``cell`` ("normal" or "reduce") in node order, as DARTS' flat list."""
        check_choice("cell", cell, CELL_TYPES)
        return tuple(edge for node in getattr(self, cell) for edge in node)

    # ----------------------------------------------------------------- text form
    def __str__(self) -> str:
        """The DARTS text form: flat when every node has 2 edges, nested otherwise."""

        def edge_text(edge: Edge) -> str:
            return f"({edge[0]!r}, {edge[1]})"

        flat = self.is_flat

        def cell_text(cell: CellNodes) -> str:
            if flat:
                return "[" + ", ".join(edge_text(e) for node in cell for e in node) + "]"
            return "[" + ", ".join("[" + ", ".join(edge_text(e) for e in node) + "]" for node in cell) + "]"

        def concat_text(concat: tuple[int, ...]) -> str:
            return "[" + ", ".join(str(v) for v in concat) + "]"

        def combine_text(name: str, combine: tuple[str, ...]) -> str:
            if all(c == "add" for c in combine):
                return ""
            return f", {name}=[" + ", ".join(repr(c) for c in combine) + "]"

        return (
            f"Genotype(normal={cell_text(self.normal)}, normal_concat={concat_text(self.normal_concat)}, "
            f"reduce={cell_text(self.reduce)}, reduce_concat={concat_text(self.reduce_concat)}"
            f"{combine_text('normal_combine', self.normal_combine)}{combine_text('reduce_combine', self.reduce_combine)})"
        )

    __repr__ = __str__

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Read the text form of Liu et al. (ICLR 2019), e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...], ...)``.

        Nothing is evaluated (:func:`~lit_automl.spaces.genotype_text.parse_call`): only a call
        named ``Genotype`` with literal and ``range(...)`` arguments is accepted. Cells may be flat
        (two edges per node) or nested (one list per node). Any problem raises
        :class:`GenotypeParseError` quoting the offending text; an op name that cannot be built
        (see :mod:`lit_automl.spaces.op_names`) raises :class:`UnknownOperationError` listing the valid names.
        """
        return cls._known_ops(parse_call(text, "Genotype", _FIELDS, _OPTIONAL_FIELDS, cls), "genotype text")

    @staticmethod
    def _known_ops(genotype: "Genotype", source: str) -> "Genotype":
        """``genotype`` if every op name in it can be built; read genotypes (text, JSON, files) go through
        this, while the constructor checks structure only."""
        check_op_names(source, genotype.op_names(), error=UnknownOperationError)
        return genotype

    # ----------------------------------------------------------------- JSON / files
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; cells are always nested (``[[[op, index], ...], ...]``).

        ``normal_combine`` / ``reduce_combine`` appear only for a cell with a non-``"add"`` node.
        """
        data: dict[str, Any] = {
            "normal": [[[op, idx] for op, idx in node] for node in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[[op, idx] for op, idx in node] for node in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }
        for name in _OPTIONAL_FIELDS:
            combine = getattr(self, name)
            if any(c != "add" for c in combine):
                data[name] = list(combine)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genotype":
        """Inverse of :meth:`to_dict`; cells may also be flat edge lists.  Wrong keys raise ValueError, an
        op name that cannot be built :class:`UnknownOperationError`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a genotype dict must be a mapping, got {type(data).__name__}: {data!r}")
        missing = [k for k in _FIELDS if k not in data]
        unknown = sorted(str(k) for k in data if k not in _ALL_FIELDS)
        if missing or unknown:
            raise ValueError(
                f"genotype dict must have exactly the keys {list(_FIELDS)} (optionally also {list(_OPTIONAL_FIELDS)}); "
                f"missing {missing}, unknown {unknown}"
            )
        return cls._known_ops(cls(**{k: data[k] for k in _ALL_FIELDS if k in data}), "genotype dict")

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        """Inverse of :meth:`to_json`; invalid JSON raises :class:`GenotypeParseError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            bad = text[exc.pos :].strip() or text.strip()[-30:]  # from the offending character on
            raise GenotypeParseError(
                f"invalid genotype JSON ({exc.msg}) at line {exc.lineno}, column {exc.colno}: {quote(bad)}"
            ) from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to ``path``: JSON when it ends in ``.json``, the text form otherwise.  Creates parent folders."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self.to_json(indent=2) if path.suffix.lower() == ".json" else str(self)
        path.write_text(body + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Genotype":
        """Read a file written by :meth:`save` (or any file holding the text form or JSON).

        A missing file raises ``FileNotFoundError``; a file that is not UTF-8 text or does not hold a
        genotype raises the reader's error (:class:`GenotypeParseError`, ``ValueError``) with the file's
        path and what it should hold in front of the reader's message."""
        path = Path(path)
        expected = "a genotype in the text form Genotype(normal=[...], ...) or its JSON"
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {path} does not exist (expected {expected})")
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as err:
            raise GenotypeParseError(f"genotype file {path} is not UTF-8 text (expected {expected}): {err}") from None
        try:
            if path.suffix.lower() == ".json" or text.startswith("{"):
                return cls.from_json(text)
            return cls.parse(text)
        except InvalidPart as err:  # a JSON value the type refuses
            raise InvalidPart(f"genotype file {path}: {err}", err.field, err.path, err.literal) from None
        except ValueError as err:  # the reader's other errors, each of its own class
            raise type(err)(f"genotype file {path}: {err}") from None

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

This module is pure Python (no torch): it validates, parses, prints and stores
genotypes, and knows a few published cells.
"""

from __future__ import annotations

import ast
import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Union

__all__ = [
    "COMBINE_METHODS",
    "Edge",
    "Node",
    "CellNodes",
    "CellView",
    "Genotype",
    "GenotypeParseError",
    "PUBLISHED_GENOTYPES",
    "get_genotype",
    "resolve_genotype",
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
_CELL_NAMES = ("normal", "reduce")
_QUOTE_MAX = 70


class GenotypeParseError(ValueError):
    """Raised when genotype text (or JSON) cannot be read; the message quotes the bad part."""


class CellView(NamedTuple):
    """One cell of a genotype: its nodes and the node indices concatenated into its output."""

    nodes: CellNodes
    concat: tuple[int, ...]

    @property
    def steps(self) -> int:
        """Number of intermediate nodes."""
        return len(self.nodes)


# --------------------------------------------------------------------------- validation
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _allowed_inputs(node_pos: int) -> str:
    """The input indices node ``node_pos`` may read, in words."""
    hi = node_pos + 1
    if hi < 2:
        return "allowed 0..1 (0 = c_{k-2}, 1 = c_{k-1})"
    return f"allowed 0..{hi} (0 = c_{{k-2}}, 1 = c_{{k-1}}, 2..{hi} = earlier intermediate nodes)"


def _edge_problem(op: Any, index: Any, node_pos: int) -> str | None:
    """Why edge ``(op, index)`` of intermediate node ``node_pos`` is invalid, or None."""
    if not isinstance(op, str) or not op.strip():
        return f"op name must be a non-empty str, got {op!r}"
    if not _is_int(index):
        return f"input index must be an int, got {index!r} ({type(index).__name__}); {_allowed_inputs(node_pos)}"
    if not 0 <= int(index) < node_pos + 2:
        return f"input index {index!r} out of range for node {node_pos} (index {node_pos + 2}); {_allowed_inputs(node_pos)}"
    return None


def _concat_problem(value: Any, steps: int) -> str | None:
    """Why ``value`` cannot appear in the concat list of a cell with ``steps`` nodes, or None."""
    allowed = (
        f"allowed 2..{steps + 1} (the intermediate nodes of a {steps}-node cell) "
        "or 0..1 (the cell inputs c_{k-2}, c_{k-1}, which NASNet concatenates when unused)"
    )
    if not _is_int(value):
        return f"concat index must be an int, got {value!r} ({type(value).__name__}); {allowed}"
    if not 0 <= int(value) < steps + 2:
        return f"concat index {value!r} out of range; {allowed}"
    return None


def _combine_problem(value: Any, node_pos: int) -> str | None:
    """Why ``value`` cannot be the combination method of node ``node_pos``, or None."""
    if not isinstance(value, str) or value not in COMBINE_METHODS:
        return f"node {node_pos}: unknown combine method {value!r}; allowed {list(COMBINE_METHODS)}"
    return None


def _normalise_combine(name: str, combine: Any, steps: int) -> tuple[str, ...]:
    """A full per-node tuple of combination methods; empty or None means every node adds."""
    if combine is None or (_is_seq(combine) and len(combine) == 0):
        return ("add",) * steps
    if not _is_seq(combine):
        raise ValueError(
            f"{name} must be a list of one method per node from {list(COMBINE_METHODS)}, "
            f"got {type(combine).__name__}: {combine!r}"
        )
    if len(combine) != steps:
        raise ValueError(f"{name} has {len(combine)} entries but the cell has {steps} nodes; give one method per node")
    for pos, value in enumerate(combine):
        problem = _combine_problem(value, pos)
        if problem:
            raise ValueError(f"{name} {problem}")
    return tuple(combine)


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _normalise_cell(name: str, cell: Any) -> CellNodes:
    """Turn a flat (DARTS) or nested cell description into a validated tuple of nodes."""
    if not _is_seq(cell):
        raise ValueError(
            f"{name} must be a list of edges (flat DARTS form) or a list of nodes (nested form), "
            f"got {type(cell).__name__}: {cell!r}"
        )
    if len(cell) == 0:
        raise ValueError(f"{name} has no intermediate nodes; a cell needs at least 1")
    # An item is an edge if it is a sequence whose first element is a scalar, a node otherwise.
    kinds = ["node" if _is_seq(item) and (len(item) == 0 or _is_seq(item[0])) else "edge" for item in cell]
    if len(set(kinds)) > 1:
        bad = next(i for i, k in enumerate(kinds) if k != kinds[0])
        raise ValueError(
            f"{name} mixes flat edges and nested nodes: item 0 is an {kinds[0]} but item {bad} "
            f"({cell[bad]!r}) is an {kinds[bad]}; use one form per cell"
        )
    if kinds[0] == "edge":
        if len(cell) % 2:
            raise ValueError(
                f"{name} has {len(cell)} edge{'' if len(cell) == 1 else 's'} in flat form; the flat DARTS form needs 2 edges per node "
                "(an even count) - use the nested form for other edge counts"
            )
        raw_nodes: list[Any] = [cell[i : i + 2] for i in range(0, len(cell), 2)]
    else:
        raw_nodes = list(cell)

    nodes: list[Node] = []
    for pos, raw in enumerate(raw_nodes):
        if len(raw) == 0:
            raise ValueError(f"{name} node {pos} (index {pos + 2}) is empty; a node needs at least 1 edge")
        edges: list[Edge] = []
        for j, edge in enumerate(raw):
            if not _is_seq(edge) or len(edge) != 2:
                raise ValueError(f"{name} node {pos} edge {j}: expected (op_name, input_index), got {edge!r}")
            op, index = edge
            problem = _edge_problem(op, index, pos)
            if problem:
                raise ValueError(f"{name} node {pos} edge {j} {tuple(edge)!r}: {problem}")
            edges.append((op, int(index)))
        nodes.append(tuple(edges))
    return tuple(nodes)


def _normalise_concat(name: str, concat: Any, steps: int) -> tuple[int, ...]:
    if isinstance(concat, range):
        concat = list(concat)
    if not _is_seq(concat):
        raise ValueError(f"{name} must be a list of node indices, got {type(concat).__name__}: {concat!r}")
    if len(concat) == 0:
        raise ValueError(f"{name} is empty; list at least one node index in 0..{steps + 1}")
    for value in concat:
        problem = _concat_problem(value, steps)
        if problem:
            raise ValueError(f"{name}: {problem}")
    values = tuple(int(v) for v in concat)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} {list(values)} repeats a node index")
    return values


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
        normal = _normalise_cell("normal", self.normal)
        reduce = _normalise_cell("reduce", self.reduce)
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(self, "normal_concat", _normalise_concat("normal_concat", self.normal_concat, len(normal)))
        object.__setattr__(self, "reduce_concat", _normalise_concat("reduce_concat", self.reduce_concat, len(reduce)))
        object.__setattr__(self, "normal_combine", _normalise_combine("normal_combine", self.normal_combine, len(normal)))
        object.__setattr__(self, "reduce_combine", _normalise_combine("reduce_combine", self.reduce_combine, len(reduce)))

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
        if cell not in _CELL_NAMES:
            raise ValueError(f"cell must be one of {_CELL_NAMES}, got {cell!r}")
        return self.normal_combine if cell == "normal" else self.reduce_combine

    def cells(self) -> dict[str, CellView]:
        """``{"normal": CellView(nodes, concat), "reduce": CellView(nodes, concat)}``."""
        return {
            "normal": CellView(self.normal, self.normal_concat),
            "reduce": CellView(self.reduce, self.reduce_concat),
        }

    def op_names(self) -> set[str]:
        """Every op name used by either cell (e.g. to check against an op registry)."""
        return {op for cell in (self.normal, self.reduce) for node in cell for op, _ in node}

    def flat_edges(self, cell: str = "normal") -> tuple[Edge, ...]:
        """The edges of ``cell`` ("normal" or "reduce") in node order, as DARTS' flat list."""
        if cell not in _CELL_NAMES:
            raise ValueError(f"cell must be one of {_CELL_NAMES}, got {cell!r}")
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

        Nothing is evaluated: the text is parsed into a Python AST and only a call named
        ``Genotype`` with list/tuple, str/int literal and ``range(...)`` arguments is
        accepted.  Cells may be flat (two edges per node) or nested (one list per node).
        Any problem raises :class:`GenotypeParseError` quoting the offending text.
        """
        return _Parser(text).parse()

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
        """Inverse of :meth:`to_dict`; cells may also be flat edge lists.  Wrong keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a genotype dict must be a mapping, got {type(data).__name__}: {data!r}")
        missing = [k for k in _FIELDS if k not in data]
        unknown = sorted(str(k) for k in data if k not in _ALL_FIELDS)
        if missing or unknown:
            raise ValueError(
                f"genotype dict must have exactly the keys {list(_FIELDS)} (optionally also {list(_OPTIONAL_FIELDS)}); "
                f"missing {missing}, unknown {unknown}"
            )
        return cls(**{k: data[k] for k in _ALL_FIELDS if k in data})

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
                f"invalid genotype JSON ({exc.msg}) at line {exc.lineno}, column {exc.colno}: {_quote(bad)}"
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
        """Read a file written by :meth:`save` (or any file holding the text form or JSON)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8").strip()
        if path.suffix.lower() == ".json" or text.startswith("{"):
            return cls.from_json(text)
        return cls.parse(text)


# --------------------------------------------------------------------------- parser
def _quote(segment: str) -> str:
    """Quote a piece of the input for an error message (shortened if long)."""
    if len(segment) > _QUOTE_MAX:
        segment = segment[: _QUOTE_MAX - 3] + "..."
    return f'"{segment}"'


class _Parser:
    """Reads the genotype text form from its AST, accepting only literal node types."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise GenotypeParseError(f"genotype text must be a str, got {type(text).__name__}")
        self.text = text.strip()

    def fail(self, what: str, node: ast.AST | None = None) -> GenotypeParseError:
        segment = self.text if node is None else (ast.get_source_segment(self.text, node) or self.text)
        return GenotypeParseError(f"{what}: {_quote(segment)}")

    def parse(self) -> Genotype:
        if not self.text:
            raise GenotypeParseError('empty genotype text: ""')
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise self._syntax_error(exc) from None
        except (RecursionError, MemoryError, ValueError):
            raise self.fail("genotype text is too deeply nested or not parseable") from None
        call = tree.body
        if not (isinstance(call, ast.Call) and self._callee_is_genotype(call.func)):
            inner = next(
                (n for n in ast.walk(call) if isinstance(n, ast.Call) and self._callee_is_genotype(n.func)), None
            )
            if inner is not None:  # e.g. "Genotype(...) + 1": quote what surrounds the call
                seg = ast.get_source_segment(self.text, inner) or ""
                start = self.text.find(seg)
                extra = self.text[:start].strip() or self.text[start + len(seg) :].strip()
                raise GenotypeParseError(f"unexpected text around the Genotype(...) call: {_quote(extra)}")
            raise self.fail("expected a call Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)", call)

        values: dict[str, ast.expr] = {}
        if len(call.args) > len(_ALL_FIELDS):
            raise self.fail(f"Genotype takes at most {len(_ALL_FIELDS)} positional arguments", call.args[len(_ALL_FIELDS)])
        for name, arg in zip(_ALL_FIELDS, call.args):
            if isinstance(arg, ast.Starred):
                raise self.fail("starred arguments are not allowed", arg)
            values[name] = arg
        for kw in call.keywords:
            if kw.arg is None:
                raise self.fail("'**' arguments are not allowed", kw)
            if kw.arg not in _ALL_FIELDS:
                raise self.fail(f"unknown keyword {kw.arg!r}; expected one of {list(_ALL_FIELDS)}", kw)
            if kw.arg in values:
                raise self.fail(f"keyword {kw.arg!r} given twice", kw)
            values[kw.arg] = kw.value
        missing = [name for name in _FIELDS if name not in values]
        if missing:
            raise self.fail(f"missing keyword(s) {missing}", call)

        normal = self._cell("normal", values["normal"])
        reduce = self._cell("reduce", values["reduce"])
        normal_concat = self._concat("normal_concat", values["normal_concat"], len(normal))
        reduce_concat = self._concat("reduce_concat", values["reduce_concat"], len(reduce))
        normal_combine = self._combine("normal_combine", values.get("normal_combine"), len(normal))
        reduce_combine = self._combine("reduce_combine", values.get("reduce_combine"), len(reduce))
        try:
            return Genotype(normal, normal_concat, reduce, reduce_concat, normal_combine, reduce_combine)
        except ValueError as exc:  # anything the checks above did not already pin to a part of the text
            raise self.fail(f"invalid genotype ({exc})") from None

    # ----------------------------------------------------------------- helpers
    def _syntax_error(self, exc: SyntaxError) -> GenotypeParseError:
        lines = self.text.splitlines() or [""]
        lineno = min(max(exc.lineno or 1, 1), len(lines))
        col = max((exc.offset or 1) - 1, 0)
        line = lines[lineno - 1]
        snippet = line[col:].strip() or line.strip() or self.text  # from the offending character on
        return GenotypeParseError(
            f"malformed genotype text ({exc.msg}) at line {lineno}, column {col + 1}: {_quote(snippet)}"
        )

    @staticmethod
    def _callee_is_genotype(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id == "Genotype"
        if isinstance(func, ast.Attribute):  # e.g. genotypes.Genotype(...)
            return func.attr == "Genotype"
        return False

    def _int(self, node: ast.expr, what: str) -> int:
        if isinstance(node, ast.Constant) and _is_int(node.value):
            return int(node.value)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant)
            and _is_int(node.operand.value)
        ):
            value = int(node.operand.value)
            return -value if isinstance(node.op, ast.USub) else value
        raise self.fail(f"{what} must be an int literal", node)

    def _edge(self, name: str, node: ast.expr, node_pos: int) -> Edge:
        if not isinstance(node, (ast.Tuple, ast.List)) or len(node.elts) != 2:
            raise self.fail(f"{name} node {node_pos}: an edge must be a pair (op_name, input_index)", node)
        op_node, index_node = node.elts
        if not (isinstance(op_node, ast.Constant) and isinstance(op_node.value, str)):
            raise self.fail(f"{name} node {node_pos}: op name must be a string literal", op_node)
        index = self._int(index_node, f"{name} node {node_pos}: input index")
        problem = _edge_problem(op_node.value, index, node_pos)
        if problem:
            raise self.fail(f"{name} node {node_pos}: {problem}", node)
        return (op_node.value, index)

    def _cell(self, name: str, node: ast.expr) -> CellNodes:
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.fail(f"{name} must be a list of edges or a list of nodes", node)
        if not node.elts:
            raise self.fail(f"{name} has no intermediate nodes; a cell needs at least 1", node)

        def is_node(item: ast.expr) -> bool:
            return isinstance(item, (ast.List, ast.Tuple)) and (
                not item.elts or isinstance(item.elts[0], (ast.List, ast.Tuple))
            )

        nested = is_node(node.elts[0])
        for item in node.elts:
            if is_node(item) != nested:
                raise self.fail(
                    f"{name} mixes flat edges and nested node lists; use one form per cell", item
                )
        if nested:
            nodes: list[Node] = []
            for pos, item in enumerate(node.elts):
                assert isinstance(item, (ast.List, ast.Tuple))
                if not item.elts:
                    raise self.fail(f"{name} node {pos} (index {pos + 2}) is empty; a node needs at least 1 edge", item)
                nodes.append(tuple(self._edge(name, e, pos) for e in item.elts))
            return tuple(nodes)
        if len(node.elts) % 2:
            raise self.fail(
                f"{name} has {len(node.elts)} edge{'' if len(node.elts) == 1 else 's'} in flat form; the flat DARTS form needs 2 edges per node "
                "(an even count) - use the nested form [[edges of node 0], [edges of node 1], ...] otherwise",
                node,
            )
        edges = [self._edge(name, e, i // 2) for i, e in enumerate(node.elts)]
        return tuple(tuple(edges[i : i + 2]) for i in range(0, len(edges), 2))

    def _combine(self, name: str, node: ast.expr | None, steps: int) -> tuple[str, ...]:
        if node is None:
            return ()
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.fail(f"{name} must be a list of combine methods {list(COMBINE_METHODS)}", node)
        if len(node.elts) != steps:
            raise self.fail(f"{name} has {len(node.elts)} entries but the cell has {steps} nodes; give one method per node", node)
        methods = []
        for pos, item in enumerate(node.elts):
            if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
                raise self.fail(f"{name} node {pos}: combine method must be a string literal", item)
            problem = _combine_problem(item.value, pos)
            if problem:
                raise self.fail(f"{name} {problem}", item)
            methods.append(item.value)
        return tuple(methods)

    def _concat(self, name: str, node: ast.expr, steps: int) -> tuple[int, ...]:
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == "range") or node.keywords:
                raise self.fail(f"{name} must be a list of ints or range(start, stop)", node)
            if not 1 <= len(node.args) <= 3:
                raise self.fail(f"{name}: range() takes 1 to 3 int arguments", node)
            args = [self._int(a, f"{name}: range() argument") for a in node.args]
            if len(args) == 3 and args[2] == 0:
                raise self.fail(f"{name}: range() step must not be zero", node)
            values = list(range(*args))
            for value in values:
                problem = _concat_problem(value, steps)
                if problem:
                    raise self.fail(f"{name}: {problem}", node)
        elif isinstance(node, (ast.List, ast.Tuple)):
            values = []
            for item in node.elts:
                value = self._int(item, f"{name}: concat index")
                problem = _concat_problem(value, steps)
                if problem:
                    raise self.fail(f"{name}: {problem}", item)
                values.append(value)
        else:
            raise self.fail(f"{name} must be a list of ints or range(start, stop)", node)
        if not values:
            raise self.fail(f"{name} is empty; list at least one node index in 0..{steps + 1}", node)
        if len(set(values)) != len(values):
            raise self.fail(f"{name} repeats a node index", node)
        return tuple(values)


# --------------------------------------------------------------------------- published cells
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
    """A published genotype by name (case and ``-``/``_`` insensitive); KeyError lists the valid names."""
    if name in PUBLISHED_GENOTYPES:
        return PUBLISHED_GENOTYPES[name]
    if isinstance(name, str):
        by_key = {_name_key(k): v for k, v in PUBLISHED_GENOTYPES.items()}
        if _name_key(name) in by_key:
            return by_key[_name_key(name)]
    raise KeyError(f"unknown genotype {name!r}; published genotypes: {sorted(PUBLISHED_GENOTYPES)}")


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


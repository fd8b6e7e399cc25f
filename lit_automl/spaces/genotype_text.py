"""Reading the published text form of a genotype, e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...], ...)``.

DARTS (Liu et al., ICLR 2019) and the methods built on it release their cells as the ``repr`` of a
namedtuple; :class:`~lit_automl.spaces.genotype.Genotype` (CNN cells) and
:class:`~lit_automl.spaces.recurrent_genotype.RecurrentGenotype` (``Genotype(recurrent=[...], concat=range(1, 9))``,
the DARTS recurrent cells) print that form and read it back here, each naming its own fields.
Nothing is evaluated: the text is parsed into a Python AST, only a call of the expected name is
accepted, each argument is read with :func:`ast.literal_eval` (``range(...)`` is the one call
allowed inside, as DARTS writes ``normal_concat=range(2, 6)``), and the values go to the type's
own constructor. Its validation says which part of a value is wrong (:class:`InvalidPart`), so a
problem is reported with the exact piece of text it comes from.

This module is pure Python and knows nothing of the genotype's fields beyond their names.
"""

from __future__ import annotations

import ast
from typing import Any, Callable, Optional, Sequence, Type, TypeVar

__all__ = ["GenotypeParseError", "InvalidPart", "NotALiteral", "parse_call", "quote"]

T = TypeVar("T")
_QUOTE_MAX = 70


class GenotypeParseError(ValueError):
    """Raised when genotype text (or JSON) cannot be read; the message quotes the bad part."""


class InvalidPart(ValueError):
    """A validation failure located in a value: ``field`` names the argument and ``path`` indexes into
    its value as given (list positions, outermost first). ``literal`` is how the text form words a
    wrong-type failure (``"... must be an int literal"``); None when the message already fits."""

    def __init__(self, message: str, field: str, path: Sequence[int] = (), literal: Optional[str] = None,
                 error: Optional[Type[GenotypeParseError]] = None):
        super().__init__(message)
        self.field, self.path, self.literal = field, tuple(path), literal
        self.error = error  # the reader's error class for this failure; None: GenotypeParseError


class NotALiteral:
    """Stands in for a piece of text that is not a literal, so the type's validation reports it."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return self.source


def quote(segment: str) -> str:
    """Quote a piece of the input for an error message (shortened if long)."""
    if len(segment) > _QUOTE_MAX:
        segment = segment[: _QUOTE_MAX - 3] + "..."
    return f'"{segment}"'


def parse_call(text: str, callee: str, required: Sequence[str], optional: Sequence[str],
               build: Callable[..., T]) -> T:
    """``build(**arguments)`` of the text ``callee(...)``; ``required`` then ``optional`` are the
    argument names in positional order. Any problem raises :class:`GenotypeParseError` quoting the
    offending text."""
    if not isinstance(text, str):
        raise GenotypeParseError(f"genotype text must be a str, got {type(text).__name__}")
    return _Reader(text.strip(), callee, tuple(required), tuple(optional)).read(build)


class _Reader:
    def __init__(self, text: str, callee: str, required: tuple, optional: tuple) -> None:
        self.text, self.callee, self.required, self.fields = text, callee, required, required + optional

    def fail(self, what: str, node: Optional[ast.AST] = None,
             error: Type[GenotypeParseError] = GenotypeParseError) -> GenotypeParseError:
        segment = self.text if node is None else (ast.get_source_segment(self.text, node) or self.text)
        return error(f"{what}: {quote(segment)}")

    def read(self, build: Callable[..., T]) -> T:
        arguments = self._arguments(self._call())
        try:
            return build(**{name: self._literal(node) for name, node in arguments.items()})
        except InvalidPart as exc:
            raise self.fail(exc.literal or str(exc), _part(arguments[exc.field], exc.path),
                            exc.error or GenotypeParseError) from None

    def _call(self) -> ast.Call:
        if not self.text:
            raise GenotypeParseError('empty genotype text: ""')
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise self._syntax_error(exc) from None
        except (RecursionError, MemoryError, ValueError):
            raise self.fail("genotype text is too deeply nested or not parseable") from None
        call = tree.body
        if isinstance(call, ast.Call) and self._is_callee(call.func):
            return call
        inner = next((n for n in ast.walk(call) if isinstance(n, ast.Call) and self._is_callee(n.func)), None)
        if inner is not None:  # e.g. "Genotype(...) + 1": quote what surrounds the call
            seg = ast.get_source_segment(self.text, inner) or ""
            start = self.text.find(seg)
            extra = self.text[:start].strip() or self.text[start + len(seg):].strip()
            raise GenotypeParseError(f"unexpected text around the {self.callee}(...) call: {quote(extra)}")
        keywords = ", ".join(f"{name}=..." for name in self.required)
        raise self.fail(f"expected a call {self.callee}({keywords})", call)

    def _arguments(self, call: ast.Call) -> dict:
        if len(call.args) > len(self.fields):
            raise self.fail(f"{self.callee} takes at most {len(self.fields)} positional arguments",
                            call.args[len(self.fields)])
        values: dict = {}
        for name, arg in zip(self.fields, call.args):
            if isinstance(arg, ast.Starred):
                raise self.fail("starred arguments are not allowed", arg)
            values[name] = arg
        for kw in call.keywords:
            if kw.arg is None:
                raise self.fail("'**' arguments are not allowed", kw)
            if kw.arg not in self.fields:
                raise self.fail(f"unknown keyword {kw.arg!r}; expected one of {list(self.fields)}", kw)
            if kw.arg in values:
                raise self.fail(f"keyword {kw.arg!r} given twice", kw)
            values[kw.arg] = kw.value
        missing = [name for name in self.required if name not in values]
        if missing:
            raise self.fail(f"missing keyword(s) {missing}", call)
        return values

    def _literal(self, node: ast.expr) -> Any:
        """The value of ``node``: lists and tuples item by item, ``range(...)`` of literal ints, other
        literals by :func:`ast.literal_eval`; anything else a :class:`NotALiteral`."""
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self._literal(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        try:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
                    and not node.keywords:
                return range(*(ast.literal_eval(arg) for arg in node.args))
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return NotALiteral(ast.get_source_segment(self.text, node) or ast.dump(node))

    def _is_callee(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id == self.callee
        return isinstance(func, ast.Attribute) and func.attr == self.callee  # e.g. genotypes.Genotype(...)

    def _syntax_error(self, exc: SyntaxError) -> GenotypeParseError:
        lines = self.text.splitlines() or [""]
        lineno = min(max(exc.lineno or 1, 1), len(lines))
        col = max((exc.offset or 1) - 1, 0)
        line = lines[lineno - 1]
        snippet = line[col:].strip() or line.strip() or self.text  # from the offending character on
        return GenotypeParseError(
            f"malformed genotype text ({exc.msg}) at line {lineno}, column {col + 1}: {quote(snippet)}"
        )


def _part(node: ast.expr, path: Sequence[int]) -> ast.expr:
    """The innermost list item of ``node`` along ``path`` (a ``range(...)`` call is one piece)."""
    for i in path:
        if not (isinstance(node, (ast.List, ast.Tuple)) and 0 <= i < len(node.elts)):
            break
        node = node.elts[i]
    return node

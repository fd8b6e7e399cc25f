"""Argument validation and registry lookup, written once for every module (standard library only).

Each ``check_*`` takes the argument's name first and its value second, bounds keyword-only, and
returns the normalised value (``int``, ``float``, ``bool`` or the choice itself), so a constructor
reads ``self.steps = check_int("steps", steps, low=1)``. One exception convention:

* a value of the wrong type raises :class:`ArgumentTypeError`, a ``TypeError`` that is also a
  ``ValueError`` (so ``except ValueError`` around a bad argument keeps working);
* a value of the right type outside its bounds or choices raises ``ValueError``;
* a name missing from a registry raises :class:`UnknownNameError` (a ``ValueError`` that is also a
  ``KeyError``, the mapping protocol's exception) listing the valid names, as timm's registries do.

Messages name the argument, what is allowed and the value received:
``"steps must be an int >= 1, got 0"``. ``hint`` adds a parenthesised remark after what is
allowed: ``"n_way must be an int >= 2 (classes per episode), got 1"``. ``allowed`` replaces the
generated description where words read better than bounds (``allowed="a positive int"``,
``allowed="a probability in [0, 1)"``); the check itself is always the one the bounds define.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Tuple, TypeVar, Union

__all__ = [
    "ArgumentTypeError",
    "UnknownNameError",
    "check_bool",
    "check_power_of_two",
    "check_choice",
    "check_instance",
    "check_int",
    "check_real",
    "check_sequence",
    "check_token",
    "lookup",
]

T = TypeVar("T")


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError``; also a ``ValueError``: it is a bad argument)."""


class UnknownNameError(ValueError, KeyError):
    """A name not in a registry (a ``ValueError``; also a ``KeyError``, as a mapping lookup raises)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _with_hint(allowed: str, hint: Optional[str], allow_none: bool) -> str:
    if allow_none:
        allowed += " or None"
    return f"{allowed} ({hint})" if hint else allowed


def _bounds_text(kind: str, low: Any, high: Any, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return kind


def check_int(name: str, value: Any, *, low: Optional[int] = None, high: Optional[int] = None,
              allow_none: bool = False, hint: Optional[str] = None, allowed: Optional[str] = None) -> Optional[int]:
    """``value`` as an ``int`` in ``[low, high]`` (either bound optional); ``bool`` is not an int."""
    if value is None and allow_none:
        return None
    allowed = _with_hint(allowed or _bounds_text("an int", low, high), hint, allow_none and not allowed)
    if isinstance(value, bool) or not isinstance(value, int):
        # numpy / torch integer scalars are ints too (they implement __index__), floats are not.
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise ArgumentTypeError(f"{name} must be {allowed}, got {value!r}")
        value = value.__index__()
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_power_of_two(name: str, value: Any, *, low: int = 1, allowed: Optional[str] = None) -> int:
    """``value`` as an ``int`` that is a power of 2 and at least ``low`` (tree leaves, halvings)."""
    allowed = allowed or f"a power of 2 >= {low}"
    value = check_int(name, value, low=low, allowed=allowed)
    if value & (value - 1):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_real(name: str, value: Any, *, low: Optional[float] = None, high: Optional[float] = None,
               low_open: bool = False, high_open: bool = False, allow_none: bool = False,
               allow_inf: bool = False, hint: Optional[str] = None, allowed: Optional[str] = None) -> Optional[float]:
    """``value`` as a finite ``float`` between ``low`` and ``high`` (open ends where ``*_open``).

    Ints are accepted and converted; ``bool`` and NaN are refused; infinity only with ``allow_inf``.
    """
    if value is None and allow_none:
        return None
    allowed = _with_hint(allowed or _bounds_text("a number", low, high, low_open, high_open), hint,
                         allow_none and not allowed)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, bool) or not hasattr(value, "__float__") or hasattr(value, "__len__"):
            raise ArgumentTypeError(f"{name} must be {allowed}, got {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_bool(name: str, value: Any, *, allowed: Optional[str] = None) -> bool:
    """``value`` as a ``bool`` (only ``True`` / ``False``: ``0``, ``1`` and strings are refused)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be {allowed or 'True or False'}, got {value!r}")
    return value


def check_instance(name: str, value: Any, types: Union[type, Tuple[type, ...]], *, allowed: str,
                   condition: Optional[Callable[[Any], bool]] = None) -> Any:
    """``value`` if it is an instance of ``types`` (and ``condition(value)`` holds, when given); otherwise a
    ``ValueError`` ``"{name} must be {allowed}, got {value!r}"`` -- e.g. an object handed over by a library
    (an Optuna distribution) that a method supports only in some forms."""
    if not isinstance(value, types) or (condition is not None and not condition(value)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[T], *, hint: Optional[str] = None,
                 sort: bool = True, allowed: Optional[str] = None) -> T:
    """``value`` if it is one of ``choices`` (compared with ``==``), else a ``ValueError`` listing them
    (sorted, or in their given order with ``sort=False``; ``allowed`` replaces the listing)."""
    options = list(choices)
    try:
        found = value in options
    except TypeError:  # an unhashable or incomparable value is not a choice
        found = False
    if not found:
        if sort:
            options = sorted(options) if all(isinstance(c, str) for c in options) else sorted(options, key=repr)
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be {allowed or f'one of {options}'}{extra}, got {value!r}")
    return value


def check_sequence(name: str, value: Any, item: Callable[[str, Any], T], *, allowed: str,
                   min_len: int = 0) -> Tuple[T, ...]:
    """``value`` as a tuple of ``item(f"{name}[i]", v)`` for each entry (``item`` is a ``check_*`` with its
    bounds bound, e.g. ``lambda n, v: check_int(n, v, low=1)``); ``allowed`` says what the entries are.

    A string, a non-sequence or fewer than ``min_len`` entries: ``"{name} must be a [non-empty] sequence
    of {allowed}, got ..."``; a bad entry: ``"{name} must hold {allowed}, got ..."`` quoting the whole
    value (the entry's own exception class kept), so the user sees the sequence they wrote.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < min_len:
        kind = "non-empty sequence" if min_len == 1 else (
            f"sequence of at least {min_len} entries" if min_len > 1 else "sequence")
        raise ArgumentTypeError(f"{name} must be a {kind} of {allowed}, got {value!r}")
    out = []
    for i, v in enumerate(value):
        try:
            out.append(item(f"{name}[{i}]", v))
        except ValueError as err:
            raise type(err)(f"{name} must hold {allowed}, got {value!r}") from None
    return tuple(out)


def check_token(where: str, kind: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else a ``ValueError`` ``"{where} has the unknown {kind} {value!r};
    allowed: a, b, ..."`` listing them in their given order (a token of a small language, such as an update rule's
    operand, whose vocabulary reads best in its own order)."""
    if value not in allowed:
        raise ValueError(f"{where} has the unknown {kind} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def lookup(registry: Mapping[str, T], name: Any, what: str) -> T:
    """``registry[name]``; a missing name raises :class:`UnknownNameError` listing the valid names.

    ``what`` names the kind of entry in the message: ``lookup(OPS, "conv_9x9", "operation")`` raises
    ``unknown operation 'conv_9x9'; valid names are: 'avg_pool_3x3', ...``.
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown {what} {name!r}; valid names are: {', '.join(repr(key) for key in sorted(registry, key=str))}"
        ) from None

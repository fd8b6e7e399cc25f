"""Programs of five-token units, the language shape shared by neural optimiser search and activation search.

Bello, Zoph, Vasudevan & Le, "Neural Optimizer Search with Reinforcement Learning", ICML 2017, Sec. 3.1 / Fig. 3,
and Ramachandran, Zoph & Le, "Searching for Activation Functions", ICLR workshop 2018, Sec. 2 / Figs. 1-2, write a
program as a chain of *units* (the second paper's "core units"): each unit reads two inputs, applies a unary function
to each and combines the results with a binary function, ``b(u1(in1), u2(in2))``; the controller emits each unit's
five tokens in the order ``in1 in2 u1 u2 b``, and a later unit may read the output of an earlier one (``o1`` for
unit 1, ...). The last unit's output is the program's value (the update of a rule, the activation's output).

Only what the two languages share lives here; each language (:mod:`lit_automl.nas.update_rules`,
:mod:`lit_automl.nas.activations`) names its tokens and evaluates its programs:

* :class:`Unit`, :class:`UnitLanguage` (the vocabularies, token checks naming unit / position / token / allowed
  tokens, parsing ``"a b c d e ; a b c d e"``), :class:`UnitProgram` (a parsed, checked program) and
  :func:`substitute` (the formula with earlier units substituted);
* :class:`UnitSpace`: the :class:`~lit_automl.spaces.decisions.DecisionSpace` of programs of ``num_units`` units over
  per-unit vocabularies, for the controller;
* :class:`UnitProgramEvaluator`: scores a program by training a child network with it (the reward of both papers is
  the child's validation accuracy) through the child machinery of :mod:`lit_automl.nas.evaluator`.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type

import pytorch_lightning as pl
from torch import nn

from lit_automl._checks import check_int, check_sequence, check_token
from lit_automl.nas.child import ChildClassifier
from lit_automl.nas.evaluator import DataModuleFactory, Evaluator, build_datamodule, check_trainer_kwargs, fit_child
from lit_automl.spaces.decisions import Action, Decision, DecisionSpace, check_tokens, read_json_record
from lit_automl.spaces.networks import count_parameters

__all__ = ["Unit", "UnitLanguage", "UnitProgram", "UnitProgramEvaluator", "UnitSpace", "atom", "substitute",
           "vocabulary"]


@dataclass(frozen=True)
class Unit:
    """One five-token unit ``b(u1(op1), u2(op2))`` (Bello et al. 2017 Fig. 3; Ramachandran et al. 2018 Fig. 1)."""

    op1: str
    op2: str
    u1: str
    u2: str
    b: str

    def tokens(self) -> Tuple[str, str, str, str, str]:
        """The unit's tokens in the controller's order: op1, op2, u1, u2, b."""
        return (self.op1, self.op2, self.u1, self.u2, self.b)


def outputs_before(unit: int) -> List[str]:
    """The tokens of the outputs of the units before unit ``unit`` (0-based): ``o1 .. o<unit>``."""
    return [f"o{k + 1}" for k in range(unit)]


@dataclass(frozen=True)
class UnitLanguage:
    """The vocabularies of a unit language and the names its messages use.

    Args:
        what: the program's name in messages (``"update rule"``, ``"activation"``).
        inputs: the input tokens every unit may read (earlier outputs ``o1 ..`` are added per unit).
        unaries, binaries: the function tokens.
        positions: the names of a unit's five positions in messages (and in the space's decision names).
        layout: the five positions as the empty-string message shows them.
    """

    what: str
    inputs: Tuple[str, ...]
    unaries: Tuple[str, ...]
    binaries: Tuple[str, ...]
    positions: Tuple[str, str, str, str, str] = ("operand1", "operand2", "unary1", "unary2", "binary")
    layout: str = "op1 op2 u1 u2 b"

    def vocabularies(self, unit: int) -> Tuple[List[str], ...]:
        """The allowed tokens of each position of unit ``unit`` (0-based): inputs may be earlier outputs."""
        inputs = [*self.inputs, *outputs_before(unit)]
        return (inputs, inputs, list(self.unaries), list(self.unaries), list(self.binaries))

    def check(self, units: Sequence[Unit], text: str) -> None:
        """Every token of ``units`` is allowed at its unit and position; else a ``ValueError`` naming the unit, the
        position, the bad token and the allowed tokens."""
        for k, u in enumerate(units):
            for kind, token, allowed in zip(self.positions, u.tokens(), self.vocabularies(k)):
                check_token(f"{self.what} {text!r}: unit {k + 1}", kind, token, allowed)

    def split(self, text: Any) -> Tuple[Unit, ...]:
        """The units of a token string ``"a b c d e ; a b c d e ; ..."`` (tokens not yet checked); an empty string,
        a non-string or a unit without exactly five tokens is refused."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"an {self.what} must be a non-empty token string '{self.layout} [; ...]', got {text!r}")
        chunks = [chunk.split() for chunk in text.split(";")]
        for k, tokens in enumerate(chunks):
            if len(tokens) != 5:
                raise ValueError(f"{self.what} {text!r}: unit {k + 1} has {len(tokens)} tokens {tokens}; each unit "
                                 f"takes 5: {' '.join(self.positions)}")
        return tuple(Unit(*tokens) for tokens in chunks)


@dataclass(frozen=True)
class UnitProgram(abc.ABC):
    """A parsed program: its units, checked against the subclass's :attr:`language`; the last unit's output is its
    value."""

    units: Tuple[Unit, ...]
    language: ClassVar[UnitLanguage]

    def __post_init__(self) -> None:
        if isinstance(self.units, list):
            object.__setattr__(self, "units", tuple(self.units))
        if not isinstance(self.units, tuple) or not self.units or not all(isinstance(u, Unit) for u in self.units):
            raise ValueError(f"an {type(self).__name__} needs a non-empty tuple of Unit, got {self.units!r}")
        self.language.check(self.units, self.to_string())

    @classmethod
    def from_string(cls, text: Any) -> "UnitProgram":
        """The program of a token string (errors name the unit, the position and the bad token)."""
        return cls(cls.language.split(text))

    def to_string(self) -> str:
        """The token string: each unit's five tokens, units joined by ``" ; "`` (:meth:`from_string`'s input)."""
        return " ; ".join(" ".join(u.tokens()) for u in self.units)

    def __str__(self) -> str:
        return self.to_string()

    def inputs(self) -> set:
        """The input tokens the program reads (earlier-unit outputs excluded)."""
        return {op for u in self.units for op in (u.op1, u.op2) if op in self.language.inputs}

    @abc.abstractmethod
    def formula(self) -> str:
        """The program as a formula (:func:`substitute` with the language's notation)."""


def atom(text: str) -> str:
    """``text`` parenthesised where a power, a product or a negation would bind differently."""
    depth, closes_at_end = 0, text.startswith("(")
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and i < len(text) - 1 and text.startswith("("):
            closes_at_end = False
    simple = text.isalnum() or (" " not in text and "^" not in text and not text.startswith("-"))
    return text if simple or closes_at_end else f"({text})"


def substitute(units: Sequence[Unit], names: Mapping[str, str], formats: Mapping[str, str],
               wrap_unary: Iterable[str] = (), wrap_binary: Iterable[str] = ()) -> str:
    """The formula of a program: each unit's ``formats[b]`` of ``formats[u1]`` / ``formats[u2]`` of its inputs, an
    earlier unit's formula substituted for its output ``o<k>``.

    Args:
        names: how input tokens print (a missing one prints as itself).
        formats: ``str.format`` templates of the unary (one ``{}``) and binary (two, or one to keep the left) tokens.
        wrap_unary: unaries whose argument is parenthesised when compound (e.g. a negation).
        wrap_binary: binaries whose arguments are parenthesised when compound (e.g. a power).
    """
    wrap_unary, wrap_binary = set(wrap_unary), set(wrap_binary)
    done: Dict[str, str] = {}
    for k, u in enumerate(units):
        a, c = (done.get(op, names.get(op, op)) for op in (u.op1, u.op2))
        a, c = (atom(x) if un in wrap_unary else x for x, un in ((a, u.u1), (c, u.u2)))
        a, c = formats[u.u1].format(a), formats[u.u2].format(c)
        if u.b in wrap_binary:
            a, c = atom(a), atom(c)
        done[f"o{k + 1}"] = formats[u.b].format(a, c)
    return done[f"o{len(units)}"]


def vocabulary(name: str, values: Optional[Sequence[str]], full: Sequence[str]) -> Tuple[str, ...]:
    """A restricted vocabulary: ``values`` (default: all of ``full``), non-empty, without repeats, each in ``full``."""
    if values is None:
        return tuple(full)

    def item(n: str, v: Any) -> str:
        if v not in full:
            raise ValueError(f"{n} must be one of {list(full)}, got {v!r}")
        return v

    out = check_sequence(name, values, item, allowed=f"tokens of {list(full)}", min_len=1)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a token, got {list(values)!r}")
    return out


class UnitSpace(DecisionSpace):
    """Programs of ``num_units`` units over restricted vocabularies as controller decisions (Bello et al. 2017
    Sec. 3.1 / Fig. 3; Ramachandran et al. 2018 Sec. 2 / Fig. 2: one token per position, ``in1 in2 u1 u2 b``).

    Subclasses set :attr:`program` (the :class:`UnitProgram` type), :attr:`record_key` (the key of the token string
    in :meth:`to_json`) and :meth:`parse` (a token string or a program -> the program).

    Args:
        num_units: units per program (unit ``k`` may also read ``o1 .. o<k-1>``).
        inputs, unaries, binaries: the vocabularies (default: the whole language's); an empty one is refused.
        names: the argument names used in messages for the three vocabularies.
    """

    program: ClassVar[Type[UnitProgram]]
    record_key: ClassVar[str]

    def __init__(self, num_units: int, inputs: Optional[Sequence[str]], unaries: Optional[Sequence[str]],
                 binaries: Optional[Sequence[str]], names: Tuple[str, str, str] = ("inputs", "unaries", "binaries"),
                 ) -> None:
        language = self.program.language
        self.num_units = check_int("num_units", num_units, low=1)
        self._inputs = vocabulary(names[0], inputs, language.inputs)
        self.unaries = vocabulary(names[1], unaries, language.unaries)
        self.binaries = vocabulary(names[2], binaries, language.binaries)

    @abc.abstractmethod
    def parse(self, text: Any) -> UnitProgram:
        """The program of a token string (or the program itself)."""

    def _vocabularies(self, unit: int) -> Tuple[Sequence[str], ...]:
        inputs = [*self._inputs, *outputs_before(unit)]
        return (inputs, inputs, self.unaries, self.unaries, self.binaries)

    def decisions(self) -> List[Decision]:
        """Per unit, one categorical decision per position in1, in2, u1, u2, b; unit ``k`` may also read
        ``o1 .. o<k-1>``."""
        positions = self.program.language.positions
        return [Decision.categorical(f"unit{k + 1}.{position}", len(vocab))
                for k in range(self.num_units) for position, vocab in zip(positions, self._vocabularies(k))]

    def decode(self, actions: Sequence[Action]) -> UnitProgram:
        """The program of one token sequence."""
        language = self.program.language
        tokens = check_tokens(self.decisions(), actions, f"an {language.what}",
                              f"{' '.join(language.positions)} per unit")
        units = []
        for k in range(self.num_units):
            chosen = tokens[5 * k:5 * k + 5]
            units.append(" ".join(vocab[a] for vocab, a in zip(self._vocabularies(k), chosen)))
        return self.parse(" ; ".join(units))

    def encode(self, architecture: Any) -> List[Action]:
        """The token sequence of a program (inverse of :meth:`decode`); a program outside this space is refused."""
        program = self.parse(architecture)
        what = self.record_key
        if len(program.units) != self.num_units:
            raise ValueError(f"{what} {str(program)!r} has {len(program.units)} units; this space's {what}s have "
                             f"{self.num_units}")
        out: List[Action] = []
        for k, u in enumerate(program.units):
            for token, vocab in zip(u.tokens(), self._vocabularies(k)):
                if token not in vocab:
                    raise ValueError(f"{what} {str(program)!r}: token {token!r} of unit {k + 1} is not in this "
                                     f"space's vocabulary {list(vocab)}")
                out.append(list(vocab).index(token))
        return out

    def to_json(self, architecture: Any) -> Dict[str, Any]:
        """``{record_key: token string, "formula": the program as a formula}``."""
        program = self.parse(architecture)
        return {self.record_key: str(program), "formula": program.formula()}

    def from_json(self, data: Any) -> UnitProgram:
        """The program of a :meth:`to_json` record (or its JSON text, or a file holding it), or of a token string."""
        what, key = self.program.language.what, self.record_key
        record = read_json_record(data)
        if record is None:
            if isinstance(data, (str, self.program)):
                return self.parse(data)
            raise ValueError(f'an {what.replace(" ", "-")} record must be {{"{key}": "<tokens>"}} or a token string, '
                             f"got {data!r}")
        if key not in record:
            raise ValueError(f'an {what.replace(" ", "-")} record must hold a "{key}" entry, got {record!r}')
        return self.parse(record[key])


class UnitProgramEvaluator(Evaluator):
    """Scores a program by training a child network with it for ``budget`` epochs; the reward reads the child's
    validation accuracy (Bello et al. 2017 Sec. 3-4; Ramachandran et al. 2018 Sec. 2-3).

    Subclasses set :attr:`space_type` and build the child in :meth:`child`.

    Args:
        space: the space searched (an instance of :attr:`space_type`).
        datamodule: a factory of the data (its validation split gives the reward), as for
            :class:`~lit_automl.nas.evaluator.TrainingEvaluator`.
        trainer_kwargs, run_dir, seed: as :class:`~lit_automl.nas.evaluator.TrainingEvaluator`; with a seed every
            program's child starts from the same weights and sees the same data order.
        num_classes, in_channels: override the datamodule's attributes.
    """

    space_type: ClassVar[Type[UnitSpace]]

    def __init__(self, space: UnitSpace, datamodule: DataModuleFactory, trainer_kwargs: Optional[Dict[str, Any]],
                 run_dir: Optional[str], num_classes: Optional[int], in_channels: Optional[int],
                 seed: Optional[int]) -> None:
        if not isinstance(space, self.space_type):
            raise ValueError(f"space must be an {self.space_type.__name__}, got {type(space).__name__}")
        self.space = space
        self.datamodule = build_datamodule(datamodule)
        self.num_classes = check_int("num_classes", num_classes or getattr(self.datamodule, "num_classes", None), low=2)
        self.in_channels = check_int("in_channels", in_channels or getattr(self.datamodule, "in_channels", None), low=1)
        self.trainer_kwargs = check_trainer_kwargs(trainer_kwargs)
        self.run_dir = run_dir
        self.seed = check_int("seed", seed, allow_none=True)

    @abc.abstractmethod
    def child(self, program: UnitProgram) -> Tuple[nn.Module, ChildClassifier]:
        """The child network of ``program`` and the module that trains it."""

    def evaluate(self, architecture: Any, budget: int, key: Optional[str] = None) -> Dict[str, Any]:
        """Train the program's child for ``budget`` epochs; per-epoch validation accuracy, parameters, time, and the
        program (token string and formula). A child whose loss is not finite raises ``FloatingPointError``
        (:class:`~lit_automl.nas.child.ChildClassifier`), which the search records as a failed child."""
        return self.train_child(self.space.parse(architecture), budget, key, self.child)

    def train_child(self, program: UnitProgram, budget: int, key: Optional[str],
                    make_child: Callable[[UnitProgram], Tuple[nn.Module, ChildClassifier]]) -> Dict[str, Any]:
        """:meth:`evaluate`'s training of the child ``make_child(program)`` builds (seeded first, so every child
        starts from the same weights)."""
        check_int("budget (epochs)", budget, low=1)
        if self.seed is not None:  # the same initial weights and data order for every program
            pl.seed_everything(self.seed, workers=True, verbose=False)
        network, module = make_child(program)
        seconds, _ = fit_child(module, self.datamodule, budget, callbacks=[], run_dir=self.run_dir, key=key,
                               trainer_kwargs=self.trainer_kwargs)
        history = list(module.val_acc_history)
        if not history:
            raise RuntimeError(f"the child trained {budget} epoch(s) but recorded no validation accuracy: the "
                               "datamodule needs a val_dataloader")
        if not all(math.isfinite(a) for a in history):
            raise FloatingPointError(f"child validation accuracy is not finite: {history}")
        return {"val_acc_history": history, "val_acc": history[-1], "max_val_acc_last5": max(history[-5:]),
                "params": count_parameters(network, exclude_auxiliary=False), "train_seconds": seconds,
                "epochs": budget, self.space.record_key: str(program), "formula": program.formula()}

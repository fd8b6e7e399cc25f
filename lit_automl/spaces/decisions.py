"""Decisions: the token sequence a search space asks a policy to emit.

A search space that is searched by a sequential policy (the RL controller of Zoph & Le, ICLR 2017,
Sec. 3.1 / 3.3; NASNet, ENAS) declares its architecture as an ordered list of :class:`Decision`:
categorical choices (filter size, operation, input) and skip-connection anchor points. The space
decodes a list of actions into an architecture; the policy (``lit_automl.nas.controller``) only
sees the declarations. Pure Python, no torch.

Action format: one entry per decision, in declaration order -- an ``int`` in
``[0, num_choices)`` for a categorical decision, a list of 0/1 ints (one per earlier anchor
decision) for an anchor decision; the first anchor decision therefore contributes ``[]``.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from lit_automl._checks import check_int

__all__ = ["ANCHOR", "CATEGORICAL", "Action", "ActionSeq", "Decision", "DecisionSpace", "SequentialSpace",
           "read_json_record", "validate_actions", "validate_decisions"]

CATEGORICAL = "categorical"
ANCHOR = "anchor"
_KINDS = (CATEGORICAL, ANCHOR)

Action = Union[int, List[int]]
ActionSeq = List[Action]


# --------------------------------------------------------------------------- #
# Decision specs
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Decision:
    """One step of the controller's output sequence.

    ``kind="categorical"``: a softmax over ``num_choices`` tokens with its own
    head and embedding (Zoph & Le Sec. 3.1, e.g. filter height, stride).

    ``kind="anchor"``: a skip-connection anchor point (Zoph & Le Sec. 3.3).
    For the ``i``-th anchor decision and each earlier anchor ``j < i`` an
    independent Bernoulli with
    ``P(j -> i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i))`` is sampled.
    ``num_choices`` is meaningless for anchors and must be left ``None``.
    """

    name: str
    kind: str = CATEGORICAL
    num_choices: Optional[int] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Decision name must be a non-empty string, got {self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(
                f"Decision {self.name!r}: unknown kind {self.kind!r}; allowed kinds are {list(_KINDS)}"
            )
        if self.kind == CATEGORICAL:
            check_int(f"Decision {self.name!r}: num_choices", self.num_choices, low=1)
        elif self.num_choices is not None:
            raise ValueError(
                f"Decision {self.name!r}: anchor decisions take no num_choices "
                f"(allowed: None), got {self.num_choices!r}"
            )

    @classmethod
    def categorical(cls, name: str, num_choices: int) -> "Decision":
        return cls(name=name, kind=CATEGORICAL, num_choices=num_choices)

    @classmethod
    def anchor(cls, name: str) -> "Decision":
        return cls(name=name, kind=ANCHOR, num_choices=None)


def validate_decisions(decisions: Sequence[Decision]) -> List[Decision]:
    decisions = list(decisions)
    if not decisions:
        raise ValueError(f"decisions must be a non-empty list of Decision, got {decisions!r}")
    seen = set()
    for d in decisions:
        if not isinstance(d, Decision):
            raise ValueError(f"decisions must contain Decision objects, got {d!r}")
        if d.name in seen:
            raise ValueError(f"duplicate decision name {d.name!r}")
        seen.add(d.name)
    return decisions


def validate_actions(decisions: Sequence[Decision], actions: Sequence[Action]) -> List[Action]:
    """Check one action sequence against ``decisions`` (a prefix of them when shorter); errors name the bad entry."""
    actions = list(actions)
    if len(actions) > len(decisions):
        raise ValueError(f"got {len(actions)} actions for {len(decisions)} decisions: {actions!r}")
    n_anchor = 0
    for i, (d, a) in enumerate(zip(decisions, actions)):
        if d.kind == CATEGORICAL:
            actions[i] = check_int(f"decision {d.name!r}: action", a, low=0, high=int(d.num_choices) - 1,
                                   allowed=f"an int in [0, {d.num_choices})")
        else:
            if not isinstance(a, (list, tuple)) or len(a) != n_anchor or any(b not in (0, 1) or isinstance(b, bool) for b in a):
                raise ValueError(f"decision {d.name!r}: action must be a list of {n_anchor} 0/1 ints, got {a!r}")
            n_anchor += 1
    return actions


def check_tokens(decisions: Sequence[Decision], tokens: Any, cell: str, layout: str) -> List[int]:
    """A full token sequence of categorical ``decisions`` as ints; errors name the count expected
    (``cell`` takes N tokens (``layout``)) or the token's position, decision, value and range."""
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise ValueError(f"tokens must be a sequence of {len(decisions)} ints, got {tokens!r}")
    if len(tokens) != len(decisions):
        raise ValueError(f"{cell} takes {len(decisions)} tokens ({layout}), got {len(tokens)}")
    return [check_int(f"token {i} ({d.name})", v, low=0, high=int(d.num_choices) - 1)
            for i, (d, v) in enumerate(zip(decisions, tokens))]


def read_json_record(spec: Any) -> Optional[Dict[str, Any]]:
    """The JSON object ``spec`` holds, or ``None`` when it holds none: a mapping, JSON text starting with ``{``,
    or the path of an existing file whose text is a JSON object (a search's ``architecture.json``)."""
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and not spec.lstrip().startswith("{")):
        path = Path(spec)
        if not path.is_file():
            return None
        spec = path.read_text()
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError:
            return None
    return dict(spec) if isinstance(spec, Mapping) else None


def layers_json(data: Union[Mapping[str, Any], str, os.PathLike], what: str) -> List[Any]:
    """The ``layers`` list of a ``{"layers": [...]}`` record of a layer-by-layer architecture, given as the
    record, its JSON text, or the path of a file holding it (a search's ``architecture.json``)."""
    if isinstance(data, os.PathLike) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        if not Path(data).is_file():
            raise ValueError(f"{what}: {str(data)!r} is neither a JSON object nor an existing file")
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what} JSON could not be parsed: {e}") from None
    record = read_json_record(data)
    if record is None or set(record) != {"layers"} or not isinstance(record["layers"], list):
        raise ValueError(f'{"an" if what[0] in "AEIOU" else "a"} {what} must be a JSON object {{"layers": [...]}}, '
                         f"got {data!r}")
    return record["layers"]


class DecisionSpace(abc.ABC):
    """A space a sequential policy samples: declared decisions, tokens <-> architectures, a JSON record.

    ``decisions()`` declares the token sequence; ``decode`` turns one action sequence into the
    space's architecture object and ``encode`` inverts it; ``to_json`` / ``from_json`` give the
    plain-JSON record stored with every evaluated child (an Optuna trial's user attribute). Recurrent
    cell spaces (NAS-RL's tree cell, ENAS's cell) are DecisionSpaces whose children a language-model
    evaluator trains; image spaces are :class:`SequentialSpace`.
    """

    @abc.abstractmethod
    def decisions(self) -> List[Decision]:
        """The declared decisions, in sampling order."""

    @abc.abstractmethod
    def decode(self, actions: Sequence[Action]) -> Any:
        """The architecture of an action sequence."""

    @abc.abstractmethod
    def encode(self, architecture: Any) -> List[Action]:
        """The action sequence of an architecture (inverse of :meth:`decode`)."""

    @abc.abstractmethod
    def to_json(self, architecture: Any) -> Dict[str, Any]:
        """A plain-JSON record of an architecture."""

    @abc.abstractmethod
    def from_json(self, data: Any) -> Any:
        """The architecture of a :meth:`to_json` record."""


class SequentialSpace(DecisionSpace):
    """Base of image search spaces a sequential policy can search (NAS-RL's chain, NASNet cells, ENAS, ...):
    a :class:`DecisionSpace` whose ``build`` makes the child network, whose ``forward(x)`` returns class
    logits, or ``(logits, aux_logits)`` when it has an auxiliary head (``aux_logits`` None outside training).
    A network with a writable ``drop_path_prob`` attribute is driven by ScheduledDropPath.
    An abstract base class rather than a Protocol so LightningCLI recipes can name any
    subclass by ``class_path``.
    """

    @abc.abstractmethod
    def build(self, architecture: Any, in_channels: int, num_classes: int, image_size: Any) -> Any:
        """The child network (an ``nn.Module``) of an architecture."""

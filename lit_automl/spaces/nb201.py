"""The NAS-Bench-201 cell space and its macro network (Dong & Yang, "NAS-Bench-201: Extending the Scope of
Reproducible Neural Architecture Search", ICLR 2020, Sec. 2.1 "Architectures in the Search Space").

A cell is a DAG of 4 nodes: node 0 is the cell input, node ``j`` (1..3) sums one operation applied to every
earlier node, and node 3 is the cell output, so a cell is 6 edges, each one of 5 operations
(:data:`NB201_OPS`), 5 ** 6 = 15,625 cells. The text form is the benchmark's
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (node 1, 2, 3 joined by ``+``; ``op~i`` is the edge from node ``i``).

Where the paper is silent we follow the authors' code (AutoDL-Projects):

* ops (``lib/models/cell_operations.py``): ``nor_conv_kxk`` = ReLU -> conv kxk (padding k // 2, no bias) ->
  BN (affine, running statistics); ``avg_pool_3x3`` = 3x3 average pooling, stride 1, padding 1, padding not
  counted; ``skip_connect`` the identity; ``none`` zeros;
* the benchmark's architecture index (``exps/NAS-Bench-201/main.py`` ``generate_meta_info``): the 15,625 cells
  are enumerated as ``CellStructure.gen_all`` does -- every edge over :data:`NB201_OPS` in order, the edges
  in string order with the first edge varying slowest -- and that list is shuffled by Python's ``random``
  after ``random.seed(88)``. Index ``i`` is the position after the shuffle. The authors' script asserts
  indices 0, 9 and 123; the tests check the same three strings;
* isomorphism (``CellStructure.to_unique_str(consider_zero=True)``, which the NATS-Bench API's
  ``get_unique_str`` calls): a node is the sorted ``+``-join of its inputs' terms; ``none`` or an edge from a
  zero node gives the zero term ``#``, ``skip_connect`` passes its input's text, another op gives
  ``(input)@op``. Equal texts are one class: 6,466 classes among the 15,625 cells (the paper's figure).
  The rule is the reference's, quirks included: only a node whose text is exactly ``#`` counts as zero, so a
  dead node 2 (text ``#+#``) is not collapsed, and a skip passes a node's whole sum as one sorted term
  (sums are not flattened). Collapsing dead nodes would give 6,285 classes, flattening sums as well 4,930;
  we keep the reference's rule so the classes are the benchmark's;
* the macro network (``lib/models/cell_infers/tiny_network.py``): stem conv 3x3 + BN; three stages of ``N``
  cells at ``C``, ``2C``, ``4C`` channels joined by a stride-2 residual block (``ResNetBasicblock``:
  ReLU-conv 3x3 (stride 2)-BN, ReLU-conv 3x3-BN, plus a shortcut of 2x2 average pooling then a 1x1 conv,
  no BN); head BN-ReLU, global average pooling, linear. ``C = 16, N = 5`` is the benchmark's setting.
  The shortcut's pooling uses ``ceil_mode`` so odd map sizes work; on even sizes (every benchmark
  input) it is the authors' pooling exactly.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl._checks import check_int
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.decisions import Decision, SequentialSpace, check_tokens, read_json_record
from lit_automl.spaces.networks import check_image_input
from lit_automl.spaces.op_names import NB201_OPS
from lit_automl.spaces.ops import ReLUConvBN, Zero, get_op

__all__ = ["NB201_EDGES", "NB201_NUM_ARCHS", "NB201_OPS", "NB201Arch", "NB201Cell", "NB201Network",
           "NB201Macro", "NB201ResidualBlock", "NB201Space", "nb201_archs", "nb201_index", "nb201_unique_archs"]

NB201_EDGES: Tuple[Tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""The 6 edges as ``(source, target)`` nodes, in the order of the arch string (and of the tokens)."""

NB201_NUM_ARCHS = len(NB201_OPS) ** len(NB201_EDGES)
"""15,625 cells."""

BENCHMARK_SEED = 88
"""The seed of the shuffle that orders the benchmark's architectures (authors' ``generate_meta_info``)."""

_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"


def _fail(text: str, why: str) -> ValueError:
    return ValueError(f"bad NAS-Bench-201 arch string {text!r}: {why}; the format is {_FORMAT!r} with op one of "
                      f"{list(NB201_OPS)}")


@dataclass(frozen=True)
class NB201Arch:
    """One cell: ``ops[e]`` is the operation on edge ``NB201_EDGES[e]`` (immutable, hashable)."""

    ops: Tuple[str, ...]

    def __post_init__(self) -> None:
        ops = self.ops
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or len(ops) != len(NB201_EDGES):
            raise ValueError(f"an NB201Arch takes {len(NB201_EDGES)} op names, one per edge "
                             f"{list(NB201_EDGES)} (source, target), got {ops!r}")
        for (src, dst), op in zip(NB201_EDGES, ops):
            if op not in NB201_OPS:
                raise ValueError(f"edge {src}->{dst}: unknown operation {op!r}; allowed: {list(NB201_OPS)}")
        object.__setattr__(self, "ops", tuple(ops))

    # ------------------------------------------------------------------ text form
    @classmethod
    def parse(cls, text: str) -> "NB201Arch":
        """Read ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; node ``j`` must list each source ``0..j-1`` once
        (in any order). Errors name the bad token and what is allowed."""
        if not isinstance(text, str):
            raise ValueError(f"a NAS-Bench-201 arch string must be a str, got {text!r}")
        groups = text.strip().split("+")
        if len(groups) != 3:
            raise _fail(text, f"expected 3 nodes joined by '+', got {len(groups)}")
        found: Dict[Tuple[int, int], str] = {}
        for dst, group in enumerate(groups, start=1):
            if len(group) < 2 or group[0] != "|" or group[-1] != "|":
                raise _fail(text, f"node {dst} {group!r} must start and end with '|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != dst:
                raise _fail(text, f"node {dst} {group!r} has {len(tokens)} edges; node {dst} takes {dst} "
                                  f"(one from each of nodes 0..{dst - 1})")
            for token in tokens:
                op, sep, src_text = token.partition("~")
                if not sep or not src_text.isdigit():
                    raise _fail(text, f"node {dst}: edge {token!r} is not 'op~source' (source an int)")
                if op not in NB201_OPS:
                    raise _fail(text, f"node {dst}: edge {token!r} has unknown operation {op!r}")
                src = int(src_text)
                if src >= dst:
                    raise _fail(text, f"node {dst}: edge {token!r} comes from node {src}, which is not before "
                                      f"node {dst} (allowed sources: 0..{dst - 1})")
                if (src, dst) in found:
                    raise _fail(text, f"node {dst}: edge {token!r} repeats source {src}")
                found[(src, dst)] = op
        return cls(tuple(found[edge] for edge in NB201_EDGES))

    def __str__(self) -> str:
        nodes = [[f"{op}~{src}" for (src, d), op in zip(NB201_EDGES, self.ops) if d == dst] for dst in (1, 2, 3)]
        return "+".join("|" + "|".join(node) + "|" for node in nodes)

    # ------------------------------------------------------------------ indices
    @property
    def code(self) -> int:
        """Position in the enumeration before the shuffle (base 5, the first edge most significant)."""
        code = 0
        for op in self.ops:
            code = code * len(NB201_OPS) + NB201_OPS.index(op)
        return code

    @classmethod
    def from_code(cls, code: int) -> "NB201Arch":
        """Inverse of :attr:`code`."""
        code = check_int("code", code, low=0, high=NB201_NUM_ARCHS - 1)
        digits = []
        for _ in NB201_EDGES:
            code, d = divmod(code, len(NB201_OPS))
            digits.append(NB201_OPS[d])
        return cls(tuple(reversed(digits)))

    @property
    def index(self) -> int:
        """The architecture's index in NAS-Bench-201 (0..15,624), as the benchmark's API numbers it."""
        return _index_of_code()[self.code]

    @classmethod
    def from_index(cls, index: int) -> "NB201Arch":
        """The architecture with benchmark index ``index``."""
        index = check_int("index", index, low=0, high=NB201_NUM_ARCHS - 1,
                          allowed=f"a NAS-Bench-201 index in [0, {NB201_NUM_ARCHS})")
        return cls.from_code(_code_of_index()[index])

    # ------------------------------------------------------------------ isomorphism
    @property
    def unique_str(self) -> str:
        """The benchmark's isomorphism key (module docstring): cells with equal keys compute the same function
        up to their weights; ``#`` is a zero term."""
        nodes = ["0"]
        for dst in (1, 2, 3):
            terms = []
            for (src, d), op in zip(NB201_EDGES, self.ops):
                if d != dst:
                    continue
                if op == "none" or nodes[src] == "#":
                    terms.append("#")
                elif op == "skip_connect":
                    terms.append(nodes[src])
                else:
                    terms.append(f"({nodes[src]})@{op}")
            nodes.append("+".join(sorted(terms)))
        return nodes[3]

    def canonical(self) -> "NB201Arch":
        """The representative of the cell's isomorphism class: its member with the smallest benchmark index."""
        return NB201Arch.from_index(_representatives()[self.unique_str])

    @property
    def is_zero(self) -> bool:
        """Whether the cell's output is always zero: no path of non-``none`` edges from node 0 to node 3
        (the authors' ``check_valid`` is its negation)."""
        live = [True]
        for dst in (1, 2, 3):
            live.append(any(live[src] and op != "none" for (src, d), op in zip(NB201_EDGES, self.ops) if d == dst))
        return not live[3]


@functools.lru_cache(maxsize=1)
def _code_of_index() -> Tuple[int, ...]:
    codes = list(range(NB201_NUM_ARCHS))
    random.Random(BENCHMARK_SEED).shuffle(codes)  # the same draws as random.seed(88); random.shuffle(archs)
    return tuple(codes)


@functools.lru_cache(maxsize=1)
def _index_of_code() -> Tuple[int, ...]:
    inverse = [0] * NB201_NUM_ARCHS
    for index, code in enumerate(_code_of_index()):
        inverse[code] = index
    return tuple(inverse)


@functools.lru_cache(maxsize=1)
def _representatives() -> Dict[str, int]:
    reps: Dict[str, int] = {}
    for arch in nb201_archs():
        reps.setdefault(arch.unique_str, arch.index)
    return reps


def nb201_archs() -> Iterator[NB201Arch]:
    """All 15,625 cells in benchmark-index order."""
    return (NB201Arch.from_code(code) for code in _code_of_index())


def nb201_unique_archs() -> List[NB201Arch]:
    """One cell per isomorphism class (6,466), each its class's smallest benchmark index, in index order."""
    return [NB201Arch.from_index(i) for i in sorted(_representatives().values())]


def nb201_index(arch: Union[NB201Arch, str]) -> int:
    """The benchmark index of an arch or an arch string."""
    return _as_arch(arch).index


def _as_arch(arch: Union[NB201Arch, str]) -> NB201Arch:
    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Arch.parse(arch)
    raise ValueError(f"expected an NB201Arch or its arch string {_FORMAT!r}, got {arch!r}")


# ---------------------------------------------------------------------------------------- networks
class NB201Cell(nn.Module):
    """One cell at ``C`` channels, stride 1: node ``j`` sums its edges' ops; the output is node 3."""

    def __init__(self, arch: Union[NB201Arch, str], C: int) -> None:
        super().__init__()
        self.arch = _as_arch(arch)
        self.edges = nn.ModuleList(get_op(op, C, 1) for op in self.arch.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in (1, 2, 3):
            terms = [op(nodes[src]) for (src, d), op in zip(NB201_EDGES, self.edges)
                     if d == dst and not isinstance(op, Zero)]  # a zero term adds nothing
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[3]


class NB201ResidualBlock(nn.Module):
    """The stride-2 residual block between stages (authors' ``ResNetBasicblock``): ReLU-conv 3x3/2-BN,
    ReLU-conv 3x3-BN, added to a shortcut of 2x2 average pooling and a bias-free 1x1 conv."""

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True),
                                        nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Macro(nn.Module):
    """The benchmark's macro skeleton (module docstring), one builder for the network of one cell and the
    supernet (:class:`~lit_automl.spaces.nb201_supernet.NB201SearchNetwork`, which the authors' DARTS search
    builds the same way, ``search_model_darts.py``): stem, three stages of ``N`` cells from ``make_cell(C)``
    at ``C``, ``2C``, ``4C`` joined by :class:`NB201ResidualBlock`, all in ``cells``; :meth:`head` is
    BN-ReLU, global average pooling, linear."""

    def __init__(self, make_cell: Callable[[int], nn.Module], C: int, N: int, num_classes: int,
                 in_channels: int) -> None:
        super().__init__()
        C = check_int("C", C, low=1, allowed="a positive int")
        N = check_int("N", N, low=1, allowed="a positive int")
        num_classes = check_int("num_classes", num_classes, low=1, allowed="a positive int")
        self.in_channels = check_int("in_channels", in_channels, low=1, allowed="a positive int")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), BatchNorm2d(C))
        layers: List[nn.Module] = []
        C_prev = C
        for stage in range(3):
            C_curr = C * 2 ** stage
            if stage:
                layers.append(NB201ResidualBlock(C_prev, C_curr))
            layers += [make_cell(C_curr) for _ in range(N)]
            C_prev = C_curr
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(BatchNorm2d(C_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of the last stage's features."""
        return self.classifier(self.global_pooling(self.lastact(features)).flatten(1))


class NB201Network(NB201Macro):
    """The benchmark's macro network around one cell (module docstring); ``forward(x)`` returns logits.

    Args:
        arch: the cell, an :class:`NB201Arch` or its string.
        C: channels of the stem and the first stage (16 in the benchmark).
        N: cells per stage (5 in the benchmark).
        num_classes: classes of the linear head.
        in_channels: image channels (3 for CIFAR and ImageNet16).
    """

    def __init__(self, arch: Union[NB201Arch, str], C: int = 16, N: int = 5, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        arch = _as_arch(arch)
        super().__init__(lambda C_curr: NB201Cell(arch, C_curr), C, N, num_classes, in_channels)
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_channels, reductions=2)
        return self.head(self.cells(self.stem(x)))


# ---------------------------------------------------------------------------------------- the space
class NB201Space(SequentialSpace):
    """NAS-Bench-201 as a :class:`~lit_automl.spaces.decisions.SequentialSpace`: 6 categorical decisions of 5
    ops (:data:`NB201_OPS` order), one per edge in the arch string's order.

    Args:
        C: channels of the built network's first stage (16, the benchmark's).
        N: cells per stage of the built network (5, the benchmark's).
    """

    def __init__(self, C: int = 16, N: int = 5) -> None:
        self.C = check_int("C", C, low=1, allowed="a positive int")
        self.N = check_int("N", N, low=1, allowed="a positive int")
        self._decisions = [Decision.categorical(f"node{dst}~{src}", len(NB201_OPS)) for src, dst in NB201_EDGES]

    def __repr__(self) -> str:
        return f"NB201Space(C={self.C}, N={self.N})"

    def decisions(self) -> List[Decision]:
        """``node{j}~{i}``: the op on the edge from node ``i`` into node ``j``, in string order."""
        return list(self._decisions)

    def decode(self, tokens: Sequence[int]) -> NB201Arch:
        """6 op tokens (indices into :data:`NB201_OPS`) -> the cell."""
        tokens = check_tokens(self._decisions, tokens, "an NB-201 cell", "one op per edge " + ", ".join(
            f"{i}->{j}" for i, j in NB201_EDGES) + f"; op tokens index {list(NB201_OPS)}")
        return NB201Arch(tuple(NB201_OPS[t] for t in tokens))

    def encode(self, architecture: Union[NB201Arch, str]) -> List[int]:
        """Inverse of :meth:`decode`."""
        return [NB201_OPS.index(op) for op in _as_arch(architecture).ops]

    def to_json(self, architecture: Union[NB201Arch, str]) -> Dict[str, Any]:
        """``{"arch": "<arch string>"}``."""
        return {"arch": str(_as_arch(architecture))}

    def from_json(self, data: Union[Mapping[str, Any], str, os.PathLike]) -> NB201Arch:
        """Read a :meth:`to_json` record, its JSON text, a file holding it, or the arch string itself."""
        if isinstance(data, str) and data.lstrip().startswith("|"):
            return NB201Arch.parse(data)
        record = read_json_record(data)
        if record is None or set(record) != {"arch"} or not isinstance(record["arch"], str):
            raise ValueError(f'an NB-201 record must be {{"arch": "{_FORMAT}"}} (as a mapping, JSON text or file) '
                             f"or the arch string itself, got {data!r}")
        return NB201Arch.parse(record["arch"])

    def build(self, architecture: Union[NB201Arch, str], in_channels: int, num_classes: int,
              image_size: Any = None) -> NB201Network:
        """The benchmark's network (``image_size`` unused: it is fully convolutional)."""
        return NB201Network(architecture, self.C, self.N, num_classes, in_channels)

    def __iter__(self) -> Iterator[NB201Arch]:
        """Every cell of the space, in benchmark-index order."""
        return nb201_archs()


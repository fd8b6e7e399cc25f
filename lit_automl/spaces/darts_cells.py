"""The DARTS cell space as decisions: derived (discrete) DARTS cells a sample-based search can propose.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 2.4: a derived
cell keeps, for every intermediate node, the 2 strongest inputs from distinct earlier states, each
through one non-``none`` operation; the cell's output concatenates its intermediate nodes; a network
repeats one normal and one reduction cell (:class:`~lit_automl.spaces.networks.NetworkCIFAR`).
Layout and notation (states 0, 1 the cell inputs, node ``i`` is state ``i + 2``):
:mod:`lit_automl.spaces.geometry`.

Decisions, normal cell first, then reduction cell, per node ``i`` (``steps`` nodes per cell):

* ``<cell>.n<i>.inputs``: the unordered pair of distinct inputs, one of the ``C(i + 2, 2)`` pairs of
  ``node_inputs(i)`` in lexicographic order (``(0, 1), (0, 2), (1, 2), ...``);
* ``<cell>.n<i>.op_a`` / ``<cell>.n<i>.op_b``: the op on the lower / the higher input, one of the
  non-``none`` primitives (:func:`~lit_automl.spaces.sampling.candidate_ops`, in primitive order).

A cell type has ``prod_i C(i + 2, 2) * |O|^2`` cells (``|O|`` the non-``none`` ops): with the DARTS
ops and 4 nodes 180 * 7^8, about 1.04e9 per cell type and about 1.08e18 (normal, reduction) pairs.

Uniform tokens give uniform cells: a uniformly random action sequence (``RandomSearch``) draws every
node's input pair uniformly and every op uniformly and independently, which is exactly the
distribution of :func:`~lit_automl.spaces.sampling.sample_genotype`, the sampler of
:meth:`lit_automl.nas.one_shot.OneShot.sample_architectures` (Bender et al., ICML 2018, Sec. 3).
The one difference: ``OneShot.sample_architectures`` draws ``N`` *distinct* architectures (duplicates
redrawn), while a random search draws children independently (with replacement).

Decoded genotypes list each node's two edges by increasing input index; :meth:`DartsCellSpace.encode`
accepts either order, so ``decode(encode(g))`` equals ``g`` up to the order of a node's two edges.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, Dict, List, Sequence, Tuple, Union

from lit_automl._checks import check_bool, check_int
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, check_tokens
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_inputs, output_concat
from lit_automl.spaces.networks import NetworkCIFAR
from lit_automl.spaces.ops import resolve_primitives
from lit_automl.spaces.published import resolve_genotype
from lit_automl.spaces.sampling import EDGES_PER_NODE, candidate_ops

__all__ = ["DartsCellSpace", "input_pairs"]

_FIELDS = ("inputs", "op_a", "op_b")
_AUX_IMAGE_SIZE = 32
"""NetworkCIFAR's auxiliary head is sized for the 8x8 map of a 32x32 input (DARTS Sec. 3.2)."""


def input_pairs(node: int) -> List[Tuple[int, int]]:
    """The unordered pairs of distinct inputs node ``node`` may read, in lexicographic order."""
    return list(itertools.combinations(node_inputs(check_int("node", node, low=0)), EDGES_PER_NODE))


class DartsCellSpace(SequentialSpace):
    """Derived DARTS cells (module docstring) as categorical decisions; builds :class:`NetworkCIFAR` children.

    Args:
        primitives: the op set: an op-set name of :data:`~lit_automl.spaces.ops.OP_SETS` (``"darts"``, the
            paper's 8 ops with ``none``) or a list of op names; ``none`` is never chosen.
        steps: intermediate nodes per cell (4, DARTS's).
        multiplier: the cell output concatenates the last ``multiplier`` nodes (4: all of them, DARTS's).
        C, layers, auxiliary, stem_multiplier: the built :class:`NetworkCIFAR` (DARTS's CIFAR-10
            evaluation network by default: C=36, 20 cells, auxiliary head, stem 3C; Sec. 3.2). The
            auxiliary head needs 32x32 inputs: set ``auxiliary=False`` for other image sizes.
    """

    def __init__(self, primitives: Union[str, Sequence[str]] = "darts", steps: int = 4, multiplier: int = 4,
                 C: int = 36, layers: int = 20, auxiliary: bool = True, stem_multiplier: int = 3) -> None:
        self.primitives = resolve_primitives(primitives)
        self.ops = tuple(self.primitives[k] for k in candidate_ops(self.primitives))
        if not self.ops:
            raise ValueError(f"primitives {list(self.primitives)} have no operation other than 'none'")
        self.steps = check_int("steps", steps, low=1)
        self.multiplier = check_int("multiplier", multiplier, low=1, high=self.steps,
                                    hint="the cell output concatenates the last `multiplier` of `steps` nodes")
        self.C = check_int("C", C, low=1, allowed="a positive int")
        self.layers = check_int("layers", layers, low=1, allowed="a positive int")
        self.auxiliary = check_bool("auxiliary", auxiliary)
        self.stem_multiplier = check_int("stem_multiplier", stem_multiplier, low=1, allowed="a positive int")
        self.concat = output_concat(self.steps, self.multiplier)
        self._decisions = [
            Decision.categorical(f"{cell}.n{i}.{field}", len(input_pairs(i)) if field == "inputs" else len(self.ops))
            for cell in CELL_TYPES for i in range(self.steps) for field in _FIELDS
        ]

    def __repr__(self) -> str:
        return (f"DartsCellSpace(primitives={list(self.primitives)}, steps={self.steps}, multiplier={self.multiplier}, "
                f"C={self.C}, layers={self.layers}, auxiliary={self.auxiliary}, stem_multiplier={self.stem_multiplier})")

    # ------------------------------------------------------------------ size
    def num_cells(self) -> int:
        """Cells of one type: ``prod_i C(i + 2, 2) * |O|^2`` (module docstring)."""
        return math.prod(len(input_pairs(i)) * len(self.ops) ** EDGES_PER_NODE for i in range(self.steps))

    def num_architectures(self) -> int:
        """Architectures: a normal and a reduction cell, ``num_cells() ** 2``."""
        return self.num_cells() ** 2

    # ------------------------------------------------------------------ tokens <-> genotypes
    def decisions(self) -> List[Decision]:
        """``3 * steps`` decisions per cell (input pair, op on the lower input, op on the higher), normal first."""
        return list(self._decisions)

    def decode(self, actions: Sequence[Action]) -> Genotype:
        """One full action sequence -> the genotype (each node's edges by increasing input index)."""
        tokens = check_tokens(self._decisions, actions, f"a DARTS cell pair of {self.steps} nodes each",
                              f"per cell and node: input pair, op_a, op_b; ops index {list(self.ops)}")
        cells: Dict[str, List[Tuple[Tuple[str, int], ...]]] = {}
        k = 0
        for cell in CELL_TYPES:
            nodes = []
            for i in range(self.steps):
                pair, op_a, op_b = tokens[k: k + 3]
                k += 3
                lo, hi = input_pairs(i)[pair]
                nodes.append(((self.ops[op_a], lo), (self.ops[op_b], hi)))
            cells[cell] = nodes
        return Genotype(normal=cells["normal"], normal_concat=self.concat, reduce=cells["reduce"],
                        reduce_concat=self.concat)

    def encode(self, architecture: Any) -> List[int]:
        """Inverse of :meth:`decode`; refuses a genotype outside this space, naming the cell, node and value."""
        genotype = self._as_genotype(architecture)
        tokens: List[int] = []
        for cell in CELL_TYPES:
            view = genotype.cells()[cell]
            if view.steps != self.steps:
                raise ValueError(f"the {cell} cell has {view.steps} nodes but this space has steps={self.steps}")
            if list(view.concat) != self.concat:
                raise ValueError(f"{cell}_concat is {list(view.concat)}; this space (steps={self.steps}, "
                                 f"multiplier={self.multiplier}) concatenates {self.concat}")
            if any(method != "add" for method in genotype.combine(cell)):
                raise ValueError(f"{cell}_combine is {list(genotype.combine(cell))}; DARTS nodes add their edges "
                                 "(allowed: every node 'add')")
            for i, node in enumerate(view.nodes):
                if len(node) != EDGES_PER_NODE:
                    raise ValueError(f"{cell} node {i} has {len(node)} edges; a derived DARTS node has exactly "
                                     f"{EDGES_PER_NODE}: {node!r}")
                (op_a, lo), (op_b, hi) = sorted(node, key=lambda edge: edge[1])
                if lo == hi:
                    raise ValueError(f"{cell} node {i} reads input {lo} twice; its 2 inputs must be distinct: {node!r}")
                for op in (op_a, op_b):
                    if op not in self.ops:
                        raise ValueError(f"{cell} node {i}: op {op!r} is not in this space; allowed {list(self.ops)} "
                                         "(the primitives other than 'none')")
                tokens += [input_pairs(i).index((lo, hi)), self.ops.index(op_a), self.ops.index(op_b)]
        return tokens

    def check(self, architecture: Any) -> Genotype:
        """``architecture`` as a :class:`Genotype` of this space (the errors of :meth:`encode` otherwise)."""
        genotype = self._as_genotype(architecture)
        self.encode(genotype)
        return genotype

    def to_json(self, architecture: Any) -> Dict[str, Any]:
        """The plain-JSON record (:meth:`Genotype.to_dict`) of a genotype of this space."""
        return self.check(architecture).to_dict()

    def from_json(self, data: Any) -> Genotype:
        """Inverse of :meth:`to_json`; also the JSON text, a genotype file or text (:func:`resolve_genotype`)."""
        return self.check(data)

    @staticmethod
    def _as_genotype(architecture: Any) -> Genotype:
        if isinstance(architecture, Mapping):
            return Genotype.from_dict(architecture)
        return resolve_genotype(architecture)

    # ------------------------------------------------------------------ networks
    def build(self, architecture: Any, in_channels: int, num_classes: int, image_size: Any) -> NetworkCIFAR:
        """The child :class:`NetworkCIFAR` with this space's C, layers, auxiliary head and stem (as Retrain builds)."""
        genotype = self.check(architecture)
        if self.auxiliary and image_size != _AUX_IMAGE_SIZE:
            raise ValueError(f"the auxiliary head of NetworkCIFAR is sized for {_AUX_IMAGE_SIZE}x{_AUX_IMAGE_SIZE} "
                             f"inputs, got image_size={image_size!r}: build the space with auxiliary=False")
        return NetworkCIFAR(genotype, C=self.C, num_classes=num_classes, layers=self.layers, auxiliary=self.auxiliary,
                            in_channels=in_channels, stem_multiplier=self.stem_multiplier)

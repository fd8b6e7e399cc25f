"""The ENAS micro (cell) search space: controller tokens <-> :class:`~lit_automl.spaces.genotype.Genotype`.

Pham, Guan, Zoph, Le & Dean, "Efficient Neural Architecture Search via Parameter Sharing", ICML
2018, Sec. 2.3 ("Designing Convolutional Cells"). A cell has two inputs and ``B`` nodes (``B = 5``);
for each node the controller picks two earlier states and one operation for each, and the node adds
the two results. The cell output concatenates the loose ends: every state no node reads, the two
cell inputs included. The controller samples a normal cell, then a reduction cell.

Token layout, as in the authors' ``--child_fixed_arc`` string (``micro_child.py`` reads node ``b``
of a cell from tokens ``4b .. 4b + 3``): ``input_x, op_x, input_y, op_y`` per node, the normal cell's
``4B`` tokens first. Inputs are state indices (0 = ``c_{k-2}``, 1 = ``c_{k-1}``, ``2 + j`` = node
``j``), ops index :data:`~lit_automl.spaces.op_names.ENAS_OPS` (the authors' token order).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Union

from lit_automl._checks import check_int, check_real
from lit_automl.spaces.enas_micro_supernet import ENASMicroSupernet
from lit_automl.spaces.decisions import Action, Decision, SequentialSpace, validate_actions
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.geometry import CELL_TYPES, node_inputs
from lit_automl.spaces.nasnet import unused_states
from lit_automl.spaces.networks import NetworkCIFAR
from lit_automl.spaces.op_names import ENAS_OPS
from lit_automl.spaces.published import GenotypeSpec, resolve_genotype

__all__ = ["ENAS_MICRO_ARC", "ENASMicroSpace", "enas_micro_decisions", "parse_arc"]

ENAS_MICRO_ARC = ("0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 "
                  "1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1")
"""The authors' final CIFAR-10 micro architecture (``scripts/cifar10_micro_final.sh``, ``fixed_arc``):
normal cell, then reduction cell; published here as ``"ENAS"``."""

_FIELDS = ("input_x", "op_x", "input_y", "op_y")


def enas_micro_decisions(num_nodes: int = 5) -> List[Decision]:
    """The ``2 x 4B`` categorical decisions, normal cell first; per node ``c.n{b}.input_x`` (over the
    ``b + 2`` states so far), ``c.n{b}.op_x`` (over the 5 ops), then the same for ``y``."""
    num_nodes = check_int("num_nodes", num_nodes, low=1)
    return [
        Decision.categorical(f"{cell}.n{b}.{field}", len(node_inputs(b)) if field.startswith("input") else len(ENAS_OPS))
        for cell in CELL_TYPES
        for b in range(num_nodes)
        for field in _FIELDS
    ]


def parse_arc(arc: str) -> List[int]:
    """The tokens of an arc string in the authors' form (whitespace-separated ints)."""
    if not isinstance(arc, str):
        raise TypeError(f"arc must be a str of whitespace-separated ints, got {type(arc).__name__}")
    tokens = []
    for i, word in enumerate(arc.split()):
        try:
            tokens.append(int(word))
        except ValueError:
            raise ValueError(f"arc token {i} must be an int, got {word!r}") from None
    return tokens


class ENASMicroSpace(SequentialSpace):
    """The ENAS micro space as a :class:`~lit_automl.spaces.decisions.SequentialSpace`.

    ``decode`` takes the token list (or the authors' arc string) and returns a Genotype whose concat
    lists are the loose ends (:func:`~lit_automl.spaces.nasnet.unused_states`); ``encode`` inverts it
    and refuses cells outside the space. ``build`` gives a :class:`NetworkCIFAR` of ``num_layers + 2``
    cells with ``C`` channels, reductions at 1/3 and 2/3, which is the authors' layout: defaults are
    their search child (``cifar10_micro_search.sh``: 6 layers, 20 filters; ``num_layers=15``,
    ``C=36`` is the final network). The cells are DARTS's discrete cells (each input preprocessed
    by ReLU-conv1x1-BN), not the authors' weight-shared TF cells; no auxiliary head.
    """

    def __init__(self, num_nodes: int = 5, num_layers: int = 6, C: int = 20, drop_path_prob: float = 0.0):
        self.num_nodes = check_int("num_nodes", num_nodes, low=1)
        self.num_layers = check_int("num_layers", num_layers, low=1)
        self.C = check_int("C", C, low=1)
        self.drop_path_prob = check_real("drop_path_prob", drop_path_prob, low=0.0, high=1.0, high_open=True)
        self._decisions = enas_micro_decisions(self.num_nodes)

    def __repr__(self) -> str:
        return (f"ENASMicroSpace(num_nodes={self.num_nodes}, num_layers={self.num_layers}, C={self.C}, "
                f"drop_path_prob={self.drop_path_prob})")

    def decisions(self) -> List[Decision]:
        """The ``2 x 4B`` decisions (40 for ``B = 5``), normal cell first."""
        return list(self._decisions)

    def decode(self, actions: Union[Sequence[Action], str]) -> Genotype:
        """Tokens (or an arc string) -> Genotype; a token out of range names its cell, node, value and range."""
        actions = parse_arc(actions) if isinstance(actions, str) else list(actions)
        if len(actions) != len(self._decisions):
            raise ValueError(f"expected {len(self._decisions)} tokens (2 cells x {self.num_nodes} nodes x 4: "
                             f"input_x, op_x, input_y, op_y), got {len(actions)}")
        actions = validate_actions(self._decisions, actions)
        cells: Dict[str, List[Tuple[Tuple[str, int], Tuple[str, int]]]] = {}
        for c, cell in enumerate(CELL_TYPES):
            nodes = []
            for b in range(self.num_nodes):
                in_x, op_x, in_y, op_y = actions[4 * (c * self.num_nodes + b): 4 * (c * self.num_nodes + b) + 4]
                nodes.append(((ENAS_OPS[op_x], in_x), (ENAS_OPS[op_y], in_y)))
            cells[cell] = nodes
        return Genotype(normal=cells["normal"], normal_concat=unused_states(cells["normal"]),
                        reduce=cells["reduce"], reduce_concat=unused_states(cells["reduce"]))

    def encode(self, genotype: GenotypeSpec) -> List[int]:
        """Inverse of :meth:`decode`: ``num_nodes`` nodes of 2 added edges over ENAS ops, concat = loose ends."""
        g = resolve_genotype(genotype)
        tokens: List[int] = []
        for cell in CELL_TYPES:
            nodes, concat = g.cells()[cell]
            if len(nodes) != self.num_nodes:
                raise ValueError(f"{cell} cell has {len(nodes)} nodes; this space has num_nodes={self.num_nodes}")
            if any(method != "add" for method in g.combine(cell)):
                raise ValueError(f"{cell} cell combines nodes by {list(g.combine(cell))}; ENAS nodes only add")
            for b, node in enumerate(nodes):
                if len(node) != 2:
                    raise ValueError(f"{cell} node {b} has {len(node)} edges; an ENAS node has exactly 2: {node!r}")
                for op, index in node:
                    if op not in ENAS_OPS:
                        raise ValueError(f"{cell} node {b}: op {op!r} is not an ENAS op; allowed: {list(ENAS_OPS)}")
                    tokens += [index, ENAS_OPS.index(op)]
            if tuple(concat) != unused_states(nodes):
                raise ValueError(f"{cell}_concat {list(concat)} is not the cell's loose ends "
                                 f"{list(unused_states(nodes))}, which an ENAS cell outputs")
        return tokens

    def to_json(self, genotype: GenotypeSpec) -> Dict[str, Any]:
        """The plain-JSON record of an architecture (:meth:`Genotype.to_dict`)."""
        return resolve_genotype(genotype).to_dict()

    def from_json(self, data: Union[Dict[str, Any], str]) -> Genotype:
        """Inverse of :meth:`to_json`; also accepts the JSON text."""
        return Genotype.from_json(data) if isinstance(data, str) else Genotype.from_dict(data)

    def build(self, genotype: GenotypeSpec, in_channels: int, num_classes: int, image_size: Any = None) -> NetworkCIFAR:
        """The child network: ``num_layers + 2`` cells (``image_size`` is not needed: no auxiliary head)."""
        return NetworkCIFAR(resolve_genotype(genotype), C=self.C, num_classes=num_classes, layers=self.num_layers + 2,
                            auxiliary=False, drop_path_prob=self.drop_path_prob, in_channels=in_channels)

    def supernet(self, in_channels: int, num_classes: int) -> ENASMicroSupernet:
        """The weight-shared network every child of this space runs on (ENAS search), at ``num_layers`` and ``C``."""
        return ENASMicroSupernet(self.num_nodes, self.num_layers, self.C, in_channels, num_classes)

"""One entry point for every recurrent cell a language model can be built with.

Three kinds of cell come out of this library's searches: a DARTS
:class:`~lit_automl.spaces.recurrent_genotype.RecurrentGenotype` (published names, text form, files), an
ENAS cell (:class:`~lit_automl.spaces.enas_rnn.ENASRecurrentArch`, the ``{"nodes": ...}`` record the ENAS
search writes) and a NAS-RL tree cell (:class:`~lit_automl.spaces.nas_rl_cell.TreeCell`, the
``{"base": B, "tokens": [...]}`` record). :func:`resolve_recurrent_cell` reads any of them,
:func:`recurrent_cell_text` gives the text a checkpoint keeps, and :func:`recurrent_cell_module` the
module :class:`~lit_automl.spaces.recurrent.RecurrentLM` runs.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from torch import nn

from lit_automl.spaces.enas_rnn import ENASRecurrentArch, ENASRecurrentCell, ENASRecurrentSpace, read_enas_rnn_architecture
from lit_automl.spaces.nas_rl_cell import NASRLCell, TreeCell, read_tree_cell, tree_cell_record
from lit_automl.spaces.published import resolve_recurrent_genotype
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype

__all__ = ["RecurrentCell", "recurrent_cell_module", "recurrent_cell_text", "resolve_recurrent_cell"]

RecurrentCell = Union[RecurrentGenotype, ENASRecurrentArch, TreeCell]


def resolve_recurrent_cell(spec: Any) -> RecurrentCell:
    """The cell ``spec`` names: an ENAS record (``"nodes"``) or a NAS-RL record (``"tokens"``) given as the
    object, its JSON text or a file; otherwise anything
    :func:`~lit_automl.spaces.published.resolve_recurrent_genotype` takes (a DARTS cell)."""
    enas = read_enas_rnn_architecture(spec)
    if enas is not None:
        return enas
    tree = read_tree_cell(spec)
    if tree is not None:
        return tree
    return resolve_recurrent_genotype(spec)


def recurrent_cell_text(cell: RecurrentCell) -> str:
    """The text that resolves back to ``cell``: the DARTS text form, or the JSON record of an ENAS / NAS-RL cell."""
    if isinstance(cell, ENASRecurrentArch):
        return json.dumps(ENASRecurrentSpace(cell.num_nodes).to_json(cell))
    if isinstance(cell, TreeCell):
        return json.dumps(tree_cell_record(cell))
    return str(cell)


def recurrent_cell_module(cell: RecurrentCell, ninp: int, nhid: int, dropout_h: float,
                          dropout_x: float) -> Optional[nn.Module]:
    """The fixed cell module of an ENAS or NAS-RL cell (``None`` for a DARTS genotype, which RecurrentLM builds
    from the genotype itself). The NAS-RL tree cell has no variational dropout inside, so ``dropout_h`` and
    ``dropout_x`` must be 0 for it."""
    if isinstance(cell, ENASRecurrentArch):
        return ENASRecurrentCell(ninp, nhid, cell.num_nodes, dropout_h, dropout_x, architecture=cell)
    if isinstance(cell, TreeCell):
        if dropout_h or dropout_x:
            raise ValueError(f"the NAS-RL tree cell has no dropout inside: set dropout_h=0 and dropout_x=0, got "
                             f"dropout_h={dropout_h}, dropout_x={dropout_x}")
        return NASRLCell(ninp, nhid, cell)
    return None

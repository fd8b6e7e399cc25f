"""Search spaces: what can be built (operations, genotypes, cells, networks); no training logic."""

from lit_automl.spaces.cells import Cell, MixedEdge, SearchCell, num_search_edges
from lit_automl.spaces.decisions import Decision
from lit_automl.spaces.derive import derive_cell, derive_genotype, edge_entropy
from lit_automl.spaces.drop_path import DropPath, drop_path
from lit_automl.spaces.genotype import (
    PUBLISHED_GENOTYPES,
    Genotype,
    GenotypeParseError,
    get_genotype,
    resolve_genotype,
)
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet, SearchNetwork, count_parameters
from lit_automl.spaces.ops import DARTS_OPS, OP_SETS, OPS, get_op, get_op_set, register_op
from lit_automl.spaces.plot import plot_genotype

__all__ = [
    "Cell", "MixedEdge", "SearchCell", "num_search_edges",
    "Decision",
    "derive_cell", "derive_genotype", "edge_entropy",
    "DropPath", "drop_path",
    "PUBLISHED_GENOTYPES", "Genotype", "GenotypeParseError", "get_genotype", "resolve_genotype",
    "NetworkCIFAR", "NetworkImageNet", "SearchNetwork", "count_parameters",
    "DARTS_OPS", "OP_SETS", "OPS", "get_op", "get_op_set", "register_op",
    "plot_genotype",
]

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
from lit_automl.spaces.chain import ChainArchitecture, ChainLayer, ChainNetwork, ChainSpace  # noqa: E402
__all__ += ["ChainArchitecture", "ChainLayer", "ChainNetwork", "ChainSpace"]
from lit_automl.spaces.drop_path import sample_keep_mask  # noqa: E402
from lit_automl.spaces.fractalnet import FractalBlock, FractalNet  # noqa: E402
__all__ += ["sample_keep_mask", "FractalBlock", "FractalNet"]

from lit_automl.spaces.genotype import COMBINE_METHODS  # noqa: E402
from lit_automl.spaces.nasnet import NASNetCell, NASNetCellSpace, NASNetCIFAR, unused_states  # noqa: E402
from lit_automl.spaces.ops import NASNET_OPS  # noqa: E402

__all__ += ["COMBINE_METHODS", "NASNetCell", "NASNetCellSpace", "NASNetCIFAR", "unused_states", "NASNET_OPS"]

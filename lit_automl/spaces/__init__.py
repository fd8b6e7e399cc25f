"""Search spaces: what can be built (operations, genotypes, cells, networks); no training logic."""

from lit_automl.spaces.cells import Cell, MixedEdge, SearchCell, num_search_edges
from lit_automl.spaces.chain import ChainArchitecture, ChainLayer, ChainNetwork, ChainSpace
from lit_automl.spaces.decisions import Decision, DecisionSpace, SequentialSpace
from lit_automl.spaces.derive import derive_cell, derive_genotype, derive_recurrent, edge_entropy
from lit_automl.spaces.drop_path import DropPath, drop_path, sample_keep_mask
from lit_automl.spaces.enas_macro import (ENAS_MACRO_OPS, ENASMacroArchitecture, ENASMacroLayer, ENASMacroNetwork,
                                          ENASMacroSpace, ENASMacroSupernet, macro_pool_layers)
from lit_automl.spaces.enas_micro import ENAS_MICRO_ARC, ENASMicroSpace, enas_micro_decisions
from lit_automl.spaces.enas_micro_supernet import ENASMicroSupernet
from lit_automl.spaces.enas_rnn import (ENAS_ACTIVATIONS, ENASRecurrentArch, ENASRecurrentCell, ENASRecurrentSpace,
                                        decode_enas_rnn, enas_init_range, enas_rnn_decisions, encode_enas_rnn)
from lit_automl.spaces.fractalnet import FractalBlock, FractalNet
from lit_automl.spaces.genotype import COMBINE_METHODS, Genotype, GenotypeParseError, UnknownOperationError
from lit_automl.spaces.nas_rl_cell import (NAS_CELL, NAS_CELL_TOKENS, NASRLCell, NASRLCellSpace, TreeCell,
                                           decode_tree_cell, encode_tree_cell, tree_cell_decisions)
from lit_automl.spaces.recurrent_cells import recurrent_cell_module, recurrent_cell_text, resolve_recurrent_cell
from lit_automl.spaces.nasnet import NASNetCell, NASNetCellSpace, NASNetCIFAR, unused_states
from lit_automl.spaces.networks import NetworkCIFAR, NetworkImageNet, SearchNetwork, count_parameters
from lit_automl.spaces.op_names import DARTS_RNN_OPS, RECURRENT_OP_SETS, get_recurrent_op_set
from lit_automl.spaces.ops import DARTS_OPS, ENAS_OPS, NASNET_OPS, OP_SETS, OPS, get_op, get_op_set, register_op
from lit_automl.spaces.plot import plot_genotype
from lit_automl.spaces.published import (PUBLISHED_GENOTYPES, PUBLISHED_RECURRENT_GENOTYPES, get_genotype,
                                         get_recurrent_genotype, resolve_genotype, resolve_recurrent_genotype)
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype, num_recurrent_edges, recurrent_edge_slices
from lit_automl.spaces.recurrent_search import DartsRecurrentSearchCell

__all__ = [
    "Cell", "MixedEdge", "SearchCell", "num_search_edges",
    "ChainArchitecture", "ChainLayer", "ChainNetwork", "ChainSpace",
    "Decision",
    "derive_cell", "derive_genotype", "derive_recurrent", "edge_entropy",
    "DropPath", "drop_path", "sample_keep_mask",
    "ENAS_MACRO_OPS", "ENASMacroArchitecture", "ENASMacroLayer", "ENASMacroNetwork", "ENASMacroSpace", "ENASMacroSupernet",
    "macro_pool_layers",
    "ENAS_MICRO_ARC", "ENASMicroSpace", "enas_micro_decisions",
    "ENAS_ACTIVATIONS", "ENASRecurrentArch", "ENASRecurrentCell", "ENASRecurrentSpace", "ENASMicroSupernet", "decode_enas_rnn", "enas_init_range",
    "enas_rnn_decisions", "encode_enas_rnn",
    "FractalBlock", "FractalNet",
    "COMBINE_METHODS", "Genotype", "GenotypeParseError", "UnknownOperationError",
    "NAS_CELL", "NAS_CELL_TOKENS", "NASRLCell", "TreeCell", "decode_tree_cell", "encode_tree_cell",
    "tree_cell_decisions", "NASRLCellSpace", "DecisionSpace", "SequentialSpace",
    "recurrent_cell_module", "recurrent_cell_text", "resolve_recurrent_cell",
    "NASNetCell", "NASNetCellSpace", "NASNetCIFAR", "unused_states",
    "NetworkCIFAR", "NetworkImageNet", "SearchNetwork", "count_parameters",
    "DARTS_RNN_OPS", "RECURRENT_OP_SETS", "get_recurrent_op_set",
    "DARTS_OPS", "ENAS_OPS", "NASNET_OPS", "OP_SETS", "OPS", "get_op", "get_op_set", "register_op",
    "plot_genotype",
    "PUBLISHED_GENOTYPES", "PUBLISHED_RECURRENT_GENOTYPES", "get_genotype", "get_recurrent_genotype",
    "resolve_genotype", "resolve_recurrent_genotype",
    "RecurrentGenotype", "num_recurrent_edges", "recurrent_edge_slices",
    "DartsRecurrentSearchCell",
]

from lit_automl.spaces.nb201 import NB201_OPS, NB201Arch, NB201Network, NB201Space, nb201_index

__all__ += ["NB201_OPS", "NB201Arch", "NB201Network", "NB201Space", "nb201_index"]

from lit_automl.spaces.darts_cells import DartsCellSpace

__all__ += ["DartsCellSpace"]

from lit_automl.spaces.pnas import PNASCellSpace

__all__ += ["PNASCellSpace"]

"""The ENAS micro search space (Pham et al., ICML 2018, Sec. 2.3): tokens <-> Genotype."""

from __future__ import annotations

import random

import pytest
import torch

from lit_automl.spaces.decisions import SequentialSpace
from lit_automl.spaces.enas_micro import ENAS_MICRO_ARC, ENASMicroSpace, enas_micro_decisions, parse_arc
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.op_names import ENAS_OPS, OP_SETS
from lit_automl.spaces.published import PUBLISHED_GENOTYPES, get_genotype

SPACE = ENASMicroSpace()


def random_tokens(space: ENASMicroSpace, seed: int) -> list:
    rng = random.Random(seed)
    return [rng.randrange(d.num_choices) for d in space.decisions()]


def test_decision_layout() -> None:
    assert isinstance(SPACE, SequentialSpace)
    assert len(enas_micro_decisions(5)) == 40 == len(SPACE.decisions())
    assert len([d for d in SPACE.decisions() if d.name.startswith("normal.")]) == 20
    names = [d.name for d in SPACE.decisions()[:8]]
    assert names == ["normal.n0.input_x", "normal.n0.op_x", "normal.n0.input_y", "normal.n0.op_y",
                     "normal.n1.input_x", "normal.n1.op_x", "normal.n1.input_y", "normal.n1.op_y"]
    assert [d.num_choices for d in SPACE.decisions()[:20:2]] == [2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # inputs
    assert all(d.num_choices == 5 for d in SPACE.decisions()[1::2])  # ops
    assert SPACE.decisions()[20].name == "reduce.n0.input_x"
    assert len(enas_micro_decisions(2)) == 16


def test_op_set_is_the_authors_order() -> None:
    # micro_child.py: 0 = sep conv 3x3, 1 = sep conv 5x5, 2 = avg pool, 3 = max pool, 4 = identity
    assert OP_SETS["enas"] == ENAS_OPS == ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3",
                                           "skip_connect")


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_random_tokens(seed: int) -> None:
    tokens = random_tokens(SPACE, seed)
    g = SPACE.decode(tokens)
    assert SPACE.encode(g) == tokens
    assert SPACE.decode(SPACE.encode(g)) == g
    assert SPACE.from_json(SPACE.to_json(g)) == g
    assert g.steps == 5 and g.is_flat and g.all_add


def test_loose_end_concat_by_hand() -> None:
    space = ENASMicroSpace(num_nodes=3)
    # normal: n0 = sep3(0) + id(1); n1 = avg(2) + max(0); n2 = sep5(2) + id(2) -> reads {0, 1, 2}: out 3, 4
    # reduce: n0 = id(0) + id(0); n1 = sep3(0) + sep3(2); n2 = max(0) + avg(0) -> reads {0, 2}: out 1, 3, 4
    tokens = [0, 0, 1, 4, 2, 2, 0, 3, 2, 1, 2, 4,
              0, 4, 0, 4, 0, 0, 2, 0, 0, 3, 0, 2]
    g = space.decode(tokens)
    assert g.normal_concat == (3, 4)
    assert g.reduce_concat == (1, 3, 4)
    assert g.normal[0] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert g.reduce[1] == (("sep_conv_3x3", 0), ("sep_conv_3x3", 2))


def test_published_enas_is_the_authors_arc() -> None:
    tokens = parse_arc(ENAS_MICRO_ARC)
    assert len(tokens) == 40
    assert SPACE.decode(ENAS_MICRO_ARC) == PUBLISHED_GENOTYPES["ENAS"] == get_genotype("enas")
    assert SPACE.encode("ENAS") == tokens
    assert PUBLISHED_GENOTYPES["ENAS"].normal_concat == (2, 3, 4, 5, 6)
    assert PUBLISHED_GENOTYPES["ENAS"].reduce_concat == (2, 4, 5, 6)


def test_decoded_genotype_builds_a_network_that_runs() -> None:
    torch.manual_seed(0)
    net = ENASMicroSpace(num_layers=1, C=4).build(SPACE.decode(random_tokens(SPACE, 3)), 3, 10, 8)
    assert len(net.cells) == 3 and [c.reduction for c in net.cells] == [False, True, True]
    net.eval()
    logits, aux = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10) and aux is None and torch.isfinite(logits).all()
    net.train()
    ENASMicroSpace(num_layers=1, C=4).build("ENAS", 3, 10, 8)(torch.randn(2, 3, 8, 8))[0].sum().backward()


# --------------------------------------------------------------------------- bad input
def test_bad_token_count() -> None:
    with pytest.raises(ValueError, match=r"expected 40 tokens .* got 39"):
        SPACE.decode(random_tokens(SPACE, 0)[:-1])


def test_input_index_out_of_range_names_node_value_and_range() -> None:
    tokens = random_tokens(SPACE, 0)
    tokens[8] = 7  # normal node 2, input_x: states 0..3
    with pytest.raises(ValueError, match=r"normal\.n2\.input_x.*\[0, 4\).*got 7"):
        SPACE.decode(tokens)


def test_op_index_out_of_range() -> None:
    tokens = random_tokens(SPACE, 0)
    tokens[20 + 4 * 1 + 3] = 5  # reduce node 1, op_y
    with pytest.raises(ValueError, match=r"reduce\.n1\.op_y.*\[0, 5\).*got 5"):
        SPACE.decode(tokens)
    tokens[23] = -1
    with pytest.raises(ValueError, match=r"got -1"):
        SPACE.decode(tokens)


def test_bad_arc_string_and_settings() -> None:
    with pytest.raises(ValueError, match=r"arc token 3 must be an int, got 'x'"):
        SPACE.decode("0 2 0 x")
    with pytest.raises(ValueError, match=r"num_nodes"):
        ENASMicroSpace(num_nodes=0)
    with pytest.raises(ValueError, match=r"drop_path_prob"):
        ENASMicroSpace(drop_path_prob=1.0)


def test_encode_refuses_cells_outside_the_space() -> None:
    with pytest.raises(ValueError, match=r"normal cell has 4 nodes; this space has num_nodes=5"):
        SPACE.encode("DARTS_V2")
    with pytest.raises(ValueError, match=r"dil_conv_3x3.*not an ENAS op"):
        ENASMicroSpace(num_nodes=4).encode("DARTS_V2")
    g = PUBLISHED_GENOTYPES["ENAS"]
    moved = Genotype(normal=g.normal, normal_concat=[2, 3, 4, 5], reduce=g.reduce, reduce_concat=g.reduce_concat)
    with pytest.raises(ValueError, match=r"normal_concat \[2, 3, 4, 5\] is not the cell's loose ends \[2, 3, 4, 5, 6\]"):
        SPACE.encode(moved)

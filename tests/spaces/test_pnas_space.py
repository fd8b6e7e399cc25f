"""The PNAS cell space (Liu et al., ECCV 2018, Sec. 3.1-3.2): tokens, prefixes, symmetry, children."""

from __future__ import annotations

import itertools

import pytest
import torch

from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.networks import count_parameters
from lit_automl.spaces.ops import OP_SETS, OPS
from lit_automl.spaces.pnas import (PNASCellSpace, canonical_block, canonical_cell, count_unique_blocks,
                                    unique_blocks)
from lit_automl.spaces.published import get_genotype

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_OPS = ["sep_conv_3x3", "max_pool_3x3"]


def test_the_pnas_op_set_is_the_papers_eight_registered_operations():
    ops = OP_SETS["pnas"]
    assert len(ops) == len(set(ops)) == 8 and all(o in OPS for o in ops)
    assert PNASCellSpace().ops == ops


def test_there_are_136_unique_one_block_cells_with_the_papers_eight_ops():
    space = PNASCellSpace()
    cells = space.one_block_cells()
    assert len(cells) == count_unique_blocks(0, 8) == 136  # Sec. 3.2: |B_1| = 136
    # all 2 * 2 * 8 * 8 = 256 ordered blocks collapse onto exactly these under the symmetry
    ordered = itertools.product(range(2), range(2), range(8), range(8))
    assert {canonical_block(b) for b in ordered} == {tuple(c) for c in cells}
    assert all(canonical_cell(c) == c for c in cells)


def test_symmetric_blocks_share_one_canonical_form():
    assert canonical_block((1, 0, 5, 2)) == canonical_block((0, 1, 2, 5)) == (0, 1, 2, 5)
    assert canonical_block((1, 1, 4, 0)) == (1, 1, 0, 4)  # same input: ordered by op
    assert canonical_cell([1, 0, 5, 2, 2, 0, 1, 1]) == [0, 1, 2, 5, 0, 2, 1, 1]
    with pytest.raises(ValueError, match=r"4 tokens per block, got 5"):
        canonical_cell([0, 0, 0, 0, 1])


def test_expansion_counts_by_hand_for_two_ops():
    space = PNASCellSpace(num_blocks=3, ops=TINY_OPS)
    # block 0: (input, op) pairs from {0,1} x {0,1}: 4 pairs, 4 * 5 / 2 = 10 unordered with repetition
    assert len(space.one_block_cells()) == 10
    # block 1 reads 0, 1 or block 0 (state 2): 6 pairs -> 21 blocks, appended to the parent
    parent = [0, 1, 0, 1]
    children = space.expand(parent)
    assert len(children) == 21 == count_unique_blocks(1, 2) == len(unique_blocks(1, 2))
    assert all(c[:4] == parent and len(c) == 8 and canonical_cell(c) == c for c in children)
    assert len({tuple(c) for c in children}) == 21
    assert [0, 1, 0, 1, 2, 2, 1, 1] in children and [0, 1, 0, 1, 2, 2, 1, 0] not in children  # the canonical one only
    assert len(space.expand(children[0])) == count_unique_blocks(2, 2) == 36  # 8 pairs -> 36
    with pytest.raises(ValueError, match=r"a cell of 3 blocks cannot grow: this space has num_blocks=3"):
        space.expand(space.expand(children[0])[0])


def test_decode_and_encode_round_trip_every_prefix():
    space = PNASCellSpace()
    g = torch.Generator().manual_seed(0)
    decisions = space.decisions()
    assert len(decisions) == 20 and [d.num_choices for d in decisions[4:8]] == [3, 3, 8, 8]
    for b in range(1, 6):
        for _ in range(5):
            tokens = [int(torch.randint(int(d.num_choices), (1,), generator=g)) for d in decisions[:4 * b]]
            cell = space.decode(tokens)
            assert len(cell.normal) == b and cell.normal == cell.reduce and cell.all_add
            assert cell.normal_concat == cell.reduce_concat == tuple(range(2, 2 + b))
            assert space.encode(cell) == tokens
            assert space.from_json(space.to_json(cell)) == cell
    # block by hand: inputs c_{k-1} and block 0, ops max pool and identity
    cell = space.decode([0, 0, 0, 0, 1, 2, 6, 4])
    assert cell.normal[1] == (("max_pool_3x3", 1), ("skip_connect", 2))


def test_the_published_pnasnet_5_cell_is_in_the_space():
    space = PNASCellSpace()
    tokens = space.encode("PNASNet_5")
    assert space.decode(tokens) == get_genotype("PNASNet_5")
    assert tokens[:4] == [0, 0, 1, 6]  # sep 5x5 on c_{k-2} + max pool on c_{k-2}


def test_children_are_3n_cells_two_of_them_strided():
    space = PNASCellSpace(num_blocks=2, ops=TINY_OPS, N=1, F=4)
    net = space.build(space.decode([0, 1, 0, 1, 2, 0, 1, 0]), in_channels=1, num_classes=10, image_size=8)
    assert len(net.cells) == 3 and [c.reduction for c in net.cells] == [False, True, True]
    assert net.cells[0].out_channels == 2 * 4 and net.cells[2].out_channels == 2 * 16  # both blocks, F doubled twice
    logits, aux = net(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10) and aux is None
    # PNASNet-5 at the paper's search size (N=2, F=24) builds through the space too
    full = PNASCellSpace()
    assert count_parameters(full.build(full.decode(full.encode("PNASNet_5")), 3, 10, 32)) > 0


@pytest.mark.parametrize("kwargs, tokens, match", [
    ({"num_blocks": 0}, None, r"num_blocks must be an int >= 1, got 0"),
    ({"ops": ["sep_conv_3x3", "conv_9x9"]}, None, r"ops \['conv_9x9'\] are not registered.*registered: \["),
    ({"ops": "pnasnet"}, None, r"unknown op set 'pnasnet'; valid names are: .*'pnas'"),
    ({"ops": []}, None, r"ops must be an op-set name"),
    ({}, [0, 0, 0], r"a PNAS cell takes 4b tokens for b = 1..5 blocks .*got 3"),
    ({}, [0] * 24, r"a PNAS cell takes 4b tokens .*got 24"),
    ({}, [0, 2, 0, 0], r"decision 'b0.input_2': action must be an int in \[0, 2\), got 2"),
    ({}, [0, 0, 0, 8], r"decision 'b0.op_2': action must be an int in \[0, 8\), got 8"),
])
def test_bad_input_is_refused_with_what_is_allowed(kwargs, tokens, match):
    with pytest.raises(ValueError, match=match):
        PNASCellSpace(**kwargs).decode(tokens if tokens is not None else [0, 0, 0, 0])


def test_encode_refuses_cells_outside_the_space():
    space = PNASCellSpace(num_blocks=2, ops=TINY_OPS)
    with pytest.raises(ValueError, match=r"different normal and reduce cells"):
        space.encode(get_genotype("DARTS_V2"))
    with pytest.raises(ValueError, match=r"5 blocks; this space has num_blocks=2"):
        space.encode("PNASNet_5")
    one = [(("sep_conv_3x3", 0), ("max_pool_3x3", 1))]
    with pytest.raises(ValueError, match=r"op 'skip_connect' is not in this space's ops"):
        space.encode(Genotype(normal=[[("skip_connect", 0), ("max_pool_3x3", 1)]], normal_concat=[2],
                              reduce=[[("skip_connect", 0), ("max_pool_3x3", 1)]], reduce_concat=[2]))
    with pytest.raises(ValueError, match=r"outputs all its blocks, concat \[2\]; got \[0, 2\]"):
        space.encode(Genotype(normal=one, normal_concat=[0, 2], reduce=one, reduce_concat=[0, 2]))

"""The NASNet cell search space, cell and CIFAR network (Zoph et al., CVPR 2018)."""

from __future__ import annotations

import random

import pytest
import torch

from lit_automl.spaces.decisions import SequentialSpace
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.nasnet import NASNetCell, NASNetCellSpace, NASNetCIFAR, unused_states
from lit_automl.spaces.networks import count_parameters
from lit_automl.spaces.ops import NASNET_OPS
from lit_automl.spaces.published import PUBLISHED_GENOTYPES, get_genotype

NASNET_A = PUBLISHED_GENOTYPES["NASNet_A"]


def random_actions(space: NASNetCellSpace, seed: int) -> list:
    rng = random.Random(seed)
    return [rng.randrange(d.num_choices) for d in space.decisions()]


def tiny(genotype, **kwargs) -> NASNetCIFAR:
    torch.manual_seed(0)
    return NASNetCIFAR(genotype, N=1, F=4, image_size=16, **kwargs)


# --------------------------------------------------------------------------- NASNet-A 6@768
def test_nasnet_a_6_at_768_has_the_papers_parameter_count() -> None:
    # Table 1 of Zoph et al. (2018): NASNet-A (6 @ 768) on CIFAR-10 has 3.3M parameters.
    # This library's network has exactly 3,328,234 (auxiliary head excluded, as papers count;
    # 4,959,732 with it). Built on the meta device: no memory, no forward pass.
    with torch.device("meta"):
        net = NASNetCIFAR("NASNet_A", N=6, F=32)
    n = count_parameters(net)
    assert 3_250_000 <= n < 3_350_000, n
    assert net.penultimate_filters == 768 == 6 * 4 * 32
    assert len(net.cells) == 3 * 6 + 2
    assert [c.reduction for c in net.cells].count(True) == 2
    assert net.cells[6].reduction and net.cells[13].reduction


def test_nasnet_a_genotype_is_the_reference_cell() -> None:
    g = NASNET_A
    assert g.steps == 5 and g.is_flat and g.all_add
    assert g.normal_concat == (0, 2, 3, 4, 5, 6)  # c_{k-2} and the five blocks: 6 states
    assert g.reduce_concat == (3, 4, 5, 6)
    assert g.normal[2] == (("avg_pool_3x3", 1), ("skip_connect", 0))
    assert g.reduce[3] == (("skip_connect", 3), ("avg_pool_3x3", 2))
    assert g.op_names() <= set(NASNET_OPS)


def test_nasnet_a_encode_decode() -> None:
    space = NASNetCellSpace()
    actions = space.encode("NASNet_A")
    decoded = space.decode(actions)
    # Blocks and combination methods come back unchanged ...
    assert (decoded.normal, decoded.reduce) == (NASNET_A.normal, NASNET_A.reduce)
    assert decoded.normal_combine == NASNET_A.normal_combine == ("add",) * 5
    assert space.encode(decoded) == actions
    # ... but concat is not a decision: decode applies the unused-state rule of Sec. 3, while the
    # published cell (TF reference flags) also keeps c_{k-2} (normal) and block 1 (reduction).
    assert decoded.normal_concat == (2, 3, 4, 5, 6)
    assert decoded.reduce_concat == (4, 5, 6)
    assert decoded == Genotype(NASNET_A.normal, [2, 3, 4, 5, 6], NASNET_A.reduce, [4, 5, 6])


# --------------------------------------------------------------------------- decisions
def test_decisions_follow_the_five_steps_per_block() -> None:
    space = NASNetCellSpace()
    ds = space.decisions()
    assert isinstance(space, SequentialSpace)
    assert len(ds) == 2 * 5 * 5
    assert len({d.name for d in ds}) == len(ds)
    assert [d.name for d in ds[:5]] == [f"normal.b0.{f}" for f in ("input_a", "input_b", "op_a", "op_b", "combine")]
    assert ds[25].name == "reduce.b0.input_a"
    assert [d.num_choices for d in ds[15:20]] == [5, 5, 13, 13, 2]  # block 3: c_{k-2}, c_{k-1}, blocks 0-2
    assert all(d.kind == "categorical" for d in ds)
    assert len(NASNetCellSpace(num_blocks=2, ops=["conv_1x1", "max_pool_3x3"]).decisions()) == 20


@pytest.mark.parametrize("seed", range(20))
def test_random_actions_round_trip(seed: int) -> None:
    space = NASNetCellSpace()
    actions = random_actions(space, seed)
    g = space.decode(actions)
    assert space.encode(g) == actions
    assert space.decode(space.encode(g)) == g
    assert g.normal_concat == unused_states(g.normal) and g.reduce_concat == unused_states(g.reduce)
    assert space.from_json(space.to_json(g)) == g
    assert space.from_json(g.to_json()) == g
    assert Genotype.parse(str(g)) == g


def test_concat_is_the_unused_states_on_a_hand_made_cell() -> None:
    space = NASNetCellSpace(num_blocks=3, ops=["skip_connect", "conv_1x1"])
    cell = [
        1, 1, 0, 1, 0,  # block 0 (state 2): skip(c_{k-1}) + conv(c_{k-1}), add
        2, 1, 1, 0, 1,  # block 1 (state 3): conv(block 0) + skip(c_{k-1}), concat
        2, 3, 0, 0, 0,  # block 2 (state 4): skip(block 0) + skip(block 1), add
    ]
    g = space.decode(cell + cell)
    assert g.normal == ((("skip_connect", 1), ("conv_1x1", 1)), (("conv_1x1", 2), ("skip_connect", 1)),
                        (("skip_connect", 2), ("skip_connect", 3)))
    # c_{k-2} is read by nobody, so it is part of the output with the last block.
    assert g.normal_concat == g.reduce_concat == (0, 4)
    assert g.normal_combine == ("add", "concat", "add")
    assert unused_states([[("a", 0), ("b", 1)]]) == (2,)
    assert unused_states([[("a", 1)], [("b", 1)]]) == (0, 2, 3)


# --------------------------------------------------------------------------- networks
@pytest.mark.parametrize("seed", range(3))
def test_tiny_forward_of_random_architectures(seed: int) -> None:
    space = NASNetCellSpace(N=1, F=4)
    actions = random_actions(space, 100 + seed)
    actions[4] = actions[29] = 1  # block 0 of both cells concatenates
    g = space.decode(actions)
    assert g.normal_combine[0] == g.reduce_combine[0] == "concat"
    net = space.build(g, in_channels=3, num_classes=7, image_size=16)
    assert net.auxiliary_head is None
    net.train()
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 7) and aux is None
    assert net.penultimate_filters == len(g.normal_concat) * 4 * 4


def test_tiny_forward_with_auxiliary_head_and_unused_inputs() -> None:
    # The reduction cell leaves c_{k-2} unused: it must be brought to half resolution for concat.
    reduce = [[("max_pool_3x3", 1), ("conv_1x3_3x1", 1)], [("sep_conv_7x7", 2), ("dilated_conv_3x3", 1)]]
    normal = [[("conv_3x3", 0), ("conv_1x7_7x1", 1)], [("max_pool_5x5", 2), ("max_pool_7x7", 0)]]
    g = Genotype(normal, unused_states(normal), reduce, unused_states(reduce), ["concat", "add"], ["add", "concat"])
    assert g.reduce_concat == (0, 3) and g.normal_concat == (3,)
    net = tiny(g, num_classes=5)
    assert "0" in net.cells[1].output_reductions
    net.train()
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == aux.shape == (2, 5)
    net.eval()
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 5) and aux is None


def test_cell_shapes() -> None:
    cell = NASNetCell(NASNET_A.reduce, NASNET_A.reduce_concat, 12, 10, 6, reduction=True, reduction_prev=False)
    out = cell(torch.randn(2, 12, 9, 9), torch.randn(2, 10, 9, 9))
    assert out.shape == (2, 4 * 6, 5, 5) and cell.out_channels == 24
    cell = NASNetCell(NASNET_A.normal, NASNET_A.normal_concat, 12, 10, 6, reduction=False, reduction_prev=True)
    out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 10, 4, 4))
    assert out.shape == (2, 6 * 6, 4, 4)


def test_drop_path_is_read_every_forward_and_off_in_eval() -> None:
    net = tiny("NASNet_A", auxiliary=False)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    reference, _ = net(x)
    net.drop_path_prob = 0.5
    first, _ = net(x)
    second, _ = net(x)
    assert torch.equal(first, second) and torch.equal(first, reference)
    net.train()
    torch.manual_seed(1)
    a, _ = net(x)
    torch.manual_seed(2)
    b, _ = net(x)
    assert not torch.allclose(a, b)  # the new probability is used while training
    net.drop_path_prob = 0.0
    torch.manual_seed(1)
    c, _ = net(x)
    torch.manual_seed(2)
    d, _ = net(x)
    assert torch.allclose(c, d)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_blocks": 0}, r"num_blocks must be an int >= 1, got 0"),
        ({"num_blocks": 2.5}, r"num_blocks must be an int >= 1, got 2\.5"),
        ({"ops": "nasnet-ish"}, r"unknown op set 'nasnet-ish'.*'darts'.*'nasnet'"),
        ({"ops": ["sep_conv_3x3", "conv_9x9"]}, r"\['conv_9x9'\] are not registered.*sep_conv_7x7"),
        ({"ops": []}, r"non-empty list"),
        ({"ops": ["conv_1x1", "conv_1x1"]}, r"unique"),
        ({"N": 0}, r"N must be an int >= 1, got 0"),
        ({"F": -4}, r"F must be an int >= 1, got -4"),
        ({"stem_multiplier": 0}, r"stem_multiplier must be a number in \(0\.0, inf\), got 0"),
        ({"auxiliary": "yes"}, r"auxiliary must be True or False, got 'yes'"),
        ({"drop_path_prob": 1.0}, r"drop_path_prob must be a number in \[0\.0, 1\.0\), got 1\.0"),
    ],
)
def test_space_arguments_are_validated(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        NASNetCellSpace(**kwargs)


def test_decode_and_encode_errors() -> None:
    space = NASNetCellSpace()
    actions = random_actions(space, 0)
    with pytest.raises(ValueError, match=r"expected 50 actions \(2 cells x 5 blocks x 5\), got 49"):
        space.decode(actions[:-1])
    bad = list(actions)
    bad[15] = 5  # block 3's input_a has 5 choices
    with pytest.raises(ValueError, match=r"'normal\.b3\.input_a'.*\[0, 5\), got 5"):
        space.decode(bad)
    with pytest.raises(ValueError, match=r"normal cell has 4 nodes; this space has num_blocks=5"):
        space.encode("DARTS_V2")
    three_edges = Genotype([[("conv_1x1", 0), ("conv_1x1", 1), ("conv_3x3", 0)]], [2], [[("conv_1x1", 0), ("conv_1x1", 1)]], [2])
    with pytest.raises(ValueError, match=r"normal node 0 has 3 edges; a NASNet block has exactly 2"):
        NASNetCellSpace(num_blocks=1).encode(three_edges)
    with pytest.raises(ValueError, match=r"op 'sep_conv_5x5' is not in this space's ops \['sep_conv_3x3', 'skip_connect'\]"):
        NASNetCellSpace(ops=["sep_conv_3x3", "skip_connect"]).encode(NASNET_A)


def test_network_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"N must be an int >= 1, got 0"):
        NASNetCIFAR("NASNet_A", N=0)
    with pytest.raises(ValueError, match=r"drop_path_prob must be a number in \[0\.0, 1\.0\), got -0\.1"):
        NASNetCIFAR("NASNet_A", drop_path_prob=-0.1)
    with pytest.raises(ValueError, match=r"at least 5x5.*got 4x4.*auxiliary=False"):
        NASNetCIFAR("NASNet_A", N=1, F=4, image_size=8)
    with pytest.raises(ValueError, match=r"cannot resolve genotype spec 'NASNet_B'"):
        NASNetCIFAR("NASNet_B")
    g = Genotype([("conv_5x5", 0), ("conv_1x1", 1)], [2], [("conv_1x1", 0), ("conv_1x1", 1)], [2])
    with pytest.raises(ValueError, match=r"unregistered operation\(s\) \['conv_5x5'\]"):
        tiny(g)
    net = tiny("NASNet_A")
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(2, 1, 16, 16\)"):
        net(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"built for a 8x8 feature map, got 16x16"):
        net.train()(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"block 0: unknown combine method 'mul'"):
        NASNetCell(NASNET_A.normal, NASNET_A.normal_concat, 4, 4, 4, False, False, ["mul"] * 5)


def test_combine_fixed_to_addition_is_regularized_evolutions_space_and_holds_amoebanet_a():
    space = NASNetCellSpace(ops="amoebanet", combine=["add"])
    combine = [d for d in space.decisions() if d.name.endswith(".combine")]
    assert len(combine) == 10 and all(d.num_choices == 1 for d in combine)
    genotype = space.decode([0] * len(space.decisions()))
    assert genotype.normal_combine == genotype.reduce_combine == ("add",) * 5
    amoeba = get_genotype("AmoebaNet_A")
    decoded = space.decode(space.encode(amoeba))
    assert (decoded.normal, decoded.reduce) == (amoeba.normal, amoeba.reduce)
    with pytest.raises(ValueError, match="combination 'concat' is not in this space's combine"):
        space.encode(NASNetCellSpace(num_blocks=5).decode([0, 0, 0, 0, 1] * 10))


@pytest.mark.parametrize("combine", [[], ["mul"], ["add", "add"], "add"])
def test_bad_combine_lists_are_refused(combine):
    with pytest.raises(ValueError, match="combine must be a non-empty list of distinct combination methods"):
        NASNetCellSpace(combine=combine)

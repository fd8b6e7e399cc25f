"""NAS-Bench-201 (Dong & Yang, ICLR 2020): the cell, its text form, the benchmark index, isomorphism classes,
the space and the macro network's parameter counts."""

import itertools
import json

import pytest
import torch

from lit_automl.spaces import NB201_OPS, NB201Arch, NB201Network, NB201Space, get_op, get_op_set
from lit_automl.spaces.decisions import CATEGORICAL
from lit_automl.spaces.nb201 import NB201_EDGES, NB201_NUM_ARCHS, NB201Cell, nb201_archs, nb201_index, nb201_unique_archs
from lit_automl.spaces.networks import count_parameters

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"

# The three indices the authors' generate_meta_info (exps/NAS-Bench-201/main.py) asserts after its shuffle.
REFERENCE_INDICES = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    9: "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    123: "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
}


def uniform(op):
    return NB201Arch((op,) * 6)


# ------------------------------------------------------------------------------------------ ops


def test_op_set_is_the_benchmarks_in_its_order():
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert get_op_set("nb201") == NB201_OPS


@pytest.mark.parametrize("k", [1, 3])
def test_nor_conv_is_relu_conv_bn(k):
    torch.manual_seed(0)
    op = get_op(f"nor_conv_{k}x{k}", 4, 1)
    relu, conv, bn = op
    assert isinstance(conv, torch.nn.Conv2d) and conv.bias is None and conv.kernel_size == (k, k)
    assert conv.padding == (k // 2, k // 2) and bn.affine and bn.track_running_stats
    x = torch.randn(2, 4, 5, 5)
    op.eval()
    expected = bn(torch.nn.functional.conv2d(x.clamp(min=0), conv.weight, padding=k // 2))
    torch.testing.assert_close(op(x), expected)


def test_avg_pool_skip_and_none():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = get_op("avg_pool_3x3", 1, 1)(x)
    assert pooled[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # padding not counted
    assert torch.equal(get_op("skip_connect", 1, 1)(x), x)
    assert torch.equal(get_op("none", 1, 1)(x), torch.zeros_like(x))


# ------------------------------------------------------------------------------------- text form


def test_parse_and_format_the_example():
    arch = NB201Arch.parse(EXAMPLE)
    assert arch.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_3x3", "avg_pool_3x3")
    assert str(arch) == EXAMPLE
    assert NB201Arch.parse(str(arch)) == arch and hash(NB201Arch.parse(EXAMPLE)) == hash(arch)
    with pytest.raises(AttributeError):
        arch.ops = ()


def test_round_trip_over_all_archs_and_the_index_bijection():
    archs = list(nb201_archs())
    assert len(archs) == NB201_NUM_ARCHS == 15625
    assert len(set(archs)) == 15625
    for index, arch in enumerate(archs):
        text = str(arch)
        assert NB201Arch.parse(text) == arch
        assert arch.index == index == nb201_index(text)
        assert NB201Arch.from_index(index) == arch
        assert NB201Arch.from_code(arch.code) == arch


def test_edges_in_any_order_are_read():
    assert NB201Arch.parse("|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|avg_pool_3x3~2|nor_conv_3x3~1|none~0|") \
        == NB201Arch.parse(EXAMPLE)


@pytest.mark.parametrize("text, match", [
    (EXAMPLE.replace("avg_pool_3x3~1", "max_pool_3x3~1"), r"unknown operation 'max_pool_3x3'.*'avg_pool_3x3'\]"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", r"expected 3 nodes joined by '\+', got 2"),
    (EXAMPLE + "+|none~0|", r"expected 3 nodes joined by '\+', got 4"),
    (EXAMPLE.replace("avg_pool_3x3~2", "avg_pool_3x3~3"),
     r"'avg_pool_3x3~3' comes from node 3, which is not before node 3 \(allowed sources: 0..2\)"),
    (EXAMPLE.replace("avg_pool_3x3~1|+", "avg_pool_3x3~0|+"), r"repeats source 0"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|", r"node 2 .* has 1 edges; node 2 takes 2"),
    (EXAMPLE.replace("none~0", "none-0"), r"edge 'none-0' is not 'op~source'"),
    (EXAMPLE.replace("none~0", "none~x"), r"edge 'none~x' is not 'op~source'"),
    (EXAMPLE[1:], r"must start and end with '\|'"),
])
def test_bad_strings_name_the_token_and_what_is_allowed(text, match):
    with pytest.raises(ValueError, match=match) as info:
        NB201Arch.parse(text)
    assert "the format is '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'" in str(info.value)


def test_bad_ops_tuple_is_refused():
    with pytest.raises(ValueError, match=r"edge 1->2: unknown operation 'conv'; allowed: \['none'"):
        NB201Arch(("none", "skip_connect", "conv", "none", "none", "none"))
    with pytest.raises(ValueError, match="takes 6 op names"):
        NB201Arch(("none",) * 5)
    with pytest.raises(ValueError, match="index must be a NAS-Bench-201 index in"):
        NB201Arch.from_index(15625)


# ------------------------------------------------------------------------------------ the index


def test_enumeration_is_gen_all_order():
    # CellStructure.gen_all: edges in string order, each over the ops in order, the first edge slowest.
    for code, ops in enumerate(itertools.product(NB201_OPS, repeat=6)):
        assert NB201Arch.from_code(code).ops == ops
    assert NB201Arch.from_code(0) == uniform("none") and NB201Arch.from_code(15624) == uniform("avg_pool_3x3")


@pytest.mark.parametrize("index, text", sorted(REFERENCE_INDICES.items()))
def test_benchmark_index_matches_the_authors_asserted_indices(index, text):
    assert str(NB201Arch.from_index(index)) == text
    assert nb201_index(text) == index


# ----------------------------------------------------------------------------------- isomorphism


def test_6466_unique_architectures():
    keys = {arch.unique_str for arch in nb201_archs()}
    assert len(keys) == 6466
    reps = nb201_unique_archs()
    assert len(reps) == 6466 and len({r.unique_str for r in reps}) == 6466
    assert [r.index for r in reps] == sorted(r.index for r in reps)
    for arch in nb201_archs():
        rep = arch.canonical()
        assert rep.unique_str == arch.unique_str and rep.index <= arch.index and rep.canonical() == rep


def test_isomorphic_cells_share_their_key():
    # a dead node 1 (it feeds only through none) makes its op irrelevant
    a = NB201Arch.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    b = NB201Arch.parse("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    assert a.unique_str == b.unique_str and a.canonical() == b.canonical()
    # skip 0 -> 1 then skip 1 -> 3 equals a direct skip 0 -> 3
    c = NB201Arch.parse("|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|skip_connect~1|none~2|")
    d = NB201Arch.parse("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    e = NB201Arch.parse("|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    assert c.unique_str == "#+(0)@nor_conv_3x3+0"
    assert d.unique_str == e.unique_str == "#+#+(0)@nor_conv_3x3" and d.canonical() == e.canonical()
    # the reference's quirk: a dead node 2 reads '#+#', not '#', so an op on it is not a zero term
    f = NB201Arch.parse("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|")
    assert f.unique_str == "#+#+(#+#)@nor_conv_1x1" and f.is_zero
    assert uniform("none").is_zero and uniform("none").unique_str == "#+#+#"
    assert not uniform("skip_connect").is_zero and not c.is_zero and not d.is_zero


def test_isomorphic_cells_compute_the_same_function():
    a = NB201Arch.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    b = NB201Arch.parse("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    torch.manual_seed(0)
    ca, cb = NB201Cell(a, 3).eval(), NB201Cell(b, 3).eval()
    cb.edges[5].load_state_dict(ca.edges[5].state_dict())  # the one live parametric edge
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(ca(x), cb(x))


# ------------------------------------------------------------------------------------- the space


def test_space_decisions_and_token_round_trips():
    space = NB201Space()
    ds = space.decisions()
    assert len(ds) == 6 and all(d.kind == CATEGORICAL and d.num_choices == 5 for d in ds)
    assert [d.name for d in ds] == [f"node{j}~{i}" for i, j in NB201_EDGES]
    assert (space.C, space.N) == (16, 5) and repr(NB201Space(4, 1)) == "NB201Space(C=4, N=1)"
    arch = NB201Arch.parse(EXAMPLE)
    assert space.encode(arch) == [3, 3, 4, 0, 3, 4] and space.decode([3, 3, 4, 0, 3, 4]) == arch
    for arch in list(nb201_archs())[::97]:
        assert space.decode(space.encode(arch)) == arch
        record = space.to_json(arch)
        assert record == {"arch": str(arch)}
        assert space.from_json(record) == arch
        assert space.from_json(json.dumps(record)) == arch
        assert space.from_json(str(arch)) == arch


def test_space_from_json_file(tmp_path):
    space = NB201Space()
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps(space.to_json(EXAMPLE)))
    assert space.from_json(path) == NB201Arch.parse(EXAMPLE)
    assert space.from_json(str(path)) == NB201Arch.parse(EXAMPLE)


@pytest.mark.parametrize("tokens, match", [
    ([3, 3, 4, 0, 3], r"takes 6 tokens"),
    ([3, 3, 4, 0, 3, 5], r"token 5 \(node3~2\) must be an int in \[0, 4\], got 5"),
    ("333034", r"must be a sequence of 6 ints"),
])
def test_space_refuses_bad_tokens(tokens, match):
    with pytest.raises(ValueError, match=match):
        NB201Space().decode(tokens)


@pytest.mark.parametrize("data", [{"arch": EXAMPLE, "extra": 1}, {"layers": []}, "{not json", "no/such/file.json",
                                  {"arch": 3}])
def test_space_refuses_bad_records(data):
    with pytest.raises(ValueError, match=r'NB-201 record must be \{"arch"'):
        NB201Space().from_json(data)


def test_space_builds_the_network():
    net = NB201Space(C=4, N=1).build(EXAMPLE, in_channels=1, num_classes=7, image_size=8)
    assert isinstance(net, NB201Network) and net.arch == NB201Arch.parse(EXAMPLE)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 7)


# ----------------------------------------------------------------------------------- the network


def expected_skeleton_params(C=16, num_classes=10, in_channels=3):
    """Every parameter outside the cells, from the layer shapes."""
    stem = 9 * in_channels * C + 2 * C
    def block(ci, co):  # ReLU-conv3x3-BN, ReLU-conv3x3-BN, shortcut conv 1x1
        return 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co
    head = 2 * 4 * C + 4 * C * num_classes + num_classes
    return stem + block(C, 2 * C) + block(2 * C, 4 * C) + head


def test_parameter_counts_match_the_paper():
    conv3 = count_parameters(NB201Network(uniform("nor_conv_3x3")))
    print(f"all nor_conv_3x3 on CIFAR-10: {conv3} parameters")
    cells = sum(5 * 6 * (9 * c * c + 2 * c) for c in (16, 32, 64))
    assert conv3 == expected_skeleton_params() + cells == 1_531_546
    assert round(conv3 / 1e6, 2) == 1.53
    for op in ("skip_connect", "none", "avg_pool_3x3"):
        n = count_parameters(NB201Network(uniform(op)))
        print(f"all {op} on CIFAR-10: {n} parameters")
        assert n == expected_skeleton_params() == 73_306
        assert round(n / 1e6, 2) == 0.07
    conv1 = count_parameters(NB201Network(uniform("nor_conv_1x1")))
    assert conv1 == expected_skeleton_params() + sum(5 * 6 * (c * c + 2 * c) for c in (16, 32, 64))


def test_network_structure_follows_the_reference():
    net = NB201Network(EXAMPLE, C=4, N=2, num_classes=3)
    kinds = [type(m).__name__ for m in net.cells]
    assert kinds == ["NB201Cell"] * 2 + ["NB201ResidualBlock"] + ["NB201Cell"] * 2 + ["NB201ResidualBlock"] \
        + ["NB201Cell"] * 2
    block = net.cells[2]
    assert block.conv_a[1].stride == (2, 2) and block.conv_b[1].stride == (1, 1)
    pool, conv = block.downsample
    assert isinstance(pool, torch.nn.AvgPool2d) and conv.kernel_size == (1, 1) and conv.bias is None
    assert net.classifier.in_features == 16


@pytest.mark.parametrize("size", [8, 7, 5, 9, 4])
def test_forward_backward_on_small_and_odd_inputs(size):
    torch.manual_seed(0)
    net = NB201Network(EXAMPLE, C=4, N=1, num_classes=10, in_channels=1)
    x = torch.randn(3, 1, size, size)
    out = net(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    assert net(x).shape == (3, 10)


def test_even_sizes_use_the_authors_pooling_exactly():
    x = torch.randn(2, 3, 8, 8)
    pool = NB201Network(EXAMPLE, C=4, N=1).cells[1].downsample[0]
    torch.testing.assert_close(pool(x), torch.nn.AvgPool2d(2, 2)(x))


def test_all_none_cell_network_still_trains_the_skeleton():
    net = NB201Network(uniform("none"), C=4, N=1, in_channels=1)
    out = net(torch.randn(2, 1, 8, 8))
    out.sum().backward()
    assert net.classifier.weight.grad is not None


def test_network_refuses_bad_arguments():
    with pytest.raises(ValueError, match="unknown operation 'conv'"):
        NB201Network("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ValueError, match="C must be a positive int, got 0"):
        NB201Network(EXAMPLE, C=0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\)"):
        NB201Network(EXAMPLE, C=4, N=1)(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="too small"):
        NB201Network(EXAMPLE, C=4, N=1)(torch.randn(1, 3, 3, 3))

"""The ENAS weight-shared supernets (Pham et al., ICML 2018, Sec. 2.2 / 2.3): children that share an op
share its parameter tensors, ops a child does not sample get no gradient, the micro cell's counted edge
weights and its gathered 1x1 output by hand, shapes on odd sizes and reduction cells, bad children refused."""

from __future__ import annotations

from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F

from lit_automl.spaces import ENAS_OPS, ENASMacroNetwork, ENASMacroSpace, ENASMacroSupernet, ENASMicroSpace
from lit_automl.spaces.enas_macro import ENAS_MACRO_OPS
from lit_automl.spaces.enas_micro_supernet import ENASMicroCell, ENASMicroSupernet, cell_edge_weights

pytestmark = pytest.mark.usefixtures("single_thread")

MICRO = ENASMicroSpace(num_nodes=2, num_layers=1, C=4)
# Per node: input_x, op_x, input_y, op_y; ops 0 sep3, 1 sep5, 2 avg, 3 max, 4 skip. Neither child uses sep5.
MICRO_A = MICRO.decode([0, 0, 1, 4, 2, 2, 0, 0,    # normal: n0 = sep3(s0) + skip(s1); n1 = avg(s2) + sep3(s0)
                        1, 3, 0, 4, 2, 4, 1, 3])   # reduce: n0 = max(s1) + skip(s0); n1 = skip(s2) + max(s1)
MICRO_B = MICRO.decode([0, 0, 0, 2, 1, 4, 2, 3,    # normal: n0 = sep3(s0) + avg(s0) (sep3 on s0 shared with A)
                        0, 3, 1, 3, 2, 2, 0, 4])

MACRO = ENASMacroSpace(num_layers=3, out_filters=4)
MACRO_A = MACRO.decode([0, [], 1, [1], 0, [0, 1]])  # conv3, sep3 (skip from the stem), conv3 (skip from layer 0)
MACRO_B = MACRO.decode([0, [], 4, [0], 2, [1, 1]])  # conv3 shared with A in layer 0; avg pool; conv5
NEVER_MACRO = [ENAS_MACRO_OPS.index("sep_conv_5x5"), ENAS_MACRO_OPS.index("max_pool_3x3")]


def _micro_net() -> ENASMicroSupernet:
    torch.manual_seed(0)
    return ENASMicroSupernet(num_nodes=2, num_layers=1, C=4, in_channels=1, num_classes=10, keep_prob=1.0)


def _macro_net() -> ENASMacroSupernet:
    torch.manual_seed(0)
    return ENASMacroSupernet(num_layers=3, out_filters=4, in_channels=1, num_classes=10)


def _data(size: int = 8, n: int = 6, channels: int = 1):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, channels, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _grads(net, child, x, y) -> Dict[int, torch.Tensor]:
    """``{id(parameter): its gradient}`` of one child's loss, for the parameters it reaches."""
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x, child), y).backward()
    return {id(p): p.grad.clone() for p in net.parameters() if p.grad is not None}


def _shared_updates_accumulate(net, a, b, shared: List[torch.nn.Parameter]) -> None:
    x, y = _data()
    ga, gb = _grads(net, a, x, y), _grads(net, b, x, y)
    assert shared and all(id(p) in ga and id(p) in gb for p in shared), "both children must reach the shared op"
    assert any(not torch.equal(ga[id(p)], gb[id(p)]) for p in shared)
    assert all(float(ga[id(p)].abs().sum()) > 0 for p in shared)
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x, a), y).backward()
    F.cross_entropy(net(x, b), y).backward()  # into the same .grad tensors: the same parameters
    for p in shared:
        torch.testing.assert_close(p.grad, ga[id(p)] + gb[id(p)], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- micro


def test_micro_children_sharing_an_op_accumulate_into_its_parameters():
    net = _micro_net()
    edge = net.cells[0].edges[0]  # normal cell, node 0, input 0: sep_conv_3x3 there in both children
    shared = list(edge.ops[ENAS_OPS.index("sep_conv_3x3")].parameters())
    _shared_updates_accumulate(net, MICRO_A, MICRO_B, shared)
    # the parameter objects are the supernet's own: no child copies them
    assert {id(p) for p in shared} <= {id(p) for p in net.parameters()}


def test_micro_ops_and_edges_never_sampled_get_no_gradient():
    net = _micro_net()
    x, y = _data()
    F.cross_entropy(net(x, MICRO_A), y).backward()
    sep5 = ENAS_OPS.index("sep_conv_5x5")
    for c, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for p in edge.ops[sep5].parameters():
                assert p.grad is None, f"cell {c} edge {e}: sep_conv_5x5 was never sampled"
    # normal cell, node 1 reads inputs 2 and 0 only: its edge from s1 (edge 3) runs nothing
    assert all(p.grad is None for p in net.cells[0].edges[3].parameters())
    # ...while the sampled sep3 of node 1 on s0 (edge 2) does get one
    assert all(p.grad is not None for p in net.cells[0].edges[2].ops[0].parameters())
    # the output weight: rows of the loose ends only (normal cell: state 3; the others are read)
    out_grad = net.cells[0].out_weight.grad
    assert list(MICRO_A.normal_concat) == [3]
    assert float(out_grad[3].abs().sum()) > 0
    assert all(float(out_grad[i].abs().sum()) == 0 for i in (0, 1, 2))


def test_cell_edge_weights_count_each_input_op_pair_of_a_hand_written_cell():
    nodes = [[("sep_conv_3x3", 0), ("skip_connect", 1)],
             [("max_pool_3x3", 2), ("max_pool_3x3", 2)],
             [("avg_pool_3x3", 0), ("sep_conv_5x5", 3)]]
    w = cell_edge_weights(nodes, 3)
    # node-major edges: node 0 reads rows 0-1 (inputs 0, 1), node 1 rows 2-4 (inputs 0..2), node 2 rows 5-8
    expected = torch.zeros(9, 5)
    expected[0, 0] = 1  # sep3 on s0
    expected[1, 4] = 1  # skip on s1
    expected[4, 3] = 2  # max pool on s2, twice
    expected[5, 2] = 1  # avg pool on s0
    expected[8, 1] = 1  # sep5 on s3
    assert torch.equal(w, expected)


def test_micro_cell_output_is_the_gathered_1x1_of_its_loose_ends_by_hand():
    torch.manual_seed(0)
    C = 4
    cell = ENASMicroCell(2, C, C, C, reduction=False, reduction_prev=False)
    s0, s1 = torch.randn(3, C, 5, 5), torch.randn(3, C, 5, 5)
    # node 0 = sep3(s1) + sep3(s1) (the same op twice: counted twice); node 1 = avg(s2) + skip(s2);
    # loose ends: s0 (no node reads it) and s3
    nodes = [[("sep_conv_3x3", 1), ("sep_conv_3x3", 1)], [("avg_pool_3x3", 2), ("skip_connect", 2)]]
    out = cell(s0, s1, nodes)

    p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
    s2 = 2 * cell.edges[1].ops[ENAS_OPS.index("sep_conv_3x3")](p1)  # node 0, input 1 = edge 1
    s3 = cell.edges[4].ops[ENAS_OPS.index("avg_pool_3x3")](s2) + s2  # node 1, input 2 = edge 4
    W = cell.out_weight
    y = torch.einsum("oc,nchw->nohw", W[0], F.relu(p0)) + torch.einsum("oc,nchw->nohw", W[3], F.relu(s3))
    mean, var = y.mean((0, 2, 3), keepdim=True), y.var((0, 2, 3), unbiased=False, keepdim=True)
    expected = (y - mean) / torch.sqrt(var + cell.out_bn.eps)  # non-affine BN, batch statistics
    assert out.shape == (3, C, 5, 5)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size,maps", [(7, [7, 4, 2]), (9, [9, 5, 3]), (8, [8, 4, 2])])
def test_micro_shapes_on_odd_sizes_through_reduction_cells(size, maps):
    torch.manual_seed(0)
    net = ENASMicroSupernet(num_nodes=2, num_layers=1, C=4, in_channels=3, num_classes=7)
    assert [c.reduction for c in net.cells] == [False, True, True]  # 3 cells, reductions at 1/3 and 2/3
    shapes = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for c in net.cells]
    logits = net(torch.randn(2, 3, size, size), MICRO_A)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 7)
    assert shapes == [(2, 4, maps[0], maps[0]), (2, 8, maps[1], maps[1]), (2, 16, maps[2], maps[2])]


def test_micro_supernet_refuses_a_child_with_the_wrong_number_of_nodes_and_bad_settings():
    net = _micro_net()
    three = ENASMicroSpace(num_nodes=3, num_layers=1, C=4).decode([0] * 24)
    with pytest.raises(ValueError, match=r"^the child has 3 normal and 3 reduction nodes; this supernet has "
                                         r"num_nodes=2$"):
        net(torch.randn(2, 1, 8, 8), three)
    with pytest.raises(ValueError, match=r"C must be even.*got 5"):
        ENASMicroSupernet(num_nodes=2, num_layers=1, C=5)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, H, W\), got \(2, 3, 8, 8\)"):
        net(torch.randn(2, 3, 8, 8), MICRO_A)


def test_micro_space_supernet_is_sized_by_the_space():
    net = ENASMicroSpace(num_nodes=3, num_layers=2, C=6).supernet(in_channels=1, num_classes=5)
    assert isinstance(net, ENASMicroSupernet) and net.num_nodes == 3 and len(net.cells) == 4
    assert net.classifier.out_features == 5 and net.stem[0].in_channels == 1 and net.stem[0].out_channels == 18


# --------------------------------------------------------------------------- macro


def test_macro_children_sharing_an_op_accumulate_into_its_parameters():
    net = _macro_net()
    shared = list(net.ops[0][ENAS_MACRO_OPS.index("conv_3x3")].parameters())  # layer 0 conv 3x3 in both
    _shared_updates_accumulate(net, MACRO_A, MACRO_B, shared)
    assert net.layer_op(0, MACRO_A.layers[0]) is net.layer_op(0, MACRO_B.layers[0])


def test_macro_ops_never_sampled_get_no_gradient():
    net = _macro_net()
    x, y = _data()
    F.cross_entropy(net(x, MACRO_A), y).backward()
    for i in range(3):
        for k, op in enumerate(net.ops[i]):
            used = ENAS_MACRO_OPS[k] == MACRO_A.layers[i].op
            grads = [p.grad is not None for p in op.parameters()]
            assert grads and all(grads) == used and any(grads) == used, f"layer {i} op {ENAS_MACRO_OPS[k]}"
    for i in range(3):
        for k in NEVER_MACRO:
            assert all(p.grad is None for p in net.ops[i][k].parameters())


def test_macro_supernet_child_equals_the_fixed_add_child_with_the_same_weights():
    net = _macro_net()
    fixed = ENASMacroNetwork(MACRO_A, 1, 10, out_filters=4, skip_combine="add")
    state = net.state_dict()
    mapped = {}
    for key in fixed.state_dict():
        if key.startswith("ops."):
            _, i, rest = key.split(".", 2)
            k = ENAS_MACRO_OPS.index(MACRO_A.layers[int(i)].op)
            mapped[key] = state[f"ops.{i}.{k}.{rest}"]
        else:
            mapped[key] = state[key]
    fixed.load_state_dict(mapped)
    x, _ = _data(size=7)
    net.eval(), fixed.eval()
    torch.testing.assert_close(net(x, MACRO_A), fixed(x))
    net.train(), fixed.train()
    torch.testing.assert_close(net(x, MACRO_A), fixed(x))
    assert not torch.allclose(net(x, MACRO_A), net(x, MACRO_B))


@pytest.mark.parametrize("size", [7, 9])
def test_macro_shapes_on_odd_sizes(size):
    net = ENASMacroSpace(num_layers=6, out_filters=4).supernet(in_channels=3, num_classes=7)
    assert set(net.reduce) == {"1", "3"} and len(net.ops) == 6 and all(len(ops) == 6 for ops in net.ops)
    child = ENASMacroSpace(num_layers=6, out_filters=4).decode(
        [0, [], 1, [1], 2, [0, 1], 3, [1, 0, 1], 4, [1, 1, 1, 1], 5, [0, 0, 0, 0, 1]])
    assert net(torch.randn(2, 3, size, size), child).shape == (2, 7)
    assert net.classifier.in_features == 16  # two reductions double 4 twice


def test_macro_supernet_refuses_a_child_of_another_depth():
    net = _macro_net()
    with pytest.raises(ValueError, match=r"^the architecture has 2 layers; this network has 3$"):
        net(torch.randn(2, 1, 8, 8), ENASMacroSpace(num_layers=2, out_filters=4).decode([0, [], 1, [1]]))
    with pytest.raises(ValueError, match=r"out_filters must be even.*got 5"):
        ENASMacroSupernet(num_layers=3, out_filters=5)

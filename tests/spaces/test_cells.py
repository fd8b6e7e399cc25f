"""Mixed edges, search cells and discrete cells."""

import copy

import pytest
import torch

from lit_automl.spaces import PUBLISHED_GENOTYPES
from lit_automl.spaces.cells import Cell, MixedEdge, SearchCell, num_search_edges, set_fusion
from lit_automl.spaces.ops import DARTS_OPS, OP_SETS, LeadingReLU
from tests.memory import saved_tensor_bytes


def test_mixed_edge_is_the_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    edge = MixedEdge(4, 1, DARTS_OPS)
    x = torch.randn(3, 4, 6, 6)
    w = torch.softmax(torch.randn(len(DARTS_OPS)), 0)
    expected = sum(w[k] * op(x) for k, op in enumerate(edge.ops))
    torch.testing.assert_close(edge(x, w), expected)


def test_zero_weight_ops_and_none_are_not_run():
    edge = MixedEdge(4, 1, DARTS_OPS)
    calls = []
    for k, op in enumerate(edge.ops):
        op.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
    w = torch.zeros(len(DARTS_OPS))
    w[DARTS_OPS.index("none")] = 0.5
    w[DARTS_OPS.index("sep_conv_3x3")] = 0.5
    edge(torch.randn(2, 4, 6, 6), w)
    assert calls == [DARTS_OPS.index("sep_conv_3x3")]
    # Only 'none' weighted: zeros of the output shape, nothing run.
    calls.clear()
    out = edge(torch.randn(2, 4, 6, 6), torch.eye(len(DARTS_OPS))[0])
    assert calls == [] and out.shape == (2, 4, 6, 6) and torch.count_nonzero(out) == 0
    reduce_edge = MixedEdge(4, 2, DARTS_OPS)
    assert reduce_edge(torch.randn(2, 4, 7, 7), torch.eye(len(DARTS_OPS))[0]).shape == (2, 4, 4, 4)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_search_cell_edges_and_shape(steps):
    assert num_search_edges(steps) == sum(i + 2 for i in range(steps))
    cell = SearchCell(steps, steps, 6, 6, 4, reduction=True, reduction_prev=False, primitives=DARTS_OPS)
    assert len(cell.edges) == num_search_edges(steps)
    w = torch.softmax(torch.randn(num_search_edges(steps), len(DARTS_OPS)), -1)
    out = cell(torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8), w)
    assert out.shape == (2, 4 * steps, 4, 4)


def test_discrete_cell_from_published_genotype():
    g = PUBLISHED_GENOTYPES["DARTS_V2"]
    cell = Cell(g.normal, g.normal_concat, 8, 8, 4, reduction=False, reduction_prev=False)
    assert len(cell.ops) == 8
    out = cell(torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 16, 8, 8)
    red = Cell(g.reduce, g.reduce_concat, 8, 16, 4, reduction=True, reduction_prev=False)
    assert red(torch.randn(2, 8, 8, 8), torch.randn(2, 16, 8, 8)).shape == (2, 16, 4, 4)


def test_drop_path_only_on_non_identity_paths_while_training():
    g = PUBLISHED_GENOTYPES["DARTS_V2"]
    torch.manual_seed(0)
    cell = Cell(g.normal, g.normal_concat, 4, 4, 4, reduction=False, reduction_prev=False)
    s0, s1 = torch.randn(16, 4, 6, 6), torch.randn(16, 4, 6, 6)
    cell.eval()
    assert torch.equal(cell(s0, s1, drop_prob=0.5), cell(s0, s1, drop_prob=0.0))
    cell.train()
    torch.manual_seed(1)
    a = cell(s0, s1, drop_prob=0.0)
    torch.manual_seed(1)
    b = cell(s0, s1, drop_prob=0.5)
    assert not torch.allclose(a, b)
    # Node 2 of DARTS_V2 is sep_conv_3x3(c_{k-1}) + skip_connect(c_{k-2}): with the conv path
    # dropped, what is left is exactly the identity path, never dropped.
    assert g.normal[2] == (("sep_conv_3x3", 1), ("skip_connect", 0))
    torch.manual_seed(2)
    c = cell(s0, s1, drop_prob=0.99)
    node2 = c[:, 2 * 4 : 3 * 4]  # concat order: nodes 2, 3, 4, 5 -> node index 4 is position 2
    identity = cell.preprocess0(s0)
    kept_identity_only = torch.isclose(node2, identity, atol=1e-6).flatten(1).all(1)
    assert kept_identity_only.float().mean() > 0.8


def test_discrete_cell_rejects_out_of_range_inputs():
    with pytest.raises(ValueError, match="node 0 takes input 2; allowed inputs are 0..1"):
        Cell([(("sep_conv_3x3", 2),)], [2], 4, 4, 4, False, False)


# ---------------------------------------------------------------- PC-DARTS / P-DARTS extensions


def test_channel_shuffle_interleaves_groups():
    from lit_automl.spaces.cells import channel_shuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ValueError, match="5 channels cannot be shuffled in 2 groups"):
        channel_shuffle(torch.zeros(1, 5, 1, 1), 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channel_edge_mixes_one_kth_and_bypasses_the_rest(stride):
    """PC-DARTS Sec. 3.2: ops see C/K channels; the rest is passed (max pooled at stride 2); shuffle."""
    from lit_automl.spaces.cells import channel_shuffle

    torch.manual_seed(0)
    edge = MixedEdge(8, stride, DARTS_OPS, partial_channels=4)
    assert all(p.shape[0] in (2, 1) or p.dim() < 2 for op in edge.ops for p in op.parameters())
    x = torch.randn(3, 8, 6, 6)
    w = torch.softmax(torch.randn(len(DARTS_OPS)), 0)
    mixed = sum(w[k] * op(x[:, :2]) for k, op in enumerate(edge.ops) if DARTS_OPS[k] != "none")
    rest = x[:, 2:] if stride == 1 else torch.nn.functional.max_pool2d(x[:, 2:], 2, 2)
    expected = channel_shuffle(torch.cat([mixed, rest], 1), 4)
    torch.testing.assert_close(edge(x, w), expected)
    # The bypassed channels reach the output untouched (stride 1): channel 1 of the output is input channel 2.
    if stride == 1:
        torch.testing.assert_close(edge(x, w)[:, 1], x[:, 2])


def test_partial_channels_must_divide_the_channels():
    with pytest.raises(ValueError, match=r"partial_channels=3 must divide the edge's 8 channels .*\[1, 2, 4, 8\]"):
        MixedEdge(8, 1, DARTS_OPS, partial_channels=3)
    with pytest.raises(ValueError, match="partial_channels must be a positive int, got 0"):
        MixedEdge(8, 1, DARTS_OPS, partial_channels=0)


def test_partial_channels_cut_the_op_parameters_by_about_k():
    full = sum(p.numel() for p in MixedEdge(16, 1, DARTS_OPS).parameters())
    quarter = sum(p.numel() for p in MixedEdge(16, 1, DARTS_OPS, partial_channels=4).parameters())
    assert 4 * quarter <= full < 16 * quarter  # pointwise convs shrink by K^2, depthwise by K


def test_per_edge_primitives_build_different_ops_per_edge():
    from lit_automl.spaces.cells import edge_primitive_lists

    lists = [("skip_connect", "sep_conv_3x3"), ("max_pool_3x3", "dil_conv_5x5")] * 2 + [("none", "skip_connect")]
    cell = SearchCell(2, 2, 4, 4, 4, reduction=False, reduction_prev=False, primitives=lists)
    assert [edge.primitives for edge in cell.edges] == lists
    out = cell(torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6), torch.softmax(torch.randn(5, 2), -1))
    assert out.shape == (2, 8, 6, 6)
    with pytest.raises(ValueError, match="expected 5 lists, got 2"):
        edge_primitive_lists(lists[:2], 5)
    with pytest.raises(ValueError, match=r"same number of candidate ops, got lengths \[1, 2\]"):
        edge_primitive_lists(lists[:4] + [("skip_connect",)], 5)


def test_identity_dropout_only_after_skip_connect_and_only_while_training():
    torch.manual_seed(0)
    edge = MixedEdge(4, 1, ("skip_connect", "avg_pool_3x3"))
    edge.identity_dropout = 0.5
    x = torch.ones(64, 4, 4, 4)
    out = edge(x, torch.tensor([1.0, 0.0]))
    assert 0.3 < (out == 0).float().mean() < 0.7 and set(out.unique().tolist()) <= {0.0, 2.0}
    z = torch.randn(8, 4, 4, 4)  # the pooling path is never dropped
    torch.testing.assert_close(edge(z, torch.tensor([0.0, 1.0])), edge.ops[1](z))
    edge.eval()
    torch.testing.assert_close(edge(x, torch.tensor([1.0, 0.0])), x)


def test_derive_with_per_edge_primitives_names_each_edge_s_own_op():
    from lit_automl.spaces.derive import derive_cell

    lists = [("skip_connect", "sep_conv_3x3"), ("none", "dil_conv_5x5"), ("max_pool_3x3", "sep_conv_5x5"),
             ("sep_conv_3x3", "none"), ("avg_pool_3x3", "skip_connect")]
    w = torch.tensor([[0.9, 0.1], [0.1, 0.8], [0.2, 0.3], [0.05, 0.95], [0.6, 0.4]])
    nodes = derive_cell(w, lists, steps=2, k=2)
    assert nodes == [(("skip_connect", 0), ("dil_conv_5x5", 1)), (("avg_pool_3x3", 2), ("sep_conv_5x5", 0))]


# ---------------------------------------------------------------- one discrete cell: drop path rule


def test_drop_path_spares_only_the_identity_module_a_stride_2_skip_is_dropped():
    """DARTS's rule (quark0/darts model.py: drop path unless the op is ``Identity``), for every cell."""
    torch.manual_seed(0)
    x = torch.randn(64, 4, 6, 6)
    normal = Cell([(("skip_connect", 0),)], [2], 4, 4, 4, reduction=False, reduction_prev=False).train()
    assert normal._droppable == [False]
    torch.testing.assert_close(normal(x, x, drop_prob=0.9), normal.preprocess0(x))  # identity: never dropped
    reduce = Cell([(("skip_connect", 0),)], [2], 4, 4, 4, reduction=True, reduction_prev=False).train()
    assert reduce._droppable == [True]  # a stride-2 skip_connect is a FactorizedReduce: a learned path
    out = reduce(x, x, drop_prob=0.9)
    dropped = (out.flatten(1) == 0).all(1).float().mean()
    assert 0.75 < dropped < 1.0
    reduce.eval()
    assert (reduce(x, x, drop_prob=0.9).flatten(1) != 0).any(1).all()


def test_nasnet_cell_is_the_one_discrete_cell():
    from lit_automl.spaces.nasnet import NASNetCell

    assert NASNetCell is Cell
    g = PUBLISHED_GENOTYPES["NASNet_A"]
    cell = Cell.from_genotype(g, True, 8, 8, 4, reduction_prev=False)
    assert cell.concat == g.reduce_concat and cell.reduction and cell.out_channels == 16


# --------------------------------------------------------------------------- the fused edge (shared ReLU, subsampled dilation)
def _edge_pair(C, stride, primitives, partial_channels, dtype):
    torch.manual_seed(0)
    fused = MixedEdge(C, stride, primitives, partial_channels).to(dtype)
    unfused = set_fusion(copy.deepcopy(fused), shared_relu=False, subsample_dilated=False)
    return fused, unfused


def _run(edge, x, w):
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()
    out = edge(x, w)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, w, *edge.parameters()], allow_unused=True)
    return out, [g for g in grads if g is not None]


@pytest.mark.parametrize("op_set", ["darts", "nasnet"])
@pytest.mark.parametrize("stride, partial_channels", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("hard", [False, True])
def test_fused_edge_equals_the_unfused_edge(op_set, stride, partial_channels, hard):
    primitives = OP_SETS[op_set]
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        fused, unfused = _edge_pair(4, stride, primitives, partial_channels, dtype)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(3, 4, 7, 7, generator=g, dtype=dtype)
        w = torch.softmax(torch.randn(len(primitives), generator=g, dtype=dtype), 0)
        if hard:  # a sampled one-hot path (SNAS hard samples, ENAS, one-shot masks)
            w = torch.nn.functional.one_hot(w.argmax(), len(primitives)).to(dtype)
        out_f, grads_f = _run(fused, x, w)
        out_u, grads_u = _run(unfused, x, w)
        torch.testing.assert_close(out_f, out_u, rtol=tol, atol=tol)
        assert len(grads_f) == len(grads_u)
        for a, b in zip(grads_f, grads_u):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_shared_relu_keeps_one_activation_for_backward():
    def saved_bytes(edge):
        x, w = torch.randn(8, 16, 16, 16, requires_grad=True), torch.softmax(torch.randn(len(DARTS_OPS)), 0)
        return saved_tensor_bytes(lambda: edge(x, w))

    fused, unfused = _edge_pair(16, 1, DARTS_OPS, 1, torch.float32)
    activation = 8 * 16 * 16 * 16 * 4
    # At stride 1 four DARTS ops start with ReLU (sep and dil conv, 3x3 and 5x5): three copies fewer are kept.
    assert saved_bytes(unfused) - saved_bytes(fused) >= 3 * activation


def test_ops_run_their_own_relu_outside_the_edge():
    edge = MixedEdge(4, 2, DARTS_OPS)
    x = torch.randn(2, 4, 6, 6)
    edge(x, torch.softmax(torch.randn(len(DARTS_OPS)), 0))
    relus = [m for m in edge.modules() if isinstance(m, LeadingReLU)]
    assert relus and not any(m.skip for m in relus)
    sep = edge.ops[DARTS_OPS.index("sep_conv_3x3")]
    torch.testing.assert_close(sep(x), sep(torch.relu(x)))  # relu is idempotent: the op's own ReLU ran
    with pytest.raises(ValueError, match="shared_relu must be True or False"):
        MixedEdge(4, 1, DARTS_OPS, shared_relu=1)

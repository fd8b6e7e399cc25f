"""Mixed edges, search cells and discrete cells."""

import pytest
import torch

from lit_automl.spaces import PUBLISHED_GENOTYPES
from lit_automl.spaces.cells import Cell, MixedEdge, SearchCell, num_search_edges
from lit_automl.spaces.ops import DARTS_OPS


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

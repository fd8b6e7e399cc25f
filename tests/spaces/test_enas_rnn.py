"""The ENAS recurrent cell with shared weights (Pham et al., ICML 2018, Sec. 2.1)."""

from __future__ import annotations

import pytest
import torch

from lit_automl.spaces.recurrent import RecurrentLM
from lit_automl.spaces.decisions import validate_actions
from lit_automl.spaces.enas_rnn import (ENAS_ACTIVATIONS, ENASRecurrentArch, ENASRecurrentCell, decode_enas_rnn,
                                        enas_init_range, enas_rnn_decisions, encode_enas_rnn)

NINP = NHID = 5


def _cell(num_nodes: int = 4, **kw) -> ENASRecurrentCell:
    torch.manual_seed(0)
    return ENASRecurrentCell(NINP, NHID, num_nodes=num_nodes, dropout_h=0.0, dropout_x=0.0, **kw)


def _loss(cell: ENASRecurrentCell, arch: ENASRecurrentArch) -> torch.Tensor:
    torch.manual_seed(1)
    cell.architecture = arch
    out, _ = cell(torch.randn(3, 2, NINP), torch.randn(2, NHID))
    return out.pow(2).sum()


# Two children of a 4-node cell that share the edge (3, 1) with activation relu, and differ elsewhere.
ARCH_A = ENASRecurrentArch(((0, "tanh"), (1, "sigmoid"), (1, "relu"), (3, "identity")))
ARCH_B = ENASRecurrentArch(((0, "relu"), (1, "tanh"), (1, "relu"), (2, "tanh")))


@pytest.mark.parametrize("share_activations", [False, True])
def test_shared_edge_is_one_tensor_and_accumulates_both_children(share_activations):
    cell = _cell(share_activations=share_activations)
    w_a = cell.weight(3, 1, ARCH_A.nodes[2][1])
    assert w_a is cell.weight(3, 1, ARCH_B.nodes[2][1])
    _loss(cell, ARCH_A).backward()
    grad_a = w_a.grad.clone()
    assert grad_a.abs().sum() > 0
    cell.zero_grad(set_to_none=True)
    _loss(cell, ARCH_B).backward()
    grad_b = w_a.grad.clone()
    assert grad_b.abs().sum() > 0 and not torch.allclose(grad_a, grad_b)
    cell.zero_grad(set_to_none=True)
    _loss(cell, ARCH_A).backward()
    _loss(cell, ARCH_B).backward()
    torch.testing.assert_close(w_a.grad, grad_a + grad_b)


def test_paper_sharing_ignores_activation_code_sharing_does_not():
    paper, code = _cell(share_activations=True), _cell(share_activations=False)
    assert paper.weight(2, 1, "tanh") is paper.weight(2, 1, "relu")
    assert code.weight(2, 1, "tanh") is not code.weight(2, 1, "relu")
    assert paper.weight(3, 1, "tanh") is not paper.weight(3, 2, "tanh")
    assert len(list(code.parameters())) == 4 * (1 + 6) and len(list(paper.parameters())) == 1 + 6


def test_unused_edges_get_no_gradient():
    """Edges (and activations) the child does not use get ``grad is None``: they are not in its graph."""
    cell = _cell()
    _loss(cell, ARCH_A).backward()
    used = {("1_0_tanh",), ("2_1_sigmoid",), ("3_1_relu",), ("4_3_identity",)}
    for name, p in cell.named_parameters():
        key = (name.split(".")[1],)
        assert (p.grad is not None) == (key in used), name
        if key in used:
            assert p.grad.abs().sum() > 0, name


def _hand(cell: ENASRecurrentCell, arch: ENASRecurrentArch, xs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Float64 highway equations of the module docstring, written out node by node."""
    f = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v, "sigmoid": torch.sigmoid}
    outs = []
    for x in xs:
        act1 = arch.nodes[0][1]
        W1 = cell.weight(1, 0, act1).detach().double()
        gc = torch.cat([x, h], -1) @ W1
        s = {1: h + torch.sigmoid(gc[:, NHID:]) * (f[act1](gc[:, :NHID]) - h)}
        for l, (j, act) in enumerate(arch.nodes[1:], start=2):
            gc = s[j] @ cell.weight(l, j, act).detach().double()
            s[l] = s[j] + torch.sigmoid(gc[:, NHID:]) * (f[act](gc[:, :NHID]) - s[j])
        read = {j for j, _ in arch.nodes[1:]}
        ends = [s[l] for l in range(1, len(arch.nodes) + 1) if l not in read]
        h = sum(ends) / len(ends)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("nodes", [((0, "tanh"), (1, "relu"), (1, "sigmoid")),
                                   ((0, "identity"), (1, "tanh"), (2, "relu"))])
def test_three_node_cell_matches_hand_computation(nodes):
    cell = _cell(num_nodes=3).double().eval()
    arch = ENASRecurrentArch(nodes)
    xs, h0 = torch.randn(4, 2, NINP, dtype=torch.float64), torch.randn(2, NHID, dtype=torch.float64)
    cell.architecture = arch
    out, last = cell(xs, h0)
    expected = _hand(cell, arch, xs, h0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, expected[-1], rtol=1e-12, atol=1e-12)


def test_loose_ends_are_averaged():
    assert ENASRecurrentArch(((0, "tanh"), (1, "relu"), (1, "sigmoid"))).loose_ends == (2, 3)
    assert ENASRecurrentArch(((0, "tanh"), (1, "relu"), (2, "relu"))).loose_ends == (3,)
    assert ARCH_A.loose_ends == (2, 4) and ARCH_B.loose_ends == (3, 4)
    # two loose ends: the output is their mean, so it differs from either end alone
    cell = _cell(num_nodes=3).double().eval()
    fan = ENASRecurrentArch(((0, "tanh"), (1, "relu"), (1, "sigmoid")))
    only2 = ENASRecurrentArch(((0, "tanh"), (1, "relu"), (2, "identity")))
    x, h = torch.randn(1, 2, NINP, dtype=torch.float64), torch.randn(2, NHID, dtype=torch.float64)
    cell.architecture = fan
    mean_out, _ = cell(x, h)
    ends = _hand(cell, fan, x, h)
    torch.testing.assert_close(mean_out, ends)
    cell.architecture = only2
    assert not torch.allclose(cell(x, h)[0], mean_out)


def test_decisions_and_round_trip():
    decisions = enas_rnn_decisions(12)
    assert len(decisions) == 1 + 2 * 11
    assert decisions[0].num_choices == len(ENAS_ACTIVATIONS) == 4
    assert [d.num_choices for d in decisions[1::2]] == list(range(1, 12))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        tokens = [int(torch.randint(d.num_choices, (1,), generator=g)) for d in decisions]
        validate_actions(decisions, tokens)
        arch = decode_enas_rnn(tokens)
        assert arch.num_nodes == 12 and encode_enas_rnn(arch) == tokens
        assert decode_enas_rnn(encode_enas_rnn(arch)) == arch
    assert decode_enas_rnn([2, 0, 1, 1, 3], num_nodes=3).nodes == ((0, "identity"), (1, "relu"), (2, "sigmoid"))


def test_architecture_accepts_tokens_and_init_range():
    cell = _cell(num_nodes=3)
    cell.architecture = [2, 0, 1, 1, 3]
    assert cell.architecture == decode_enas_rnn([2, 0, 1, 1, 3], num_nodes=3)
    assert enas_init_range(200) == 0.1 and enas_init_range(400) == 0.05 and enas_init_range(1000) == 0.04
    assert cell.weight(2, 1, "tanh").abs().max() <= 0.1


def test_recurrent_lm_forward_backward():
    torch.manual_seed(0)
    cell = ENASRecurrentCell(8, 8, num_nodes=12)
    lm = RecurrentLM(11, cell=cell, emsize=8, nhid=8)
    cell.architecture = decode_enas_rnn([0] + [0, 1] * 11)
    tokens = torch.randint(11, (6, 3))
    out = lm(tokens)
    assert out.logits.shape == (6, 3, 11) and out.hidden.shape == (3, 8)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, 11), tokens.reshape(-1)).backward()
    assert cell.weight(12, 1, "relu").grad.abs().sum() > 0  # every node reads node 1 (prev token 0)
    assert cell.weight(12, 11, "relu").grad is None


def test_bad_input():
    with pytest.raises(ValueError, match=r"num_nodes must be an int >= 2.*got 1"):
        ENASRecurrentCell(4, 4, num_nodes=1)
    with pytest.raises(ValueError, match=r"num_nodes must be an int >= 2.*got 1"):
        enas_rnn_decisions(1)
    with pytest.raises(ValueError, match=r"num_nodes must be an int >= 2.*got 1"):
        ENASRecurrentArch(((0, "tanh"),))
    with pytest.raises(ValueError, match=r"node 3 prev must be an int in \[1, 2\], got 3"):
        ENASRecurrentArch(((0, "tanh"), (1, "relu"), (3, "tanh")))
    with pytest.raises(ValueError, match=r"node 2 prev must be an int in \[1, 1\], got 0"):
        ENASRecurrentArch(((0, "tanh"), (0, "relu")))
    with pytest.raises(ValueError, match=r"node 2 activation must be one of \['tanh', 'relu', 'identity', "
                                         r"'sigmoid'\], got 'gelu'"):
        ENASRecurrentArch(((0, "tanh"), (1, "gelu")))
    with pytest.raises(ValueError, match=r"token 1 \(node2.prev\) must be an int in \[0, 0\], got 1"):
        decode_enas_rnn([0, 1, 0], num_nodes=2)
    with pytest.raises(ValueError, match=r"takes 3 tokens.*got 2"):
        decode_enas_rnn([0, 0], num_nodes=2)
    cell = _cell(num_nodes=3)
    with pytest.raises(ValueError, match="no architecture: set cell.architecture"):
        cell(torch.randn(2, 1, NINP), torch.randn(1, NHID))
    with pytest.raises(ValueError, match="architecture has 4 nodes, but this cell has num_nodes=3"):
        cell.architecture = ARCH_A
    with pytest.raises(ValueError, match="takes 5 tokens"):
        cell.architecture = [0, 0, 0]
    with pytest.raises(ValueError, match=r"activation must be one of"):
        cell.weight(2, 1, "gelu")

"""NAS-RL tree cell (Zoph & Le 2017, Sec. 3.4, App. A): token layout, the published cell by hand, bad input."""

import random

import pytest
import torch

from lit_automl.spaces.decisions import validate_actions
from lit_automl.spaces.nas_rl_cell import (NAS_CELL, NAS_CELL_TOKENS, NASRLCell, TreeCell, decode_tree_cell,
                                           encode_tree_cell, tree_cell_decisions)
from lit_automl.spaces.recurrent import RecurrentLM

sig, tanh, relu = torch.sigmoid, torch.tanh, torch.relu


def test_decision_layout_base8_and_base2():
    d = tree_cell_decisions(8)
    assert len(d) == 34
    assert [x.num_choices for x in d] == [2, 4] * 15 + [2, 4] + [15, 15]
    assert [x.name for x in d[:2]] == ["node0.combination", "node0.activation"]
    assert [x.name for x in d[-4:]] == ["inject.combination", "inject.activation", "cell_node", "inject_node"]
    # the paper's base-2 example (Fig. 5) has 10 tokens: 3 nodes x 2, inject x 2, 2 cell indices
    assert [x.num_choices for x in tree_cell_decisions(2)] == [2, 4] * 3 + [2, 4] + [3, 3]
    assert len(tree_cell_decisions(4)) == 2 * 7 + 4


def test_round_trip_published_and_random():
    assert len(NAS_CELL_TOKENS) == 34
    assert decode_tree_cell(NAS_CELL_TOKENS) == NAS_CELL
    assert encode_tree_cell(decode_tree_cell(NAS_CELL_TOKENS)) == list(NAS_CELL_TOKENS)
    rng = random.Random(0)
    for base in (2, 4, 8):
        decisions = tree_cell_decisions(base)
        for _ in range(20):
            tokens = [rng.randrange(x.num_choices) for x in decisions]
            assert validate_actions(decisions, tokens) == tokens  # what the controller emits
            cell = decode_tree_cell(tokens, base)
            assert cell.base == base and encode_tree_cell(cell) == tokens
            assert NASRLCell(3, 2, tokens, base=base).tokens() == tokens


def _published_by_hand(x, h, c, W, U, b):
    """tf.contrib.rnn.NASCell's equations, written out (bias on the recurrent projection only)."""
    n = h.shape[-1]
    xs = [x @ W[:, i * n:(i + 1) * n] for i in range(8)]
    hs = [h @ U[:, i * n:(i + 1) * n] + b[i * n:(i + 1) * n] for i in range(8)]
    l1 = [sig(xs[0] + hs[0]), relu(xs[1] + hs[1]), sig(xs[2] + hs[2]), relu(xs[3] * hs[3]),
          tanh(xs[4] + hs[4]), sig(xs[5] + hs[5]), tanh(xs[6] + hs[6]), sig(xs[7] + hs[7])]
    l2_0 = tanh(tanh(l1[0] * l1[1]) + c)  # c_{t-1} added into the first second-level node
    l2_1 = tanh(l1[2] + l1[3])
    l2_2 = tanh(l1[4] * l1[5])
    l2_3 = sig(l1[6] + l1[7])
    new_c = l2_0 * l2_1
    new_h = tanh(new_c * tanh(l2_2 + l2_3))
    return new_h, new_c


@pytest.mark.parametrize("use_bias", [False, True])
def test_published_cell_equals_nascell_equations(use_bias):
    torch.manual_seed(0)
    T, B, ninp, nhid = 3, 2, 3, 4
    cell = NASRLCell(ninp, nhid, NAS_CELL_TOKENS, use_bias=use_bias).double()
    with torch.no_grad():  # weights large enough that every activation matters
        cell.kernel.normal_()
        cell.recurrent_kernel.normal_()
        if use_bias:
            cell.bias.normal_()
    x = torch.randn(T, B, ninp, dtype=torch.float64)
    h, c = torch.randn(B, nhid, dtype=torch.float64), torch.randn(B, nhid, dtype=torch.float64)
    out, state = cell(x, torch.cat([h, c], -1))
    b = cell.bias.detach() if use_bias else torch.zeros(8 * nhid, dtype=torch.float64)
    W, U = cell.kernel.detach(), cell.recurrent_kernel.detach()
    for t in range(T):
        h, c = _published_by_hand(x[t], h, c, W, U, b)
        torch.testing.assert_close(out[t], h, rtol=0, atol=1e-12)
    torch.testing.assert_close(state, torch.cat([h, c], -1), rtol=0, atol=1e-12)
    assert not torch.allclose(c, torch.zeros_like(c)) and state.shape == (B, 2 * nhid)


def test_paper_base2_example_inject_and_pre_activation_memory():
    """App. A / Fig. 5: [Add, Tanh, ElemMult, ReLU, ElemMult, Sigmoid, Add, ReLU, 1, 0]."""
    tokens = [0, 1, 1, 3, 1, 2, 0, 3, 1, 0]
    cell = NASRLCell(2, 3, tokens, base=2).double()
    with torch.no_grad():
        cell.kernel.normal_()
        cell.recurrent_kernel.normal_()
    torch.manual_seed(1)
    x = torch.randn(1, 4, 2, dtype=torch.float64)
    h, c = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    out, state = cell(x, torch.cat([h, c], -1))
    W, U = cell.kernel.detach(), cell.recurrent_kernel.detach()
    W1, W3 = W[:, :3], W[:, 3:]
    W2, W4 = U[:, :3], U[:, 3:]
    a0 = tanh(x[0] @ W1 + h @ W2)
    a1 = relu((x[0] @ W3) * (h @ W4))
    a0_new = relu(a0 + c)
    h_t = sig(a0_new * a1)
    c_t = (x[0] @ W3) * (h @ W4)  # tree index 1 before its activation
    torch.testing.assert_close(out[0], h_t, rtol=0, atol=1e-12)
    torch.testing.assert_close(state, torch.cat([h_t, c_t], -1), rtol=0, atol=1e-12)


def test_in_recurrent_lm_and_gradients():
    torch.manual_seed(0)
    cell = NASRLCell(6, 6)
    lm = RecurrentLM(11, cell=cell, emsize=6, nhid=6).eval()
    words = torch.randint(0, 11, (5, 3))
    res = lm(words, cell.init_hidden(3))
    assert res.logits.shape == (5, 3, 11) and res.hidden.shape == (3, 12)
    res2 = lm(words[:2], cell.init_hidden(3))  # carrying the state reproduces the long run
    res3 = lm(words[2:], res2.hidden)
    torch.testing.assert_close(res3.logits, res.logits[2:])
    res.logits.sum().backward()
    assert cell.kernel.grad.abs().sum() > 0 and cell.recurrent_kernel.grad.abs().sum() > 0
    torch.testing.assert_close(lm(words).logits, res.logits)  # RecurrentLM's zero state is the cell's [h, c]
    with pytest.raises(ValueError, match=r"\(3, 12\).*got \(3, 6\).*init_hidden"):
        lm(words, torch.zeros(3, 6))  # a (B, nhid) state is too narrow for [h, c]


def test_bad_input():
    with pytest.raises(ValueError, match="takes 34 tokens.*got 33"):
        decode_tree_cell(NAS_CELL_TOKENS[:-1])
    bad = list(NAS_CELL_TOKENS)
    bad[5] = 4
    with pytest.raises(ValueError, match=r"token 5 \(node2.activation\) must be an int in \[0, 3\], got 4"):
        NASRLCell(3, 4, bad)
    bad = list(NAS_CELL_TOKENS)
    bad[-1] = 15
    with pytest.raises(ValueError, match=r"token 33 \(inject_node\) must be an int in \[0, 14\], got 15"):
        decode_tree_cell(bad)
    for base in (6, 1, 0, 3):
        with pytest.raises(ValueError, match=f"base must be a power of 2 >= 2.*got {base}"):
            tree_cell_decisions(base)
    with pytest.raises(ValueError, match="ninp must be an int >= 1, got 0"):
        NASRLCell(0, 4)
    with pytest.raises(ValueError, match="nhid must be an int >= 1, got -2"):
        NASRLCell(3, -2)
    with pytest.raises(ValueError, match="tokens must be a sequence"):
        decode_tree_cell("0101")
    with pytest.raises(ValueError, match="node 1 activation must be one of"):
        TreeCell(nodes=(("add", "tanh"), ("add", "swish"), ("mul", "relu")), inject=("add", "tanh"),
                 inject_node=0, cell_node=1)
    with pytest.raises(ValueError, match="2B - 1 nodes.*got 5"):
        TreeCell(nodes=(("add", "tanh"),) * 5, inject=("add", "tanh"), inject_node=0, cell_node=1)
    cell = NASRLCell(3, 4)
    with pytest.raises(ValueError, match=r"inputs must be \(time, batch, ninp=3\)"):
        cell(torch.zeros(2, 5, 4), cell.init_hidden(5))

"""DartsRecurrentSearchCell: one-hot weights reproduce the fixed cell, the weighted sum by hand, skipping,
gradients, use inside RecurrentLM, derivation and bad input."""

from __future__ import annotations

import pytest
import torch

from lit_automl.spaces import DartsRecurrentSearchCell, RecurrentGenotype, get_recurrent_genotype
from lit_automl.spaces.op_names import DARTS_RNN_OPS
from lit_automl.spaces.recurrent import ACTIVATIONS, DartsRecurrentCell, RecurrentLM
from lit_automl.spaces.recurrent_genotype import num_recurrent_edges, recurrent_edge_slices

NINP, NHID, T, B = 5, 6, 3, 4


def one_hot(genotype: RecurrentGenotype) -> torch.Tensor:
    """Weights selecting exactly each node's (activation, predecessor)."""
    steps = genotype.steps
    w = torch.zeros(num_recurrent_edges(steps), len(DARTS_RNN_OPS), dtype=torch.float64)
    for sl, (act, pred) in zip(recurrent_edge_slices(steps), genotype.recurrent):
        w[sl.start + pred, DARTS_RNN_OPS.index(act)] = 1.0
    return w


def copy_matrices(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    with torch.no_grad():
        dst.W0.copy_(src.W0)
        for a, b in zip(src.Ws, dst.Ws):
            b.copy_(a)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
def test_one_hot_weights_equal_fixed_cell(name: str, training: bool) -> None:
    genotype = get_recurrent_genotype(name)
    torch.manual_seed(0)
    fixed = DartsRecurrentCell(NINP, NHID, genotype, dropout_h=0.3, dropout_x=0.4).double().train(training)
    search = DartsRecurrentSearchCell(NINP, NHID, steps=genotype.steps, dropout_h=0.3, dropout_x=0.4,
                                      batch_norm=False).double().train(training)
    copy_matrices(fixed, search)
    inputs = torch.randn(T, B, NINP, dtype=torch.float64)
    hidden = torch.randn(B, NHID, dtype=torch.float64)
    torch.manual_seed(1)  # the same dropout masks for both cells
    out_f, h_f = fixed(inputs, hidden)
    torch.manual_seed(1)
    out_s, h_s = search(inputs, hidden, one_hot(genotype))
    torch.testing.assert_close(out_s, out_f, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_s, h_f, rtol=0, atol=1e-12)
    assert search.genotype(one_hot(genotype)) == genotype


def hand_cell(cell: DartsRecurrentSearchCell, inputs: torch.Tensor, hidden: torch.Tensor, w: torch.Tensor,
              bn: bool) -> torch.Tensor:
    """A 2-node search cell by hand in float64 (no dropout), batch norm with batch statistics if ``bn``."""
    def norm(s: torch.Tensor) -> torch.Tensor:
        if not bn:
            return s
        return (s - s.mean(0)) / torch.sqrt(s.var(0, unbiased=False) + 1e-5)

    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda v: v}
    h = hidden
    outs = []
    for x in inputs:
        ch = torch.cat([x, h], -1) @ cell.W0
        c0, g0 = ch[:, :NHID], ch[:, NHID:]
        states = [norm(h + torch.sigmoid(c0) * (torch.tanh(g0) - h))]
        row = 0
        for i in range(2):
            total = torch.zeros_like(h)
            for j in range(i + 1):
                ch = states[j] @ cell.Ws[i]
                c, g = torch.sigmoid(ch[:, :NHID]), ch[:, NHID:]
                for k, name in enumerate(DARTS_RNN_OPS):
                    if name != "none":
                        total = total + w[row, k] * (states[j] + c * (acts[name](g) - states[j]))
                row += 1
            states.append(norm(total))
        h = (states[1] + states[2]) / 2
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("bn", [False, True])
def test_mixed_weights_match_hand_computation(bn: bool) -> None:
    torch.manual_seed(2)
    cell = DartsRecurrentSearchCell(NINP, NHID, steps=2, dropout_h=0.0, dropout_x=0.0, batch_norm=bn).double()
    w = torch.rand(3, 5, dtype=torch.float64).softmax(-1)
    w[1, 2] = 0.0  # one zero weight: skipped, still the same sum
    inputs = torch.randn(T, B, NINP, dtype=torch.float64)
    hidden = torch.randn(B, NHID, dtype=torch.float64)
    out, last = cell(inputs, hidden, w)
    expected = hand_cell(cell, inputs, hidden, w, bn)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(last, expected[-1], rtol=0, atol=1e-12)
    if bn:  # the authors' single non-affine BN, running statistics updated by s0 and every node
        assert cell.bn is not None and not cell.bn.affine
        assert cell.bn.num_batches_tracked.item() == T * 3


def test_none_contributes_nothing_and_zero_weights_skip_ops() -> None:
    torch.manual_seed(3)
    cell = DartsRecurrentSearchCell(NINP, NHID, steps=3, dropout_h=0.0, dropout_x=0.0, batch_norm=False).double()
    inputs = torch.randn(T, B, NINP, dtype=torch.float64)
    hidden = torch.randn(B, NHID, dtype=torch.float64)
    w = torch.rand(6, 5, dtype=torch.float64)
    w_none = w.clone()
    w_none[3:6, 0] = 5.0  # node 2's edges: a large 'none' weight changes nothing
    torch.testing.assert_close(cell(inputs, hidden, w_none)[0], cell(inputs, hidden, w)[0], rtol=0, atol=0)
    # node 2 sees only 'none' weight: its state is zero and W_2 is never used
    w_dead = w.clone()
    w_dead[3:6] = 0.0
    w_dead[3:6, 0] = 1.0
    out, _ = cell(inputs, hidden, w_dead)
    out.sum().backward()
    assert cell.Ws[2].grad is None and cell.Ws[1].grad is not None
    # one-hot weights: each node runs exactly its one activation, once per time step
    calls = {name: 0 for name in DARTS_RNN_OPS[1:]}

    def counting(name):
        def f(v):
            calls[name] += 1
            return ACTIVATIONS[name](v)
        return f

    cell._acts = [None] + [counting(name) for name in DARTS_RNN_OPS[1:]]
    genotype = RecurrentGenotype(recurrent=[("relu", 0), ("relu", 1), ("sigmoid", 0)], concat=range(1, 4))
    cell(inputs, hidden, one_hot(genotype))
    assert calls == {"tanh": 0, "relu": 2 * T, "sigmoid": T, "identity": 0}


def test_gradients_match_finite_differences() -> None:
    torch.manual_seed(4)
    cell = DartsRecurrentSearchCell(3, 4, steps=2, dropout_h=0.0, dropout_x=0.0).double()
    inputs = torch.randn(2, 3, 3, dtype=torch.float64)
    hidden = torch.randn(3, 4, dtype=torch.float64)
    alpha = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    assert torch.autograd.gradcheck(lambda a: cell(inputs, hidden, a.softmax(-1))[0], (alpha,))
    weights = torch.rand(3, 5, dtype=torch.float64).add_(0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda w: cell(inputs, hidden, w)[0], (weights,))
    assert torch.autograd.gradcheck(lambda x: cell(x, hidden, weights.detach())[0], (inputs.requires_grad_(),))


def test_in_recurrent_lm_forward_backward() -> None:
    torch.manual_seed(5)
    cell = DartsRecurrentSearchCell(8, 8, steps=3)
    lm = RecurrentLM(20, cell=cell, emsize=8, nhid=8)
    alpha = torch.zeros(6, 5).normal_(0, 1e-3).requires_grad_()
    cell.weights = alpha.softmax(-1)
    tokens = torch.randint(0, 20, (5, 4))
    out = lm(tokens)
    assert out.logits.shape == (5, 4, 20) and out.hidden.shape == (4, 8)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, 20), tokens.reshape(-1)).backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in [cell.W0, *cell.Ws])
    assert not any(p is alpha for p in lm.parameters())  # the weights stay the method's
    assert "weights" not in dict(cell.named_buffers())


def test_genotype_from_hand_made_weights() -> None:
    cell = DartsRecurrentSearchCell(4, 4, steps=3)
    w = torch.full((6, 5), 0.1)
    w[0, 0] = 0.9  # node 0: 'none' is ignored; only edge from s0
    w[0, 3] = 0.3  # sigmoid
    w[1, 0] = 0.9  # node 1 from s0: none
    w[2, 2] = 0.5  # node 1 from state 1: relu
    w[5, 4] = 0.7  # node 2 from state 2: identity
    w[3, 1] = 0.6  # node 2 from s0: tanh (weaker)
    expected = RecurrentGenotype(recurrent=[("sigmoid", 0), ("relu", 1), ("identity", 2)], concat=range(1, 4))
    assert cell.genotype(w) == expected
    cell.weights = w
    assert cell.genotype() == expected


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"steps must be an int >= 2.*got 1"):
        DartsRecurrentSearchCell(4, 4, steps=1)
    with pytest.raises(ValueError, match=r"steps must be an int >= 2.*got '3'"):
        DartsRecurrentSearchCell(4, 4, steps="3")
    with pytest.raises(KeyError, match=r"'enas'.*darts_rnn"):
        DartsRecurrentSearchCell(4, 4, primitives="enas")
    with pytest.raises(ValueError, match=r"unknown recurrent op\(s\) 'gelu'.*identity"):
        DartsRecurrentSearchCell(4, 4, primitives=["tanh", "gelu"])
    with pytest.raises(ValueError, match=r"at least one activation.*\['none'\]"):
        DartsRecurrentSearchCell(4, 4, primitives=["none"])
    with pytest.raises(ValueError, match=r"unique.*\['tanh', 'tanh'\]"):
        DartsRecurrentSearchCell(4, 4, primitives=["tanh", "tanh"])
    for name, p in [("dropout_h", 1.0), ("dropout_x", -0.1)]:
        with pytest.raises(ValueError, match=rf"{name} must be a probability in \[0, 1\), got {p}"):
            DartsRecurrentSearchCell(4, 4, **{name: p})
    with pytest.raises(ValueError, match=r"batch_norm"):
        DartsRecurrentSearchCell(4, 4, batch_norm="yes")
    cell = DartsRecurrentSearchCell(4, 4, steps=3, dropout_h=0.0, dropout_x=0.0)
    inputs, hidden = torch.randn(2, 3, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"no architecture weights.*\(6, 5\)"):
        cell(inputs, hidden)
    with pytest.raises(ValueError, match=r"shape \(6, 5\).*got \(5, 5\)"):
        cell(inputs, hidden, torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"shape \(6, 5\).*got \(6, 4\)"):
        cell.weights = torch.zeros(6, 4)
    with pytest.raises(ValueError, match=r"floating tensor of shape \(6, 5\).*got list"):
        cell.weights = [[0.0] * 5] * 6
    with pytest.raises(ValueError, match=r"floating tensor.*dtype torch.int64"):
        cell(inputs, hidden, torch.zeros(6, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(6, 5\).*got \(3, 5\)"):
        cell.genotype(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"no architecture weights"):
        cell.genotype()

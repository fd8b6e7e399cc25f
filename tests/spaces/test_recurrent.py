"""RecurrentLM and the DARTS recurrent cell: the published size, the cell's equations by hand,
the AWD-LSTM dropouts, tied weights, gradients, carried state, bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import pytest
import torch

from lit_automl.spaces.networks import count_parameters
from lit_automl.spaces.recurrent import ACTIVATIONS, DartsRecurrentCell, RecurrentLM, embedded_dropout, locked_dropout


@dataclass(frozen=True)
class Cell:
    recurrent: Tuple[Tuple[str, int], ...]
    concat: Tuple[int, ...]


# Liu et al. 2019, the second-order recurrent cell (the authors' genotypes.py DARTS_V2).
DARTS_V2 = Cell((("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5),
                 ("tanh", 3), ("relu", 5)), tuple(range(1, 9)))
SMALL = Cell((("tanh", 0), ("relu", 0), ("sigmoid", 1)), (1, 2, 3))


def test_darts_v2_at_the_papers_size_has_23m_parameters():
    """Table 2: 23M. Embedding (tied with the decoder) 10,000 x 850, decoder bias 10,000,
    W0 1,700 x 1,700, eight 850 x 1,700 node matrices."""
    model = RecurrentLM(10_000, DARTS_V2, emsize=850, nhid=850)
    expected = 10_000 * 850 + 10_000 + 1_700 * 1_700 + 8 * 850 * 1_700
    assert count_parameters(model) == expected == 22_960_000
    assert model.decoder.weight is model.encoder.weight


def test_published_cells_by_name_and_the_activations_cover_the_op_set():
    from lit_automl.spaces import DARTS_RNN_OPS, get_recurrent_genotype

    model = RecurrentLM(50, "DARTS_V2", emsize=8, nhid=8)
    assert model.cell.nodes == DARTS_V2.recurrent and model.cell.concat == DARTS_V2.concat
    assert RecurrentLM(50, get_recurrent_genotype("DARTS_V1"), emsize=8, nhid=8).cell.nodes != DARTS_V2.recurrent
    assert set(ACTIVATIONS) == set(DARTS_RNN_OPS) - {"none"}


def test_the_cell_step_computes_the_papers_equations_by_hand():
    torch.manual_seed(0)
    cell = DartsRecurrentCell(3, 4, SMALL, dropout_h=0.0, dropout_x=0.0).double()
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    c0, g0 = (torch.cat([x, h], -1) @ cell.W0).split(4, -1)
    s0 = h + torch.sigmoid(c0) * (torch.tanh(g0) - h)

    def node(s_prev, W, f):
        c, g = (s_prev @ W).split(4, -1)
        return s_prev + torch.sigmoid(c) * (f(g) - s_prev)

    s1 = node(s0, cell.Ws[0], torch.tanh)
    s2 = node(s0, cell.Ws[1], torch.relu)
    s3 = node(s1, cell.Ws[2], torch.sigmoid)
    expected = (s1 + s2 + s3) / 3
    torch.testing.assert_close(cell.step(x, h, None, None), expected, rtol=1e-12, atol=1e-14)
    # masks multiply the cell's inputs: x and every recurrent input, not the highway term
    x_mask, h_mask = torch.rand(2, 3, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    c0, g0 = (torch.cat([x * x_mask, h * h_mask], -1) @ cell.W0).split(4, -1)
    s0 = h + torch.sigmoid(c0) * (torch.tanh(g0) - h)
    c, g = ((s0 * h_mask) @ cell.Ws[0]).split(4, -1)
    s1 = s0 + torch.sigmoid(c) * (torch.tanh(g) - s0)
    got = cell.step(x, h, x_mask, h_mask)
    c, g = ((s0 * h_mask) @ cell.Ws[1]).split(4, -1)
    s2 = s0 + torch.sigmoid(c) * (torch.relu(g) - s0)
    c, g = ((s1 * h_mask) @ cell.Ws[2]).split(4, -1)
    s3 = s1 + torch.sigmoid(c) * (torch.sigmoid(g) - s1)
    torch.testing.assert_close(got, (s1 + s2 + s3) / 3, rtol=1e-12, atol=1e-14)


def test_cell_gradients_match_finite_differences():
    torch.manual_seed(1)
    cell = DartsRecurrentCell(3, 3, SMALL, dropout_h=0.0, dropout_x=0.0).double()
    inputs = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    hidden = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def run(inputs, hidden, W0, W1):
        return torch.func.functional_call(cell, {"W0": W0, "Ws.1": W1}, (inputs, hidden))[0]

    assert torch.autograd.gradcheck(run, (inputs, hidden, cell.W0.detach().clone().requires_grad_(),
                                          cell.Ws[1].detach().clone().requires_grad_()))


def test_carrying_the_hidden_state_across_windows_equals_one_long_window():
    torch.manual_seed(2)
    model = RecurrentLM(20, SMALL, emsize=6, nhid=6).eval()
    tokens = torch.randint(0, 20, (7, 3))
    whole = model(tokens)
    first = model(tokens[:4])
    second = model(tokens[4:], first.hidden)
    torch.testing.assert_close(torch.cat([first.logits, second.logits]), whole.logits)
    torch.testing.assert_close(second.hidden, whole.hidden)
    assert whole.logits.shape == (7, 3, 20) and whole.raw_output.shape == (7, 3, 6)


def test_evaluation_is_deterministic_and_training_draws_dropout():
    torch.manual_seed(3)
    model = RecurrentLM(30, SMALL, emsize=8, nhid=8)
    tokens = torch.randint(0, 30, (5, 4))
    model.eval()
    torch.testing.assert_close(model(tokens).logits, model(tokens).logits)
    model.train()
    assert not torch.allclose(model(tokens).logits, model(tokens).logits)


def test_locked_dropout_keeps_one_mask_per_sequence_over_time():
    torch.manual_seed(4)
    x = torch.ones(6, 3, 50)
    y = locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:1].expand_as(y))  # the same at every step
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 0 < (y[0] == 0).float().mean() < 1
    assert locked_dropout(x, 0.5, training=False) is x


def test_embedded_dropout_drops_whole_words():
    torch.manual_seed(5)
    weight = torch.randn(40, 4)
    words = torch.arange(40).repeat(3, 1)  # every word at three positions
    out = embedded_dropout(weight, words, 0.5, training=True)
    dropped = (out[0] == 0).all(-1)
    assert 0 < dropped.sum() < 40
    for row in out:  # a dropped word is dropped at every position, a kept one scaled by 2
        assert torch.equal((row == 0).all(-1), dropped)
        torch.testing.assert_close(row[~dropped], 2 * weight[~dropped])
    torch.testing.assert_close(embedded_dropout(weight, words, 0.5, training=False), weight[words])


def test_the_tied_weight_gets_the_gradient_of_both_its_uses():
    torch.manual_seed(6)
    model = RecurrentLM(10, SMALL, emsize=4, nhid=4).eval()
    tokens = torch.tensor([[1], [2]])
    model(tokens).logits.sum().backward()
    grad = model.encoder.weight.grad
    assert grad is not None and (grad[3:].abs().sum() > 0)  # rows of words never input: decoder use only
    assert len(list(model.parameters())) == 1 + 1 + 1 + len(SMALL.recurrent)  # embedding, bias, W0, Ws


@pytest.mark.parametrize("kwargs, match", [
    ({"emsize": 8, "nhid": 6}, r"emsize must equal nhid: got emsize=8, nhid=6"),
    ({"genotype": None}, r"exactly one of genotype= .* got neither"),
    ({"cell": torch.nn.Identity()}, r"exactly one of genotype= .* got both"),
    ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\), got 1.0"),
    ({"dropout_x": -0.1}, r"dropout_x must be a probability in \[0, 1\), got -0.1"),
    ({"vocab_size": 1}, r"vocab_size must be an int >= 2, got 1"),
    ({"genotype": Cell((("softplus", 0),), (1,))}, r"unknown activation of node 1 'softplus'; valid names are: "
                                                  r"'identity', 'relu', 'sigmoid', 'tanh'"),
    ({"genotype": Cell((("tanh", 0), ("relu", 2)), (1, 2))}, r"node 2 reads state 2, but only states 0..1 exist"),
    ({"genotype": Cell((("tanh", 0),), ())}, r"concat must name states in 0..1, got \[\]"),
    ({"genotype": Cell((("tanh", 0),), (2,))}, r"concat must name states in 0..1, got \[2\]"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    args = {"vocab_size": 10, "genotype": SMALL, "emsize": 6, "nhid": 6, **kwargs}
    with pytest.raises(ValueError, match=match):
        RecurrentLM(**args)


def test_tokens_must_be_time_by_batch():
    model = RecurrentLM(10, SMALL, emsize=4, nhid=4)
    with pytest.raises(ValueError, match=r"tokens must be \(time, batch\) word ids, got shape \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))

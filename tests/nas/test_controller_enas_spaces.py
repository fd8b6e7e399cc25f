"""The one controller samples the ENAS spaces: recurrent cells (shared weights) and micro cells."""

from __future__ import annotations

import torch

from lit_automl.nas import Controller
from lit_automl.spaces.enas_micro import ENASMicroSpace
from lit_automl.spaces.enas_rnn import ENASRecurrentCell, decode_enas_rnn, enas_rnn_decisions
from lit_automl.spaces.recurrent import RecurrentLM


def test_sampled_recurrent_children_run_on_the_shared_cell_and_reinforce_moves_the_policy():
    torch.manual_seed(0)
    decisions = enas_rnn_decisions(num_nodes=4)
    controller = Controller(decisions, hidden_size=16, num_layers=1, temperature=5.0, tanh_constant=2.5)
    cell = ENASRecurrentCell(6, 6, num_nodes=4, dropout_h=0.0, dropout_x=0.0)
    lm = RecurrentLM(11, cell=cell, emsize=6, nhid=6, dropout=0.0, dropout_i=0.0, dropout_e=0.0)
    g = torch.Generator().manual_seed(1)
    actions, log_prob, entropy = controller.sample(3, generator=g)
    assert len(actions) == 3 and all(len(a) == len(decisions) == 1 + 2 * 3 for a in actions)
    words = torch.randint(0, 11, (5, 2))
    for tokens in actions:
        cell.architecture = decode_enas_rnn(tokens, num_nodes=4)
        assert torch.isfinite(lm(words).logits).all()
    # REINFORCE with a positive advantage on the first child raises its probability
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.05)
    before = controller.log_prob([actions[0]])[0].item()
    for _ in range(5):
        optimizer.zero_grad()
        (-controller.log_prob([actions[0]])[0].sum()).backward()
        optimizer.step()
    assert controller.log_prob([actions[0]])[0].item() > before
    assert entropy.shape == (3,) and log_prob.shape == (3,)


def test_sampled_micro_children_decode_to_genotypes_of_the_space():
    space = ENASMicroSpace()
    controller = Controller(space.decisions(), hidden_size=16, num_layers=1, tanh_constant=1.1)
    actions, _, _ = controller.sample(4, generator=torch.Generator().manual_seed(2))
    for tokens in actions:
        genotype = space.decode(tokens)
        assert len(genotype.normal) == len(genotype.reduce) == 5
        assert space.encode(genotype) == list(tokens)

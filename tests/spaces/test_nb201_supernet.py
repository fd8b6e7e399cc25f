"""The NAS-Bench-201 supernet: with one-hot edge weights it is the benchmark's network of that cell; derivation
(per-edge argmax, none included), skip fraction, run-folder files, bad input."""

import json

import pytest
import torch
from torch import nn

from lit_automl.spaces.nb201 import NB201_OPS, NB201Arch, NB201Network, NB201Space
from lit_automl.spaces.nb201_supernet import (
    NB201SearchCell,
    NB201SearchNetwork,
    derive_nb201,
    save_nb201_files,
    skip_fraction,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: 1 torch thread (tests/conftest.py)

ARCHS = [
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|skip_connect~1|none~2|",  # dead nodes 1 and 2
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
]


def one_hot(arch: NB201Arch) -> torch.Tensor:
    w = torch.zeros(6, len(NB201_OPS))
    for e, op in enumerate(arch.ops):
        w[e, NB201_OPS.index(op)] = 1.0
    return w


def network_state_from(supernet: NB201SearchNetwork, arch: NB201Arch, network: NB201Network):
    """The supernet's weights of ``arch``'s ops under the network's names: ``cells.i.edges.e.ops.k.*`` ->
    ``cells.i.edges.e.*`` with ``k`` the edge's op; everything else (stem, residual blocks, head) by name."""
    source = supernet.state_dict()
    state = {}
    for name in network.state_dict():
        parts = name.split(".")
        if parts[0] == "cells" and parts[2] == "edges":
            k = NB201_OPS.index(arch.ops[int(parts[3])])
            src = ".".join(parts[:4] + ["ops", str(k)] + parts[4:])
        else:
            src = name
        if src in source:
            state[name] = source[src]
    return state


@pytest.mark.parametrize("text", ARCHS)
def test_one_hot_supernet_is_the_benchmark_network(text):
    arch = NB201Arch.parse(text)
    torch.manual_seed(0)
    supernet = NB201SearchNetwork(C=4, N=2, num_classes=5, in_channels=3)
    with torch.no_grad():  # random values everywhere, so that a weight copied to the wrong place shows
        for p in supernet.parameters():
            p.normal_(0.0, 0.5)
    network = NB201Network(arch, C=4, N=2, num_classes=5, in_channels=3)
    state = network_state_from(supernet, arch, network)
    missing = set(network.state_dict()) - set(state)
    # Only the affine parameters of the cell ops' batch norms (the supernet's are non-affine): 1 and 0, as built.
    assert all(".edges." in n and n.rsplit(".", 1)[1] in ("weight", "bias") and n.split(".")[-2] == "2"
               for n in missing), sorted(missing)
    network.load_state_dict(state, strict=False)
    x, w = torch.randn(6, 3, 8, 8), one_hot(arch)
    torch.testing.assert_close(supernet(x, w), network(x), rtol=1e-5, atol=1e-5)  # batch statistics
    supernet.eval()
    network.eval()
    torch.testing.assert_close(supernet(x, w), network(x), rtol=1e-5, atol=1e-5)  # the running ones, updated alike


def test_mixed_edges_are_the_weighted_sum_of_their_ops():
    torch.manual_seed(1)
    cell = NB201SearchCell(3).eval()
    x, w = torch.randn(2, 3, 6, 6), torch.softmax(torch.randn(6, 5), -1)
    nodes = [x]
    for dst, edges in ((1, [(0, 0)]), (2, [(0, 1), (1, 2)]), (3, [(0, 3), (1, 4), (2, 5)])):
        nodes.append(sum(sum(w[e, k] * op(nodes[src]) for k, op in enumerate(cell.edges[e].ops) if k)
                         for src, e in edges))
    torch.testing.assert_close(cell(x, w, (w != 0).tolist()), nodes[3])


def test_pooling_has_no_batch_norm_as_in_the_authors_search_cell():
    cell = NB201SearchCell(4)
    pool = cell.edges[0].ops[NB201_OPS.index("avg_pool_3x3")]
    assert isinstance(pool, nn.AvgPool2d) and pool.count_include_pad is False


def test_alpha_shape_and_weight_count():
    net = NB201SearchNetwork()  # the authors' search: C=16, N=5
    assert net.alpha_shape == (6, 5) and net.primitives == NB201_OPS
    # Stem, residual blocks and head are the benchmark network's; each cell edge holds a 1x1 and a 3x3 conv and
    # nothing else with weights (non-affine batch norm), against the all-3x3 network's conv and affine BN.
    all_3x3 = sum(p.numel() for p in NB201Network("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                                  "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|").parameters())
    per_stage = [16, 32, 64]
    expected = all_3x3 + sum(5 * 6 * (C * C - 2 * C) for C in per_stage)
    assert sum(p.numel() for p in net.parameters()) == expected == 1_531_546 + 5 * 6 * (5376 - 224)


def test_derivation_is_each_edges_argmax_with_none_included():
    w = torch.tensor([
        [0.9, 0.0, 0.0, 0.0, 0.1],   # none wins and is kept (no pruning)
        [0.1, 0.5, 0.2, 0.1, 0.1],   # skip
        [0.0, 0.1, 0.6, 0.2, 0.1],   # 1x1
        [0.0, 0.1, 0.1, 0.7, 0.1],   # 3x3
        [0.1, 0.1, 0.1, 0.1, 0.6],   # pool
        [0.3, 0.3, 0.2, 0.1, 0.1],   # a tie goes to the first op
    ])
    arch = derive_nb201(w)
    assert str(arch) == "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
    assert derive_nb201(torch.log(w + 1e-9)) == arch  # alphas or their softmax: the same cell


def test_skip_fraction_by_hand():
    assert skip_fraction(NB201Arch.parse(ARCHS[0])) == 1 / 6
    assert skip_fraction(NB201Arch.parse(ARCHS[1])) == 1 / 6
    assert skip_fraction(NB201Arch.parse(ARCHS[2])) == 1.0
    assert skip_fraction(NB201Arch(("none",) * 6)) == 0.0


def test_files_hold_the_arch_string_and_a_record_the_space_reads(tmp_path):
    arch = NB201Arch.parse(ARCHS[0])
    paths = save_nb201_files(arch, tmp_path / "run")
    assert [p.name for p in paths] == ["genotype.txt", "genotype.json", "genotype.png"]
    assert [p.name for p in save_nb201_files(arch, tmp_path / "b", plot=False)] == ["genotype.txt", "genotype.json"]
    assert NB201Arch.parse(paths[0].read_text().strip()) == arch
    assert json.loads(paths[1].read_text()) == {"arch": ARCHS[0]}
    assert NB201Space().from_json(paths[1]) == arch


@pytest.mark.parametrize("call, match", [
    (lambda: NB201SearchNetwork(C=0), "C must be a positive int"),
    (lambda: NB201SearchNetwork(checkpoint_cells=True), "checkpoint_cells must be False or 'auto'"),
    (lambda: NB201SearchNetwork(primitives=["skip_connect", "sep_conv_3x3"]), r"benchmark's ops.*sep_conv_3x3"),
    (lambda: NB201SearchNetwork(C=2, N=1)(torch.randn(1, 3, 8, 8), torch.ones(14, 5)),
     r"weights must have shape \(6, 5\)"),
    (lambda: derive_nb201(torch.ones(6, 4)), r"shape \(6, 5\)"),
    (lambda: skip_fraction("|none~0|"), "takes an NB201Arch"),
    (lambda: save_nb201_files("|none~0|", "x"), "takes an NB201Arch"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

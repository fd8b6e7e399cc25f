"""DartsCellSpace: tokens <-> derived DARTS cells, the size of the space by hand, the sampler's distribution,
JSON records, the built NetworkCIFAR, bad input."""

import itertools
import json
import math
from collections import Counter

import pytest
import torch

from lit_automl.nas.evolution import random_actions
from lit_automl.spaces import DARTS_OPS, DartsCellSpace, Genotype, NetworkCIFAR, get_genotype
from lit_automl.spaces.sampling import sample_genotype

pytestmark = pytest.mark.usefixtures("single_thread")

TWO_OPS = ["none", "skip_connect", "max_pool_3x3"]


def test_decisions_and_decode_by_hand():
    space = DartsCellSpace(TWO_OPS, steps=2, multiplier=2)
    names = [d.name for d in space.decisions()]
    assert names == [f"{c}.n{i}.{f}" for c in ("normal", "reduce") for i in (0, 1) for f in ("inputs", "op_a", "op_b")]
    assert [d.num_choices for d in space.decisions()] == [1, 2, 2, 3, 2, 2] * 2
    # node 1, pair 1 = inputs (0, 2); op tokens index the ops without 'none'
    g = space.decode([0, 1, 0, 1, 0, 1, 0, 0, 0, 2, 1, 1])
    assert g == Genotype(normal=[("max_pool_3x3", 0), ("skip_connect", 1), ("skip_connect", 0), ("max_pool_3x3", 2)],
                         normal_concat=[2, 3],
                         reduce=[("skip_connect", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("max_pool_3x3", 2)],
                         reduce_concat=[2, 3])


def test_round_trip_and_distinct_inputs():
    space = DartsCellSpace()
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        actions = random_actions(space.decisions(), gen)
        g = space.decode(actions)
        assert space.encode(g) == actions
        assert space.from_json(space.to_json(g)) == g == space.from_json(json.dumps(space.to_json(g)))
        for cell in (g.normal, g.reduce):
            for i, node in enumerate(cell):
                inputs = [j for _, j in node]
                assert len(node) == 2 and inputs[0] < inputs[1] <= i + 1
                assert all(op in DARTS_OPS and op != "none" for op, _ in node)
        assert list(g.normal_concat) == list(g.reduce_concat) == [2, 3, 4, 5]
    # A published DARTS cell lists some edges by decreasing input: equal up to the order of a node's edges.
    v2 = get_genotype("DARTS_V2")
    back = space.decode(space.encode(v2))
    for cell in ("normal", "reduce"):
        assert [sorted(n) for n in getattr(back, cell)] == [sorted(n) for n in getattr(v2, cell)]


@pytest.mark.parametrize("steps, ops", [(1, TWO_OPS), (2, TWO_OPS), (2, ["skip_connect"])])
def test_every_architecture_once_counted_by_hand(steps, ops):
    space = DartsCellSpace(ops, steps=steps, multiplier=steps)
    n_ops = sum(op != "none" for op in ops)
    by_hand = {1: 1 * n_ops ** 2, 2: (1 * n_ops ** 2) * (3 * n_ops ** 2)}[steps]  # C(2,2) pairs, then C(3,2)
    assert space.num_cells() == by_hand and space.num_architectures() == by_hand ** 2
    choices = [range(d.num_choices) for d in space.decisions()]
    decoded = {space.decode(list(a)) for a in itertools.product(*choices)}
    assert len(decoded) == by_hand ** 2  # decode is one-to-one: uniform tokens give uniform cells


def test_darts_space_size():
    # 4 nodes: 1 * 3 * 6 * 10 input pairs per cell, 7 ops on each of 8 edges
    assert DartsCellSpace().num_cells() == 180 * 7 ** 8 == 1_037_664_180
    assert math.isclose(DartsCellSpace().num_architectures(), 1.0767e18, rel_tol=1e-4)


def test_uniform_tokens_match_one_shot_sampling():
    """OneShot samples with sample_genotype; its cells have uniform tokens in this space, as random search draws."""
    space = DartsCellSpace(TWO_OPS, steps=2, multiplier=2)
    gen = torch.Generator().manual_seed(1)
    n = 2400
    sampled = Counter(tuple(space.encode(sample_genotype(2, 2, TWO_OPS, gen))) for _ in range(n))
    draws = [t for t, c in sampled.items() for _ in range(c)]
    tokens = list(zip(*draws))
    for d, column in zip(space.decisions(), tokens):
        freq = Counter(column)
        assert set(freq) == set(range(d.num_choices)), d.name
        for v in range(d.num_choices):
            assert abs(freq[v] / n - 1 / d.num_choices) < 0.035, (d.name, v, freq)
    # and the tokens are independent: the 12 normal-cell node-1 combinations (3 pairs x 2 x 2 ops) are uniform
    node1 = Counter(t[3:6] for t in draws)
    assert len(node1) == 12 and all(abs(c / n - 1 / 12) < 0.025 for c in node1.values())


def test_build_gives_the_retrain_network():
    space = DartsCellSpace(steps=2, multiplier=2, C=4, layers=3, auxiliary=False, stem_multiplier=1)
    g = space.decode([0] * len(space.decisions()))
    net = space.build(space.to_json(g), in_channels=1, num_classes=10, image_size=8)
    assert isinstance(net, NetworkCIFAR) and net.genotype == g
    logits, aux = net(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10) and aux is None
    direct = NetworkCIFAR(g, C=4, num_classes=10, layers=3, auxiliary=False, in_channels=1, stem_multiplier=1)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in direct.parameters())
    with pytest.raises(ValueError, match=r"32x32 inputs, got image_size=8: build the space with auxiliary=False"):
        DartsCellSpace(steps=2, multiplier=2, C=4, layers=3).build(g, 1, 10, 8)


def _cell(nodes):
    return Genotype(normal=nodes, normal_concat=[2, 3], reduce=nodes, reduce_concat=[2, 3])


@pytest.mark.parametrize("genotype, match", [
    (_cell([[("conv_7x1_1x7", 0), ("skip_connect", 1)], [("skip_connect", 0), ("skip_connect", 2)]]),
     r"normal node 0: op 'conv_7x1_1x7' is not in this space; allowed \['max_pool_3x3'"),
    (_cell([[("none", 0), ("skip_connect", 1)], [("skip_connect", 0), ("skip_connect", 2)]]),
     r"op 'none' is not in this space"),
    (_cell([[("skip_connect", 0), ("skip_connect", 0)], [("skip_connect", 0), ("skip_connect", 2)]]),
     r"normal node 0 reads input 0 twice"),
    (_cell([[("skip_connect", 0)], [("skip_connect", 0), ("skip_connect", 2)]]), r"normal node 0 has 1 edges"),
    (sample_genotype(3, 2, DARTS_OPS), r"the normal cell has 3 nodes but this space has steps=2"),
    (Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 2, normal_concat=[3],
              reduce=[("skip_connect", 0), ("skip_connect", 1)] * 2, reduce_concat=[3]),
     r"normal_concat is \[3\]; this space .* concatenates \[2, 3\]"),
])
def test_architectures_outside_the_space_are_refused(genotype, match):
    space = DartsCellSpace(steps=2, multiplier=2)
    for call in (space.encode, space.to_json, space.from_json):
        with pytest.raises(ValueError, match=match):
            call(genotype if call is not space.from_json else genotype.to_dict())


@pytest.mark.parametrize("kwargs, match", [
    ({"primitives": ["none"]}, r"no operation other than 'none'"),
    ({"primitives": "nope"}, r"nope"),
    ({"steps": 0}, r"steps must be an int >= 1, got 0"),
    ({"multiplier": 5}, r"multiplier must be an int in \[1, 4\].*got 5"),
    ({"C": 0}, r"C must be a positive int, got 0"),
    ({"auxiliary": "no"}, r"auxiliary must be True or False"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DartsCellSpace(**kwargs)


def test_bad_tokens():
    space = DartsCellSpace(steps=2, multiplier=2)
    with pytest.raises(ValueError, match=r"takes 12 tokens .*got 3"):
        space.decode([0, 0, 0])
    with pytest.raises(ValueError, match=r"token 3 \(normal.n1.inputs\) must be an int in \[0, 2\], got 3"):
        space.decode([0, 0, 0, 3] + [0] * 8)

"""NAS-RL chain space (Zoph & Le, ICLR 2017, Sec. 3.1, 3.3, 4.1): actions, rules, shapes, sizes."""

import json
import math
import random

import pytest
import torch

from lit_automl.spaces.chain import (
    ChainArchitecture,
    ChainLayer,
    ChainNetwork,
    ChainSpace,
    conv_output_size,
    pad_concat,
)
from lit_automl.spaces.decisions import SequentialSpace


def random_actions(space: ChainSpace, rng: random.Random, layers=None):
    """One action sequence for the first ``layers`` layers: the i-th anchor gets i bits."""
    out, n_anchor = [], 0
    for d in space.decisions()[: space.num_decisions(layers)]:
        if d.kind == "categorical":
            out.append(rng.randrange(d.num_choices))
        else:
            out.append([rng.randint(0, 1) for _ in range(n_anchor)])
            n_anchor += 1
    return out


SPACES = [
    ChainSpace(),
    ChainSpace(num_layers=5, strides=(1, 2, 3)),
    ChainSpace(num_layers=4, skip_connections=False),
    ChainSpace(num_layers=3, strides=(1, 2), skip_connections=False, batch_norm=False),
]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- decisions / actions
def test_decisions_follow_the_paper_order_and_defaults():
    space = ChainSpace()
    assert isinstance(space, SequentialSpace)
    assert (space.filter_heights, space.filter_widths, space.num_filters) == ((1, 3, 5, 7), (1, 3, 5, 7), (24, 36, 48, 64))
    assert space.strides is None and space.decisions_per_layer == 4 and space.num_decisions() == 24
    names = [d.name for d in space.decisions()[:8]]
    assert names == [
        "layer0.filter_height", "layer0.filter_width", "layer0.num_filters", "layer0.anchor",
        "layer1.filter_height", "layer1.filter_width", "layer1.num_filters", "layer1.anchor",
    ]
    strided = ChainSpace(num_layers=2, strides=(1, 2, 3))
    assert [d.name for d in strided.decisions()][3] == "layer0.stride"
    assert strided.decisions()[3].num_choices == 3 and strided.decisions_per_layer == 5
    assert ChainSpace(skip_connections=False).decisions_per_layer == 3
    assert len({d.name for d in strided.decisions()}) == len(strided.decisions())


@pytest.mark.parametrize("space", SPACES, ids=repr)
def test_decode_encode_round_trip(space):
    rng = random.Random(0)
    for _ in range(40):
        actions = random_actions(space, rng)
        arch = space.decode(actions)
        assert arch.num_layers == space.num_layers
        assert space.encode(arch) == actions
        assert space.decode(space.encode(arch)) == arch
        record = json.loads(json.dumps(space.to_json(arch)))
        assert space.from_json(record) == arch
        assert ChainArchitecture.from_json(json.dumps(record)) == arch


def test_anchor_bits_select_inputs_and_plain_chain_without_skips():
    space = ChainSpace(num_layers=3)
    arch = space.decode([1, 2, 0, [], 0, 0, 3, [0], 3, 1, 1, [1, 1]])
    assert arch.layers[0] == ChainLayer(3, 5, 24, 1, ())
    assert arch.layers[1] == ChainLayer(1, 1, 64, 1, ())  # no input layer: reads the image
    assert arch.layers[2] == ChainLayer(7, 3, 36, 1, (0, 1))
    assert arch.output_layers == (2,)
    chain = ChainSpace(num_layers=3, skip_connections=False).decode([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert [layer.inputs for layer in chain.layers] == [(), (0,), (1,)]
    assert chain.output_layers == (2,)


def test_prefix_of_whole_layers_decodes():
    space = ChainSpace(num_layers=6, strides=(1, 2, 3))
    rng = random.Random(1)
    full = random_actions(space, rng)
    for k in range(1, 7):
        prefix = full[: space.num_decisions(k)]
        arch = space.decode(prefix)
        assert arch.num_layers == k
        assert arch.layers == space.decode(full).layers[:k]
        assert space.encode(arch) == prefix
    assert len(random_actions(space, rng, layers=2)) == 10


def test_str_one_line_per_layer():
    arch = ChainArchitecture((ChainLayer(3, 5, 24), ChainLayer(1, 3, 36, 2, (0,)), ChainLayer(7, 7, 48, 1, (0, 1))))
    lines = str(arch).splitlines()
    assert len(lines) == 3
    assert lines[0] == "layer 0: conv 3x5, 24 filters, stride 1, input: image"
    assert lines[2] == "layer 2: conv 7x7, 48 filters, stride 1, input: layers 0, 1 -> classifier"


# --------------------------------------------------------------------------- the paper's rules (Sec. 3.3)
def _grid_arch():
    # layer 0: image, 8x8; layer 1: stride 2 from layer 0 -> 4x4; layer 2 reads 0 and 1 (padding);
    # layer 3 reads the image again. Unconsumed: 2 and 3.
    return ChainArchitecture((
        ChainLayer(3, 5, 24, 1, ()),
        ChainLayer(1, 3, 36, 2, (0,)),
        ChainLayer(5, 1, 48, 1, (0, 1)),
        ChainLayer(7, 7, 24, 1, ()),
    ))


def test_inputs_concatenate_and_unconsumed_outputs_reach_the_classifier():
    net = ChainNetwork(_grid_arch(), in_channels=3, num_classes=10, image_size=8)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 3 and convs[3].in_channels == 3  # no input layer: the image
    assert convs[1].in_channels == 24
    assert convs[2].in_channels == 24 + 36  # depth concatenation
    assert net.layer_shapes == [(24, 8, 8), (36, 4, 4), (48, 8, 8), (24, 8, 8)]
    assert net.output_layers == (2, 3)
    assert net.classifier.in_features == 48 + 24 and net.feature_shape == (72, 8, 8)


def test_smaller_inputs_are_zero_padded_before_concatenation():
    torch.manual_seed(0)
    net = ChainNetwork(_grid_arch(), in_channels=3, num_classes=10, image_size=8).eval()
    seen = {}
    net.layers[1].register_forward_hook(lambda m, i, o: seen.__setitem__("layer1", o))
    net.layers[2].register_forward_pre_hook(lambda m, i: seen.__setitem__("layer2_in", i[0]))
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    x, small = seen["layer2_in"], seen["layer1"]
    assert x.shape == (2, 60, 8, 8) and small.shape == (2, 36, 4, 4)
    assert torch.equal(x[:, 24:, :4, :4], small)
    assert torch.count_nonzero(x[:, 24:, 4:, :]) == 0 and torch.count_nonzero(x[:, 24:, :, 4:]) == 0

    a, b = torch.ones(1, 2, 5, 3), torch.full((1, 1, 2, 4), 7.0)
    out = pad_concat([a, b])
    assert out.shape == (1, 3, 5, 4)
    assert torch.equal(out[:, :2, :, :3], a) and torch.count_nonzero(out[:, :2, :, 3:]) == 0
    assert torch.equal(out[:, 2:, :2, :], b) and torch.count_nonzero(out[:, 2:, 2:, :]) == 0


def test_parameter_count_matches_the_formula():
    arch = _grid_arch()
    convs = 3 * 5 * 3 * 24 + 1 * 3 * 24 * 36 + 5 * 1 * (24 + 36) * 48 + 7 * 7 * 3 * 24
    bn = 2 * (24 + 36 + 48 + 24)
    fc = (48 + 24) * 10 + 10
    assert n_params(ChainNetwork(arch, 3, 10, 8)) == convs + bn + fc
    assert n_params(ChainNetwork(arch, 3, 10, 8, batch_norm=False)) == convs + (24 + 36 + 48 + 24) + fc
    assert n_params(ChainSpace(num_layers=4, strides=(1, 2)).build(arch, 3, 10, 8)) == convs + bn + fc


# --------------------------------------------------------------------------- shapes
def test_conv_output_size_is_ceil_for_any_kernel_and_stride():
    for k in range(1, 9):
        for s in (1, 2, 3):
            for n in range(1, 30):
                assert conv_output_size(n, k, s) == math.ceil(n / s), (n, k, s)
    for kh, kw, s in [(1, 7, 2), (5, 3, 3), (7, 1, 1), (2, 4, 2), (3, 6, 3)]:
        net = ChainNetwork(ChainArchitecture((ChainLayer(kh, kw, 4, s),)), 1, 3, (11, 9))
        out = net.layers[0](torch.randn(1, 1, 11, 9))
        assert tuple(out.shape[1:]) == net.layer_shapes[0] == (4, math.ceil(11 / s), math.ceil(9 / s))


@pytest.mark.parametrize("image_size", [8, 28])
def test_forward_on_random_architectures(image_size):
    torch.manual_seed(0)
    space = ChainSpace(num_layers=5, num_filters=(4, 8), strides=(1, 2, 3))
    rng = random.Random(image_size)
    for _ in range(4):
        arch = space.decode(random_actions(space, rng))
        net = space.build(arch, in_channels=1, num_classes=7, image_size=image_size)
        shapes = []
        hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for b in net.layers]
        assert net(torch.randn(2, 1, image_size, image_size)).shape == (2, 7)
        assert shapes == net.layer_shapes
        for h in hooks:
            h.remove()


# --------------------------------------------------------------------------- bad inputs
def test_bad_actions_raise_naming_the_value():
    space = ChainSpace(num_layers=3)
    actions = random_actions(space, random.Random(2))
    with pytest.raises(ValueError, match=r"got 11 actions.*multiple of 4"):
        space.decode(actions[:-1])
    with pytest.raises(ValueError, match=r"got 6 actions"):  # not a whole number of layers
        space.decode(actions[:6])
    with pytest.raises(ValueError, match=r"got 16 actions"):
        space.decode(actions + actions[:4])
    with pytest.raises(ValueError, match=r"got 0 actions"):
        space.decode([])
    bad = list(actions)
    bad[0] = 4
    with pytest.raises(ValueError, match=r"layer0.filter_height.*\[0, 4\), got 4"):
        space.decode(bad)
    bad = list(actions)
    bad[7] = [1, 1]
    with pytest.raises(ValueError, match=r"layer1.anchor.*list of 1 0/1 ints, got \[1, 1\]"):
        space.decode(bad)


def test_bad_space_arguments_raise():
    with pytest.raises(ValueError, match=r"num_layers must be an int >= 1, got 0"):
        ChainSpace(num_layers=0)
    with pytest.raises(ValueError, match=r"filter_heights must be a non-empty sequence.*got \(\)"):
        ChainSpace(filter_heights=())
    with pytest.raises(ValueError, match=r"strides: 0 is not allowed"):
        ChainSpace(strides=(0, 1))
    with pytest.raises(ValueError, match=r"num_filters must not repeat"):
        ChainSpace(num_filters=(24, 24))
    with pytest.raises(ValueError, match=r"layers must be an int in 1\.\.6.*got 7"):
        ChainSpace().num_decisions(7)


def test_bad_architectures_raise():
    with pytest.raises(ValueError, match=r"stride must be a positive int, got 0"):
        ChainLayer(3, 3, 24, stride=0)
    with pytest.raises(ValueError, match=r"strictly increasing.*\(1, 0\)"):
        ChainLayer(3, 3, 24, inputs=(1, 0))
    with pytest.raises(ValueError, match=r"layer 1 reads layers \[1\]"):
        ChainArchitecture((ChainLayer(3, 3, 24), ChainLayer(3, 3, 24, inputs=(1,))))
    with pytest.raises(ValueError, match=r"non-empty"):
        ChainArchitecture(())
    with pytest.raises(ValueError, match=r"unknown keys \['kernel'\]"):
        ChainArchitecture.from_json({"layers": [{**ChainLayer(3, 3, 24).to_json(), "kernel": 3}]})
    space = ChainSpace(num_layers=2, skip_connections=False)
    with pytest.raises(ValueError, match=r"num_filters 32 is not in this space; allowed values are \[24, 36, 48, 64\]"):
        space.encode(ChainArchitecture((ChainLayer(3, 3, 32),)))
    with pytest.raises(ValueError, match=r"stride 2 is not in this space"):
        space.encode(ChainArchitecture((ChainLayer(3, 3, 24, 2),)))
    with pytest.raises(ValueError, match=r"layer 1: inputs \[\] are not allowed without skip connections"):
        space.encode(ChainArchitecture((ChainLayer(3, 3, 24), ChainLayer(3, 3, 24))))
    with pytest.raises(ValueError, match=r"3 layers; this space allows at most 2"):
        space.encode(ChainArchitecture((ChainLayer(3, 3, 24),) * 3))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\)"):
        ChainNetwork(_grid_arch(), 3, 10, 8)(torch.randn(1, 1, 8, 8))

"""ENAS macro space (Pham et al., ICML 2018, Sec. 2.2): decisions, decode/encode, the child network."""

import json
import random

import pytest
import torch

from lit_automl.spaces import ENAS_MACRO_OPS, ENASMacroArchitecture, ENASMacroLayer, ENASMacroNetwork, ENASMacroSpace
from lit_automl.spaces.decisions import ANCHOR, CATEGORICAL
from lit_automl.spaces.enas_macro import macro_pool_layers


def random_actions(space, rng):
    return [rng.randrange(6) if i % 2 == 0 else [rng.randint(0, 1) for _ in range(i // 2)]
            for i in range(2 * space.num_layers)]


def test_decisions_follow_the_authors_order():
    ds = ENASMacroSpace().decisions()
    assert len(ds) == 24
    assert [d.kind for d in ds] == [CATEGORICAL, ANCHOR] * 12
    assert all(d.num_choices == 6 for d in ds[::2])
    assert ds[0].name == "layer0.op" and ds[3].name == "layer1.skip"
    assert ENAS_MACRO_OPS == ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


def test_pool_layers_match_authors_positions():
    assert macro_pool_layers(12) == (3, 7)
    assert macro_pool_layers(24) == (7, 15)
    assert macro_pool_layers(3) == (0, 1)
    assert macro_pool_layers(2) == ()


def test_decode_encode_round_trip_on_random_tokens():
    space = ENASMacroSpace()
    rng = random.Random(0)
    for _ in range(20):
        actions = random_actions(space, rng)
        arch = space.decode(actions)
        assert space.encode(arch) == actions
        assert space.from_json(space.to_json(arch)) == arch
        for i, layer in enumerate(arch.layers):
            assert layer.op == ENAS_MACRO_OPS[actions[2 * i]]
            assert layer.skips == tuple(j for j, b in enumerate(actions[2 * i + 1]) if b)


def _three_layer(skips2):
    return ENASMacroArchitecture((ENASMacroLayer("conv_3x3"), ENASMacroLayer("sep_conv_5x5", (0,)),
                                  ENASMacroLayer("max_pool_3x3", skips2)))


def test_skip_bits_feed_the_layer_in_add_mode():
    space = ENASMacroSpace(num_layers=3, out_filters=4, skip_combine="add")
    torch.manual_seed(0)
    net_a = space.build(_three_layer(()), 3, 5).eval()
    net_b = space.build(_three_layer((0, 1)), 3, 5).eval()
    net_b.load_state_dict(net_a.state_dict())  # "add" has no skip weights: same parameters
    x = torch.randn(2, 3, 8, 8)
    assert not torch.allclose(net_a(x), net_b(x))


def test_skip_bits_set_the_concat_width():
    space = ENASMacroSpace(num_layers=3, out_filters=4)
    net = space.build(_three_layer((0, 1)), 3, 5)
    # pooling after layers 0 and 1 doubles the filters: layer 1 runs at 8, layer 2 at 16 channels;
    # layer 2 concatenates the stem, layer 0 and its op output, layer 1 the stem and its op output
    assert net.combine[2][1].in_channels == 3 * 16
    assert net.combine[1][1].in_channels == 2 * 8
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_full_network_forward_backward_on_tiny_inputs():
    space = ENASMacroSpace(num_layers=12, out_filters=4)
    arch = space.decode(random_actions(space, random.Random(1)))
    net = space.build(arch, in_channels=3, num_classes=10)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.stem.parameters())
    assert net.classifier.in_features == 16  # filters double at both pooling layers


def test_every_op_builds_and_keeps_the_shape():
    for k, op in enumerate(ENAS_MACRO_OPS):
        space = ENASMacroSpace(num_layers=2, out_filters=4)
        net = space.build(space.decode([k, [], k, [1]]), 1, 3)
        assert net(torch.randn(1, 1, 6, 6)).shape == (1, 3), op


def test_bad_inputs_are_named():
    space = ENASMacroSpace(num_layers=3)
    with pytest.raises(ValueError, match="expected 6 actions"):
        space.decode([0, [], 1, [0]])
    with pytest.raises(ValueError, match=r"layer 1: op token 6 .*\[0, 6\)"):
        space.decode([0, [], 6, [0], 0, [0, 0]])
    with pytest.raises(ValueError, match="layer2.skip.*2 0/1"):
        space.decode([0, [], 0, [0], 0, [1]])
    with pytest.raises(ValueError, match="layer 1 skips from states \\[1\\]"):
        ENASMacroArchitecture((ENASMacroLayer("conv_3x3"), ENASMacroLayer("conv_3x3", (1,))))
    with pytest.raises(ValueError, match="op must be one of"):
        ENASMacroLayer("conv_7x7")
    with pytest.raises(ValueError, match="this space has num_layers=3"):
        space.encode(_three_layer(()).__class__(_three_layer(()).layers[:2]))
    with pytest.raises(ValueError, match="skip_combine"):
        ENASMacroSpace(skip_combine="mean")
    with pytest.raises(ValueError, match="out_filters must be even"):
        ENASMacroSpace(out_filters=5)


def test_controller_samples_decode_to_valid_networks():
    from lit_automl.nas.controller import Controller

    space = ENASMacroSpace(num_layers=4, out_filters=4)
    ctrl = Controller(space.decisions(), hidden_size=8)
    actions, _, _ = ctrl.sample(3, generator=torch.Generator().manual_seed(0))
    for a in actions:
        assert [len(a[2 * i + 1]) for i in range(4)] == [0, 1, 2, 3]
        assert space.build(space.decode(a), 3, 2)(torch.randn(1, 3, 8, 8)).shape == (1, 2)


def test_the_network_builds_from_an_architecture_file_the_search_writes(tmp_path):
    space = ENASMacroSpace(num_layers=4, out_filters=8)
    arch = space.decode([0, [], 1, [1], 4, [0, 1], 5, [1, 0, 1]])
    path = tmp_path / "architecture.json"
    path.write_text(json.dumps(space.to_json(arch)))
    for spec in (path, str(path), path.read_text(), space.to_json(arch)):
        net = ENASMacroNetwork(spec, in_channels=1, num_classes=10, out_filters=8)
        assert net.architecture == arch
    torch.manual_seed(0)
    a = ENASMacroNetwork(str(path), 1, 10, 8)
    torch.manual_seed(0)
    b = ENASMacroNetwork(arch, 1, 10, 8)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))
    with pytest.raises(ValueError, match=r"'missing.json' is neither a JSON object nor an existing file"):
        ENASMacroNetwork("missing.json", 1, 10)
    with pytest.raises(ValueError, match=r"architecture must be an ENASMacroArchitecture, its JSON record or text"):
        ENASMacroNetwork(42, 1, 10)

"""Search and evaluation networks; parameter counts against the DARTS paper (Tables 1 and 3)."""

import pytest
import torch

from lit_automl.spaces import PUBLISHED_GENOTYPES, NetworkCIFAR, NetworkImageNet, SearchNetwork, count_parameters
from lit_automl.spaces import networks
from lit_automl.spaces.networks import reduction_layers
from tests.memory import saved_tensor_bytes

DARTS_V2 = PUBLISHED_GENOTYPES["DARTS_V2"]


def sig2(x: float) -> float:
    return float(f"{x:.2g}")


def test_darts_v2_cifar_has_3_3M_parameters():
    """Liu et al. 2019, Table 1: DARTS (second order) + cutout, 3.3M parameters."""
    assert sig2(count_parameters(NetworkCIFAR(DARTS_V2, C=36, layers=20, auxiliary=True)) / 1e6) == 3.3
    assert sig2(count_parameters(NetworkCIFAR(DARTS_V2, C=36, layers=20, auxiliary=False)) / 1e6) == 3.3


def test_darts_v2_imagenet_mobile_has_4_7M_parameters():
    """Liu et al. 2019, Table 3: DARTS on ImageNet (mobile setting), 4.7M parameters."""
    assert sig2(count_parameters(NetworkImageNet(DARTS_V2, C=48, layers=14)) / 1e6) == 4.7


def _authors_aux_head_parameters(C: int, num_classes: int, final_batch_norm: bool) -> int:
    """quark0/darts model.py: 1x1 conv C->128 (no bias), BN(128), 2x2 conv 128->768 (no bias), BN(768) in
    AuxiliaryHeadCIFAR only (AuxiliaryHeadImageNet comments it out "for consistency with the
    experiments in the paper"), linear 768->num_classes."""
    return C * 128 + 2 * 128 + 128 * 768 * 2 * 2 + (2 * 768 if final_batch_norm else 0) + 768 * num_classes + num_classes


def test_auxiliary_heads_match_the_authors_code():
    cifar = NetworkCIFAR(DARTS_V2, C=36, layers=20)
    imagenet = NetworkImageNet(DARTS_V2, C=48, layers=14)
    for net, C_aux, batch_norm in ((cifar, 576, True), (imagenet, 768, False)):
        head = sum(p.numel() for p in net.auxiliary_head.parameters())
        assert head == _authors_aux_head_parameters(C_aux, net.classifier.out_features, batch_norm)
        assert count_parameters(net, exclude_auxiliary=False) - count_parameters(net) == head
    assert _authors_aux_head_parameters(768, 1000, True) - _authors_aux_head_parameters(768, 1000, False) == 1536


def test_reductions_at_one_and_two_thirds():
    assert reduction_layers(8) == (2, 5)
    assert reduction_layers(20) == (6, 13)
    assert reduction_layers(5) == (1, 3)


def test_search_network_shapes_and_size():
    net = SearchNetwork(C=4, layers=3, steps=2, multiplier=2, in_channels=1)
    w = torch.softmax(torch.randn(*net.alpha_shape), -1)
    assert net.alpha_shape == (5, 8)
    assert net(torch.randn(2, 1, 8, 8), w, w).shape == (2, 10)
    with pytest.raises(ValueError, match=r"weights_reduce must have shape \(5, 8\)"):
        net(torch.randn(2, 1, 8, 8), w, w[:4])


def test_cifar_network_aux_head_and_eval_mode():
    net = NetworkCIFAR(DARTS_V2, C=4, layers=3, num_classes=7)
    assert net.auxiliary_head is not None
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 7)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[1] is None
    assert NetworkCIFAR(DARTS_V2, C=4, layers=3, auxiliary=False).auxiliary_head is None


def test_imagenet_network_shapes():
    net = NetworkImageNet(DARTS_V2, C=8, layers=3, num_classes=5).train()
    logits, aux = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux.shape == (2, 5)


def test_drop_path_probability_is_read_each_forward():
    torch.manual_seed(0)
    net = NetworkCIFAR(DARTS_V2, C=4, layers=3, auxiliary=False, in_channels=1).train()
    x = torch.randn(8, 1, 8, 8)
    torch.manual_seed(1); a = net(x)[0]
    net.drop_path_prob = 0.5
    torch.manual_seed(1); b = net(x)[0]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("kwargs, match", [
    ({"C": 0}, "C must be a positive int, got 0"),
    ({"layers": 0}, "layers must be a positive int"),
    ({"num_classes": -1}, "num_classes must be a positive int"),
])
def test_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetworkCIFAR(DARTS_V2, **kwargs)
    with pytest.raises(ValueError, match=match):
        SearchNetwork(**kwargs)


def test_image_size_the_aux_head_cannot_take():
    net = NetworkCIFAR(DARTS_V2, C=4, layers=3).train()
    with pytest.raises(ValueError, match="expects a 8x8 feature map.*got 4x4.*auxiliary=False"):
        net(torch.randn(2, 3, 16, 16))


def test_wrong_channels_are_named():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        NetworkCIFAR(DARTS_V2, C=4, layers=3)(torch.randn(2, 1, 32, 32))


def test_unknown_op_in_genotype():
    from lit_automl.spaces import Genotype
    g = Genotype(normal=[[("conv_9x9", 0), ("skip_connect", 1)]], normal_concat=[2],
                 reduce=[[("max_pool_3x3", 0), ("skip_connect", 1)]], reduce_concat=[2])
    with pytest.raises(KeyError, match="conv_9x9.*valid names"):
        NetworkCIFAR(g, C=4, layers=3)


def test_darts_networks_refuse_concat_combined_genotypes():
    from lit_automl.spaces import Genotype, NetworkCIFAR

    g = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)], normal_concat=[2],
                 reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)], reduce_concat=[2], normal_combine=["concat"])
    with pytest.raises(ValueError, match="concat-combined nodes.*NASNetCIFAR"):
        NetworkCIFAR(g, C=4, num_classes=10, layers=2, auxiliary=False)


def test_search_network_partial_channels_and_skip_dropout():
    from lit_automl.spaces.networks import SearchNetwork

    net = SearchNetwork(C=8, num_classes=10, layers=3, steps=2, multiplier=2, in_channels=1, partial_channels=4)
    full = SearchNetwork(C=8, num_classes=10, layers=3, steps=2, multiplier=2, in_channels=1)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())
    w = torch.softmax(torch.randn(net.alpha_shape), -1)
    assert net(torch.randn(2, 1, 7, 7), w, w).shape == (2, 10)  # odd sizes through the max-pooled bypass
    net.skip_dropout = 0.2
    assert net.skip_dropout == 0.2
    with pytest.raises(ValueError, match=r"skip_dropout must be a number in \[0, 1\), got 1.5"):
        net.skip_dropout = 1.5
    with pytest.raises(ValueError, match="partial_channels=3 must divide"):
        SearchNetwork(C=8, num_classes=10, layers=3, steps=2, multiplier=2, partial_channels=3)


def test_search_network_edge_primitives():
    from lit_automl.spaces.networks import SearchNetwork

    lists = [("skip_connect", "sep_conv_3x3", "max_pool_3x3")] * 5
    net = SearchNetwork(C=4, num_classes=3, layers=3, steps=2, multiplier=2, in_channels=1,
                        edge_primitives={"normal": lists, "reduce": [("avg_pool_3x3", "none", "dil_conv_3x3")] * 5})
    assert net.alpha_shape == (5, 3)
    assert [e.primitives for e in net.cells[1].edges] == [("avg_pool_3x3", "none", "dil_conv_3x3")] * 5
    w = torch.softmax(torch.randn(5, 3), -1)
    assert net(torch.randn(2, 1, 8, 8), w, w).shape == (2, 3)
    with pytest.raises(ValueError, match=r"keys \['normal', 'reduce'\]"):
        SearchNetwork(C=4, layers=3, steps=2, multiplier=2, edge_primitives={"normal": lists})


# --------------------------------------------------------------------------- cell checkpointing
def _supernet_pair():
    torch.manual_seed(0)
    plain = SearchNetwork(C=4, num_classes=10, layers=3, steps=2, multiplier=2, stem_multiplier=1,
                          in_channels=1).double()
    recomputed = SearchNetwork(C=4, num_classes=10, layers=3, steps=2, multiplier=2, stem_multiplier=1,
                               in_channels=1, checkpoint_cells=True).double()
    recomputed.load_state_dict(plain.state_dict())
    return plain, recomputed


def _step(net, x, w):
    w = [t.clone().requires_grad_() for t in w]
    out = net(x, *w)
    grads = torch.autograd.grad(out.pow(2).sum(), [*w, *net.parameters()])
    return out, grads


def test_checkpointed_cells_give_the_same_numbers_and_update_batch_norm_once():
    plain, recomputed = _supernet_pair()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    w = [torch.softmax(torch.randn(plain.alpha_shape, generator=g, dtype=torch.float64), -1) for _ in range(2)]
    plain.skip_dropout = recomputed.skip_dropout = 0.3  # dropout must replay its draw in the recomputation
    torch.manual_seed(5)
    out_p, grads_p = _step(plain, x, w)
    torch.manual_seed(5)
    out_r, grads_r = _step(recomputed, x, w)
    torch.testing.assert_close(out_r, out_p, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_r, grads_p):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for (name, a), b in zip(recomputed.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)  # running stats: one update


def test_checkpointed_cells_keep_fewer_activations_and_only_while_training():
    def saved_bytes(net):
        w = [torch.softmax(torch.randn(net.alpha_shape), -1) for _ in range(2)]
        return saved_tensor_bytes(lambda: net(torch.randn(8, 1, 16, 16), *w))

    plain, recomputed = _supernet_pair()
    plain, recomputed = plain.float(), recomputed.float()
    assert saved_bytes(recomputed) < saved_bytes(plain) / 3
    recomputed.load_state_dict(plain.state_dict())
    recomputed.eval()
    w = [torch.softmax(torch.randn(plain.alpha_shape), -1) for _ in range(2)]
    torch.testing.assert_close(recomputed(torch.ones(2, 1, 8, 8), *w), plain.eval()(torch.ones(2, 1, 8, 8), *w))
    with pytest.raises(ValueError, match=r"checkpoint_cells must be True, False, 'auto' or a number of leading "
                                         r"cells in \[0, 8\], got 'yes'"):
        SearchNetwork(checkpoint_cells="yes")
    with pytest.raises(ValueError, match=r"in \[0, 3\], got 4"):
        SearchNetwork(layers=3, checkpoint_cells=4)


def test_auto_checkpointing_recomputes_the_cells_with_large_inputs(monkeypatch):
    def net(checkpoint_cells):
        torch.manual_seed(0)
        return SearchNetwork(C=4, num_classes=10, layers=3, steps=2, multiplier=2, stem_multiplier=1, in_channels=1,
                             checkpoint_cells=checkpoint_cells)

    w = [torch.softmax(torch.randn(5, 8), -1) for _ in range(2)]  # 2 steps: 5 edges, 8 DARTS ops
    x = torch.randn(8, 1, 16, 16)  # cell inputs: 8*4*16*16 = 8192, 8*8*16*16 = 16384 (reduction), 8*16*8*8 = 8192
    monkeypatch.setattr(networks, "AUTO_RECOMPUTE_ELEMENTS", 16384)
    auto = net("auto")
    assert auto.recomputed_cells is None
    with torch.no_grad():
        auto(x, *w)
    assert auto.recomputed_cells is None  # settled by a training forward only
    saved = saved_tensor_bytes(lambda: auto(x, *w))
    assert auto.recomputed_cells == (1,)
    assert saved_tensor_bytes(lambda: auto(torch.randn(8, 1, 4, 4), *w)) > 0 and auto.recomputed_cells == (1,)  # settled once
    everything, nothing = net(True), net(False)
    assert everything.recomputed_cells == (0, 1, 2) and nothing.recomputed_cells == () and net(2).recomputed_cells == (0, 1)
    assert saved_tensor_bytes(lambda: everything(x, *w)) < saved < saved_tensor_bytes(lambda: nothing(x, *w))

"""The op registry and the DARTS operations."""

import pytest
import torch

from lit_automl.spaces.ops import (
    DARTS_OPS,
    OPS,
    DilatedConv2d,
    DilConv,
    FactorizedReduce,
    dilated_conv2d,
    get_op,
    get_op_set,
    register_op,
)


def test_darts_set_has_the_published_names_in_order():
    assert DARTS_OPS == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                         "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert get_op_set("darts") == DARTS_OPS


@pytest.mark.parametrize("name", DARTS_OPS)
@pytest.mark.parametrize("stride, size, out", [(1, 8, 8), (2, 8, 4), (2, 7, 4)])
def test_every_op_keeps_channels_and_scales_resolution(name, stride, size, out):
    op = get_op(name, 6, stride, affine=False)
    y = op(torch.randn(2, 6, size, size))
    assert y.shape == (2, 6, out, out)


def test_none_is_zero_and_skip_is_identity():
    x = torch.randn(2, 4, 6, 6)
    assert torch.count_nonzero(get_op("none", 4, 1)(x)) == 0
    assert torch.equal(get_op("skip_connect", 4, 1)(x), x)
    assert isinstance(get_op("skip_connect", 4, 2), FactorizedReduce)


def test_parameter_counts_of_separable_and_dilated_convs():
    C = 8
    count = lambda m: sum(p.numel() for p in m.parameters())
    # sep_conv_3x3: two blocks of depthwise 3x3 (C*9) + pointwise (C*C) + BN affine (2C)
    assert count(get_op("sep_conv_3x3", C, 1)) == 2 * (C * 9 + C * C + 2 * C)
    assert count(get_op("dil_conv_5x5", C, 1)) == C * 25 + C * C + 2 * C
    assert count(get_op("max_pool_3x3", C, 1)) == 0


def test_unknown_op_lists_valid_names():
    with pytest.raises(KeyError, match="conv_9x9.*valid names are: .*sep_conv_3x3"):
        get_op("conv_9x9", 4, 1)
    with pytest.raises(KeyError, match="unknown op set 'foo'.*darts"):
        get_op_set("foo")


@pytest.mark.parametrize("C, stride, match", [(0, 1, "C must be a positive int"), (4, 3, "stride must be 1 or 2")])
def test_bad_op_arguments(C, stride, match):
    with pytest.raises(ValueError, match=match):
        get_op("sep_conv_3x3", C, stride)


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_op("sep_conv_3x3")(lambda C, s, a: torch.nn.Identity())
    assert "sep_conv_3x3" in OPS


def test_factorized_reduce_needs_even_channels():
    with pytest.raises(ValueError, match="even number of output channels, got 5"):
        FactorizedReduce(4, 5)


# ----------------------------------------------------------------------------- the NASNet set
from lit_automl.spaces.ops import NASNET_OPS  # noqa: E402


def test_nasnet_set_has_the_papers_thirteen_ops_in_order():
    # Zoph et al. (2018), Sec. 3: identity, 1x3 then 3x1, 1x7 then 7x1, 3x3 dilated, 3x3 avg pool,
    # 3x3/5x5/7x7 max pool, 1x1 conv, 3x3 conv, 3x3/5x5/7x7 depthwise-separable conv.
    assert NASNET_OPS == ("skip_connect", "conv_1x3_3x1", "conv_1x7_7x1", "dilated_conv_3x3", "avg_pool_3x3",
                          "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "conv_1x1", "conv_3x3",
                          "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7")
    assert get_op_set("nasnet") == NASNET_OPS
    assert all(name in OPS for name in NASNET_OPS)


@pytest.mark.parametrize("name", NASNET_OPS)
@pytest.mark.parametrize("stride, h, w", [(1, 8, 8), (2, 8, 8), (2, 7, 5), (1, 5, 6)])
def test_every_nasnet_op_keeps_channels_and_scales_resolution(name, stride, h, w):
    y = get_op(name, 4, stride, affine=True)(torch.randn(2, 4, h, w))
    assert y.shape == (2, 4, -(-h // stride), -(-w // stride))


def test_nasnet_op_structure_and_parameter_counts():
    C = 8
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(get_op("conv_1x1", C, 1)) == C * C + 2 * C
    assert count(get_op("conv_3x3", C, 1)) == 9 * C * C + 2 * C
    assert count(get_op("conv_1x3_3x1", C, 1)) == 2 * 3 * C * C + 2 * C
    assert count(get_op("conv_1x7_7x1", C, 1)) == 2 * 7 * C * C + 2 * C
    dil = get_op("dilated_conv_3x3", C, 1)
    assert count(dil) == 9 * C * C + 2 * C and dil[1].dilation == (2, 2) and dil[1].groups == 1
    # separable applied twice (Appendix A.4): two depthwise + pointwise + BN blocks
    assert count(get_op("sep_conv_7x7", C, 1)) == 2 * (49 * C + C * C + 2 * C)
    for pool in ("max_pool_5x5", "max_pool_7x7"):
        assert count(get_op(pool, C, 2)) == 0
    # ReLU -> conv -> BN ordering (Appendix A.4)
    conv = get_op("conv_1x7_7x1", C, 2)
    assert isinstance(conv[0], torch.nn.ReLU) and isinstance(conv[-1], torch.nn.BatchNorm2d)
    assert conv[1].kernel_size == (1, 7) and conv[1].stride == (1, 2) and conv[2].stride == (2, 1)


# --------------------------------------------------------------------------- dilated convolutions
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("depthwise", [True, False])
def test_dilated_conv_equals_the_plain_dilated_convolution_with_gradients(k, stride, size, depthwise):
    g = torch.Generator().manual_seed(k + stride + size)
    C = 3
    x = torch.randn(2, C, size, size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(C, 1 if depthwise else C, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    groups = C if depthwise else 1
    ref = torch.nn.functional.conv2d(x, w, stride=stride, padding=2 * (k - 1) // 2, dilation=2, groups=groups)
    out = dilated_conv2d(x, w, stride, 2, groups)
    assert out.shape == ref.shape == (2, C, -(-size // stride), -(-size // stride))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    v = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad((out * v).sum(), [x, w]), torch.autograd.grad((ref * v).sum(), [x, w])):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dilated_conv_on_a_reduction_edge_convolves_only_the_inputs_it_reads(monkeypatch):
    seen = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, *a, **kw: seen.append((tuple(x.shape), kw)) or conv2d(x, *a, **kw))
    op = DilatedConv2d(4, 4, 5, stride=2, dilation=2, groups=4)
    assert op(torch.randn(2, 4, 9, 9)).shape == (2, 4, 5, 5)
    assert seen == [((2, 4, 5, 5), {"padding": 2, "groups": 4})]  # undilated, unstrided, on x[..., ::2, ::2]
    op.subsample = False
    op(torch.randn(2, 4, 9, 9))
    assert seen[1] == ((2, 4, 9, 9), {"stride": 2, "padding": 4, "dilation": 2, "groups": 4})
    assert set(op.state_dict()) == {"weight"}  # an nn.Conv2d's parameters: checkpoints load either way


def test_dil_conv_refuses_a_padding_that_changes_the_size():
    with pytest.raises(ValueError, match="padding must be 4 for kernel 5 at dilation 2, got 2"):
        DilConv(4, 4, 5, 1, 2, 2)


def test_resolve_recurrent_primitives_takes_a_set_name_or_unique_known_names():
    from lit_automl.spaces.op_names import DARTS_RNN_OPS, resolve_recurrent_primitives

    assert resolve_recurrent_primitives("darts_rnn") == DARTS_RNN_OPS
    assert resolve_recurrent_primitives(["none", "tanh"]) == ("none", "tanh")
    with pytest.raises(ValueError, match=r"unknown recurrent op\(s\) 'gelu'; valid names are"):
        resolve_recurrent_primitives(["tanh", "gelu"])
    with pytest.raises(ValueError, match=r"non-empty list of unique recurrent op names .*got \['tanh', 'tanh'\]"):
        resolve_recurrent_primitives(["tanh", "tanh"])

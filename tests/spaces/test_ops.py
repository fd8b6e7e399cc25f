"""The op registry and the DARTS operations."""

import pytest
import torch

from lit_automl.spaces.ops import DARTS_OPS, OPS, FactorizedReduce, get_op, get_op_set, register_op


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

"""Candidate operations and the one registry every cell-based search space draws from.

The DARTS set (Liu et al., "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 3.1.1)
is registered here under its published names. Later spaces (NASNet, ENAS, PNAS, NAS-Bench-201)
add their operations with :func:`register_op` and their name lists to :data:`OP_SETS`.

Every factory has the signature ``factory(C, stride, affine) -> nn.Module`` and maps a
``(N, C, H, W)`` tensor to ``(N, C, ceil(H / stride), ceil(W / stride))``.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from lit_automl._checks import check_int, lookup
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.op_names import DARTS_OPS, ENAS_OPS, NASNET_OPS, OP_NAMES, OP_SETS, check_op_names

__all__ = ["DARTS_OPS", "ENAS_OPS", "NASNET_OPS", "OPS", "OP_SETS", "check_registered", "get_op", "get_op_set", "register_op",
           "resolve_primitives", "validate_primitives"]

OpFactory = Callable[[int, int, bool], nn.Module]

OPS: Dict[str, OpFactory] = {}
"""Registry: op name -> factory(C, stride, affine)."""

# OP_SETS (named candidate lists, the column order of architecture parameters) and the op names
# live in lit_automl.spaces.op_names, which the pure-Python genotype reader checks names against.


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator adding ``factory`` to :data:`OPS` under ``name`` (names are unique)."""

    def decorator(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"operation {name!r} is already registered")
        OPS[name] = factory
        OP_NAMES.add(name)
        return factory

    return decorator


def get_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build operation ``name`` on ``C`` channels; an unknown name lists the valid ones."""
    factory = lookup(OPS, name, "operation")
    C = check_int("C", C, low=1, allowed="a positive int")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    return factory(C, stride, affine)


def get_op_set(name: str) -> Tuple[str, ...]:
    """The candidate list registered as ``name`` in :data:`OP_SETS`."""
    return lookup(OP_SETS, name, "op set")


def check_registered(where: str, names: Iterable[str]) -> None:
    """Every name in ``names`` is a registered operation; else :class:`~lit_automl._checks.UnknownNameError`
    (a ``KeyError`` and a ``ValueError``) naming the unknown ones and listing the valid names."""
    check_op_names(where, names)


def validate_primitives(primitives: Sequence[str]) -> Tuple[str, ...]:
    """Check a candidate list: non-empty, unique, every name registered."""
    primitives = tuple(primitives)
    if not primitives:
        raise ValueError("primitives must name at least one operation")
    check_registered("primitives", primitives)
    if len(set(primitives)) != len(primitives):
        raise ValueError(f"primitives must be unique, got {list(primitives)}")
    return primitives


def resolve_primitives(primitives: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """An op-set name (:func:`get_op_set`) or a list of op names (:func:`validate_primitives`)."""
    return get_op_set(primitives) if isinstance(primitives, str) else validate_primitives(primitives)


# ----------------------------------------------------------------------------- building blocks


class LeadingReLU(nn.ReLU):
    """The ReLU an op starts with. While ``skip`` is set it passes its input through: a mixed edge
    that hands all its ops ``relu(x)``, computed once, sets it around the op's call (ReLU is
    idempotent, so the op's output is the same; only one activation is kept for backward)."""

    skip = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.skip else super().forward(x)


def dilated_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, dilation: int, groups: int = 1,
                   subsample: bool = True) -> torch.Tensor:
    """A "same"-padded dilated convolution (padding ``dilation * (k - 1) // 2``), output ceil(H / stride).

    When ``stride == dilation`` (a dilated op on a reduction edge) every tap reads only the
    inputs at multiples of ``dilation``: the output is exactly the undilated, unstrided "same"
    convolution of ``x[..., ::d, ::d]`` (``subsample``, default), which computes only those inputs' products
    and is about 10x faster on CPU than the strided dilated kernel (``benchmarks/darts_step.py``).
    """
    # x: (N, C_in, H, W); weight: (C_out, C_in / groups, k, k)
    k = weight.shape[-1]
    if subsample and stride == dilation > 1:
        return F.conv2d(x[..., ::dilation, ::dilation], weight, padding=(k - 1) // 2, groups=groups)
    return F.conv2d(x, weight, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups)


class DilatedConv2d(nn.Conv2d):
    """A bias-free "same" dilated :class:`nn.Conv2d` computed by :func:`dilated_conv2d` (same
    parameters and state-dict keys; ``subsample=False`` runs the plain strided dilated kernel)."""

    subsample = True

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, dilation: int, groups: int = 1):
        super().__init__(C_in, C_out, kernel_size, stride=stride, padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dilated_conv2d(x, self.weight, self.stride[0], self.dilation[0], self.groups, self.subsample)


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, the pre-activation block used for cell preprocessing."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            LeadingReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN (DARTS ``dil_conv_*``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True):
        if padding != dilation * (kernel_size - 1) // 2:
            raise ValueError(f"DilConv pads to keep the size: padding must be {dilation * (kernel_size - 1) // 2} "
                             f"for kernel {kernel_size} at dilation {dilation}, got {padding}")
        super().__init__(
            LeadingReLU(inplace=False),
            DilatedConv2d(C_in, C_in, kernel_size, stride, dilation, groups=C_in),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable blocks (DARTS ``sep_conv_*``); only the first strides."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output shape (mixed edges skip it altogether)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(zero_output_shape(x, x.shape[1], self.stride))


def zero_output_shape(x: torch.Tensor, C: int, stride: int) -> Tuple[int, int, int, int]:
    """Shape an op with ``C`` output channels and ``stride`` produces from ``x``."""
    n, _, h, w = x.shape
    return (n, C, -(-h // stride), -(-w // stride))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convolutions, concatenated.

    The second path sees the input shifted by one pixel (zero padded at the bottom/right, which
    equals the usual ``x[:, :, 1:, 1:]`` crop on even sizes and also works on odd ones).
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = LeadingReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def leading_relu(op: nn.Module) -> Optional[LeadingReLU]:
    """The ReLU ``op`` applies to its input first (every conv op of the DARTS and NASNet sets, and
    FactorizedReduce), or ``None``: a mixed edge computes that ReLU once for all such ops."""
    if isinstance(op, FactorizedReduce):
        return op.relu
    if isinstance(op, nn.Sequential) and len(op) > 0:
        return op[0] if isinstance(op[0], LeadingReLU) else leading_relu(op[0])
    return None


# ----------------------------------------------------------------------------- the DARTS set


@register_op("none")
def _none(C: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3")
def _avg_pool_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("skip_connect")
def _skip_connect(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 3, stride, 1, affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 5, stride, 2, affine)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 3, stride, 2, 2, affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 5, stride, 4, 2, affine)



# ----------------------------------------------------------------------------- the NASNet set
# Zoph, Vasudevan, Shlens & Le, "Learning Transferable Architectures for Scalable Image
# Recognition", CVPR 2018, Sec. 3 (the 13 candidate operations) and Appendix A.4 (every
# convolution is ReLU -> conv -> BN; a separable convolution is applied twice, with neither BN
# nor ReLU between its depthwise and pointwise parts). Operations the DARTS set already has with
# the same semantics are reused: ``skip_connect`` (identity; a factorized reduction at stride 2,
# where NASNet's reference uses a strided 1x1 convolution of the same parameter count),
# ``avg_pool_3x3`` (padding not counted, like TensorFlow's SAME average pooling),
# ``max_pool_3x3`` and ``sep_conv_3x3`` / ``sep_conv_5x5`` (two stacked ReLU-depthwise-pointwise-BN
# blocks, only the first strided: exactly NASNet's "separable_kxk_2").


class ConvBN(nn.Sequential):
    """ReLU -> one square (possibly dilated) convolution -> BN; output size ceil(H / stride)."""

    def __init__(self, C: int, kernel_size: int, stride: int, dilation: int = 1, affine: bool = True):
        super().__init__(
            LeadingReLU(inplace=False),
            DilatedConv2d(C, C, kernel_size, stride, dilation),
            BatchNorm2d(C, affine=affine),
        )


class FactorizedConv(nn.Sequential):
    """ReLU -> 1xk conv -> kx1 conv -> BN (NASNet's "1xk then kx1 convolution").

    The 1xk convolution strides along the width and the kx1 convolution along the height, so a
    stride-2 op halves both; one BN after the pair, as in the spatially factorized convolutions
    of Inception-v3 that the op is taken from.
    """

    def __init__(self, C: int, k: int, stride: int, affine: bool = True):
        super().__init__(
            LeadingReLU(inplace=False),
            nn.Conv2d(C, C, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False),
            nn.Conv2d(C, C, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False),
            BatchNorm2d(C, affine=affine),
        )


@register_op("conv_1x3_3x1")
def _conv_1x3_3x1(C: int, stride: int, affine: bool) -> nn.Module:
    return FactorizedConv(C, 3, stride, affine)


@register_op("conv_1x7_7x1")
def _conv_1x7_7x1(C: int, stride: int, affine: bool) -> nn.Module:
    return FactorizedConv(C, 7, stride, affine)


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(C: int, stride: int, affine: bool) -> nn.Module:
    # The DARTS-family repositories' name for the same op (their ``OPS['conv_7x1_1x7']``: a 1x7 then a 7x1
    # convolution, one BN), which their AmoebaNet genotype uses.
    return FactorizedConv(C, 7, stride, affine)


@register_op("dilated_conv_3x3")
def _dilated_conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    # A full (not separable) 3x3 convolution; the paper does not give the rate, 2 is ours
    # (the rate DARTS' dilated separable convolutions use).
    return ConvBN(C, 3, stride, dilation=2, affine=affine)


@register_op("max_pool_5x5")
def _max_pool_5x5(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(5, stride=stride, padding=2)


@register_op("max_pool_7x7")
def _max_pool_7x7(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(7, stride=stride, padding=3)


@register_op("conv_1x1")
def _conv_1x1(C: int, stride: int, affine: bool) -> nn.Module:
    return ConvBN(C, 1, stride, affine=affine)


@register_op("conv_3x3")
def _conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return ConvBN(C, 3, stride, affine=affine)


@register_op("sep_conv_7x7")
def _sep_conv_7x7(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 7, stride, 3, affine)


# ----------------------------------------------------------------------------- the NAS-Bench-201 set
# Dong & Yang, "NAS-Bench-201", ICLR 2020, Sec. 2.1 and the authors' cell_operations.py. ``none``
# (zeros), ``skip_connect`` (identity at stride 1) and ``avg_pool_3x3`` (3x3, padding 1, padding not
# counted) are the DARTS ops above with the same semantics; ``nor_conv_kxk`` is ReLU -> conv kxk
# (padding k // 2, no bias) -> BN (affine, running statistics), the ReLUConvBN block.


@register_op("nor_conv_1x1")
def _nor_conv_1x1(C: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(C, C, 1, stride, 0, affine)


@register_op("nor_conv_3x3")
def _nor_conv_3x3(C: int, stride: int, affine: bool) -> nn.Module:
    return ReLUConvBN(C, C, 3, stride, 1, affine)


# ----------------------------------------------------------------------------- the PNAS set
# Liu et al., "Progressive Neural Architecture Search", ECCV 2018, Sec. 3.1: 8 of NASNet's operations,
# all registered above under NASNet's names ("1x7 followed by 7x1 convolution" is ``conv_1x7_7x1``,
# the full "3x3 dilated convolution" ``dilated_conv_3x3``), in the paper's order.
PNAS_OPS: Tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "conv_1x7_7x1", "skip_connect",
                             "avg_pool_3x3", "max_pool_3x3", "dilated_conv_3x3")
OP_SETS["pnas"] = PNAS_OPS
__all__ += ["PNAS_OPS"]

# Regularized evolution's 8 ops (Real et al., AAAI 2019, "Search space"): identity, 3x3/5x5/7x7 separable
# convs, 3x3 average and max pooling, 3x3 dilated SEPARABLE conv (DARTS's ``dil_conv_3x3``, unlike PNAS's
# full dilated conv) and 1x7-then-7x1 conv, named as the published AmoebaNet cells name them.
AMOEBANET_OPS: Tuple[str, ...] = ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
                                  "max_pool_3x3", "dil_conv_3x3", "conv_7x1_1x7")
OP_SETS["amoebanet"] = AMOEBANET_OPS
__all__ += ["AMOEBANET_OPS"]

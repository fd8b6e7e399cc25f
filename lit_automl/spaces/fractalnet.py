"""FractalNet: ultra-deep networks without residuals, with local and global drop-path.

Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals",
ICLR 2017. A fractal block is the expansion rule of Sec. 2 (Fig. 1),

    f_1(z) = conv(z),        f_{C+1}(z) = join(f_C(f_C(z)), conv(z)),

laid out flat as the authors' reference implementation does (github.com/gustavla/fractalnet,
``generation/fractalnet.py``): C columns side by side, column c (1-based, 1 = shallowest) holds
2**(c-1) convolutions, and wherever columns meet a single join takes the element-wise mean of all
of them (adjacent joins of the recursion merged into one, as drawn in Fig. 1). Drop-path (Sec. 3.1)
regularises the joins: *local* drops each join input with a fixed probability (at least one
survives); *global* keeps one column for the whole network.

Column numbering is the paper's (1..C, Table 3 / Fig. 1 columns left to right from the single
conv). Choices the paper leaves open are stated where they are made.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from lit_automl._checks import check_choice, check_int, check_real
from lit_automl.spaces.drop_path import sample_keep_mask
from lit_automl.spaces.networks import check_image_input

FRACTALNET_POOLS = ("max", "avg")
_RATE = dict(low=0.0, high=1.0, high_open=True, allowed="in [0, 1)")  # a dropout or drop-path rate


def join(inputs: Sequence[torch.Tensor], keep: Optional[torch.Tensor] = None) -> torch.Tensor:
    """FractalNet's join (Sec. 2): one element-wise mean over every column meeting here.

    With ``keep`` (bool, shape ``(len(inputs),)`` for the whole batch, or ``(N, len(inputs))`` one
    row per sample) the mean runs over the surviving inputs only (Sec. 3.1), so no rescaling is
    needed. A join with a single survivor returns that input unchanged.
    """
    inputs = list(inputs)
    if not inputs:
        raise ValueError("join needs at least one input, got 0")
    if keep is None:
        if len(inputs) == 1:
            return inputs[0]
        out = inputs[0] + inputs[1]
        for t in inputs[2:]:
            out = out + t
        return out / len(inputs)
    if keep.dtype != torch.bool or keep.dim() not in (1, 2) or keep.shape[-1] != len(inputs):
        raise ValueError(
            f"keep must be a bool tensor of shape ({len(inputs)},) or (N, {len(inputs)}), "
            f"got {keep.dtype} {tuple(keep.shape)}"
        )
    if keep.dim() == 1:
        flags = keep.tolist()
        if not any(flags):
            raise ValueError("keep drops every input of the join; at least one must survive")
        return join([t for t, k in zip(inputs, flags) if k])
    # One mask row per sample: weighted mean, each kept input weighted 1 / (survivors of its row).
    if keep.shape[0] != inputs[0].shape[0]:
        raise ValueError(f"keep has {keep.shape[0]} rows but the batch has {inputs[0].shape[0]} samples")
    count = keep.sum(-1)
    if bool((count == 0).any()):
        raise ValueError("keep drops every input of the join for some sample; at least one must survive")
    weights = (keep.to(inputs[0].dtype) / count.unsqueeze(-1).to(inputs[0].dtype)).to(inputs[0].device)
    view = (-1,) + (1,) * (inputs[0].dim() - 1)
    out = inputs[0] * weights[:, 0].view(view)
    for i, t in enumerate(inputs[1:], start=1):
        out = out + t * weights[:, i].view(view)
    return out


class FractalConv(nn.Sequential):
    """One "conv" of the expansion rule: 3x3 conv, dropout, BN, ReLU.

    Sec. 4: BN and ReLU after each conv; dropout with the block's rate. The order conv -> dropout
    -> BN -> ReLU follows the authors' Caffe implementation (``globals.crox``); the conv has no
    bias since BN follows it (the Caffe conv has one; 1 parameter per channel, see FractalNet).
    """

    def __init__(self, C_in: int, C_out: int, dropout: float = 0.0):
        layers: List[nn.Module] = [nn.Conv2d(C_in, C_out, 3, padding=1, bias=False)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.BatchNorm2d(C_out), nn.ReLU(inplace=False)]
        super().__init__(*layers)


def _join_schedule(columns: int) -> List[Tuple[int, Tuple[int, ...]]]:
    """Rows (1-based depth) where joins happen and the 0-based columns meeting there.

    Column c (0-based) has a conv at rows that are multiples of 2**(columns-1-c); at an even row
    i the deepest v2(i)+1 columns meet (v2 = number of trailing zero bits), all C at the last row.
    """
    depth = 2 ** (columns - 1)
    schedule = []
    for row in range(2, depth + 1, 2):
        meeting = ((row & -row).bit_length() - 1) + 1  # v2(row) + 1
        schedule.append((row, tuple(range(columns - meeting, columns))))
    return schedule


class FractalBlock(nn.Module):
    """One fractal block f_C (Sec. 2, Fig. 1), flattened into columns.

    ``column_convs[c-1]`` holds column c's 2**(c-1) convs (the first one reads ``C_in``); the
    deepest column sets the block depth 2**(C-1). ``forward(x, column=k)`` runs column k alone
    (global drop-path); otherwise every column runs and joins average them, dropping each join
    input with probability ``local_drop`` in training mode (local drop-path, Sec. 3.1, one mask per
    join and mini-batch as in the reference Caffe join layer). Join inputs that are dropped are not
    computed when they are a single conv away from the join.
    """

    def __init__(self, C_in: int, C_out: int, columns: int, dropout: float = 0.0):
        super().__init__()
        for name, value in (("C_in", C_in), ("C_out", C_out), ("columns", columns)):
            check_int(name, value, low=1, allowed="a positive int")
        check_real("dropout", dropout, **_RATE)
        self.C_in, self.C_out, self.columns, self.dropout = C_in, C_out, columns, dropout
        self.column_convs = nn.ModuleList(
            nn.ModuleList(FractalConv(C_in if i == 0 else C_out, C_out, dropout) for i in range(2 ** c))
            for c in range(columns)
        )
        self.schedule = _join_schedule(columns)
        self.last_keep: List[Tuple[bool, ...]] = []
        self.last_column: Optional[int] = None

    @property
    def depth(self) -> int:
        """Convs on the deepest path: 2**(C-1)."""
        return 2 ** (self.columns - 1)

    def num_convs(self, column: int) -> int:
        """Convs in column ``column`` (1-based): 2**(column-1)."""
        column = check_int("column", column, low=1, high=self.columns, allowed=f"an int in 1..{self.columns}")
        return len(self.column_convs[column - 1])

    def forward(self, x: torch.Tensor, column: Optional[int] = None, local_drop: float = 0.0) -> torch.Tensor:
        check_real("local_drop", local_drop, **_RATE)
        self.last_keep = []
        if column is not None:
            column = check_int("column", column, low=1, high=self.columns, allowed=f"an int in 1..{self.columns}")
            self.last_column = column
            for conv in self.column_convs[column - 1]:
                x = conv(x)
            return x
        self.last_column = None
        if self.columns == 1:
            return self.column_convs[0][0](x)
        drop = local_drop if self.training else 0.0
        state = [x] * self.columns  # input of each column's next conv
        done = [0] * self.columns  # convs of each column already applied (or skipped)
        for row, meeting in self.schedule:
            if drop > 0:
                keep = tuple(sample_keep_mask(len(meeting), drop).tolist())
            else:
                keep = (True,) * len(meeting)
            self.last_keep.append(keep)
            outs = []
            for c, kept in zip(meeting, keep):
                period = 2 ** (self.columns - 1 - c)
                h = state[c]
                while done[c] < len(self.column_convs[c]) and (done[c] + 1) * period <= row:
                    if kept:
                        h = self.column_convs[c][done[c]](h)
                    done[c] += 1
                if kept:
                    outs.append(h)
            joined = join(outs)
            for c in meeting:
                state[c] = joined
        return joined

    def extra_repr(self) -> str:
        return f"C_in={self.C_in}, C_out={self.C_out}, columns={self.columns}, dropout={self.dropout}"


class FractalNet(nn.Module):
    """The CIFAR FractalNet (Sec. 4): B fractal blocks, each followed by 2x2 pooling, then a classifier.

    Defaults are the paper's CIFAR setting: B=5 blocks with (64, 128, 256, 512, 512) channels,
    dropout (0, 0.1, 0.2, 0.3, 0.4) per block, local drop-path 0.15, and C=3 columns, i.e. the
    20-layer network of Table 1 (depth B * 2**(C-1); the reference generator ``COLUMNS = 3``).
    C=4 gives the 40-layer variant.

    Training mode samples per mini-batch (Sec. 3.1, a 50/50 mix): with probability
    ``global_ratio`` global drop-path -- one column, uniform over 1..C, the *same* column in every
    block (the authors' tied "separate columns" for global drop-path, one sub-network per column
    through all blocks) -- otherwise local drop-path at every join. Eval mode uses every column
    without dropping. ``forward(x, column=k)`` forces global mode with column k in either mode
    (the single-column evaluations of Sec. 4, e.g. "deepest column alone").
    ``last_mode`` ("local", "global" or "eval") and ``last_column`` record what the last forward did.

    Classifier (ours; the paper names only a final softmax): global average pooling then a linear
    layer. On 32x32 inputs five poolings leave a 1x1 map, so this is the reference
    implementation's fully connected layer on the 512x1x1 features. Weights use Caffe's default
    "xavier" filler of the reference implementation, U(+-sqrt(3 / fan_in)), biases zero.

    Parameters: 33.7M with the defaults against 38.6M in Table 1 (see the tests): the 3x3 convs of
    the described network give 33.70M; the paper's remaining 4.9M are unaccounted for by Sec. 4.
    Under DDP, global drop-path leaves the other columns without gradients
    (``find_unused_parameters=True``); seed every rank alike so they sample the same paths.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        columns: int = 3,
        dropout: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4),
        local_drop: float = 0.15,
        global_ratio: float = 0.5,
        pool: str = "max",
    ):
        super().__init__()
        channels, dropout = tuple(channels), tuple(dropout)
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("columns", columns)):
            check_int(name, value, low=1, allowed="a positive int")
        if not channels:
            raise ValueError("channels must name at least one block, got ()")
        for i, c in enumerate(channels):
            check_int(f"channels[{i}]", c, low=1, allowed="a positive int")
        if len(dropout) != len(channels):
            raise ValueError(
                f"dropout has {len(dropout)} rates {dropout!r} but channels has {len(channels)} blocks; "
                f"give one rate per block"
            )
        for i, p in enumerate(dropout):
            check_real(f"dropout[{i}]", p, **_RATE)
        check_real("local_drop", local_drop, **_RATE)
        check_real("global_ratio", global_ratio, low=0.0, high=1.0, allowed="in [0, 1]")
        check_choice("pool", pool, FRACTALNET_POOLS)
        self.in_channels, self.columns, self.channels, self.dropout = in_channels, columns, channels, dropout
        self.local_drop, self.global_ratio, self.pool = local_drop, global_ratio, pool
        blocks, C_in = [], in_channels
        for C_out, p in zip(channels, dropout):
            blocks.append(FractalBlock(C_in, C_out, columns, p))
            C_in = C_out
        self.blocks = nn.ModuleList(blocks)
        self.pooling = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_in, num_classes)
        self.last_mode: Optional[str] = None
        self.last_column: Optional[int] = None
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=1.0)  # Caffe "xavier": U(+-sqrt(3 / fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def num_layers(self) -> int:
        """Convs on the deepest path: B * 2**(C-1) (20 for the defaults)."""
        return len(self.blocks) * 2 ** (self.columns - 1)

    def forward(self, x: torch.Tensor, column: Optional[int] = None) -> torch.Tensor:
        check_image_input(x, self.in_channels, reductions=len(self.blocks))
        if column is not None:
            column = check_int("column", column, low=1, high=self.columns, allowed=f"an int in 1..{self.columns}")
            mode = "global"
        elif not self.training:
            mode = "eval"
        elif self.global_ratio > 0 and torch.rand(()).item() < self.global_ratio:
            mode = "global"
            column = int(torch.randint(1, self.columns + 1, ()).item())
        else:
            mode = "local"
        self.last_mode, self.last_column = mode, column
        local_drop = self.local_drop if mode == "local" else 0.0
        for block in self.blocks:
            x = self.pooling(block(x, column=column, local_drop=local_drop))
        return self.classifier(self.global_pooling(x).flatten(1))

    def extra_repr(self) -> str:
        return (f"columns={self.columns}, local_drop={self.local_drop}, global_ratio={self.global_ratio}, "
                f"pool={self.pool!r}")

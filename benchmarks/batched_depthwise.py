#!/usr/bin/env python
"""One DARTS edge's depthwise stages: run separately (what :class:`MixedEdge` does) or batched.

Every conv op of the DARTS set starts with a depthwise conv of the same ``relu(x)``: sep_conv_3x3,
sep_conv_5x5 (dilation 1) and dil_conv_3x3, dil_conv_5x5 (dilation 2). Batched, they are two
grouped convolutions with channel multiplier 2 and zero-padded kernels: {sep 3x3, sep 5x5} as 5x5
at dilation 1, {dil 3x3, dil 5x5} as 5x5 at dilation 2 (a 3x3 kernel centred in a 5x5 one with two
more pixels of padding computes the same output). Each row times forward + backward (gradients of
the input and of the four kernels, the batched kernels built from the four in every call, as a
fused edge would) at the cell sizes of the digits quickstart and of the paper's CIFAR-10 search,
and prints the largest difference between the two results (they compute the same numbers).

    python benchmarks/batched_depthwise.py               # torch's default threads
    python benchmarks/batched_depthwise.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from _harness import describe_machine, fmt_median_iqr, format_table, median_iqr

# (batch, channels, height = width): the normal cells' edge sizes.
SIZES = {
    "digits quickstart (C=8, 5 cells, 8x8)": [(64, 8, 8), (64, 16, 4), (64, 32, 2)],
    "paper search (C=16, 8 cells, 32x32)": [(64, 16, 32), (64, 32, 16), (64, 64, 8)],
}
OPS = (("sep_conv_3x3", 3, 1), ("sep_conv_5x5", 5, 1), ("dil_conv_3x3", 3, 2), ("dil_conv_5x5", 5, 2))


def separate(x: torch.Tensor, kernels: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The four depthwise convs one by one."""
    C = x.shape[1]
    return [F.conv2d(x, w, None, 1, d * (k - 1) // 2, d, C) for w, (_, k, d) in zip(kernels, OPS)]


def batched(x: torch.Tensor, kernels: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Two grouped convs (channel multiplier 2), 3x3 kernels zero-padded to 5x5."""
    N, C, H, W = x.shape
    outs = []
    for (w3, w5), d in ((kernels[:2], 1), (kernels[2:], 2)):
        w = torch.stack([F.pad(w3, (1, 1, 1, 1)), w5], 1).reshape(2 * C, 1, 5, 5)  # (C, 2) interleaved
        y = F.conv2d(x, w, None, 1, 2 * d, d, C).view(N, C, 2, H, W)
        outs += [y[:, :, 0], y[:, :, 1]]
    return outs


def time_pass(fn: Callable, x: torch.Tensor, kernels: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
              repeats: int) -> List[float]:
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        outs = fn(x, kernels)
        torch.autograd.backward(outs, grads)
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - start)
        x.grad = None
        for w in kernels:
            w.grad = None
    return times


def run_size(N: int, C: int, H: int, repeats: int) -> Tuple[List[float], List[float], float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, H, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    kernels = [torch.randn(C, 1, k, k, generator=g).requires_grad_() for _, k, _ in OPS]
    grads = [torch.randn(N, C, H, H, generator=g).contiguous(memory_format=torch.channels_last) for _ in OPS]
    with torch.no_grad():
        diff = max((a - b).abs().max().item() for a, b in zip(separate(x, kernels), batched(x, kernels)))
    return time_pass(separate, x, kernels, grads, repeats), time_pass(batched, x, kernels, grads, repeats), diff


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per row (default 30)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"torch threads: {torch.get_num_threads()}; channels_last float32; forward + backward, "
          f"median [IQR] of {args.repeats} calls\n")
    rows = []
    for setting, sizes in SIZES.items():
        for N, C, H in sizes:
            sep, bat, diff = run_size(N, C, H, args.repeats)
            ratio = median_iqr(bat)[0] / median_iqr(sep)[0]
            rows.append([setting, f"{N}x{C}x{H}x{H}", fmt_median_iqr([t * 1e3 for t in sep]),
                         fmt_median_iqr([t * 1e3 for t in bat]), f"{ratio:.2f}", f"{diff:.1e}"])
    print(format_table(["setting", "edge input", "4 separate convs, ms", "2 batched convs, ms",
                        "batched / separate", "max |difference|"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])

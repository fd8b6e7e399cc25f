#!/usr/bin/env python
"""Training throughput of RecurrentLM (the DARTS/ENAS language model), next to an LSTM language model.

One training step = forward on a (bptt, batch) window, cross-entropy, backward, gradient-norm
clipping at 0.25, SGD step -- what ``RetrainRNN.training_step`` does, driven directly (no Trainer).
Each size runs the DARTS_V2 cell (``RecurrentLM``) and the alternative a user would pick: a
single-layer ``nn.LSTM`` language model of the same width with the same tied embedding and the
same dropout placement (AWD-LSTM's model at one layer), in the same process, one after the other.
Figures: tokens per second (bptt x batch / median seconds per step) and parameter counts.

Sizes: ``tiny`` (the test corpus's scale: vocabulary 13, width 16, batch 4, bptt 6) and ``paper``
(DARTS final training: vocabulary 10,000, width 850, batch 64, bptt 35).

    python benchmarks/recurrent_lm.py                  # both sizes, torch's default threads
    python benchmarks/recurrent_lm.py --sizes paper --steps 5
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from _harness import describe_machine, fmt_median_iqr, format_table, median_iqr
from lit_automl.spaces.networks import count_parameters
from lit_automl.spaces.recurrent import RecurrentLM, embedded_dropout, locked_dropout

SIZES: Dict[str, Dict[str, int]] = {
    "tiny": {"vocab": 13, "width": 16, "batch": 4, "bptt": 6},
    "paper": {"vocab": 10_000, "width": 850, "batch": 64, "bptt": 35},
}


class LSTMLM(nn.Module):
    """A one-layer LSTM language model with RecurrentLM's embedding, tying and dropouts."""

    def __init__(self, vocab: int, width: int, dropout: float = 0.75, dropout_i: float = 0.2, dropout_e: float = 0.1):
        super().__init__()
        self.encoder = nn.Embedding(vocab, width)
        self.rnn = nn.LSTM(width, width)
        self.decoder = nn.Linear(width, vocab)
        self.decoder.weight = self.encoder.weight
        self.dropout, self.dropout_i, self.dropout_e = dropout, dropout_i, dropout_e

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        emb = locked_dropout(embedded_dropout(self.encoder.weight, tokens, self.dropout_e, self.training),
                             self.dropout_i, self.training)
        out, _ = self.rnn(emb)
        return self.decoder(locked_dropout(out, self.dropout, self.training))


def step_fn(model: nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor], size: Dict[str, int]):
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0, weight_decay=8e-7)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, size["vocab"], (size["bptt"] + 1, size["batch"]), generator=g)

    def step() -> None:
        logits = logits_of(data[:-1])
        loss = F.cross_entropy(logits.reshape(-1, size["vocab"]), data[1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()

    return step


def time_steps(step: Callable[[], None], steps: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["tiny", "paper"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50 tiny, 5 paper)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"torch threads: {torch.get_num_threads()}; one step = forward, cross-entropy, backward, clip 0.25, "
          "SGD; training mode (dropouts on)\n")
    rows: List[Tuple[str, ...]] = []
    for name in args.sizes:
        size = SIZES[name]
        steps = args.steps or (50 if name == "tiny" else 5)
        torch.manual_seed(0)
        darts = RecurrentLM(size["vocab"], "DARTS_V2", emsize=size["width"], nhid=size["width"]).train()
        lstm = LSTMLM(size["vocab"], size["width"]).train()
        for label, model, logits_of in (("RecurrentLM (DARTS_V2 cell)", darts, lambda t: darts(t).logits),
                                        ("nn.LSTM language model", lstm, lstm)):
            times = time_steps(step_fn(model, logits_of, size), steps, args.warmup)
            tokens = size["bptt"] * size["batch"]
            rows.append((name, f"V={size['vocab']} width={size['width']} B={size['batch']} bptt={size['bptt']}",
                         label, f"{count_parameters(model):,}", fmt_median_iqr([t * 1e3 for t in times]),
                         f"{tokens / median_iqr(times)[0]:,.0f}", str(steps)))
    print(format_table(["size", "setting", "model", "parameters", "ms/step median [IQR]", "tokens/s", "steps"], rows))


if __name__ == "__main__":
    main(sys.argv[1:])

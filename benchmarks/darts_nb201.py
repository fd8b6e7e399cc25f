#!/usr/bin/env python
"""First-order DARTS on the NAS-Bench-201 cell: does the derived cell drift to skip connections?

Dong & Yang (ICLR 2020, Table 5) report that DARTS (first and second order) searching their cell space on
CIFAR-10 ends at the all-skip cell (``|skip_connect~0|+|skip_connect~0|skip_connect~1|+...``), 54.30% test
accuracy against the space's best 94.37%. This script runs the search of ``recipes/darts_nb201_digits.yaml``
(``DARTS(space="nb201", order=1)``, C=8, N=2, 20 epochs, alphas Adam lr 3e-3, weight decay 5e-4, digits
``BilevelDataModule(DigitsDataModule(batch_size=64))``) for a few seeds, one torch thread, and prints:

* per epoch, the fraction of ``skip_connect`` edges in each seed's derived cell (each edge's argmax op,
  ``none`` included: :func:`~lit_automl.spaces.nb201_supernet.derive_nb201`) and their mean;
* each seed's final cell and its final supernet validation accuracy on digits;
* with ``--tabular PATH`` (a NATS-Bench topology file or folder, or a NAS-Bench-201 ``.pth``, as
  :class:`~lit_automl.nas.TabularEvaluator` reads), each final cell's validation and test accuracy in the
  benchmark on ``--dataset`` at ``--budget`` epochs, next to the best and the mean over every cell the file
  holds (15,625 lookups on the real files: minutes).

Usage::

    python benchmarks/darts_nb201.py                     # 3 seeds, 20 epochs
    python benchmarks/darts_nb201.py --seeds 5 --epochs 30
    python benchmarks/darts_nb201.py --tabular data/NATS-tss-v1_0-3ffb9-simple --dataset cifar10-valid
    python benchmarks/darts_nb201.py --quick             # 1 seed, 2 epochs: checks the script
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Dict, List

from _harness import describe_machine, fmt_duration, format_table


def search(seed: int, args: argparse.Namespace) -> Dict[str, Any]:
    """One first-order DARTS search on digits: the skip fraction after every epoch and the final cell."""
    import pytorch_lightning as pl

    from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
    from lit_automl.nas.darts import DARTS
    from lit_automl.spaces.nb201_supernet import skip_fraction

    class SkipFraction(pl.Callback):
        """The derived cell's skip fraction at every epoch end (what the module logs as search/skip_fraction)."""

        def __init__(self) -> None:
            self.fractions: List[float] = []

        def on_train_epoch_end(self, trainer: pl.Trainer, module: DARTS) -> None:
            self.fractions.append(skip_fraction(module.genotype()))

    pl.seed_everything(seed, verbose=False)
    module = DARTS(space="nb201", C=args.C, cells_per_stage=args.N, in_channels=1, num_classes=10, order=1,
                   w_weight_decay=5e-4, alpha_lr=args.alpha_lr)
    data = BilevelDataModule(DigitsDataModule(batch_size=64, seed=seed), seed=seed)
    record = SkipFraction()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, callbacks=[record])
    start = time.perf_counter()
    trainer.fit(module, data)
    return {"seed": seed, "fractions": record.fractions, "arch": module.genotype(),
            "val_acc": float(trainer.callback_metrics["val/acc"]), "seconds": time.perf_counter() - start}


def benchmark_figures(path: str, dataset: str, budget: Any) -> Dict[str, Any]:
    """A lookup function and the best / mean validation and test accuracy over every cell the file holds."""
    from lit_automl.nas import TabularEvaluator
    from lit_automl.spaces.nb201 import nb201_archs

    evaluator = TabularEvaluator(path, dataset=dataset)
    val, test = [], []
    for arch in nb201_archs():
        try:
            found = evaluator.evaluate(arch, budget)
        except (KeyError, ValueError):  # a file holding only some of the cells (or some budgets)
            continue
        val.append(found["val_acc"])
        test.append(found["test_acc"])
    if not val:
        raise SystemExit(f"{path} holds no NAS-Bench-201 cell with results on {dataset!r} at budget {budget!r}")
    return {"evaluate": lambda arch: evaluator.evaluate(arch, budget), "cells": len(val), "best_val": max(val),
            "best_test": max(test), "mean_val": statistics.fmean(val), "mean_test": statistics.fmean(test)}


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--C", type=int, default=8)
    parser.add_argument("--N", type=int, default=2)
    parser.add_argument("--alpha-lr", type=float, default=3e-3)
    parser.add_argument("--tabular", default=None, help="NATS-Bench topology file/folder or NAS-Bench-201 .pth")
    parser.add_argument("--dataset", default="cifar10-valid")
    parser.add_argument("--budget", default="200", help="training epochs of the looked-up results (12 or 200)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    budget: Any = int(args.budget) if args.budget.isdigit() else args.budget

    import torch

    torch.set_num_threads(1)
    print(describe_machine())
    print(f"first-order DARTS, space nb201, digits: C={args.C}, N={args.N}, {args.epochs} epochs, "
          f"alpha lr {args.alpha_lr}, seeds 0..{args.seeds - 1}, 1 torch thread\n")
    runs = []
    for seed in range(args.seeds):
        runs.append(search(seed, args))
        print(f"seed {seed} done in {fmt_duration(runs[-1]['seconds'])}: {runs[-1]['arch']}", flush=True)

    header = ["epoch", *[f"seed {r['seed']}" for r in runs], "mean"]
    rows = [[e + 1, *[f"{r['fractions'][e]:.2f}" for r in runs], f"{statistics.fmean(r['fractions'][e] for r in runs):.2f}"]
            for e in range(args.epochs)]
    print("fraction of skip_connect edges in the derived cell, per epoch")
    print(format_table(header, rows))

    figures = benchmark_figures(args.tabular, args.dataset, budget) if args.tabular else None
    header = ["seed", "final cell", "skip", "digits val acc", "time"]
    if figures:
        header += [f"{args.dataset} val", "test"]
    rows = []
    for r in runs:
        row = [r["seed"], str(r["arch"]), f"{r['fractions'][-1]:.2f}", f"{r['val_acc']:.3f}", fmt_duration(r["seconds"])]
        if figures:
            found = figures["evaluate"](r["arch"])
            row += [f"{100 * found['val_acc']:.2f}", f"{100 * found['test_acc']:.2f}"]
        rows.append(row)
    print("\nfinal cells")
    print(format_table(header, rows))
    if figures:
        print(f"\n{args.dataset} at budget {args.budget}, over the {figures['cells']} cells of {args.tabular}: "
              f"best val {100 * figures['best_val']:.2f} / test {100 * figures['best_test']:.2f}, "
              f"mean val {100 * figures['mean_val']:.2f} / test {100 * figures['mean_test']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

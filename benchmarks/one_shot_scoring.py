#!/usr/bin/env python
"""How well one-shot scores rank DARTS cells: rank correlation with briefly trained stand-alone accuracy.

Bender et al. (ICML 2018, Sec. 4, Fig. 5) plot one-shot accuracy against stand-alone accuracy of sampled
architectures; this script measures the same relation at toy scale, on scikit-learn's 8x8 digits:

1. train a OneShot supernet as ``recipes/one_shot_digits.yaml`` does (C=8, 5 cells, 4 nodes, DARTS ops,
   path dropout r=0.1, SGD lr 0.1, batch 64) for ``--epochs`` epochs (the recipe: 15; 6 by default here so
   the script fits 10 minutes on 2 free cores) on the training split minus the 300 held-out images
   (``HoldoutDataModule(val_size=300)``);
2. sample ``--archs`` distinct cells uniformly (``OneShot.sample_architectures``, the ranking's sampler);
3. score each one-shot (``OneShotEvaluator``: the cell's paths, batch norm on each batch's statistics, the
   300 held-out images) and train each from scratch (``TrainingEvaluator`` on ``DartsCellSpace`` with the
   supernet's C=8 and 5 cells, no auxiliary head, SGD lr 0.05 cosine, ``--child-epochs`` epochs, the same
   held-out images for the accuracy);
4. print Spearman's rho and Kendall's tau (scipy) between the two accuracies, and the seconds per
   evaluation of each (wall seconds, and the CPU seconds of the whole run: on a shared machine the wall
   time depends on the other load).

The stand-alone training is short (this library's choice, to fit 2 cores), so "trained accuracy" is itself
a noisy, early-training proxy; the paper trains every stand-alone model fully.

Measured with the defaults on a shared 2-core AMD EPYC (torch 2.13 CPU, 2 threads, load average 3 to 8 from
other jobs): supernet 6 epochs in 582 s, 20 cells; one-shot accuracy median 0.293, trained (1 epoch) median
0.128; Spearman rho 0.605 (p 0.005), Kendall tau 0.474 (p 0.005); 1.4 s per one-shot score (including the
child's FLOP count) vs 12 s per trained child (medians); whole run 936 s wall, 536 s CPU.

Usage::

    python benchmarks/one_shot_scoring.py                  # 6 supernet epochs, 20 cells, 1 child epoch
    python benchmarks/one_shot_scoring.py --epochs 15 --archs 50 --child-epochs 3   # closer to the recipe
    python benchmarks/one_shot_scoring.py --quick          # 1 epoch, 4 cells, 1 child epoch: checks the script
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Dict, List

from _harness import describe_machine, fmt_median_iqr, format_table


def _data() -> Any:
    from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule

    return HoldoutDataModule(DigitsDataModule(batch_size=64), val_size=300)


def _train_supernet(epochs: int, seed: int) -> Any:
    import pytorch_lightning as pl

    from lit_automl.nas import OneShot

    pl.seed_everything(seed, verbose=False)
    module = OneShot(C=8, layers=5, in_channels=1, num_classes=10, drop_rate=0.1, w_lr=0.1, rank_after_fit=False,
                     seed=seed)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, datamodule=_data())
    return module


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Train the supernet, score and train the sampled cells; the accuracies and seconds of each."""
    from lit_automl.nas import OneShotEvaluator, TrainingEvaluator
    from lit_automl.spaces import DartsCellSpace

    start = time.perf_counter()
    cpu = time.process_time()
    module = _train_supernet(args.epochs, args.seed)
    supernet_seconds = time.perf_counter() - start
    cells = module.sample_architectures(args.archs)
    one_shot = OneShotEvaluator(module, _data)
    space = DartsCellSpace(module.primitives, steps=4, multiplier=4, C=8, layers=5, auxiliary=False)
    trained = TrainingEvaluator(space, _data, lr=0.05, seed=args.seed)
    rows = []
    for i, cell in enumerate(cells):
        scored = one_shot.evaluate(cell, 1)
        fitted = trained.evaluate(cell, args.child_epochs)
        rows.append({"one_shot": scored["val_acc"], "one_shot_seconds": scored["train_seconds"],
                     "trained": fitted["val_acc"], "train_seconds": fitted["train_seconds"],
                     "params": fitted["params"]})
        print(f"cell {i + 1}/{len(cells)}: one-shot {scored['val_acc']:.3f}, trained {fitted['val_acc']:.3f} "
              f"({fitted['train_seconds']:.1f} s)", flush=True)
    return {"supernet_seconds": supernet_seconds, "rows": rows, "wall_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def report(result: Dict[str, Any], args: argparse.Namespace) -> None:
    from scipy.stats import kendalltau, spearmanr

    rows: List[Dict[str, float]] = result["rows"]
    one_shot = [r["one_shot"] for r in rows]
    trained = [r["trained"] for r in rows]
    rho, rho_p = spearmanr(one_shot, trained)
    tau, tau_p = kendalltau(one_shot, trained)
    print(f"\n{describe_machine()}")
    print(f"supernet: {args.epochs} epochs in {result['supernet_seconds']:.0f} s; {len(rows)} cells; "
          f"stand-alone training {args.child_epochs} epoch(s) each; the whole run {result['wall_seconds']:.0f} s wall, "
          f"{result['cpu_seconds']:.0f} s CPU\n")
    table = [
        ["one-shot accuracy (median [IQR])", fmt_median_iqr(one_shot)],
        ["trained accuracy (median [IQR])", fmt_median_iqr(trained)],
        ["Spearman rho (p)", f"{rho:.3f} ({rho_p:.2g})"],
        ["Kendall tau (p)", f"{tau:.3f} ({tau_p:.2g})"],
        ["seconds per one-shot score (median)", f"{statistics.median(r['one_shot_seconds'] for r in rows):.3f}"],
        ["seconds per trained child (median)", f"{statistics.median(r['train_seconds'] for r in rows):.2f}"],
    ]
    print(format_table(["", "value"], table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="supernet epochs (the recipe: 15)")
    parser.add_argument("--archs", type=int, default=20, help="cells sampled, scored and trained")
    parser.add_argument("--child-epochs", type=int, default=1, help="stand-alone training epochs per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 4 cells, 1 child epoch")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.archs, args.child_epochs = 1, 4, 1
    import torch

    torch.set_num_threads(args.threads)
    report(run(args), args)


if __name__ == "__main__":
    main()

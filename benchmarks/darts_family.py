#!/usr/bin/env python
"""The DARTS family side by side: memory of the supernet, and the same digits search per method.

Parts:

* ``memory`` — one search step of the paper-size supernet (C=16, 8 cells, 32x32 inputs, first
  order) for DARTS at batch 64 (its paper setting) and PC-DARTS at batch 64 and 256 (its paper
  setting, K=4): seconds per step and peak memory (``_harness.PeakMemory``: CPU, growth of the
  process's peak RSS; CUDA, ``torch.cuda.max_memory_allocated``). Each configuration runs in a
  fresh subprocess (``_harness.run_worker``) so its peak is its own. This is PC-DARTS's claim (Sec. 3.2): 1/K of the channels through the ops lets the
  batch grow K times in the same memory.
* ``search`` — DARTS, SNAS, PC-DARTS and P-DARTS run their own digits recipe
  (``recipes/<method>_digits.yaml``, the same data, supernet width and epoch budget) for each
  seed; the genotype each finds is retrained with the same short budget (``Retrain``, C=16,
  6 cells) and tested on the digits test split. Reported: seconds per search epoch, peak memory
  of the search, test accuracy after retraining, mean ± s.d. over seeds. Every (method, seed)
  search runs in a fresh subprocess.

Usage::

    python benchmarks/darts_family.py                            # both parts, seeds 0 1 2
    python benchmarks/darts_family.py --parts memory --device cuda
    python benchmarks/darts_family.py --parts search --seeds 0 --quick   # checks the script quickly
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _harness import (
    PeakMemory,
    describe_machine,
    fmt_bytes,
    fmt_mean_sd,
    fmt_median_iqr,
    format_table,
    median_iqr,
    run_worker,
    serve_worker,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
METHODS = ("darts", "snas", "pc_darts", "pdarts")
MEMORY_CONFIGS = (("darts", 64), ("pc_darts", 64), ("pc_darts", 256))


# ---------------------------------------------------------------- memory part (one worker per config)


def memory_worker(method: str, batch_size: int, device: str, steps: int, image_size: int) -> Dict[str, Any]:
    """Time ``steps`` search steps (after one warm-up step) and record the peak memory."""
    import torch

    from lit_automl.nas.darts import DARTS
    from lit_automl.nas.pc_darts import PCDARTS

    torch.manual_seed(0)
    # Warm-up off: every measured step has its architecture phase.
    module = DARTS(order=1, epochs=50) if method == "darts" else PCDARTS(epochs=50, arch_warmup_epochs=0)
    module.to(device)
    optimizers = module.configure_optimizers()[0]

    def batch() -> tuple:
        return (torch.randn(batch_size, 3, image_size, image_size, device=device),
                torch.randint(0, 10, (batch_size,), device=device))

    def step() -> None:
        module.search_step({"train": batch(), "val": batch()}, optimizers)  # what training_step runs

    memory = PeakMemory(device)
    step()
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"method": method, "batch_size": batch_size, "times": times, "s_per_step": median_iqr(times)[0],
            "peak_bytes": memory.read(), "memory_kind": memory.kind,
            "weights": sum(p.numel() for p in module.weight_parameters())}


def part_memory(device: str, steps: int, image_size: int) -> None:
    print(f"\n== supernet memory: C=16, 8 cells, {image_size}x{image_size}, first order, {device}, "
          f"median of {steps} steps ==")
    rows = []
    for method, batch_size in MEMORY_CONFIGS:
        spec = {"part": "memory", "method": method, "batch_size": batch_size, "device": device, "steps": steps,
                "image_size": image_size}
        rows.append(run_worker(__file__, spec, cwd=str(ROOT)))
        r = rows[-1]
        print(f"  {method:9s} batch {batch_size:4d}: {r['s_per_step']:.2f} s/step, peak {fmt_bytes(r['peak_bytes'])}",
              flush=True)
    table = [[r["method"], r["batch_size"], f"{r['weights']:,}", fmt_median_iqr(r["times"]),
              f"{1000 * r['s_per_step'] / r['batch_size']:.1f}", fmt_bytes(r["peak_bytes"]),
              fmt_bytes(None if r["peak_bytes"] is None else r["peak_bytes"] / r["batch_size"])] for r in rows]
    print()
    print(format_table(["method", "batch", "weights", "s / step median [IQR]", "s / 1k images",
                        rows[0]["memory_kind"], "memory / image"], table))


# ---------------------------------------------------------------- search part (one worker per method and seed)


class _EpochTimer:
    """A Lightning callback collecting wall seconds per training epoch."""

    def __new__(cls):
        import pytorch_lightning as pl

        class EpochTimer(pl.Callback):
            def __init__(self) -> None:
                self.seconds: List[float] = []
                self._t0 = 0.0

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self._t0 = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self.seconds.append(time.perf_counter() - self._t0)

        return EpochTimer()


def _search_args(method: str, seed: int, epochs: int, run_dir: str, quick: bool) -> List[str]:
    args = ["-c", str(RECIPES / f"{method}_digits.yaml"), f"--seed_everything={seed}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.logger.init_args.version=search"]
    args.append(f"--trainer.max_epochs={epochs}")  # per stage for P-DARTS
    if quick:
        args += ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    return args


def search_worker(method: str, seed: int, epochs: int, retrain_epochs: int, quick: bool) -> Dict[str, Any]:
    """Search with the method's digits recipe, then retrain and test the genotype it found."""
    import pytorch_lightning as pl
    import torch

    from lit_automl.run_config import AutoMLCLI
    from lit_automl.datamodules import DigitsDataModule
    from lit_automl.nas.retrain import Retrain

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    with tempfile.TemporaryDirectory() as run_dir:
        memory = PeakMemory("cpu")
        timer = _EpochTimer()
        cli = AutoMLCLI(args=_search_args(method, seed, epochs, run_dir, quick), run=False)
        t0 = time.perf_counter()
        if method == "pdarts":
            from lit_automl.nas.pdarts import fit_stages

            def make_trainer(stage: int) -> pl.Trainer:
                trainer = cli.stage_trainer(stage)
                trainer.callbacks.append(timer)
                return trainer

            module = fit_stages(cli.model, make_trainer, datamodule=cli.datamodule)
        else:
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            module = cli.model
        search_s = time.perf_counter() - t0
        search_peak = memory.read()
        genotype = module.genotype()

    pl.seed_everything(seed)
    retrain = Retrain(genotype, C=16, layers=6, in_channels=1, num_classes=10, auxiliary=False, drop_path_prob=0.0)
    data = DigitsDataModule(batch_size=64, seed=seed)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=retrain_epochs, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_train_batches=2 if quick else None)
    trainer.fit(retrain, datamodule=data)
    test_acc = float(trainer.test(retrain, datamodule=data, verbose=False)[0]["test/acc"])
    return {"method": method, "seed": seed, "s_per_epoch": statistics.mean(timer.seconds), "epochs": len(timer.seconds),
            "search_s": search_s, "peak_bytes": search_peak, "test_acc": test_acc, "genotype": str(genotype)}


def _load_cache(path: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    """Finished (method, seed) runs from earlier invocations, keyed by their spec."""
    if path is None or not path.exists():
        return {}
    return {row["spec"]: row["result"] for row in map(json.loads, path.read_text().splitlines()) if row}


def part_search(methods: Sequence[str], seeds: Sequence[int], epochs: int, retrain_epochs: int, quick: bool,
                cache_path: Optional[Path] = None) -> None:
    print(f"\n== the same digits search: {epochs} epochs per search (per stage for P-DARTS), retrain "
          f"{retrain_epochs} epochs (C=16, 6 cells), seeds {list(seeds)} ==")
    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in methods}
    cache = _load_cache(cache_path)
    for method in methods:
        for seed in seeds:
            spec = {"part": "search", "method": method, "seed": seed, "epochs": epochs,
                    "retrain_epochs": retrain_epochs, "quick": quick}
            key = json.dumps(spec, sort_keys=True)
            if key not in cache:
                cache[key] = run_worker(__file__, spec, cwd=str(ROOT))
                if cache_path is not None:
                    with open(cache_path, "a") as f:
                        f.write(json.dumps({"spec": key, "result": cache[key]}) + "\n")
            r = cache[key]
            results[method].append(r)
            print(f"  {method:9s} seed {seed}: {r['s_per_epoch']:.1f} s/epoch over {r['epochs']} epochs, peak "
                  f"{fmt_bytes(r['peak_bytes'])}, retrained test acc {r['test_acc']:.4f}\n    {r['genotype']}", flush=True)
    table = []
    for method in methods:
        rs = results[method]
        peaks = [r["peak_bytes"] for r in rs if r["peak_bytes"] is not None]
        table.append([method, fmt_mean_sd([r["s_per_epoch"] for r in rs]), fmt_bytes(statistics.mean(peaks) if peaks else None),
                      fmt_mean_sd([r["test_acc"] for r in rs])])
    print()
    print(format_table(["method", "s / search epoch", "peak RSS growth", "retrained test acc"], table))


# ---------------------------------------------------------------- plumbing


def _worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement in a fresh process (``_harness.serve_worker``)."""
    spec = dict(spec)
    part = spec.pop("part")
    return memory_worker(**spec) if part == "memory" else search_worker(**spec)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if serve_worker(argv, _worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("memory", "search"), default=["memory", "search"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6, help="search epochs (per stage for P-DARTS)")
    parser.add_argument("--retrain-epochs", type=int, default=8)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=2, help="measured steps in the memory part")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script, not the figures")
    parser.add_argument("--cache", type=Path, default=None,
                        help="JSON-lines file of finished search runs: reused, and new runs appended")
    args = parser.parse_args(argv)
    print(f"{describe_machine()}; device {args.device}")
    if "memory" in args.parts:
        part_memory(args.device, 1 if args.quick else args.steps, 8 if args.quick else args.image_size)
    if "search" in args.parts:
        part_search(args.methods, args.seeds, 1 if args.quick else args.epochs, 1 if args.quick else args.retrain_epochs,
                    args.quick, args.cache)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""ENAS (Pham et al. 2018) measured: the same digits search next to DARTS and random sampling, the cost of
a weight-shared step, and RecurrentLM's training throughput.

Parts:

* ``search`` -- for each seed, the same digits budget (search epochs, batch size, paired halves of
  ``BilevelDataModule(DigitsDataModule)``) for (a) ENAS micro (``ENAS(ENASMicroSpace(...))``, the best of
  ``derive_samples`` children derived at each epoch end), (b) DARTS first order over the ENAS op set
  (``DARTS(primitives="enas", order=1)``, ``steps = num_nodes``, as many cells as the ENAS child), (c) a
  cell drawn uniformly from the micro space (``ENASMicroSpace.decode`` of one uniform token per decision;
  its "search" is the draw). Every found cell is then retrained identically (``Retrain``: same network
  size, epochs, learning rate and seed for all three) and tested on the digits test split. Reported:
  test accuracy mean ± s.d. over seeds, median search seconds (the training loop, from the callbacks'
  ``on_train_start`` to ``on_train_end``: every step and every end-of-epoch derivation, not the files
  written after), and how much the ENAS controller's sample entropy moved. Each (method, seed) runs in
  a fresh process (``_harness.run_worker``).
* ``step`` -- the point of weight sharing: one ENAS step (one omega step on a sampled child of the
  supernet + one controller sample scored on a validation batch + the REINFORCE update every
  ``num_aggregate`` samples, amortised; the pieces ``ENAS.training_step`` runs, called directly without
  a Trainer) against one SGD step of a stand-alone child of the same size (``space.build(genotype, ...)``,
  the same optimiser settings, gradient clipping), on the same batch size; median over steps after
  warm-up. Sizes: ``digits`` (part 1's space, 1x8x8 inputs) and ``cifar`` (the authors' search child:
  C=20, 6 + 2 cells, 3x32x32 random inputs). The digits size also times ``ENAS.training_step`` inside a
  Trainer (Lightning's logging included) with a callback.
* ``rnn`` -- ``benchmarks/recurrent_lm.py`` run as it is, in a subprocess (tokens per second of one
  training step of RecurrentLM, tiny corpus size and the paper's width 850); its table is printed here.

Usage::

    python benchmarks/enas.py                      # all parts, seeds 0 1 2
    python benchmarks/enas.py --parts step rnn
    python benchmarks/enas.py --quick              # checks the script in about a minute, not the figures
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _harness import (
    describe_machine,
    fmt_mean_sd,
    fmt_median_iqr,
    fmt_seconds,
    format_table,
    median_iqr,
    run_worker,
    serve_worker,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("enas", "darts", "random")
LABELS = {"enas": "ENAS micro (shared weights, REINFORCE)", "darts": "DARTS 1st order, ENAS op set",
          "random": "random cell (uniform tokens)"}

# The digits search space of part 1 (and of part 2's digits size).
SPACE = {"num_nodes": 5, "num_layers": 2, "C": 8}
# The identical retraining of every found cell (Retrain, DARTS evaluation protocol without auxiliary head).
RETRAIN = {"C": 12, "layers": 5}
# Settings that differ from the constructors' paper defaults, with the reason (printed with the tables).
ENAS_SETTINGS = {"controller_lr": 3.5e-3}  # the authors' micro search script (the paper: 3.5e-4)
DARTS_SETTINGS = {"alpha_lr": 0.05}  # recipes/darts_digits.yaml: the alphas move visibly in ~150 steps
STEP_SIZES = {
    "digits": {**SPACE, "in_channels": 1, "image_size": 8},
    "cifar": {"num_nodes": 5, "num_layers": 6, "C": 20, "in_channels": 3, "image_size": 32},
}


def _quiet() -> None:
    """Silence Lightning's banners and the warnings of short runs in a worker (its output is discarded)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# ---------------------------------------------------------------- part 1: search + identical retraining


def _loop_timer():
    """A Lightning callback: wall seconds from ``on_train_start`` to ``on_train_end`` and the batches run."""
    import pytorch_lightning as pl

    class LoopTimer(pl.Callback):
        def __init__(self) -> None:
            self.seconds = math.nan
            self.steps = 0
            self._t0 = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.steps += 1  # not trainer.global_step, which counts every optimiser's steps

        def on_train_end(self, trainer, pl_module) -> None:  # before the module's own on_train_end (file writing)
            self.seconds = time.perf_counter() - self._t0

    return LoopTimer()


def _trainer(max_epochs: int, root: str, callbacks: Sequence[Any] = (), limit_train_batches: Optional[int] = None):
    import pytorch_lightning as pl

    return pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      num_sanity_val_steps=0, default_root_dir=root, callbacks=list(callbacks),
                      limit_train_batches=limit_train_batches)


def _policy_entropy(module, n: int = 64) -> float:
    """Mean sample entropy of the ENAS controller over ``n`` draws (a fixed key, so before/after compare)."""
    _, entropy = module.sample_children(n, 10**6, 7)
    return float(entropy.mean())


def uniform_tokens(space, seed: int) -> List[int]:
    """One token per decision of ``space``, each uniform over its choices."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [int(torch.randint(d.num_choices, (), generator=g)) for d in space.decisions()]


def search_worker(method: str, seed: int, epochs: int, batch_size: int, retrain_epochs: int, threads: int,
                  quick: bool) -> Dict[str, Any]:
    """Search with ``method`` on the digits budget, then retrain the found cell and test it."""
    _quiet()
    _threads(threads)
    import pytorch_lightning as pl

    from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
    from lit_automl.nas import DARTS, ENAS, Retrain
    from lit_automl.spaces import ENASMicroSpace
    from lit_automl.spaces.networks import count_parameters

    limit = 2 if quick else None
    space = ENASMicroSpace(**SPACE)
    out: Dict[str, Any] = {"method": method, "seed": seed}
    pl.seed_everything(seed, verbose=False)
    with tempfile.TemporaryDirectory(prefix="bench_enas_") as root:
        data = BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=seed), seed=seed)
        if method == "random":
            t0 = time.perf_counter()
            genotype = space.decode(uniform_tokens(space, seed))
            out.update(search_s=time.perf_counter() - t0, steps=0)
        else:
            if method == "enas":
                module = ENAS(space, in_channels=1, num_classes=10, seed=seed, **ENAS_SETTINGS)
                out["entropy_before"] = _policy_entropy(module)
                out["entropy_uniform"] = sum(math.log(d.num_choices) for d in space.decisions())
            else:
                module = DARTS(C=SPACE["C"], layers=SPACE["num_layers"] + 2, steps=SPACE["num_nodes"],
                               multiplier=SPACE["num_nodes"], in_channels=1, num_classes=10, order=1,
                               primitives="enas", **DARTS_SETTINGS)
            timer = _loop_timer()
            trainer = _trainer(epochs, root, [timer], limit)
            trainer.fit(module, datamodule=data)
            genotype = module.genotype()
            train_acc = trainer.callback_metrics.get("train/acc_epoch")  # the supernet's, over the last epoch
            out.update(search_s=timer.seconds, steps=timer.steps,
                       supernet_train_acc=None if train_acc is None else float(train_acc))
            if method == "enas":
                out.update(entropy_after=_policy_entropy(module), derived_score=module.best_score)

    pl.seed_everything(seed, verbose=False)
    retrain = Retrain(genotype, C=RETRAIN["C"], layers=RETRAIN["layers"], in_channels=1, num_classes=10,
                      auxiliary=False, drop_path_prob=0.0, epochs=retrain_epochs)
    data = DigitsDataModule(batch_size=batch_size, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench_enas_") as root:
        trainer = _trainer(retrain_epochs, root, limit_train_batches=limit)
        t0 = time.perf_counter()
        trainer.fit(retrain, datamodule=data)
        retrain_s = time.perf_counter() - t0
        test_acc = float(trainer.test(retrain, datamodule=data, verbose=False)[0]["test/acc"])
    out.update(test_acc=test_acc, retrain_s=retrain_s, retrain_params=count_parameters(retrain),
               genotype=str(genotype))
    return out


def part_search(seeds: Sequence[int], epochs: int, batch_size: int, retrain_epochs: int, threads: int,
                quick: bool) -> None:
    print(f"\n== 1. the same digits search: {epochs} search epochs, batch {batch_size} per half "
          f"(BilevelDataModule(DigitsDataModule)), seeds {list(seeds)}; each cell retrained identically ==")
    print(f"   ENASMicroSpace({', '.join(f'{k}={v}' for k, v in SPACE.items())}), i.e. {SPACE['num_layers'] + 2} cells; "
          f"ENAS {ENAS_SETTINGS} (the authors' micro script; paper 3.5e-4), other settings the paper's;")
    print(f"   DARTS(order=1, primitives='enas', C={SPACE['C']}, layers={SPACE['num_layers'] + 2}, "
          f"steps=multiplier={SPACE['num_nodes']}) with {DARTS_SETTINGS} (recipes/darts_digits.yaml);")
    print(f"   retraining: Retrain(C={RETRAIN['C']}, layers={RETRAIN['layers']}, no auxiliary head, drop path 0), "
          f"{retrain_epochs} epochs, batch {batch_size}, tested on the digits test split (360 images)")
    print("   search s: the training loop (every step and end-of-epoch derivation), not the files written after; "
          "ENAS's derived child's score: its accuracy on the epoch's last validation batch (the module's rule)")
    results: Dict[str, List[Dict[str, Any]]] = {m: [] for m in METHODS}
    for seed in seeds:
        for method in METHODS:
            spec = {"part": "search", "method": method, "seed": seed, "epochs": epochs, "batch_size": batch_size,
                    "retrain_epochs": retrain_epochs, "threads": threads, "quick": quick}
            r = run_worker(__file__, spec, cwd=str(ROOT))
            results[method].append(r)
            extra = ""
            if r.get("supernet_train_acc") is not None:
                extra += f", supernet train acc (last epoch) {r['supernet_train_acc']:.3f}"
            if method == "enas":
                extra += (f",\n    controller sample entropy (sum over {8 * SPACE['num_nodes']} decisions; uniform "
                          f"{r['entropy_uniform']:.2f}) {r['entropy_before']:.2f} -> {r['entropy_after']:.2f}, "
                          f"derived child's score {r['derived_score']:.3f}")
            print(f"  seed {seed} {method:6s}: search {r['search_s']:.1f} s ({r['steps']} batches), retrained test acc "
                  f"{r['test_acc']:.4f} ({r['retrain_params']:,} params, {r['retrain_s']:.0f} s){extra}\n"
                  f"    {r['genotype']}", flush=True)
    rows = []
    for method in METHODS:
        rs = results[method]
        rows.append([LABELS[method], str(rs[0]["steps"]), fmt_seconds(median_iqr([r["search_s"] for r in rs])[0]),
                     fmt_mean_sd([100 * r["test_acc"] for r in rs], digits=4),
                     " ".join(f"{100 * r['test_acc']:.2f}" for r in rs),
                     f"{statistics.fmean(r['retrain_params'] for r in rs):,.0f}"])
    print()
    print(format_table(["method", "search batches", "search s (median)", "test acc % mean ± sd", "per seed", "retrained params"], rows))


# ---------------------------------------------------------------- part 2: one weight-shared step vs one child step


def step_worker(size: str, batch_size: int, warmup: int, steps: int, child_archs: int, child_steps: int,
                trainer_steps: int, threads: int) -> Dict[str, Any]:
    """Median seconds of one ENAS step (its pieces, called directly) and of one stand-alone child step."""
    _quiet()
    _threads(threads)
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F

    from lit_automl.nas import ENAS
    from lit_automl.nas.child import split_logits
    from lit_automl.nas.enas_policy import OMEGA
    from lit_automl.spaces import ENASMicroSpace
    from lit_automl.spaces.networks import count_parameters

    cfg = STEP_SIZES[size]
    space = ENASMicroSpace(num_nodes=cfg["num_nodes"], num_layers=cfg["num_layers"], C=cfg["C"])
    pl.seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(0)
    shape = (batch_size, cfg["in_channels"], cfg["image_size"], cfg["image_size"])

    def batch():
        return torch.randn(shape, generator=g), torch.randint(0, 10, (batch_size,), generator=g)

    train, val = batch(), batch()
    module = ENAS(space, in_channels=cfg["in_channels"], num_classes=10, seed=0, **ENAS_SETTINGS).train()
    (w_opt, c_opt), _ = module.configure_optimizers()
    clip = module.hparams.grad_clip
    phases: Dict[str, List[float]] = {"omega": [], "controller": [], "step": []}

    def enas_step(record: bool) -> None:
        # What ENAS.training_step runs, without Lightning: phase 1 (omega) then phase 2 (controller).
        t0 = time.perf_counter()
        tokens = module.sample_children(1, module.search_steps, OMEGA)[0][0]
        x, y = train
        loss = F.cross_entropy(module.child_logits(x, tokens), y)
        w_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), clip)
        w_opt.step()
        t1 = time.perf_counter()
        module.controller_sample(val, c_opt)  # scores one child; the REINFORCE update every num_aggregate samples
        module.search_steps += 1
        t2 = time.perf_counter()
        if record:
            phases["omega"].append(t1 - t0)
            phases["controller"].append(t2 - t1)
            phases["step"].append(t2 - t0)

    for _ in range(warmup):
        enas_step(False)
    for _ in range(steps):
        enas_step(True)

    # Stand-alone children of the same size: controller draws, each trained alone with omega's SGD settings.
    hp = module.hparams
    child_times: List[float] = []
    child_params: List[int] = []
    for k in range(child_archs):
        tokens = module.sample_children(1, 10**6 + k, OMEGA)[0][0]
        net = space.build(space.decode(tokens), cfg["in_channels"], 10).train()
        child_params.append(count_parameters(net))
        opt = torch.optim.SGD(net.parameters(), lr=hp.w_lr, momentum=hp.w_momentum, nesterov=True,
                              weight_decay=module.w_weight_decay)

        def child_step() -> None:
            x, y = train
            loss = F.cross_entropy(split_logits(net(x))[0], y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()

        for i in range(warmup + child_steps):
            t0 = time.perf_counter()
            child_step()
            if i >= warmup:
                child_times.append(time.perf_counter() - t0)

    out = {"size": size, "batch_size": batch_size, "phases": phases, "child": child_times,
           "supernet_params": count_parameters(module.model), "child_params": statistics.median(child_params),
           "num_aggregate": module.settings["num_aggregate"], "trainer": None}
    if trainer_steps:
        out["trainer"] = _trainer_step_times(space, cfg, batch_size, warmup, trainer_steps)
    return out


def _trainer_step_times(space, cfg, batch_size: int, warmup: int, steps: int) -> List[float]:
    """Seconds of ``ENAS.training_step`` inside a Trainer (batch start to batch end) on the digits halves."""
    import pytorch_lightning as pl

    from lit_automl.datamodules import BilevelDataModule, DigitsDataModule
    from lit_automl.nas import ENAS

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: List[float] = []
            self._t0 = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.times.append(time.perf_counter() - self._t0)
            if len(self.times) >= warmup + steps:  # not max_steps, which counts the controller's steps too
                trainer.should_stop = True

    timer = StepTimer()
    module = ENAS(space, in_channels=cfg["in_channels"], num_classes=10, seed=0, **ENAS_SETTINGS)
    data = BilevelDataModule(DigitsDataModule(batch_size=batch_size, seed=0), seed=0)
    with tempfile.TemporaryDirectory(prefix="bench_enas_") as root:
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=root, callbacks=[timer])
        trainer.fit(module, datamodule=data)
    return timer.times[warmup:]


def part_step(sizes: Sequence[str], batch_size: int, plan: Dict[str, Sequence[int]], trainer_steps: int,
              threads: int) -> None:
    print(f"\n== 2. one ENAS step vs one stand-alone child step, batch {batch_size}, torch threads {threads} ==")
    print("   ENAS step = sample a child, omega forward/backward/clip/SGD on it, then one controller sample scored "
          "on a validation batch (no grad), the REINFORCE update every num_aggregate samples included where it "
          "falls; child step = forward/backward/clip/SGD of space.build(genotype) with omega's SGD settings on "
          "controller-drawn genotypes; random N(0,1) inputs of the size's shape; warm-up steps (per ENAS run and "
          "per child) untimed")
    rows = []
    for size in sizes:
        warmup, steps, child_archs, child_steps = plan[size]
        print(f"  {size}: {warmup} warm-up, {steps} ENAS steps, {child_archs} children x {child_steps} steps", flush=True)
        spec = {"part": "step", "size": size, "batch_size": batch_size, "warmup": warmup, "steps": steps,
                "child_archs": child_archs, "child_steps": child_steps,
                "trainer_steps": trainer_steps if size == "digits" else 0, "threads": threads}
        r = run_worker(__file__, spec, cwd=str(ROOT))
        cfg = STEP_SIZES[size]
        setting = (f"C={cfg['C']} cells={cfg['num_layers'] + 2} B={cfg['num_nodes']} "
                   f"{cfg['in_channels']}x{cfg['image_size']}x{cfg['image_size']}")
        child_med = median_iqr(r["child"])[0]
        ph = r["phases"]

        def row(what: str, times: Sequence[float], params: Any, ratio: bool = True) -> List[str]:
            med = median_iqr(times)[0]
            return [size, setting, what, f"{params:,.0f}", fmt_median_iqr(times),
                    f"{statistics.fmean(times):.3g}", f"{med / child_med:.2f}" if ratio else "1",
                    f"{statistics.fmean(times) / statistics.fmean(r['child']):.2f}" if ratio else "1", str(len(times))]

        rows.append(row("ENAS step (omega + controller)", ph["step"], r["supernet_params"]))
        rows.append(row("  of which omega step", ph["omega"], r["supernet_params"]))
        rows.append(row("  of which controller sample/update", ph["controller"], r["supernet_params"]))
        if r["trainer"]:
            rows.append(row("ENAS.training_step in a Trainer", r["trainer"], r["supernet_params"]))
        rows.append(row("stand-alone child SGD step", r["child"], r["child_params"], ratio=False))
        print(f"  {size}: ENAS step median {1e3 * median_iqr(ph['step'])[0]:.1f} ms, child step median "
              f"{1e3 * child_med:.1f} ms (num_aggregate {r['num_aggregate']})", flush=True)
    print()
    print(format_table(["size", "setting", "what", "parameters", "s median [IQR]", "s mean",
                        "x child (median)", "x child (mean)", "n"], rows, align="lllrrrrrr"))
    print("   parameters: the whole supernet for ENAS rows (a step runs one child's share of it), the median "
          "child for the child row")


# ---------------------------------------------------------------- part 3: recurrent_lm.py as it is


def part_rnn(threads: int, quick: bool) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "recurrent_lm.py"), "--threads", str(threads)]
    if quick:
        cmd += ["--sizes", "tiny", "--steps", "3"]
    print(f"\n== 3. RecurrentLM training throughput: `{' '.join(['python', *cmd[1:]])}` "
          "(benchmarks/recurrent_lm.py, fresh process) ==")
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"recurrent_lm.py exited with code {proc.returncode}:\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    print(proc.stdout.rstrip())


# ---------------------------------------------------------------- plumbing


def _worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement in a fresh process (``_harness.serve_worker``)."""
    spec = dict(spec)
    part = spec.pop("part")
    return search_worker(**spec) if part == "search" else step_worker(**spec)


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} logical cores"


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if serve_worker(argv, _worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("search", "step", "rnn"), default=["search", "step", "rnn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5, help="search epochs, the same for every method")
    parser.add_argument("--batch-size", type=int, default=64, help="search batch per half, retraining and step batch")
    parser.add_argument("--retrain-epochs", type=int, default=5)
    parser.add_argument("--step-sizes", nargs="+", choices=sorted(STEP_SIZES), default=["digits", "cifar"])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every process")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script, not the figures")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"python benchmarks/enas.py {' '.join(argv)}".rstrip())
    print(f"{describe_machine()}; every measurement at torch threads {args.threads}")
    print(f"{_load()} at start: timings are taken on a shared machine, under whatever load it had")
    if "search" in args.parts:
        part_search(args.seeds[:1] if args.quick else args.seeds, 1 if args.quick else args.epochs, args.batch_size,
                    1 if args.quick else args.retrain_epochs, args.threads, args.quick)
    if "step" in args.parts:
        # (warm-up steps, ENAS steps, children, steps per child); the cifar size costs seconds per step on a CPU
        plan = {"digits": (1, 5, 2, 3), "cifar": (1, 2, 1, 1)} if args.quick else \
            {"digits": (3, 60, 15, 4), "cifar": (1, 6, 3, 2)}
        part_step(args.step_sizes, args.batch_size, plan, 5 if args.quick else 40, args.threads)
    if "rnn" in args.parts:
        part_rnn(args.threads, args.quick)
    print(f"\n{_load()} at the end; whole run {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

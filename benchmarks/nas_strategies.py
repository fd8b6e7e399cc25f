#!/usr/bin/env python
"""Search strategies on one budget: best validation accuracy found vs. evaluations (Real et al. 2019, Fig. 3).

Every strategy searches the NAS-Bench-201 cell space (``NB201Space(C=8, N=1)``) with the children of
``recipes/evolution_nb201_digits.yaml``: ``TrainingEvaluator`` on digits (``HoldoutDataModule(
DigitsDataModule(batch_size=64), val_size=300)``), SGD lr 0.05, 3 epochs, reward ``"final"`` (the
held-out accuracy at the end of training). Each search is a LightningModule fitted by
``pl.Trainer(max_epochs=1, limit_train_batches=None)`` whose one epoch has ``children / children_per_step``
steps, so every strategy evaluates the same number of children:

* ``random``: ``RandomSearch``, 4 children per step (nothing is learnt between them);
* ``evolution (aging)`` / ``evolution (no aging)``: ``RegularizedEvolution(aging=True / False)``,
  1 child per step, population and tournament of the recipe (10 and 3; fewer founders below 20 children);
* ``TPE``: ``SamplerSearch`` with ``optuna.samplers.TPESampler(seed, n_startup_trials)``, 1 child per step;
* ``GP``: ``SamplerSearch`` with ``lit_automl.hpo.GPSampler(seed, n_startup_trials)`` (EI, Matérn 5/2), 1 per step;
* ``RL (REINFORCE)``: ``RLSearch``, 4 children per controller update (the LSTM controller, 1 layer of
  32 units, Adam lr 0.005, as ``benchmarks/rl_search.py``).

Each (strategy, seed) runs in a fresh process (``_harness.run_worker``) with one torch thread, and
its ``search.history`` gives the best-so-far curve. Printed: best-so-far held-out accuracy mean ± s.d.
over seeds after 10 / 20 / 40 evaluations (those within ``--children``) and the median search
seconds; saved: the mean curves (``--plot``). A last part times random search with the children
evaluated in the search process (``n_workers=0``) vs. 2 local worker processes (``n_workers=2``,
1 thread each) through the Optuna child queue. Part ``record`` times the child record alone (100 children
scored by a constant) on SQLite opened as Optuna opens it, on SQLite as ``make_storage`` opens it (WAL,
``synchronous=NORMAL``) and in memory.

PNAS needs a space whose cells grow block by block, so part ``pnas`` compares it on PNAS's own cell space
(``PNASCellSpace(num_blocks=3, ops=[sep_conv_3x3, max_pool_3x3], N=1, F=8)``, the children of
``recipes/pnas_digits.yaml``: 2 epochs, lr 0.05) with random search, aging evolution and TPE over full
3-block cells at PNAS's number of evaluations (10 one-block cells, then the top K=4 expansions of levels 2
and 3: 18 children); printed like part ``search``, plus PNAS's logged Spearman correlation per level.

With ``--tabular PATH`` (a NATS-Bench topology file or folder, or a NAS-Bench-201 ``.pth``: the
``NATS-tss-v1_0-3ffb9-simple/`` folder, ``NATS-tss-v1_0-3ffb9.pickle.pbz2`` or ``NAS-Bench-201-v1_1-096897.pth``,
downloaded from the benchmark's release page), the same strategies search the benchmark's space by lookup:
the benchmark's protocol (Dong & Yang, ICLR 2020, Sec. 6: the 12-epoch validation accuracy as the reward,
``--tabular-children`` 500 evaluations, ``--tabular-seeds`` 20 seeds); the cell with the best reward so far is
scored by its 200-epoch test accuracy (the benchmark's "test accuracy of the found cell"), with the
simulated training seconds summed. Children are recorded in ``storage="memory"`` (a lookup costs less than
any database write). Evolution uses the paper's population / tournament scaled to the budget (P=100, S=25
from 200 evaluations on; ``--tabular-children`` below that: ``_founders``), TPE / GP 10 start-up trials.

Usage::

    python benchmarks/nas_strategies.py                          # 40 children, 5 seeds
    python benchmarks/nas_strategies.py --parts tabular --tabular data/NATS-tss-v1_0-3ffb9-simple \
        --dataset cifar10-valid                                  # 500 lookups x 20 seeds per strategy
    python benchmarks/nas_strategies.py --children 24 --seeds 3
    python benchmarks/nas_strategies.py --quick                  # 8 children, 1 seed: checks the script
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from _harness import describe_machine, fmt_mean_sd, format_table, run_worker, serve_worker

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("random", "evolution (aging)", "evolution (no aging)", "TPE", "GP", "RL (REINFORCE)")
PER_STEP = {"random": 4, "RL (REINFORCE)": 4}  # children per training step; 1 for the others
CHECKPOINTS = (10, 20, 40)


def _founders(children: int) -> int:
    """Random founders of evolution and start-up trials of TPE / GP: the recipes' 10, fewer for short runs."""
    return min(10, max(2, children // 2))


def _evaluator(seed: int) -> Any:
    from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
    from lit_automl.nas import TrainingEvaluator
    from lit_automl.spaces import NB201Space

    return TrainingEvaluator(NB201Space(C=8, N=1),
                             lambda: HoldoutDataModule(DigitsDataModule(batch_size=64), val_size=300), lr=0.05,
                             seed=seed)


PNAS_STRATEGIES = ("PNAS", "random", "evolution (aging)", "TPE")
PNAS_CHILDREN = 18  # 10 one-block cells + 4 + 4


def _pnas_evaluator(seed: int) -> Any:
    from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
    from lit_automl.nas import TrainingEvaluator
    from lit_automl.spaces import PNASCellSpace

    space = PNASCellSpace(num_blocks=3, ops=["sep_conv_3x3", "max_pool_3x3"], N=1, F=8)
    return TrainingEvaluator(space, lambda: HoldoutDataModule(DigitsDataModule(batch_size=64), val_size=300),
                             lr=0.05, seed=seed)


def _search(strategy: str, seed: int, children: int, storage: str, tabular: Optional[Dict[str, str]] = None,
            pnas_space: bool = False, **extra: Any) -> Any:
    from lit_automl.nas import PNAS, RandomSearch, RegularizedEvolution, RLSearch, SamplerSearch, TabularEvaluator

    if pnas_space:
        ev = _pnas_evaluator(seed)
        common = dict(budget=2, reward="final", storage=storage, study_name="bench", seed=seed, **extra)
        if strategy == "PNAS":
            return PNAS(ev, beam_size=4, predictor="lstm", predictor_epochs=50, children_per_step=2,
                        steps_per_epoch=children // 2, **common)
        common.update(children_per_step=1, steps_per_epoch=children)
        if strategy == "random":
            return RandomSearch(ev, **common)
        if strategy == "evolution (aging)":
            return RegularizedEvolution(ev, population_size=6, sample_size=3, **common)
        if strategy == "TPE":
            from optuna.samplers import TPESampler

            return SamplerSearch(ev, sampler=TPESampler(seed=seed, n_startup_trials=6), **common)
        raise ValueError(f"unknown strategy on the PNAS space {strategy!r}")

    per_step = PER_STEP.get(strategy, 1)
    if children % per_step:
        raise SystemExit(f"--children must be a multiple of {per_step} ({strategy} evaluates {per_step} per step)")
    common = dict(budget=12 if tabular else 3, reward="final", children_per_step=per_step,
                  steps_per_epoch=children // per_step, storage=storage, study_name="bench", seed=seed, **extra)
    ev = TabularEvaluator(tabular["path"], dataset=tabular["dataset"]) if tabular else _evaluator(seed)
    founders = _founders(children)
    if strategy == "random":
        return RandomSearch(ev, **common)
    if strategy.startswith("evolution"):
        population, sample = (100, 25) if tabular and children >= 200 else (founders, min(3, founders))
        return RegularizedEvolution(ev, population_size=population, sample_size=sample,
                                    aging=strategy == "evolution (aging)", **common)
    if strategy == "TPE":
        from optuna.samplers import TPESampler

        return SamplerSearch(ev, sampler=TPESampler(seed=seed, n_startup_trials=founders), **common)
    if strategy == "GP":
        from lit_automl.hpo import GPSampler

        return SamplerSearch(ev, sampler=GPSampler(seed=seed, n_startup_trials=founders), **common)
    if strategy == "RL (REINFORCE)":
        return RLSearch(ev, algorithm="reinforce", hidden_size=32, num_layers=1, lr=0.005, **common)
    raise ValueError(f"unknown strategy {strategy!r}")


def search_worker(strategy: str, seed: int, children: int, n_workers: int = 0,
                  tabular: Optional[Dict[str, str]] = None, pnas_space: bool = False) -> Dict[str, Any]:
    """One search in this (fresh) process: its rewards in evaluation order and its wall time (tabular: also each
    child's 200-epoch test accuracy and simulated training seconds)."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import pytorch_lightning as pl

    pl.seed_everything(seed, verbose=False)
    with tempfile.TemporaryDirectory(prefix="nas_strategies_") as tmp:
        extra = {"n_workers": n_workers, "threads_per_worker": 1} if n_workers else {}
        storage = "memory" if tabular else f"sqlite:///{Path(tmp) / 'children.db'}"
        search = _search(strategy, seed, children, storage, tabular=tabular, pnas_space=pnas_space, **extra)
        trainer = pl.Trainer(max_epochs=1, limit_train_batches=None, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=tmp)
        start = time.perf_counter()
        trainer.fit(search)
        seconds = time.perf_counter() - start
    history = sorted(search.history, key=lambda h: h["child"])
    out = {"rewards": [float(h["reward"]) for h in history], "seconds": seconds}
    if tabular:
        space = search.space
        out["test_acc"] = [float(search.evaluator.evaluate(space.from_json(h["architecture"]), 200)["test_acc"])
                           for h in history]
        out["train_seconds"] = [float(h["train_seconds"] or 0.0) for h in history]
    if strategy == "PNAS":
        out["spearman"] = [float(search.spearman_per_level[k]) for k in sorted(search.spearman_per_level)]
    return out


def _best_so_far(rewards: Sequence[float]) -> List[float]:
    out, best = [], float("-inf")
    for r in rewards:
        best = max(best, r)
        out.append(best)
    return out


def _env() -> Dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def part_search(strategies: Sequence[str], seeds: Sequence[int], children: int, plot: Optional[str]) -> None:
    founders = _founders(children)
    print(f"\n== best-so-far held-out accuracy vs. evaluations: NB201Space(C=8, N=1), digits, 3-epoch children, "
          f"{children} children per run, seeds {list(seeds)}; {founders} founders / start-up trials ==")
    curves: Dict[str, List[List[float]]] = {}
    seconds: Dict[str, List[float]] = {}
    for seed in seeds:
        for strategy in strategies:
            spec = {"strategy": strategy, "seed": seed, "children": children}
            res = run_worker(__file__, spec, cwd=str(ROOT), env=_env())
            if len(res["rewards"]) != children:
                raise RuntimeError(f"{strategy} seed {seed} evaluated {len(res['rewards'])} children, not {children}")
            curves.setdefault(strategy, []).append(_best_so_far(res["rewards"]))
            seconds.setdefault(strategy, []).append(res["seconds"])
            print(f"  seed {seed} {strategy}: best {max(res['rewards']):.4f}, mean {statistics.fmean(res['rewards']):.4f},"
                  f" {res['seconds']:.1f} s", flush=True)
    marks = [c for c in CHECKPOINTS if c <= children] + ([children] if children not in CHECKPOINTS else [])
    rows = []
    for strategy in strategies:
        per_step = PER_STEP.get(strategy, 1)
        rows.append([strategy, str(per_step), *(fmt_mean_sd([c[m - 1] for c in curves[strategy]]) for m in marks),
                     f"{statistics.median(seconds[strategy]):.1f}"])
    print("best-so-far held-out accuracy, mean ± s.d. over seeds")
    print(format_table(["strategy", "children/step", *(f"after {m}" for m in marks), "median search s"], rows))
    if plot:
        _plot(curves, children, plot, len(seeds))


def _plot(curves: Dict[str, List[List[float]]], children: int, path: str, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = list(range(1, children + 1))
    for strategy, runs in curves.items():
        ax.plot(xs, [statistics.fmean(c[i] for c in runs) for i in range(children)], label=strategy)
    ax.set_xlabel("evaluations (children trained)")
    ax.set_ylabel(f"best held-out accuracy so far (mean of {n_seeds} seeds)")
    ax.set_title("NB201 cells (C=8, N=1) on digits, 3-epoch children")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


def _test_of_best(rewards: Sequence[float], tests: Sequence[float]) -> List[float]:
    """After each evaluation, the test accuracy of the child with the best reward so far (first one on ties)."""
    out, best, test = [], float("-inf"), float("nan")
    for r, t in zip(rewards, tests):
        if r > best:
            best, test = r, t
        out.append(test)
    return out


def part_tabular(strategies: Sequence[str], seeds: Sequence[int], children: int, path: str, dataset: str) -> None:
    print(f"\n== tabular benchmark {path} ({dataset}): reward the 12-epoch validation accuracy, {children} lookups "
          f"per run, seeds {list(seeds)}; the best-reward cell's 200-epoch test accuracy ==")
    spec_tab = {"path": path, "dataset": dataset}
    curves: Dict[str, List[List[float]]] = {}
    clock: Dict[str, List[float]] = {}
    seconds: Dict[str, List[float]] = {}
    for strategy in strategies:
        for seed in seeds:
            res = run_worker(__file__, {"strategy": strategy, "seed": seed, "children": children, "tabular": spec_tab},
                             cwd=str(ROOT), env=_env())
            curves.setdefault(strategy, []).append([100 * a for a in _test_of_best(res["rewards"], res["test_acc"])])
            clock.setdefault(strategy, []).append(sum(res["train_seconds"]))
            seconds.setdefault(strategy, []).append(res["seconds"])
        print(f"  {strategy}: {len(seeds)} runs, median {statistics.median(seconds[strategy]):.1f} s each", flush=True)
    marks = sorted({m for m in (50, 100, 200, children) if m <= children})
    rows = [[s, *(fmt_mean_sd([c[m - 1] for c in curves[s]]) for m in marks),
             f"{statistics.median(clock[s]) / 3600:.1f}", f"{statistics.median(seconds[s]):.1f}"] for s in strategies]
    print("test accuracy (%) of the cell with the best 12-epoch validation accuracy so far, mean ± s.d. over seeds")
    print(format_table(["strategy", *(f"after {m}" for m in marks), "simulated h (median)", "wall s (median)"], rows))


def part_pnas(seeds: Sequence[int]) -> None:
    children = PNAS_CHILDREN
    print(f"\n== PNAS vs. others on PNAS's cell space (B=3, ops sep_conv_3x3 / max_pool_3x3, N=1, F=8), digits, "
          f"2-epoch children, {children} children per run, seeds {list(seeds)} ==")
    curves: Dict[str, List[List[float]]] = {}
    seconds: Dict[str, List[float]] = {}
    spearman: List[List[float]] = []
    for seed in seeds:
        for strategy in PNAS_STRATEGIES:
            res = run_worker(__file__, {"strategy": strategy, "seed": seed, "children": children, "pnas_space": True},
                             cwd=str(ROOT), env=_env())
            if len(res["rewards"]) != children:
                raise RuntimeError(f"{strategy} seed {seed} evaluated {len(res['rewards'])} children, not {children}")
            curves.setdefault(strategy, []).append(_best_so_far(res["rewards"]))
            seconds.setdefault(strategy, []).append(res["seconds"])
            if strategy == "PNAS":
                spearman.append(res.get("spearman", []))
            print(f"  seed {seed} {strategy}: best {max(res['rewards']):.4f}, {res['seconds']:.1f} s", flush=True)
    marks = (10, 14, children)
    rows = [[s, *(fmt_mean_sd([c[m - 1] for c in curves[s]]) for m in marks), f"{statistics.median(seconds[s]):.1f}"]
            for s in PNAS_STRATEGIES]
    print("best-so-far held-out accuracy, mean ± s.d. over seeds")
    print(format_table(["strategy", *(f"after {m}" for m in marks), "median search s"], rows))
    print("PNAS predictor Spearman per level (levels 2, 3), per seed: " +
          "; ".join(", ".join(f"{x:.2f}" for x in row) for row in spearman))


class _ConstantEvaluator:
    """Scores every NB201 cell 0.5 at once: what is left to time is the child record itself."""

    def __init__(self) -> None:
        from lit_automl.spaces import NB201Space

        self.space = NB201Space()

    def evaluate(self, architecture: Any, budget: int) -> Dict[str, Any]:
        return {"val_acc": 0.5, "val_acc_history": [0.5], "params": 1}


def record_worker(kind: str, children: int) -> Dict[str, Any]:
    """Seconds per child through the child queue (submit, claim, evaluate, tell, wait) on one storage kind."""
    import optuna
    import torch

    from lit_automl.nas.evolution import random_actions
    from lit_automl.nas.workqueue import ChildQueue
    from lit_automl.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evaluator = _ConstantEvaluator()
    space, generator = evaluator.space, torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="nas_record_") as tmp:
        url = f"sqlite:///{Path(tmp) / 'children.db'}"
        storage = {"sqlite, Optuna's RDBStorage as opened by default": lambda: optuna.storages.RDBStorage(url),
                   "sqlite, lit_automl.storage.make_storage (WAL, synchronous=NORMAL)": lambda: make_storage(url, tmp),
                   "memory": lambda: make_storage("memory", tmp)}[kind]()
        queue = ChildQueue(storage, "record", space.decisions(), tmp)
        start = time.perf_counter()
        for i in range(children):
            actions = random_actions(space.decisions(), generator)
            queue.submit(f"s/{i}/0", actions, space.to_json(space.decode(actions)), 1, "final")
            queue.wait([f"s/{i}/0"], work=evaluator)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "children": children}


RECORD_KINDS = ("sqlite, Optuna's RDBStorage as opened by default",
                "sqlite, lit_automl.storage.make_storage (WAL, synchronous=NORMAL)", "memory")


def part_record(children: int) -> None:
    print(f"\n== the child record alone: {children} children one at a time (submit, claim, evaluate a constant, tell, "
          "wait) through ChildQueue ==")
    rows = []
    for kind in RECORD_KINDS:
        res = run_worker(__file__, {"record": kind, "children": children}, cwd=str(ROOT), env=_env())
        rows.append([kind, f"{1000 * res['seconds'] / children:.1f}", f"{60 * children / res['seconds']:.0f}"])
    print(format_table(["storage", "ms per child", "children/min"], rows))


def part_workers(children: int) -> None:
    print(f"\n== random search throughput: {children} children (4 per step), 1 torch thread per process; "
          "includes Trainer and worker start-up ==")
    rows = []
    for label, n in (("in the search process (n_workers=0)", 0), ("2 worker processes (n_workers=2)", 2)):
        res = run_worker(__file__, {"strategy": "random", "seed": 0, "children": children, "n_workers": n},
                         cwd=str(ROOT), env=_env())
        rows.append([label, f"{res['seconds']:.1f}", f"{60 * len(res['rewards']) / res['seconds']:.1f}"])
    print(format_table(["children evaluated", "search s", "evaluations/min"], rows))


def _worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    if "record" in spec:
        return record_worker(spec["record"], spec["children"])
    return search_worker(**spec)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if serve_worker(argv, _worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=40, help="children per search run (a multiple of 4)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..K-1")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--worker-children", type=int, default=8, help="children per run in the workers part")
    parser.add_argument("--parts", nargs="+", choices=("search", "workers", "record", "tabular", "pnas"), default=["search", "workers"])
    parser.add_argument("--tabular", help="a NATS-Bench topology file/folder or NAS-Bench-201 .pth (part 'tabular')")
    parser.add_argument("--dataset", default="cifar10-valid", help="the benchmark dataset (part 'tabular')")
    parser.add_argument("--tabular-children", type=int, default=500, help="lookups per run (part 'tabular')")
    parser.add_argument("--tabular-seeds", type=int, default=20, help="seeds 0..K-1 (part 'tabular')")
    parser.add_argument("--plot", default="runs/nas_strategies.png", help="where to save the curves ('' for none)")
    parser.add_argument("--quick", action="store_true", help="8 children, 1 seed, 4 children in the workers part")
    args = parser.parse_args(argv)
    if args.quick:
        args.children, args.seeds, args.worker_children = 8, 1, 4
    if args.children < 4 or args.children % 4:
        parser.error(f"--children must be a positive multiple of 4, got {args.children}")
    if args.tabular_children < 4 or args.tabular_children % 4:
        parser.error(f"--tabular-children must be a positive multiple of 4, got {args.tabular_children}")
    if "tabular" in args.parts and not args.tabular:
        parser.error("part 'tabular' needs --tabular PATH (NATS-tss-v1_0-3ffb9-simple/, NATS-tss-v1_0-3ffb9.pickle.pbz2 "
                     "or NAS-Bench-201-v1_1-096897.pth from the benchmark's release)")
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    print(describe_machine())
    start = time.perf_counter()
    if "search" in args.parts:
        part_search(args.strategies, list(range(args.seeds)), args.children, args.plot or None)
    if "workers" in args.parts:
        part_workers(args.worker_children)
    if "record" in args.parts:
        part_record(100)
    if "pnas" in args.parts:
        part_pnas(list(range(args.seeds)))
    if "tabular" in args.parts:
        part_tabular(args.strategies, list(range(args.tabular_seeds)), args.tabular_children, args.tabular, args.dataset)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""GP sampler figures in settings closer to real use, side by side with Optuna's samplers.

Two parts (``--parts``):

* ``workers``: 4 worker processes on one study (Optuna's journal file storage), Branin with a
  simulated trial duration (``--duration`` s, default 0.5) so trials overlap, 40 trials per study.
  Each worker has its own sampler instance (seeded ``seed * 100 + worker``). For every trial the
  objective records the distance (unit square) from its parameters to the nearest trial RUNNING
  in another worker when it started: a sampler that ignores pending trials proposes near them.
  Compared: our GPSampler with Monte Carlo fantasies (default), with Kriging believer, ignoring
  pending trials, and Optuna's GPSampler. Reported: best regret after 40 trials and the share of
  trials proposed within 0.05 of a pending one, median [IQR] over seeds.
* ``digits``: a real HPO through ``lit-automl hpo -c recipes/hpo_digits.yaml`` (a small CNN on
  digits; 8 hyperparameters, one conditional), ``--trials`` (30) trials x ``--seeds`` (3) seeds for
  our default GPSampler, Optuna's GPSampler and TPE, no pruning, 5 epochs per trial. Reported:
  best validation accuracy after 10, 20 and 30 trials (median [IQR] over seeds) and wall time.

Usage::

    python benchmarks/hpo_real.py                  # both parts (about 15 minutes on 2 CPU cores)
    python benchmarks/hpo_real.py --parts workers --seeds 5
    python benchmarks/hpo_real.py --quick          # checks the script in about a minute
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import optuna
from _harness import fmt_median_iqr, format_table

ROOT = Path(__file__).resolve().parents[1]
BRANIN_MIN = 0.397887
WORKER_SAMPLERS = {
    "gp (fantasies)": ("gp", {"pending": "fantasies"}),
    "gp (kriging believer)": ("gp", {"pending": "kriging_believer"}),
    "gp (ignore pending)": ("gp", {"pending": "ignore"}),
    "optuna-gp": ("optuna-gp", {}),
}
DIGITS_SAMPLERS = ("gp", "optuna-gp", "tpe")


# --------------------------------------------------------------------------- workers
def branin(x1: float, x2: float) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def _unit(params: Dict[str, float]) -> np.ndarray:
    return np.array([(params["x1"] + 5) / 15, params["x2"] / 15])


def _worker(storage_path: str, study_name: str, sampler_name: str, kwargs: dict, seed: int, n_trials: int,
            duration: float) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from lit_automl.hpo.registry import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_path))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler(sampler_name, seed=seed, **kwargs))

    def objective(trial: optuna.Trial) -> float:
        x1, x2 = trial.suggest_float("x1", -5, 10), trial.suggest_float("x2", 0, 15)
        running = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                   if t.number != trial.number and {"x1", "x2"} <= set(t.params)]
        here = _unit({"x1": x1, "x2": x2})
        dist = min((float(np.linalg.norm(here - _unit(t.params))) for t in running), default=float("nan"))
        trial.set_user_attr("dist_to_pending", dist)
        time.sleep(duration)
        return branin(x1, x2)

    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=None)])


def workers_part(seeds: int, n_trials: int, duration: float) -> None:
    print(f"\n== 4 workers on one study (journal file), Branin, {n_trials} trials, {duration} s per trial, "
          f"{seeds} seeds: median [IQR] ==")
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for label, (name, kwargs) in WORKER_SAMPLERS.items():
        regrets, near, walls = [], [], []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "journal.log")
                storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
                study = optuna.create_study(study_name="bench", storage=storage, direction="minimize")
                start = time.perf_counter()
                procs = [ctx.Process(target=_worker, args=(path, "bench", name, kwargs, seed * 100 + w, n_trials, duration))
                         for w in range(4)]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()
                walls.append(time.perf_counter() - start)
                done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
                done.sort(key=lambda t: t.number)
                regrets.append(min(t.value for t in done[:n_trials]) - BRANIN_MIN)
                dists = [t.user_attrs.get("dist_to_pending", float("nan")) for t in done]
                dists = [d for d in dists if not math.isnan(d)]
                near.append(sum(d < 0.05 for d in dists) / max(len(dists), 1))
        rows.append([label, fmt_median_iqr(regrets), fmt_median_iqr(near), f"{statistics.median(walls):.1f}"])
        print(f"  {label}: done", flush=True)
    print(format_table(["sampler", f"regret @{n_trials}", "share near pending", "wall s"], rows))


# --------------------------------------------------------------------------- digits
def _run_hpo(sampler: str, seed: int, n_trials: int, run_dir: Path, epochs: int) -> Tuple[List[float], float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lit_automl.cli", "hpo", "-c", str(ROOT / "recipes" / "hpo_digits.yaml"),
           "--n-trials", str(n_trials), "--sampler", sampler, "--seed", str(seed), "--pruner", "nop",
           "--run-dir", str(run_dir), "--study-name", f"{sampler}_{seed}", "--no-progress-bar", "--no-report",
           f"--trainer.max_epochs={epochs}"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=f"{sampler}_{seed}", storage=f"sqlite:///{run_dir / 'study.db'}")
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number) if t.state == optuna.trial.TrialState.COMPLETE]
    return values, wall


def digits_part(seeds: int, n_trials: int, epochs: int) -> None:
    marks = [m for m in (10, 20, 30) if m <= n_trials] or [n_trials]
    print(f"\n== real HPO: recipes/hpo_digits.yaml (small CNN on digits, 8 hyperparameters), {n_trials} trials x "
          f"{seeds} seeds, {epochs} epochs per trial, no pruning; best val/acc median [IQR] ==")
    jobs = [(s, seed) for s in DIGITS_SAMPLERS for seed in range(seeds)]
    with tempfile.TemporaryDirectory() as tmp, multiprocessing.get_context("spawn").Pool(2) as pool:
        dirs = [Path(tmp) / f"{s}_{seed}" for s, seed in jobs]
        for d in dirs:
            d.mkdir()
        results = pool.starmap(_run_hpo, [(s, seed, n_trials, d, epochs) for (s, seed), d in zip(jobs, dirs)])
    table = []
    for s in DIGITS_SAMPLERS:
        rows = [r for (name, _), r in zip(jobs, results) if name == s]
        cells = [fmt_median_iqr([max(values[:m]) for values, _ in rows], 4) for m in marks]
        table.append([s, *cells, f"{statistics.median(w for _, w in rows):.0f}"])
    print(format_table(["sampler", *(f"best @{m}" for m in marks), "wall s/run"], table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("workers", "digits"), default=["workers", "digits"])
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler (default 5 workers, 3 digits)")
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default 40 workers, 30 digits)")
    parser.add_argument("--duration", type=float, default=0.5, help="simulated seconds per Branin trial")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per digits trial")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.quick:
        args.seeds, args.trials, args.duration, args.epochs = 1, args.trials or 12, 0.2, 1
    if "workers" in args.parts:
        workers_part(args.seeds or 5, args.trials or 40, args.duration)
    if "digits" in args.parts:
        digits_part(args.seeds or 3, args.trials or 30, args.epochs)


if __name__ == "__main__":
    main()

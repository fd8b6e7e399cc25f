#!/usr/bin/env python
"""GP sampler figures on synthetic functions, side by side with Optuna's samplers.

Two parts:

* ``regret``: best regret (best value found - the known minimum) after 20, 50 and 100 trials,
  median and interquartile range over seeds, on Branin (2-d, minimum 0.397887) and Hartmann6
  (6-d, minimum -3.32237), for ``lit_automl.hpo.GPSampler`` (each acquisition with type-II MAP
  hyperparameters, and EI with slice-sampled hyperparameters, the integrated acquisition),
  ``optuna.samplers.GPSampler``, ``TPESampler`` and ``RandomSampler``. Every sampler has 10 random
  startup trials (their defaults). On these objectives a trial lasts microseconds, so
  ``gp-eips`` (EI per second) divides EI by the model of timing noise.
* ``timing``: seconds per suggestion (ask + suggest of the 6 Hartmann6 parameters) with 50 and
  200 completed random trials in the study, median over a few suggestions after one warm-up
  (which lets our sampler warm-start its fit, as it does within a run).

The learned black-box optimiser of Chen et al. (ICML 2017), ``rnn`` (``lit_automl.meta.RNNSampler``
over a ``QueryLSTM`` meta-trained on GP-prior functions), is compared head to head by ``--chen2017``:
``rnn``, ``gp-ei``, ``optuna-gp``, ``tpe`` and ``random`` on Branin, Hartmann3 (3-d, minimum -3.86278),
Hartmann6 and ``prior3`` (a 3-d function drawn from the training prior per seed; its minimum is
estimated by 20,000 random points polished by gradient steps, which the prior's functions allow),
regret after 20 and 50 trials over 10 seeds, and seconds per suggestion. The RNN is meta-trained in
the main process before the runs (the ``BlackBoxRNN`` defaults: best-so-far loss plus 0.5 L_sum / T, horizon 50,
``--rnn-steps`` Adam steps (800) of 64 functions, dimensions 1..6, gradients clipped to norm 1; 0.15 to 0.3 s a
step on one core, so 2 to 4 minutes) and saved as ``hpo_bench_rnn_v2_<steps>.pt`` in ``--out``, which later runs
reuse; ``--rnn-model PATH`` uses a network trained elsewhere (``BlackBoxRNN.save_rnn`` or a ``BlackBoxRNN``
checkpoint). Cached ``run|rnn|...`` entries are dropped when the network file changes.

A third regret problem, ``conditional`` (``--problems conditional``, not in the default run), is a
space whose later decisions exist only for deeper networks (``depth`` in 1..4, ``width_k`` only
for k < depth; minimum -1.6 at depth 4), for ``gp-ei-arc`` (the arc kernel of Swersky et al. 2013
over the union of the trials' parameters) against ``gp-ei`` (today's intersection space: the widths
beyond those every trial has are drawn at random), TPE and random search. Each regret table also
gives the median number of parameter draws our sampler left to its independent sampler after the
startup trials (UnmodelledParameterWarning) per run.

Runs go to ``--jobs`` worker processes (2), each on one thread (torch, BLAS and OpenMP).
Finished runs are cached in ``hpo_bench_results.json`` (next to this script, or in ``--out``),
keyed by sampler / problem / seed (a run's first k trials do not depend on the budget, so a
longer cached run serves shorter budgets), so an interrupted benchmark resumes where it stopped.
The script prints an estimate of its run time first, and last the measured ratios of each of our
samplers to Optuna's GPSampler and TPE run here (Hartmann6 median regret, seconds per suggestion).

Usage::

    python benchmarks/hpo_bench.py                    # 10 seeds, 100 trials (about 15 min on 2 cores)
    python benchmarks/hpo_bench.py --quick            # 2 seeds, 20 trials: checks the script
    python benchmarks/hpo_bench.py --samplers gp-ei optuna-gp --seeds 5 --trials 50
    python benchmarks/hpo_bench.py --parts timing
    python benchmarks/hpo_bench.py --parts regret --problems conditional \
        --samplers gp-ei-arc gp-ei tpe random --seeds 5 --trials 40     # conditional space
    python benchmarks/hpo_bench.py --chen2017          # RNN head to head: 10 seeds, 50 trials (about 25 min)
    python benchmarks/hpo_bench.py --chen2017 --quick  # 2 seeds, 20 trials, 200 meta-training steps
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from _harness import format_table, median_iqr

CHECKPOINTS = (20, 50, 100)
DEFAULT_SAMPLERS = ("gp-ei", "gp-pi", "gp-ucb", "gp-eips", "gp-ei-mcmc", "optuna-gp", "tpe", "random")
PROBLEMS = ("branin", "hartmann6")
ALL_PROBLEMS = PROBLEMS + ("conditional", "hartmann3", "prior3")
CHEN2017_SAMPLERS = ("rnn", "gp-ei", "optuna-gp", "tpe", "random")
CHEN2017_PROBLEMS = ("branin", "hartmann3", "hartmann6", "prior3")
RNN_ENV = "HPO_BENCH_RNN"  # the path of the trained QueryLSTM, for the worker processes
# Rough seconds of one run of 100 trials on one core of these (shared, busy) machines, for the
# estimate: (Branin, Hartmann6, conditional); a run of n trials is taken to cost (n / 100)^2 of it.
COST_100 = {"gp": (6.0, 12.0, 60.0, 10.0, 10.0), "gp-arc": (6.0, 12.0, 150.0, 10.0, 10.0),
            "gp-mcmc": (25.0, 40.0, 300.0, 35.0, 35.0), "optuna-gp": (10.0, 12.0, 12.0, 12.0, 12.0),
            "tpe": (0.3, 0.5, 0.5, 0.4, 0.4), "random": (0.1, 0.1, 0.1, 0.1, 0.1), "rnn": (0.5, 0.5, 0.5, 0.5, 1.5)}
TIMING_COST = {"gp": (0.15, 0.4), "gp-arc": (0.15, 0.4), "gp-mcmc": (0.5, 1.2), "optuna-gp": (0.8, 0.4), "tpe": (0.05, 0.2),
               "random": (0.01, 0.01), "rnn": (0.01, 0.03)}  # s per suggestion at 50 and 200 trials
STARTUP_S = 1.0  # per run: study creation, imports amortised over a worker's runs

BRANIN_MIN = 0.397887
HARTMANN6_MIN = -3.32237
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(trial) -> float:
    """Branin-Hoo on [-5, 10] x [0, 15]; global minimum 0.397887 (three minimisers)."""
    x1, x2 = trial.suggest_float("x1", -5.0, 10.0), trial.suggest_float("x2", 0.0, 15.0)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(trial) -> float:
    """Hartmann6 on [0, 1]^6; global minimum -3.32237."""
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(6)])
    return float(-_H6_ALPHA @ np.exp(-(_H6_A * (x - _H6_P) ** 2).sum(1)))


CONDITIONAL_WIDTHS = (0.2, 0.7, 0.4, 0.6)
CONDITIONAL_MIN = -0.4 * len(CONDITIONAL_WIDTHS)


def conditional(trial) -> float:
    """depth in {1, .., 4}, lr in [0, 1] always, width_k in [0, 1] only for k < depth:
    (lr - 0.3)^2 - 0.4 depth + sum_k (width_k - c_k)^2; minimum -1.6 at depth 4, lr 0.3, width = c."""
    depth = trial.suggest_int("depth", 1, len(CONDITIONAL_WIDTHS))
    value = (trial.suggest_float("lr", 0.0, 1.0) - 0.3) ** 2 - 0.4 * depth
    for k in range(depth):
        value += (trial.suggest_float(f"width_{k}", 0.0, 1.0) - CONDITIONAL_WIDTHS[k]) ** 2
    return value


HARTMANN3_MIN = -3.86278
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])


def hartmann3(trial) -> float:
    """Hartmann3 on [0, 1]^3; global minimum -3.86278."""
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(3)])
    return float(-_H6_ALPHA @ np.exp(-(_H3_A * (x - _H3_P) ** 2).sum(1)))


def prior_function(dim: int, seed: int):
    """The ``seed``-th function of ``prior<dim>``: one draw of the RNN's training prior (the
    ``GPPriorFunctions`` defaults), and an estimate of its minimum on [0, 1]^dim."""
    from lit_automl.meta import GPPriorFunctions
    from lit_automl.rng import keyed_generator

    f = GPPriorFunctions(1, dim, keyed_generator(2017, dim, seed))
    return f, float(f.minimum(keyed_generator(2018, dim, seed))[0])


def prior_objective(f, dim: int) -> Callable:
    import torch

    def objective(trial) -> float:
        x = torch.tensor([[trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dim)]], dtype=torch.float64)
        with torch.no_grad():
            return float(f(x)[0])
    return objective


OBJECTIVES: Dict[str, Tuple[Callable, float]] = {"branin": (branin, BRANIN_MIN),
                                                 "hartmann6": (hartmann6, HARTMANN6_MIN),
                                                 "conditional": (conditional, CONDITIONAL_MIN),
                                                 "hartmann3": (hartmann3, HARTMANN3_MIN)}
"""Problems with a known minimum; ``prior3`` has one per seed (stored with each run)."""


def _cost_kind(name: str) -> str:
    if name.startswith("gp-"):
        return "gp-mcmc" if "-mcmc" in name else "gp-arc" if name.endswith("-arc") else "gp"
    return name


def make_sampler(name: str, seed: int, check_only: bool = False):
    """``gp-<acquisition>[-mcmc][-arc]`` (acquisition: ei, pi, ucb, eips; ``-arc``: the arc kernel
    for conditional parameters), ``optuna-gp``, ``tpe``, ``random``, ``rnn`` (the network at
    ``$HPO_BENCH_RNN``; ``check_only``: the name alone is checked, before the network exists)."""
    import optuna

    from lit_automl.hpo.gp import GPSampler

    if name == "rnn":
        if check_only:
            return None
        from lit_automl.meta import RNNSampler

        return RNNSampler(os.environ[RNN_ENV], seed=seed)
    if name.startswith("gp-"):
        parts = name[3:].split("-")
        acq = {"ei": "ei", "pi": "pi", "ucb": "ucb", "eips": "ei_per_second"}.get(parts[0])
        if acq is None or parts[1:] not in ([], ["mcmc"], ["arc"], ["mcmc", "arc"]):
            raise ValueError(f"sampler {name!r}: expected gp-<ei|pi|ucb|eips>[-mcmc][-arc]")
        return GPSampler(seed=seed, acquisition=acq, hyperparameters="mcmc" if "mcmc" in parts else "map",
                         conditional="arc" if "arc" in parts else "independent")
    factories = {"optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed),
                 "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                 "random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    if name not in factories:
        raise ValueError(f"sampler {name!r} is not one of gp-<ei|pi|ucb|eips>[-mcmc], {sorted(factories)}")
    return factories[name]()


def _one_thread() -> None:
    import threadpoolctl
    import torch

    torch.set_num_threads(1)
    threadpoolctl.threadpool_limits(1)


def run_regret(job: Tuple[str, str, int, int]) -> Tuple[str, dict]:
    """One study: best value so far after each trial, and the number of parameter draws our GP
    sampler left to its independent sampler after the startup trials (UnmodelledParameterWarning)."""
    import warnings

    import optuna

    from lit_automl.hpo.gp import UnmodelledParameterWarning

    _one_thread()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler_name, problem, seed, trials = job
    optimum = None
    if problem.startswith("prior"):
        f, optimum = prior_function(int(problem[len("prior"):]), seed)
        objective = prior_objective(f, f.dim)
    else:
        objective, _ = OBJECTIVES[problem]
    study = optuna.create_study(sampler=make_sampler(sampler_name, seed))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnmodelledParameterWarning)
        study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - start
    unmodelled = sum(issubclass(w.category, UnmodelledParameterWarning) for w in caught)
    best = np.minimum.accumulate([t.value for t in study.trials]).tolist()
    entry = {"best": best, "seconds": seconds, "unmodelled": unmodelled}
    if optimum is not None:
        entry["optimum"] = optimum
    return f"run|{sampler_name}|{problem}|{seed}", entry


def run_timing(job: Tuple[str, int, int]) -> Tuple[str, dict]:
    """Seconds per suggestion on Hartmann6 with ``n`` completed random trials."""
    import warnings

    import optuna

    _one_thread()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler_name, n, reps = job
    study = optuna.create_study(sampler=make_sampler(sampler_name, 0))
    rng = np.random.default_rng(0)
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(6)}
    start = datetime.datetime(2024, 1, 1)
    for _ in range(n):  # random trials, each lasting 1 to 10 s (EI per second needs durations)
        params = {name: float(v) for name, v in zip(dists, rng.random(6))}
        study.add_trial(optuna.trial.FrozenTrial(
            number=0, trial_id=0, state=optuna.trial.TrialState.COMPLETE,
            value=hartmann6(optuna.trial.FixedTrial(params)),
            datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=float(rng.uniform(1, 10))),
            params=params, distributions=dists, user_attrs={}, system_attrs={}, intermediate_values={}))
    seconds = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        trial = study.ask()
        value = hartmann6(trial)
        seconds.append(time.perf_counter() - start)
        study.tell(trial, value)
    return f"timing|{sampler_name}|{n}", {"seconds": seconds[1:]}


class Cache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.data: Dict[str, dict] = {}
        if os.path.exists(path):
            with open(path) as f:
                self.data = json.load(f)

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)


def _run_parallel(fn: Callable, jobs: List, n_jobs: int, cache: Cache, label: str) -> None:
    if not jobs:
        return
    done, start = 0, time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n_jobs, initializer=_one_thread) as pool:
        for key, value in pool.imap_unordered(fn, jobs):
            cache.put(key, value)
            done += 1
            print(f"  [{label} {done}/{len(jobs)}, {time.perf_counter() - start:.0f} s] {key}", flush=True)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.1e}"


def regret_table(cache: Cache, samplers: Sequence[str], seeds: int, trials: int,
                 problems: Sequence[str] = PROBLEMS) -> Dict[Tuple[str, str, int], float]:
    """Prints the regret tables; returns the medians by (problem, sampler, checkpoint)."""
    checkpoints = [c for c in CHECKPOINTS if c <= trials] or [trials]
    if trials not in checkpoints:
        checkpoints.append(trials)
    medians = {}
    for problem in problems:
        optimum = OBJECTIVES[problem][1] if problem in OBJECTIVES else None
        print(f"\n{problem}: best regret, median [interquartile range] over {seeds} seeds")
        rows = []
        for name in samplers:
            runs = [cache.data.get(f"run|{name}|{problem}|{s}") for s in range(seeds)]
            if any(r is None or len(r["best"]) < trials for r in runs):
                rows.append([name, "(missing runs)"])
                continue
            cells = []
            for c in checkpoints:
                med, q1, q3 = median_iqr([r["best"][c - 1] - r.get("optimum", optimum) for r in runs])
                medians[(problem, name, c)] = med
                cells.append(f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]")
            secs = statistics.median(r["seconds"] for r in runs)  # of the cached run, maybe longer
            unmodelled = [r["unmodelled"] for r in runs if "unmodelled" in r]
            rows.append([name, *cells, f"{secs:.1f}",
                         f"{statistics.median(unmodelled):g}" if len(unmodelled) == len(runs) else "-"])
        print(format_table(["sampler", *(f"after {c} trials" for c in checkpoints), "s / run",
                            "unmodelled draws / run"], rows))
    return medians


def timing_table(cache: Cache, samplers: Sequence[str], sizes: Sequence[int]) -> Dict[Tuple[str, int], float]:
    print("\nseconds per suggestion (Hartmann6, median after a warm-up suggestion)")
    out, rows = {}, []
    for name in samplers:
        cells = []
        for n in sizes:
            entry = cache.data.get(f"timing|{name}|{n}")
            if entry is None:
                cells.append("-")
                continue
            out[(name, n)] = statistics.median(entry["seconds"])
            cells.append(f"{out[(name, n)]:.3f}")
        rows.append([name, *cells])
    print(format_table(["sampler", *(f"{n} trials" for n in sizes)], rows))
    return out


def peer_table(medians: Dict[Tuple[str, str, int], float], timing: Dict[Tuple[str, int], float],
               samplers: Sequence[str], trials: int, sizes: Sequence[int]) -> None:
    """Our samplers' measured figures divided by the peers' measured here (no peer run: no column)."""
    c = 50 if trials >= 50 else trials
    peers = [p for p in ("optuna-gp", "tpe") if p in samplers]
    ours = [n for n in samplers if n.startswith("gp-") or n == "rnn"]
    if not peers or not ours:
        return
    header = ["sampler"] + [f"regret@{c} / {p}" for p in peers]
    header += [f"s/suggestion@{n} / optuna-gp" for n in sizes if "optuna-gp" in peers]
    rows = []
    for name in ours:
        row = [name]
        for peer in peers:
            mine, theirs = medians.get(("hartmann6", name, c)), medians.get(("hartmann6", peer, c))
            row.append("-" if mine is None or not theirs else f"{mine / theirs:.2f}")
        if "optuna-gp" in peers:
            for n in sizes:
                mine_s, theirs_s = timing.get((name, n)), timing.get(("optuna-gp", n))
                row.append("-" if mine_s is None or not theirs_s else f"{mine_s / theirs_s:.2f}")
        rows.append(row)
    print(f"\nHartmann6, ratios to the peers measured above (median regret at {c} trials; s per suggestion)")
    print(format_table(header, rows))


def train_rnn(path: str, steps: int, horizon: int = 50) -> None:
    """Meta-trains the ``rnn`` sampler's network (Chen et al. 2017; the ``BlackBoxRNN`` defaults: dimensions 1..6,
    the best-so-far loss, horizon 50, Adam lr 3e-3, 64 functions a step) on one thread, gradients clipped to norm 1,
    and saves it at ``path``. Prints the mean best value after 20 and 50 queries on the module's held-out prior
    functions (64 per dimension, mean over d = 1..6) before and after training, next to random search's."""
    import pytorch_lightning as pl

    from lit_automl.meta import BlackBoxRNN

    _one_thread()
    start = time.perf_counter()
    pl.seed_everything(0, verbose=False)
    module = BlackBoxRNN(horizon=horizon, steps_per_epoch=steps, val_functions=64)
    before = _held_out_best(module)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         gradient_clip_val=1.0)  # ours: unclipped runs were less stable through the unroll
    trainer.fit(module)
    seconds = time.perf_counter() - start
    after = _held_out_best(module)
    module.save_rnn(path)
    rand = {c: statistics.mean(v.item() for v in module.random_search_best_by_dim(c).values()) for c in (20, 50)}
    print(f"meta-trained the RNN for {steps} steps in {seconds:.0f} s (one thread); held-out prior functions, mean best "
          f"value after 20 / 50 queries (d = 1..6, 64 functions each; lower is better): untrained "
          f"{before[20]:.3f} / {before[50]:.3f}, trained {after[20]:.3f} / {after[50]:.3f}, random search "
          f"{rand[20]:.3f} / {rand[50]:.3f}; saved {path}", flush=True)


def _held_out_best(module) -> Dict[int, float]:
    """The mean over ``module.dims`` of the held-out best value after 20 and 50 queries."""
    return {c: statistics.mean(v.item() for v in module.held_out_best_by_dim(c).values()) for c in (20, 50)}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 20 trials, timing at 50 trials once")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler and problem (10)")
    parser.add_argument("--trials", type=int, default=None, help="trials per run (100)")
    parser.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS),
                        help="any of gp-<ei|pi|ucb|eips>[-mcmc][-arc], optuna-gp, tpe, random "
                             f"(default: {' '.join(DEFAULT_SAMPLERS)})")
    parser.add_argument("--parts", nargs="+", default=["regret", "timing"], choices=["regret", "timing"])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(ALL_PROBLEMS),
                        help=f"regret problems (default: {' '.join(PROBLEMS)})")
    parser.add_argument("--timing-trials", nargs="+", type=int, default=None, help="study sizes for timing (50 200)")
    parser.add_argument("--timing-reps", type=int, default=None, help="timed suggestions per size (3)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (2)")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                        help="folder of the results cache hpo_bench_results.json")
    parser.add_argument("--chen2017", action="store_true",
                        help=f"the RNN head to head: samplers {' '.join(CHEN2017_SAMPLERS)} on "
                             f"{' '.join(CHEN2017_PROBLEMS)}, 50 trials (unless given)")
    parser.add_argument("--rnn-model", default=None, help="a trained QueryLSTM for 'rnn' (else trained here)")
    parser.add_argument("--rnn-steps", type=int, default=None,
                        help="meta-training steps when the network is trained here (800; 200 with --quick)")
    args = parser.parse_args(argv)
    if args.chen2017:
        if args.samplers == list(DEFAULT_SAMPLERS):
            args.samplers = list(CHEN2017_SAMPLERS)
        if args.problems == list(PROBLEMS):
            args.problems = list(CHEN2017_PROBLEMS)
        if args.trials is None and not args.quick:
            args.trials = 50
    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 10)
    trials = args.trials if args.trials is not None else (20 if args.quick else 100)
    sizes = args.timing_trials if args.timing_trials is not None else ([50] if args.quick else [50, 200])
    reps = args.timing_reps if args.timing_reps is not None else (1 if args.quick else 3)
    for name in args.samplers:
        make_sampler(name, 0, check_only=True)  # validate names before anything runs
    os.makedirs(args.out, exist_ok=True)
    cache = Cache(os.path.join(args.out, "hpo_bench_results.json"))
    if "rnn" in args.samplers:
        steps = args.rnn_steps if args.rnn_steps is not None else (200 if args.quick else 800)
        path = args.rnn_model or os.path.join(args.out, f"hpo_bench_rnn_v2_{steps}.pt")  # v2: the fold/incumbent net
        if args.rnn_model is None and not os.path.exists(path):
            train_rnn(path, steps)
        os.environ[RNN_ENV] = os.path.abspath(path)
        network = {"path": os.path.abspath(path), "mtime": os.path.getmtime(path)}
        if cache.data.get("network|rnn") != network:  # the cached rnn runs are of another network
            for key in [k for k in cache.data if k.startswith(("run|rnn|", "timing|rnn|"))]:
                del cache.data[key]
            cache.put("network|rnn", network)

    regret_jobs = []
    if "regret" in args.parts:
        for name in args.samplers:
            for problem in args.problems:
                for seed in range(seeds):
                    entry = cache.data.get(f"run|{name}|{problem}|{seed}")
                    if entry is None or len(entry["best"]) < trials:
                        regret_jobs.append((name, problem, seed, trials))
    timing_jobs = [(name, n, reps) for name in args.samplers for n in sizes
                   if "timing" in args.parts
                   and len(cache.data.get(f"timing|{name}|{n}", {}).get("seconds", [])) < reps]
    estimate = sum(COST_100[_cost_kind(n)][ALL_PROBLEMS.index(p)] * (t / 100) ** 2 for n, p, _, t in regret_jobs)
    estimate += sum(TIMING_COST[_cost_kind(n)][0 if size <= 50 else 1] * (size / 200 if size > 200 else 1) * (r + 1)
                    for n, size, r in timing_jobs)
    estimate += STARTUP_S * (len(regret_jobs) + len(timing_jobs)) + 10.0 * args.jobs  # + worker imports
    print(f"{len(regret_jobs)} runs and {len(timing_jobs)} timings to do ({len(cache.data)} cached in {cache.path}); "
          f"estimated {estimate / max(1, args.jobs) / 60:.1f} min on {args.jobs} processes", flush=True)

    _run_parallel(run_regret, regret_jobs, args.jobs, cache, "regret")
    _run_parallel(run_timing, timing_jobs, args.jobs, cache, "timing")

    medians = regret_table(cache, args.samplers, seeds, trials, args.problems) if "regret" in args.parts else {}
    timing = timing_table(cache, args.samplers, sizes) if "timing" in args.parts else {}

    if "hartmann6" in args.problems:
        peer_table(medians, timing, args.samplers, trials, sizes)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Learned optimisers: the L2L LSTM (Andrychowicz et al. 2016) against hand-designed optimisers.

L2L part (Sec. 3.1, 3.2 and the generalisation checks of Sec. 3.2, Fig. 4-5 of the paper):

* meta-train the coordinate-wise 2x20 LSTM (:class:`lit_automl.meta.L2LMetaTrainer`) on random 10-d
  quadratics (128 functions, the paper's preprocessing p = 10) and on the 20-unit sigmoid MLP on 8x8
  digits (the authors' code's preprocessing k = 5 and output scale 0.01, as recipes/l2l_mlp_digits.yaml);
  unroll 100, truncation 20, Adam lr 1e-3 (the paper's). Only the number of meta-training episodes
  (``--episodes``) is ours, far below the paper's;
* on held-out episodes (``--test-episodes``, indices disjoint from training and tuning), the trained
  LSTM, the untrained LSTM, and SGD, RMSprop, Adam and NAG (SGD, momentum 0.9, Nesterov), each at the
  learning rate of ``--lr-grid`` with the lowest mean final loss on separate tuning episodes
  (``--tune-episodes``; the paper tunes the baselines' learning rates too);
* the MLP-trained LSTM applied unchanged to 40 hidden units, 2 hidden layers, and ReLU activations.

Every optimiser runs the same loop: the optimisee's parameters as leaf tensors, the loss of step t on
the episode's batch t (the LSTM through :class:`lit_automl.meta.LSTMOptimizer`). Printed: the loss after
20 / 50 / 100 steps (mean ± s.d. over the held-out episodes), one table per task; plotted: the mean loss
vs steps, saved to runs/learned_optimisers_l2l.png. Usage::

    OMP_NUM_THREADS=1 python benchmarks/learned_optimisers.py            # about 8 minutes on 2 CPU cores
    OMP_NUM_THREADS=1 python benchmarks/learned_optimisers.py --quick    # checks the script in about a minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import pytorch_lightning as pl
import torch

from _harness import describe_machine, fmt_duration, fmt_mean_sd, format_table
from lit_automl.meta import L2LMetaTrainer, LSTMOptimizer
from lit_automl.meta.functional import task_loss

REPORT_STEPS = (20, 50, 100)
TUNE_OFFSET = 1_000_000  # episode indices of the tuning episodes start here, the held-out ones at 2x
TEST_OFFSET = 2_000_000
HAND = {
    "SGD": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "RMSprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "Adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "NAG": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
}
# the paper's settings per task (Sec. 3.1: preprocessing p = 10; Sec. 3.2 as the authors' MNIST code)
TASK_SETTINGS = {
    "quadratic": dict(task="quadratic", preprocess="paper", p=10.0, output_scale=1.0),
    "mlp": dict(task="mlp", preprocess="code", p=5.0, output_scale=0.01),
}
GENERALISATION = {  # the MLP-trained LSTM applied to changed optimisees (Sec. 3.2)
    "mlp 40 units": dict(mlp_hidden=40),
    "mlp 2 layers": dict(mlp_layers=2),
    "mlp ReLU": dict(mlp_activation="relu"),
}


def run_optimiser(trainer: L2LMetaTrainer, episode: int, make: Callable[[List[torch.Tensor]], torch.optim.Optimizer],
                  steps: int) -> List[float]:
    """Losses ``f(x_0) .. f(x_steps)`` of ``make(params)`` optimising ``episode``'s optimisee (loss t on batch t)."""
    model, init, loss_fn, batches = trainer.optimisee(episode)
    params = {n: p.clone().requires_grad_(True) for n, p in init.items()}
    opt = make(list(params.values()))
    losses: List[float] = []
    for t in range(steps + 1):
        loss = task_loss(model, params, {}, batches[t % len(batches)], loss_fn)
        value = float(loss.detach())
        losses.append(value if value == value and value < 1e30 else float("inf"))
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def meta_train(task: str, episodes: int, seed: int) -> Tuple[L2LMetaTrainer, float]:
    """Meta-train the LSTM on ``episodes`` episodes of ``task``; returns the module and seconds taken."""
    pl.seed_everything(seed, verbose=False)
    module = L2LMetaTrainer(episodes_per_epoch=episodes, seed=seed, **TASK_SETTINGS[task])
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=True, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(module)
    return module, time.perf_counter() - start


def variant(base: L2LMetaTrainer, seed: int, **changes) -> L2LMetaTrainer:
    """An optimisee source like ``base``'s with ``changes``, carrying ``base``'s (trained) LSTM unchanged."""
    hp = dict(base.hparams)
    hp.update(changes, seed=seed)
    module = L2LMetaTrainer(**hp)
    module.net.load_state_dict(base.net.state_dict())
    return module


def tune(source: L2LMetaTrainer, grid: Sequence[float], episodes: Sequence[int], steps: int) -> Dict[str, float]:
    """Per hand-designed optimiser, the grid learning rate with the lowest mean final loss on ``episodes``."""
    best: Dict[str, float] = {}
    for name, make in HAND.items():
        scores = []
        for lr in grid:
            finals = [run_optimiser(source, e, lambda ps, lr=lr: make(ps, lr), steps)[-1] for e in episodes]
            scores.append((statistics.fmean(finals), lr))
        best[name] = min(scores)[1]
    return best


def compare(title: str, source: L2LMetaTrainer, untrained: L2LMetaTrainer, grid: Sequence[float],
            tune_eps: Sequence[int], test_eps: Sequence[int], steps: int) -> Dict[str, List[List[float]]]:
    """Print the table of one task; returns each method's loss curves on the held-out episodes."""
    lrs = tune(source, grid, tune_eps, steps)
    methods = {"L2L LSTM (trained)": (lambda ps: LSTMOptimizer(ps, source.net.eval()), ""),
               "LSTM (untrained)": (lambda ps: LSTMOptimizer(ps, untrained.net.eval()), "")}
    for name, make in HAND.items():
        methods[name] = (lambda ps, make=make, lr=lrs[name]: make(ps, lr), f"lr {lrs[name]:g}")
    curves: Dict[str, List[List[float]]] = {}
    rows = []
    shown = [s for s in REPORT_STEPS if s <= steps]
    for name, (make, note) in methods.items():
        curves[name] = [run_optimiser(source, e, make, steps) for e in test_eps]
        rows.append([name] + [fmt_mean_sd([c[s] for c in curves[name]]) for s in shown] + [note])
    print(f"\n{title}: loss after k steps, mean ± s.d. over {len(test_eps)} held-out episodes")
    print(format_table(["method"] + [f"step {s}" for s in shown] + ["tuned lr"], rows))
    return curves


def plot(results: Dict[str, Dict[str, List[List[float]]]], path: str) -> None:
    """Mean loss vs steps, one panel per task (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes[0], results.items()):
        for name, runs in curves.items():
            mean = [statistics.fmean(step) for step in zip(*runs)]
            ax.plot(range(len(mean)), mean, label=name, lw=2.2 if name.startswith("L2L") else 1.2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("loss (mean over held-out episodes)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=None,
                        help="meta-training episodes per task (default 300; --quick 3)")
    parser.add_argument("--test-episodes", type=int, default=None, help="held-out episodes (default 10; --quick 2)")
    parser.add_argument("--tune-episodes", type=int, default=None, help="tuning episodes (default 3; --quick 1)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0],
                        help="learning rates tried for each hand-designed optimiser")
    parser.add_argument("--steps", type=int, default=100, help="optimisee steps evaluated (the paper's 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="runs/learned_optimisers_l2l.png")
    parser.add_argument("--quick", action="store_true", help="a few episodes, 2 held-out: checks the script")
    args = parser.parse_args()
    episodes = args.episodes or (3 if args.quick else 300)
    n_test = args.test_episodes or (2 if args.quick else 10)
    n_tune = args.tune_episodes or (1 if args.quick else 3)
    tune_eps = [TUNE_OFFSET + i for i in range(n_tune)]
    test_eps = [TEST_OFFSET + i for i in range(n_test)]
    print(describe_machine())
    print(f"meta-training: {episodes} episodes per task, unroll 100, truncation 20, Adam 1e-3; "
          f"baselines tuned over lr {args.lr_grid} on {n_tune} tuning episodes; seed {args.seed}")

    results: Dict[str, Dict[str, List[List[float]]]] = {}
    for task in ("quadratic", "mlp"):
        trained, seconds = meta_train(task, episodes, args.seed)
        print(f"\n{task}: meta-trained on {episodes} episodes in {fmt_duration(seconds)} "
              f"({TASK_SETTINGS[task]})")
        torch.manual_seed(args.seed + 1)
        untrained = L2LMetaTrainer(seed=args.seed, **TASK_SETTINGS[task])
        title = "quadratic 10-d" if task == "quadratic" else "mlp 20 sigmoid (training task)"
        results[title] = compare(title, trained, untrained, args.lr_grid, tune_eps, test_eps, args.steps)
        if task == "mlp":
            for title, changes in GENERALISATION.items():
                source = variant(trained, args.seed, **changes)
                blank = variant(untrained, args.seed, **changes)
                results[title] = compare(title + " (LSTM trained on 20 sigmoid)", source, blank, args.lr_grid,
                                         tune_eps, test_eps, args.steps)
    plot(results, args.plot)


if __name__ == "__main__":
    main()

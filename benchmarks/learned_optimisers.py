#!/usr/bin/env python
"""Learned optimisers, searched update rules and activations, each next to the hand-designed ones a user would pick.

Parts (``--parts l2l rules activations``, default all):

``l2l``: the L2L LSTM (Andrychowicz et al. 2016), Sec. 3.1, 3.2 and the generalisation checks of Sec. 3.2, Fig. 4-5:

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
vs steps, saved to runs/learned_optimisers_l2l.png.

``rules``: neural optimiser search (Bello et al. 2017) as recipes/optimizer_search_digits.yaml sets it up (rules of
2 units over the whole language, the 2-layer 16-filter child ConvNet, lr 0.01 for every rule, reward = validation
accuracy on 300 digits held out of the training split, PPO with a 1x32 LSTM controller, 4 rules per update), with
more rules (``--children``, default 200). The 3 best distinct rules by reward are then trained from scratch next to
SGD, momentum 0.9, Adam, PowerSign and AddSign (no sign decay) on the same child and epochs (``--child-epochs``),
each at its learning rate of a grid chosen by mean validation accuracy over 2 tuning seeds (the paper tunes each
rule's lr), then trained over ``--seeds`` other seeds: validation accuracy, and accuracy on digits' test split
that neither the search nor the lr choice read, mean ± s.d. The hand-designed optimisers run as their rules of the
language (equal step for step to ``torch.optim`` and ``lit_automl.meta.PowerSign`` / ``AddSign``, tested in
tests/nas/test_update_rules.py), so every row trains through the same :class:`UpdateRuleEvaluator`.

``activations``: activation search (Ramachandran et al. 2018) as recipes/activation_search_digits.yaml sets it up, on
the same digits split: activations of one core unit (``ActivationSpace(num_units=1)``; Swish is one), each in every
ReLU place of a small CIFAR-style ResNet (ResNet-8, width 8: ours, the paper's child is ResNet-20 on CIFAR-10) trained
by the :class:`ActivationEvaluator`'s SGD (lr 0.1, momentum 0.9, weight decay 1e-4, cosine), PPO as above, with more
activations (``--act-children``, default 240). The 3 best distinct
activations are trained again next to ReLU, Swish (trainable beta) and Swish-1 (= SiLU) over ``--seeds`` seeds
(default 5) with the same training for all (the paper changes only the activation): validation and test accuracy.

Seeds: the search's children start from seed ``--seed``; lr tuning and the reported runs use other seeds (the child's
initial weights; the split and the data order stay fixed), so no reported run is one a choice was made on.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/learned_optimisers.py                 # about 10 minutes on 2 CPU cores
    OMP_NUM_THREADS=1 python benchmarks/learned_optimisers.py --parts rules activations   # about 5 minutes
    OMP_NUM_THREADS=1 python benchmarks/learned_optimisers.py --quick         # checks the script in about a minute
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from _harness import describe_machine, fmt_duration, fmt_mean_sd, format_table
from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
from lit_automl.meta import L2LMetaTrainer, LSTMOptimizer
from lit_automl.meta.functional import task_loss
from lit_automl.nas import ActivationEvaluator, ActivationSpace, RLSearch, UpdateRuleEvaluator, UpdateRuleSpace
from lit_automl.nas.activations import ACTIVATIONS
from lit_automl.nas.evaluator import Evaluator
from lit_automl.nas.unit_programs import UnitProgramEvaluator
from lit_automl.nas.update_rules import RULES, parse_rule

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


# ---------------------------------------------------------------------------------------- searched rules


SEARCH_LR = 0.01  # every rule's lr during the search (recipes/optimizer_search_digits.yaml; ours, see the evaluator)
MOMENTUM = 0.9
RULE_BASELINES = {  # row label: (rule of lit_automl.nas.update_rules.RULES, rule lr per unit of the optimiser's lr)
    "SGD": (RULES["sgd"], 1.0),
    "momentum 0.9": (RULES["momentum"], 1.0 / (1.0 - MOMENTUM)),  # torch.optim.SGD(momentum=0.9) at lr
    "Adam": (RULES["adam"], 1.0),
    "PowerSign": (RULES["powersign"], 1.0),
    "AddSign": (RULES["addsign"], 1.0),
}
RULE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Candidate:
    """One row of a searched-vs-hand-designed table: a rule (or activation) string and how it is trained."""

    name: str
    spec: str
    formula: str
    lr_scale: float = 1.0  # the evaluator's lr per unit of the lr printed (momentum: 1 / (1 - beta))
    reward: Optional[float] = None  # its search reward (found candidates only)


Score = Callable[[Candidate, float, int], Tuple[float, float]]
"""``score(candidate, lr, seed)``: validation and test accuracy of one child trained from scratch (NaN, NaN: it
diverged); the test split is the untouched one."""


class ScoredOnTestSplit(HoldoutDataModule):
    """A :class:`HoldoutDataModule` validating on the wrapped datamodule's test split: the same training images,
    scored on images neither the search nor the lr choice saw (an evaluator reads only ``val_dataloader``)."""

    def val_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def digits(test: bool = False, val_size: int = 300) -> HoldoutDataModule:
    """8x8 digits, ``val_size`` images held out of the training split for rewards and lr choice (the recipe's)."""
    return (ScoredOnTestSplit if test else HoldoutDataModule)(DigitsDataModule(batch_size=64), val_size=val_size)


def quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(...)`` with warnings and log lines below ERROR off (Lightning's notes at every fit, one line per failed
    child: the tables count the failures)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            return fn(*args, **kwargs)
        finally:
            logging.disable(logging.NOTSET)


def run_search(evaluator: Evaluator, children: int, per_step: int, epochs: int, seed: int) -> List[Dict[str, Any]]:
    """A PPO search (:class:`lit_automl.nas.RLSearch`, the recipe's controller: 1 x 32 LSTM, Adam 5e-3) of
    ``children`` children of ``epochs`` epochs, ``per_step`` per controller update, reward the last epoch's
    validation accuracy, a diverging child reward 0 (the recipe's); returns its record (``search.history``)."""
    if children < per_step or children % per_step:
        raise ValueError(f"children must be a positive multiple of {per_step}, got {children}")
    search = RLSearch(evaluator, algorithm="ppo", children_per_step=per_step, budget=epochs,
                      reward="final", on_child_failure="zero", steps_per_epoch=children // per_step, hidden_size=32,
                      num_layers=1, lr=5e-3, storage="memory", study_name="bench", seed=seed)
    with tempfile.TemporaryDirectory(prefix="learned_optimisers_") as tmp:
        make = functools.partial(pl.Trainer, max_epochs=1, limit_train_batches=None, accelerator="cpu", devices=1,
                                 logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, default_root_dir=tmp)
        quietly(lambda: make().fit(search))
    return list(search.history)


def top_found(history: Sequence[Mapping[str, Any]], k: int, space: Any) -> List[Candidate]:
    """The ``k`` best distinct completed children of a search record over ``space`` by reward (the earlier child on
    ties)."""
    done = sorted((h for h in history if h["state"] == "COMPLETE"), key=lambda h: (-h["reward"], h["child"]))
    out: List[Candidate] = []
    for h in done:
        program = space.from_json(h["architecture"])
        if all(c.spec != str(program) for c in out):
            out.append(Candidate(f"found #{len(out) + 1}", str(program), program.formula(), reward=float(h["reward"])))
        if len(out) == k:
            break
    return out


def choose_lr(scores: Mapping[float, Sequence[float]]) -> Optional[float]:
    """The lr with the highest mean accuracy over the tuning seeds, an lr where any seed diverged (NaN) left out
    (the smaller lr on ties); None when every lr diverged."""
    finite = [(statistics.fmean(accs), -lr, lr) for lr, accs in scores.items() if all(math.isfinite(a) for a in accs)]
    return max(finite)[2] if finite else None


def retrain(candidates: Sequence[Candidate], grid: Sequence[float], tune_seeds: Sequence[int],
            report_seeds: Sequence[int], score: Score) -> List[Dict[str, Any]]:
    """Each candidate at its best lr of ``grid`` (validation accuracy over ``tune_seeds``; a grid of one lr is not
    tuned), then trained afresh over ``report_seeds``: validation and test accuracies (NaN where a run diverged)."""
    results = []
    for c in candidates:
        lr = grid[0] if len(grid) == 1 else choose_lr({lr: [score(c, lr, s)[0] for s in tune_seeds] for lr in grid})
        runs = [score(c, lr, s) if lr is not None else (math.nan, math.nan) for s in report_seeds]
        val, test = [v for v, _ in runs], [t for _, t in runs]
        edge = len(grid) > 1 and lr in (min(grid), max(grid))
        results.append({"candidate": c, "lr": lr, "edge": edge, "val": val, "test": test})
    return results


def result_table(results: Sequence[Mapping[str, Any]], what: str) -> Tuple[List[str], List[List[str]]]:
    """Header and rows: name, formula, chosen lr (marked where it is the grid's end), validation / test accuracy
    (mean ± s.d. over the report seeds, diverged runs left out), search reward, seeds that diverged."""
    header = [what, "formula", "lr", "val acc", "test acc", "search reward", "seeds diverged"]
    rows = []
    for r in results:
        c = r["candidate"]
        cells = []
        for accs in (r["val"], r["test"]):
            ok = [a for a in accs if math.isfinite(a)]
            cells.append(fmt_mean_sd(ok, 3) if ok else "-")
        bad = sum(not (math.isfinite(v) and math.isfinite(t)) for v, t in zip(r["val"], r["test"]))
        lr = "-" if r["lr"] is None else f"{r['lr']:g}" + (" (grid edge)" if r.get("edge") else "")
        rows.append([c.name, c.formula, lr, *cells,
                     "" if c.reward is None else f"{c.reward:.3f}", f"{bad}/{len(r['val'])}"])
    return header, rows


@functools.lru_cache(maxsize=1)
def test_loader() -> DataLoader:
    """Digits' 360 test images (read once), which neither the search nor the lr choice sees."""
    data = digits(test=True)
    data.setup("fit")
    return data.val_dataloader()


def test_accuracy(module: pl.LightningModule) -> float:
    """The trained child's accuracy on :func:`test_loader` (its own test step)."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    return float(trainer.test(module, dataloaders=test_loader(), verbose=False)[0]["test/acc"])


def evaluator_score(make: Callable[[Callable[[], HoldoutDataModule], float, int], UnitProgramEvaluator],
                    epochs: int) -> Score:
    """Scores a candidate by training the child the evaluator ``make(datamodule factory, lr, seed)`` builds, through
    its public API (``train_child``, its training loop): validation accuracy from the training run, test accuracy
    of the same trained child; a run whose loss turns non-finite scores NaN."""

    def score(c: Candidate, lr: float, seed: int) -> Tuple[float, float]:
        evaluator = make(digits, lr * c.lr_scale, seed)
        trained: Dict[str, Any] = {}

        def keep_child(program: Any) -> Tuple[torch.nn.Module, pl.LightningModule]:
            trained["network"], trained["module"] = evaluator.child(program)
            return trained["network"], trained["module"]

        try:
            out = quietly(evaluator.train_child, evaluator.space.parse(c.spec), epochs, None, keep_child)
        except FloatingPointError:  # the child's loss became non-finite: it diverged at this lr
            return math.nan, math.nan
        return float(out["val_acc"]), quietly(test_accuracy, trained["module"])

    return score


def part_rules(children: int, per_step: int, epochs: int, grid: Sequence[float], tune_seeds: Sequence[int],
               report_seeds: Sequence[int], seed: int = 0, filters: int = 16, top_k: int = 3,
               trainer_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[List[str], List[List[str]]]:
    """Neural optimiser search (Bello et al. 2017) on digits, then its top rules next to the hand-designed ones;
    prints the budgets and the table, returns the table."""
    start = time.perf_counter()
    space = UpdateRuleSpace(num_units=2)
    evaluator = UpdateRuleEvaluator(space, digits, lr=SEARCH_LR, filters=filters, trainer_kwargs=trainer_kwargs,
                                    seed=seed)
    history = run_search(evaluator, children, per_step, epochs, seed)
    failed = sum(h["state"] != "COMPLETE" for h in history)
    found = top_found(history, top_k, space)
    searched = time.perf_counter() - start
    baselines = [Candidate(name, rule, parse_rule(rule).formula(), scale) for name, (rule, scale) in RULE_BASELINES.items()]
    score = evaluator_score(lambda data, lr, s: UpdateRuleEvaluator(space, data, lr=lr, filters=filters,
                                                                   trainer_kwargs=trainer_kwargs, seed=s), epochs)
    results = retrain(found + baselines, grid, tune_seeds, report_seeds, score)
    header, rows = result_table(results, "update rule")
    print(f"\n== neural optimiser search (Bello et al. 2017) on 8x8 digits: {children} rules of 2 units sampled by "
          f"PPO ({per_step} per controller update; 1x32 LSTM, Adam 5e-3; seed {seed}), each scored by the child "
          f"ConvNet (2 x 3x3 conv, {filters} filters, BN, ReLU) after {epochs} epoch(s) at lr {SEARCH_LR} on 1137 "
          f"training images: reward = accuracy on 300 validation images held out of them; {failed} child(ren) "
          f"diverged (reward 0); search {fmt_duration(searched)} ==")
    print(f"retraining: each rule's lr from {list(grid)} by mean validation accuracy over seeds {list(tune_seeds)}; "
          f"then {epochs} epoch(s) over seeds {list(report_seeds)} (child initial weights; data order fixed): "
          "val acc = the 300 validation images, test acc = digits' 360 test images no choice saw "
          "(mean ± s.d.; diverged runs left out and counted)")
    print("SGD, momentum 0.9, Adam, PowerSign and AddSign run as their rules in the language, in the same child and "
          "loop (equal step for step to torch.optim.SGD, SGD(momentum=0.9), Adam and lit_automl.meta.PowerSign / "
          "AddSign (beta 0.9, no sign decay): tests/nas/test_update_rules.py); momentum's lr is torch's, its rule "
          f"runs at lr / (1 - {MOMENTUM})")
    print(format_table(header, rows, align="llrrrrr"))
    print(f"rules part: {fmt_duration(time.perf_counter() - start)}")
    return header, rows


# ---------------------------------------------------------------------------------------- searched activations


ACTIVATION_BASELINES = {"ReLU": "relu", "Swish": "swish", "Swish-1 (SiLU)": "swish_1"}  # names of ACTIVATIONS
ACTIVATION_LR = 0.1  # the child's SGD lr (ActivationEvaluator's default): one training setup for every activation


def part_activations(children: int, per_step: int, epochs: int, report_seeds: Sequence[int], seed: int = 0,
                     width: int = 8, blocks: int = 1, num_units: int = 1, top_k: int = 3,
                     trainer_kwargs: Optional[Dict[str, Any]] = None) -> Tuple[List[str], List[List[str]]]:
    """Activation search (Ramachandran et al. 2018) on digits, then its top activations next to ReLU, Swish and
    Swish-1 (SiLU); prints the budgets and the table, returns the table."""
    start = time.perf_counter()
    space = ActivationSpace(num_units=num_units)

    def make(data: Callable[[], HoldoutDataModule], lr: float, s: int) -> ActivationEvaluator:
        return ActivationEvaluator(space, data, lr=lr, width=width, blocks=blocks, trainer_kwargs=trainer_kwargs,
                                   seed=s)

    history = run_search(make(digits, ACTIVATION_LR, seed), children, per_step, epochs, seed)
    failed = sum(h["state"] != "COMPLETE" for h in history)
    found = top_found(history, top_k, space)
    searched = time.perf_counter() - start
    baselines = []
    for name, known in ACTIVATION_BASELINES.items():
        program = space.parse(ACTIVATIONS[known])
        baselines.append(Candidate(name, str(program), program.formula()))
    results = retrain(found + baselines, [ACTIVATION_LR], [], report_seeds, evaluator_score(make, epochs))
    header, rows = result_table(results, "activation")
    layers = 6 * blocks + 2
    print(f"\n== activation search (Ramachandran et al. 2018) on 8x8 digits: {children} activations of {num_units} "
          f"core unit(s) sampled by PPO ({per_step} per controller update; 1x32 LSTM, Adam 5e-3; seed {seed}), each "
          f"in every ReLU place of a ResNet-{layers} (width {width}, {blocks} block(s) per stage; the paper: "
          f"ResNet-20 on CIFAR-10) trained {epochs} epoch(s) by SGD lr {ACTIVATION_LR}, momentum 0.9, weight decay "
          f"1e-4, cosine, on 1137 training images: reward = accuracy on 300 validation images held out of them; "
          f"{failed} child(ren) diverged (reward 0); search {fmt_duration(searched)} ==")
    print(f"retraining: the same training for every activation (as the paper: only the activation changes), "
          f"{epochs} epoch(s) over seeds {list(report_seeds)} (child initial weights; data order fixed): val acc = the "
          "300 validation images, test acc = digits' 360 test images the search never read (mean ± s.d.; diverged "
          "runs left out and counted)")
    print(format_table(header, rows, align="llrrrrr"))
    print(f"activations part: {fmt_duration(time.perf_counter() - start)}")
    return header, rows


def part_l2l(args: argparse.Namespace) -> None:
    """The L2L LSTM against SGD / RMSprop / Adam / NAG on its training tasks and the generalisation tasks."""
    episodes = args.episodes or (3 if args.quick else 300)
    n_test = args.test_episodes or (2 if args.quick else 10)
    n_tune = args.tune_episodes or (1 if args.quick else 3)
    tune_eps = [TUNE_OFFSET + i for i in range(n_tune)]
    test_eps = [TEST_OFFSET + i for i in range(n_test)]
    print(f"\n== L2L: meta-training: {episodes} episodes per task, unroll 100, truncation 20, Adam 1e-3; "
          f"baselines tuned over lr {args.lr_grid} on {n_tune} tuning episodes; seed {args.seed} ==")

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


PARTS = ("l2l", "rules", "activations")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="l2l: meta-training episodes per task (default 300; --quick 3)")
    parser.add_argument("--test-episodes", type=int, default=None, help="l2l: held-out episodes (default 10; --quick 2)")
    parser.add_argument("--tune-episodes", type=int, default=None, help="l2l: tuning episodes (default 3; --quick 1)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0],
                        help="l2l: learning rates tried for each hand-designed optimiser")
    parser.add_argument("--steps", type=int, default=100, help="l2l: optimisee steps evaluated (the paper's 100)")
    parser.add_argument("--children", type=int, default=None,
                        help="rules: rules the search samples (a multiple of 4; default 200, --quick 8)")
    parser.add_argument("--child-epochs", type=int, default=None,
                        help="rules, activations: epochs of every child, searched and retrained (default 3, --quick 1)")
    parser.add_argument("--rule-lr-grid", type=float, nargs="+", default=None,
                        help=f"rules: learning rates tried for each rule (default {list(RULE_GRID)})")
    parser.add_argument("--act-children", type=int, default=None,
                        help="activations: activations the search samples (a multiple of 4; default 240, --quick 8)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="rules / activations: report seeds (default 3 / 5, --quick 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="runs/learned_optimisers_l2l.png")
    parser.add_argument("--quick", action="store_true", help="tiny budgets in every part: checks the script")
    args = parser.parse_args(argv)
    children = args.children or (8 if args.quick else 200)
    for flag, value in (("--children", args.children), ("--act-children", args.act_children)):
        if value is not None and (value < 4 or value % 4):
            parser.error(f"{flag} must be a positive multiple of 4, got {value}")
    epochs = args.child_epochs or (1 if args.quick else 3)
    grid = args.rule_lr_grid or ([1e-3, 1e-2, 0.1] if args.quick else list(RULE_GRID))
    n_seeds = args.seeds or (2 if args.quick else 3)
    tune_seeds = [args.seed + 1] if args.quick else [args.seed + 1, args.seed + 2]
    report_seeds = [tune_seeds[-1] + 1 + i for i in range(n_seeds)]  # disjoint from the search's and the tuning's
    print(describe_machine())
    start = time.perf_counter()
    if "l2l" in args.parts:
        part_l2l(args)
    if "rules" in args.parts:
        part_rules(children, 4, epochs, grid, tune_seeds, report_seeds, seed=args.seed)
    if "activations" in args.parts:
        act_seeds = [args.seed + 1 + i for i in range(args.seeds or (2 if args.quick else 5))]
        part_activations(args.act_children or (8 if args.quick else 240), 4, epochs, act_seeds, seed=args.seed)
    print(f"\ntotal {fmt_duration(time.perf_counter() - start)}")


if __name__ == "__main__":
    main(sys.argv[1:])

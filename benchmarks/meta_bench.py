#!/usr/bin/env python
"""Meta-learning figures: adaptation quality and meta-step speed, side by side with the alternatives.

Three parts (``--parts``):

* ``sinusoid``: Finn et al. 2017, Sec. 5.1 -- post-adaptation MSE after 1 and 10 SGD steps
  (alpha = 0.01) on 600 test tasks (K = 10), for MAML, FOMAML, Reptile and a network pretrained
  on all tasks jointly (the paper's baseline), with 95% confidence intervals.
* ``digits``: 5-way 1-shot and 5-shot meta-test accuracy on rotated digits (40 classes, 600 test
  tasks, 95% confidence intervals) for MAML, FOMAML, Reptile, LEAP and training from a random init.
* ``speed``: seconds per meta-step (meta-gradient + Adam step, no Trainer) of MAML's 4-conv
  Omniglot model, 5-way 1-shot, 15 queries per class, 28x28 inputs, 1 inner step: second and first
  order, 4 and 25 tasks per meta-batch, vmap against a per-task loop.

Training budgets are this script's (``--meta-steps``), far below the papers'; the settings of each
run are printed with its row. Usage::

    python benchmarks/meta_bench.py                       # everything (about 15 minutes on 2 CPU cores)
    python benchmarks/meta_bench.py --parts speed
    python benchmarks/meta_bench.py --quick               # tiny budgets: checks the script in a minute
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch import nn
from tqdm import tqdm

from _harness import describe_machine, fmt_mean_ci, format_table
from lit_automl.datamodules import DigitsTasksDataModule, SinusoidDataModule
from lit_automl.meta import MAML, ConvNet4, Leap, MetaLearner, Reptile, SinusoidMLP


def fit(module: pl.LightningModule, data: pl.LightningDataModule, steps: int) -> float:
    """Meta-train for ``steps`` meta-batches; returns seconds."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=True, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, data)
    return time.perf_counter() - start


def evaluate(module: MetaLearner, data: pl.LightningDataModule, steps: int, desc: str) -> List[float]:
    """Per-test-task query metric (accuracy for classification, MSE for regression) after ``steps`` adaptation steps."""
    data.setup("test")
    module.eval()
    out: List[float] = []
    for batch in tqdm(data.test_dataloader(), desc=desc, leave=False):
        support, query = module.split_batch(batch)
        for t in range(support[0].shape[0]):
            adapted = module.adapt((support[0][t], support[1][t]), steps=steps)
            with torch.no_grad():
                metrics = module.task_metrics(adapted(query[0][t]), query[1][t])
            out.append(float(metrics["acc"] if "acc" in metrics else metrics["loss"]))
    return out


# --------------------------------------------------------------------------- sinusoid
class Pretrained(pl.LightningModule):
    """The paper's baseline: one network regressed on the points of all training tasks jointly."""

    def __init__(self, model: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        x = torch.cat([batch["support"][0], batch["query"][0]], 1).flatten(0, 1)
        y = torch.cat([batch["support"][1], batch["query"][1]], 1).flatten(0, 1)
        return nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def sinusoid_part(steps: int, test_tasks: int, only: Sequence[str] = ()) -> None:
    print(f"\n== sinusoid regression (Finn et al. 2017, Sec. 5.1): K=10, {steps} meta-steps of 25 tasks, "
          f"{test_tasks} test tasks; post-adaptation MSE (mean +- 95% CI) ==")
    def data() -> SinusoidDataModule:
        return SinusoidDataModule(k_shot=10, q_queries=10, tasks_per_batch=25, train_batches=steps, test_tasks=test_tasks)

    runs: Dict[str, Tuple[MetaLearner, str, pl.LightningModule]] = {}
    pl.seed_everything(0)
    runs["MAML"] = (MAML(SinusoidMLP()), "alpha 0.01, 1 step, Adam 1e-3", None)
    pl.seed_everything(0)
    runs["FOMAML"] = (MAML(SinusoidMLP(), first_order=True), "alpha 0.01, 1 step, Adam 1e-3", None)
    pl.seed_everything(0)
    runs["Reptile"] = (Reptile(SinusoidMLP(), loss="mse", inner_optimizer="sgd", inner_lr=0.01, inner_steps=5,
                               inner_batch_size=10, outer_lr=0.1, outer_lr_final=0.0),
                       "ours: SGD 0.01, 5 steps of 10 points, outer 0.1 -> 0", None)
    pl.seed_everything(0)
    baseline_net = SinusoidMLP()
    runs["pretrained"] = (MAML(baseline_net), "Adam 1e-3 on all tasks' points; fine-tuned with alpha 0.01",
                          Pretrained(baseline_net))
    rows = []
    for name, (module, settings, trainable) in runs.items():
        if only and name not in only:
            continue
        seconds = fit(trainable or module, data(), steps)
        cells = [fmt_mean_ci(evaluate(module, data(), s, f"{name} {s}-step")) for s in (1, 10)]
        rows.append([name, *cells, f"{seconds:.0f}", settings])
    print(format_table(["method", "MSE 1 step", "MSE 10 steps", "train s", "settings"], rows, align="lrrrl"))


# --------------------------------------------------------------------------- digits
def digits_part(steps: int, test_tasks: int, only: Sequence[str] = ()) -> None:
    print(f"\n== rotated digits, 5-way (40 classes: 24/8/8), {steps} meta-steps, {test_tasks} test tasks; "
          "meta-test accuracy (mean +- 95% CI) ==")
    net = lambda: ConvNet4(n_way=5, in_channels=1, hidden=32)  # noqa: E731
    methods: Dict[str, Tuple[Callable[[], MetaLearner], int, int, str]] = {
        # name: (factory, tasks per meta-batch, meta-steps, settings)
        "MAML": (lambda: MAML(net(), loss="cross_entropy", inner_lr=0.4, eval_inner_steps=3), 8, steps,
                 "alpha 0.4, 1 step (3 at test), Adam 1e-3"),
        "FOMAML": (lambda: MAML(net(), loss="cross_entropy", inner_lr=0.4, eval_inner_steps=3, first_order=True), 8, steps,
                   "alpha 0.4, 1 step (3 at test), Adam 1e-3"),
        "Reptile": (lambda: Reptile(net()), 5, steps, "Adam(beta1=0) 1e-3, 5 steps of 10, 50 at test, outer 1 -> 0"),
        "LEAP": (lambda: Leap(net(), inner_steps=20, eval_inner_steps=20), 10, max(steps // 5, 1),
                 "SGD 0.1, 20 task steps (20 at test), meta SGD 0.1"),
        "random init": (lambda: Leap(net(), inner_steps=20, eval_inner_steps=20), 10, 0,
                        "no meta-training; SGD 0.1, 20 steps at test"),
    }
    rows = []
    for name, (factory, tasks, n_steps, settings) in methods.items():
        if only and name not in only:
            continue
        cells, total = [], 0.0
        for shots in (1, 5):
            pl.seed_everything(0)
            module = factory()
            data = DigitsTasksDataModule(n_way=5, k_shot=shots, q_queries=15, tasks_per_batch=tasks,
                                         train_batches=max(n_steps, 1), test_tasks=test_tasks)
            if n_steps:
                total += fit(module, data, n_steps)
            accs = evaluate(module, data, module.hparams.eval_inner_steps, f"{name} {shots}-shot")
            cells.append(fmt_mean_ci(accs, scale=100, decimals=1, unit="%"))
        rows.append([name, *cells, f"{total:.0f}", f"{settings} ({n_steps} meta-steps of {tasks} tasks)"])
    print(format_table(["method", "1-shot", "5-shot", "train s", "settings"], rows, align="lrrrl"))


# --------------------------------------------------------------------------- speed
def speed_part(repeats: int) -> None:
    print(f"\n== seconds per meta-step: MAML 4-conv Omniglot model (64 filters), 5-way 1-shot, 15 queries per class, "
          f"28x28, 1 inner step; median of {repeats} after 2 warm-up; torch threads {torch.get_num_threads()} ==")
    rows = []
    g = torch.Generator().manual_seed(0)
    for order in (2, 1):
        for tasks in (4, 25):
            support = (torch.rand(tasks, 5, 1, 28, 28, generator=g), torch.arange(5).repeat(tasks, 1))
            query = (torch.rand(tasks, 75, 1, 28, 28, generator=g), torch.arange(5).repeat_interleave(15).repeat(tasks, 1))
            cells = []
            for batching in ("vmap", "loop"):
                torch.manual_seed(0)
                m = MAML(ConvNet4(n_way=5), loss="cross_entropy", inner_lr=0.4, first_order=order == 1,
                         task_batching=batching)
                opt = torch.optim.Adam(m.meta_parameters(), lr=1e-3)
                times = []
                for i in range(repeats + 2):
                    start = time.perf_counter()
                    grads, _ = m.meta_gradient(support, query)
                    for p, gr in zip(m.meta_parameters(), grads):
                        p.grad = gr
                    opt.step()
                    if i >= 2:
                        times.append(time.perf_counter() - start)
                cells.append(statistics.median(times))
            rows.append([order, tasks, f"{cells[0]:.4f}", f"{cells[1]:.4f}"])
    print(format_table(["order", "tasks", "vmap s", "loop s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("sinusoid", "digits", "speed"), default=["speed", "sinusoid", "digits"])
    parser.add_argument("--meta-steps", type=int, default=None, help="meta-steps per method (default: 3000 sinusoid, 500 digits)")
    parser.add_argument("--test-tasks", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=10, help="timed meta-steps per speed cell")
    parser.add_argument("--methods", nargs="+", default=[],
                        help="only these rows (e.g. MAML Reptile LEAP 'random init' pretrained)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.meta_steps, args.test_tasks, args.repeats = args.meta_steps or 10, 20, 2
    print(describe_machine())
    if "speed" in args.parts:
        speed_part(args.repeats)
    if "sinusoid" in args.parts:
        sinusoid_part(args.meta_steps or 3000, args.test_tasks, args.methods)
    if "digits" in args.parts:
        digits_part(args.meta_steps or 500, args.test_tasks, args.methods)


if __name__ == "__main__":
    main()

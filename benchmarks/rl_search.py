"""RL architecture search figures, side by side with what a user would otherwise pick.

    python benchmarks/rl_search.py                 # all parts (about 10 minutes on 2 CPU cores)
    python benchmarks/rl_search.py --parts counts controller
    python benchmarks/rl_search.py --parts search --seeds 0 1 2 --children 32

Parts:
* ``counts``: parameters of NASNet-A 6@768 and FractalNet 20 layers, next to the counts their
  papers publish for the same networks (3.3M and 38.6M): a check of the construction, not a peer.
* ``controller``: seconds per controller update (sample m=8 + update) for REINFORCE and PPO on the
  NAS-RL chain space and the NASNet cell space (paper controller sizes).
* ``workers``: children per minute on digits, evaluated in the controller's process vs. 2 worker
  processes (1 torch thread each) through the Optuna child queue.
* ``search``: NAS-RL (REINFORCE) and PPO vs. random search with the same evaluator and number of
  children on digits (chain space, 6 layers, 3-epoch children): best and late-mean held-out
  accuracy over seeds.
* ``fractal``: FractalNet training-step time with local / global / no drop-path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch
from _harness import describe_machine, fmt_mean_sd, format_table


def part_counts() -> None:
    from lit_automl.spaces import FractalNet, NASNetCIFAR

    with torch.device("meta"):
        nasnet = NASNetCIFAR("NASNet_A", N=6, F=32, auxiliary=False)
        fractal = FractalNet()
    n = sum(p.numel() for p in nasnet.parameters())
    f = sum(p.numel() for p in fractal.parameters())
    print("\n== parameter counts (no auxiliary head) ==")
    print(format_table(["network", "ours", "published", "notes"], [
        ["NASNet-A 6@768 CIFAR-10", f"{n:,d}", "3.3M", f"penultimate filters {nasnet.penultimate_filters}"],
        ["FractalNet 20 layers (C=3) CIFAR", f"{f:,d}", "38.6M", ""]], align="lrrl"))


def part_controller(repeats: int = 5) -> None:
    from lit_automl.nas.controller import Controller
    from lit_automl.nas.policy_gradient import PPO, Reinforce
    from lit_automl.spaces import ChainSpace, NASNetCellSpace

    print("\n== controller update (sample 8 + update), s, median of", repeats, "==")
    rows = []
    for label, space, hidden, layers in (("NAS-RL chain 15 layers", ChainSpace(num_layers=15), 35, 2),
                                          ("NASNet cells B=5", NASNetCellSpace(), 100, 1)):
        row = []
        for algo, lr in ((Reinforce, 6e-4), (PPO, 3.5e-4)):  # the papers' Adam step sizes
            torch.manual_seed(0)
            ctrl = Controller(space.decisions(), hidden_size=hidden, num_layers=layers)
            update, optimizer = algo(), torch.optim.Adam(ctrl.parameters(), lr=lr)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                with torch.no_grad():
                    actions, _, _ = ctrl.sample(8)
                update.step(ctrl, optimizer, actions, torch.rand(8).tolist())
                times.append(time.perf_counter() - start)
            row.append(statistics.median(times))
        rows.append([f"{label} ({len(space.decisions())})", f"{layers}x{hidden} LSTM", f"{row[0]:.4f}", f"{row[1]:.4f}"])
    print(format_table(["space (decisions)", "controller", "REINFORCE", "PPO (4 ep.)"], rows, align="llrr"))


def _digits_evaluator(space, budget_batches=None):
    from lit_automl.datamodules import DigitsDataModule, HoldoutDataModule
    from lit_automl.nas import TrainingEvaluator

    kwargs = {"limit_train_batches": budget_batches} if budget_batches else None
    return TrainingEvaluator(space, lambda: HoldoutDataModule(DigitsDataModule(batch_size=64), val_size=300), lr=0.05,
                             trainer_kwargs=kwargs)


def part_workers(children: int = 8) -> None:
    import pytorch_lightning as pl

    from lit_automl.nas import NASRL
    from lit_automl.spaces import ChainSpace

    print(f"\n== child throughput on digits ({children} children, 3 epochs each; includes worker start-up) ==")
    rows = []
    for label, n_workers, threads in (("in the controller process (2 threads)", 0, None),
                                      ("2 worker processes (1 thread each)", 2, 1)):
        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory() as tmp:
            search = NASRL(_digits_evaluator(ChainSpace(num_layers=4)), grow_depth=False, children_per_step=children,
                           budget=3, steps_per_epoch=1, hidden_size=16, num_layers=1, n_workers=n_workers,
                           threads_per_worker=threads, storage=f"sqlite:///{Path(tmp) / 'c.db'}", study_name="bench")
            trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, default_root_dir=tmp)
            start = time.perf_counter()
            trainer.fit(search)
            seconds = time.perf_counter() - start
        rows.append([label, f"{seconds:.1f}", f"{60 * children / seconds:.1f}"])
    print(format_table(["evaluated", "s", "children/min"], rows))


def _random_actions(space, gen: torch.Generator) -> list:
    actions, n_anchor = [], 0
    for d in space.decisions():
        if d.kind == "anchor":
            actions.append(torch.randint(0, 2, (n_anchor,), generator=gen).tolist())
            n_anchor += 1
        else:
            actions.append(int(torch.randint(0, d.num_choices, (1,), generator=gen)))
    return actions


def part_search(seeds: List[int], children: int) -> None:
    import pytorch_lightning as pl

    from lit_automl.nas import NASRL
    from lit_automl.spaces import ChainSpace

    torch.set_num_threads(2)
    space = ChainSpace(num_layers=6)
    m = 4
    print(f"\n== search on digits: {children} children per run, chain space (6 layers), 3-epoch children, "
          f"held-out accuracy; seeds {seeds} ==")
    table: Dict[str, List[tuple]] = {}
    for seed in seeds:
        ev = _digits_evaluator(space)
        gen = torch.Generator().manual_seed(seed)
        accs = [ev.evaluate(space.decode(_random_actions(space, gen)), 3)["val_acc"] for _ in range(children)]
        table.setdefault("random search", []).append((max(accs), statistics.mean(accs[-m * 2:]), statistics.mean(accs)))
        print(f"  seed {seed} random search: best {max(accs):.4f}", flush=True)
        for label, algo in (("NAS-RL REINFORCE", "reinforce"), ("PPO", "ppo")):
            with tempfile.TemporaryDirectory() as tmp:
                search = NASRL(_digits_evaluator(space), grow_depth=False, algorithm=algo, children_per_step=m, budget=3,
                               reward="max_last5", steps_per_epoch=children // m, hidden_size=32, num_layers=1, lr=0.005,
                               seed=seed, storage=f"sqlite:///{Path(tmp) / 'c.db'}", study_name="bench")
                pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                           enable_model_summary=False, default_root_dir=tmp).fit(search)
            accs = [h["val_acc"] for h in search.history]
            table.setdefault(label, []).append((max(accs), statistics.mean(accs[-m * 2:]), statistics.mean(accs)))
            print(f"  seed {seed} {label}: best {max(accs):.4f}", flush=True)
    rows = [[label, *(fmt_mean_sd([r[i] for r in runs]) for i in range(3))] for label, runs in table.items()]
    print("mean ± s.d. over seeds")
    print(format_table(["method", "best acc", "mean of last 8", "mean of all"], rows))


def part_fractal(repeats: int = 5) -> None:
    from lit_automl.spaces import FractalNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = FractalNet(channels=(16, 32, 64), dropout=(0.0, 0.1, 0.2))
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    print("\n== FractalNet training step (C=3, channels 16/32/64, batch 64, 32x32), s, median of", repeats, "==")
    rows = []
    for label, kwargs in (("no drop-path (all columns)", {"local_drop": 0.0, "global_ratio": 0.0}),
                          ("local drop-path 0.15 only", {"local_drop": 0.15, "global_ratio": 0.0}),
                          ("paper mix: 50% global / 50% local", {"local_drop": 0.15, "global_ratio": 0.5})):
        net.local_drop, net.global_ratio = kwargs["local_drop"], kwargs["global_ratio"]
        net.train()
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        rows.append([label, f"{statistics.median(times[1:]):.4f}"])
    print(format_table(["drop-path", "s / step"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["counts", "controller", "fractal", "workers", "search"],
                        choices=["counts", "controller", "fractal", "workers", "search"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--children", type=int, default=32, help="children per search run (part search)")
    parser.add_argument("--worker-children", type=int, default=24, help="children timed in part workers")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    import warnings

    warnings.filterwarnings("ignore")
    print(describe_machine())
    for part in args.parts:
        if part == "counts":
            part_counts()
        elif part == "controller":
            part_controller()
        elif part == "fractal":
            part_fractal()
        elif part == "workers":
            part_workers(args.worker_children)
        elif part == "search":
            part_search(args.seeds, args.children)


if __name__ == "__main__":
    main()

"""Sample-based searches on a tabular benchmark: a tiny NATS-Bench single file holding every NB201 cell."""

from __future__ import annotations

import bz2
import json
import pickle
from pathlib import Path

import pytest

from lit_automl.spaces import NB201Space

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SEED = 777


def accuracy(arch: str) -> float:
    """The tiny benchmark's validation accuracy (percent): 40 + 10 per nor_conv_3x3 edge (all six: 100)."""
    return 40.0 + 10.0 * arch.count("nor_conv_3x3")


def results_count(arch: str, epochs: int) -> dict:
    """A ResultsCount that records the last epoch's accuracies only (the reader keeps the epochs recorded)."""
    last = epochs - 1
    return {"params": 0.1 + 0.01 * arch.count("conv"), "flop": 10.0, "seed": SEED, "epochs": epochs,
            "latency": [0.01], "train_times": {0: 5.0},
            "eval_acc1es": {f"x-valid@{last}": accuracy(arch), f"ori-test@{last}": accuracy(arch) - 1.0}}


def write_benchmark(path: Path) -> Path:
    """Every NB201 cell (in NB201Space's token order; the benchmark's own order does not matter here) with
    its 12-epoch results on cifar10-valid."""
    space = NB201Space()
    archs = [str(space.decode(list(t))) for t in _all_tokens()]
    infos = {i: {"12": {"arch_index": i, "arch_str": a, "dataset_seed": {"cifar10-valid": [SEED]},
                        "all_results": {("cifar10-valid", SEED): results_count(a, 12)}, "clear_net_done": True}}
             for i, a in enumerate(archs)}
    with bz2.open(path, "wb", compresslevel=1) as f:
        pickle.dump({"meta_archs": archs, "total_archs": len(archs), "arch2infos": infos,
                     "evaluated_indexes": set(infos)}, f, protocol=4)
    return path


def _all_tokens():
    import itertools

    return itertools.product(range(5), repeat=6)


@pytest.fixture(scope="module")
def nats_file(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("nats") / "NATS-tss-v1_0-3ffb9.pickle.pbz2")


def test_the_tabular_evolution_recipe_runs_on_the_benchmark_file_and_sums_simulated_time(nats_file, tmp_path,
                                                                                       monkeypatch):
    from lit_automl.cli import main

    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(RECIPES / "evolution_nb201_tabular.yaml"),
          f"--model.init_args.evaluator.init_args.path={nats_file}", "--trainer.max_epochs=1",
          "--model.init_args.steps_per_epoch=60", "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / "evolution_nb201_tabular" / "search"
    children = [json.loads(line) for line in (run / "children.jsonl").read_text().splitlines()]
    assert len(children) == 60
    assert all(c["train_seconds"] == pytest.approx(5.0 * 12) for c in children), "simulated: 5 s x 12 epochs"
    best = max(c["reward"] for c in children)
    random_expectation = 0.40 + 0.10 * 6 / 5  # a uniform cell has 1.2 nor_conv_3x3 edges on average
    assert best >= 0.8 > random_expectation + 0.2, "evolution climbs toward cells of nor_conv_3x3 edges"
    arch = (run / "best_architecture.txt").read_text().strip()
    assert accuracy(arch) / 100 == pytest.approx(best)
    from PIL import Image

    width, _ = Image.open(run / "search_history.png").size
    assert width > 1000, "two panels: against children and against summed simulated seconds"

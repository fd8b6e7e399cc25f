"""TabularEvaluator on tiny benchmark files written in each released layout (exact key names).

Accuracies in the files are percentages; epochs count from 0 (``x-valid@2`` is after the 3rd epoch).
Each tiny file holds 3 architectures in ``meta_archs`` (the third never evaluated), 3 epochs of
results per training, 2 seeds (777, 888) on most datasets.
"""

from __future__ import annotations

import bz2
import pickle
import sys
from collections import OrderedDict

import pytest
import torch

from lit_automl.nas import tabular
from lit_automl.nas.evaluator import reward_from_metrics
from lit_automl.nas.tabular import TabularEvaluator
from lit_automl.spaces.decisions import Decision, DecisionSpace

ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
]
NOT_IN_SPACE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~9|"
EPOCHS = 3
SETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",),
        "cifar100": ("x-valid", "x-test", "ori-test"), "ImageNet16-120": ("x-valid", "x-test", "ori-test")}
SEEDS = {"cifar10-valid": [777, 888], "cifar10": [777, 888, 999], "cifar100": [777, 888], "ImageNet16-120": [777]}
BASE = {"cifar10-valid": 30.0, "cifar10": 32.0, "cifar100": 10.0, "ImageNet16-120": 5.0}
OFFSET = {"x-valid": 0.0, "ori-test": 1.0, "x-test": 3.0}
PARAMS = {"cifar10-valid": 0.372346, "cifar10": 0.372346, "cifar100": 0.378196, "ImageNet16-120": 0.391336}
FLOP = {"cifar10-valid": 53.2, "cifar10": 53.2, "cifar100": 53.21, "ImageNet16-120": 13.3}


def acc(dataset, setname, seed, epoch, long, arch):
    """The percentage the tiny files record (distinct per dataset, set, seed, epoch, budget, arch)."""
    return BASE[dataset] + OFFSET[setname] + 10.0 * epoch + 2.0 * (seed == 888) + 4.0 * (seed == 999) \
        + 20.0 * long + 0.5 * arch


def per_epoch_time(dataset, seed):
    return {"cifar10-valid": 10.0, "cifar10": 20.0, "cifar100": 21.0, "ImageNet16-120": 60.0}[dataset] + 2.0 * (seed == 888)


def results_count(dataset, seed, long, arch, sparse_valid=False, train_times=True):
    """One ResultsCount state dict (the keys of ``ResultsCount.__dict__``)."""
    eval_acc1es, eval_losses, eval_times = {}, {}, {}
    for setname in SETS[dataset]:
        for i in range(EPOCHS):
            if sparse_valid and setname == "x-valid" and dataset != "cifar10-valid" and i != EPOCHS - 1:
                continue  # old NAS-Bench-201 results: cifar100 / ImageNet16-120 x-valid after the last epoch only
            eval_acc1es[f"{setname}@{i}"] = acc(dataset, setname, seed, i, long, arch)
            eval_losses[f"{setname}@{i}"] = 1.0 / (i + 1)
            eval_times[f"{setname}@{i}"] = 0.5
    return {
        "name": dataset, "net_state_dict": None,
        "train_acc1es": {i: 50.0 + i for i in range(EPOCHS)}, "train_acc5es": {i: 80.0 + i for i in range(EPOCHS)},
        "train_losses": {i: 2.0 - 0.1 * i for i in range(EPOCHS)},
        "train_times": OrderedDict((i, per_epoch_time(dataset, seed)) for i in range(EPOCHS)) if train_times else None,
        "arch_config": {"channel": 16, "num_cells": 5, "arch_str": ARCHS[arch], "class_num": 10},
        "params": PARAMS[dataset], "flop": FLOP[dataset], "seed": seed, "epochs": EPOCHS,
        "latency": [0.01 + 0.002 * (seed == 888)],
        "eval_names": list(SETS[dataset]), "eval_acc1es": eval_acc1es, "eval_times": eval_times,
        "eval_losses": eval_losses,
    }


def arch_results(arch, long, datasets=tuple(SETS), **kwargs):
    """One ArchResults state dict (the keys of ``ArchResults.__dict__``)."""
    return {
        "arch_index": arch, "arch_str": ARCHS[arch],
        "all_results": {(d, s): results_count(d, s, long, arch, **kwargs) for d in datasets for s in SEEDS[d]},
        "dataset_seed": {d: sorted(SEEDS[d]) for d in datasets},
        "clear_net_done": True,
    }


def nats_record(arch):
    return OrderedDict([("12", arch_results(arch, long=False)), ("200", arch_results(arch, long=True))])


def write_pbz2(obj, path):
    with bz2.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


@pytest.fixture
def simple_dir(tmp_path):
    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    write_pbz2({"meta_archs": ARCHS, "total_archs": len(ARCHS), "arch2infos": None, "evaluated_indexes": set()},
               folder / "meta.pickle.pbz2")
    for i in (0, 1):
        write_pbz2(nats_record(i), folder / f"{i:06d}.pickle.pbz2")
    return folder


@pytest.fixture
def single_file(tmp_path):
    return write_pbz2({"meta_archs": ARCHS, "total_archs": len(ARCHS), "arch2infos": {i: nats_record(i) for i in (0, 1)},
                       "evaluated_indexes": {0, 1}}, tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")


@pytest.fixture
def pth_file(tmp_path):
    """v1_0-like: 'less' holds cifar10-valid only (and no train times); 'full' evaluates cifar100 and
    ImageNet16-120 x-valid after the last epoch only."""
    infos = {i: {"less": arch_results(i, long=False, datasets=("cifar10-valid",), train_times=False),
                 "full": arch_results(i, long=True, sparse_valid=True)} for i in (0, 1)}
    path = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    torch.save({"meta_archs": ARCHS, "arch2infos": infos, "evaluated_indexes": [0, 1]}, path)
    return path


class Cell:
    """An architecture object whose str() is its NB201 arch string (as NB201Arch's)."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


class TinyNB201Space(DecisionSpace):
    """A stand-in NB201 space: 6 edges x 5 ops; architectures are :class:`Cell` s."""

    OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

    def decisions(self):
        return [Decision.categorical(f"edge_{j}_{i}", len(self.OPS)) for j, i in self.EDGES]

    def decode(self, actions):
        nodes = {1: [], 2: [], 3: []}
        for (j, i), a in zip(self.EDGES, actions):
            nodes[j].append(f"{self.OPS[a]}~{i}")
        return Cell("+".join("|" + "|".join(nodes[j]) + "|" for j in (1, 2, 3)))

    def encode(self, architecture):
        ops = [tok.split("~")[0] for node in str(architecture).split("+") for tok in node.strip("|").split("|")]
        return [self.OPS.index(op) for op in ops]

    def to_json(self, architecture):
        return {"arch": str(architecture)}

    def from_json(self, data):
        return Cell(data["arch"])


SPACE = TinyNB201Space()


def make(path, dataset="cifar10-valid", **kwargs):
    return TabularEvaluator(path, dataset=dataset, space=SPACE, **kwargs)


def approx(values):
    return pytest.approx(values, abs=1e-12)


# --------------------------------------------------------------------------- numbers by hand
@pytest.mark.parametrize("layout", ["simple_dir", "single_file"])
def test_cifar10_valid_means_over_seeds_by_hand(layout, request):
    ev = make(request.getfixturevalue(layout))
    m = ev.evaluate(ARCHS[0], 12)
    # x-valid: seed 777 30, 40, 50 %; seed 888 32, 42, 52 % -> means 31, 41, 51 %
    assert m["val_acc_history"] == approx([0.31, 0.41, 0.51])
    assert m["val_acc_epochs"] == [1, 2, 3]
    assert m["val_acc"] == pytest.approx(0.51)
    assert m["max_val_acc_last5"] == pytest.approx(0.51)
    assert m["test_acc"] == pytest.approx(0.52)  # ori-test after the last epoch: (51 + 53) / 2
    assert m["params"] == 372346 and isinstance(m["params"], int)
    assert m["flops"] == pytest.approx(53.2e6)
    assert m["latency"] == pytest.approx(0.011)
    assert m["train_seconds"] == pytest.approx((10.0 + 12.0) / 2 * 12)
    assert m["seeds"] == [777, 888] and m["test_seeds"] == [777, 888]
    assert m["epochs"] == 12 and m["arch_index"] == 0 and m["dataset"] == "cifar10-valid"


@pytest.mark.parametrize("layout", ["simple_dir", "single_file"])
def test_nats_budget_200_reads_the_200_epoch_training(layout, request):
    ev = make(request.getfixturevalue(layout), dataset="cifar100")
    m = ev.evaluate(Cell(ARCHS[1]), 200)
    # x-valid: 10 + 20 (200 epochs) + 0.5 (arch 1) + 10 * epoch (+2 for seed 888)
    assert m["val_acc_history"] == approx([0.315, 0.415, 0.515])
    assert m["test_acc"] == pytest.approx(0.545)  # x-test (53.5 + 55.5) / 2, not ori-test's 52.5
    assert m["params"] == 378196
    assert m["train_seconds"] == pytest.approx((21.0 + 23.0) / 2 * 200)
    assert m["epochs"] == 200 and m["arch_index"] == 1
    assert make(request.getfixturevalue(layout), dataset="cifar100").evaluate(ARCHS[1], "200") == m


def test_simulated_time_is_seconds_per_epoch_times_budget(simple_dir):
    ev = make(simple_dir, dataset="ImageNet16-120")
    short, long = ev.evaluate(ARCHS[0], 12), ev.evaluate(ARCHS[0], 200)
    assert short["train_seconds"] == pytest.approx(60.0 * 12)  # one seed, 60 s per epoch
    assert long["train_seconds"] == pytest.approx(60.0 * 200)
    assert short["seeds"] == [777]
    assert short["val_acc_history"] == approx([0.05, 0.15, 0.25])
    assert short["test_acc"] == pytest.approx(0.28)


# --------------------------------------------------------------------------- split semantics
def test_split_semantics_per_dataset(single_file):
    got = {d: make(single_file, dataset=d).evaluate(ARCHS[0], 12) for d in SETS}
    assert got["cifar10-valid"]["val_acc"] == pytest.approx(0.51)  # x-valid
    assert got["cifar10-valid"]["test_acc"] == pytest.approx(0.52)  # ori-test
    # cifar10 has no validation split: validation is cifar10-valid's x-valid (its seeds, its times),
    # test is cifar10's own ori-test over its 3 seeds: (53 + 55 + 57) / 3
    assert got["cifar10"]["val_acc_history"] == got["cifar10-valid"]["val_acc_history"]
    assert got["cifar10"]["seeds"] == [777, 888] and got["cifar10"]["test_seeds"] == [777, 888, 999]
    assert got["cifar10"]["test_acc"] == pytest.approx(0.55)
    assert got["cifar10"]["train_seconds"] == got["cifar10-valid"]["train_seconds"]
    # cifar100 / ImageNet16-120: x-valid and x-test
    assert got["cifar100"]["val_acc"] == pytest.approx(0.31)
    assert got["cifar100"]["test_acc"] == pytest.approx(0.34)
    assert got["ImageNet16-120"]["val_acc"] == pytest.approx(0.25)
    assert got["ImageNet16-120"]["test_acc"] == pytest.approx(0.28)


def test_cifar10_needs_cifar10_valid_in_the_file(tmp_path):
    record = OrderedDict([("12", arch_results(0, long=False, datasets=("cifar10",)))])
    path = write_pbz2({"meta_archs": ARCHS, "arch2infos": {0: record}, "evaluated_indexes": {0}},
                      tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    with pytest.raises(ValueError, match=r"'cifar10-valid' has no results.*datasets present: \['cifar10'\]"):
        make(path, dataset="cifar10").evaluate(ARCHS[0], 12)


# --------------------------------------------------------------------------- the .pth layout
def test_pth_less_and_full(pth_file):
    ev = make(pth_file)
    less = ev.evaluate(ARCHS[0], "less")
    assert less == ev.evaluate(ARCHS[0], 12)
    assert less["val_acc_history"] == approx([0.31, 0.41, 0.51]) and less["epochs"] == 12
    assert less["train_seconds"] is None  # this 'less' records no train times
    full = ev.evaluate(ARCHS[0], "full")
    assert full == ev.evaluate(ARCHS[0], 200)
    assert full["val_acc_history"] == approx([0.51, 0.61, 0.71]) and full["epochs"] == 200
    assert full["train_seconds"] == pytest.approx(11.0 * 200)


def test_pth_history_keeps_only_the_epochs_recorded(pth_file):
    m = make(pth_file, dataset="cifar100").evaluate(ARCHS[1], "full")
    assert m["val_acc_history"] == approx([0.515])  # x-valid after the last epoch only
    assert m["val_acc_epochs"] == [3]
    assert reward_from_metrics(m, "final") == pytest.approx(0.515)


def test_pth_dataset_the_budget_lacks_names_the_datasets_present(pth_file):
    with pytest.raises(ValueError, match=r"'cifar100' has no results.*'less'.*datasets present: \['cifar10-valid'\]"):
        make(pth_file, dataset="cifar100").evaluate(ARCHS[0], "less")


def test_pth_is_loaded_with_weights_only_false_once(pth_file, monkeypatch):
    calls = []
    real = torch.load

    def counting(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    ev = make(pth_file)
    assert calls == []  # lazy
    ev.evaluate(ARCHS[0], 12)
    ev.evaluate(ARCHS[1], 200)
    assert calls == [False]


# --------------------------------------------------------------------------- rewards and the child queue
def test_rewards_from_the_metrics(simple_dir):
    m = make(simple_dir).evaluate(ARCHS[0], 200)
    assert reward_from_metrics(m, "final") == m["val_acc"] == pytest.approx(0.71)
    assert reward_from_metrics(m, "max_last5") == pytest.approx(0.71)
    assert reward_from_metrics(m, "max_last5_cubed") == pytest.approx(0.71 ** 3)
    assert all(0.0 <= a <= 1.0 for a in m["val_acc_history"])


def test_child_queue_records_the_tabular_reward(single_file, tmp_path):
    from lit_automl.nas.workqueue import ChildQueue

    ev = make(single_file)
    queue = ChildQueue(f"sqlite:///{tmp_path / 'children.db'}", "tabular", SPACE.decisions())
    arch = SPACE.from_json({"arch": ARCHS[1]})
    queue.submit("s/0/0", SPACE.encode(arch), SPACE.to_json(arch), 200, "final")
    done = queue.wait(["s/0/0"], timeout=60, work=ev)
    trial = done["s/0/0"]
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    assert trial.value == pytest.approx(ev.evaluate(ARCHS[1], 200)["val_acc"])
    assert trial.user_attrs["train_seconds"] == pytest.approx(11.0 * 200)


def test_child_queue_fails_an_architecture_outside_the_file(single_file, tmp_path):
    from lit_automl.nas.workqueue import ChildQueue

    queue = ChildQueue(f"sqlite:///{tmp_path / 'children.db'}", "tabular", SPACE.decisions())
    arch = SPACE.decode([0] * 6)  # all 'none': a valid cell, not in the tiny file
    queue.submit("s/0/0", SPACE.encode(arch), SPACE.to_json(arch), 12, "final")
    trial = queue.wait(["s/0/0"], timeout=60, work=make(single_file))["s/0/0"]
    assert trial.state.name == "FAIL" and "is not one of the 3 cells" in trial.user_attrs["fail_reason"]


# --------------------------------------------------------------------------- lazy loading and caching
def counting_reader(monkeypatch):
    opened = []
    real = tabular._read_pickle_bz2

    def read(path):
        opened.append(path.name)
        return real(path)

    monkeypatch.setattr(tabular, "_read_pickle_bz2", read)
    return opened


def test_simple_folder_reads_one_file_per_architecture_and_caches_it(simple_dir, monkeypatch):
    opened = counting_reader(monkeypatch)
    ev = make(simple_dir)
    assert opened == []  # lazy
    ev.evaluate(ARCHS[0], 12)
    assert opened == ["meta.pickle.pbz2", "000000.pickle.pbz2"]
    ev.evaluate(ARCHS[0], 200)
    ev.evaluate(ARCHS[0], 12)
    assert opened == ["meta.pickle.pbz2", "000000.pickle.pbz2"]
    ev.evaluate(ARCHS[1], 12)
    assert opened == ["meta.pickle.pbz2", "000000.pickle.pbz2", "000001.pickle.pbz2"]


def test_simple_folder_cache_size_evicts_the_oldest(simple_dir, monkeypatch):
    opened = counting_reader(monkeypatch)
    ev = make(simple_dir, cache_size=1)
    for arch in (0, 1, 1, 0):
        ev.evaluate(ARCHS[arch], 12)
    assert opened == ["meta.pickle.pbz2", "000000.pickle.pbz2", "000001.pickle.pbz2", "000000.pickle.pbz2"]


def test_simple_folder_cache_keeps_the_most_recently_used(simple_dir, monkeypatch):
    write_pbz2(nats_record(2), simple_dir / "000002.pickle.pbz2")
    opened = counting_reader(monkeypatch)
    ev = make(simple_dir, cache_size=2)
    for arch in (0, 1, 0, 2, 0, 1):  # reading 2 evicts 1 (least recently used), not 0
        ev.evaluate(ARCHS[arch], 12)
    assert opened == ["meta.pickle.pbz2", "000000.pickle.pbz2", "000001.pickle.pbz2", "000002.pickle.pbz2",
                      "000001.pickle.pbz2"]


def test_simple_folder_reads_unpadded_file_names(simple_dir):
    (simple_dir / "000001.pickle.pbz2").rename(simple_dir / "1.pickle.pbz2")
    assert make(simple_dir).evaluate(ARCHS[1], 12)["arch_index"] == 1


def test_single_file_is_loaded_once(single_file, monkeypatch):
    opened = counting_reader(monkeypatch)
    ev = make(single_file)
    assert opened == []
    for arch in (0, 1, 0):
        for budget in (12, 200):
            ev.evaluate(ARCHS[arch], budget)
    assert opened == ["NATS-tss-v1_0-3ffb9.pickle.pbz2"]


def test_pickled_evaluator_leaves_the_loaded_benchmark_behind(single_file):
    ev = make(single_file)
    first = ev.evaluate(ARCHS[0], 12)
    blob = pickle.dumps(ev)
    assert len(blob) < 2000  # the space and the path, not the benchmark
    again = pickle.loads(blob)
    assert again._data is None
    assert again.evaluate(ARCHS[0], 12) == first


# --------------------------------------------------------------------------- bad input
def test_missing_or_wrong_paths_are_refused(tmp_path, simple_dir):
    with pytest.raises(ValueError, match="does not exist"):
        make(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder without meta.pickle.pbz2"):
        make(tmp_path / "empty")
    with pytest.raises(ValueError, match="meta file of a simple folder; pass the folder"):
        make(simple_dir / "meta.pickle.pbz2")
    (tmp_path / "bench.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a benchmark file"):
        make(tmp_path / "bench.json")
    with pytest.raises(ValueError, match="path must be"):
        make(None)


def test_wrong_contents_are_refused(tmp_path):
    meta_only = write_pbz2({"meta_archs": ARCHS, "total_archs": 3, "arch2infos": None, "evaluated_indexes": set()},
                           tmp_path / "renamed-meta.pickle.pbz2")
    with pytest.raises(ValueError, match="holds no results.*simple folder"):
        make(meta_only).evaluate(ARCHS[0], 12)
    not_a_benchmark = write_pbz2([1, 2, 3], tmp_path / "list.pickle.pbz2")
    with pytest.raises(ValueError, match="expected a dict with 'meta_archs'"):
        make(not_a_benchmark).evaluate(ARCHS[0], 12)
    torch.save({"arch2infos": {}}, tmp_path / "NAS-Bench-201-v1_1-096897.pth")
    with pytest.raises(ValueError, match=r"expected a dict with 'meta_archs'.*\['arch2infos'\]"):
        make(tmp_path / "NAS-Bench-201-v1_1-096897.pth").evaluate(ARCHS[0], 12)


def test_unknown_dataset_is_refused_with_the_datasets(single_file):
    with pytest.raises(ValueError, match=r"dataset must be one of \['cifar10-valid', 'cifar10', 'cifar100', "
                                         r"'ImageNet16-120'\], got 'cifar1000'"):
        make(single_file, dataset="cifar1000")


@pytest.mark.parametrize("budget", [50, 90, "90", "less", "full", True, 12.0, None])
def test_nats_budgets_other_than_12_and_200_are_refused(single_file, budget):
    with pytest.raises(ValueError, match=r"budget must be one of \[12, 200, '12', '200'\].*got"):
        make(single_file).evaluate(ARCHS[0], budget)


@pytest.mark.parametrize("budget", [50, "12", "200", "medium"])
def test_pth_budgets_other_than_less_and_full_are_refused(pth_file, budget):
    with pytest.raises(ValueError, match=r"budget must be one of \[12, 200, 'less', 'full'\].*got"):
        make(pth_file).evaluate(ARCHS[0], budget)


@pytest.mark.parametrize("layout", ["simple_dir", "single_file", "pth_file"])
def test_architecture_outside_the_file_is_named(layout, request):
    with pytest.raises(ValueError, match=r"architecture '\|none~0\|.*none~9\|' is not one of the 3 cells"):
        make(request.getfixturevalue(layout)).evaluate(NOT_IN_SPACE, 12)


def test_architecture_without_results_is_named(simple_dir, single_file):
    with pytest.raises(ValueError, match=r"\(index 2\) has no results file 000002.pickle.pbz2"):
        make(simple_dir).evaluate(ARCHS[2], 12)
    with pytest.raises(ValueError, match=r"\(index 2\) was not evaluated.*2 of 3 architectures"):
        make(single_file).evaluate(Cell(ARCHS[2]), 12)


def test_budget_missing_from_an_architecture_is_named(tmp_path):
    path = write_pbz2({"meta_archs": ARCHS, "arch2infos": {0: {"12": arch_results(0, long=False)}},
                       "evaluated_indexes": {0}}, tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    with pytest.raises(ValueError, match=r"no results for budget '200'.*budgets present: \['12'\]"):
        make(path).evaluate(ARCHS[0], 200)


def test_last_epoch_missing_is_refused(tmp_path):
    record = {"12": arch_results(0, long=False)}
    del record["12"]["all_results"][("cifar10-valid", 888)]["eval_acc1es"]["x-valid@2"]
    path = write_pbz2({"meta_archs": ARCHS, "arch2infos": {0: record}, "evaluated_indexes": {0}},
                      tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    with pytest.raises(ValueError, match=r"no 'x-valid' accuracy after the last epoch \(x-valid@2\)"):
        make(path).evaluate(ARCHS[0], 12)


def test_space_must_be_a_decision_space(single_file):
    with pytest.raises(ValueError, match="space must be a DecisionSpace"):
        TabularEvaluator(single_file, space=object())


def test_default_space_is_nb201s_and_its_architectures_are_looked_up(single_file, tmp_path):
    from lit_automl.nas.workqueue import ChildQueue
    from lit_automl.spaces.nb201 import NB201Arch, NB201Space

    ev = TabularEvaluator(single_file)
    assert isinstance(ev.space, NB201Space)
    arch = ev.space.from_json(ev.space.to_json(ARCHS[1]))
    assert isinstance(arch, NB201Arch) and str(arch) == ARCHS[1]
    assert ev.evaluate(arch, 200) == ev.evaluate(ARCHS[1], 200)
    queue = ChildQueue(f"sqlite:///{tmp_path / 'children.db'}", "nb201", ev.space.decisions())
    queue.submit("s/0/0", ev.space.encode(arch), ev.space.to_json(arch), 12, "final")
    trial = queue.wait(["s/0/0"], timeout=60, work=ev)["s/0/0"]
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    assert trial.value == pytest.approx(0.515)  # arch 1, 12 epochs, last epoch: (50.5 + 52.5) / 2 %


def test_without_the_nb201_module_the_space_is_asked_for(single_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "lit_automl.spaces.nb201", None)  # import raises ImportError
    with pytest.raises(ValueError, match=r"space=None takes NB201's space.*pass space="):
        TabularEvaluator(single_file)
    assert make(single_file).space is SPACE


def test_cache_size_is_checked(single_file):
    with pytest.raises(ValueError, match="cache_size"):
        make(single_file, cache_size=0)


def test_exported_from_lit_automl_nas():
    import lit_automl.nas

    assert lit_automl.nas.TabularEvaluator is TabularEvaluator
    assert "TabularEvaluator" in lit_automl.nas.__all__

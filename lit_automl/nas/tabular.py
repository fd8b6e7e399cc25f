"""Tabular evaluation: look an NB201 cell up in the NATS-Bench topology benchmark instead of training it.

NATS-Bench's topology search space (``tss``; Dong et al., TPAMI 2021) is NAS-Bench-201's space
(Dong & Yang, ICLR 2020): a cell of 4 nodes, 6 edges, 5 operations, 15,625 cells, each trained on
CIFAR-10, CIFAR-100 and ImageNet16-120 with 1 to 3 seeds for 12 and for 200 epochs.
:class:`TabularEvaluator` reads the released files directly (neither the ``nats_bench`` nor the
``nas_201_api`` package is needed) and answers ``evaluate(architecture, budget)`` with the same
metrics a :class:`~lit_automl.nas.evaluator.TrainingEvaluator` records, so every sample-based search
(RL, evolution, random search, the child queue) runs on the benchmark in seconds and reports the
simulated training time.

The released layouts (all of them pickles, see "Trust" below):

* ``NATS-tss-v1_0-3ffb9-simple/`` (a folder): ``meta.pickle.pbz2``, a bz2-compressed pickle of
  ``{'meta_archs': [arch string of index 0, 1, ...], 'total_archs': 15625, 'arch2infos': None,
  'evaluated_indexes': set()}``, and one ``{index:06d}.pickle.pbz2`` per architecture (the reference
  reader falls back to the unpadded ``{index}.pickle.pbz2``; so does this one) holding
  ``{'12': ArchResults, '200': ArchResults}`` (the training budget in epochs, as a string);
* ``NATS-tss-v1_0-3ffb9.pickle.pbz2`` (one file): ``{'meta_archs': [...], 'total_archs': ...,
  'arch2infos': {index: {'12': ArchResults, '200': ArchResults}}, 'evaluated_indexes': {...}}``;
* ``NAS-Bench-201-v1_0-e61699.pth`` / ``NAS-Bench-201-v1_1-096897.pth`` (a ``torch.save`` file):
  ``{'meta_archs': [...], 'arch2infos': {index: {'less': ArchResults, 'full': ArchResults}},
  'evaluated_indexes': [...]}``, ``'less'`` the 12-epoch and ``'full'`` the 200-epoch training
  (v1_0's ``'less'`` holds cifar10-valid only).

where an ``ArchResults`` is the plain state dict ``{'arch_index', 'arch_str', 'dataset_seed':
{dataset: [seed, ...]}, 'all_results': {(dataset, seed): ResultsCount}, 'clear_net_done'}`` and a
``ResultsCount`` the plain dict ``{'name', 'seed', 'epochs', 'params' (millions), 'flop' (millions),
'latency' (list of seconds or None), 'train_acc1es' / 'train_losses' / 'train_times' ({epoch: value}),
'eval_names', 'eval_acc1es' / 'eval_losses' / 'eval_times' ({'<set>@<epoch>': value}),
'arch_config', 'net_state_dict', ...}`` with accuracies in percent and epochs counted from 0
(``'x-valid@199'`` is the accuracy after the 200th epoch).

Times: NATS-Bench's ``train_times`` are the authors' calibrated per-epoch times (one figure per
architecture, measured on cifar10-valid and scaled by each dataset's training-set size, the same for
every epoch and budget; ``tss-collect.py``), so ``train_seconds`` = that figure x ``budget`` epochs.
The history is indexed by the record's own ``epochs`` (12 for the 12-epoch training, whose config
``12E.config`` trains 12 epochs with the cosine schedule ending there).

Splits, as the benchmark's own API reports them (``get_more_info``; the authors' answer in
NATS-Bench issue #17 for cifar10):

* ``cifar10-valid`` (trained on half of CIFAR-10's training set): validation ``x-valid`` (the other
  half), test ``ori-test`` (CIFAR-10's test set);
* ``cifar10`` (trained on the whole training set): the benchmark has no validation split for it;
  ``get_more_info`` reports none, and the authors' search-time calls (``simulate_train_eval``,
  ``find_best(..., 'valid')``) read cifar10-valid's ``x-valid`` instead. So does this evaluator: the
  validation accuracies, their seeds and the simulated training time are the cifar10-valid run's,
  the test accuracy is cifar10's ``ori-test`` (``test_seeds`` its seeds);
* ``cifar100`` / ``ImageNet16-120``: validation ``x-valid``, test ``x-test`` (the two halves of the
  original test set; ``ori-test`` is both together and is not used).

Trust: every layout is a Python pickle (the ``.pth`` is read with ``torch.load(weights_only=False)``:
it is a full pickle of the benchmark's dicts, not a weights-only archive); unpickling runs code the
file names, so pass only files you trust (the official downloads).
"""

from __future__ import annotations

import bz2
import math
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from lit_automl._checks import check_choice, check_int
from lit_automl.nas.evaluator import Evaluator
from lit_automl.spaces.decisions import DecisionSpace

__all__ = ["NATS_DATASETS", "TabularEvaluator"]

NATS_DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
"""The datasets (training settings) of NAS-Bench-201 / NATS-Bench."""

PICKLE_EXT = ".pickle.pbz2"
META_FILE = "meta" + PICKLE_EXT

SIMPLE, SINGLE, PTH = "simple folder", "single file", "NAS-Bench-201 .pth"

_HP_KEYS = {SIMPLE: {12: "12", 200: "200"}, SINGLE: {12: "12", 200: "200"}, PTH: {12: "less", 200: "full"}}
"""Budget in epochs -> the key of that training in an architecture's record, per layout."""

_VALID = {"cifar10-valid": ("cifar10-valid", "x-valid"), "cifar10": ("cifar10-valid", "x-valid"),
          "cifar100": ("cifar100", "x-valid"), "ImageNet16-120": ("ImageNet16-120", "x-valid")}
_TEST = {"cifar10-valid": ("cifar10-valid", "ori-test"), "cifar10": ("cifar10", "ori-test"),
         "cifar100": ("cifar100", "x-test"), "ImageNet16-120": ("ImageNet16-120", "x-test")}
"""dataset -> (the results' dataset, the evaluation set) giving its validation / test accuracy."""


def _read_pickle_bz2(path: Path) -> Any:
    """The object of a bz2-compressed pickle (a ``.pickle.pbz2`` file of NATS-Bench)."""
    with bz2.open(path, "rb") as f:
        return pickle.load(f)


def _read_torch(path: Path) -> Any:
    """The object of a NAS-Bench-201 ``torch.save`` file (a full pickle: read only trusted files)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _layout(path: Path) -> str:
    if path.is_dir():
        if not (path / META_FILE).is_file():
            raise ValueError(f"path {str(path)!r} is a folder without {META_FILE}; a TabularEvaluator reads the "
                             f"NATS-tss-v1_0-3ffb9-simple/ folder (meta{PICKLE_EXT} + one NNNNNN{PICKLE_EXT} per "
                             f"architecture), the single file NATS-tss-v1_0-3ffb9{PICKLE_EXT}, or a NAS-Bench-201 "
                             "NAS-Bench-201-v1_*.pth file")
        return SIMPLE
    if path.is_file():
        if path.name == META_FILE:
            raise ValueError(f"path {str(path)!r} is the meta file of a simple folder; pass the folder "
                             f"{str(path.parent)!r} instead")
        if path.name.endswith(PICKLE_EXT):
            return SINGLE
        if path.suffix == ".pth":
            return PTH
        raise ValueError(f"path {str(path)!r} is not a benchmark file: expected a NATS-tss-*{PICKLE_EXT} file, a "
                         "NAS-Bench-201-v1_*.pth file or a NATS-tss-*-simple/ folder")
    raise ValueError(f"path {str(path)!r} does not exist (expected a NATS-tss-v1_0-3ffb9-simple/ folder, "
                     f"NATS-tss-v1_0-3ffb9{PICKLE_EXT} or NAS-Bench-201-v1_*.pth)")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values)) / len(values)


class TabularEvaluator(Evaluator):
    """Metrics of an NB201 cell read from the NATS-Bench topology benchmark (see the module docstring).

    Args:
        path: the ``NATS-tss-v1_0-3ffb9-simple/`` folder, the single file ``NATS-tss-v1_0-3ffb9.pickle.pbz2``
            or a ``NAS-Bench-201-v1_0-e61699.pth`` / ``NAS-Bench-201-v1_1-096897.pth`` file. All are pickles:
            pass only trusted files (the official downloads). Nothing is read here; the single file and
            the ``.pth`` are loaded once at the first lookup, the simple folder's meta file at the first
            lookup and one architecture file per architecture looked up (kept in a cache of
            ``cache_size`` architectures).
        dataset: ``"cifar10-valid"`` (default), ``"cifar10"``, ``"cifar100"`` or ``"ImageNet16-120"``.
        space: the search space whose ``from_json`` records the child queue decodes; its architectures'
            ``str()`` must be the NB201 arch string (``|nor_conv_3x3~0|+|...|``). ``None``: NB201's
            (``lit_automl.spaces.nb201.NB201Space``), when that module exists.
        cache_size: how many architectures' files the simple folder keeps decoded (>= 1).

    ``evaluate(architecture, budget)``: ``architecture`` an arch string or an object whose ``str()`` is
    one, ``budget`` the training epochs, 12 or 200 (for the ``.pth`` also its keys ``"less"`` / ``"full"``,
    for NATS also ``"12"`` / ``"200"``). Returns ``val_acc_history`` (the mean over seeds of the
    validation accuracy, as a fraction, after each epoch the file records it for, the last epoch
    included; ``val_acc_epochs`` says which, counted from 1), ``val_acc``, ``max_val_acc_last5``,
    ``test_acc`` (mean over its seeds), ``params`` (a count; the files hold millions), ``flops`` (a
    count; the files hold millions), ``latency`` (seconds per batch, mean; ``None`` when absent),
    ``train_seconds`` (the simulated training time: recorded seconds per epoch x ``budget`` epochs,
    mean over seeds; ``None`` when the file records no training times), ``epochs``, ``seeds``,
    ``test_seeds``, ``arch_index``, ``dataset``.
    """

    def __init__(self, path: Union[str, Path], dataset: str = "cifar10-valid", space: Optional[DecisionSpace] = None,
                 cache_size: int = 1024) -> None:
        if not isinstance(path, (str, Path)) or not str(path):
            raise ValueError(f"path must be the path of a NATS-Bench / NAS-Bench-201 benchmark, got {path!r}")
        self.path = Path(path)
        self.layout = _layout(self.path)
        self.dataset = check_choice("dataset", dataset, NATS_DATASETS, sort=False)
        self.cache_size = check_int("cache_size", cache_size, low=1)
        if space is None:
            try:
                from lit_automl.spaces.nb201 import NB201Space
            except ImportError as err:
                raise ValueError(
                    "space=None takes NB201's space (lit_automl.spaces.nb201.NB201Space), which cannot be imported "
                    f"here ({err}); pass space=... (a DecisionSpace whose architectures' str() is the NB201 arch string)"
                ) from None
            space = NB201Space()
        if not isinstance(space, DecisionSpace):
            raise ValueError(f"space must be a DecisionSpace (e.g. NB201Space), got {type(space).__name__}")
        self.space = space
        self._reset_cache()

    # ------------------------------------------------------------------ loading (lazy, cached)
    def _reset_cache(self) -> None:
        self._data: Optional[Dict[str, Any]] = None  # the single file / .pth, or the simple folder's meta
        self._index: Optional[Dict[str, int]] = None
        self._records: "OrderedDict[int, Mapping[str, Any]]" = OrderedDict()

    def __getstate__(self) -> Dict[str, Any]:
        """Pickled without the loaded benchmark: a worker process loads its own at its first lookup."""
        state = dict(self.__dict__)
        state.update(_data=None, _index=None, _records=OrderedDict())
        return state

    def _load(self) -> Dict[str, Any]:
        if self._data is not None:
            return self._data
        if self.layout == PTH:
            data = _read_torch(self.path)
        else:
            data = _read_pickle_bz2(self.path / META_FILE if self.layout == SIMPLE else self.path)
        where = str(self.path / META_FILE) if self.layout == SIMPLE else str(self.path)
        if not isinstance(data, Mapping) or not isinstance(data.get("meta_archs"), (list, tuple)):
            keys = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{where} is not a NAS-Bench-201 / NATS-Bench topology benchmark: expected a dict with "
                             f"'meta_archs' (the arch strings), got {keys}")
        if self.layout != SIMPLE:
            infos = data.get("arch2infos")
            if not isinstance(infos, Mapping) or not infos:
                raise ValueError(f"{where} holds no results ('arch2infos' is {type(infos).__name__}"
                                 f"{'' if infos is None else ' of ' + str(len(infos))}): the meta file of a simple "
                                 "folder? pass the NATS-tss-v1_0-3ffb9-simple/ folder instead")
        self._index = {str(arch): i for i, arch in enumerate(data["meta_archs"])}
        self._data = dict(data)
        return self._data

    def _record(self, index: int, arch: str) -> Mapping[str, Any]:
        """``{budget key: ArchResults state dict}`` of architecture ``index``."""
        data = self._load()
        if self.layout != SIMPLE:
            record = data["arch2infos"].get(index)
            if record is None:
                raise ValueError(f"architecture {arch!r} (index {index}) was not evaluated in {str(self.path)!r}: "
                                 f"it holds results of {len(data['arch2infos'])} of {len(data['meta_archs'])} "
                                 "architectures")
            return record
        if index in self._records:
            self._records.move_to_end(index)
            return self._records[index]
        for name in (f"{index:06d}{PICKLE_EXT}", f"{index}{PICKLE_EXT}"):
            file = self.path / name
            if file.is_file():
                break
        else:
            raise ValueError(f"architecture {arch!r} (index {index}) has no results file {index:06d}{PICKLE_EXT} "
                             f"in {str(self.path)!r}")
        record = _read_pickle_bz2(file)
        if not isinstance(record, Mapping):
            raise ValueError(f"{str(file)!r} is not an architecture's results: expected a dict keyed by the "
                             f"training budget ('12', '200'), got {type(record).__name__}")
        self._records[index] = record
        while len(self._records) > self.cache_size:
            self._records.popitem(last=False)
        return record

    # ------------------------------------------------------------------ lookups
    def allowed_budgets(self) -> List[Any]:
        """The budgets :meth:`evaluate` accepts for this file's layout."""
        keys = _HP_KEYS[self.layout]
        return [*keys, *keys.values()]

    def _budget(self, budget: Any) -> Tuple[int, str]:
        """``(epochs, key of that training in a record)`` of ``budget``."""
        keys = _HP_KEYS[self.layout]
        for epochs, key in keys.items():
            if not isinstance(budget, bool) and (budget == epochs or budget == key) and isinstance(budget, (int, str)):
                return epochs, key
        raise ValueError(f"budget must be one of {self.allowed_budgets()} for the {self.layout} {str(self.path)!r} "
                         f"(the benchmark's training budgets in epochs), got {budget!r}")

    def index_of(self, architecture: Any) -> int:
        """The benchmark index of ``architecture`` (an arch string or an object whose ``str()`` is one)."""
        arch = architecture if isinstance(architecture, str) else str(architecture)
        self._load()
        assert self._index is not None
        if arch not in self._index:
            example = next(iter(self._index), None)
            raise ValueError(f"architecture {arch!r} is not one of the {len(self._index)} cells of {str(self.path)!r}; "
                             f"expected an NB201 arch string such as {example!r}")
        return self._index[arch]

    def _runs(self, archres: Mapping[str, Any], dataset: str, arch: str, key: str) -> Tuple[List[Any], List[Mapping[str, Any]]]:
        seeds = list((archres.get("dataset_seed") or {}).get(dataset) or [])
        if not seeds:
            present = sorted((archres.get("dataset_seed") or {}).keys())
            raise ValueError(f"dataset {dataset!r} has no results for {arch!r} at budget {key!r} in "
                             f"{str(self.path)!r}; datasets present: {present}")
        return seeds, [archres["all_results"][(dataset, seed)] for seed in seeds]

    @staticmethod
    def _history(runs: Sequence[Mapping[str, Any]], setname: str, what: str) -> Tuple[List[int], List[float]]:
        """Epochs (from 0) every run records ``setname`` for, and the mean accuracies there as fractions."""
        epochs = {int(run["epochs"]) for run in runs}
        if len(epochs) != 1:
            raise ValueError(f"{what}: the seeds were trained for different epochs {sorted(epochs)}")
        total = epochs.pop()
        recorded = [{i for i in range(total) if f"{setname}@{i}" in run["eval_acc1es"]} for run in runs]
        common = sorted(set.intersection(*recorded))
        if total - 1 not in common:
            raise ValueError(f"{what}: no {setname!r} accuracy after the last epoch ({setname}@{total - 1}) in every "
                             "seed's results")
        history = [_mean([float(run["eval_acc1es"][f"{setname}@{i}"]) for run in runs]) / 100.0 for i in common]
        return common, history

    def evaluate(self, architecture: Any, budget: Any) -> Dict[str, Any]:
        """Look ``architecture`` up at ``budget`` epochs (see the class docstring for the metrics)."""
        epochs, key = self._budget(budget)
        arch = architecture if isinstance(architecture, str) else str(architecture)
        index = self.index_of(arch)
        record = self._record(index, arch)
        if key not in record:
            raise ValueError(f"architecture {arch!r} (index {index}) has no results for budget {key!r} in "
                             f"{str(self.path)!r}; budgets present: {sorted(map(str, record))}")
        archres = record[key]
        valid_dataset, valid_set = _VALID[self.dataset]
        test_dataset, test_set = _TEST[self.dataset]
        seeds, runs = self._runs(archres, valid_dataset, arch, key)
        test_seeds, test_runs = self._runs(archres, test_dataset, arch, key)
        what = f"{arch!r} at budget {key!r}"
        valid_epochs, history = self._history(runs, valid_set, f"{what} on {valid_dataset}")
        _, test_history = self._history(test_runs, test_set, f"{what} on {test_dataset}")
        if not all(math.isfinite(a) for a in history):
            raise FloatingPointError(f"{what}: validation accuracy is not finite: {history}")
        per_epoch = [run.get("train_times") for run in runs]
        train_seconds: Optional[float] = None
        if all(isinstance(t, Mapping) and t for t in per_epoch):
            train_seconds = _mean([_mean([float(v) for v in t.values()]) for t in per_epoch]) * epochs  # type: ignore[union-attr]
        latencies = [_mean([float(x) for x in run["latency"]]) for run in runs if run.get("latency")]
        latencies = [x for x in latencies if x > 0]  # the reference API's "-1: not available"
        return {
            "val_acc_history": history,
            "val_acc_epochs": [i + 1 for i in valid_epochs],
            "val_acc": history[-1],
            "max_val_acc_last5": max(history[-5:]),
            "test_acc": test_history[-1],
            "params": int(round(_mean([float(run["params"]) for run in runs]) * 1e6)),
            "flops": _mean([float(run["flop"]) for run in runs]) * 1e6,
            "latency": _mean(latencies) if latencies else None,
            "train_seconds": train_seconds,
            "epochs": epochs,
            "seeds": [int(s) for s in seeds],
            "test_seeds": [int(s) for s in test_seeds],
            "arch_index": index,
            "dataset": self.dataset,
        }

"""GenotypeLogger on a stand-in search module whose architecture weights change every epoch."""

from __future__ import annotations

import csv
import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lit_automl.callbacks.genotype_logger as genotype_logger_module
from lit_automl.callbacks import GenotypeLogger
from lit_automl.spaces.derive import edge_entropy
from lit_automl.spaces.genotype import Genotype
from tests.callbacks.helpers import Made, callback_of, saved_state
from tests.resume_harness import run_resumed
from tests.trainers import quiet_trainer

OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
STEPS = 2
EDGES = 5  # node 0 reads 2 inputs, node 1 reads 3


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=8)


def strength(epoch: int) -> float:
    return 1.0 + epoch


def favourite_op(epoch: int) -> int:
    return 1 + epoch % (len(OPS) - 1)  # never "none"


def derive(alpha: torch.Tensor) -> list[tuple[tuple[str, int], ...]]:
    """DARTS derivation: per node the two inputs with the strongest non-none op."""
    weights = torch.softmax(alpha, dim=-1)[:, 1:]
    nodes, start = [], 0
    for i in range(STEPS):
        best, op = weights[start : start + i + 2].max(dim=1)
        keep = sorted(range(i + 2), key=lambda j: -float(best[j]))[:2]
        nodes.append(tuple((OPS[1 + int(op[j])], j) for j in keep))
        start += i + 2
    return nodes


class StandInSearch(pl.LightningModule):
    """Exposes only what GenotypeLogger may rely on: ``genotype()`` and ``alphas``.

    Epoch ``e`` sets the normal cell's weights to ``strength(e)`` on one op (changing with
    ``e``) and 0 elsewhere; the reduction cell stays uniform.
    """

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.alpha_normal = nn.Parameter(torch.zeros(EDGES, len(OPS)), requires_grad=False)
        self.alpha_reduce = nn.Parameter(torch.zeros(EDGES, len(OPS)), requires_grad=False)
        self.genotypes: dict[int, Genotype] = {}

    @property
    def alphas(self) -> dict[str, torch.Tensor]:
        return {"normal": self.alpha_normal, "reduce": self.alpha_reduce}

    def genotype(self) -> Genotype:
        concat = list(range(2, 2 + STEPS))
        return Genotype(derive(self.alpha_normal), concat, derive(self.alpha_reduce), concat)

    def on_train_epoch_start(self):
        with torch.no_grad():
            self.alpha_normal.zero_()
            self.alpha_normal[:, favourite_op(self.current_epoch)] = strength(self.current_epoch)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def on_train_epoch_end(self):
        self.genotypes[self.current_epoch] = self.genotype()

    def configure_optimizers(self):
        return torch.optim.SGD(self.layer.parameters(), lr=0.1)

    def train_dataloader(self):
        return loader()


class NoGenotype(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class GenotypeOnly(NoGenotype):
    def genotype(self) -> Genotype:
        return Genotype([("skip_connect", 0), ("sep_conv_3x3", 1)], [2], [("max_pool_3x3", 0), ("max_pool_3x3", 1)], [2])


class TextExperiment:
    def __init__(self):
        self.texts: list[tuple[str, str, int]] = []

    def add_text(self, tag: str, text: str, global_step: int = 0) -> None:
        self.texts.append((tag, text, global_step))


class TextLogger(Logger):
    """A logger whose experiment takes text, as TensorBoard's SummaryWriter does."""

    def __init__(self):
        super().__init__()
        self._experiment = TextExperiment()

    @property
    def experiment(self) -> TextExperiment:
        return self._experiment

    @property
    def name(self) -> str:
        return "text"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass


def make_trainer(tmp_path, **kwargs) -> pl.Trainer:
    return quiet_trainer(tmp_path, **{"max_epochs": 3, **kwargs})


def expected_entropy(epoch: int) -> float:
    """Entropy of softmax over one logit ``strength(epoch)`` and seven zeros."""
    a, n = strength(epoch), len(OPS)
    z = math.exp(a) + (n - 1)
    p, q = math.exp(a) / z, 1 / z
    return -(p * math.log(p) + (n - 1) * q * math.log(q))


# --------------------------------------------------------------------------- pure parts
def test_edge_entropy_ranges_from_uniform_to_one_hot():
    assert float(edge_entropy(torch.zeros(5, 8))) == pytest.approx(math.log(8))
    peaked = torch.zeros(5, 8)
    peaked[:, 3] = 50.0
    assert float(edge_entropy(peaked)) == pytest.approx(0.0, abs=1e-12)
    one = torch.zeros(5, 8)
    one[:, 2] = strength(1)
    assert float(edge_entropy(one)) == pytest.approx(expected_entropy(1))
    with pytest.raises(TypeError, match="mapping"):
        GenotypeLogger.entropies(torch.zeros(5, 8))


def test_record_replaces_a_rerun_epoch_and_state_round_trips():
    cb = GenotypeLogger()
    cb.record(1, "b")
    cb.record(0, "a")
    cb.record(1, "c")
    assert cb.history == [(0, "a"), (1, "c")]
    fresh = GenotypeLogger()
    fresh.load_state_dict(cb.state_dict())
    assert fresh.history == cb.history
    assert GenotypeLogger.format_line(3, "G") == "epoch 3: G"


@pytest.mark.parametrize("kwargs", [dict(log_entropy="yes"), dict(plot=1), dict(dirpath=3)])
def test_init_validates(kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=name):
        GenotypeLogger(**kwargs)


def test_state_key_does_not_depend_on_dirpath(tmp_path):
    assert GenotypeLogger().state_key == GenotypeLogger(dirpath=tmp_path).state_key
    assert "GenotypeLogger" in GenotypeLogger().state_key


# --------------------------------------------------------------------------- in a real fit
def test_fit_writes_history_final_files_and_entropy(tmp_path, monkeypatch):
    printed: list[str] = []
    monkeypatch.setattr(genotype_logger_module, "rank_zero_info", printed.append)
    model = StandInSearch()
    cb = GenotypeLogger(log_entropy=True)
    trainer = make_trainer(tmp_path, callbacks=[cb])
    trainer.fit(model, loader())

    run = tmp_path / "lightning_logs" / "version_0"
    assert cb.run_dir == run == type(run)(trainer.log_dir)
    lines = (run / "genotypes.txt").read_text().splitlines()
    assert lines == [f"epoch {e}: {model.genotypes[e]}" for e in range(3)]
    assert len({str(g) for g in model.genotypes.values()}) == 3  # the architecture did change

    final = model.genotypes[2]
    assert Genotype.parse((run / "genotype.txt").read_text()) == final
    assert Genotype.from_json((run / "genotype.json").read_text()) == final
    assert (run / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(printed) == 1 and str(final) in printed[0]

    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("genotype/entropy_normal")]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["genotype/entropy_normal"]) for r in rows] == pytest.approx([expected_entropy(e) for e in range(3)])
    assert [float(r["genotype/entropy_reduce"]) for r in rows] == pytest.approx([math.log(len(OPS))] * 3)


def test_text_goes_to_loggers_that_take_it(tmp_path):
    text_logger = TextLogger()
    model = StandInSearch()
    cb = GenotypeLogger(dirpath=tmp_path / "run", plot=False, verbose=False)
    make_trainer(tmp_path, logger=[CSVLogger(tmp_path), text_logger], callbacks=[cb]).fit(model, loader())
    texts = text_logger.experiment.texts
    assert [(tag, text) for tag, text, _ in texts] == [("genotype", f"epoch {e}: {model.genotypes[e]}") for e in range(3)]
    assert [step for *_, step in texts] == [2, 4, 6]
    assert (tmp_path / "run" / "genotypes.txt").exists()
    assert not (tmp_path / "run" / "genotype.png").exists()  # plot=False


def test_module_without_genotype_is_named(tmp_path):
    with pytest.raises(AttributeError, match=r"NoGenotype has none"):
        make_trainer(tmp_path, callbacks=[GenotypeLogger()]).fit(NoGenotype(), loader())


def test_entropy_needs_alphas_unless_disabled(tmp_path):
    with pytest.raises(AttributeError, match=r"GenotypeOnly.alphas.*log_entropy=False"):
        make_trainer(tmp_path, callbacks=[GenotypeLogger(log_entropy=True)]).fit(GenotypeOnly(), loader())
    cb = GenotypeLogger(dirpath=tmp_path / "run", plot=False, verbose=False)
    make_trainer(tmp_path, max_epochs=1, callbacks=[cb]).fit(GenotypeOnly(), loader())
    assert Genotype.load(tmp_path / "run" / "genotype.json") == GenotypeOnly().genotype()


def test_resumed_run_keeps_the_history(tmp_path):
    # Each fit logs to its own folder (full, first = interrupted, second = resumed): the resumed
    # logger rewrites the whole history in its new folder.
    folders = iter(["full", "first", "second"])
    made = Made(StandInSearch)
    runs = run_resumed(made, lambda: None, tmp_path, {"max_epochs": 2}, max_epochs=3, callbacks=lambda: [
        GenotypeLogger(dirpath=tmp_path / next(folders), plot=False, verbose=False)])
    first, resumed = made.interrupted, runs.resumed
    cb2 = callback_of(runs.resumed_trainer, GenotypeLogger)
    saved = saved_state(runs.checkpoint, cb2)
    assert saved == {"history": [[0, str(first.genotypes[0])], [1, str(first.genotypes[1])]]}
    assert len((tmp_path / "first" / "genotypes.txt").read_text().splitlines()) == 2
    lines = (tmp_path / "second" / "genotypes.txt").read_text().splitlines()
    assert lines == [
        f"epoch 0: {first.genotypes[0]}",
        f"epoch 1: {first.genotypes[1]}",
        f"epoch 2: {resumed.genotypes[2]}",
    ]
    assert [epoch for epoch, _ in cb2.history] == [0, 1, 2]

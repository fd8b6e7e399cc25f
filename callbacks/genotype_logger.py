"""Record the genotype a cell-based architecture search derives, epoch by epoch.

The derived architecture of a differentiable search (DARTS, Liu et al., ICLR 2019, Sec. 2.4)
can change every epoch; its history shows when the search settles, and the entropy of the
softmax-normalised architecture weights shows how decided each edge is (low entropy = one op
dominates). Both are cheap to record and are what one inspects when a search collapses, e.g. to
parameter-free ops (Zela et al., "Understanding and Robustifying DARTS", ICLR 2020, Sec. 4).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn

from lit_automl._checks import ArgumentTypeError, check_bool
from lit_automl.spaces.derive import edge_entropy
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.genotype_files import save_genotype_files
from lit_automl.spaces.nb201 import NB201Arch
from lit_automl.spaces.nb201_supernet import save_nb201_files
from lit_automl.spaces.recurrent_genotype import RecurrentGenotype

AnyGenotype = Union[Genotype, RecurrentGenotype]

__all__ = ["GenotypeLogger"]


class GenotypeLogger(Callback):
    """Write the module's ``genotype()`` at every training-epoch end and the final one at fit end.

    Every epoch (on global rank zero) ``epoch <n>: <genotype>`` lines go to ``genotypes.txt`` in
    the run folder, the text goes to every logger whose ``experiment`` has ``add_text``
    (TensorBoard; other loggers are skipped), and, with ``log_entropy``, the mean edge entropy
    of ``softmax(alphas[cell])`` is logged as ``genotype/entropy_<cell>`` for each cell.
    At fit end the final genotype is written as ``genotype.txt``, ``genotype.json`` and (with
    ``plot``) the picture ``genotype.png``, and printed; when the module's ``architecture_changed()``
    (optional) says its architecture parameters never moved, a warning says that genotype is the
    random initialisation's instead.

    The module needs ``genotype()`` returning a :class:`Genotype` (CNN cells) or a
    :class:`~lit_automl.spaces.recurrent_genotype.RecurrentGenotype` (the DARTS recurrent search, which is
    written as text and JSON only: there is no picture of a recurrent cell) or an
    :class:`~lit_automl.spaces.nb201.NB201Arch` (DARTS on NAS-Bench-201: the arch string and its JSON
    record, no picture) and, for ``log_entropy``,
    ``alphas``: a mapping of cell name to raw architecture weights of shape (num_edges, num_ops).

    Args:
        dirpath: run folder; ``None`` uses ``trainer.log_dir`` (the logger's version folder).
        log_entropy: log the per-cell mean edge entropy, for modules that do not log it themselves
            (DARTS and its subclasses log ``arch/entropy_<cell>`` already).
        log_text: send the genotype text to loggers that take text.
        plot: draw ``genotype.png`` at fit end.
        verbose: print the final genotype.

    The history (list of ``(epoch, text)``) is in ``state_dict``, so a resumed run rewrites the
    full ``genotypes.txt``. With a checkpoint saved at validation end (before the training epoch
    ends), that epoch's line is written after the checkpoint and a run resumed from it lacks it.
    """

    history_file = "genotypes.txt"

    def __init__(
        self,
        dirpath: Optional[Union[str, os.PathLike]] = None,
        log_entropy: bool = False,
        log_text: bool = True,
        plot: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if dirpath is not None and not isinstance(dirpath, (str, os.PathLike)):
            raise ArgumentTypeError(f"dirpath must be a str, a path or None, got {dirpath!r}")
        self.dirpath: Optional[Path] = None if dirpath is None else Path(dirpath)
        self.log_entropy = check_bool("log_entropy", log_entropy)
        self.log_text = check_bool("log_text", log_text)
        self.plot = check_bool("plot", plot)
        self.verbose = check_bool("verbose", verbose)
        self.history: List[Tuple[int, str]] = []
        self._run_dir: Optional[Path] = None

    @property
    def state_key(self) -> str:
        # Deliberately independent of ``dirpath``: a run resumed into another folder keeps its history.
        return self._generate_state_key()

    @property
    def run_dir(self) -> Optional[Path]:
        """Folder the files go to (known after setup)."""
        return self._run_dir

    # ----------------------------------------------------------------- pure helpers
    @staticmethod
    def format_line(epoch: int, genotype: Union[AnyGenotype, str]) -> str:
        """One line of ``genotypes.txt``."""
        return f"epoch {epoch}: {genotype}"

    @staticmethod
    def entropies(alphas: Mapping) -> Dict[str, float]:
        """``{cell: mean edge entropy of softmax(alphas[cell])}`` (see :func:`edge_entropy`)."""
        if not isinstance(alphas, Mapping):
            raise TypeError(f"alphas must be a mapping of cell name to tensor, got {type(alphas).__name__}")
        return {str(cell): float(edge_entropy(alpha)) for cell, alpha in alphas.items()}

    def record(self, epoch: int, genotype: Union[AnyGenotype, str]) -> None:
        """Add ``(epoch, text)`` to the history, replacing an entry of the same epoch (a re-run epoch)."""
        text = str(genotype)
        self.history = [(e, t) for e, t in self.history if e != epoch]
        self.history.append((int(epoch), text))
        self.history.sort(key=lambda item: item[0])

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit":
            return
        name = type(pl_module).__name__
        if not callable(getattr(pl_module, "genotype", None)):
            raise AttributeError(
                f"GenotypeLogger needs a module with a `genotype()` method returning a Genotype or a RecurrentGenotype; "
                f"{name} has none"
            )
        if self.log_entropy and not isinstance(getattr(pl_module, "alphas", None), Mapping):
            raise AttributeError(
                f"GenotypeLogger(log_entropy=True) needs `{name}.alphas`, a mapping of cell name to architecture "
                "weights; the module has none. Pass log_entropy=False"
            )
        # trainer.log_dir broadcasts from rank zero, so every rank must resolve it here.
        self._run_dir = self.dirpath if self.dirpath is not None else Path(trainer.log_dir or trainer.default_root_dir)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        epoch = trainer.current_epoch
        genotype = pl_module.genotype()
        self.record(epoch, genotype)  # on every rank, so any rank's state_dict is complete
        if self.log_entropy:
            # Same values on every rank (the alphas are replicated), logged without a sync.
            for cell, value in self.entropies(pl_module.alphas).items():
                pl_module.log(f"genotype/entropy_{cell}", value, on_step=False, on_epoch=True)
        if not trainer.is_global_zero:
            return
        self._write_history()
        if self.log_text:
            self._log_text(trainer, self.format_line(epoch, genotype))

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return
        genotype = pl_module.genotype()
        folder = self._folder()
        name = type(pl_module).__name__
        if isinstance(genotype, NB201Arch):  # a NAS-Bench-201 search: the arch string and its JSON record
            save_nb201_files(genotype, folder)
        else:
            save_genotype_files(genotype, folder, plot=self.plot, title=f"{name} after {trainer.current_epoch} epochs")
        changed = getattr(pl_module, "architecture_changed", None)
        if callable(changed) and changed() is False:
            # Not a search result: said whatever ``verbose`` is.
            rank_zero_warn(f"{name}'s architecture parameters never changed from their initial values, so the "
                           f"genotype written to {folder} is their random initialisation's, not a search result "
                           f"(did the run end inside arch_warmup_epochs?): {genotype}")
        elif self.verbose:
            rank_zero_info(f"Final genotype (written to {folder}): {genotype}")

    # ----------------------------------------------------------------- output
    def _folder(self) -> Path:
        if self._run_dir is None:
            raise RuntimeError("GenotypeLogger has no run folder yet: it is set in setup(stage='fit')")
        self._run_dir.mkdir(parents=True, exist_ok=True)
        return self._run_dir

    def _write_history(self) -> None:
        lines = [self.format_line(epoch, text) + "\n" for epoch, text in self.history]
        (self._folder() / self.history_file).write_text("".join(lines), encoding="utf-8")

    @staticmethod
    def _log_text(trainer: "pl.Trainer", text: str) -> None:
        for logger in trainer.loggers:
            add_text = getattr(getattr(logger, "experiment", None), "add_text", None)
            if callable(add_text):
                add_text("genotype", text, global_step=trainer.global_step)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"history": [[epoch, text] for epoch, text in self.history]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = [(int(epoch), str(text)) for epoch, text in state_dict.get("history", [])]

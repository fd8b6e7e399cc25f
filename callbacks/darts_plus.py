"""DARTS+ early stopping of a differentiable architecture search.

Liang, Zhang, Sun, He, Huang, Zhuang & Li, "DARTS+: Improved Differentiable Architecture Search
with Early Stopping", arXiv:1909.06035, 2019, Sec. 3. Trained for long, DARTS collapses: the
normal cell fills up with ``skip_connect`` edges and accuracy drops. DARTS+ stops the search
before that happens, by one of two criteria:

* criterion 1: stop when the normal cell holds two or more ``skip_connect`` edges;
* criterion 1*: stop when the ranking of the architecture parameters of the learnable
  (parameterised) operations has been stable for a fixed number of epochs (10 in the paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from lit_automl._checks import check_choice, check_int
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.ops import get_op, resolve_primitives

from ._settings import module_hparam
from ._stopping import StoppingCallback

__all__ = ["DartsPlusEarlyStopping", "count_skip_connects", "learnable_op_indices"]

CRITERIA = ("skip", "stable", "both")
Ranking = Dict[str, List[List[int]]]


def count_skip_connects(genotype: Union[Genotype, str], cell: str = "normal") -> int:
    """Number of ``skip_connect`` edges in ``cell`` (``"normal"`` or ``"reduce"``) of a genotype or its text."""
    if isinstance(genotype, str):
        genotype = Genotype.parse(genotype)
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    nodes = genotype.normal if cell == "normal" else genotype.reduce
    return sum(op == "skip_connect" for node in nodes for op, _ in node)


def learnable_op_indices(primitives: Sequence[str], learnable_ops: Optional[Sequence[str]] = None) -> List[int]:
    """Columns of the alphas that belong to learnable operations.

    With ``learnable_ops`` given, those names (each must be in ``primitives``). Otherwise every
    op that has parameters when built as a search op (``get_op(name, C=4, stride=1,
    affine=False)``): in the DARTS set the convolutions, not ``none``, ``skip_connect`` (the
    identity at stride 1) or the poolings.
    """
    primitives = list(primitives)
    if learnable_ops is not None:
        unknown = [name for name in learnable_ops if name not in primitives]
        if unknown:
            raise ValueError(f"learnable_ops {unknown} are not among the module's primitives {primitives}")
        indices = [primitives.index(name) for name in learnable_ops]
    else:
        indices = [j for j, name in enumerate(primitives)
                   if sum(p.numel() for p in get_op(name, 4, 1, affine=False).parameters()) > 0]
    if not indices:
        raise ValueError(f"no learnable operation among primitives {primitives}; criterion 'stable' needs at least one")
    return sorted(indices)


class DartsPlusEarlyStopping(StoppingCallback):
    """Stop a DARTS-family search by the DARTS+ criteria (Liang et al., 2019, Sec. 3).

    Checked at every training-epoch end (``on_train_epoch_end``), not at validation end: both
    criteria depend only on the architecture parameters, which move only during training, so the
    check must not depend on whether or how often validation runs (DARTS searches often run with
    ``limit_val_batches=0``).

    * ``"skip"`` (criterion 1): stop when the normal cell of ``module.genotype()`` has at least
      ``max_skip_connects`` (2, the paper's value) ``skip_connect`` edges.
    * ``"stable"`` (criterion 1*): the *ranking* at an epoch end is, for every cell of
      ``module.alphas`` and every edge of it, the order of the learnable operations (see
      :func:`learnable_op_indices`) by decreasing alpha, ties to the lower column (softmax is
      monotone per edge, so raw alphas and their softmax give the same ranking). It is *stable
      for n epochs* when the rankings at ``n`` consecutive epoch ends are each identical to the
      one before; the search stops when ``n`` reaches ``patience`` (10, the paper's example), i.e.
      at the ``patience``-th unchanged epoch end after the last change.
    * ``"both"`` (default): stop at whichever comes first.

    On a stop ``trainer.should_stop`` is set (as Lightning's ``EarlyStopping`` does), and
    ``stopped_epoch`` and ``stop_reason`` are stored and reported with ``rank_zero_info``. Every
    check logs ``darts_plus/skip_connects`` and ``darts_plus/stable_epochs``. Under DDP the
    decision is reduced with ``trainer.strategy.reduce_boolean_decision(..., all=False)``: all
    ranks stop at the same epoch.

    The module needs ``alphas`` (mapping cell -> tensor (edges, ops)) and ``genotype()``; the op
    names come from ``primitives`` or, when ``None``, ``module.hparams.primitives`` (an op-set
    name or a list) at setup.

    Args:
        criterion: ``"skip"``, ``"stable"`` or ``"both"``.
        max_skip_connects: skip_connect edges in the normal cell that stop the search (>= 1).
        patience: unchanged epoch ends that stop the search (>= 1).
        primitives: op names of the alpha columns; ``None`` reads the module's.
        learnable_ops: names ranked by criterion 1*; ``None`` = the ops with parameters.
    """

    def __init__(
        self,
        criterion: str = "both",
        max_skip_connects: int = 2,
        patience: int = 10,
        primitives: Optional[Union[str, Sequence[str]]] = None,
        learnable_ops: Optional[Sequence[str]] = None,
    ) -> None:
        super().__init__()
        check_choice("criterion", criterion, CRITERIA, sort=False)
        self.max_skip_connects = check_int("max_skip_connects", max_skip_connects, low=1)
        self.patience = check_int("patience", patience, low=1)
        if learnable_ops is not None and (
            isinstance(learnable_ops, str) or not all(isinstance(n, str) for n in learnable_ops) or not learnable_ops
        ):
            raise ValueError(f"learnable_ops must be a non-empty list of op names or None, got {learnable_ops!r}")
        unused = {"skip": [("patience", patience != 10), ("learnable_ops", learnable_ops is not None)],
                  "stable": [("max_skip_connects", max_skip_connects != 2)]}.get(criterion, [])
        for name, given in unused:
            if given:
                raise ValueError(f"criterion={criterion!r} does not use {name} (leave it at its default or use "
                                 f"criterion='both'), got {name}={locals()[name]!r}")
        self.criterion = criterion
        self.learnable_ops = None if learnable_ops is None else list(learnable_ops)
        self.primitives: Optional[Tuple[str, ...]] = None if primitives is None else resolve_primitives(primitives)
        self._learnable: Optional[List[int]] = None
        if self.primitives is not None and criterion != "skip":
            self._learnable = learnable_op_indices(self.primitives, self.learnable_ops)

        self.last_ranking: Optional[Ranking] = None
        self.stable_epochs = 0
        self.last_skip_connects: Optional[int] = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(criterion=self.criterion)

    @property
    def uses_skip(self) -> bool:
        return self.criterion in ("skip", "both")

    @property
    def uses_stable(self) -> bool:
        return self.criterion in ("stable", "both")

    # ----------------------------------------------------------------- decisions (no trainer needed)
    def ranking(self, alphas: Mapping) -> Ranking:
        """Per cell, per edge: learnable-op columns by decreasing alpha (ties to the lower column)."""
        if self._learnable is None:
            raise RuntimeError("the op names are not known yet: pass primitives=... or run setup(stage='fit') first")
        out: Ranking = {}
        for cell, alpha in alphas.items():
            a = torch.as_tensor(alpha).detach().to("cpu", torch.float64)
            if a.dim() != 2 or a.shape[1] != len(self.primitives):
                raise ValueError(
                    f"alphas[{cell!r}] must have shape (edges, {len(self.primitives)}) for primitives "
                    f"{list(self.primitives)}, got {tuple(a.shape)}"
                )
            cols = torch.tensor(self._learnable)
            order = torch.sort(-a[:, cols], dim=1, stable=True).indices
            out[str(cell)] = cols[order].tolist()
        return out

    def check(self, genotype: Optional[Union[Genotype, str]], alphas: Optional[Mapping]) -> Tuple[bool, str]:
        """Update the counters with this epoch end's genotype / alphas and decide: ``(should_stop, reason)``.

        ``genotype`` is only read by the skip criterion and ``alphas`` only by the stable one; the
        other may be ``None``. Call once per epoch end.
        """
        reasons = []
        if self.uses_stable:
            if alphas is None:
                raise ValueError(f"criterion {self.criterion!r} needs the alphas")
            current = self.ranking(alphas)
            self.stable_epochs = self.stable_epochs + 1 if current == self.last_ranking else 0
            self.last_ranking = current
        if self.uses_skip:
            if genotype is None:
                raise ValueError(f"criterion {self.criterion!r} needs the genotype")
            self.last_skip_connects = count_skip_connects(genotype)
            if self.last_skip_connects >= self.max_skip_connects:
                reasons.append(
                    f"DARTS+ criterion 1: the normal cell has {self.last_skip_connects} skip_connects "
                    f"(>= max_skip_connects={self.max_skip_connects})"
                )
        if self.uses_stable and self.stable_epochs >= self.patience:
            reasons.append(
                f"DARTS+ criterion 1*: the ranking of the learnable operations' alphas has been stable "
                f"for {self.stable_epochs} epochs (patience={self.patience})"
            )
        return bool(reasons), "; ".join(reasons)

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        name = type(pl_module).__name__
        space = getattr(pl_module, "hparams", {}).get("space", "darts")
        if space != "darts":
            raise ValueError(f"DartsPlusEarlyStopping reads DARTS cells (skip connections of the normal cell, alphas per "
                             f"cell type); {name} searches space={space!r}: only space='darts' is supported")
        if self.uses_skip and not callable(getattr(pl_module, "genotype", None)):
            raise AttributeError(f"DartsPlusEarlyStopping(criterion={self.criterion!r}) needs `{name}.genotype()`; the module has none")
        if not self.uses_stable:
            return
        if not isinstance(getattr(pl_module, "alphas", None), Mapping):
            raise AttributeError(
                f"DartsPlusEarlyStopping(criterion={self.criterion!r}) needs `{name}.alphas`, a mapping of cell name "
                "to architecture parameters; the module has none"
            )
        if self.primitives is None:
            self.primitives = resolve_primitives(module_hparam(pl_module, "primitives", "DartsPlusEarlyStopping",
                                                                "primitives"))
            self._learnable = learnable_op_indices(self.primitives, self.learnable_ops)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        genotype = pl_module.genotype() if self.uses_skip else None
        alphas = pl_module.alphas if self.uses_stable else None
        should_stop, reason = self.check(genotype, alphas)
        # The alphas are replicated over ranks, so these are the same everywhere: logged without a sync.
        if self.uses_skip:
            pl_module.log("darts_plus/skip_connects", float(self.last_skip_connects), on_step=False, on_epoch=True)
        if self.uses_stable:
            pl_module.log("darts_plus/stable_epochs", float(self.stable_epochs), on_step=False, on_epoch=True)
        if self.stop_if(trainer, should_stop, reason, "another rank met a DARTS+ stopping criterion"):
            rank_zero_info(f"DartsPlusEarlyStopping: stopping the search at epoch {self.stopped_epoch}: {self.stop_reason}")

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"last_ranking": self.last_ranking, "stable_epochs": self.stable_epochs,
                "last_skip_connects": self.last_skip_connects, **super().state_dict()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        ranking = state_dict.get("last_ranking")
        self.last_ranking = None if ranking is None else {str(c): [list(map(int, e)) for e in r] for c, r in ranking.items()}
        self.stable_epochs = int(state_dict.get("stable_epochs", 0))
        self.last_skip_connects = state_dict.get("last_skip_connects")

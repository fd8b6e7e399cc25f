"""One-shot scoring as an Evaluator: a trained supernet's shared weights score the children of a search.

Bender, Kindermans, Zoph, Vasudevan & Le, "Understanding and Simplifying One-Shot Architecture
Search", ICML 2018, Sec. 3: after the one-shot model is trained, an architecture is evaluated by
running the supernet with only that architecture's paths, batch normalisation on the statistics of
the evaluation batch, on held-out validation data. :class:`OneShotEvaluator` gives a sample-based
search (random search, evolution, RL, ...) that score per child. The scoring is
:func:`~lit_automl.nas.one_shot.one_shot_correct`, the one implementation OneShot's own ranking
(:meth:`~lit_automl.nas.one_shot.OneShot.evaluate_architectures`) runs too; what it needs from a
supernet is :class:`~lit_automl.nas.one_shot.OneShotSupernet` (``edge_weights(architecture)`` and
``weighted_logits(x, weights)``), so another weight-sharing supernet plugs in with those two methods and
its :class:`~lit_automl.spaces.decisions.SequentialSpace`. A OneShot trained with ``space="nb201"`` scores
NAS-Bench-201 cells (:class:`~lit_automl.spaces.nb201.NB201Space`) with the same code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from lit_automl._checks import check_int
from lit_automl.nas.data_checks import check_against_datamodule
from lit_automl.nas.evaluator import DataModuleFactory, Evaluator, build_datamodule
from lit_automl.nas.one_shot import ONE_SHOT_CHECKPOINT_KEY, OneShot, OneShotSupernet, one_shot_correct
from lit_automl.spaces.darts_cells import DartsCellSpace
from lit_automl.spaces.decisions import SequentialSpace
from lit_automl.spaces.nb201 import NB201Space
from lit_automl.spaces.networks import count_parameters

__all__ = ["OneShotEvaluator", "read_one_shot_checkpoint"]

Batch = Tuple[torch.Tensor, torch.Tensor]


def read_one_shot_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """The hyperparameters of a :class:`~lit_automl.nas.one_shot.OneShot` checkpoint; any other file is refused.

    A checkpoint is a full pickle (``torch.load(weights_only=False)``): pass only files you trust.
    The tensors are memory-mapped, not read.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"OneShot checkpoint {str(path)!r} does not exist (train one with "
                         "`lit-automl fit -c recipes/one_shot_digits.yaml` and pass its checkpoint)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # not a torch file at all
        raise ValueError(f"{str(path)!r} is not a PyTorch Lightning checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or ONE_SHOT_CHECKPOINT_KEY not in checkpoint \
            or "hyper_parameters" not in checkpoint:
        kind = "a checkpoint of another module" if isinstance(checkpoint, dict) and "state_dict" in checkpoint \
            else "not a Lightning checkpoint"
        raise ValueError(f"{str(path)!r} is {kind}: OneShotEvaluator needs a checkpoint saved by "
                         f"lit_automl.nas.OneShot (it carries {ONE_SHOT_CHECKPOINT_KEY!r} and the hyperparameters)")
    return dict(checkpoint["hyper_parameters"])


class OneShotEvaluator(Evaluator):
    """Score a child with the weights of a trained one-shot supernet instead of training it (Sec. 3).

    Args:
        supernet: the path of a :class:`~lit_automl.nas.one_shot.OneShot` checkpoint (its hyperparameters are
            read here, its weights lazily at the first evaluation in each process and kept there: a worker
            process gets the path, not the weights), or a trained supernet module (a
            :class:`OneShotSupernet` ``nn.Module``; pickled with the evaluator).
        datamodule: a factory of the data (as :class:`~lit_automl.nas.evaluator.TrainingEvaluator` takes it);
            its ``val_dataloader()`` (after ``prepare_data()`` and ``setup("fit")``) scores the children.
            Use data the supernet did not train on, e.g. the held-out split of ``HoldoutDataModule``.
        batches: validation batches every child is scored on, the first ones of the loader (``None``: all).
            They are read once per process and kept in memory.
        space: the children's space; ``None``: for a OneShot, the :class:`DartsCellSpace` of its primitives,
            steps and multiplier whose networks have the supernet's C, layers and stem and no auxiliary
            head. A given :class:`DartsCellSpace` must have the supernet's ops, steps and multiplier; its
            C / layers set the network whose ``params`` / ``flops`` are reported. For a OneShot trained with
            ``space="nb201"``: an :class:`~lit_automl.spaces.nb201.NB201Space`, by default with the supernet's
            ``C`` and ``N`` (``cells_per_stage``); a given one's C / N set the reported
            :class:`~lit_automl.spaces.nb201.NB201Network`. Required for a supernet that is not a OneShot.
        device: where the supernet scores (e.g. ``"cuda"``); ``None``: a module's own device, ``"cpu"`` for a
            checkpoint path.

    ``evaluate(architecture, budget)`` returns ``val_acc`` (the one-shot accuracy on the scored batches, exactly
    what OneShot's ranking computes), ``val_acc_history`` (``[val_acc]``, so every accuracy reward reads it),
    ``max_val_acc_last5``, ``correct``, ``total``, ``params`` and ``flops`` (of the child the space builds:
    :func:`~lit_automl.spaces.networks.count_parameters` with the auxiliary head,
    :func:`~lit_automl.nas.model_metrics.forward_flops` of one example of the scored image size),
    ``train_seconds`` (the seconds the scoring forwards took: nothing is trained) and ``batches``.
    ``budget`` must be 1: a one-shot score trains nothing, and the scored batches are fixed by ``batches``
    so that every child of a search is scored on the same data (use ``budget: 1`` in a search recipe).
    """

    def __init__(self, supernet: Union[str, Path, nn.Module], datamodule: DataModuleFactory,
                 batches: Optional[int] = None, space: Optional[SequentialSpace] = None,
                 device: Optional[str] = None) -> None:
        self.batches = check_int("batches", batches, low=1, allow_none=True, hint="None: the whole validation loader")
        self.path: Optional[Path] = None
        self._module: Optional[nn.Module] = None
        self._batches: Optional[List[Batch]] = None
        if isinstance(supernet, (str, Path)):
            self.path = Path(supernet)
            hparams = read_one_shot_checkpoint(self.path)
            device = "cpu" if device is None else device
        elif isinstance(supernet, nn.Module) and isinstance(supernet, OneShotSupernet):
            self._module = supernet
            hparams = dict(getattr(supernet, "hparams", {}) or {})
            if device is None:
                device = str(next(iter(supernet.parameters())).device)
        else:
            raise ValueError(f"supernet must be the path of a OneShot checkpoint or a trained supernet module with "
                             f"edge_weights(architecture) and weighted_logits(x, weights), got {type(supernet).__name__}")
        self.device = str(torch.device(device))
        self.space = self._space(space, hparams, supernet)
        for name in ("num_classes", "in_channels"):
            if not isinstance(hparams.get(name), int):
                raise ValueError(f"the supernet's hyperparameters give no {name} (got {hparams.get(name)!r}); "
                                 "the children's params and flops need it")
        self.num_classes, self.in_channels = int(hparams["num_classes"]), int(hparams["in_channels"])
        self.datamodule = build_datamodule(datamodule)
        check_against_datamodule("OneShotEvaluator's supernet", self.datamodule,
                                 {name: (name, getattr(self, name)) for name in ("num_classes", "in_channels")})

    @staticmethod
    def _space(space: Optional[SequentialSpace], hparams: Dict[str, Any], supernet: Any) -> SequentialSpace:
        """The given space checked against a OneShot's cells, or the OneShot's own (see Args)."""
        is_one_shot = not isinstance(supernet, nn.Module) or isinstance(supernet, OneShot)
        if space is not None and not isinstance(space, SequentialSpace):
            raise ValueError(f"space must be a SequentialSpace (e.g. DartsCellSpace), got {type(space).__name__}")
        if not is_one_shot:
            if space is None:
                raise ValueError(f"a {type(supernet).__name__} supernet needs space=... (the SequentialSpace of the "
                                 "architectures its edge_weights accepts)")
            return space
        if hparams.get("space") == "nb201":
            return OneShotEvaluator._nb201_space(space, hparams)
        own = DartsCellSpace(hparams["primitives"], steps=hparams["steps"], multiplier=hparams["multiplier"],
                             C=hparams["C"], layers=hparams["layers"], auxiliary=False,
                             stem_multiplier=hparams["stem_multiplier"])
        if space is None:
            return own
        if not isinstance(space, DartsCellSpace):
            raise ValueError(f"a OneShot supernet scores DARTS cells: space must be a DartsCellSpace, got "
                             f"{type(space).__name__}")
        mine = (space.ops, space.steps, space.multiplier)
        theirs = (own.ops, own.steps, own.multiplier)
        if mine != theirs:
            raise ValueError(f"space has ops {list(space.ops)}, steps={space.steps}, multiplier={space.multiplier} but "
                             f"the supernet has ops {list(own.ops)}, steps={own.steps}, multiplier={own.multiplier}")
        return space

    @staticmethod
    def _nb201_space(space: Optional[SequentialSpace], hparams: Dict[str, Any]) -> SequentialSpace:
        """A OneShot over NAS-Bench-201 cells: the given :class:`NB201Space` or one with the supernet's C and N."""
        if space is None:
            N = hparams.get("cells_per_stage")  # None: the benchmark's N, NB201Space's default too
            return NB201Space(C=hparams["C"]) if N is None else NB201Space(C=hparams["C"], N=N)
        if not isinstance(space, NB201Space):
            raise ValueError(f"a OneShot supernet trained with space='nb201' scores NAS-Bench-201 cells: space must "
                             f"be an NB201Space, got {type(space).__name__}")
        return space

    def __getstate__(self) -> Dict[str, Any]:
        """Pickled without the cached batches, and without the supernet when it comes from a checkpoint path:
        a worker process loads its own at its first evaluation."""
        state = dict(self.__dict__)
        state["_batches"] = None
        if self.path is not None:
            state["_module"] = None
        return state

    # ------------------------------------------------------------------ lazily loaded, per process
    def supernet(self) -> nn.Module:
        """The supernet on ``device``: from the checkpoint at the first call in this process, then cached."""
        if self._module is None:
            self._module = OneShot.load_from_checkpoint(self.path, map_location=self.device)
        return self._module.to(self.device)

    def validation_batches(self) -> List[Batch]:
        """The scored ``(x, y)`` batches on ``device``: read at the first call in this process, then cached."""
        if self._batches is None:
            dm = self.datamodule
            dm.prepare_data()
            dm.setup("fit")
            out: List[Batch] = []
            for b, batch in enumerate(dm.val_dataloader()):
                if self.batches is not None and b >= self.batches:
                    break
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ValueError(f"one-shot scoring needs (inputs, targets) validation batches, got "
                                     f"{type(batch).__name__}")
                out.append((batch[0].to(self.device), batch[1].to(self.device)))
            if not out:
                raise ValueError(f"{type(dm).__name__}.val_dataloader() yielded no batches: nothing to score on")
            self._batches = out
        return self._batches

    # ------------------------------------------------------------------ scoring
    def evaluate(self, architecture: Any, budget: int = 1) -> Dict[str, Any]:
        """One-shot accuracy, params and FLOPs of ``architecture`` (class docstring); ``budget`` must be 1."""
        check_int("budget", budget, low=1, high=1, allowed="1",
                  hint="a one-shot score trains nothing; the scored data is set by OneShotEvaluator(batches=...)")
        self.space.encode(architecture)  # refuses an architecture outside the space, naming the bad part
        supernet, batches = self.supernet(), self.validation_batches()
        start = time.perf_counter()
        correct = int(one_shot_correct(supernet, [architecture], batches)[0])
        seconds = time.perf_counter() - start
        total = sum(len(y) for _, y in batches)
        accuracy = correct / total
        return {"val_acc_history": [accuracy], "val_acc": accuracy, "max_val_acc_last5": accuracy,
                "correct": correct, "total": total, **self.costs(architecture, tuple(batches[0][0].shape[1:])),
                "train_seconds": seconds, "batches": len(batches)}

    def costs(self, architecture: Any, input_shape: Tuple[int, ...]) -> Dict[str, float]:
        """``params`` and ``flops`` (one example of ``input_shape``) of the child network the space builds."""
        from lit_automl.nas.model_metrics import forward_flops

        network = self.space.build(architecture, self.in_channels, self.num_classes, input_shape[-1])
        return {"params": count_parameters(network, exclude_auxiliary=False),
                "flops": float(forward_flops(network, input_shape))}

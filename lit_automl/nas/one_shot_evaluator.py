"""One-shot scoring: a trained supernet's shared weights score sampled architectures (one implementation).

Bender, Kindermans, Zoph, Vasudevan & Le, "Understanding and Simplifying One-Shot Architecture
Search", ICML 2018, Sec. 3: after the one-shot model is trained, an architecture is evaluated by
running the supernet with only that architecture's paths, batch normalisation on the statistics of
the evaluation batch (the running averages mix every architecture trained), on held-out validation
data; its accuracy ranks it. :func:`one_shot_correct` is that evaluation, written once:
:meth:`lit_automl.nas.one_shot.OneShot.evaluate_architectures` (the module's own ranking) and
:class:`OneShotEvaluator` (one child of a sample-based search) both call it.

What scoring needs from a supernet (:class:`OneShotSupernet`), nothing more:

* ``edge_weights(architecture)``: the supernet's edge weights that run exactly that architecture
  (for the DARTS supernet the 0/1 path mask, joined per node);
* ``weighted_logits(x, weights)``: the supernet's logits of inputs ``x`` with those weights.

Scoring enters :func:`~lit_automl.spaces.networks.batch_statistics` on the supernet module around
them, so batch norm uses each batch's own statistics and the running statistics are left as found.
Another weight-sharing supernet (e.g. one over NAS-Bench-201 cells) plugs in by providing these two
methods on an ``nn.Module`` and a :class:`~lit_automl.spaces.decisions.SequentialSpace` of its
architectures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import torch
from torch import nn

from lit_automl._checks import check_int
from lit_automl.nas.data_checks import check_against_datamodule
from lit_automl.nas.evaluator import DataModuleFactory, Evaluator, build_datamodule
from lit_automl.spaces.darts_cells import DartsCellSpace
from lit_automl.spaces.decisions import SequentialSpace
from lit_automl.spaces.networks import batch_statistics, count_parameters

__all__ = ["ONE_SHOT_CHECKPOINT_KEY", "OneShotEvaluator", "OneShotSupernet", "one_shot_correct", "one_shot_logits",
           "read_one_shot_checkpoint"]

Batch = Tuple[torch.Tensor, torch.Tensor]

ONE_SHOT_CHECKPOINT_KEY = "one_shot_ranking"
"""The entry :class:`~lit_automl.nas.one_shot.OneShot` adds to every checkpoint it saves (its ranking)."""


@runtime_checkable
class OneShotSupernet(Protocol):
    """A trained weight-sharing supernet (an ``nn.Module``) that one-shot scoring can use (module docstring)."""

    def edge_weights(self, architecture: Any) -> Sequence[torch.Tensor]:
        """Edge weights that run exactly ``architecture``'s paths (refuse an architecture it cannot run)."""

    def weighted_logits(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits of ``x`` with edge weights ``weights``."""


def one_shot_logits(supernet: OneShotSupernet, x: torch.Tensor, architecture: Any) -> torch.Tensor:
    """Logits of ``architecture`` with the shared weights, batch norm on ``x``'s own statistics (Sec. 3)."""
    with batch_statistics(supernet):
        return supernet.weighted_logits(x, supernet.edge_weights(architecture))


@torch.no_grad()
def one_shot_correct(supernet: OneShotSupernet, architectures: Sequence[Any], batches: Sequence[Batch],
                     on_architecture: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """Correct predictions of each architecture over ``batches`` (a long tensor on the supernet's device).

    Every architecture runs on every ``(x, y)`` batch with batch norm on that batch's statistics
    (Bender et al. 2018, Sec. 3), so the counts do not depend on how batches are grouped or spread
    over processes. ``on_architecture`` is called after each architecture (a progress bar).
    """
    device = next(iter(supernet.parameters())).device
    correct = torch.zeros(len(architectures), dtype=torch.long, device=device)
    with batch_statistics(supernet):
        for a, architecture in enumerate(architectures):
            weights = supernet.edge_weights(architecture)
            for x, y in batches:
                correct[a] += (supernet.weighted_logits(x, weights).argmax(-1) == y).sum()
            if on_architecture is not None:
                on_architecture()
    return correct


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
            C / layers set the network whose ``params`` / ``flops`` are reported. Required for a supernet
            that is not a OneShot.
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
        from lit_automl.nas.one_shot import OneShot

        is_one_shot = not isinstance(supernet, nn.Module) or isinstance(supernet, OneShot)
        if space is not None and not isinstance(space, SequentialSpace):
            raise ValueError(f"space must be a SequentialSpace (e.g. DartsCellSpace), got {type(space).__name__}")
        if not is_one_shot:
            if space is None:
                raise ValueError(f"a {type(supernet).__name__} supernet needs space=... (the SequentialSpace of the "
                                 "architectures its edge_weights accepts)")
            return space
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
            from lit_automl.nas.one_shot import OneShot

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

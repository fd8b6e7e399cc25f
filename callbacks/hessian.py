"""Dominant Hessian eigenvalue of the validation loss w.r.t. the architecture, and DARTS-ES.

Zela, Elsken, Saikia, Marrakchi, Brox & Hutter, "Understanding and Robustifying Differentiable
Architecture Search", ICLR 2020. Sec. 4: when a DARTS search degenerates (towards cells of
parameter-free operations), the dominant eigenvalue ``lambda_max`` of the Hessian
``d^2 L_valid / d alpha^2`` grows, and a large ``lambda_max`` goes with a large drop in accuracy
when the continuous architecture is discretised. Sec. 5.2 (DARTS-ES): stop the search once this
eigenvalue rises too fast and return the architecture of a few epochs earlier.

The eigenvalue is found by power iteration on Hessian-vector products (double backward through
``torch.autograd.grad(..., create_graph=True)``); the Hessian itself is never formed.

The stopping rule is the paper's text (Sec. 5.2: window 5, k = 5, ratio 0.75). The authors'
released code (automl/RobustDARTS) differs in details we do not copy: it forms the full Hessian
and takes its largest eigenvalue, adds ``arch_weight_decay * I`` to it, centres the averaging
window, compares against ``1 / 1.3`` instead of 0.75, and only starts checking after a minimum
epoch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import move_data_to_device
from pytorch_lightning.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn

from lit_automl._checks import check_bool, check_choice, check_int, check_real
from lit_automl.distributed import all_reduce_mean, world_size
from lit_automl.spaces.genotype import Genotype
from lit_automl.spaces.networks import batch_statistics, preserved_modes

from ._stopping import StoppingCallback

__all__ = ["HessianEigenvalueMonitor", "darts_es_rule", "dominant_hessian_eigenvalue"]

Batch = Tuple[torch.Tensor, torch.Tensor]
SOURCES = ("arch_half", "val_dataloader")
MODES = ("eval", "train")


# --------------------------------------------------------------------------- the maths
def dominant_hessian_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    tol: float = 1e-3,
    generator: Optional[torch.Generator] = None,
    *,
    reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Tuple[float, torch.Tensor]:
    """``(eigenvalue, eigenvector)`` of the Hessian of ``loss_fn()`` w.r.t. ``params`` by power iteration.

    Power iteration converges to the eigenvalue of largest *magnitude*; it is returned with its
    sign (the Rayleigh quotient ``v^T H v`` of the final unit vector ``v``), so where a negative
    eigenvalue dominates in magnitude that negative value is what comes back. The eigenvector is
    one flat float64 tensor over ``params`` concatenated in the given order, of unit norm.

    ``loss_fn`` is called once; its first-order gradient graph is kept and every iteration is one
    Hessian-vector product (a double backward). Vectors, norms and the Rayleigh quotient are
    float64; the products themselves run in the parameters' dtype. Iteration stops after
    ``iterations`` products or once the eigenvalue changes by at most ``tol`` relative to its
    magnitude (``tol=0`` runs all iterations). ``generator`` draws the random start vector (a
    generator seeded 0 when ``None``: the global RNG is never touched). ``reduce``, if given, is
    applied to every flat Hessian-vector product, e.g. a mean over DDP ranks, which makes this the
    Hessian of the loss averaged over ranks; all ranks then iterate identically.

    ``.grad`` of ``params`` is not touched.
    """
    params = list(params)
    if not params or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        raise ValueError("params must be a non-empty sequence of tensors with requires_grad=True")
    check_int("iterations", iterations, low=1)
    check_real("tol", tol, low=0)
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    device = params[0].device
    sizes = [p.numel() for p in params]
    with torch.enable_grad():
        loss = loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn() must return a scalar tensor, got {type(loss).__name__} {getattr(loss, 'shape', '')}")
        grads = torch.autograd.grad(loss.reshape(()), params, create_graph=True, allow_unused=True)
        # Gradients that do not depend on params again (loss linear in them) have a zero Hessian block.
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

        def hvp(v: torch.Tensor) -> torch.Tensor:
            chunks = list(torch.split(v, sizes))
            out = [torch.zeros(n, dtype=torch.float64, device=device) for n in sizes]
            if live:
                products = torch.autograd.grad(
                    [grads[i] for i in live], params,
                    grad_outputs=[chunks[i].view_as(params[i]).to(params[i].dtype) for i in live],
                    retain_graph=True, allow_unused=True,
                )
                for j, hv in enumerate(products):
                    if hv is not None:
                        out[j] = hv.detach().reshape(-1).to(torch.float64)
            flat = torch.cat(out)
            return reduce(flat) if reduce is not None else flat

        v = torch.randn(sum(sizes), generator=generator, dtype=torch.float64).to(device)
        v = v / v.norm()
        eigenvalue: Optional[float] = None
        for _ in range(iterations):
            hv = hvp(v)
            current = float(torch.dot(v, hv))
            norm = float(hv.norm())
            converged = eigenvalue is not None and abs(current - eigenvalue) <= tol * max(abs(current), 1e-12)
            eigenvalue = current
            if norm == 0.0 or converged:
                break
            v = hv / norm
    return float(eigenvalue), v.detach()


def darts_es_rule(
    eigenvalues: Sequence[float], window: int = 5, k: int = 5, threshold: float = 0.75
) -> Tuple[bool, Optional[float]]:
    """DARTS-ES on per-epoch eigenvalues (Zela et al., ICLR 2020, Sec. 5.2): ``(stop, ratio)``.

    ``eigenvalues`` holds one value per consecutive epoch, the last being the current epoch
    ``i``. With ``avg(j)`` the mean over the ``window`` epochs ending at ``j`` (a trailing
    window: only past values are known at epoch ``i``), stop when
    ``avg(i - k) / avg(i) < threshold``. ``ratio`` is ``None`` while fewer than ``window + k``
    values exist or while ``avg(i) <= 0`` (the ratio then says nothing about a growing
    eigenvalue, and there is no stop).
    """
    values = [float(x) for x in eigenvalues]
    n = len(values)
    if n < window + k:
        return False, None
    now = sum(values[n - window:]) / window
    before = sum(values[n - k - window: n - k]) / window
    if not now > 0:
        return False, None
    ratio = before / now
    return ratio < threshold, ratio


# --------------------------------------------------------------------------- the callback
class HessianEigenvalueMonitor(StoppingCallback):
    """Log the dominant Hessian eigenvalue of the validation loss w.r.t. ``module.alphas``; optionally DARTS-ES.

    Every ``every_n_epochs`` epochs (at the end of training epochs 0, n, 2n, ...) the Hessian of
    the validation loss w.r.t. all architecture parameters (``module.alphas`` values concatenated
    in order) is probed with :func:`dominant_hessian_eigenvalue` and the result is logged as
    ``arch/hessian_eigenvalue`` (Zela et al., ICLR 2020, Sec. 4). It is checked at training-epoch
    end because the alphas only move in training and the captured batches belong to that epoch.

    Which data: with ``source="arch_half"`` (default) the ``"val"`` halves of the last
    ``num_batches`` paired training batches of the epoch, ``{"train": (x, y), "val": (x, y)}``:
    the architecture split on which DARTS computes ``L_val`` and steps the alphas, and the data
    the authors' code probes (their search "valid" queue, last batch of the epoch). The batches
    are kept by reference while training, so no loader is re-iterated and no RNG is consumed.
    ``source="val_dataloader"`` takes the first ``num_batches`` batches ``(x, y)`` of
    ``trainer.val_dataloaders`` (the held-out monitoring set; the datamodule's
    ``val_dataloader()`` when validation has not run yet). The loss is ``loss_fn(module(x), y)``
    (cross-entropy by default), averaged over the batches weighted by their size.

    The module runs in eval mode (``mode="eval"``: batch-norm running statistics, nothing
    updated) or in train mode (``mode="train"``: batch statistics, as the architecture step and
    the authors' code see them; running statistics are restored afterwards); each submodule's
    training flag is restored. No parameter's ``.grad`` is touched.

    DDP: every Hessian-vector product is averaged over ranks, so the eigenvalue is the one of the
    loss over all ranks' batches and identical everywhere; stop decisions are reduced with
    ``trainer.strategy.reduce_boolean_decision(..., all=False)``.

    DARTS-ES (``early_stop=True``, Sec. 5.2): after each epoch's eigenvalue, :func:`darts_es_rule`
    with ``window=5``, ``k=5``, ``threshold=0.75`` (the paper's values); on a stop
    ``trainer.should_stop`` is set and :meth:`genotype_at_stop` returns the genotype of epoch
    ``stopped_epoch - k`` (genotypes are stored per epoch as text); the ratio is logged as
    ``arch/hessian_es_ratio`` once defined. Needs ``every_n_epochs=1`` and ``module.genotype()``.

    Args:
        every_n_epochs: probe at epochs ``e`` with ``e % every_n_epochs == 0`` (ours: 1).
        num_batches: batches the loss is averaged over (ours: 1, as the authors' code).
        power_iterations: maximum Hessian-vector products per probe (ours: 20).
        tol: relative change of the eigenvalue at which power iteration stops (ours: 1e-3).
        source: ``"arch_half"`` or ``"val_dataloader"`` (see above).
        mode: ``"eval"`` or ``"train"`` (see above).
        early_stop: apply DARTS-ES.
        window, k, threshold: the DARTS-ES rule.
        seed: seeds the power-iteration start vector (``seed + epoch``), same on every rank.
        loss_fn: ``loss_fn(logits, targets) -> scalar``; ``None`` is ``F.cross_entropy``.
    """

    def __init__(self, every_n_epochs: int = 1, num_batches: int = 1, power_iterations: int = 20, tol: float = 1e-3,
                 source: str = "arch_half", mode: str = "eval", early_stop: bool = False, window: int = 5, k: int = 5,
                 threshold: float = 0.75, seed: int = 0,
                 loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None) -> None:
        super().__init__()
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, low=1)
        self.num_batches = check_int("num_batches", num_batches, low=1)
        self.power_iterations = check_int("power_iterations", power_iterations, low=1)
        self.tol = check_real("tol", tol, low=0)
        self.source = check_choice("source", source, SOURCES)
        self.mode = check_choice("mode", mode, MODES)
        self.early_stop = check_bool("early_stop", early_stop)
        self.window = check_int("window", window, low=1)
        self.k = check_int("k", k, low=1)
        self.threshold = check_real("threshold", threshold, low=0, high=1, low_open=True, high_open=True,
                                    hint="the paper uses 0.75")
        if not early_stop:
            for name, value, default in (("window", window, 5), ("k", k, 5), ("threshold", threshold, 0.75)):
                if value != default:
                    raise ValueError(f"{name} belongs to the DARTS-ES rule, which early_stop=False does not run (leave it "
                                     f"at {default} or set early_stop=True), got {name}={value!r}")
        if early_stop and every_n_epochs != 1:
            raise ValueError(
                f"early_stop=True needs every_n_epochs=1 (DARTS-ES averages per-epoch eigenvalues), got every_n_epochs={every_n_epochs!r}"
            )
        self.seed = check_int("seed", seed, low=0)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (logits, targets) -> loss or None, got {loss_fn!r}")
        self.loss_fn = loss_fn

        self.eigenvalues: Dict[int, float] = {}
        self.genotypes: Dict[int, str] = {}
        self.stop_genotype: Optional[str] = None
        self.last_ratio: Optional[float] = None  # avg(epoch - k) / avg(epoch) of the last check
        self._captured: Deque[Batch] = deque(maxlen=self.num_batches)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(source=self.source, mode=self.mode)

    # ----------------------------------------------------------------- decisions (no trainer needed)
    def is_due(self, epoch: int) -> bool:
        """Whether the eigenvalue is computed at the end of 0-based ``epoch``."""
        return epoch % self.every_n_epochs == 0

    def check(self, epoch: int, eigenvalue: float, genotype: Optional[Any] = None) -> Tuple[bool, str]:
        """Record ``eigenvalue`` (and ``genotype`` as text) for ``epoch`` and apply DARTS-ES: ``(should_stop, reason)``.

        Without ``early_stop`` this only records. The rule looks at the eigenvalues of the
        ``window + k`` epochs ending at ``epoch``; if any of them is missing there is no stop.
        """
        epoch = int(epoch)
        self.eigenvalues[epoch] = float(eigenvalue)
        if genotype is not None:
            self.genotypes[epoch] = str(genotype)
        self.last_ratio = None
        if not self.early_stop:
            return False, ""
        span = range(epoch - self.window - self.k + 1, epoch + 1)
        if any(e not in self.eigenvalues for e in span):
            return False, ""
        stop, ratio = darts_es_rule([self.eigenvalues[e] for e in span], self.window, self.k, self.threshold)
        self.last_ratio = ratio
        if not stop:
            return False, ""
        reason = (
            f"DARTS-ES: the {self.window}-epoch mean of the dominant Hessian eigenvalue grew from epoch {epoch - self.k} "
            f"to epoch {epoch}: ratio {ratio:.4f} < {self.threshold}; returning the genotype of epoch {epoch - self.k}"
        )
        return True, reason

    def genotype_at_stop(self) -> Optional[Genotype]:
        """The genotype of epoch ``stopped_epoch - k`` after a DARTS-ES stop; ``None`` if the run did not stop."""
        return None if self.stop_genotype is None else Genotype.parse(self.stop_genotype)

    # ----------------------------------------------------------------- the computation
    def compute_eigenvalue(self, pl_module: pl.LightningModule, batches: Sequence[Batch], epoch: int = 0) -> Tuple[float, torch.Tensor]:
        """Dominant eigenvalue and eigenvector of the Hessian of the loss on ``batches`` w.r.t. ``pl_module.alphas``."""
        if not batches:
            raise ValueError("compute_eigenvalue needs at least one (inputs, targets) batch")
        params = list(_alphas(pl_module).values())
        loss_fn = self.loss_fn or F.cross_entropy
        total = sum(len(y) for _, y in batches)

        def loss() -> torch.Tensor:
            return sum(loss_fn(pl_module(x), y) * (len(y) / total) for x, y in batches)

        generator = torch.Generator().manual_seed(self.seed + int(epoch))
        reduce = (lambda t: all_reduce_mean([t])[0]) if world_size() > 1 else None
        with _probe_mode(pl_module, self.mode):
            return dominant_hessian_eigenvalue(loss, params, self.power_iterations, self.tol, generator, reduce=reduce)

    def _batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> List[Batch]:
        if self.source == "arch_half":
            return list(self._captured)
        loaders = trainer.val_dataloaders
        if loaders is None and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
            loaders = trainer.datamodule.val_dataloader()
        if loaders is None:
            raise RuntimeError(
                "HessianEigenvalueMonitor(source='val_dataloader') found no validation dataloader "
                "(trainer.val_dataloaders is None and no datamodule.val_dataloader()); use source='arch_half'"
            )
        if isinstance(loaders, Mapping):
            loaders = next(iter(loaders.values()))
        elif isinstance(loaders, (list, tuple)):
            loaders = loaders[0]
        batches: List[Batch] = []
        for batch in loaders:
            batches.append(_pair(move_data_to_device(batch, pl_module.device), "validation batch"))
            if len(batches) == self.num_batches:
                break
        return batches

    # ----------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        _alphas(pl_module)
        if self.early_stop and not callable(getattr(pl_module, "genotype", None)):
            raise AttributeError(
                f"HessianEigenvalueMonitor(early_stop=True) returns a genotype from k epochs back and needs "
                f"`{type(pl_module).__name__}.genotype()`; the module has none"
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._captured.clear()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.source != "arch_half" or not self.is_due(trainer.current_epoch):
            return
        if not isinstance(batch, Mapping) or "val" not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise TypeError(
                "HessianEigenvalueMonitor(source='arch_half') needs paired training batches "
                f"{{'train': (x, y), 'val': (x, y)}} (BilevelDataModule); got {got}. Use source='val_dataloader' otherwise"
            )
        self._captured.append(_pair(batch["val"], "batch['val']"))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self.is_due(epoch):
            return
        batches = self._batches(trainer, pl_module)
        # Every rank must take part in the all-reduced products, or none does.
        if not trainer.strategy.reduce_boolean_decision(bool(batches), all=True):
            rank_zero_warn(f"HessianEigenvalueMonitor: no batches at epoch {epoch} on some rank; eigenvalue skipped")
            return
        eigenvalue, _ = self.compute_eigenvalue(pl_module, batches, epoch)
        self._captured.clear()  # drop the references to the batches
        pl_module.log("arch/hessian_eigenvalue", eigenvalue, on_step=False, on_epoch=True)
        rank_zero_debug(f"HessianEigenvalueMonitor: epoch {epoch}: dominant eigenvalue {eigenvalue:.6g}")
        genotype = pl_module.genotype() if self.early_stop else None
        should_stop, reason = self.check(epoch, eigenvalue, genotype)
        if not self.early_stop:
            return
        if self.last_ratio is not None:
            pl_module.log("arch/hessian_es_ratio", self.last_ratio, on_step=False, on_epoch=True)
        if self.stop_if(trainer, should_stop, reason, "DARTS-ES: another rank met the stopping rule"):
            self.stop_genotype = self.genotypes.get(epoch - self.k)
            rank_zero_info(f"HessianEigenvalueMonitor: stopping at epoch {epoch}. {self.stop_reason}. Genotype: {self.stop_genotype}")

    # ----------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        return {"eigenvalues": [[e, v] for e, v in sorted(self.eigenvalues.items())],
                "genotypes": [[e, t] for e, t in sorted(self.genotypes.items())],
                "stop_genotype": self.stop_genotype, **super().state_dict()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.eigenvalues = {int(e): float(v) for e, v in state_dict.get("eigenvalues", [])}
        self.genotypes = {int(e): str(t) for e, t in state_dict.get("genotypes", [])}
        self.stop_genotype = state_dict.get("stop_genotype")


# --------------------------------------------------------------------------- helpers
def _alphas(pl_module: pl.LightningModule) -> Mapping:
    alphas = getattr(pl_module, "alphas", None)
    if not isinstance(alphas, Mapping) or not alphas:
        raise AttributeError(
            f"HessianEigenvalueMonitor needs `{type(pl_module).__name__}.alphas`, a mapping of cell name to "
            "architecture parameters; the module has none"
        )
    return alphas


def _pair(batch: Any, what: str) -> Batch:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"HessianEigenvalueMonitor expects {what} to be (inputs, targets), got {type(batch).__name__}")
    return batch[0], batch[1]


@contextmanager
def _probe_mode(module: torch.nn.Module, mode: str) -> Iterator[None]:
    """Eval or train mode for the probe; restores every submodule's flag and, in train mode, the buffers."""
    if mode == "eval":
        with preserved_modes(module):
            module.eval()
            yield
    else:
        with batch_statistics(module):
            yield


"""Networks: the search supernet and the evaluation networks built from a genotype.

Shapes follow Liu et al., "DARTS", ICLR 2019: a 3x3 conv stem, cells with reductions at 1/3 and
2/3 of the depth (channels doubled there), global average pooling and a linear classifier.
Evaluation networks add an auxiliary head at 2/3 depth (Szegedy et al. 2015; DARTS Sec. 3.2) and
drop path on every non-identity path.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from lit_automl._checks import check_int, check_real
from lit_automl.spaces.batch_norm import BatchNorm2d
from lit_automl.spaces.cells import Cell, SearchCell, edge_primitive_lists
from lit_automl.spaces.geometry import CELL_TYPES, num_search_edges
from lit_automl.spaces.ops import DARTS_OPS, resolve_primitives, validate_primitives


AUTO_RECOMPUTE_ELEMENTS = 3 * 2 ** 20
"""``checkpoint_cells="auto"`` recomputes a cell whose input holds at least this many elements (12 MiB
in float32). At DARTS's search size (batch 64, 32x32, C=16) those are the three cells that read
32x32 maps (the two first normal cells and the first reduction), which hold most activations:
measured on 2 CPU cores, 0.62 of the memory of recomputing nothing for 1.24x the time (every cell:
0.39 of the memory for 1.8x the time). Small inputs (the digits demos) recompute nothing: there
recomputing nearly doubles the step for memory that does not matter (``benchmarks/darts_step.py``)."""


def check_image_input(x: torch.Tensor, in_channels: int, min_size: int = 1, reductions: int = 0) -> None:
    """``x`` is an image batch ``(N, in_channels, H, W)`` with ``H, W >= min_size`` (every network's forward).

    ``reductions``: how many times the network halves the map (stride-2 stages); the input must be at
    least ``2 ** reductions`` on each side, so that every halving has a map of at least 2x2 to halve."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}; "
            f"set in_channels to match the data"
        )
    min_size = max(min_size, 2 ** reductions)
    if min(x.shape[-2:]) < min_size:
        why = f" (it halves the input {reductions} times, in stride-2 reductions)" if reductions else ""
        raise ValueError(f"input of {x.shape[-2]}x{x.shape[-1]} is too small: this network needs at least "
                         f"{min_size}x{min_size}{why}")


def reduction_layers(layers: int) -> Tuple[int, ...]:
    """Indices of the reduction cells: at 1/3 and 2/3 of the depth."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class SearchNetwork(nn.Module):
    """The DARTS supernet: a stack of search cells sharing one weight tensor per cell type.

    Architecture weights are not owned here: ``forward(x, weights_normal, weights_reduce)`` takes
    them (each of shape (num_edges, num_ops)) from the search method. Paper defaults: C=16,
    8 cells, 4 steps, multiplier 4, stem multiplier 3 (Sec. 3.1.1).

    ``edge_primitives`` (optional, ``{"normal": [...], "reduce": [...]}``, one equally long op list
    per edge) replaces ``primitives`` edge by edge: P-DARTS's later stages search only the ops that
    survived on each edge. ``partial_channels`` is PC-DARTS's K (see :class:`MixedEdge`).

    ``checkpoint_cells`` (this library's option, off by default): while training, each cell keeps
    only its inputs and recomputes its activations in backward (``torch.utils.checkpoint``), so a
    batch that does not fit in memory fits, at the cost of one more forward per cell. ``True``
    recomputes every cell, an int ``n`` the first ``n`` (those at the highest resolution hold the
    most activations), ``"auto"`` the cells whose input holds at least
    :data:`AUTO_RECOMPUTE_ELEMENTS` elements, settled at the first training forward
    (:attr:`recomputed_cells`). The numbers are the same, batch-norm running statistics are
    updated once, and dropout replays its draw.
    The recomputation uses the tensors the cell was bound to in the forward, so passes under
    ``torch.func.functional_call`` (DARTS's virtual steps) recompute with their functional weights.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        primitives: Sequence[str] = DARTS_OPS,
        in_channels: int = 3,
        partial_channels: int = 1,
        edge_primitives: Optional[Mapping[str, Sequence[Sequence[str]]]] = None,
        checkpoint_cells: Union[bool, int, str] = False,
    ):
        super().__init__()
        if not isinstance(checkpoint_cells, bool) and checkpoint_cells != "auto":
            check_int("checkpoint_cells", checkpoint_cells, low=0, high=layers,
                      allowed=f"True, False, 'auto' or a number of leading cells in [0, {layers}]")
        self.recomputed_cells: Optional[Tuple[int, ...]] = (
            None if checkpoint_cells == "auto" else tuple(range(layers if checkpoint_cells is True else int(checkpoint_cells)))
        )
        """Indices of the cells recomputed in backward (``None`` until ``"auto"`` has seen a training forward)."""
        for name, value in (("C", C), ("num_classes", num_classes), ("layers", layers), ("steps", steps),
                            ("multiplier", multiplier), ("stem_multiplier", stem_multiplier),
                            ("in_channels", in_channels), ("partial_channels", partial_channels)):
            check_int(name, value, low=1, allowed="a positive int")
        if multiplier > steps:
            raise ValueError(f"multiplier must be at most steps={steps}, got {multiplier}")
        self.primitives = validate_primitives(primitives)
        self.steps, self.multiplier, self.in_channels = steps, multiplier, in_channels
        self.num_edges = num_search_edges(steps)
        if edge_primitives is None:
            edge_primitives = {cell: [self.primitives] * self.num_edges for cell in CELL_TYPES}
        if set(edge_primitives) != set(CELL_TYPES):
            raise ValueError(f"edge_primitives must have the keys {list(CELL_TYPES)}, got {sorted(edge_primitives)}")
        self.edge_primitives: Dict[str, List[Tuple[str, ...]]] = {
            cell: edge_primitive_lists(edge_primitives[cell], self.num_edges) for cell in CELL_TYPES
        }
        num_ops = {len(v[0]) for v in self.edge_primitives.values()}
        if len(num_ops) != 1:
            raise ValueError(f"normal and reduce edges must have the same number of candidate ops, got {sorted(num_ops)}")
        self.num_ops = num_ops.pop()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        reductions = reduction_layers(layers)
        self.num_reductions = len(reductions)
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            prims = self.edge_primitives["reduce" if reduction else "normal"]
            cells.append(SearchCell(steps, multiplier, C_pp, C_p, C_curr, reduction, reduction_prev, prims,
                                    partial_channels))
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    @property
    def alpha_shape(self) -> Tuple[int, int]:
        """Shape of one cell type's architecture weights: (num_edges, num_ops)."""
        return (self.num_edges, self.num_ops)

    @property
    def skip_dropout(self) -> float:
        """P-DARTS's dropout rate after every ``skip_connect`` of the supernet."""
        rates = {edge.identity_dropout for cell in self.cells for edge in cell.edges}
        return rates.pop() if len(rates) == 1 else float("nan")

    @skip_dropout.setter
    def skip_dropout(self, p: float) -> None:
        p = check_real("skip_dropout", p, low=0.0, high=1.0, high_open=True, allowed="a number in [0, 1)")
        for cell in self.cells:
            for edge in cell.edges:
                edge.identity_dropout = p

    def forward(self, x: torch.Tensor, weights_normal: torch.Tensor, weights_reduce: torch.Tensor,
                scale_normal: Optional[torch.Tensor] = None, scale_reduce: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``weights_*``: (num_edges, num_ops) op weights; ``scale_*``: optional (num_edges,) weight of
        each whole edge (PC-DARTS's edge normalisation)."""
        check_image_input(x, self.in_channels, reductions=self.num_reductions)
        for name, w in (("weights_normal", weights_normal), ("weights_reduce", weights_reduce)):
            if tuple(w.shape) != self.alpha_shape:
                raise ValueError(f"{name} must have shape {self.alpha_shape}, got {tuple(w.shape)}")
        for name, w in (("scale_normal", scale_normal), ("scale_reduce", scale_reduce)):
            if w is not None and tuple(w.shape) != (self.num_edges,):
                raise ValueError(f"{name} must have shape ({self.num_edges},), got {tuple(w.shape)}")
        # One host sync per cell type and forward, not one per op.
        active_normal = (weights_normal != 0).tolist()
        active_reduce = (weights_reduce != 0).tolist()
        s0 = s1 = self.stem(x)
        training = self.training and torch.is_grad_enabled()
        settling = training and self.recomputed_cells is None
        recompute = [] if settling else list(self.recomputed_cells or ()) if training else []
        for i, cell in enumerate(self.cells):
            if settling and s1.numel() >= AUTO_RECOMPUTE_ELEMENTS:
                recompute.append(i)
            if cell.reduction:
                args = (s0, s1, weights_reduce, active_reduce, scale_reduce)
            else:
                args = (s0, s1, weights_normal, active_normal, scale_normal)
            s0, s1 = s1, (recompute_in_backward(cell, *args) if i in recompute else cell(*args))
        if settling:
            self.recomputed_cells = tuple(recompute)
        return self.classifier(self.global_pooling(s1).flatten(1))


def recompute_in_backward(module: nn.Module, *args: Any) -> Any:
    """``module(*args)`` keeping only its inputs for backward, which recomputes the rest.

    The recomputation runs on the parameters and buffers ``module`` is bound to now: its own, or
    the functional ones of an enclosing ``torch.func.functional_call``, which is over by the time
    backward runs. Batch-norm running statistics are updated by this forward only (the buffers are
    put back after the recomputation), and dropout replays its draw (``torch.utils.checkpoint``
    restores the RNG state).
    """
    state = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    buffers = [b for _, b in module.named_buffers()]

    def run(*inputs: Any) -> Any:
        return functional_call(module, state, inputs)

    def contexts() -> Tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), restored_tensors(buffers)

    return checkpoint(run, *args, use_reentrant=False, context_fn=contexts)


def make_supernet(C: int, num_classes: int, layers: int, steps: int, multiplier: int, stem_multiplier: int,
                  primitives: Union[str, Sequence[str]], in_channels: int,
                  **network_options: Any) -> Tuple[SearchNetwork, Tuple[str, ...]]:
    """The one :class:`SearchNetwork` of a DARTS-family method and its op names; ``primitives`` is an
    op-set name or a list; ``network_options`` are further SearchNetwork arguments
    (``partial_channels``, ``edge_primitives``)."""
    prims = resolve_primitives(primitives)
    model = SearchNetwork(C, num_classes, layers, steps, multiplier, stem_multiplier, prims, in_channels,
                          **network_options)
    return model, prims


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier at 2/3 depth (Szegedy et al. 2015; DARTS Sec. 3.2; NASNet Appendix A.7).

    ReLU -> 5x5 average pool (stride ``pool_stride``, no padding) -> 1x1 conv to 128 -> BN -> ReLU ->
    conv to 768 whose kernel covers the whole pooled map -> BN (if ``final_batch_norm``) -> ReLU ->
    linear. ``feature_size`` is the side of the feature map it is attached to. As built by:

    * :class:`NetworkCIFAR`: DARTS's ``AuxiliaryHeadCIFAR`` (quark0/darts ``model.py``), 8x8 map
      of a 32x32 input, stride 3;
    * :class:`NetworkImageNet`: DARTS's ``AuxiliaryHeadImageNet``, 7x7 map, stride 2, and no BN after
      the 768-channel conv: the authors removed it "for consistency with the experiments in the paper";
    * :class:`~lit_automl.spaces.nasnet.NASNetCIFAR`: the TF reference's ``_build_aux_head``, stride 3
      on the map of the image size it is built for.

    ``setting`` (words) names the input the head was sized for in the error a wrong map raises.
    """

    def __init__(self, C: int, num_classes: int, feature_size: int, pool_stride: int = 3,
                 final_batch_norm: bool = True, setting: str = ""):
        super().__init__()
        if feature_size < 5:
            raise ValueError(
                f"the auxiliary head needs a feature map of at least 5x5 for its 5x5 pooling, got "
                f"{feature_size}x{feature_size}; use a larger image_size or auxiliary=False"
            )
        self.feature_size, self.setting = feature_size, setting
        pooled = (feature_size - 5) // pool_stride + 1
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, pooled, bias=False),
            *([BatchNorm2d(768)] if final_batch_norm else []),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.feature_size
        if tuple(x.shape[-2:]) != (size, size):
            where = f" at 2/3 depth, as in the {self.setting} setting" if self.setting else ""
            raise ValueError(
                f"the auxiliary head expects a {size}x{size} feature map{where}: it was built for a {size}x{size} "
                f"feature map, got {x.shape[-2]}x{x.shape[-1]}. Use the matching input size (image_size) or "
                "auxiliary=False"
            )
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """Shared body of the evaluation networks: a stack of discrete cells from a genotype and an auxiliary
    head after cell ``_aux_after``; ``forward`` of a subclass runs the stem, :meth:`_run_cells` and its
    classifier."""

    stem_reduces_prev: bool = False
    stem_reductions: int = 0
    """Stride-2 convolutions of the stem (the input is halved that many times before the cells)."""

    def _build_cells(self, genotype, C_pp: int, C_p: int, C_curr: int, layers: int,
                     auxiliary_head: Callable[[int], AuxiliaryHead]) -> int:
        if not getattr(genotype, "all_add", True):
            raise ValueError(
                "the DARTS evaluation networks sum every node's edges, but this genotype has concat-combined "
                f"nodes (normal_combine={list(genotype.normal_combine)}, reduce_combine={list(genotype.reduce_combine)}); "
                "build it with lit_automl.spaces.NASNetCIFAR, which implements NASNet's combinations"
            )
        reductions = reduction_layers(layers)
        self.num_reductions = self.stem_reductions + len(reductions)
        cells, reduction_prev = [], self.stem_reduces_prev
        self.auxiliary_head: Optional[nn.Module] = None
        self._aux_after = 2 * layers // 3
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = Cell.from_genotype(genotype, reduction, C_pp, C_p, C_curr, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.out_channels
            if i == self._aux_after and self.auxiliary:
                self.auxiliary_head = auxiliary_head(C_p)
        self.cells = nn.ModuleList(cells)
        return C_p

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_after and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(EvalNetwork):
    """Evaluation network for 32x32 images (DARTS Sec. 3.2: C=36, 20 cells, auxiliary head).

    ``forward(x) -> (logits, logits_aux)``; ``logits_aux`` is None in eval mode or without the
    auxiliary head. ``drop_path_prob`` is read every forward (set it from a schedule).
    """

    def __init__(
        self,
        genotype,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        in_channels: int = 3,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        for name, value in (("C", C), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("stem_multiplier", stem_multiplier)):
            check_int(name, value, low=1, allowed="a positive int")
        self.genotype, self.in_channels = genotype, in_channels
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), BatchNorm2d(C_curr))
        head = functools.partial(AuxiliaryHead, num_classes=num_classes, feature_size=8, pool_stride=3,
                                 setting="CIFAR (32x32 input)")
        C_p = self._build_cells(genotype, C_curr, C_curr, C, layers, head)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_image_input(x, self.in_channels, reductions=self.num_reductions)
        s = self.stem(x)
        out, logits_aux = self._run_cells(s, s)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


class NetworkImageNet(EvalNetwork):
    """Evaluation network for 224x224 images, mobile setting (DARTS Sec. 3.4: C=48, 14 cells).

    Three stride-2 stem convolutions bring 224 to 28; the first cell treats its input as
    reduced. ``forward(x) -> (logits, logits_aux)`` as in :class:`NetworkCIFAR`.
    """

    stem_reduces_prev = True
    stem_reductions = 3

    def __init__(
        self,
        genotype,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        in_channels: int = 3,
    ):
        super().__init__()
        for name, value in (("C", C), ("num_classes", num_classes), ("layers", layers), ("in_channels", in_channels)):
            check_int(name, value, low=1, allowed="a positive int")
        if C % 2:
            raise ValueError(f"C must be even for the ImageNet stem, got {C}")
        self.genotype, self.in_channels = genotype, in_channels
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(C),
        )
        head = functools.partial(AuxiliaryHead, num_classes=num_classes, feature_size=7, pool_stride=2,
                                 final_batch_norm=False, setting="ImageNet (224x224 input)")
        C_p = self._build_cells(genotype, C, C, C, layers, head)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_image_input(x, self.in_channels, reductions=self.num_reductions)
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, logits_aux = self._run_cells(s0, s1)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Number of parameters; without the auxiliary head by default, as the papers report model sizes
    (the head is dropped after training). ``exclude_auxiliary=False`` counts every parameter."""
    return sum(
        p.numel() for name, p in model.named_parameters() if not (exclude_auxiliary and name.startswith("auxiliary_head"))
    )


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Batch norm normalises with each batch's own statistics; running statistics stay untouched.

    For evaluations whose running averages would mislead or must not change: a one-shot model's
    running averages mix every architecture trained (Bender et al. 2018, Sec. 3), and a probe such as
    a Hessian eigenvalue must leave the model as it found it.
    """
    with preserved_modes(model), restored_buffers(model):
        model.train()
        yield


@contextlib.contextmanager
def restored_buffers(model: nn.Module) -> Iterator[None]:
    """Every buffer (batch-norm running statistics, counters) is put back to its value at entry on exit."""
    with restored_tensors([b for _, b in model.named_buffers()]):
        yield


@contextlib.contextmanager
def restored_tensors(tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """Each of ``tensors`` is put back to its value at entry on exit (in place)."""
    saved = [t.detach().clone() for t in tensors]
    try:
        yield
    finally:
        with torch.no_grad():
            for t, value in zip(tensors, saved):
                t.copy_(value)


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restores every submodule's train / eval flag on exit (``model.train(flag)`` would set them all alike)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag

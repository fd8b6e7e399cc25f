"""Networks: the search supernet and the evaluation networks built from a genotype.

Shapes follow Liu et al., "DARTS", ICLR 2019: a 3x3 conv stem, cells with reductions at 1/3 and
2/3 of the depth (channels doubled there), global average pooling and a linear classifier.
Evaluation networks add an auxiliary head at 2/3 depth (Szegedy et al. 2015; DARTS Sec. 3.2) and
drop path on every non-identity path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from lit_automl.spaces.cells import Cell, SearchCell, edge_primitive_lists, num_search_edges
from lit_automl.spaces.ops import DARTS_OPS, resolve_primitives, validate_primitives


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_input(x: torch.Tensor, in_channels: int, min_size: int = 1) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}; "
            f"set in_channels to match the data"
        )
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"input of {x.shape[-2]}x{x.shape[-1]} is too small: this network needs at least {min_size}x{min_size}")


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
    ):
        super().__init__()
        _check_positive(C=C, num_classes=num_classes, layers=layers, steps=steps, multiplier=multiplier,
                        stem_multiplier=stem_multiplier, in_channels=in_channels, partial_channels=partial_channels)
        if multiplier > steps:
            raise ValueError(f"multiplier must be at most steps={steps}, got {multiplier}")
        self.primitives = validate_primitives(primitives)
        self.steps, self.multiplier, self.in_channels = steps, multiplier, in_channels
        self.num_edges = num_search_edges(steps)
        if edge_primitives is None:
            edge_primitives = {"normal": [self.primitives] * self.num_edges, "reduce": [self.primitives] * self.num_edges}
        if set(edge_primitives) != {"normal", "reduce"}:
            raise ValueError(f"edge_primitives must have the keys ['normal', 'reduce'], got {sorted(edge_primitives)}")
        self.edge_primitives: Dict[str, List[Tuple[str, ...]]] = {
            cell: edge_primitive_lists(edge_primitives[cell], self.num_edges) for cell in ("normal", "reduce")
        }
        num_ops = {len(v[0]) for v in self.edge_primitives.values()}
        if len(num_ops) != 1:
            raise ValueError(f"normal and reduce edges must have the same number of candidate ops, got {sorted(num_ops)}")
        self.num_ops = num_ops.pop()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        reductions = reduction_layers(layers)
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
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"skip_dropout must be a number in [0, 1), got {p!r}")
        for cell in self.cells:
            for edge in cell.edges:
                edge.identity_dropout = float(p)

    def forward(self, x: torch.Tensor, weights_normal: torch.Tensor, weights_reduce: torch.Tensor,
                scale_normal: Optional[torch.Tensor] = None, scale_reduce: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``weights_*``: (num_edges, num_ops) op weights; ``scale_*``: optional (num_edges,) weight of
        each whole edge (PC-DARTS's edge normalisation)."""
        _check_input(x, self.in_channels)
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
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, weights_reduce, active_reduce, scale_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, weights_normal, active_normal, scale_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))



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


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on the 8x8 feature map at 2/3 depth of a 32x32 network."""

    expected_size = 8

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_aux_input(x, self.expected_size, "CIFAR (32x32 input)")
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """Auxiliary classifier on the 7x7 feature map at 2/3 depth of a 224x224 network."""

    expected_size = 7

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),  # 7x7 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_aux_input(x, self.expected_size, "ImageNet (224x224 input)")
        return self.classifier(self.features(x).flatten(1))


def _check_aux_input(x: torch.Tensor, size: int, setting: str) -> None:
    if tuple(x.shape[-2:]) != (size, size):
        raise ValueError(
            f"the auxiliary head expects a {size}x{size} feature map at 2/3 depth, as in the {setting} "
            f"setting; got {x.shape[-2]}x{x.shape[-1]}. Use the matching input size or auxiliary=False"
        )


class _EvalNetwork(nn.Module):
    """Shared body of the evaluation networks: cells from a genotype, aux head, classifier."""

    stem_reduces_prev: bool = False

    def _build_cells(self, genotype, C_pp: int, C_p: int, C_curr: int, layers: int, aux_cls, num_classes: int) -> int:
        if not getattr(genotype, "all_add", True):
            raise ValueError(
                "the DARTS evaluation networks sum every node's edges, but this genotype has concat-combined "
                f"nodes (normal_combine={list(genotype.normal_combine)}, reduce_combine={list(genotype.reduce_combine)}); "
                "build it with lit_automl.spaces.NASNetCIFAR, which implements NASNet's combinations"
            )
        reductions = reduction_layers(layers)
        cells, reduction_prev = [], self.stem_reduces_prev
        self.auxiliary_head: Optional[nn.Module] = None
        self._aux_after = 2 * layers // 3
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
                nodes, concat = genotype.reduce, genotype.reduce_concat
            else:
                nodes, concat = genotype.normal, genotype.normal_concat
            cell = Cell(nodes, concat, C_pp, C_p, C_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self._aux_after and self.auxiliary:
                self.auxiliary_head = aux_cls(C_p, num_classes)
        self.cells = nn.ModuleList(cells)
        return C_p

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_after and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return s1, logits_aux


class NetworkCIFAR(_EvalNetwork):
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
        _check_positive(C=C, num_classes=num_classes, layers=layers, in_channels=in_channels,
                        stem_multiplier=stem_multiplier)
        self.genotype, self.in_channels = genotype, in_channels
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_p = self._build_cells(genotype, C_curr, C_curr, C, layers, AuxiliaryHeadCIFAR, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        _check_input(x, self.in_channels)
        s = self.stem(x)
        out, logits_aux = self._run_cells(s, s)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


class NetworkImageNet(_EvalNetwork):
    """Evaluation network for 224x224 images, mobile setting (DARTS Sec. 3.4: C=48, 14 cells).

    Three stride-2 stem convolutions bring 224 to 28; the first cell treats its input as
    reduced. ``forward(x) -> (logits, logits_aux)`` as in :class:`NetworkCIFAR`.
    """

    stem_reduces_prev = True

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
        _check_positive(C=C, num_classes=num_classes, layers=layers, in_channels=in_channels)
        if C % 2:
            raise ValueError(f"C must be even for the ImageNet stem, got {C}")
        self.genotype, self.in_channels = genotype, in_channels
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        C_p = self._build_cells(genotype, C, C, C, layers, AuxiliaryHeadImageNet, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        _check_input(x, self.in_channels)
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        out, logits_aux = self._run_cells(s0, s1)
        return self.classifier(self.global_pooling(out).flatten(1)), logits_aux


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Number of parameters, without the auxiliary head by default (as the papers report)."""
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
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    with preserved_modes(model):
        model.train()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(saved[name])


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Restores every submodule's train / eval flag on exit (``model.train(flag)`` would set them all alike)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag

"""A parametric simulator the tests can run, and the "main task" models trained on its samples.

For Ruiz, Schulter & Chandraker, "Learning to Simulate", ICLR 2019: the simulator is a black box
``q(x, y | psi)`` (Sec. 3) whose parameters ``psi`` a policy chooses; here it is a class-conditional
Gaussian mixture (the paper's controlled experiments also use Gaussian-mixture data, Sec. 4.1):
class ``c`` has prior ``prior_c`` and ``x | c ~ N(mean_c, diag(std_c^2))``. Each scalar of the mixture
has a name (``mean{c}_{d}``, ``std{c}_{d}``, ``prior{c}``) so a policy can search any subset of them.

The main task model (Sec. 3: "a model trained on the synthesized data") is logistic regression or a
one-hidden-layer MLP, trained by full-batch Adam; ``B`` models (one per sampled psi) are trained at
once as batched tensors, which is the same as training them one by one since every model has its own
weights and Adam is element-wise. Model, optimiser and step count are ours (the paper does not tie the
method to a model).
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from lit_automl._checks import check_int, check_real

__all__ = ["GaussianMixtureSimulator", "classifier_accuracy", "train_classifiers"]

_NAME = re.compile(r"^(?:(mean|std)(\d+)_(\d+)|prior(\d+))$")
Numbers = Union[float, Sequence[float], Sequence[Sequence[float]], Tensor]


def _matrix(name: str, value: Numbers, shape: Tuple[int, int]) -> Tensor:
    """``value`` (a number, one per class, or one per class and dimension) as a float64 ``[C, D]`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.dim() == 1 and t.numel() == shape[0]:
        t = t[:, None]
    try:
        return t.expand(shape).clone()
    except RuntimeError:
        raise ValueError(f"{name} must be a number, {shape[0]} numbers (one per class) or a {shape[0]} x {shape[1]} "
                         f"table, got {value!r}") from None


class GaussianMixtureSimulator:
    """Class-conditional Gaussian mixture (module docstring): ``means [C, D]``, ``stds`` (> 0), ``priors`` (>= 0).

    Priors are normalised to sum to one; ``None`` gives equal priors.
    """

    def __init__(self, means: Numbers, stds: Numbers = 1.0, priors: Optional[Sequence[float]] = None) -> None:
        m = torch.as_tensor(means, dtype=torch.float64)
        if m.dim() != 2 or m.shape[0] < 2 or m.shape[1] < 1:
            raise ValueError(f"means must be a table of at least 2 classes x 1 dimension, got {means!r}")
        if not bool(torch.isfinite(m).all()):
            raise ValueError(f"means must be finite, got {means!r}")
        self.means = m
        self.stds = _matrix("stds", stds, tuple(m.shape))
        if not bool(torch.isfinite(self.stds).all()) or bool((self.stds <= 0).any()):
            raise ValueError(f"stds must be finite numbers > 0, got {stds!r}")
        p = torch.ones(m.shape[0], dtype=torch.float64) if priors is None else torch.as_tensor(priors, dtype=torch.float64)
        if p.shape != (m.shape[0],) or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p.sum()) <= 0:
            raise ValueError(f"priors must be {m.shape[0]} numbers >= 0 (one per class) with a positive sum, "
                             f"got {priors!r}")
        self.priors = p / p.sum()

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def parameter_names(self) -> List[str]:
        """Every scalar parameter: ``mean{c}_{d}``, ``std{c}_{d}``, ``prior{c}`` (priors unnormalised weights)."""
        C, D = self.means.shape
        return ([f"mean{c}_{d}" for c in range(C) for d in range(D)] + [f"std{c}_{d}" for c in range(C) for d in range(D)]
                + [f"prior{c}" for c in range(C)])

    def _locate(self, name: str) -> Tuple[Tensor, Tuple[int, ...]]:
        match = _NAME.match(name) if isinstance(name, str) else None
        if match is None or name not in self.parameter_names():
            raise ValueError(f"unknown simulator parameter {name!r}; valid names are: {', '.join(self.parameter_names())}")
        kind, c, d, pc = match.groups()
        if pc is not None:
            return self.priors, (int(pc),)
        return (self.means if kind == "mean" else self.stds), (int(c), int(d))

    def get(self, name: str) -> float:
        """The value of one named parameter."""
        table, index = self._locate(name)
        return float(table[index])

    def with_values(self, values: Mapping[str, float]) -> "GaussianMixtureSimulator":
        """A copy with the named parameters replaced (the simulator run with these psi); a ``prior{c}`` is a
        weight set next to the other classes' normalised priors, and the priors are normalised again."""
        means, stds, priors = self.means.clone(), self.stds.clone(), self.priors.clone()
        tables = {id(self.means): means, id(self.stds): stds, id(self.priors): priors}
        for name, value in values.items():
            table, index = self._locate(name)
            tables[id(table)][index] = float(value)
        return GaussianMixtureSimulator(means, stds, priors)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """``n`` labelled samples: ``x [n, D]`` (float32) and ``y [n]`` (int64), classes drawn from the priors."""
        n = check_int("n", n, low=1)
        y = torch.multinomial(self.priors, n, replacement=True, generator=generator)  # [n]
        noise = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)  # [n, D]
        x = self.means[y] + self.stds[y] * noise
        return x.float(), y


def _forward(params: Dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``[B, n, C]`` of ``B`` batched models on ``x [B, n, D]`` (or ``[n, D]``, shared)."""
    if x.dim() == 2:
        x = x.expand(params["w_out"].shape[0], *x.shape)
    if "w_in" in params:
        x = torch.relu(torch.baddbmm(params["b_in"], x, params["w_in"]))
    return torch.baddbmm(params["b_out"], x, params["w_out"])


def train_classifiers(x: Tensor, y: Tensor, num_classes: int, hidden: int = 0, steps: int = 50, lr: float = 0.1,
                      generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
    """Train ``B`` classifiers, one per dataset ``x [B, n, D]``, ``y [B, n]``, by full-batch Adam (ours).

    ``hidden=0``: logistic regression; ``hidden > 0``: one ReLU hidden layer of that width. Weights
    start as ``N(0, 1/fan_in)`` drawn from ``generator``. Returns the batched weights.
    """
    check_int("hidden", hidden, low=0)
    check_int("steps", steps, low=1)
    check_real("lr", lr, low=0, low_open=True)
    B, n, D = x.shape
    shapes = {"w_out": (B, hidden or D, num_classes), "b_out": (B, 1, num_classes)}
    if hidden:
        shapes.update(w_in=(B, D, hidden), b_in=(B, 1, hidden))
    params = {}
    for key, shape in shapes.items():
        scale = shape[1] ** -0.5 if key.startswith("w") else 0.0
        params[key] = (torch.randn(shape, generator=generator) * scale).requires_grad_()
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            logits = _forward(params, x)  # [B, n, C]
            # The sum over models of each model's mean loss: every model gets its own gradient.
            loss = torch.nn.functional.cross_entropy(logits.reshape(B * n, -1), y.reshape(-1), reduction="sum") / n
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach() for k, v in params.items()}


def classifier_accuracy(params: Dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
    """Accuracy ``[B]`` of each batched classifier on one shared set ``x [n, D]``, ``y [n]``."""
    with torch.no_grad():
        return (_forward(params, x).argmax(-1) == y).float().mean(-1)

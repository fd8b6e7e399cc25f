"""A rendering simulator over digits: labelled images drawn from source digits under an affine warp and noise.

For Ruiz, Schulter & Chandraker, "Learning to Simulate", ICLR 2019: the simulator ``q(x, y | psi)`` (Sec. 3)
renders a training set from its parameters ``psi``; the paper's simulators are rendering engines whose
parameters place and light objects, and this is the smallest one of that kind the tests can run: each sample is a
source digit (scikit-learn's 8x8 digits, pixels in [0, 1], background 0) rotated by ``rotation`` degrees, scaled by
``scale``, moved by ``translate_x`` / ``translate_y`` pixels (bilinear resampling, zero outside the image, the
warp about the image centre), plus Gaussian pixel noise of standard deviation ``noise``. The parameter names,
ranges and the warp are ours.

The same interface as :class:`~lit_automl.meta.gmm_simulator.GaussianMixtureSimulator` (``parameter_names``,
``get``, ``with_values``, ``sample``, ``num_classes``, ``dim``), so
:class:`~lit_automl.meta.simulate.LearningToSimulateDigits` drives it with the shared policy and REINFORCE step.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_automl._checks import check_choice, check_int, check_real

__all__ = ["DIGITS_PARAMETERS", "DigitsRenderer", "warp_images"]

DIGITS_PARAMETERS: Dict[str, float] = {"rotation": 0.0, "scale": 1.0, "translate_x": 0.0, "translate_y": 0.0,
                                       "noise": 0.0}
"""The renderer's parameters and their identity values (no warp, no noise)."""

_LIMITS: Dict[str, Dict[str, object]] = {"scale": dict(low=0, low_open=True),
                                         "noise": dict(low=0, hint="a pixel-noise standard deviation")}
"""``check_real`` bounds of the parameters that have them (the others take any finite value)."""


def warp_images(images: Tensor, rotation: float = 0.0, scale: float = 1.0, translate_x: float = 0.0,
                translate_y: float = 0.0) -> Tensor:
    """``images [n, 1, H, W]`` rotated by ``rotation`` degrees (counter-clockwise on screen), scaled by ``scale``
    and moved by ``(translate_x, translate_y)`` pixels (x right, y down), about the image centre; bilinear, zero
    outside the source image."""
    n, _, h, w = images.shape
    a = math.radians(rotation)
    # output pixel p samples the source at A^-1 (p - t), A = scale * R(a), in affine_grid's [-1, 1] coordinates;
    # y points down on screen, so a counter-clockwise turn on screen is R(-a) in these coordinates
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    inv = torch.tensor([[cos, -sin], [sin, cos]], dtype=images.dtype)  # R(a) / scale = (scale R(-a))^-1
    t = torch.tensor([2 * translate_x / w, 2 * translate_y / h], dtype=images.dtype)
    theta = torch.cat([inv, (-inv @ t)[:, None]], dim=1).expand(n, 2, 3)  # [n, 2, 3]
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class DigitsRenderer:
    """Renders labelled digits from ``images [N, 1, H, W]`` (pixels in [0, 1]) and ``labels [N]`` under ``psi``
    (module docstring). Keyword arguments set the parameters of :data:`DIGITS_PARAMETERS`."""

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int = 10, **psi: float) -> None:
        if images.dim() != 4 or images.shape[1] != 1 or len(images) != len(labels) or not len(images):
            raise ValueError(f"images must be a non-empty [N, 1, H, W] tensor with one label each, got images of "
                             f"shape {tuple(images.shape)} and {len(labels)} labels")
        self.images, self.labels = images.float(), labels.long()
        self._num_classes = check_int("num_classes", num_classes, low=2)
        self.psi = dict(DIGITS_PARAMETERS)
        for name, value in psi.items():
            check_choice("simulator parameter", name, DIGITS_PARAMETERS)
            self.psi[name] = float(check_real(name, value, **_LIMITS.get(name, {})))

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def dim(self) -> int:
        return int(self.images[0].numel())

    def parameter_names(self) -> List[str]:
        """The names a policy may search (:data:`DIGITS_PARAMETERS`)."""
        return list(DIGITS_PARAMETERS)

    def get(self, name: str) -> float:
        """The value of one named parameter."""
        return self.psi[check_choice("simulator parameter", name, DIGITS_PARAMETERS)]

    def with_values(self, values: Mapping[str, float]) -> "DigitsRenderer":
        """A renderer over the same source digits with the named parameters replaced."""
        return DigitsRenderer(self.images, self.labels, self._num_classes, **{**self.psi, **dict(values)})

    def render(self, images: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """``images`` warped and noised under this renderer's psi, flattened ``[n, H * W]``."""
        p = self.psi
        out = warp_images(images, p["rotation"], p["scale"], p["translate_x"], p["translate_y"])
        if p["noise"]:
            out = out + p["noise"] * torch.randn(out.shape, generator=generator, dtype=out.dtype)
        return out.flatten(1)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """``n`` labelled samples: source digits drawn uniformly with replacement, rendered (``x [n, H * W]``,
        ``y [n]``)."""
        n = check_int("n", n, low=1)
        idx = torch.randint(len(self.labels), (n,), generator=generator)
        return self.render(self.images[idx], generator), self.labels[idx]

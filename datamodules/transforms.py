"""Tensor-only image transforms for the CIFAR / DARTS pipelines (no torchvision).

All transforms take one float ``C x H x W`` tensor and return a new tensor; random
ones draw from torch's global RNG so ``torch.manual_seed`` /
``pytorch_lightning.seed_everything(workers=True)`` make them reproducible.

The DARTS CIFAR-10 pipeline (Liu et al., ICLR 2019) is
``RandomCrop(32, padding=4)`` -> ``RandomHorizontalFlip()`` -> ``Normalize`` and,
for the final retraining only, ``Cutout(16)`` (DeVries & Taylor, 2017) after
normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lit_automl._checks import ArgumentTypeError, check_int, check_real

__all__ = ["Compose", "Cutout", "Normalize", "RandomCrop", "RandomHorizontalFlip"]


def _check_image(img: object, name: str) -> torch.Tensor:
    if not isinstance(img, torch.Tensor):
        raise ArgumentTypeError(f"{name} expects a torch.Tensor image (C x H x W), got {type(img).__name__}")
    if img.dim() != 3:
        raise ValueError(f"{name} expects a 3-D C x H x W tensor, got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ArgumentTypeError(f"{name} expects a floating-point tensor, got dtype {img.dtype}")
    return img


class Normalize:
    """Per-channel ``(x - mean) / std`` with fixed statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean and std must be non-empty and of equal length, got {len(mean_t)} and {len(std_t)} values"
            )
        if not bool(torch.isfinite(mean_t).all()):
            raise ValueError(f"mean must be finite, got {mean_t.tolist()}")
        if not bool((torch.isfinite(std_t) & (std_t > 0)).all()):
            raise ValueError(f"std must be finite and > 0 for every channel, got {std_t.tolist()}")
        self.mean = mean_t
        self.std = std_t

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _check_image(img, "Normalize")
        if img.shape[0] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel statistics but the image has {img.shape[0]} channels")
        mean = self.mean.to(img.device, img.dtype)[:, None, None]
        std = self.std.to(img.device, img.dtype)[:, None, None]
        return (img - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Zero-pad each side by ``padding`` pixels, then crop a random ``size`` window.

    ``RandomCrop(32, padding=4)`` is the standard CIFAR / DARTS augmentation.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0) -> None:
        if isinstance(size, (tuple, list)):
            if len(size) != 2:
                raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}")
            height, width = (check_int("size", s, low=1, allowed="a positive int") for s in size)
        else:
            height = width = check_int("size", size, low=1, allowed="a positive int")
        self.size = (height, width)
        self.padding = check_int("padding", padding, low=0)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _check_image(img, "RandomCrop")
        if self.padding:
            p = self.padding
            img = F.pad(img, (p, p, p, p), mode="constant", value=0.0)
        height, width = self.size
        _, h, w = img.shape
        if height > h or width > w:
            raise ValueError(f"RandomCrop size {self.size} exceeds the padded image size {(h, w)}")
        top = int(torch.randint(0, h - height + 1, (1,)))
        left = int(torch.randint(0, w - width + 1, (1,)))
        return img[:, top : top + height, left : left + width].clone()

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_real("p", p, low=0.0, high=1.0, allowed="a probability in [0, 1]")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _check_image(img, "RandomHorizontalFlip")
        if float(torch.rand(())) < self.p:
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Cutout:
    """Zero one ``length x length`` square centred at a uniformly random pixel.

    DeVries & Taylor (2017), "Improved Regularization of Convolutional Neural
    Networks with Cutout": the centre may lie anywhere in the image, so the square
    is clipped at the borders and can be partly (never wholly) outside. DARTS
    retraining uses ``length=16`` on 32x32 CIFAR images, after normalisation.
    """

    def __init__(self, length: int) -> None:
        self.length = check_int("length", length, low=1, allowed="a positive int")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = _check_image(img, "Cutout")
        _, h, w = img.shape
        cy = int(torch.randint(0, h, (1,)))
        cx = int(torch.randint(0, w, (1,)))
        half = self.length // 2
        y0, y1 = max(cy - half, 0), min(cy - half + self.length, h)
        x0, x1 = max(cx - half, 0), min(cx - half + self.length, w)
        out = img.clone()
        out[:, y0:y1, x0:x1] = 0.0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise ArgumentTypeError(f"transforms must be a sequence of callables, got {type(transforms).__name__}")
        for i, t in enumerate(transforms):
            if not callable(t):
                raise ArgumentTypeError(f"transforms[{i}] must be callable, got {t!r}")
        self.transforms = list(transforms)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"

"""MNIST from the official IDX files (no torchvision).

Layout (LeCun, Cortes & Burges): four files, each optionally gzipped, ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. An IDX file is a
big-endian header -- two zero bytes, a type byte (0x08: unsigned byte), the number of dimensions -- then
one 32-bit big-endian size per dimension, then the data in row-major order: images ``N x 28 x 28``
uint8 (0 = background), labels ``N`` uint8 in 0..9. Downloads come from a mirror of the official files
(the original host is often unavailable) and are checked against the official files' MD5 digests.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from lit_automl._checks import check_bool, check_choice, check_int

from .download import check_md5_map, fetch_verified
from .sampling import SeededTrainValLoaders

__all__ = ["MNIST_FILES", "MNIST_MD5", "MNIST_URL", "MNISTDataModule", "download_mnist", "read_idx", "read_mnist"]

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_MD5 = {  # of the official gzipped files
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the training images scaled to [0, 1]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The uint8 array of an IDX file (gzipped when its name ends in ``.gz``); other element types are refused."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a damaged gzip stream
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}): delete it and download again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: it must start with two zero bytes, a type byte and a rank byte")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{raw[2]:02x} is not supported; MNIST files hold unsigned bytes "
                         "(0x08)")
    rank = raw[3]
    header = 4 + 4 * rank
    if rank == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header (rank {rank}, {len(raw)} bytes)")
    shape = struct.unpack(f">{rank}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(f"{path}: the header announces shape {shape} ({size} bytes) but {len(raw) - header} bytes "
                         "follow it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"MNIST file {name}(.gz) not found in {root}. Pass download=True "
                            f"(MNISTDataModule(download=True) or download_mnist()) to fetch it from {MNIST_URL}, "
                            "or point root/data_dir at the folder that holds the four IDX files.")


def read_mnist(root: str | os.PathLike, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of the training (60,000) or test (10,000) split under ``root``: a uint8 tensor
    ``N x 28 x 28`` and an int64 tensor ``N``; each file may be gzipped or not."""
    images_name, labels_name = MNIST_FILES["train" if check_bool("train", train) else "test"]
    images_path, labels_path = _find(Path(root), images_name), _find(Path(root), labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: MNIST images are N x rows x cols, got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_path}: expected {len(images)} labels (one per image), got shape {labels.shape}")
    if len(labels) and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in [0, 9], got a {labels.max()}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def download_mnist(root: str | os.PathLike, url: str = MNIST_URL,
                   md5: Mapping[str, str] | None = MNIST_MD5) -> Path:
    """Fetch the four gzipped IDX files from the folder ``url`` into ``root`` (a file already there with the right
    MD5 is kept; ``md5=None`` skips the checks); return ``root``."""
    check_md5_map(md5, list(MNIST_MD5))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in MNIST_MD5:
        fetch_verified(url.rstrip("/") + "/" + name, root / name, None if md5 is None else md5[name])
    return root


class MNISTDataModule(SeededTrainValLoaders, pl.LightningDataModule):
    """MNIST (60k train / 10k test, 10 classes) as float ``1 x 28 x 28`` images; ``val_dataset`` is the test set.

    Args:
        data_dir: folder holding (or receiving) the four IDX files (gzipped or not).
        batch_size: minibatch size (128, the L2L paper's MNIST batch).
        download: fetch the files when they are missing.
        normalize: ``"standard"`` (the training set's mean 0.1307 / std 0.3081), or ``"none"`` (pixels in [0, 1],
            what the L2L authors' code feeds its MLP).
        num_workers: dataloader worker processes.
        seed: seed of the training order (order = f(seed, epoch)).
    """

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28

    def __init__(self, data_dir: str = "data/mnist", batch_size: int = 128, download: bool = False,
                 normalize: str = "standard", num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int")
        self.download = check_bool("download", download)
        self.normalize = check_choice("normalize", normalize, ("standard", "none"))
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.seed = check_int("seed", seed)
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None

    def prepare_data(self) -> None:
        """Download if asked (once per node), else check the files are there."""
        if self.download:
            download_mnist(self.data_dir)
            return
        for name in (*MNIST_FILES["train"], *MNIST_FILES["test"]):
            _find(Path(self.data_dir), name)

    def _tensors(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = read_mnist(self.data_dir, train)
        x = images.unsqueeze(1).to(torch.float32) / 255.0
        if self.normalize == "standard":
            x = (x - MNIST_MEAN) / MNIST_STD
        return x, labels

    def setup(self, stage: str | None = None) -> None:
        """Read both splits (idempotent)."""
        if self.train_dataset is not None:
            return
        self.train_dataset = TensorDataset(*self._tensors(True))
        self.val_dataset = TensorDataset(*self._tensors(False))

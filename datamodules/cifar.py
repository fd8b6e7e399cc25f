"""CIFAR-10 / CIFAR-100 from the official python-pickle archives (no torchvision).

Layout of the official archives (Krizhevsky, 2009):

* ``cifar-10-python.tar.gz`` -> ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``
  and ``test_batch``; each a pickled dict with ``b"data"`` (N x 3072 uint8: the
  1024 red, then green, then blue pixels of a 32x32 image, row-major) and
  ``b"labels"``.
* ``cifar-100-python.tar.gz`` -> ``cifar-100-python/train`` and ``test`` with
  ``b"data"`` and ``b"fine_labels"`` (the 100-class labels).

The pickles are read with a restricted unpickler that only resolves the few numpy
globals needed to rebuild an array, so a tampered file cannot execute code.
Augmentation follows the DARTS CIFAR pipeline (Liu et al., ICLR 2019): pad-4
random crop, horizontal flip, per-channel normalisation and, for retraining,
Cutout (DeVries & Taylor, 2017) with length 16.
"""

from __future__ import annotations

import os
import contextlib
import pickle
import re
import tarfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from lit_automl._checks import check_bool, check_int

from .download import check_md5, fetch_verified
from .sampling import SeededTrainValLoaders
from .transforms import Compose, Cutout, Normalize, RandomCrop, RandomHorizontalFlip

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFARDataset",
    "cifar_files",
    "download_cifar",
    "read_cifar",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

# Per-channel statistics of the training sets, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class _Layout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    url: str
    md5: str


_LAYOUTS = {
    10: _Layout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
        CIFAR10_URL,
        CIFAR10_MD5,
    ),
    100: _Layout("cifar-100-python", ("train",), ("test",), b"fine_labels", CIFAR100_URL, CIFAR100_MD5),
}


def _layout(num_classes: int) -> _Layout:
    try:  # True hashes as 1, so a bool is refused too
        return _LAYOUTS[num_classes]
    except (KeyError, TypeError):  # check_choice would word it "one of [10, 100]"; tests match this form
        raise ValueError(f"num_classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {num_classes!r}") from None


def cifar_files(root: str | os.PathLike, train: bool, num_classes: int = 10) -> list[Path]:
    """Paths of the pickle files ``read_cifar`` expects under ``root``."""
    layout = _layout(num_classes)
    names = layout.train_files if train else layout.test_files
    return [Path(root) / layout.folder / name for name in names]


# Globals needed to unpickle a numpy array (numpy 1.x and 2.x module names, all
# pickle protocols, Python-2 era files) -- nothing that can run arbitrary code.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from a CIFAR file; only numpy array reconstruction "
                f"is allowed ({sorted(f'{m}.{n}' for m, n in _ALLOWED_GLOBALS)})"
            )
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict:
    expected = "expected a batch file of the official CIFAR python archive (a pickled dict)"
    try:
        with open(path, "rb") as f:
            entry = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, MemoryError) as err:  # what unpickling a damaged or foreign file raises
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); {expected}: the file is damaged "
                         "or not from that archive (delete it and download again)") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} is not a CIFAR batch: expected a pickled dict, got {type(entry).__name__}")
    return entry


def read_cifar(root: str | os.PathLike, train: bool, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Read the official CIFAR python-pickle files under ``root``.

    Returns ``(images, labels)``: a uint8 tensor ``N x 3 x 32 x 32`` (RGB) and an
    int64 tensor ``N``. ``train`` selects the training batches (all five for
    CIFAR-10, concatenated in file order) or the test batch.
    """
    layout = _layout(num_classes)
    paths = cifar_files(root, train, num_classes)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-{num_classes} file(s) not found: {', '.join(missing)}. Pass download=True "
            f"(CIFAR{num_classes}DataModule(download=True) or download_cifar()) to fetch {layout.url}, "
            f"or point the root/data_dir at the directory that contains '{layout.folder}/'."
        )
    images, labels = [], []
    for path in paths:
        entry = _load_batch(path)
        for key in (b"data", layout.label_key):
            if key not in entry:
                raise ValueError(f"{path} has no {key!r} entry; keys present: {sorted(entry)}")
        data = entry[b"data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            shape = getattr(data, "shape", None)
            dtype = getattr(data, "dtype", type(data).__name__)
            raise ValueError(f"{path}: b'data' must be an N x 3072 uint8 array, got shape {shape} dtype {dtype}")
        lab = np.asarray(entry[layout.label_key], dtype=np.int64).reshape(-1)
        if len(lab) != len(data):
            raise ValueError(f"{path}: {len(data)} images but {len(lab)} labels")
        if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"{path}: labels must lie in [0, {num_classes - 1}], got [{lab.min()}, {lab.max()}]")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .tar.gz, refusing links, devices and paths that leave ``dest``."""
    dest_resolved = dest.resolve()
    with contextlib.ExitStack() as stack:
        try:
            tar = stack.enter_context(tarfile.open(archive, "r:gz"))
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"{archive} cannot be read as a .tar.gz archive ({type(err).__name__}: {err}); expected "
                             "the official CIFAR python archive: delete it and download again") from None
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"refusing to extract {member.name!r} from {archive}: only regular files and directories are allowed"
                )
            target = (dest / member.name).resolve()
            if target != dest_resolved and dest_resolved not in target.parents:
                raise ValueError(f"refusing to extract {member.name!r} from {archive}: it would land outside {dest}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.11.4: members were checked above
            tar.extractall(dest, members=members)


def download_cifar(
    root: str | os.PathLike,
    num_classes: int = 10,
    url: str | None = None,
    md5: str | None = None,
) -> Path:
    """Fetch, verify (md5) and extract the CIFAR archive into ``root``; return the data folder.

    ``url``/``md5`` default to the official archive for ``num_classes``. Does nothing
    if the extracted files are already present; an archive already in ``root`` with
    the right md5 is reused instead of downloaded again.
    """
    layout = _layout(num_classes)
    url = layout.url if url is None else url
    md5 = layout.md5 if md5 is None else md5
    check_md5("md5", md5)
    md5 = md5.lower()
    root = Path(root)
    folder = root / layout.folder
    expected = cifar_files(root, True, num_classes) + cifar_files(root, False, num_classes)
    if all(p.is_file() for p in expected):
        return folder

    filename = Path(urllib.parse.urlparse(url).path).name
    if not filename:
        raise ValueError(f"cannot derive an archive file name from url {url!r}")
    root.mkdir(parents=True, exist_ok=True)
    archive = root / filename
    fetch_verified(url, archive, md5)
    _safe_extract(archive, root)
    missing = [str(p) for p in expected if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"archive {archive} did not contain the expected file(s): {', '.join(missing)}")
    return folder


class CIFARDataset(Dataset):
    """uint8 ``N x 3 x 32 x 32`` images -> ``(float image in [0, 1] -> transform, int label)``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be a uint8 N x C x H x W tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index].to(torch.float32).div_(255.0)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])


class _CIFARDataModule(SeededTrainValLoaders, pl.LightningDataModule):
    """Shared implementation of :class:`CIFAR10DataModule` / :class:`CIFAR100DataModule`.

    Args:
        data_dir: folder holding (or receiving) the official archive's extracted pickles.
        batch_size: 96, the DARTS retraining batch.
        download: fetch and extract the archive when it is missing.
        augment: random crop (padding 4) and horizontal flip of the training images.
        cutout_length: Cutout square side; 0 disables it (the DARTS retraining recipe sets 16).
        num_workers: dataloader worker processes.
        seed: seed of the training order (order = f(seed, epoch)).
        url, md5: the archive and its digest; ``None``: the official ones of the subclass.
    """

    num_classes: int
    in_channels: int = 3
    image_size: int = 32
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    archive_url: str
    archive_md5: str

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 96,
        download: bool = False,
        augment: bool = True,
        cutout_length: int = 0,
        num_workers: int = 2,
        seed: int = 0,
        url: str | None = None,
        md5: str | None = None,
    ) -> None:
        url = self.archive_url if url is None else url
        md5 = self.archive_md5 if md5 is None else md5
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, low=1, allowed="a positive int")
        if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
            raise ValueError(f"md5 must be a 32-character hex digest, got {md5!r}")
        self.data_dir = str(data_dir)
        self.download = check_bool("download", download)
        self.augment = check_bool("augment", augment)
        self.cutout_length = check_int("cutout_length", cutout_length, low=0, hint="0 disables Cutout; DARTS uses 16")
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self.seed = check_int("seed", seed)
        self.url = url
        self.md5 = md5
        self.train_dataset: CIFARDataset | None = None
        self.val_dataset: CIFARDataset | None = None

    def train_transform(self) -> Compose:
        """Crop/flip (if ``augment``) -> normalise -> Cutout (if ``cutout_length``), as in DARTS."""
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
        if self.augment:
            steps += [RandomCrop(self.image_size, padding=4), RandomHorizontalFlip(0.5)]
        steps.append(Normalize(self.mean, self.std))
        if self.cutout_length:
            steps.append(Cutout(self.cutout_length))
        return Compose(steps)

    def eval_transform(self) -> Compose:
        return Compose([Normalize(self.mean, self.std)])

    def prepare_data(self) -> None:
        """Download if asked (runs once per node in distributed training)."""
        if self.download:
            download_cifar(self.data_dir, self.num_classes, url=self.url, md5=self.md5)
            return
        expected = cifar_files(self.data_dir, True, self.num_classes) + cifar_files(self.data_dir, False, self.num_classes)
        missing = [str(p) for p in expected if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"CIFAR-{self.num_classes} file(s) not found: {', '.join(missing)}. "
                f"Pass download=True to fetch {self.url}, or set data_dir to the directory containing them."
            )

    def setup(self, stage: str | None = None) -> None:
        """Read both splits (idempotent). ``val_dataset`` is the official test set."""
        if self.train_dataset is not None:
            return
        x_train, y_train = read_cifar(self.data_dir, train=True, num_classes=self.num_classes)
        x_test, y_test = read_cifar(self.data_dir, train=False, num_classes=self.num_classes)
        self.train_dataset = CIFARDataset(x_train, y_train, self.train_transform())
        self.val_dataset = CIFARDataset(x_test, y_test, self.eval_transform())


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (50k train / 10k test, 10 classes); ``val_dataset`` is the test set.

    ``cutout_length=0`` disables Cutout; the DARTS retraining recipe sets 16. The
    train loader uses :class:`~lit_automl.datamodules.EpochSeededSampler` (order = f(seed, epoch)). Arguments: see the
    shared base (``url``/``md5`` default to :data:`CIFAR10_URL` / :data:`CIFAR10_MD5`).
    """

    num_classes = 10
    mean = CIFAR10_MEAN
    std = CIFAR10_STD
    archive_url = CIFAR10_URL
    archive_md5 = CIFAR10_MD5


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (50k train / 10k test, 100 fine classes); otherwise as :class:`CIFAR10DataModule`."""

    num_classes = 100
    mean = CIFAR100_MEAN
    std = CIFAR100_STD
    archive_url = CIFAR100_URL
    archive_md5 = CIFAR100_MD5

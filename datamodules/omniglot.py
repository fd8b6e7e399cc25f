"""Omniglot few-shot tasks (Lake et al., Science 2015) with the split of Finn et al., ICML 2017.

Files: the official layout ``data_dir/images_background/<Alphabet>/<characterNN>/*.png``
and ``data_dir/images_evaluation/...`` (1,623 characters of 50 alphabets, 20 105x105
1-bit PNGs each), from ``images_background.zip`` / ``images_evaluation.zip`` in the
``python/`` folder of github.com/brendenlake/omniglot (``download=True`` fetches and
extracts them, checking their md5).

Preprocessing: each PNG is converted to 8-bit grey, resized to 28x28 with PIL's LANCZOS
filter and inverted so strokes are 1 (Finn et al.'s code: ``1 - pixel / 255``). The result
is cached as one uint8 tensor (``255 - pixel``) in ``data_dir/omniglot_28x28.pt`` and
reused while the PNG files (names, sizes, modification times) are unchanged. Note: Finn et al.'s ``resize_images.py``
calls ``resize(..., LANCZOS)`` on the 1-bit images, for which PIL silently uses nearest
neighbour; converting to grey first makes the LANCZOS filter actually apply, so our pixels
are anti-aliased where theirs are binary.

Split (Finn et al., Sec. 5.2, reference ``data_generator.py``): the character folders of
both subsets are pooled regardless of alphabet, put in sorted path order, shuffled with
``random.Random(1)`` (their ``random.seed(1); random.shuffle``; their unsorted
``os.listdir`` order is platform dependent, so the exact membership cannot be
reproduced), then the first ``num_train - num_val`` = 1100 characters are meta-train, the
next ``num_val`` = 100 meta-val and the remaining 423 meta-test. Each character rotated by
0/90/180/270 degrees gives four classes of the same split (Santoro et al., 2016), so the
splits hold 4400/400/1692 class ids. As in Finn et al.'s code a task takes ``N``
*distinct* characters, each with a uniformly random rotation (``distinct_base=True`` of
:class:`~lit_automl.datamodules.episodes.EpisodeDataset`), so ``n_way`` is limited by the
characters of a split, not by its class ids.
"""

from __future__ import annotations

import os
import random
import urllib.parse
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_automl._checks import check_bool, check_int

from .download import check_md5_map, fetch_verified
from .tasks import FewShotDataModule, TaskData

__all__ = [
    "OMNIGLOT_MD5",
    "OMNIGLOT_SUBSETS",
    "OMNIGLOT_URL",
    "OmniglotDataModule",
    "download_omniglot",
    "omniglot_character_split",
    "omniglot_characters",
    "read_omniglot",
]

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
OMNIGLOT_SUBSETS = ("images_background", "images_evaluation")
OMNIGLOT_MD5 = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
OMNIGLOT_SPLIT_SEED = 1  # random.seed(1) in Finn et al.'s data_generator.py
OMNIGLOT_IMAGES_PER_CHARACTER = 20
_CACHE_NAME = "omniglot_28x28.pt"
_CACHE_VERSION = 1


def _missing_message(root: Path) -> str:
    folders = ", ".join(str(root / s) for s in OMNIGLOT_SUBSETS)
    return (
        f"Omniglot not found: expected the folders {folders} (layout <subset>/<Alphabet>/<characterNN>/*.png). "
        f"Pass download=True (OmniglotDataModule(download=True) or download_omniglot()) to fetch "
        f"{', '.join(s + '.zip' for s in OMNIGLOT_SUBSETS)} from {OMNIGLOT_URL}, or point data_dir at the directory "
        "that contains them."
    )


def omniglot_characters(root: str | os.PathLike) -> list[str]:
    """Character folders ``"<subset>/<Alphabet>/<character>"`` under ``root``, both subsets, sorted."""
    root = Path(root)
    if not all((root / s).is_dir() for s in OMNIGLOT_SUBSETS):
        raise FileNotFoundError(_missing_message(root))
    chars = []
    for subset in OMNIGLOT_SUBSETS:
        for alphabet in sorted(p for p in (root / subset).iterdir() if p.is_dir() and not p.name.startswith(".")):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir() and not p.name.startswith(".")):
                chars.append(f"{subset}/{alphabet.name}/{character.name}")
    if not chars:
        raise FileNotFoundError(f"no character folders under {root / OMNIGLOT_SUBSETS[0]} or {root / OMNIGLOT_SUBSETS[1]}")
    return chars


def _png_files(root: Path, characters: list[str]) -> list[list[str]]:
    files = []
    for char in characters:
        names = sorted(p.name for p in (root / char).iterdir() if p.is_file() and p.suffix.lower() == ".png")
        if not names:
            raise FileNotFoundError(f"character folder {root / char} contains no .png files")
        files.append(names)
    return files


def _load_png(path: Path, size: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow ships with matplotlib
        raise ImportError("reading Omniglot needs Pillow: pip install pillow") from err
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
    except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated or damaged data
        raise ValueError(f"{path} cannot be read as an image ({type(err).__name__}: {err}); expected an Omniglot "
                         "PNG drawing: the file is damaged (delete the data folder and download again)") from None
    return np.asarray(grey.resize((size, size), resample=Image.Resampling.LANCZOS), dtype=np.uint8)


def read_omniglot(
    root: str | os.PathLike, image_size: int = 28, cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read every Omniglot PNG under ``root``.

    Returns ``(images, labels, characters)``: uint8 ``[M, 1, S, S]`` holding ``255 - pixel``
    of the LANCZOS-resized grey image (so ``images / 255 = 1 - pixel / 255``, strokes 1),
    int64 ``[M]`` indices into ``characters`` (:func:`omniglot_characters` order), files of
    a character in sorted name order. With ``cache`` the tensor is stored in
    ``root/omniglot_28x28.pt`` (for ``image_size=28``) and reused while the files (names, sizes,
    modification times) are unchanged.
    """
    check_int("image_size", image_size, low=1)
    root = Path(root)
    characters = omniglot_characters(root)
    files = _png_files(root, characters)
    listing = []
    for char, names in zip(characters, files):
        for name in names:
            st = (root / char / name).stat()
            listing.append(f"{char}/{name}:{st.st_size}:{st.st_mtime_ns}")
    cache_path = root / (_CACHE_NAME if image_size == 28 else f"omniglot_{image_size}x{image_size}.pt")
    if cache and cache_path.is_file():
        try:
            saved = torch.load(cache_path, weights_only=True)
        except Exception as err:  # unreadable or foreign file: rebuilt from the PNGs, said once
            reason = "it holds objects a weights-only load refuses" if "Weights only load failed" in str(err) \
                else (str(err).splitlines() or [""])[0]
            warnings.warn(f"the Omniglot cache {cache_path} cannot be read ({type(err).__name__}: {reason}); "
                          "rebuilding it from the PNG files", stacklevel=2)
            saved = None
        if (
            isinstance(saved, dict)
            and saved.get("version") == _CACHE_VERSION
            and saved.get("image_size") == image_size
            and saved.get("files") == listing
        ):
            return saved["images"], saved["labels"], characters
    images = np.empty((len(listing), 1, image_size, image_size), dtype=np.uint8)
    labels = np.empty(len(listing), dtype=np.int64)
    i = 0
    for label, (char, names) in enumerate(zip(characters, files)):
        for name in names:
            images[i, 0] = 255 - _load_png(root / char / name, image_size)
            labels[i] = label
            i += 1
    images_t, labels_t = torch.from_numpy(images), torch.from_numpy(labels)
    if cache:
        tmp = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        payload = {"version": _CACHE_VERSION, "image_size": image_size, "files": listing,
                   "images": images_t, "labels": labels_t}
        try:
            torch.save(payload, tmp)
            os.replace(tmp, cache_path)
        except OSError as err:  # e.g. a read-only data directory: work without the cache
            warnings.warn(f"could not write the Omniglot cache {cache_path}: {err}", stacklevel=2)
    return images_t, labels_t, characters


def omniglot_character_split(num_characters: int, num_train: int = 1200, num_val: int = 100) -> dict[str, list[int]]:
    """Finn et al.'s split of character indices (sorted-path order): see the module docstring.

    ``random.Random(1)`` shuffles ``range(num_characters)``; positions ``[0, num_train - num_val)``
    are meta-train, ``[num_train - num_val, num_train)`` meta-val, ``[num_train, end)`` meta-test.
    """
    check_int("num_characters", num_characters, low=1)
    _check_split_sizes(num_train, num_val)
    if num_train >= num_characters:
        raise ValueError(
            f"num_train={num_train} must be smaller than the {num_characters} characters found, so that "
            f"meta-test keeps at least one character (Finn et al. use num_train=1200 of 1623)"
        )
    order = list(range(num_characters))
    random.Random(OMNIGLOT_SPLIT_SEED).shuffle(order)
    n_meta_train = num_train - num_val
    return {"train": order[:n_meta_train], "val": order[n_meta_train:num_train], "test": order[num_train:]}


def _check_split_sizes(num_train: object, num_val: object) -> None:
    check_int("num_val", num_val, low=1, hint="characters of meta-train kept for meta-validation; Finn et al. use 100")
    check_int("num_train", num_train, low=2, hint="characters for meta-train + meta-val; Finn et al. use 1200")
    if num_val >= num_train:  # type: ignore[operator]
        raise ValueError(
            f"num_val={num_val} must be smaller than num_train={num_train}: meta-val is carved out of the "
            f"num_train characters and meta-train keeps num_train - num_val"
        )


def _safe_extract_zip(archive: Path, dest: Path) -> None:
    """Extract a zip, refusing symlinks and member paths that leave ``dest``."""
    dest_resolved = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{archive} cannot be read as a zip archive ({type(err).__name__}: {err}); expected an "
                         "official Omniglot archive: delete it and download again") from None
    with zf:
        members = zf.infolist()
        for info in members:
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise ValueError(f"refusing to extract {info.filename!r} from {archive}: symbolic links are not allowed")
            target = (dest / info.filename).resolve()
            if info.filename.startswith(("/", "\\")) or (
                target != dest_resolved and dest_resolved not in target.parents
            ):
                raise ValueError(f"refusing to extract {info.filename!r} from {archive}: it would land outside {dest}")
        zf.extractall(dest, members=members)


def download_omniglot(
    root: str | os.PathLike,
    base_url: str = OMNIGLOT_URL,
    md5: Mapping[str, str] | None = OMNIGLOT_MD5,
) -> Path:
    """Fetch ``<base_url>/images_background.zip`` and ``images_evaluation.zip`` into ``root`` and extract them.

    A subset whose folder already exists is skipped; a zip already in ``root`` with the
    right md5 is reused. ``md5`` maps subset name to hex digest (``None``: no check).
    """
    check_md5_map(md5, OMNIGLOT_SUBSETS)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for subset in OMNIGLOT_SUBSETS:
        if (root / subset).is_dir():
            continue
        url = f"{base_url.rstrip('/')}/{subset}.zip"
        if not Path(urllib.parse.urlparse(url).path).name:
            raise ValueError(f"cannot derive an archive file name from url {url!r}")
        expected = None if md5 is None else md5[subset].lower()
        archive = root / f"{subset}.zip"
        fetch_verified(url, archive, expected, hint="check the base_url/md5 arguments or retry")
        _safe_extract_zip(archive, root)
        if not (root / subset).is_dir():
            raise FileNotFoundError(f"archive {archive} did not contain the folder {subset}/")
    return root


class OmniglotDataModule(FewShotDataModule):
    """N-way K-shot Omniglot tasks, 28x28, rotations as classes, Finn et al.'s character split.

    See the module docstring for files, preprocessing (28x28 LANCZOS, inverted: strokes 1)
    and the split: characters pooled over both subsets, shuffled with seed 1, the first
    ``num_train - num_val`` (1100) meta-train, the next ``num_val`` (100) meta-val as in
    Finn et al.'s ``data_generator.py``, the rest (423) meta-test; every character gives
    four rotated classes. ``num_train``/``num_val`` exist so that small copies work.

    Batches: ``{"support": (x_s, y_s), "query": (x_q, y_q)}``, ``x_s`` float32
    ``[T, N*K, 1, 28, 28]``, ``y_s`` int64 ``[T, N*K]`` (labels ``0..N-1`` in a random class
    order per task), ``x_q``/``y_q`` with ``N*Q``. ``T = tasks_per_batch`` per process;
    under DDP the effective meta-batch is ``tasks_per_batch * world_size``.

    A task holds ``N`` distinct characters, each turned by a random multiple of 90 degrees
    (a rotated character is a class of its own, as in Finn et al.'s code).

    Defaults: 5-way 1-shot and 32 tasks per meta-batch follow Finn et al. (Sec. 5.2 /
    App. A.1, 5-way Omniglot); ours: ``q_queries=15`` (their code uses ``K`` queries per
    class), ``train_batches=100`` meta-batches per epoch and per process, ``val_tasks=100``,
    ``test_tasks=600`` (their evaluation count). ``k_shot + q_queries`` must not exceed the
    images per character (20 in the official data). Arguments besides the files, the split and
    ``tasks_per_batch``: :class:`~lit_automl.datamodules.tasks.FewShotDataModule` (``n_way``) and
    :class:`~lit_automl.datamodules.tasks.TaskDataModule`.
    """

    in_channels = 1
    image_size = 28
    rotations = 4

    def __init__(
        self,
        data_dir: str = "data",
        tasks_per_batch: int = 32,
        download: bool = False,
        num_train: int = 1200,
        num_val: int = 100,
        base_url: str = OMNIGLOT_URL,
        md5: Mapping[str, str] | None = OMNIGLOT_MD5,
        **kwargs: Any,
    ) -> None:
        super().__init__(tasks_per_batch=tasks_per_batch, **kwargs)
        self.download = check_bool("download", download)
        _check_split_sizes(num_train, num_val)
        need = self.k_shot + self.q_queries
        if need > OMNIGLOT_IMAGES_PER_CHARACTER:
            raise ValueError(
                f"k_shot + q_queries = {need} exceeds the {OMNIGLOT_IMAGES_PER_CHARACTER} images per Omniglot "
                "character; lower k_shot or q_queries"
            )
        smallest = min(num_val, num_train - num_val)
        if self.n_way > smallest:
            raise ValueError(
                f"n_way={self.n_way} exceeds the {smallest} characters of the smallest split (min(num_val={num_val}, "
                f"num_train - num_val={num_train - num_val})); a task uses n_way distinct characters, so use "
                f"n_way <= {smallest}"
            )
        if md5 is not None and (not isinstance(md5, Mapping) or set(md5) != set(OMNIGLOT_SUBSETS)):
            raise ValueError(f"md5 must map exactly {OMNIGLOT_SUBSETS} to hex digests (or be None), got {md5!r}")
        self.data_dir = str(data_dir)
        self.num_train = num_train
        self.num_val = num_val
        self.base_url = base_url
        self.md5 = None if md5 is None else dict(md5)
        self.characters: list[str] | None = None
        self.character_splits: dict[str, list[int]] | None = None

    def prepare_data(self) -> None:
        """Download if asked, then build the uint8 cache (once per node under DDP)."""
        if self.download:
            download_omniglot(self.data_dir, self.base_url, self.md5)
        read_omniglot(self.data_dir, self.image_size)  # raises FileNotFoundError naming the paths and download=True

    def load_data(self) -> TaskData:
        images, labels, characters = read_omniglot(self.data_dir, self.image_size)
        chars = omniglot_character_split(len(characters), self.num_train, self.num_val)
        self.characters, self.character_splits = characters, chars
        classes = {s: sorted(self.rotations * c + r for c in idx for r in range(self.rotations)) for s, idx in chars.items()}
        return TaskData(images, labels, classes, rotations=self.rotations, distinct_base=True)

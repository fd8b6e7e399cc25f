import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_automl.datamodules import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    Cutout,
    EpochSeededSampler,
    Normalize,
    RandomCrop,
    download_cifar,
    read_cifar,
)
from lit_automl.datamodules.cifar import CIFAR10_MEAN, CIFAR10_STD, cifar_files

PER_TRAIN_FILE = 3  # images per CIFAR-10 data_batch_i; CIFAR-100 train has 5 * 3
N_TEST = 4


def _py2_style_pickle(entry: dict) -> bytes:
    """Pickle like the official files: protocol 2 and numpy 1.x module names."""
    return pickle.dumps(entry, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _make_split(rng: np.random.Generator, n: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    return data, labels


def _build_tree(root: Path, num_classes: int, seed: int = 0) -> dict:
    """Write a tiny CIFAR tree in the official layout under ``root``; return the raw arrays."""
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        train_parts = [_make_split(rng, PER_TRAIN_FILE, 10) for _ in range(5)]
        for i, (data, labels) in enumerate(train_parts, start=1):
            entry = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels, b"data": data,
                     b"filenames": [b"img.png"] * len(labels)}
            (folder / f"data_batch_{i}").write_bytes(_py2_style_pickle(entry))
        test_data, test_labels = _make_split(rng, N_TEST, 10)
        entry = {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels, b"data": test_data,
                 b"filenames": [b"img.png"] * N_TEST}
        (folder / "test_batch").write_bytes(_py2_style_pickle(entry))
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
        train_data = np.concatenate([d for d, _ in train_parts])
        train_labels = sum((lab for _, lab in train_parts), [])
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        train_data, train_labels = _make_split(rng, 5 * PER_TRAIN_FILE, 100)
        test_data, test_labels = _make_split(rng, N_TEST, 100)
        for name, data, labels in (("train", train_data, train_labels), ("test", test_data, test_labels)):
            entry = {b"filenames": [b"img.png"] * len(labels), b"batch_label": name.encode(),
                     b"fine_labels": labels, b"coarse_labels": [lab // 5 for lab in labels], b"data": data}
            (folder / name).write_bytes(_py2_style_pickle(entry))
    return {"train": (train_data, train_labels), "test": (test_data, test_labels)}


def _build_archive(tmp_path: Path, num_classes: int) -> tuple[Path, str, dict]:
    source = tmp_path / "source"
    raw = _build_tree(source, num_classes)
    name = "cifar-10-python.tar.gz" if num_classes == 10 else "cifar-100-python.tar.gz"
    archive = tmp_path / "server" / name
    archive.parent.mkdir()
    folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / folder, arcname=folder)
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), raw


@pytest.fixture
def cifar10_archive(tmp_path):
    return _build_archive(tmp_path, 10)


def test_read_cifar10_layout(tmp_path):
    raw = _build_tree(tmp_path, 10)
    images, labels = read_cifar(tmp_path, train=True)
    assert images.shape == (5 * PER_TRAIN_FILE, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (5 * PER_TRAIN_FILE,) and labels.dtype == torch.long
    data, lab = raw["train"]
    assert labels.tolist() == lab  # batches concatenated in file order 1..5
    # row-major RGB planes: channel c, row r, column k is data[c * 1024 + r * 32 + k]
    for c, r, k in [(0, 0, 0), (1, 5, 31), (2, 31, 7)]:
        assert int(images[4, c, r, k]) == int(data[4, c * 1024 + r * 32 + k])
    test_images, test_labels = read_cifar(str(tmp_path), train=False, num_classes=10)
    assert test_images.shape == (N_TEST, 3, 32, 32)
    assert torch.equal(test_images.flatten(1), torch.from_numpy(raw["test"][0]))
    assert test_labels.tolist() == raw["test"][1]


def test_read_cifar100_uses_fine_labels(tmp_path):
    raw = _build_tree(tmp_path, 100)
    images, labels = read_cifar(tmp_path, train=True, num_classes=100)
    assert images.shape == (5 * PER_TRAIN_FILE, 3, 32, 32)
    assert labels.tolist() == raw["train"][1]
    _, test_labels = read_cifar(tmp_path, train=False, num_classes=100)
    assert test_labels.tolist() == raw["test"][1]


def test_read_cifar_missing_files(tmp_path):
    expected = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with pytest.raises(FileNotFoundError, match=rf"{expected}.*download=True"):
        read_cifar(tmp_path, train=True)
    with pytest.raises(ValueError, match="num_classes must be 10 .* or 100 .*, got 20"):
        read_cifar(tmp_path, train=True, num_classes=20)


def test_read_cifar_rejects_bad_content(tmp_path):
    _build_tree(tmp_path, 10)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"N x 3072 uint8 array, got shape \(2, 100\)"):
        read_cifar(tmp_path, train=False)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        read_cifar(tmp_path, train=False)
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8)}))
    with pytest.raises(ValueError, match="no b'labels' entry"):
        read_cifar(tmp_path, train=False)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_read_cifar_refuses_arbitrary_pickled_code(tmp_path):
    _build_tree(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": _Payload()}))
    with pytest.raises(ValueError, match=r"test_batch cannot be read \(UnpicklingError: refusing to load global "
                                         r"(posix|nt)\.getcwd"):
        read_cifar(tmp_path, train=False)


def test_download_from_file_url_and_datamodule(tmp_path, cifar10_archive):
    archive, md5, raw = cifar10_archive
    data_dir = tmp_path / "data"
    dm = CIFAR10DataModule(data_dir=str(data_dir), batch_size=4, download=True, num_workers=0,
                           url=archive.as_uri(), md5=md5, augment=False)
    dm.prepare_data()
    assert (data_dir / "cifar-10-python.tar.gz").is_file()
    assert all(p.is_file() for p in cifar_files(data_dir, True) + cifar_files(data_dir, False))
    archive.unlink()  # already extracted: a second prepare_data must not fetch again
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 32)
    assert len(dm.train_dataset) == 5 * PER_TRAIN_FILE and len(dm.val_dataset) == N_TEST
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    expected = torch.from_numpy(raw["test"][0]).reshape(-1, 3, 32, 32).float() / 255
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    assert torch.allclose(x, (expected - mean) / std, atol=1e-6)
    assert y.tolist() == raw["test"][1]
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSeededSampler)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 3, 32, 32)
    first = torch.cat([labels for _, labels in loader])
    assert torch.equal(first, torch.cat([labels for _, labels in dm.train_dataloader()]))


def test_download_wrong_md5(tmp_path, cifar10_archive):
    archive, md5, _ = cifar10_archive
    data_dir = tmp_path / "data"
    wrong = "0" * 32
    with pytest.raises(RuntimeError, match=f"MD5 mismatch for {archive.as_uri()}: expected {wrong}, got {md5}"):
        download_cifar(data_dir, 10, url=archive.as_uri(), md5=wrong)
    assert not (data_dir / "cifar-10-batches-py").exists()
    assert not list(data_dir.iterdir())  # the partial download was removed
    with pytest.raises(ValueError, match="md5 must be a 32-character hex digest, got 'abc'"):
        download_cifar(data_dir, 10, url=archive.as_uri(), md5="abc")


def test_download_cifar100_and_reuse_of_archive(tmp_path):
    archive, md5, raw = _build_archive(tmp_path, 100)
    data_dir = tmp_path / "data"
    folder = download_cifar(data_dir, 100, url=archive.as_uri(), md5=md5)
    assert folder == data_dir / "cifar-100-python"
    # drop the extracted files but keep the downloaded archive: it is verified and re-extracted offline
    for p in folder.iterdir():
        p.unlink()
    archive.unlink()
    download_cifar(data_dir, 100, url=archive.as_uri(), md5=md5)
    dm = CIFAR100DataModule(data_dir=str(data_dir), num_workers=0, batch_size=5)
    dm.prepare_data()
    dm.setup()
    assert dm.num_classes == 100 and dm.train_dataset.labels.tolist() == raw["train"][1]


def test_missing_data_without_download(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_workers=0)
    expected = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with pytest.raises(FileNotFoundError, match=rf"{expected}.*Pass download=True"):
        dm.prepare_data()
    with pytest.raises(FileNotFoundError, match="download=True"):
        dm.setup()


def _tar_with(path: Path, member: tarfile.TarInfo, payload: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(payload) if member.isfile() else None)


@pytest.mark.parametrize("kind", ["traversal", "symlink"])
def test_extraction_refuses_unsafe_members(tmp_path, kind):
    archive = tmp_path / "cifar-10-python.tar.gz"
    if kind == "traversal":
        member = tarfile.TarInfo("../escaped.txt")
        member.size = 2
        _tar_with(archive, member, b"hi")
        match = "would land outside"
    else:
        member = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        _tar_with(archive, member)
        match = "only regular files and directories"
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match=match):
        download_cifar(data_dir, 10, url=archive.as_uri(), md5=md5)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (data_dir / "cifar-10-batches-py").exists()


def test_train_transform_pipeline(tmp_path):
    _build_tree(tmp_path, 10)
    plain = CIFAR10DataModule(data_dir=str(tmp_path), augment=False, num_workers=0)
    steps = plain.train_transform().transforms
    assert len(steps) == 1 and isinstance(steps[0], Normalize)
    darts = CIFAR10DataModule(data_dir=str(tmp_path), cutout_length=16, num_workers=0)
    steps = darts.train_transform().transforms
    assert isinstance(steps[0], RandomCrop) and steps[0].size == (32, 32) and steps[0].padding == 4
    assert isinstance(steps[-1], Cutout) and steps[-1].length == 16  # Cutout after normalisation, as in DARTS
    darts.setup()
    torch.manual_seed(0)
    a = darts.train_dataset[0][0]
    torch.manual_seed(0)
    b = darts.train_dataset[0][0]
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert int((a == 0).all(0).sum()) >= 64  # a cut-out square (>= half the side each way) is zero on all channels
    eval_x = darts.val_dataset[0][0]
    assert torch.equal(eval_x, darts.val_dataset[0][0])  # held-out images are not augmented


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cutout_length": -1}, r"cutout_length must be an int >= 0 \(0 disables Cutout; DARTS uses 16\), got -1"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"num_workers": -2}, "num_workers must be an int >= 0, got -2"),
        ({"md5": "not-a-digest"}, "md5 must be a 32-character hex digest"),
    ],
)
def test_datamodule_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CIFAR10DataModule(**kwargs)

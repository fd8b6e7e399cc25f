import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from lit_automl.datamodules import MNISTDataModule, download_mnist, read_idx, read_mnist
from lit_automl.datamodules.mnist import MNIST_FILES, MNIST_MD5, MNIST_MEAN, MNIST_STD


def _idx(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written by hand from the format's description."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_tree(root, n_train=6, n_test=4, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for name, array in zip(MNIST_FILES[split], (images, labels)):
            data = _idx(array)
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_mnist_returns_the_written_images_and_labels(tmp_path, gz):
    arrays = _write_tree(tmp_path, gz=gz)
    for split, train in (("train", True), ("test", False)):
        images, labels = read_mnist(tmp_path, train=train)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert torch.equal(images, torch.from_numpy(arrays[split][0]))
        assert labels.tolist() == arrays[split][1].tolist()


def test_read_idx_refuses_damaged_and_foreign_files(tmp_path):
    good = _idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert read_idx(_put(tmp_path, "ok", good)).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(_put(tmp_path, "a", b"\x01" + good[1:]))
    with pytest.raises(ValueError, match="element type 0x0d is not supported"):
        read_idx(_put(tmp_path, "b", good[:2] + b"\x0d" + good[3:]))
    with pytest.raises(ValueError, match=r"announces shape \(2, 3\) \(6 bytes\) but 5 bytes"):
        read_idx(_put(tmp_path, "c", good[:-1]))
    with pytest.raises(ValueError, match="cannot be read"):
        read_idx(_put(tmp_path, "d.gz", b"not gzip at all"))


def _put(root, name, data):
    path = root / name
    path.write_bytes(data)
    return path


def test_read_mnist_names_the_missing_file_and_the_way_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\(\.gz\) not found .*download=True"):
        read_mnist(tmp_path)


def test_read_mnist_refuses_labels_that_do_not_match_the_images(tmp_path):
    _write_tree(tmp_path, gz=False)
    (tmp_path / MNIST_FILES["train"][1]).write_bytes(_idx(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(ValueError, match="expected 6 labels"):
        read_mnist(tmp_path)
    (tmp_path / MNIST_FILES["train"][1]).write_bytes(_idx(np.full(6, 10, dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\], got a 10"):
        read_mnist(tmp_path)


def test_datamodule_scales_and_normalises_and_serves_both_splits(tmp_path):
    arrays = _write_tree(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    x, y = dm.train_dataset.tensors
    expected = (torch.from_numpy(arrays["train"][0]).float().unsqueeze(1) / 255 - MNIST_MEAN) / MNIST_STD
    assert x.shape == (6, 1, 28, 28) and torch.allclose(x, expected)
    assert len(dm.val_dataset) == 4
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (4, 1, 28, 28) and yb.dtype == torch.int64
    raw = MNISTDataModule(data_dir=str(tmp_path), normalize="none")
    raw.setup()
    assert raw.train_dataset.tensors[0].min() >= 0 and raw.train_dataset.tensors[0].max() <= 1


def test_datamodule_bad_arguments_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="normalize"):
        MNISTDataModule(normalize="zscore")
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(FileNotFoundError, match="download=True"):
        MNISTDataModule(data_dir=str(tmp_path)).prepare_data()


def test_download_checks_digests_and_keeps_verified_files(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    _write_tree(source)
    digests = {name: hashlib.md5((source / name).read_bytes()).hexdigest() for name in MNIST_MD5}
    dest = tmp_path / "data"
    download_mnist(dest, url=source.as_uri(), md5=digests)
    assert read_mnist(dest)[0].shape == (6, 28, 28)
    with pytest.raises(RuntimeError, match="MD5 mismatch"):
        download_mnist(tmp_path / "other", url=source.as_uri(), md5={**digests, "t10k-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(ValueError, match="md5 must map exactly"):
        download_mnist(dest, url=source.as_uri(), md5={"train-images-idx3-ubyte.gz": "0" * 32})

"""Issue 14, the data: a missing or damaged data file is named with what was expected, and a damaged
cache is rebuilt with a warning, never silently."""

from __future__ import annotations

import hashlib
import warnings

import pytest

from lit_automl.datamodules import download_cifar, download_omniglot, read_cifar, read_omniglot
from lit_automl.datamodules.cifar import cifar_files
from tests.datamodules.test_omniglot import build_tree

OFFICIAL = "expected a batch file of the official CIFAR python archive \\(a pickled dict\\)"


def _cifar_test_batch(root, content: bytes):
    path = cifar_files(root, train=False)[0]
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, error", [
    (b"\x00\x01 random bytes", r"UnpicklingError: invalid load key, '\\x00'\."),  # what pickle said, without a name
    (b"", r"EOFError: Ran out of input"),
    (b"\x80\x04\x95", r"UnpicklingError: .*"),  # a pickle cut short
])
def test_a_damaged_cifar_batch_file_is_named_with_what_was_expected(tmp_path, content, error):
    path = _cifar_test_batch(tmp_path, content)
    with pytest.raises(ValueError, match=rf"^{path} cannot be read \({error}\); {OFFICIAL}: the file is damaged or not "
                                         r"from that archive \(delete it and download again\)$"):
        read_cifar(tmp_path, train=False)


def test_a_damaged_cifar_archive_is_named(tmp_path):
    server = tmp_path / "server" / "cifar-10-python.tar.gz"
    server.parent.mkdir()
    server.write_bytes(b"this is no gzip")  # served with its own md5: the download checks out, the archive does not
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'data' / 'cifar-10-python.tar.gz'} cannot be read as a "
                                         r"\.tar\.gz archive \(ReadError: .*\); expected the official CIFAR python "
                                         r"archive: delete it and download again$"):
        download_cifar(tmp_path / "data", url=server.as_uri(), md5=hashlib.md5(b"this is no gzip").hexdigest())


def test_a_damaged_omniglot_drawing_is_named(tmp_path):
    paths = build_tree(tmp_path / "omniglot")
    paths[3].write_bytes(b"\x89PNG\r\n\x1a\n but nothing after the signature")
    with pytest.raises(ValueError, match=rf"^{paths[3]} cannot be read as an image \(\w+: .*\); expected an Omniglot PNG "
                                         r"drawing: the file is damaged"):
        read_omniglot(tmp_path / "omniglot", cache=False)


def test_an_unreadable_omniglot_cache_is_rebuilt_with_a_warning(tmp_path):
    root = tmp_path / "omniglot"
    build_tree(root)
    (root / "omniglot_28x28.pt").write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match=rf"^the Omniglot cache {root / 'omniglot_28x28.pt'} cannot be read "
                                         r"\(UnpicklingError: .*\); rebuilding it from the PNG files$"):
        images, labels, _ = read_omniglot(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache reads back without a word
        again, _, _ = read_omniglot(root)
    assert images.shape == again.shape and (images == again).all() and len(labels) == len(images)


def test_a_damaged_omniglot_archive_is_named(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    for subset in ("images_background", "images_evaluation"):
        (server / f"{subset}.zip").write_bytes(b"PK but no zip")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'data' / 'images_background.zip'} cannot be read as a zip "
                                         r"archive \(BadZipFile: File is not a zip file\); expected an official Omniglot "
                                         r"archive: delete it and download again$"):
        download_omniglot(tmp_path / "data", base_url=server.as_uri(), md5=None)

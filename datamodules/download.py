"""Verified downloads for the data-set loaders (CIFAR, Omniglot): fetch to a ``.part`` file, check
its MD5, and only then move it into place, so an interrupted or corrupt download is never used."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["check_md5", "check_md5_map", "file_md5", "fetch_verified"]


def check_md5(name: str, digest: object) -> str:
    """``digest`` if it is a 32-character hex MD5 digest; otherwise ``ValueError`` naming ``name`` and the value."""
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        raise ValueError(f"{name} must be a 32-character hex digest, got {digest!r}")
    return digest


def check_md5_map(md5: object, names: Sequence[str]) -> None:
    """``md5`` maps exactly ``names`` (files or subsets) to hex digests; ``None`` (no check) passes."""
    if md5 is None:
        return
    if not isinstance(md5, Mapping) or set(md5) != set(names):
        raise ValueError(f"md5 must map exactly {tuple(names)} to hex digests (or be None), got {md5!r}")
    for name, digest in md5.items():
        check_md5(f"md5[{name!r}]", digest)


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(url: str, archive: Path, md5: str | None, hint: str = "check the url/md5 arguments or retry") -> Path:
    """``archive``, downloaded from ``url`` unless a file with the right ``md5`` is already there.

    ``md5=None`` skips the check. A mismatch deletes the download and raises RuntimeError naming both digests.
    """
    if archive.is_file() and (md5 is None or file_md5(archive) == md5):
        return archive
    partial = archive.with_name(archive.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
        for block in iter(lambda: response.read(1 << 20), b""):
            f.write(block)
    if md5 is not None:
        actual = file_md5(partial)
        if actual != md5:
            partial.unlink()
            raise RuntimeError(f"MD5 mismatch for {url}: expected {md5}, got {actual}. The download was deleted; {hint}.")
    os.replace(partial, archive)
    return archive

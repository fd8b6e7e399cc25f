"""No run overwrites an earlier one: a logger's fixed ``version`` folder that already holds files
becomes ``<version>_2`` (``_3``, ...), and a finished command says where everything went.

Lightning's CSV and TensorBoard loggers write into ``save_dir/name/version``; with a fixed
``version`` (every recipe's ``search``, ``retrain``, ...) a second run deletes the first one's
metrics and replaces its config, checkpoints and genotype. An automatic version (``None``) already
picks the next free ``version_N`` and is left alone.

Under DDP started by Lightning's subprocess launcher, the other ranks re-run the command before
rank 0 has written anything: rank 0 records its choice in :data:`VERSIONS_ENV`, which the launched
processes inherit and apply, so every rank agrees on one folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["VERSIONS_ENV", "fresh_version", "folder_summary", "is_launched_rank"]

VERSIONS_ENV = "LIT_AUTOML_RUN_VERSIONS"


def is_launched_rank() -> bool:
    """Whether this process is a rank > 0 that Lightning's DDP launcher started."""
    return any(int(os.environ.get(var, "0") or 0) > 0 for var in ("LOCAL_RANK", "NODE_RANK"))


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def fresh_version(log_dir: Path, version: Any) -> Tuple[Any, Optional[Path]]:
    """``(version, None)`` when ``log_dir`` (the folder ``version`` names) is new or empty, else
    ``(<version>_<n>, its folder)`` for the first ``n >= 2`` whose folder is."""
    if not _holds_files(log_dir):
        return version, None
    base = version if isinstance(version, str) else f"version_{version}"
    n = 2
    while _holds_files(log_dir.parent / f"{base}_{n}"):
        n += 1
    return f"{base}_{n}", log_dir.parent / f"{base}_{n}"


def fresh_versions(specs: List[Any], log_dir_of: Callable[[Any], Optional[Path]],
                   announce: Callable[[str], None]) -> List[Any]:
    """For each logger spec (``{"class_path", "init_args"}`` dicts), the version it should write to:
    rank 0 decides (and records the choice for launched ranks), launched ranks read the record."""
    if is_launched_rank() and VERSIONS_ENV in os.environ:
        return json.loads(os.environ[VERSIONS_ENV])
    versions = []
    for spec in specs:
        init_args = spec.get("init_args") or {} if isinstance(spec, dict) else {}
        version = init_args.get("version")
        log_dir = log_dir_of(spec) if version is not None else None
        if log_dir is None:
            versions.append(version)
            continue
        new, folder = fresh_version(log_dir, version)
        if folder is not None:
            announce(f"{log_dir} holds an earlier run: this run writes to {folder}")
        versions.append(new)
    os.environ[VERSIONS_ENV] = json.dumps(versions)
    return versions


def folder_summary(command: str, folder: Path) -> str:
    """One line: where a finished command's files went, and which."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()) if folder.is_dir() else []
    listed = ", ".join(entries) if entries else "nothing written"
    return f"lit-automl {command}: run folder {folder} ({listed})"

"""The distribution installs lit_automl, lit_automl.callbacks and lit_automl.datamodules only."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = (
    "import importlib.util as u, lit_automl.callbacks as c, lit_automl.datamodules as d, lit_automl.spaces, lit_automl.nas.darts;"
    "assert u.find_spec('callbacks') is None, 'bare callbacks importable';"
    "assert u.find_spec('datamodules') is None, 'bare datamodules importable';"
    "print(c.__name__, d.__name__)"
)


def test_installed_mapping_outside_the_repo_root(tmp_path):
    """From outside the repo root (the current install, editable or not) no bare module leaks."""
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["lit_automl.callbacks", "lit_automl.datamodules"]


def test_non_editable_install_layout(tmp_path):
    """``pip install .`` puts callbacks/ and datamodules/ under lit_automl/, nothing at top level."""
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target", str(target), str(ROOT)]
    pytest.importorskip("setuptools")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top == ["lit_automl"]
    assert (target / "lit_automl" / "callbacks" / "__init__.py").exists()
    assert (target / "lit_automl" / "datamodules" / "digits.py").exists()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    check = subprocess.run([sys.executable, "-c", CHECK.replace(", lit_automl.nas.darts", "")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, env=env)
    assert check.returncode == 0, check.stderr

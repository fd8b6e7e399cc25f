"""Start-up cost of ``lit-automl`` commands and imports, next to Python's and Lightning's own.

    python benchmarks/startup.py                     # this checkout, 5 fresh processes per row
    python benchmarks/startup.py --repo ../baseline  # another checkout of lit-automl (same Python)
    python benchmarks/startup.py --runs 9

Each row runs its command in ``--runs`` fresh Python processes and prints the median and IQR of
the wall time, of the CPU time (user + system of the child; what a loaded machine does not
distort) and of the import time ``python -X importtime`` reports (the sum of the top-level
imports' cumulative times). ``python -c pass`` and ``import pytorch_lightning`` are the references a
user compares with: ``lit-automl --help`` should cost little more than Lightning's own import, and
``lit-automl hpo --help`` little more than Python's start.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROWS: Tuple[Tuple[str, str], ...] = (
    ("python -c pass", "pass"),
    ("import pytorch_lightning", "import pytorch_lightning"),
    ("import lit_automl.spaces", "import lit_automl.spaces"),
    ("import lit_automl.nas", "import lit_automl.nas"),
    ("lit-automl", "CLI:"),
    ("lit-automl --help", "CLI:--help"),
    ("lit-automl hpo --help", "CLI:hpo --help"),
    ("lit-automl nas-worker --help", "CLI:nas-worker --help"),
)

# What the installed console script runs (setup.cfg: lit-automl = lit_automl.cli:main).
_CONSOLE_SCRIPT = "import sys; sys.argv[0] = 'lit-automl'; from lit_automl.cli import main; sys.exit(main())"

# Imports lit_automl from ROOT with its package_dir mapping (callbacks/, datamodules/), as the
# editable install of that checkout would, ahead of whichever checkout is installed.
_FINDER = '''
import importlib.util, os, sys
_ROOT = {root!r}
_MAP = {{"lit_automl": "lit_automl", "lit_automl.callbacks": "callbacks", "lit_automl.datamodules": "datamodules"}}
class _CheckoutFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in _MAP:
            return None
        folder = os.path.join(_ROOT, _MAP[name])
        return importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
sys.meta_path.insert(0, _CheckoutFinder)
'''


def command_for(spec: str) -> List[str]:
    """The argv of one row: ``CLI:<args>`` runs the console script with those arguments."""
    if spec.startswith("CLI:"):
        return [sys.executable, "-X", "importtime", "-c", _CONSOLE_SCRIPT, *spec[4:].split()]
    return [sys.executable, "-X", "importtime", "-c", spec]


def _import_seconds(stderr: str) -> float:
    """Sum of the top-level imports' cumulative microseconds in ``-X importtime`` output, in seconds."""
    total = 0
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # one space: a top-level import
            total += int(match.group(1))
    return total / 1e6


def run_once(argv: Sequence[str], env: Dict[str, str], cwd: str) -> Tuple[float, float, float, int]:
    """Wall seconds, child CPU seconds, import seconds and exit code of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, _import_seconds(done.stderr), done.returncode


def median_iqr(values: Sequence[float]) -> str:
    """``median (IQR q1-q3)`` in seconds."""
    if len(values) < 2:
        return f"{values[0]:.3f}"
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{statistics.median(values):.3f} ({q1:.3f}-{q3:.3f})"


def environment(repo: Optional[Path], scratch: Path) -> Dict[str, str]:
    """The child environment: single-threaded BLAS as on CI, and ``repo`` imported first when given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    if repo is not None:
        (scratch / "sitecustomize.py").write_text(_FINDER.format(root=str(repo.resolve())))
        env["PYTHONPATH"] = str(scratch)
    return env


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="a lit-automl checkout to measure instead of the installed one")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per row (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.repo is not None and not (args.repo / "lit_automl" / "__init__.py").is_file():
        parser.error(f"--repo {args.repo} is not a lit-automl checkout (no lit_automl/__init__.py)")
    where = str(args.repo.resolve()) if args.repo is not None else "the installed lit_automl"
    print(f"start-up of {where}; Python {sys.version.split()[0]}, {args.runs} fresh processes per row, "
          "median (IQR) in seconds")
    header = f"{'command':<30} {'wall s':>22} {'CPU s':>22} {'imports s':>22}  exit"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as scratch:
        env = environment(args.repo, Path(scratch))
        for label, spec in ROWS:
            runs = [run_once(command_for(spec), env, scratch) for _ in range(args.runs)]
            walls, cpus, imports, codes = zip(*runs)
            print(f"{label:<30} {median_iqr(walls):>22} {median_iqr(cpus):>22} {median_iqr(imports):>22}  "
                  f"{','.join(sorted({str(c) for c in codes}))}", flush=True)


if __name__ == "__main__":
    main()

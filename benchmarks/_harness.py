"""What every benchmark script needs, written once: fresh-process runs, peak memory, statistics, tables.

* :func:`run_worker` / :func:`serve_worker`: run one measurement in a fresh Python process (so its
  peak memory and its imports are its own): a JSON spec goes in on the command line, the worker
  function's JSON-able result comes back through a file.
* :class:`PeakMemory`: peak memory from a starting point on, ``torch.cuda.max_memory_allocated``
  on a CUDA device, else the growth of the process's peak resident set size.
* :func:`median_iqr`, :func:`mean_sd`, :func:`mean_ci` and their ``fmt_*`` forms.
* :func:`fmt_bytes`, :func:`fmt_seconds`, :func:`fmt_duration`, :func:`format_table`,
  :func:`describe_machine`.

Standard library only at import time (torch is imported where a CUDA device is measured), so a
worker's own imports are what it measures. Scripts import it as ``from _harness import ...``: the
folder of a script run as ``python benchmarks/<script>.py`` is on ``sys.path``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

__all__ = [
    "WORKER_FLAG",
    "PeakMemory",
    "WorkerError",
    "describe_machine",
    "fmt_bytes",
    "fmt_duration",
    "fmt_mean_ci",
    "fmt_mean_sd",
    "fmt_median_iqr",
    "fmt_seconds",
    "format_table",
    "max_rss_bytes",
    "mean_ci",
    "mean_sd",
    "median_iqr",
    "run_worker",
    "serve_worker",
]

WORKER_FLAG = "--_worker"  # argv[1] of a worker process: argv[2] is the spec (JSON), argv[3] the result file


# ---------------------------------------------------------------------------------------- fresh processes


class WorkerError(RuntimeError):
    """A worker process that exited without a result; ``output`` holds the tail of what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def run_worker(script: str, spec: Mapping[str, Any], *, cwd: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Run ``python script --_worker <spec>`` in a fresh process and return the dict it wrote.

    ``script`` must call :func:`serve_worker` first thing in its ``main``. The worker's stdout and
    stderr are captured; when it writes no result (it crashed, or it exited non-zero) a
    :class:`WorkerError` carries the exit code and the last 4,000 characters of its output. An
    interrupt (Ctrl-C) kills the worker this call started before it propagates.
    """
    with tempfile.TemporaryDirectory(prefix="bench_worker_") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [sys.executable, os.path.abspath(script), WORKER_FLAG, json.dumps(dict(spec)), out]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                env=None if env is None else dict(env))
        try:
            output, _ = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode == 0 and os.path.exists(out):
            with open(out) as fh:
                return json.load(fh)
        raise WorkerError(f"benchmark worker {dict(spec)} exited with code {proc.returncode} and no result",
                          output.rstrip()[-4000:])


def serve_worker(argv: Sequence[str], work: Callable[[Dict[str, Any]], Mapping[str, Any]]) -> bool:
    """If ``argv`` is a worker's (see :func:`run_worker`), run ``work(spec)``, write its result, return True.

    Returns False for any other ``argv``, so a script's ``main`` reads
    ``if serve_worker(argv, measure): return``.
    """
    if list(argv[:1]) != [WORKER_FLAG]:
        return False
    if len(argv) != 3:
        raise SystemExit(f"usage: {WORKER_FLAG} SPEC_JSON RESULT_PATH (internal), got {list(argv)!r}")
    result = dict(work(json.loads(argv[1])))
    with open(argv[2], "w") as fh:
        json.dump(result, fh)
    return True


# ---------------------------------------------------------------------------------------- memory


def _proc_status_bytes(field: str) -> Optional[int]:
    """``VmHWM`` / ``VmRSS`` of this process from ``/proc/self/status`` (Linux), in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for text in fh:
                if text.startswith(field + ":"):
                    return int(text.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process so far, in bytes; None where the platform cannot tell.

    On Linux this is ``VmHWM``: ``ru_maxrss`` would start from the parent's peak, since Linux
    carries the peak RSS across ``fork`` + ``exec`` (a worker of a 1 GB parent would show no growth
    below 1 GB).
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # macOS reports bytes, Linux KiB


def _reset_peak_rss() -> Optional[int]:
    """Reset Linux's peak-RSS mark to the current RSS (``clear_refs`` 5); the current RSS, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _proc_status_bytes("VmRSS")


class PeakMemory:
    """Peak memory used from construction (or :meth:`reset`) on, on ``device``.

    On a CUDA device: ``torch.cuda.max_memory_allocated`` (its peak statistics are reset). Elsewhere:
    the peak RSS above the RSS at :meth:`reset` where Linux can reset its peak mark, else the growth
    of the process's peak RSS, which only shows memory beyond the peak already reached (hence a
    fresh process per measurement, :func:`run_worker`).
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.cuda = str(device).startswith("cuda")
        self.device = device
        self.reset()

    @property
    def kind(self) -> str:
        """What :meth:`read` measures, for table notes."""
        return "max alloc" if self.cuda else "peak RSS growth"

    def reset(self) -> None:
        """Measure from now on."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            self._base: Optional[int] = 0
        else:
            current = _reset_peak_rss()
            self._base = current if current is not None else max_rss_bytes()

    def read(self) -> Optional[int]:
        """Peak bytes since :meth:`reset`; None where the platform cannot tell."""
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        now = max_rss_bytes()
        return None if now is None or self._base is None else now - self._base


# ---------------------------------------------------------------------------------------- statistics


def median_iqr(values: Sequence[float]) -> Tuple[float, float, float]:
    """``(median, first quartile, third quartile)``, quartiles interpolated linearly (NumPy's default)."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("median_iqr needs at least one value, got none")
    if len(data) == 1:
        return data[0], data[0], data[0]
    q1, med, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return med, q1, q3


def mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    """``(mean, sample standard deviation)``; the deviation is NaN for a single value."""
    data = [float(v) for v in values]
    if not data:
        raise ValueError("mean_sd needs at least one value, got none")
    return statistics.fmean(data), statistics.stdev(data) if len(data) > 1 else math.nan


def mean_ci(values: Sequence[float], z: float = 1.96) -> Tuple[float, float]:
    """Mean and the half-width of its normal confidence interval (``z = 1.96``: 95%); NaN for one value."""
    mean, sd = mean_sd(values)
    return mean, z * sd / math.sqrt(len(values)) if len(values) > 1 else math.nan


def fmt_median_iqr(values: Sequence[float], digits: int = 3) -> str:
    """``"median [q1, q3]"`` with ``digits`` significant digits."""
    med, q1, q3 = median_iqr(values)
    return f"{_g(med, digits)} [{_g(q1, digits)}, {_g(q3, digits)}]"


def fmt_mean_sd(values: Sequence[float], digits: int = 4) -> str:
    """``"mean ± sd"`` (just the value when there is one)."""
    mean, sd = mean_sd(values)
    return _g(mean, digits) if math.isnan(sd) else f"{_g(mean, digits)} ± {sd:.2g}"


def fmt_mean_ci(values: Sequence[float], scale: float = 1.0, decimals: int = 3, unit: str = "") -> str:
    """``"mean +- half-width"`` of the 95% interval, both times ``scale``, with ``decimals`` decimals."""
    mean, half = mean_ci(values)
    return f"{scale * mean:.{decimals}f} +- {scale * half:.{decimals}f}{unit}"


def _g(x: float, digits: int) -> str:
    return f"{x:.{digits}g}" if x == 0 or abs(x) >= 1e-3 else f"{x:.1e}"


# ---------------------------------------------------------------------------------------- formatting


def fmt_bytes(n: Optional[float]) -> str:
    """``"512 MiB"`` / ``"1.25 GiB"``; ``"n/a"`` for None."""
    if n is None:
        return "n/a"
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.0f} MiB"


def fmt_seconds(s: Optional[float]) -> str:
    """A measured time in seconds with about three significant digits (no unit); ``"n/a"`` for None."""
    if s is None:
        return "n/a"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 10:
        return f"{s:.1f}"
    if s >= 1:
        return f"{s:.2f}"
    return f"{s:.3g}"


def fmt_duration(seconds: float) -> str:
    """A wall time for people: ``"42 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], align: Optional[str] = None) -> str:
    """Rows of cells as aligned plain text under ``header`` and a rule of dashes.

    ``align`` has one letter per column, ``"l"`` or ``"r"``; by default the first column is
    left-aligned and the others right-aligned. Short rows are padded with empty cells.
    """
    width = len(header)
    if any(len(r) > width for r in rows):
        raise ValueError(f"a row has more cells than the header's {width}: {max(rows, key=len)!r}")
    align = align or "l" + "r" * (width - 1)
    if len(align) != width or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {width} letters from 'l' / 'r', got {align!r}")
    cells = [[str(c) for c in header]] + [[str(c) for c in r] + [""] * (width - len(r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(width)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for text in fh:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """One line: torch version, CPU model and cores, torch threads, CUDA device (imports torch)."""
    import torch

    cuda = f"CUDA: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no CUDA"
    return (f"torch {torch.__version__}; CPU: {_cpu_name()}, {os.cpu_count()} logical cores, "
            f"torch threads: {torch.get_num_threads()}; {cuda}")

"""benchmarks/_harness.py: fresh-process workers, peak memory, statistics and tables."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_harness.py"
_spec = importlib.util.spec_from_file_location("_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("_harness", harness)
_spec.loader.exec_module(harness)


def test_median_iqr_matches_numpy_percentiles():
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    assert harness.median_iqr(values) == pytest.approx((med, q1, q3))
    assert harness.median_iqr([2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one value"):
        harness.median_iqr([])


def test_mean_sd_and_ci():
    mean, sd = harness.mean_sd([1.0, 2.0, 3.0])
    assert (mean, sd) == pytest.approx((2.0, 1.0))
    assert harness.mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.96 / 3 ** 0.5))
    assert harness.fmt_mean_sd([5.0]) == "5"
    assert harness.fmt_mean_ci([0.5, 0.7], scale=100, decimals=1, unit="%").endswith("%")


def test_format_table_aligns_columns():
    text = harness.format_table(["name", "s"], [["a", "1.5"], ["long name", "10"]])
    lines = text.splitlines()
    assert lines[0] == "name         s"
    assert lines[1] == "---------  ---"
    assert lines[3] == "long name   10"
    with pytest.raises(ValueError, match="align"):
        harness.format_table(["a", "b"], [], align="lx")


def test_formatting():
    assert harness.fmt_bytes(None) == "n/a"
    assert harness.fmt_bytes(3 * 2**20) == "3 MiB"
    assert harness.fmt_bytes(2**31) == "2.00 GiB"
    assert harness.fmt_seconds(0.01234) == "0.0123"
    assert harness.fmt_duration(120) == "2.0 min"


def test_run_worker_in_a_fresh_process(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(_PATH.parent)!r})
        from _harness import PeakMemory, serve_worker

        def work(spec):
            if spec["fail"]:
                raise RuntimeError("boom")
            memory = PeakMemory()
            block = bytearray(spec["mib"] * 2**20)
            block[::4096] = b"x" * len(block[::4096])
            return {{"pid": os.getpid(), "peak": memory.read()}}

        if __name__ == "__main__":
            serve_worker(sys.argv[1:], work)
    """))
    result = harness.run_worker(str(script), {"fail": False, "mib": 64})
    assert result["pid"] != __import__("os").getpid()
    assert result["peak"] >= 60 * 2**20
    with pytest.raises(harness.WorkerError, match="exited with code 1") as info:
        harness.run_worker(str(script), {"fail": True, "mib": 0})
    assert "boom" in info.value.output

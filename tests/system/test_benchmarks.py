"""The benchmark suite's smoke run: every benchmark still runs end to end (seconds).

Speed is never asserted here; the benchmarks print their ratios and verdicts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(unit(300))
@pytest.mark.slow
def test_quick_benchmarks_run_and_report_every_target() -> None:
    result = subprocess.run(
        # The classroom's benchmark starts a JupyterHub: the hub's own tests run one.
        [sys.executable, "-m", "benchmarks", "all", "--quick", "--without", "classroom"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = [line for line in result.stdout.splitlines() if "PASS" in line or "MISS" in line]
    assert len(verdicts) >= 6, result.stdout[-3000:]
    for section in ["join", "herd", "redis-fanout"]:
        assert f"== {section} ==" in result.stdout, result.stdout[-3000:]
    # Fan-out through Redis: each configuration as a ratio to the same server alone,
    # then the ratios side by side, wslab's and python-socketio's, on one line.
    lines = result.stdout.splitlines()
    for configuration in ["single", "redis-1", "redis-2", "redis-3", "socketio", "socketio-redis"]:
        row = f"| 10 | {configuration:>14} |"
        assert any(line.startswith(row) for line in lines), row
    (ratios,) = [line for line in lines if line.startswith("N=10: wslab on Redis ")]
    assert "of wslab alone;" in ratios and "python-socketio on Redis" in ratios, ratios
    for plot in ["fanout.png", "history.png", "herd.png", "real-herd.png"]:
        assert (ROOT / "benchmarks" / "results" / "quick" / plot).stat().st_size > 0

"""The lint, format and strict type checks, run with this interpreter's tools."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unit

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str, *arguments: str) -> None:
    """Run a tool of this interpreter's environment (no PATH lookup: a venv need not be active)."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[dev]'")
    command = [sys.executable, "-m", module, *arguments]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    run_module("ruff", "check", "wslab", "tests", "benchmarks")


def test_ruff_format_is_clean() -> None:
    run_module("ruff", "format", "--check", "wslab", "tests", "benchmarks")


@pytest.mark.timeout(unit(180))
def test_mypy_strict_is_clean() -> None:
    run_module("mypy")

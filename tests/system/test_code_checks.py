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


@pytest.mark.timeout(unit(180))
def test_a_misspelled_server_option_is_a_mypy_error(tmp_path: Path) -> None:
    snippet = tmp_path / "options_typed.py"
    snippet.write_text(
        "from wslab import ChatServer, Limits\n"
        "ChatServer(history=5, grace=0, ping_interval=None, limits=Limits())\n"
        "ChatServer(histroy=5)\n"
        'ChatServer(grace="0")\n'
    )
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout + result.stderr
    assert ':3: error: Unexpected keyword argument "histroy"' in errors[0]
    assert ':4: error: Argument "grace" to "ChatServer" has incompatible type' in errors[1]

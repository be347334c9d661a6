"""Fixtures of the reliability suite: servers on free loopback ports, and the figures.

Servers are always stopped at teardown. The figures of the soak and the live
fuzz (clients, messages, faults, lost, duplicated) are printed in a section of
the terminal summary and written as JSON (see :func:`helpers.record_figures`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from wslab import ChatServer

from .helpers import FIGURES, results_dir


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; repeated so this folder runs on its own.
    config.addinivalue_line("markers", "slow: takes more than a few seconds (soak, live fuzz)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("wslab reliability figures")
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {results_dir()})")


@pytest.fixture
def chat_server(make_server: Callable[..., ChatServer]) -> Callable[..., ChatServer]:
    """A factory: ``chat_server(**options)`` -> a started ChatServer on port 0.

    The suite's ``make_server`` (tests/conftest.py), under this folder's name.
    """
    return make_server

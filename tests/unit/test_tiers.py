"""The suite's own layout: every test file sits in a tier, and each tier marks its tests."""

from __future__ import annotations

import asyncio
import socket
import tomllib

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import TESTS, TIERS, tier_of


def test_every_test_file_is_in_a_tier_folder() -> None:
    outside = [
        str(path.relative_to(TESTS))
        for path in sorted(TESTS.rglob("test_*.py"))
        if tier_of(path) is None
    ]
    assert outside == [], f"move these into one of tests/{{{','.join(TIERS)}}}/: {outside}"


def test_every_tier_is_a_package() -> None:
    assert [t for t in TIERS if not (TESTS / t / "__init__.py").exists()] == []


def test_this_test_is_marked_unit(request: pytest.FixtureRequest) -> None:
    marks = {mark.name for mark in request.node.iter_markers()}
    assert "unit" in marks and not marks & {"integration", "system", "e2e"}


def test_the_default_run_takes_every_tier_fastest_first_then_the_lessons() -> None:
    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    testpaths = pyproject["tool"]["pytest"]["ini_options"]["testpaths"]
    assert testpaths == [*(f"tests/{tier}" for tier in TIERS), "notebooks"]


def test_a_unit_test_opens_no_network_socket_but_runs_an_event_loop() -> None:
    """tests/conftest.py blocks network sockets for unit tests (an event loop's
    self-pipe is an AF_UNIX pair, which stays allowed)."""
    with pytest.raises(SocketBlockedError), pytest.warns(UserWarning, match="socket"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert asyncio.run(asyncio.sleep(0, "ran")) == "ran"


#: Names that start processes: integration tests run their servers in the test process.
PROCESS_STARTERS = ("RedisServer", "ServerProcess", "JupyterHubProcess", "subprocess")


def test_integration_tests_start_no_process() -> None:
    """Redis, server processes and hubs are system tests (tests/conftest.py also refuses
    a process started while an integration test runs)."""
    found = [
        f"{path.relative_to(TESTS)}: {name}"
        for path in sorted((TESTS / "integration").rglob("*.py"))
        for name in PROCESS_STARTERS
        if name in path.read_text()
    ]
    assert found == [], f"move these tests to tests/system/: {found}"

"""Shared fixtures: a time unit for waits, and real servers on port 0."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wslab import ChatServer

#: One unit of waiting, in seconds; raise WSLAB_TIME_SCALE on a slow machine.
TIME_SCALE = float(os.environ.get("WSLAB_TIME_SCALE", "1"))
WAIT = 5.0 * TIME_SCALE


@pytest.fixture
def make_server() -> Iterator[Callable[..., ChatServer]]:
    """Start ChatServers on free loopback ports; stop them all at teardown."""
    servers: list[ChatServer] = []

    def make(**options: Any) -> ChatServer:
        server = ChatServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()

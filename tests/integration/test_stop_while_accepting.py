"""A server or a tap stopped while connections are still arriving leaves no socket open.

asyncio makes an accepted connection's transport a loop turn after accepting it; a
service that closed in between used to leave that socket open until the garbage
collector found it (a ResourceWarning in whichever test ran then).
"""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
import warnings
from collections.abc import Callable

import pytest

from wslab import ChatServer, WireTap

ROUNDS = 30
CONNECTIONS = 20


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


def _stop_while_connecting(port: int, stop: Callable[[], None], delay: float) -> None:
    """Open CONNECTIONS sockets to ``port`` from a thread while ``stop`` runs."""
    opened: list[socket.socket] = []
    started = threading.Event()

    def connect() -> None:
        started.set()
        for _ in range(CONNECTIONS):
            with contextlib.suppress(OSError):  # refused once the service stopped listening
                opened.append(socket.create_connection(("127.0.0.1", port), timeout=1))

    thread = threading.Thread(target=connect)
    thread.start()
    started.wait(5)
    threading.Event().wait(delay)  # a different moment of the stop in each round
    stop()
    thread.join(10)
    for each in opened:
        each.close()


def _unclosed(run: Callable[[int], None]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for round_ in range(ROUNDS):
            run(round_)
            gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.timeout(120)
def test_a_server_stopped_while_clients_connect_leaves_no_socket_open() -> None:
    def run(round_: int) -> None:
        server = ChatServer(port=0).start()
        _stop_while_connecting(_port(server.url), server.stop, 0.001 * (round_ % 5))

    assert _unclosed(run) == []


@pytest.mark.timeout(120)
def test_a_tap_stopped_while_clients_connect_leaves_no_socket_open() -> None:
    def run(round_: int) -> None:
        with ChatServer(port=0) as server:
            tap = WireTap(server.url).start()
            _stop_while_connecting(_port(tap.url), tap.stop, 0.001 * (round_ % 5))

    assert _unclosed(run) == []

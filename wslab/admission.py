"""Admission: who may open a chat socket, decided before the room sees it.

- ``Origin``: a browser page from a foreign site may not open the chat (HTTP 403,
  no socket); pages on this machine and configured origins may.
- One ``Origin`` and one ``Host`` header per request, else HTTP 400.
- ``max_per_address``: TCP connections from one IP address; more are aborted as
  they are accepted, before their request is read. This machine is not capped.
- ``max_clients``: every TCP connection counts from the moment it is accepted,
  handshakes in progress included. A connection accepted beyond the cap gets its
  WebSocket, which is then closed with 1013 and :data:`SERVER_FULL`, so that the
  client reads why and retries later. This module is the one place that decides
  a server is full.
- ``join_timeout``: a socket that has not sent ``connecting`` that long after its
  handshake is closed with 1008 and ``"join timeout"``.

Server thread only, except :meth:`Admission.origin_allowed` (pure, any thread).
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .protocol import CloseCode

if TYPE_CHECKING:
    from .connection import ChatConnection

__all__ = ["SERVER_FULL", "Admission", "origin_host", "peer_address"]

logger = logging.getLogger("wslab.server")

#: The close reason of a socket turned away because the server is full (1013).
SERVER_FULL = "server full ({max_clients} clients); try again later"

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# This machine's own programs (notebooks, tests, benchmarks, a JupyterHub proxy) open
# hundreds of clients from these addresses: the per-address cap does not apply to them.
UNCAPPED_ADDRESSES = frozenset({"127.0.0.1", "::1"})


class Admission:
    """The gate in front of the room: origins, per-address cap, ``max_clients``.

    Args:
        host: the address the server binds (its own host name is an allowed origin).
        max_clients: connections beyond which a new WebSocket is closed with 1013.
        max_per_address: connections from one IP address (0: no cap).
        join_timeout: seconds a socket has, after its handshake, to send ``connecting``.
        allowed_origins: extra allowed origins (``"https://example.org"`` or a host).
        trust_same_origin: allow a page whose ``Origin`` host is the ``Host`` it
            asked for (under JupyterHub's proxy, or when listening publicly).
    """

    def __init__(
        self,
        host: str,
        *,
        max_clients: int,
        max_per_address: int,
        join_timeout: float,
        allowed_origins: Collection[str] = (),
        trust_same_origin: bool = False,
    ) -> None:
        self.max_clients = max_clients
        self.max_per_address = max_per_address
        self.join_timeout = join_timeout
        self.allowed_hosts = LOCAL_HOSTS | {origin_host(o) for o in allowed_origins}
        if host not in WILDCARD_HOSTS:
            self.allowed_hosts |= {host.strip("[]").lower()}
        self.trust_same_origin = trust_same_origin
        #: Every TCP connection from accept to close.
        self.connections: set[ChatConnection] = set()
        self._per_address: Counter[str] = Counter()
        self._closed = False
        #: Connections aborted at once for being over ``max_per_address``.
        self.refused_per_address = 0
        #: WebSockets closed with 1013 because the server was full.
        self.refused_full = 0
        #: Sockets closed because they did not send ``connecting`` in time.
        self.join_timeouts = 0

    # ------------------------------------------------------------------ TCP connections

    def open(self) -> None:
        """Accept connections again (the server listens)."""
        self._closed = False

    def close(self) -> None:
        """Abort every connection accepted from now on (the server is stopping)."""
        self._closed = True

    def connection_made(self, connection: ChatConnection) -> None:
        """A TCP connection was accepted: count it, or abort it at once if over a cap."""
        address = connection.address
        if self._closed:
            connection.transport.abort()
            return
        if (
            self.max_per_address
            and address not in UNCAPPED_ADDRESSES
            and self._per_address[address] >= self.max_per_address
        ):
            # No HTTP answer is possible before the request is read, and not reading
            # it is the point: the connection ends here, before it costs anything.
            self.refused_per_address += 1
            logger.debug("%s: over %d connections from this address", address, self.max_per_address)
            connection.transport.abort()
            return
        # The verdict on a full server comes at accept time; the WebSocket, once open,
        # is closed by turn_away() so that the client reads why.
        connection.admitted = len(self.connections) < self.max_clients
        self.connections.add(connection)
        self._per_address[address] += 1

    def connection_lost(self, connection: ChatConnection) -> None:
        """A TCP connection ended: it no longer counts."""
        if connection in self.connections:
            self.connections.discard(connection)
            self._per_address[connection.address] -= 1
            if not self._per_address[connection.address]:
                del self._per_address[connection.address]

    def watch_join(self, socket: ChatConnection, joined: Callable[[], bool]) -> asyncio.TimerHandle:
        """Close ``socket`` with 1008 unless ``joined()`` is true ``join_timeout`` from now.

        Cancel the handle when the socket ends. Server thread only (a running loop).
        """
        return asyncio.get_running_loop().call_later(
            self.join_timeout, self._check_joined, socket, joined
        )

    def _check_joined(self, socket: ChatConnection, joined: Callable[[], bool]) -> None:
        if not joined():
            self.join_timeouts += 1
            socket.close_soon(CloseCode.POLICY_VIOLATION, "join timeout")

    async def turn_away(self, socket: ChatConnection) -> bool:
        """Close ``socket`` with 1013 if it came while the server was full; say if it did."""
        if socket.admitted:
            return False
        self.refused_full += 1
        await socket.close(
            CloseCode.TRY_AGAIN_LATER, SERVER_FULL.format(max_clients=self.max_clients)
        )
        return True

    # ------------------------------------------------------------------ HTTP requests

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """HTTP 400 for a request with several ``Origin`` or ``Host`` headers, else None."""
        if len(request.headers.get_all("Origin")) > 1 or len(request.headers.get_all("Host")) > 1:
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST, "Send one Origin header and one Host header.\n"
            )
        return None

    def check_origin(self, connection: ServerConnection, request: Request) -> Response | None:
        """HTTP 403 for a handshake from a page whose origin may not open the chat."""
        origin = request.headers.get("Origin")
        if self.origin_allowed(origin, request.headers.get("Host")):
            return None
        return connection.respond(
            http.HTTPStatus.FORBIDDEN, "This page's origin may not open the chat.\n"
        )

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """Whether a page from ``origin`` may open the chat (``host_header``: where it asked)."""
        if origin is None:
            return True  # not a browser: Origin only protects browsers' users
        host = origin_host(origin)
        if host in self.allowed_hosts:
            return True
        return self.trust_same_origin and host == origin_host(host_header or "")


def trust_same_origin(listens_publicly: bool) -> bool:
    """Whether a page may open the chat from the address it was loaded from.

    Only in two cases. Under JupyterHub (Binder) the page comes through
    jupyter-server-proxy, which checked the learner's login and forwards the hub's
    Host and Origin as they are; only the proxy can reach this server. And when the
    server listens publicly, anyone on the network can connect anyway, so a page on
    another name for this machine gains nothing. On loopback alone the rule would
    let DNS rebinding in: a foreign page whose name was made to resolve to
    127.0.0.1 would pass it.
    """
    return bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX")) or listens_publicly


def origin_host(origin: str) -> str:
    """The lower-case host name of an origin (``"https://a.b:8"`` -> ``"a.b"``)."""
    if "//" not in origin:
        origin = "//" + origin
    try:
        return (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return ""


def peer_address(peername: Any) -> str:
    """The peer's IP address as text; an IPv4 address mapped into IPv6 as plain IPv4."""
    if not isinstance(peername, tuple) or not peername:
        return ""
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return str(peername[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)

"""Listener: the websockets server under a chat server, with its gates in front.

It binds, routes each HTTP request (admission's header and origin checks, the
static pages, 503 while the chat is unavailable), makes each connection a
:class:`~wslab.connection.ChatConnection`, turns away sockets admission refused,
and hands every other socket to the chat's handler. Closing it closes every
client with 1001.

Server thread only.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import pages
from .admission import Admission
from .connection import ChatConnection
from .loopthread import stop_accepting
from .options import Limits, Timeouts
from .pages import CHAT_PATH
from .protocol import CloseCode
from .redact import MaskingLogger

if TYPE_CHECKING:
    from .classroom.service import HubDoor

__all__ = ["Listener"]

logger = logging.getLogger("wslab.server")
#: The server's logger for websockets, credentials masked in its handshake lines.
_HANDSHAKE_LOGGER = MaskingLogger(logger)

Handler = Callable[[ChatConnection], Awaitable[None]]


class Listener:
    """A websockets server that admits, serves pages, and hands sockets to ``handler``.

    Args:
        handler: runs for each admitted WebSocket, for as long as it is open.
        admission: the gate (origins, per-address cap, ``max_clients``).
        limits, timeouts: the server's options (``max_size``, ``max_buffer``, waits).
        available: whether the chat can take sockets now; if not, HTTP 503.
        ssl: a server-side context for ``wss://``.
        compression: ``None`` or ``"deflate"``.
        door: classroom mode's routes and handshake identities
            (:class:`~wslab.classroom.service.HubDoor`): every path is its, and a
            socket opens only once the hub said who it is.
    """

    def __init__(
        self,
        handler: Handler,
        admission: Admission,
        limits: Limits,
        timeouts: Timeouts,
        *,
        available: Callable[[], bool],
        ssl: ssl_module.SSLContext | None = None,
        compression: str | None = None,
        door: HubDoor | None = None,
    ) -> None:
        self.handler = handler
        self.door = door
        self.admission = admission
        self.limits = limits
        self.timeouts = timeouts
        self.available = available
        self.ssl = ssl
        self.compression = compression
        self.server: Server | None = None
        self._handlers_of: Server | None = None  # the server whose handlers are awaited
        #: Peers closed because they left more than ``max_buffer`` bytes unread.
        self.slow_peers_dropped = 0

    async def listen(self, host: str, port: int) -> int:
        """Bind and listen; return the bound port (the real one if ``port`` is 0)."""
        self.admission.open()
        self.server = await serve(
            self._serve_socket,
            host,
            port,
            ssl=self.ssl,
            process_request=self._process_request,
            max_size=self.limits.max_size,
            compression=self.compression,
            open_timeout=self.timeouts.open_timeout,
            close_timeout=self.timeouts.close_timeout,
            ping_interval=self.timeouts.ping_interval,
            ping_timeout=self.timeouts.ping_timeout,
            # websockets calls this like a class: (protocol, server, **options).
            create_connection=self._new_connection,  # type: ignore[arg-type]
            logger=_HANDSHAKE_LOGGER,
        )
        self._handlers_of = self.server
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        """Whether it listens (between :meth:`listen` and :meth:`close`)."""
        return self.server is not None

    async def close(self, close_timeout: float) -> None:
        """Close every client with 1001 and stop listening; wait for their handlers.

        A handler still running after ``close_timeout`` is left to end on its own
        (:meth:`wait_handlers` can wait for it longer).
        """
        server = self.server
        if server is None:
            return
        for connection in server.connections:
            connection.close_timeout = close_timeout
        self.admission.close()
        await stop_accepting(server.server)
        server.close(code=CloseCode.GOING_AWAY, reason="server stopping")
        # A handshake in progress would hold the shutdown for up to open_timeout.
        for connection in list(self.admission.connections):
            if connection.protocol.state is State.CONNECTING:
                connection.transport.abort()
        await server.wait_closed()
        # Connections accepted while closing are aborted as they arrive (see
        # Admission.connection_made); let their tasks end before the loop does.
        await self.wait_handlers(close_timeout)
        self.server = None

    async def wait_handlers(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the sockets' handlers to end."""
        server = self._handlers_of
        if server is not None and server.handler_tasks:
            await asyncio.wait(server.handler_tasks, timeout=timeout)

    def _new_connection(
        self, protocol: ServerProtocol, server: Server, **options: Any
    ) -> ChatConnection:
        return ChatConnection(
            protocol,
            server,
            admission=self.admission,
            max_buffer=self.limits.max_buffer,
            on_slow_peer=self._count_slow_peer,
            **options,
        )

    def _count_slow_peer(self) -> None:
        self.slow_peers_dropped += 1

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        refusal = self.admission.check_request(connection, request)
        if refusal is not None:
            return refusal
        if self.door is not None:
            if pages.path_of(request) == self.door.socket_path:
                refusal = self.admission.check_origin(connection, request)
                if refusal is not None:
                    return refusal
            return await self.door.respond(connection, request)
        path = pages.path_of(request)
        if path != CHAT_PATH:
            return pages.respond(path)
        if not self.available():
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "The chat backplane is unavailable; try again.\n",
            )
        return self.admission.check_origin(connection, request)  # None: on with the handshake

    async def _serve_socket(self, socket: ServerConnection) -> None:
        assert isinstance(socket, ChatConnection)
        if await self.admission.turn_away(socket):
            return
        await self.handler(socket)

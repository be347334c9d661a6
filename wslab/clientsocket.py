"""ClientSocket: one socket of a :class:`~wslab.client.ChatClient`, from handshake to close.

A :class:`~wslab.client.ChatClient` makes a new one for every attempt and decides
whether to try again; a :class:`ClientSocket` lives one connection::

    open()   the handshake; on failure an ``error`` event, and whether it is final
    run()    send ``connecting``; read frames until the socket closes, closing it
             if no ``connected`` comes within the join timeout; send what the
             outbox holds once joined
    close()  send a close frame

What a frame means is the client's business: each one goes to its ``on_frame``.
Every ``error`` and ``message`` event goes to its raw event log (``record``); the
client logs ``open`` and ``close`` itself, as it acts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from .outbox import Outbox
from .protocol import CloseCode, Connecting, WriteMessage, encode
from .rawlog import RawEvent
from .redact import MaskingLogger

__all__ = ["ClientSocket", "SocketOptions"]

logger = logging.getLogger("wslab.client")


@dataclass(frozen=True)
class SocketOptions:
    """How a client opens its sockets (see :class:`~wslab.client.ChatClient`'s arguments).

    ``headers`` may hold a credential (``Authorization``): it is left out of the
    ``repr`` and never logged.
    """

    join_timeout: float
    max_size: int | None
    ssl: ssl_module.SSLContext | None = None
    origin: str | None = None
    compression: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class ClientSocket:
    """One connection of a chat client, from handshake to close. See the module docstring.

    Args:
        url: the server's socket URL.
        options: how to open the socket and how long to wait for ``connected``.
        outbox: the client's outbox: what is due goes out on this socket.
        record: where ``error`` and ``message`` events go (the raw event log).
        on_frame: applies one frame from the server; returns whether it was
            ``connected``.

    Every method runs on the client's loop; call it from that loop's thread only.
    """

    def __init__(
        self,
        url: str,
        options: SocketOptions,
        outbox: Outbox,
        record: Callable[[RawEvent], None],
        on_frame: Callable[[str | bytes], Awaitable[bool]],
    ) -> None:
        self.url = url
        self.options = options
        #: The open connection, or ``None`` before the handshake and after the close.
        self.socket: ClientConnection | None = None
        #: Whether the handshake was refused for good (it would fail the same way again).
        self.refused = False
        self._outbox = outbox
        self._record = record
        self._on_frame = on_frame
        self._send_lock = asyncio.Lock()

    async def open(self) -> bool:
        """Open the socket (the handshake); return whether it opened.

        A failure fires an ``error`` event, as a browser does (then the client
        logs ``close`` 1006), and sets :attr:`refused` if it is final.
        """
        options: dict[str, Any] = {"ssl": self.options.ssl} if self.options.ssl is not None else {}
        try:
            self.socket = await connect(
                self.url,
                origin=self.options.origin,  # type: ignore[arg-type]
                max_size=self.options.max_size,
                compression=self.options.compression,
                additional_headers=dict(self.options.headers) or None,
                logger=_HANDSHAKE_LOGGER,
                open_timeout=10,
                close_timeout=2,
                **options,
            )
        except (OSError, TimeoutError, WebSocketException) as error:
            self._record(RawEvent("error", detail=_describe_failure(error)))
            # A refused handshake (403, 404, a bad certificate) would fail again.
            self.refused = _refused_for_good(error)
            return False
        return True

    async def run(self, hello: Connecting) -> tuple[int, str]:
        """Join with ``hello`` and apply the server's frames until the socket closes.

        Returns the close code and reason. Call after :meth:`open` returned ``True``.
        """
        socket = self.socket
        assert socket is not None, "open() first"
        try:
            await socket.send(encode(hello))
            await self._receive(socket)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            socket.transport.abort()  # the client's task was cancelled: leave no socket behind
            self.socket = None
            self._outbox.closed()
            raise
        self.socket = None
        self._outbox.closed()
        return _close_code(socket), socket.close_reason or ""

    async def _receive(self, socket: ClientConnection) -> None:
        """Apply the server's frames until the socket closes.

        A server that sends no ``connected`` within the join timeout is closed:
        the attempt failed, and the next one goes to the next URL.
        """
        join_timeout = self.options.join_timeout
        try:
            async with asyncio.timeout(join_timeout) as joining:
                async for data in socket:
                    self._record(RawEvent("message", data=data))
                    if await self._on_frame(data):
                        joining.reschedule(None)
                        await self.send_due()  # what is pending, from the oldest
        except TimeoutError:
            detail = f"no connected within {join_timeout:g} s"
            logger.warning("%s: %s; closing", self.url, detail)
            self._record(RawEvent("error", detail=detail))
            await socket.close(CloseCode.NORMAL_CLOSURE, "join timeout")

    async def send_due(self) -> None:
        """Send what the outbox says is due, oldest first, one sender at a time."""
        async with self._send_lock:  # two senders could interleave their frames
            for pending in self._outbox.due(asyncio.get_running_loop().time()):
                socket = self.socket
                if socket is None:
                    return  # the outbox sends it again after the next connected
                frame = encode(WriteMessage(pending.message, pending.client_message_id))
                with contextlib.suppress(ConnectionClosed):
                    await socket.send(frame)

    async def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (``code=None``: one without a code) and wait for the close."""
        socket = self.socket
        if socket is not None:
            await socket.close(code, reason)  # type: ignore[arg-type]  # None: no code
            self.socket = None

    def abort(self) -> None:
        """Drop the connection at once, without a close frame."""
        if self.socket is not None:
            self.socket.transport.abort()
            self.socket = None


#: websockets' client logger, credentials masked in its handshake lines.
_HANDSHAKE_LOGGER = MaskingLogger(logging.getLogger("websockets.client"))


def _refused_for_good(error: BaseException) -> bool:
    """Whether a failed handshake would fail the same way again (so: no retry).

    A 4xx answer (403 foreign origin, 404 wrong path), a bad URL or a certificate
    that does not verify are final; a 5xx answer (503 while the server shuts
    down), 429, or a network error is worth another try.
    """
    if isinstance(error, InvalidStatus):
        status = error.response.status_code
        return 400 <= status < 500 and status != 429
    return isinstance(error, (InvalidURI, ssl_module.SSLError))


def _close_code(socket: ClientConnection) -> int:
    """The close code a connection ended with, as the client reports it.

    A frame over ``max_size`` makes the client close with 1009; that close is
    reported as 1009 (final) even when the server never answered the close frame.
    """
    sent = socket.protocol.close_sent
    if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
        return CloseCode.MESSAGE_TOO_BIG
    return socket.close_code if socket.close_code is not None else CloseCode.ABNORMAL_CLOSURE


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, InvalidStatus):
        return f"handshake refused: HTTP {error.response.status_code}"
    return f"{type(error).__name__}: {error}"

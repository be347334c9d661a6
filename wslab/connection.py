"""ChatConnection: one peer's server-side connection, with its unread output capped.

Server thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.protocol import State
from websockets.server import ServerProtocol

from .admission import peer_address
from .protocol import CloseCode

if TYPE_CHECKING:
    from .admission import Admission

__all__ = ["ChatConnection"]

logger = logging.getLogger("wslab.server")


class ChatConnection(ServerConnection):
    """One peer's connection, whose unread output is capped and whose waits are bounded.

    The server writes with ``broadcast``, which never waits for a receiver: what a
    peer does not read piles up in its transport's write buffer. Every write goes
    through :meth:`send_data` (broadcasts, ``connected``, pongs to the peer's pings,
    close frames), so that is where the cap is checked: a peer that still has more
    than ``max_buffer`` bytes unread when more is to be written is closed with 1013
    instead. What it had unread is dropped with the connection, and it can come
    back and recover the messages it missed with ``lastMessageId``.

    The cap is checked before a write, not after: one frame larger than the cap (a
    ``connected`` with a long history) still goes to a peer that reads.

    Waits on the peer are bounded, so a peer that reads nothing cannot hold a task
    or a socket forever: waiting for its buffer to drain (websockets does before a
    keepalive ping or a close frame) gives up after ``ping_timeout`` (``close_timeout``
    once closing), and every close started here aborts the TCP connection if it has
    not ended ``close_timeout`` seconds later.

    Args (besides websockets' own):
        admission: told when the TCP connection is made and lost (it counts them).
        max_buffer: bytes the peer may leave unread.
        on_slow_peer: called each time a peer is dropped for being over ``max_buffer``.

    Server thread only.
    """

    def __init__(
        self,
        protocol: ServerProtocol,
        server: Server,
        *,
        admission: Admission,
        max_buffer: int,
        on_slow_peer: Callable[[], None],
        **options: Any,
    ) -> None:
        super().__init__(protocol, server, **options)
        self.admission = admission
        self.max_buffer = max_buffer
        self._on_slow_peer = on_slow_peer
        self.address = ""  # the peer's IP address, known once the TCP connection is made
        self.admitted = True  # False: the server was full when this connection came
        self._abort_timer: asyncio.TimerHandle | None = None
        self._dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.address = peer_address(transport.get_extra_info("peername"))
        self.admission.connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.admission.connection_lost(self)

    def send_data(self) -> None:
        """Write what the protocol has to send, unless the peer already has too much unread."""
        if self.transport.get_write_buffer_size() > self.max_buffer:
            self._drop_slow_peer()
        else:
            super().send_data()

    def _drop_slow_peer(self) -> None:
        if self._dropped:
            self.protocol.data_to_send()  # already closing: write nothing more
            return
        self._dropped = True
        self._on_slow_peer()
        unread = self.transport.get_write_buffer_size()
        logger.info("%s: %d bytes unread; closing it with 1013", self.address, unread)
        self.protocol.data_to_send()  # the frames it was about to get: dropped
        # fail() sends the close frame, half-closes TCP, and ignores whatever the peer
        # sends from now on (its pings get no more pongs).
        cap = self.max_buffer
        size = f"{cap // 1024} KiB" if cap >= 1024 else f"{cap} bytes"
        self.protocol.fail(CloseCode.TRY_AGAIN_LATER, f"too slow: over {size} unread")
        super().send_data()
        self._abort_later()

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Start the closing handshake without waiting for it; abort if it lingers."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.send_data()
        self._abort_later()

    def _abort_later(self) -> None:
        if self._abort_timer is None:
            timeout = self.close_timeout if self.close_timeout is not None else 0.0
            self._abort_timer = self.loop.call_later(timeout, self.transport.abort)

    async def drain(self) -> None:
        """Wait for the peer to read its buffer down, but not forever.

        websockets waits here after writing a keepalive ping or a close frame while
        the buffer is above its high-water mark; a peer that never reads would hold
        that wait (and stop the keepalive) for good. On timeout websockets aborts the
        connection and reports it closed.
        """
        timeout = self.ping_timeout
        if timeout is None or self.protocol.close_expected():
            timeout = self.close_timeout
        async with asyncio.timeout(timeout):
            await super().drain()

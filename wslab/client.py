"""ChatClient: a reconnecting chat client for notebooks and scripts.

The client runs as one asyncio task on the loop of whoever calls
:meth:`ChatClient.connect`: in a notebook that is the kernel's own loop, so its
handlers and state changes happen there, between cells, never on another
thread. Plain blocking code uses :class:`BlockingChatClient`, which runs the
same client on a loop thread of its own.

One connection, as the browser sees it (the raw event log)::

    open -> message* -> [error] -> close(code, reason)
    then, if the close was not ours and the code is retried: wait, connect again

Whether and when to reconnect is decided by a pure
:class:`~wslab.retry.Reconnector` (:attr:`ChatClient.reconnector`); the client
only opens sockets and sleeps as it answers.

The client in parts: :class:`ChatClient` here holds the public API, the reconnect
loop and the raw event log; each connection is a
:class:`~wslab.clientsocket.ClientSocket` (handshake, join timeout, receive loop,
the outbox's frames, close); what each server event does (state, acknowledgements,
handlers, :meth:`~ChatClient.wait_for`) is :class:`~wslab.clientevents.ClientEvents`,
over the pure rules of :class:`~wslab.chatstate.ChatState`.

Given several URLs (servers that share one chat), the client fails over: each
retry goes to the next URL in turn, after the same backoff wait. A handshake
refused for good (a 4xx answer, a certificate that does not verify) only moves it
on; it gives up when every URL refused it in a row. A close with 1008 or 1009
stays final: it is about what this client sent, which no other server would take.

On every reconnect the client sends its id, token, ``roomId`` and
``lastMessageId``, takes the messages it missed from ``connected``, and resends
every message the server has not acknowledged, in typing order (once: the server
de-duplicates by ``clientMessageId``). Its :class:`~wslab.outbox.Outbox` decides
what goes out when, so that a newer message never overtakes an older one.

What a server can do to the client is bounded (docs/protocol.md, "Client
promises"): a frame over ``max_size`` closes the connection with 1009 (final, as
every 1009); a server that does not answer ``connecting`` within ``join_timeout``
is closed and the attempt counts as failed (the next URL is tried); a frame that
breaks the protocol is logged, kept in :attr:`ChatClient.protocol_errors` and
otherwise ignored. The client lists its own user while it is connected, whatever
presence events say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection

from .chatstate import PresenceEvent
from .clientevents import ClientEvents, Status
from .clientsocket import ClientSocket, SocketOptions
from .clock import Clock, SystemClock
from .errors import ChatConnectionError, ServerProtocolError
from .loopthread import LoopThread
from .outbox import Outbox, PendingMessage
from .protocol import (
    CloseCode,
    Connected,
    Connecting,
    MessageEntry,
    parse_server_event,
)
from .rawlog import RawEvent, append_bounded, log_bytes
from .retry import Reconnector, RetryPolicy

__all__ = [
    "BlockingChatClient",
    "ChatClient",
    "PendingMessage",
    "PresenceEvent",
    "RawEvent",
    "Status",
]

logger = logging.getLogger("wslab.client")

#: The largest frame a client takes by default: 4 MiB. A server with default limits
#: never sends more. Its largest frame is a ``connected`` with a full history: 100
#: entries of at most about 12.7 KB each (2,000 characters of up to 6 bytes, as a
#: control character is escaped ``\u00XX``, plus the other fields at their limits),
#: 1.3 MB in all, and a user list of about 220 bytes per user at most, which 4 MiB holds
#: for over 12,000 users. A server with a larger ``history`` needs a larger ``max_size``.
DEFAULT_MAX_SIZE = 4 * 2**20
#: How long a client waits for ``connected`` after its socket opened, by default.
DEFAULT_JOIN_TIMEOUT = 5.0
#: How many bytes of frames the raw event log keeps at most, by default: beyond them
#: the oldest events go first, so a server's large frames cannot pile up there.
DEFAULT_LOG_BYTES = 32 * 2**20

T = TypeVar("T")


class ChatClient(ClientEvents):
    """A chat client that reconnects by itself. See the module docstring.

    What it knows of the chat (:attr:`users`, :attr:`messages`, :attr:`presence`,
    ...) follows the rules of :class:`~wslab.chatstate.ChatState`; what it does
    with each server event (its handlers, :meth:`wait_for`) is
    :class:`~wslab.clientevents.ClientEvents`; each connection is a
    :class:`~wslab.clientsocket.ClientSocket`.

    Args:
        url: the server's socket URL (``ws://.../chat`` or ``wss://...``), or a
            sequence of URLs of servers that share one chat: the first attempt
            goes to the first, each retry to the next in turn (see the module
            docstring).
        username: the name to join with (the server may keep an earlier bound one).
        id: the user id; a random one if omitted. Keep it, with :attr:`token`, to
            come back as the same user.
        token: the identity token from an earlier ``connected``.
        policy: when and how long to wait before reconnecting.
        reconnect: ``False`` to never reconnect by itself.
        rng: random source for the backoff's jitter (seed it in tests).
        clock: where the uptime guard reads time.
        ssl: a client :class:`ssl.SSLContext` for ``wss://`` with a private CA.
        origin: an ``Origin`` header to send (browsers always send one).
        additional_headers: more handshake headers, sent on every attempt (say
            ``{"Authorization": "token ..."}`` for a chat behind JupyterHub); never
            logged, never in a ``repr``.
        compression: ``"deflate"`` to offer permessage-deflate (off by default, as on
            the server: it costs more CPU than it saves on short chat messages).
        max_log: how many raw events :attr:`events` keeps (and :attr:`presence`
            and :attr:`protocol_errors`); :attr:`max_log_bytes` bounds the bytes of
            the frames it keeps too.
        max_size: the largest frame accepted from a server, in bytes (after
            decompression); a larger one closes the connection with 1009, which is
            final. ``None``: no limit. See :data:`DEFAULT_MAX_SIZE`.
        join_timeout: seconds to wait for ``connected`` once the socket is open; a
            server that does not answer in time is closed, and the attempt counts as
            failed (the next URL is tried after the usual wait).
        window: how many messages may be unacknowledged on one connection. The
            default 1 keeps the typing order whatever the server's rate limit drops;
            see :class:`~wslab.outbox.Outbox` for what a larger one trades.
        features: what ``connecting`` announces. ``("presence",)`` asks for batched
            ``presence`` events (one per server tick at most) instead of one
            ``joined``/``disconnected`` per user: use it for large rooms. The default
            ``()`` keeps the per-user events, which the lessons read in the raw log.
            :attr:`users`, ``on_joined`` and ``on_disconnected`` (once per user)
            behave the same either way.

    All methods and handlers run on the loop that called :meth:`connect`; call
    them from that loop's thread only.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        username: str,
        *,
        id: str | None = None,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        reconnect: bool = True,
        rng: Callable[[], float] = random.random,
        clock: Clock | None = None,
        ssl: ssl_module.SSLContext | None = None,
        origin: str | None = None,
        additional_headers: Mapping[str, str] | None = None,
        compression: str | None = None,
        max_log: int = 1000,
        features: Sequence[str] = (),
        max_size: int | None = DEFAULT_MAX_SIZE,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT,
        window: int = 1,
    ) -> None:
        if not join_timeout > 0:
            raise ValueError("join_timeout must be > 0")
        #: Every URL the client may connect to, in the order it tries them.
        self.urls: tuple[str, ...] = _as_urls(url)
        self._url_index = 0
        #: Handshakes refused for good in a row, on any URL.
        self._refusals = 0
        self.policy = policy or RetryPolicy()
        outbox = Outbox(window, pause=self.policy.rate_limit_pause)
        super().__init__(id or "u-" + secrets.token_hex(6), username, token, max_log, outbox)
        self.reconnect = reconnect
        self.ssl = ssl
        self.origin = origin
        self.compression = compression
        self.features = tuple(features)
        self.max_size = max_size
        self.join_timeout = join_timeout
        self._headers = dict(additional_headers or {})  # a credential, maybe: kept private
        self._rng = rng
        self._clock = clock or SystemClock()

        self.events: deque[RawEvent] = deque(maxlen=max_log)
        #: The most bytes of frames :attr:`events` keeps (the oldest events go first).
        self.max_log_bytes = DEFAULT_LOG_BYTES
        self._logged: tuple[deque[RawEvent], int] = (self.events, 0)  # the log, its bytes
        #: The reconnect decisions (pure): this client only does what it answers.
        self.reconnector = Reconnector(self.policy, rng)

        #: The socket of the current connection, or of the last one.
        self._connection: ClientSocket | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """The URL of the current connection, or of the next attempt.

        Assigning one URL replaces :attr:`urls` with it.
        """
        return self.urls[self._url_index]

    @url.setter
    def url(self, url: str) -> None:
        self.urls, self._url_index = _as_urls(url), 0

    @property
    def pending(self) -> list[PendingMessage]:
        """Messages typed and not yet acknowledged by the server, oldest first."""
        return self.outbox.pending

    @property
    def rate_limit_pause(self) -> float:
        """Seconds to wait after a ``rate_limited`` error before resending, oldest first."""
        return self.outbox.pause

    @rate_limit_pause.setter
    def rate_limit_pause(self, seconds: float) -> None:
        self.outbox.pause = seconds

    @property
    def _socket(self) -> ClientConnection | None:
        """The open websockets connection, or ``None``: for tests that need the socket."""
        return None if self._connection is None else self._connection.socket

    @property
    def attempts(self) -> int:
        """Connection attempts so far, for lessons and tests."""
        return self.reconnector.attempts

    def take_identity(self, id: str, token: str | None) -> bool:
        """Come back as an earlier client's user: use its ``id`` and ``token``.

        Only a client that has not started and holds no token of its own takes
        it (returns ``True``); otherwise nothing changes (``False``). A re-run
        notebook cell hands its predecessor's identity over this way.
        """
        if self.status != "idle" or self.token is not None:
            return False
        self.id, self.token = id, token
        return True

    async def connect(self, timeout: float | None = 10.0) -> ChatClient:
        """Start the client and wait until it is online (received ``connected``).

        Raises:
            ChatConnectionError: the client went offline for good before joining
                (refused handshake, 1008, 1009, ...).
            TimeoutError: not online within ``timeout`` seconds (it keeps trying).
        """
        self.start()
        await self.wait_for(lambda c: c.online or c.status == "offline", timeout)
        if not self.online:
            errors = [e.detail for e in self.events if e.type == "error"]
            detail = f"; last error: {errors[-1]}" if errors else ""
            raise ChatConnectionError(f"could not join: {self.describe_last_close()}{detail}")
        return self

    def start(self) -> None:
        """Start connecting in the background and return at once (no waiting)."""
        if self._task is None or self._task.done():
            self._closing = False
            self._wake = asyncio.Event()
            # Not "offline" from here on, even before the task runs: a client started
            # again after it gave up is connecting, not still offline.
            self.status = "connecting"
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def send_message(self, text: str) -> str:
        """Send a chat message, or queue it while offline; return its ``clientMessageId``.

        The message stays in :attr:`pending` until the server acknowledges it; it
        goes out after every older one (see :class:`~wslab.outbox.Outbox`).
        """
        pending = self.outbox.add(text)
        self._changed()
        await self._send_due()
        return pending.client_message_id

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame as it is (text or binary): for lessons on bad input.

        Raises:
            ChatConnectionError: the client has no open connection.
        """
        socket = self._socket
        if socket is None:
            raise ChatConnectionError("not connected")
        await socket.send(data)

    async def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with ``code`` and stop reconnecting. Safe to repeat.

        ``code=None`` sends a close frame without a code, as a browser's
        ``ws.close()`` does: both sides then read 1005 (no status received).
        """
        if code is None and reason:
            raise ValueError("a close reason needs a code")
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._pause_task is not None:
            self._pause_task.cancel()
        if self._connection is not None:
            await self._connection.close(code, reason)
        task = self._task
        if task is not None and not task.done():
            await task
        if self.status != "offline":
            self.status = "offline"
            self._changed()

    def __repr__(self) -> str:
        return f"<ChatClient {self.username!r} id={self.id} {self.status}>"

    # ------------------------------------------------------------------ the task

    async def _run(self) -> None:
        self._refusals = 0
        while not self._closing:
            try:
                code, refused = await self._connect_once()
            except Exception as error:  # a bug or a bad option: report it, do not spin
                logger.exception("ChatClient stopped by an unexpected error")
                self._record(RawEvent("error", detail=f"{type(error).__name__}: {error}"))
                if self._connection is not None:
                    self._connection.abort()
                break
            # A refusal is final only once every URL refused in a row; before that it
            # moves on to the next URL, after the usual wait.
            self._refusals = self._refusals + 1 if refused else 0
            delay = self.reconnector.after_close(
                code,
                closed_by_us=self._closing,
                now=self._clock.monotonic(),
                refused=self._refusals >= len(self.urls),
            )
            if delay is None or self._closing or not self.reconnect:
                break
            self._url_index = (self._url_index + 1) % len(self.urls)
            self.status, self.next_retry_in = "reconnecting", delay
            self._changed()
            await self._sleep(delay)
        self.status, self.next_retry_in = "offline", None
        self._changed()

    async def _connect_once(self) -> tuple[int, bool]:
        """One connection from handshake to close, on a new :class:`ClientSocket`.

        Returns its close code and whether the handshake was refused for good.
        """
        self.status = "connecting"
        self.reconnector.begin_attempt()
        self._changed()
        options = SocketOptions(
            self.join_timeout, self.max_size, self.ssl, self.origin, self.compression, self._headers
        )
        connection = ClientSocket(self.url, options, self.outbox, self._record, self._on_frame)
        self._connection = connection
        if not await connection.open():
            # As in a browser: a failed handshake fires error, then close 1006.
            self._closed(CloseCode.ABNORMAL_CLOSURE, "", was_clean=False)
            return CloseCode.ABNORMAL_CLOSURE, connection.refused
        if self._closing:  # close() was called during the handshake
            await connection.close()
            self._closed(CloseCode.NORMAL_CLOSURE, "", was_clean=True)
            return CloseCode.NORMAL_CLOSURE, False
        self.reconnector.after_open()
        self._record(RawEvent("open"))
        code, reason = await connection.run(self._hello())
        self._closed(code, reason, was_clean=code != CloseCode.ABNORMAL_CLOSURE)
        return code, False

    def _hello(self) -> Connecting:
        return Connecting(
            self.id,
            self.username,
            self.token,
            last_message_id=self.last_message_id,
            room_id=self.room_id,
            features=self.features,
        )

    async def _on_frame(self, data: str | bytes) -> bool:
        """Apply one server frame; return True if it was ``connected``.

        A frame that breaks the protocol is kept in :attr:`protocol_errors` and
        otherwise ignored: a server's bytes never stop the client.
        """
        try:
            event = parse_server_event(data)
        except ServerProtocolError as error:
            logger.warning("%s sent a frame that breaks the protocol: %s", self.url, error)
            self.protocol_errors.append(error)
            self._changed()
            return False
        try:
            connected = await self._handle(event)
        except Exception:  # a bug of ours: the next frame may be fine
            logger.exception("ChatClient could not apply %s; it goes on", type(event).__name__)
            connected = isinstance(event, Connected)
        if connected:
            self.reconnector.after_connected(self._clock.monotonic())
        return connected

    def _closed(self, code: int, reason: str, *, was_clean: bool) -> None:
        self._record(RawEvent("close", code=code, reason=reason, was_clean=was_clean))
        self.last_close = (code, reason)
        self._call(self.on_close, code, reason)
        self._changed()

    async def _send_due(self) -> None:
        """Send what the outbox says is due on the current socket, oldest first."""
        if self._connection is not None:
            await self._connection.send_due()

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _record(self, event: RawEvent) -> None:
        """Log one raw event, within :attr:`max_log_bytes`."""
        events, held = self._logged
        if events is not self.events:  # a caller gave the client a new log
            events, held = self.events, log_bytes(self.events)
        self._logged = (events, append_bounded(events, held, event, self.max_log_bytes))


def _as_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """One URL or several, as a non-empty tuple of strings."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if not urls:
        raise ValueError("ChatClient needs at least one URL")
    for each in urls:
        if not isinstance(each, str):
            raise TypeError(f"a URL must be a str, not {type(each).__name__}")
    return urls


class BlockingChatClient:
    """A :class:`ChatClient` for plain blocking code, on a loop thread of its own.

    It takes the same arguments: one URL or several (fail-over, see
    :class:`ChatClient`). Every method blocks the caller until done. Handlers set
    on :attr:`client` run on the client's thread, not the caller's. Call from any
    thread but that one.
    """

    def __init__(self, url: str | Sequence[str], username: str, **options: Any) -> None:
        self._thread = LoopThread("wslab-client")
        self._thread.start()
        self.client = self._run(_make_client(url, username, options))

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._thread.call(coroutine, timeout)

    def connect(self, timeout: float | None = 10.0) -> BlockingChatClient:
        """Connect and wait until online (see :meth:`ChatClient.connect`)."""
        self._run(self.client.connect(timeout))
        return self

    def send_message(self, text: str) -> str:
        """Send or queue a message; return its ``clientMessageId``."""
        return self._run(self.client.send_message(text))

    def wait_for(self, predicate: Callable[[ChatClient], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(client)`` is true (see :meth:`ChatClient.wait_for`)."""
        self._run(self.client.wait_for(predicate, timeout))

    def wait_for_message(self, text: str, timeout: float = 10.0) -> MessageEntry:
        """Wait until a message with this text arrived; return it."""
        return self._run(self.client.wait_for_message(text, timeout))

    def close(self) -> None:
        """Close the client with 1000 and stop its thread. Safe to repeat."""
        if not self._thread.running:
            return
        self._run(self.client.close())
        self._thread.stop()

    def __enter__(self) -> BlockingChatClient:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Read-only views (status, users, messages, events, ...) come from the client.
        return getattr(self.client, name)


async def _make_client(
    url: str | Sequence[str], username: str, options: dict[str, Any]
) -> ChatClient:
    return ChatClient(url, username, **options)

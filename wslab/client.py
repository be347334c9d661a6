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

Given several URLs (servers that share one chat), the client fails over: each
retry goes to the next URL in turn, after the same backoff wait. A handshake
refused for good (a 4xx answer, a certificate that does not verify) only moves it
on; it gives up when every URL refused it in a row. A close with 1008 or 1009
stays final: it is about what this client sent, which no other server would take.

On every reconnect the client sends its id, token, ``roomId`` and
``lastMessageId``, takes the messages it missed from ``connected``, and resends
every message the server has not acknowledged (once: the server de-duplicates
by ``clientMessageId``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl as ssl_module
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from .clock import Clock, SystemClock
from .errors import ChatConnectionError
from .loopthread import LoopThread
from .protocol import (
    CloseCode,
    Connected,
    Connecting,
    Disconnected,
    ErrorCode,
    ErrorEvent,
    Joined,
    MessageEntry,
    MessageWritten,
    Presence,
    ProtocolError,
    WriteMessage,
    describe_close,
    encode,
    parse_server_event,
)
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

T = TypeVar("T")
Status = Literal["idle", "connecting", "online", "reconnecting", "offline"]


@dataclass(frozen=True)
class RawEvent:
    """One event as a browser's ``WebSocket`` object would fire it.

    ``type`` is ``open``, ``message``, ``error`` or ``close``; ``data`` is the
    frame of a ``message`` (``str`` for text, ``bytes`` for binary); ``code``,
    ``reason`` and ``was_clean`` describe a ``close``; ``detail`` an ``error``
    (a browser gives none). As in Chromium, ``error`` fires only when the
    connection fails (a refused handshake, nothing listening, a certificate
    that does not verify), then ``close`` 1006; a close frame from the server,
    whatever its code, fires ``close`` alone. The chat protocol's ``error``
    events are ordinary ``message`` events (see ``ChatClient.errors``).
    """

    type: Literal["open", "message", "error", "close"]
    data: str | bytes | None = None
    code: int | None = None
    reason: str = ""
    was_clean: bool | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.type == "message":
            return f"message {self.data!r}"
        if self.type == "close":
            return f"close code={self.code} reason={self.reason!r} wasClean={self.was_clean}"
        if self.type == "error":
            return f"error {self.detail}"
        return "open"


@dataclass(frozen=True)
class PresenceEvent:
    """A user joined or left (``kind`` is ``joined`` or ``disconnected``), for display.

    ``after`` is the ``messageId`` of the newest message the client had when it
    came (``None``: none yet), so a view can place the line among the messages.
    """

    kind: Literal["joined", "disconnected"]
    id: str
    username: str
    after: int | None


@dataclass(frozen=True)
class PendingMessage:
    """A message sent (or queued) and not yet acknowledged by the server."""

    client_message_id: str
    message: str


class ChatClient:
    """A chat client that reconnects by itself. See the module docstring.

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
        compression: ``"deflate"`` to offer permessage-deflate (off by default, as on
            the server: it costs more CPU than it saves on short chat messages).
        max_log: how many raw events :attr:`events` keeps.
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
        compression: str | None = None,
        max_log: int = 1000,
        features: Sequence[str] = (),
    ) -> None:
        #: Every URL the client may connect to, in the order it tries them.
        self.urls: tuple[str, ...] = _as_urls(url)
        self._url_index = 0
        #: Handshakes refused for good in a row, on any URL.
        self._refusals = 0
        self.username = username
        self.id = id or "u-" + secrets.token_hex(6)
        self.token = token
        self.policy = policy or RetryPolicy()
        self.reconnect = reconnect
        self.ssl = ssl
        self.origin = origin
        self.compression = compression
        self.features = tuple(features)
        self._rng = rng
        self._clock = clock or SystemClock()

        self.status: Status = "idle"
        self.users: dict[str, str] = {}  # id -> username, in the server's order
        self.messages: list[MessageEntry] = []  # by messageId, each once
        self.pending: list[PendingMessage] = []  # unacknowledged, in send order
        self.errors: list[ErrorEvent] = []  # error events the server sent
        self.events: deque[RawEvent] = deque(maxlen=max_log)
        self.room_id: str | None = None
        self.was_page_reload = False
        #: The last ``connected`` said that some missed messages are gone.
        self.truncated = False
        #: Joins and leaves seen, newest last (bounded like :attr:`events`).
        self.presence: deque[PresenceEvent] = deque(maxlen=max_log)
        self.last_close: tuple[int, str] | None = None
        self.next_retry_in: float | None = None
        #: The reconnect decisions (pure): this client only does what it answers.
        self.reconnector = Reconnector(self.policy, rng)

        # Handlers: set any of these to a callable; they run on the client's loop.
        self.on_connected: Callable[[Connected], Any] | None = None
        self.on_joined: Callable[[Joined], Any] | None = None
        self.on_disconnected: Callable[[Disconnected], Any] | None = None
        self.on_message: Callable[[MessageEntry], Any] | None = None
        self.on_close: Callable[[int, str], Any] | None = None
        self.on_error: Callable[[ErrorEvent], Any] | None = None
        self.on_change: Callable[[ChatClient], Any] | None = None  # any state change

        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._waiters: list[tuple[Callable[[ChatClient], bool], asyncio.Future[None]]] = []
        self._message_ids: set[int] = set()
        self._resend_task: asyncio.Task[None] | None = None
        self._resend_wanted = False
        #: Seconds to wait after a ``rate_limited`` error before resending what is pending.
        self.rate_limit_pause = self.policy.rate_limit_pause

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
    def online(self) -> bool:
        """Whether the client is connected and has received ``connected``."""
        return self.status == "online"

    @property
    def attempts(self) -> int:
        """Connection attempts so far, for lessons and tests."""
        return self.reconnector.attempts

    @property
    def last_message_id(self) -> int | None:
        """The newest ``messageId`` seen, sent as ``lastMessageId`` on reconnect."""
        return self.messages[-1]["messageId"] if self.messages else None

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

        The message stays in :attr:`pending` until the server acknowledges it.
        """
        pending = PendingMessage("m-" + secrets.token_hex(8), text)
        self.pending.append(pending)
        self._changed()
        if self.online:
            await self._send_pending(pending)
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
        if self._resend_task is not None:
            self._resend_task.cancel()
        socket = self._socket
        if socket is not None:
            await socket.close(code, reason)  # type: ignore[arg-type]  # None: no code
        task = self._task
        if task is not None and not task.done():
            await task
        if self.status != "offline":
            self.status = "offline"
            self._changed()

    async def wait_for(
        self, predicate: Callable[[ChatClient], bool], timeout: float | None = 10.0
    ) -> None:
        """Wait until ``predicate(client)`` is true; it is checked after every change.

        Raises:
            TimeoutError: still false after ``timeout`` seconds.
        """
        if predicate(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_for_message(self, text: str, timeout: float | None = 10.0) -> MessageEntry:
        """Wait until a message with this exact text is in :attr:`messages`; return it."""
        await self.wait_for(lambda c: any(m["message"] == text for m in c.messages), timeout)
        return next(m for m in self.messages if m["message"] == text)

    def describe_last_close(self) -> str:
        """The last close code with its meaning, for a person."""
        if self.last_close is None:
            return "never closed"
        code, reason = self.last_close
        return describe_close(code) + (f" reason={reason!r}" if reason else "")

    def texts(self) -> list[str]:
        """The text of every message in order: handy in lessons and tests."""
        return [m["message"] for m in self.messages]

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
                if self._socket is not None:
                    self._socket.transport.abort()
                    self._socket = None
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
        """One connection from handshake to close.

        Returns its close code and whether the handshake was refused for good.
        """
        self.status = "connecting"
        self.reconnector.begin_attempt()
        self._changed()
        try:
            options: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
            socket = await connect(
                self.url,
                origin=self.origin,  # type: ignore[arg-type]
                max_size=16 * 2**20,
                compression=self.compression,
                open_timeout=10,
                close_timeout=2,
                **options,
            )
        except (OSError, TimeoutError, WebSocketException) as error:
            # As in a browser: a failed handshake fires error, then close 1006.
            self._record(RawEvent("error", detail=_describe_failure(error)))
            self._closed(CloseCode.ABNORMAL_CLOSURE, "", was_clean=False)
            # A refused handshake (403, 404, a bad certificate) would fail again.
            return CloseCode.ABNORMAL_CLOSURE, _refused_for_good(error)
        if self._closing:  # close() was called during the handshake
            await socket.close()
            self._closed(CloseCode.NORMAL_CLOSURE, "", was_clean=True)
            return CloseCode.NORMAL_CLOSURE, False
        self._socket = socket
        self.reconnector.after_open()
        self._record(RawEvent("open"))
        try:
            hello = Connecting(
                self.id,
                self.username,
                self.token,
                last_message_id=self.last_message_id,
                room_id=self.room_id,
                features=self.features,
            )
            await socket.send(encode(hello))
            async for data in socket:
                self._record(RawEvent("message", data=data))
                if await self._handle(data):
                    self.reconnector.after_connected(self._clock.monotonic())
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            socket.transport.abort()  # our task was cancelled: leave no socket behind
            self._socket = None
            raise
        self._socket = None
        # As in a browser: a close frame from the server (1008 and 1009 included) fires
        # close alone, never error; only a connection lost without one reads 1006.
        code = socket.close_code if socket.close_code is not None else 1006
        self._closed(code, socket.close_reason or "", was_clean=code != 1006)
        return code, False

    def _apply_presence(self, event: Presence) -> None:
        # Left first, then joined (an id in both was taken over within the tick).
        # Entries the user list already agrees with change nothing: no handler, no line.
        after = self.last_message_id
        for user in event.left:
            if self.users.pop(user["id"], None) is not None:
                self.presence.append(
                    PresenceEvent("disconnected", user["id"], user["username"], after)
                )
                self._call(self.on_disconnected, Disconnected(user["id"], user["username"]))
        for user in event.joined:
            if self.users.get(user["id"]) != user["username"]:
                self.users[user["id"]] = user["username"]
                self.presence.append(PresenceEvent("joined", user["id"], user["username"], after))
                self._call(self.on_joined, Joined(user["id"], user["username"]))

    def _closed(self, code: int, reason: str, *, was_clean: bool) -> None:
        self._record(RawEvent("close", code=code, reason=reason, was_clean=was_clean))
        self.last_close = (code, reason)
        self._call(self.on_close, code, reason)
        self._changed()

    async def _handle(self, data: str | bytes) -> bool:
        """Apply one server frame; return True if it was ``connected``."""
        try:
            event = parse_server_event(data)
        except ProtocolError:
            return False  # the raw log has it; nothing for the chat state
        if isinstance(event, Connected):
            self._on_connected(event)
            self._call(self.on_connected, event)
            for pending in list(self.pending):
                await self._send_pending(pending)
            return True
        if isinstance(event, MessageWritten):
            self._add_message(event.message)
        elif isinstance(event, Joined):
            self.users[event.id] = event.username
            self.presence.append(
                PresenceEvent("joined", event.id, event.username, self.last_message_id)
            )
            self._call(self.on_joined, event)
        elif isinstance(event, Disconnected):
            self.users.pop(event.id, None)
            self.presence.append(
                PresenceEvent("disconnected", event.id, event.username, self.last_message_id)
            )
            self._call(self.on_disconnected, event)
        elif isinstance(event, Presence):
            self._apply_presence(event)
        elif isinstance(event, ErrorEvent):
            self.errors.append(event)
            if event.code is ErrorCode.RATE_LIMITED:
                self._resend_later()
            self._call(self.on_error, event)
        self._changed()
        return False

    def _on_connected(self, event: Connected) -> None:
        self.id, self.username, self.token = event.id, event.username, event.token
        if self.room_id is not None and event.room_id != self.room_id:
            # A different room (a restarted server without a store): its messageIds
            # start again, so the old list cannot be merged into the new one.
            self.messages.clear()
            self._message_ids.clear()
            self.presence.clear()
        self.room_id = event.room_id
        self.was_page_reload = event.was_page_reload
        self.truncated = event.truncated
        self.users = {u["id"]: u["username"] for u in event.connected_user_list}
        for entry in event.messages_list:
            self._add_message(entry, notify=False)
        self.status, self.next_retry_in = "online", None
        self._changed()

    def _add_message(self, entry: MessageEntry, *, notify: bool = True) -> None:
        if entry["id"] == self.id and "clientMessageId" in entry:
            cmid = entry["clientMessageId"]
            self.pending = [p for p in self.pending if p.client_message_id != cmid]
        if entry["messageId"] in self._message_ids:
            return
        self._message_ids.add(entry["messageId"])
        if self.messages and entry["messageId"] < self.messages[-1]["messageId"]:
            self.messages.append(entry)
            self.messages.sort(key=lambda m: m["messageId"])
        else:
            self.messages.append(entry)
        if notify:
            self._call(self.on_message, entry)

    async def _send_pending(self, pending: PendingMessage) -> None:
        socket = self._socket
        if socket is None:
            return  # sent again after the next connected
        with contextlib.suppress(ConnectionClosed):
            await socket.send(encode(WriteMessage(pending.message, pending.client_message_id)))

    def _resend_later(self) -> None:
        """Resend what is pending once the server's rate limit had time to refill.

        The server dropped some of our messages; they are still pending (no
        acknowledgement came), and resending the others is harmless.
        """
        self._resend_wanted = True  # a running resend goes round once more
        if self._resend_task is not None and not self._resend_task.done():
            return

        async def resend() -> None:
            while self._resend_wanted:
                self._resend_wanted = False
                await asyncio.sleep(self.rate_limit_pause)
                for pending in list(self.pending):
                    await self._send_pending(pending)

        self._resend_task = asyncio.get_running_loop().create_task(resend())

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _record(self, event: RawEvent) -> None:
        self.events.append(event)

    def _changed(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self):
                future.set_result(None)
        self._call(self.on_change, self)

    @staticmethod
    def _call(handler: Callable[..., Any] | None, *args: Any) -> None:
        """Run a user's handler; its bug is logged and must not stop the client."""
        if handler is None:
            return
        try:
            handler(*args)
        except Exception:
            logger.exception("a ChatClient handler raised; the client goes on")


def _as_urls(url: str | Sequence[str]) -> tuple[str, ...]:
    """One URL or several, as a non-empty tuple of strings."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if not urls:
        raise ValueError("ChatClient needs at least one URL")
    for each in urls:
        if not isinstance(each, str):
            raise TypeError(f"a URL must be a str, not {type(each).__name__}")
    return urls


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


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, InvalidStatus):
        return f"handshake refused: HTTP {error.response.status_code}"
    return f"{type(error).__name__}: {error}"


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

"""ChatServer: the chat room served over WebSockets from a background thread.

The server owns one thread with its own asyncio event loop
(:class:`~wslab.loopthread.LoopThread`). ``start()`` returns as soon as the socket
listens, so a notebook cell finishes at once and the kernel stays responsive; the
room (:class:`wslab.room.Room`) lives on that thread, and this module only moves
frames between sockets and the room.

Threads::

    caller thread (a notebook cell, a script)     server thread (its own loop)
    start() / stop() / drop() / users  ----->     websockets server, Room, timers
                              run_coroutine_threadsafe

The parts, each in its own module:

- :mod:`wslab.options`: the options (:class:`~wslab.options.Limits`,
  :class:`~wslab.options.Timeouts`, :class:`~wslab.options.RedisOptions`), each
  defined once with its default, help and bounds;
- :mod:`wslab.admission`: who may open a socket (``Origin``, ``max_per_address``,
  ``max_clients``: the one place that decides the server is full) and how long it
  has to send ``connecting`` (``join_timeout``, then 1008);
- :mod:`wslab.pages`: plain HTTP on the same port. ``GET /`` serves the browser
  chat page, ``/chat.js``, ``/chat.css``, ``/seed`` and ``/seed.js`` its files and
  the original design's page, and any other path gets a 404 (the method is not
  looked at). ``/chat`` is the WebSocket: a request there without a WebSocket
  upgrade gets 426, a foreign ``Origin`` 403, and an unavailable Redis 503;
- :mod:`wslab.listener`: the websockets server, routing each request through
  admission and the pages;
- :mod:`wslab.connection`: one peer's connection, its unread output capped
  (``max_buffer``: a peer over it is closed with 1013);
- :mod:`wslab.endpoint`: the socket's and the page's URLs;
  :mod:`wslab.loopthread`: the thread, its loop, starting and stopping;
- this module: the engine link, which feeds the room and applies what it answers.

Classroom mode (``hub=True``, ``python -m wslab serve --hub``): the chat is a
JupyterHub service. :class:`~wslab.classroom.service.HubDoor` serves the page and
the socket below the hub's service prefix and lets a handshake in only once the hub
said who it is; the room is a :class:`~wslab.moderation.ClassRoom` (hub names,
teachers, moderation, progress). One server, in memory: no ``redis``, no ``store``.

Several servers, one chat: given ``redis="redis://HOST:PORT/DB"``, the room's
engine is Redis (:class:`~wslab.engine.RedisEngine`) and :mod:`wslab.backplane`
shares presence, ids, messages and their order through Redis with every other
server on it. Otherwise the room's engine is in memory, over ``store`` if given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as ssl_module
import threading
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .admission import Admission, trust_same_origin
from .clock import Clock, SystemClock
from .connection import ChatConnection as _ChatConnection
from .endpoint import ServedAt
from .engine import RedisEngine
from .errors import ConfigurationError
from .listener import Listener
from .loopthread import LoopService
from .moderation import ClassRoom
from .options import Limits, RedisOptions, ServerOptions, Timeouts, resolve
from .protocol import CloseCode, MessageEntry, UserEntry, encode
from .room import HistoryStore, MessageFilter, Outcome, Room

if TYPE_CHECKING:
    from .backplane import BackplaneLink
    from .classroom.service import HubDoor

__all__ = ["ChatServer"]

logger = logging.getLogger("wslab.server")

T = TypeVar("T")

#: How every client is closed while the shared engine (Redis) is unreachable.
_OUTAGE_CLOSE = (CloseCode.TRY_AGAIN_LATER, "chat backplane unavailable; try again later")


class ChatServer(ServedAt, LoopService):
    """A chat server on a background thread. See the module docstring.

    Args:
        host: address to bind; loopback unless told otherwise.
        port: port to bind; 0 picks a free one (read it back from :attr:`port`).
        limits, timeouts: :class:`~wslab.options.Limits`, :class:`~wslab.options.Timeouts`.
        redis: a Redis URL (``redis://HOST:PORT/DB``) or
            :class:`~wslab.options.RedisOptions`: every server on it serves one chat
            (:mod:`wslab.backplane`), whose history and tokens Redis keeps (no
            ``store``, no ``seed_compatible``). :meth:`start` raises
            :class:`~wslab.errors.BackplaneError` if Redis cannot be reached.
        allowed_origins: browser origins allowed besides this machine's
            (:class:`~wslab.admission.Admission`).
        seed_compatible: the original design's behaviour (full history in every
            ``messageWritten``; ids trusted without tokens). Insecure; for lessons.
        ssl: a server-side :class:`ssl.SSLContext` to serve ``wss://``.
        clock: where the room reads time (message timestamps, grace, rates).
        compression: ``None`` (default) or ``"deflate"`` for permessage-deflate.
        message_filter: ``f(username, text) -> text`` run on each new message on the
            server thread; if it raises, that socket is closed with 1011.
        store: durable history and tokens: a path (opened and locked here, else
            :class:`~wslab.store.StoreError`) or a :class:`~wslab.store.SQLiteStore`.
        **options: single options by flat name (``grace=0``, ``history=5``,
            ``redis_keep=...``): :data:`wslab.options.FLAT_OPTIONS`, typed by
            :class:`~wslab.options.ServerOptions` (a misspelled name is a mypy
            error). A bad value raises :class:`ValueError`, an unknown name
            :class:`TypeError`.

    Stopping and starting the same object again keeps its room (history, tokens)
    and its port: it is a restart of one service. A new ``ChatServer`` starts
    with an empty room, unless both use the same ``store``.
    """

    _kind = "server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        redis: str | RedisOptions | None = None,
        allowed_origins: Collection[str] = (),
        seed_compatible: bool = False,
        ssl: ssl_module.SSLContext | None = None,
        clock: Clock | None = None,
        compression: str | None = None,
        message_filter: MessageFilter | None = None,
        store: str | os.PathLike[str] | HistoryStore | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        self.limits, self.timeouts, self.redis_options, self.classroom_options = resolve(
            options, limits, timeouts, redis
        )
        redis = self.redis_options.url
        _check_modes(self.classroom_options.hub, redis, store, seed_compatible)
        self.host = host
        self._port = port
        self.ssl = ssl
        self.admission = Admission(
            host,
            max_clients=self.limits.max_clients,
            max_per_address=self.limits.max_per_address,
            join_timeout=self.timeouts.join_timeout,
            allowed_origins=allowed_origins,
            trust_same_origin=trust_same_origin(self.listens_publicly),
        )
        self.listener = Listener(
            self._handle,
            self.admission,
            self.limits,
            self.timeouts,
            available=lambda: self.backplane_up,
            ssl=ssl,
            compression=compression,
        )
        self.store = store = _open_store(store)
        self.room = _new_room(self, seed_compatible, clock, message_filter)
        #: Classroom mode's door (the page, its login, who each socket is), else ``None``.
        self.hub: HubDoor | None = None
        if self.classroom_options.hub:
            self.hub = _open_door(self.room, self.classroom_options.teachers)
            self.listener.door = self.hub
            self.path_prefix = self.hub.prefix
        super().__init__(f"wslab-server-{port}")
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        #: The link to Redis while running with ``redis`` (server thread).
        self.link: BackplaneLink | None = None
        self.handler_errors = 0
        self.redis, self.redis_keep = redis, self.redis_options.keep
        self.redis_heartbeat = self.redis_options.heartbeat

    @property
    def refused_per_address(self) -> int:
        """Connections closed at once for being over ``max_per_address``."""
        return self.admission.refused_per_address

    @property
    def join_timeouts(self) -> int:
        """Sockets closed because they did not send ``connecting`` in time."""
        return self.admission.join_timeouts

    @property
    def slow_peers_dropped(self) -> int:
        """Peers closed because they left more than ``max_buffer`` bytes unread."""
        return self.listener.slow_peers_dropped

    # ------------------------------------------------------------------ life cycle
    # start(), stop(), aclose(), with: LoopService. Stopping closes every client with
    # 1001. From a cell (a running loop) stop() waits for them only briefly, as
    # clients on that loop cannot answer while it blocks: prefer ``await aclose()``.

    def _close_timeout(self, *, blocking: bool) -> float:
        if blocking and _has_running_loop():
            return min(self.timeouts.close_timeout, 0.1)
        return self.timeouts.close_timeout

    @property
    def _listening(self) -> bool:
        return self.listener.listening

    # port, url, page_url, proxied_page_url, reachable_urls...: endpoint.ServedAt.

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ChatServer {self.url} {state}>"

    # ------------------------------------------------------------------ room access

    @property
    def users(self) -> list[UserEntry]:
        """Present users (online or inside their grace). Any thread."""
        return self._call(lambda: self.room.users)

    @property
    def history(self) -> list[MessageEntry]:
        """The kept message history, oldest first. Any thread."""
        return self._call(lambda: self.room.history)

    @property
    def client_count(self) -> int:
        """Open sockets, connected as a user or not yet. Any thread."""
        return self._call(lambda: self.room.socket_count)

    @property
    def connection_count(self) -> int:
        """TCP connections, handshakes in progress and page requests included. Any thread."""
        return self._call(lambda: len(self._connections))

    @property
    def _connections(self) -> set[_ChatConnection]:
        """Every TCP connection from accept to close (server thread only)."""
        return self.admission.connections

    def drop(self, user_id: str) -> int:
        """Abort every socket of ``user_id`` without a close frame (clients see 1006).

        This is what a lost network looks like. Returns how many sockets were
        dropped. Any thread but the server's own.
        """

        def abort_all() -> int:
            sockets = self.room.sockets_of(user_id)
            for socket in sockets:
                assert isinstance(socket, ServerConnection)
                socket.transport.abort()
            return len(sockets)

        return self._call(abort_all)

    # ------------------------------------------------------------------ server thread

    async def _listen(self) -> None:
        """Open the Redis link (with ``redis``) and listen; record the real port."""
        try:
            if self.redis is not None:
                await self._open_link(self.redis)
            self._port = await self.listener.listen(self.host, self._port)
        except BaseException:
            if self.link is not None:
                await self.link.aclose()
                self.link = None
            raise
        name = f"wslab-server-{self._port}"
        self._loop_thread.name = threading.current_thread().name = name
        self._schedule_expiry()  # graces that ran while a restarted server was down

    async def _shutdown(self, close_timeout: float) -> None:
        if not self.listener.listening:
            return
        await self.listener.close(close_timeout)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.hub is not None:
            await self.hub.aclose()
        # Sockets that died in the shutdown have left the room; their grace runs,
        # so a restart of this object within the grace is a reload.
        if self.link is not None:
            # After the last socket's handler: the graces they started are marked
            # before this server leaves, so that the others take them over.
            await self.listener.wait_handlers(self.timeouts.close_timeout)
            await self.link.aclose()
            self.link = None

    async def _open_link(self, url: str) -> None:
        from .backplane import BackplaneLink, RedisBackplane

        backplane = RedisBackplane(
            url,
            history=self.room.history_cap,
            keep=self.redis_keep,
            dedupe_per_id=self.room.dedupe_per_id,
            heartbeat=self.redis_heartbeat,
        )
        self.link = BackplaneLink(
            self.room,
            backplane,
            apply=self._apply,
            reschedule=self._schedule_expiry,
            on_lost=self._close_all,
        )
        try:
            await self.link.open()
        except BaseException:
            await backplane.aclose()
            self.link = None
            raise

    def _close_all(self) -> int:
        """The engine is lost: close every open WebSocket with 1013; return how many.

        The closing handshakes run on their own. Until the engine is back, new
        sockets get the same close (:meth:`_handle`).
        """
        closing = [c for c in self._connections if c.protocol.state is State.OPEN]
        for connection in closing:
            connection.close_soon(*_OUTAGE_CLOSE)
        return len(closing)

    @property
    def backplane_up(self) -> bool:
        """Whether this server may serve: no Redis to share, or Redis reachable. Any thread."""
        link = self.link
        return self.redis is None or (link is not None and link.up)

    # ------------------------------------------------------------------ engine link

    async def _handle(self, socket: ServerConnection) -> None:
        assert isinstance(socket, _ChatConnection)
        if not self.backplane_up:
            await socket.close(*_OUTAGE_CLOSE)
            return
        room = self.room
        if self.hub is not None and not self.hub.seat(socket, room):
            await socket.close(CloseCode.POLICY_VIOLATION, "no hub user")
            return
        self._apply(room.open(socket))
        join_timer = self.admission.watch_join(socket, lambda: room.user_of(socket) is not None)
        try:
            async for data in socket:
                try:
                    answered = self._apply(room.receive(socket, data))
                    if answered is not None:
                        await answered  # a claim is answered before this socket's next frame
                    if room.presence_due is not None and self._timer_later(room.presence_due):
                        self._schedule_expiry()  # a join started a presence tick
                except ConnectionClosed:
                    raise
                except Exception:
                    self.handler_errors += 1
                    logger.exception("handler error; closing this socket with 1011")
                    await socket.close(CloseCode.INTERNAL_ERROR, "internal error")
                    return
                if socket.protocol.state is not State.OPEN:
                    return  # the room closed it (id taken, too many protocol errors)
        except ConnectionClosed:
            pass  # the peer's close code is on the socket; the room only needs to know
        finally:
            join_timer.cancel()
            self._apply(room.close(socket))
            self._schedule_expiry()

    def _apply(self, outcome: Outcome) -> Coroutine[Any, Any, None] | None:
        """Carry out an outcome: its sends, then its close, then its engine requests.

        The one way any outcome is carried out (a frame, a close, a timer, the
        engine's log). When a remote engine is asked something that it answers (a
        claim: only a frame asks that; an append too, while too many wait for Redis),
        returns a coroutine the caller must await: it carries the answers out in turn.
        Otherwise ``None``. Server thread only.
        """
        for send in outcome.sends:
            # One serialization per event, however many receivers: no per-socket work.
            broadcast(send.to, encode(send.event))  # type: ignore[arg-type]
        for close in (outcome.close, *outcome.closes):
            if close is not None:
                assert isinstance(close.socket, _ChatConnection)
                close.socket.close_soon(close.code, close.reason)
        if not outcome.tasks or self.link is None:
            return None
        # Each request is queued now, in order; claims and appends are answered later.
        answers = [a for task in outcome.tasks if (a := self.link.request(task)) is not None]
        return self._apply_answers(answers) if answers else None

    async def _apply_answers(self, answers: list[Coroutine[Any, Any, Outcome]]) -> None:
        for answer in answers:
            more = self._apply(await answer)
            if more is not None:
                await more

    def _schedule_expiry(self) -> None:
        # Only a close starts a grace, so this runs after closes and timers, not per frame.
        # (A reconnect that cancels a grace leaves the timer to fire and find nothing.)
        deadline = self.room.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_deadline == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - self.room.clock.monotonic())
        self._timer_deadline = deadline
        self._timer = loop.call_later(delay, self._on_timer)

    def _timer_later(self, deadline: float) -> bool:
        return self._timer is None or self._timer_deadline > deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self.room.expire())
        self._schedule_expiry()


def _new_room(
    server: ChatServer,
    seed_compatible: bool,
    clock: Clock | None,
    message_filter: MessageFilter | None,
) -> Room:
    """The server's room: a classroom (``hub``), else a room on Redis or in memory.

    Built from the server's option objects and store (``__init__`` sets them first);
    the room takes the options flat, as ``Room(grace=..., history=...)``.
    """
    limits, timeouts, classroom = server.limits, server.timeouts, server.classroom_options
    options: dict[str, Any] = {
        "grace": timeouts.grace,
        "history": limits.history,
        "rate_limit": limits.rate_limit,
        "rate_burst": limits.rate_burst,
        "clock": clock or SystemClock(),
        "message_filter": message_filter,
        "max_bindings": limits.max_bindings,
        "dedupe_per_id": limits.dedupe_per_id,
        "presence_tick": timeouts.presence_tick,
    }
    if classroom.hub:
        return ClassRoom(kick_seconds=classroom.kick_seconds, **options)
    engine = RedisEngine() if server.redis_options.url is not None else None
    return Room(seed_compatible=seed_compatible, store=server.store, engine=engine, **options)


def _check_modes(hub: bool, redis: str | None, store: object, seed_compatible: bool) -> None:
    """Refuse options that cannot go together (a :class:`ConfigurationError` saying why)."""
    if hub and (redis is not None or store is not None or seed_compatible):
        raise ConfigurationError(
            "hub (classroom mode) cannot go with redis, store or seed_compatible:"
            " a classroom is one server, in memory, with the hub's ids"
        )
    if redis is not None and (store is not None or seed_compatible):
        raise ConfigurationError("a server on Redis keeps history and ids there: no store, no seed")


def _open_door(room: Room, teachers: tuple[str, ...]) -> HubDoor:
    """Classroom mode's door, from the hub's variables (see :mod:`wslab.classroom.service`)."""
    from .classroom.service import HubDoor

    assert isinstance(room, ClassRoom)

    def kicked_for(name: str) -> float:
        until = room.kicked_until(name)
        return 0.0 if until is None else until - room.clock.monotonic()

    return HubDoor.from_environment(teachers, kicked_for)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _open_store(
    store: str | os.PathLike[str] | HistoryStore | None,
) -> HistoryStore | None:
    """A store given as a path, opened (and locked); any other store as it is."""
    if isinstance(store, (str, os.PathLike)):
        from .store import SQLiteStore

        return SQLiteStore(store)
    return store

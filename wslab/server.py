"""ChatServer: the chat room served over WebSockets from a background thread.

The server owns one thread with its own asyncio event loop. ``start()`` returns
as soon as the socket listens, so a notebook cell finishes at once and the
kernel stays responsive; the room (:class:`wslab.room.Room`) lives on that
thread, and this module only moves frames between sockets and the room.

Threads::

    caller thread (a notebook cell, a script)     server thread (its own loop)
    start() / stop() / drop() / users  ----->     websockets server, Room, timers
                              run_coroutine_threadsafe

HTTP on the same port: ``GET /`` serves the browser chat page, ``/chat`` is the
WebSocket, any other path is a 404, and a handshake from a foreign ``Origin``
is refused with 403 before any socket exists.

Limits that keep one peer from hurting the others (each one an option):

- ``max_buffer``: output a peer has not read yet. ``broadcast`` never waits for a
  receiver, so a peer that stops reading would make the server's memory grow
  without end; over the cap it is closed with 1013 (see :class:`_ChatConnection`).
- ``join_timeout``: a socket must send ``connecting`` this soon, or it is closed
  with 1008.
- ``max_clients`` counts every TCP connection from the moment it is accepted,
  handshakes in progress included (those last at most ``open_timeout``).
- ``max_per_address``: connections from one IP address; more are closed at once.

Several servers, one chat: given ``redis="redis://HOST:PORT/DB"``, the room's
engine is Redis (:class:`~wslab.engine.RedisEngine`) and :mod:`wslab.backplane`
shares presence, ids, messages and their order through Redis with every other
server on it. Otherwise the room's engine is in memory, over ``store`` if given.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import ipaddress
import logging
import os
import socket as socket_module
import ssl as ssl_module
import threading
from collections import Counter
from collections.abc import Callable, Collection, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from .clock import Clock, SystemClock
from .engine import RedisEngine
from .protocol import CloseCode, MessageEntry, UserEntry, encode
from .room import HistoryStore, MessageFilter, Outcome, Room

if TYPE_CHECKING:
    from .backplane import BackplaneLink

__all__ = ["ChatServer"]

logger = logging.getLogger("wslab.server")

T = TypeVar("T")

CHAT_PATH = "/chat"
# Next to this file, wherever Python was started from: a folder named "wslab" in the
# current directory (a clone of this project) must not shadow the installed package.
_STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    # The original design's client, for comparison (needs seed_compatible=True).
    "/seed": ("seed.html", "text/html; charset=utf-8"),
    "/seed.js": ("seed.js", "text/javascript; charset=utf-8"),
}
#: How every client is closed while the shared engine (Redis) is unreachable.
_OUTAGE_CLOSE = (CloseCode.TRY_AGAIN_LATER, "chat backplane unavailable; try again later")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# This machine's own programs (notebooks, tests, benchmarks, a JupyterHub proxy) open
# hundreds of clients from these addresses: the per-address cap does not apply to them.
_UNCAPPED_ADDRESSES = frozenset({"127.0.0.1", "::1"})


class ChatServer:
    """A chat server on a background thread. See the module docstring.

    Args:
        host: address to bind; loopback unless told otherwise.
        port: port to bind; 0 picks a free one (read it back from :attr:`port`).
        grace: reload grace in seconds (0 announces departures at once).
        max_size: largest frame accepted, in bytes; larger ones close with 1009.
        max_clients: connections beyond which a new WebSocket is closed with 1013.
            Every TCP connection counts from the moment it is accepted, whether its
            handshake has finished or not.
        allowed_origins: extra browser origins (``"https://example.org"`` or a bare
            host name) allowed besides no ``Origin``, ``localhost``, ``127.0.0.1``,
            ``[::1]`` and the bound host. When the server listens publicly
            (:attr:`listens_publicly`), the page's own origin is allowed too.
        rate_limit: frames per second per user id (all its sockets), 0 for no limit.
        rate_burst: frames a user may send at once.
        history: messages kept and sent to newcomers.
        seed_compatible: the original design's behaviour (full history in every
            ``messageWritten``; ids trusted without tokens). Insecure; for lessons.
        ssl: a server-side :class:`ssl.SSLContext` to serve ``wss://``.
        clock: where the room reads time (message timestamps, grace, rates).
        compression: ``None`` (default) or ``"deflate"`` for permessage-deflate.
        message_filter: ``f(username, text) -> text`` run on each new message on the
            server thread; if it raises, that socket is closed with 1011.
        store: durable history and tokens (a path or a :class:`~wslab.store.SQLiteStore`).
            A path is opened and locked here: :class:`~wslab.store.StoreError` if it
            cannot be used or another server holds it.
        max_bindings: ids the room remembers while they are away, without a store.
        close_timeout: seconds to wait for a client's closing handshake; after
            that its TCP connection is aborted.
        max_buffer: bytes of output a peer may leave unread; a peer over it is
            closed with 1013 and its buffer freed.
        join_timeout: seconds a socket has to send ``connecting``; then it is
            closed with 1008 ("join timeout").
        max_per_address: connections from one IP address (0: no cap); more are
            closed at once. 127.0.0.1 and ::1 (this machine) are not capped.
        open_timeout: seconds a TCP connection has to complete its handshake.
        ping_interval: seconds between keepalive pings (``None``: no pings).
        ping_timeout: seconds a peer has to answer a ping, and to read what was
            waiting before it; then it is dropped.
        presence_tick: seconds over which presence changes are batched for clients
            that announce the ``presence`` feature.
        redis: a Redis URL (``redis://HOST:PORT/DB``) shared with other servers: they
            all serve one chat (see :mod:`wslab.backplane`). Redis then keeps the
            history and the ids' tokens (not with ``store`` or ``seed_compatible``).
            :meth:`start` raises :class:`~wslab.errors.BackplaneError` if Redis
            cannot be reached. Needs the ``redis`` package (``wslab[redis]``).
        redis_heartbeat: seconds between this server's heartbeats in Redis; a
            server silent for five of them is taken for dead by the others, which
            run its users' grace.
        redis_keep: log entries (messages, joins, leaves) Redis keeps, about:
            how far back a returning client can recover.

    Stopping and starting the same object again keeps its room (history, tokens)
    and its port: it is a restart of one service. A new ``ChatServer`` starts
    with an empty room, unless both use the same ``store``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        grace: float = 1.0,
        max_size: int = 64 * 1024,
        max_clients: int = 1000,
        allowed_origins: Collection[str] = (),
        rate_limit: float = 20.0,
        rate_burst: float = 40.0,
        history: int = 100,
        seed_compatible: bool = False,
        ssl: ssl_module.SSLContext | None = None,
        clock: Clock | None = None,
        compression: str | None = None,
        message_filter: MessageFilter | None = None,
        store: str | os.PathLike[str] | HistoryStore | None = None,
        close_timeout: float = 2.0,
        max_bindings: int = 10_000,
        max_buffer: int = 256 * 1024,
        join_timeout: float = 5.0,
        max_per_address: int = 64,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        presence_tick: float = 0.05,
        redis: str | None = None,
        redis_heartbeat: float = 0.5,
        redis_keep: int = 100_000,
    ) -> None:
        if redis is not None and (store is not None or seed_compatible):
            raise ValueError(
                "a server on Redis keeps history and ids there: no store, no seed mode"
            )
        if redis_heartbeat <= 0 or redis_keep < 1:
            raise ValueError("redis_heartbeat must be > 0 and redis_keep >= 1")
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1 byte")
        if join_timeout <= 0 or open_timeout <= 0 or close_timeout <= 0:
            raise ValueError("join_timeout, open_timeout and close_timeout must be > 0")
        if max_per_address < 0:
            raise ValueError("max_per_address must be >= 0 (0: no cap)")
        self.host = host
        self._port = port
        self.max_size = max_size
        self.ssl = ssl
        self.compression = compression
        self.close_timeout = close_timeout
        self.max_buffer = max_buffer
        self.join_timeout = join_timeout
        self.max_per_address = max_per_address
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._allowed_hosts = _LOCAL_HOSTS | {_origin_host(o) for o in allowed_origins}
        if host not in _WILDCARD_HOSTS:
            self._allowed_hosts |= {host.strip("[]").lower()}
        # A page may open the chat from the address it was loaded from (Origin host ==
        # Host header host) in two cases only. Under JupyterHub (Binder) the page comes
        # through jupyter-server-proxy, which checked the learner's login and forwards
        # the hub's Host and Origin as they are; only the proxy can reach this server.
        # And when the server listens publicly, anyone on the network can connect
        # anyway, so a page on another name for this machine gains nothing. On
        # loopback alone the rule would let DNS rebinding in: a foreign page whose
        # name was made to resolve to 127.0.0.1 would pass it.
        self._trust_same_origin = (
            bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX")) or self.listens_publicly
        )
        if isinstance(store, (str, os.PathLike)):
            from .store import SQLiteStore

            store = SQLiteStore(store)
        self.store = store
        self.redis = redis
        self.redis_heartbeat = redis_heartbeat
        self.redis_keep = redis_keep
        self.max_clients = max_clients
        self.room = Room(
            grace=grace,
            history=history,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            seed_compatible=seed_compatible,
            clock=clock or SystemClock(),
            message_filter=message_filter,
            store=store,
            max_bindings=max_bindings,
            presence_tick=presence_tick,
            engine=RedisEngine() if redis is not None else None,
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        # Every TCP connection from accept to close (server thread only).
        self._connections: set[_ChatConnection] = set()
        self._per_address: Counter[str] = Counter()
        self._stopping = False
        #: The link to Redis while running with ``redis`` (server thread).
        self.link: BackplaneLink | None = None
        self.handler_errors = 0
        #: Peers closed because they left more than ``max_buffer`` bytes unread.
        self.slow_peers_dropped = 0
        #: Sockets closed because they did not send ``connecting`` in time.
        self.join_timeouts = 0
        #: Connections closed at once for being over ``max_per_address``.
        self.refused_per_address = 0

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> ChatServer:
        """Start serving; return once the socket listens. Safe to call twice.

        Any thread but the server's own may call it.

        Raises:
            OSError: the address could not be bound (e.g. the port is in use).
        """
        with self._lock:
            if self.running:
                return self
            self._ready.clear()
            self._startup_error = None
            self._thread = threading.Thread(
                target=self._run, name=f"wslab-server-{self._port}", daemon=True
            )
            self._thread.start()
            if not self._ready.wait(timeout):
                raise TimeoutError(f"the server did not start within {timeout} s")
            if self._startup_error is not None:
                self._thread.join()
                self._thread = None
                raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every client with 1001, stop listening and join the thread. Safe twice.

        Any thread but the server's own may call it. From a thread that runs an
        event loop (a notebook cell), clients that live on that loop cannot answer
        the closing handshake while this blocks, so it waits for them only briefly:
        they still read 1001. In a notebook prefer ``await server.aclose()``.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            self._check_not_server_thread()
            timeout = self.close_timeout
            if _has_running_loop():
                timeout = min(timeout, 0.1)
            asyncio.run_coroutine_threadsafe(self._shutdown(timeout), loop).result()
            thread.join()
            self._thread = None

    async def aclose(self) -> None:
        """Awaitable :meth:`stop`, for notebook cells and other asyncio code.

        Awaiting lets the caller's loop keep serving its own clients, so they
        complete the closing handshake and see a clean 1001.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._check_not_server_thread()
        future = asyncio.run_coroutine_threadsafe(self._shutdown(self.close_timeout), loop)
        await asyncio.wrap_future(future)
        with self._lock:
            if self._thread is thread:
                thread.join()
                self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> ChatServer:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        """Whether the server thread is alive and listening."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The bound port (the real one once started, even if 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """The chat socket's URL, e.g. ``ws://127.0.0.1:8765/chat``."""
        scheme = "wss" if self.ssl else "ws"
        return f"{scheme}://{self._url_host}:{self._port}{CHAT_PATH}"

    @property
    def page_url(self) -> str:
        """The browser chat page's URL, e.g. ``http://127.0.0.1:8765/``."""
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{self._url_host}:{self._port}/"

    @property
    def proxied_page_url(self) -> str | None:
        """The page's path through jupyter-server-proxy under JupyterHub/Binder, else None.

        ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/`` is reachable from the learner's
        browser where only the Jupyter port is.
        """
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
        if not prefix:
            return None
        return f"{prefix.rstrip('/')}/proxy/{self._port}/"

    @property
    def listens_publicly(self) -> bool:
        """Whether other machines may reach the server: it is bound beyond loopback."""
        return not _is_loopback(self.host)

    @property
    def reachable_urls(self) -> list[str]:
        """Every address of the chat page a browser may use, loopback first.

        For a wildcard host (``0.0.0.0``, ``::``, ``""``) these are 127.0.0.1 (or
        ::1) and this machine's interface addresses; for any other host, the one
        page URL. Any thread.
        """
        if self.host not in _WILDCARD_HOSTS:
            return [self.page_url]
        families = {
            "0.0.0.0": (socket_module.AF_INET,),
            "::": (socket_module.AF_INET6,),
            "": (socket_module.AF_INET, socket_module.AF_INET6),
        }[self.host]
        scheme = "https" if self.ssl else "http"
        return [
            f"{scheme}://{_url_host(address)}:{self._port}/"
            for address in _interface_addresses(families)
        ]

    @property
    def _url_host(self) -> str:
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        return _url_host(host)

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

    def _call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the server thread and return its result."""
        loop = self._loop
        if loop is None or not self.running:
            return function()  # nothing runs on the room: read it directly
        if threading.current_thread() is self._thread:
            return function()

        async def call() -> T:
            return function()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), loop)
        return future.result(timeout=10)

    def _check_not_server_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("the server cannot be stopped from its own thread")

    # ------------------------------------------------------------------ server thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._stopping = False
        try:
            if self.redis is not None:
                await self._open_link(self.redis)
            self._server = await serve(
                self._handle,
                self.host,
                self._port,
                ssl=self.ssl,
                process_request=self._process_request,
                max_size=self.max_size,
                compression=self.compression,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                # websockets calls this like a class: (protocol, server, **options).
                create_connection=self._new_connection,  # type: ignore[arg-type]
                logger=logger,
            )
        except BaseException as error:  # reported to start(), in the caller's thread
            if self.link is not None:
                await self.link.aclose()
                self.link = None
            self._startup_error = error
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        threading.current_thread().name = f"wslab-server-{self._port}"
        self._schedule_expiry()  # graces that ran while a restarted server was down
        self._ready.set()
        server = self._server
        await server.wait_closed()
        if self.link is not None:
            # After the last socket's handler: the graces they started are marked
            # before this server leaves, so that the others take them over.
            if server.handler_tasks:
                await asyncio.wait(server.handler_tasks, timeout=self.close_timeout)
            await self.link.aclose()
            self.link = None

    async def _shutdown(self, close_timeout: float) -> None:
        server = self._server
        if server is None:
            return
        for connection in server.connections:
            connection.close_timeout = close_timeout
        self._stopping = True
        server.close(code=CloseCode.GOING_AWAY, reason="server stopping")
        # A handshake in progress would hold the shutdown for up to open_timeout.
        for connection in list(self._connections):
            if connection.protocol.state is State.CONNECTING:
                connection.transport.abort()
        await server.wait_closed()
        # Connections accepted while closing are aborted as they arrive (see
        # _on_connection_made); let their tasks end before the loop does.
        if server.handler_tasks:
            await asyncio.wait(server.handler_tasks, timeout=close_timeout)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Sockets that died in the shutdown leave the room now; their grace
        # starts, so a restart of this object within the grace is a reload.
        self._server = None

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

    # ------------------------------------------------------------------ connections

    def _new_connection(
        self, protocol: ServerProtocol, server: Server, **options: Any
    ) -> _ChatConnection:
        return _ChatConnection(self, protocol, server, **options)

    def _on_connection_made(self, connection: _ChatConnection) -> None:
        """A TCP connection was accepted: count it, or close it at once if over a cap."""
        address = connection.address
        if self._stopping:
            connection.transport.abort()
            return
        if (
            self.max_per_address
            and address not in _UNCAPPED_ADDRESSES
            and self._per_address[address] >= self.max_per_address
        ):
            # No HTTP answer is possible before the request is read, and not reading
            # it is the point: the connection ends here, before it costs anything.
            self.refused_per_address += 1
            logger.debug("%s: over %d connections from this address", address, self.max_per_address)
            connection.transport.abort()
            return
        # The verdict on a full server comes at accept time; the WebSocket, once open,
        # is closed with 1013 so that clients read why and retry later.
        connection.admitted = len(self._connections) < self.max_clients
        self._connections.add(connection)
        self._per_address[address] += 1

    def _on_connection_lost(self, connection: _ChatConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._per_address[connection.address] -= 1
            if not self._per_address[connection.address]:
                del self._per_address[connection.address]

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        if len(origins) > 1 or len(hosts) > 1:
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST, "Send one Origin header and one Host header.\n"
            )
        path = urlsplit(request.path).path
        if path == CHAT_PATH and not self.backplane_up:
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "The chat backplane is unavailable; try again.\n",
            )
        if path == CHAT_PATH:
            origin = origins[0] if origins else None
            if not self._origin_allowed(origin, hosts[0] if hosts else None):
                return connection.respond(
                    http.HTTPStatus.FORBIDDEN, "This page's origin may not open the chat.\n"
                )
            return None  # go on with the WebSocket handshake
        static = _STATIC_FILES.get(path)
        if static is None:
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, f"Not found. The chat socket is at {CHAT_PATH}.\n"
            )
        name, content_type = static
        return _file_response(name, content_type)

    def _origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:
            return True  # not a browser: Origin only protects browsers' users
        origin_host = _origin_host(origin)
        if origin_host in self._allowed_hosts:
            return True
        return self._trust_same_origin and origin_host == _origin_host(host_header or "")

    async def _handle(self, socket: ServerConnection) -> None:
        assert isinstance(socket, _ChatConnection)
        if not socket.admitted:
            reason = f"server full ({self.max_clients} clients); try again later"
            await socket.close(CloseCode.TRY_AGAIN_LATER, reason)
            return
        if not self.backplane_up:
            await socket.close(*_OUTAGE_CLOSE)
            return
        room = self.room
        self._apply(room.open(socket))
        loop = asyncio.get_running_loop()
        join_timer = loop.call_later(self.join_timeout, self._check_joined, socket)
        try:
            async for data in socket:
                try:
                    answered = self._apply(room.receive(socket, data))
                    if answered is not None:
                        await answered  # the engine answers before this socket's next frame
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

    def _check_joined(self, socket: _ChatConnection) -> None:
        """``join_timeout`` after the handshake: a socket that never sent ``connecting`` goes."""
        if self.room.user_of(socket) is None:
            self.join_timeouts += 1
            socket.close_soon(CloseCode.POLICY_VIOLATION, "join timeout")

    def _apply(self, outcome: Outcome) -> Coroutine[Any, Any, None] | None:
        """Carry out an outcome: its sends, then its close, then its engine requests.

        The one way any outcome is carried out (a frame, a close, a timer, the
        engine's log). When a remote engine is asked something that it answers (a
        claim, an append: only a frame asks that), returns a coroutine the caller
        must await: it carries the answers out in turn. Otherwise ``None``.
        Server thread only.
        """
        for send in outcome.sends:
            # One serialization per event, however many receivers: no per-socket work.
            broadcast(send.to, encode(send.event))  # type: ignore[arg-type]
        close = outcome.close
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


class _ChatConnection(ServerConnection):
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

    Server thread only.
    """

    def __init__(
        self, chat: ChatServer, protocol: ServerProtocol, server: Server, **options: Any
    ) -> None:
        super().__init__(protocol, server, **options)
        self.chat = chat
        self.address = ""  # the peer's IP address, known once the TCP connection is made
        self.admitted = True  # False: the server was full when this connection came
        self._abort_timer: asyncio.TimerHandle | None = None
        self._dropped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.address = _peer_address(transport.get_extra_info("peername"))
        self.chat._on_connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self.chat._on_connection_lost(self)

    def send_data(self) -> None:
        """Write what the protocol has to send, unless the peer already has too much unread."""
        if self.transport.get_write_buffer_size() > self.chat.max_buffer:
            self._drop_slow_peer()
        else:
            super().send_data()

    def _drop_slow_peer(self) -> None:
        if self._dropped:
            self.protocol.data_to_send()  # already closing: write nothing more
            return
        self._dropped = True
        self.chat.slow_peers_dropped += 1
        unread = self.transport.get_write_buffer_size()
        logger.info("%s: %d bytes unread; closing it with 1013", self.address, unread)
        self.protocol.data_to_send()  # the frames it was about to get: dropped
        # fail() sends the close frame, half-closes TCP, and ignores whatever the peer
        # sends from now on (its pings get no more pongs).
        cap = self.chat.max_buffer
        size = f"{cap // 1024} KiB" if cap >= 1024 else f"{cap} bytes"
        reason = f"too slow: over {size} unread"
        self.protocol.fail(CloseCode.TRY_AGAIN_LATER, reason)
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
            timeout = self.close_timeout or self.chat.close_timeout
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


def _peer_address(peername: Any) -> str:
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


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard ("", "0.0.0.0" is parsed above) or a host name


def _interface_addresses(families: tuple[socket_module.AddressFamily, ...]) -> list[str]:
    """This machine's addresses in these families: loopback first, then the others.

    From the host name's addresses and from the route a datagram socket would take
    to the outside (connecting a UDP socket sends nothing). Link-local IPv6 needs a
    zone a browser cannot take, and other loopback addresses are the same machine:
    both are left out.
    """
    found: list[str] = []
    loopback = {socket_module.AF_INET: "127.0.0.1", socket_module.AF_INET6: "::1"}
    for family in families:
        found.append(loopback[family])
        try:
            infos = socket_module.getaddrinfo(socket_module.gethostname(), None, family)
            found.extend(str(info[4][0]) for info in infos)
        except OSError:
            pass
        probe = "192.0.2.1" if family == socket_module.AF_INET else "2001:db8::1"
        try:
            with socket_module.socket(family, socket_module.SOCK_DGRAM) as udp:
                udp.connect((probe, 9))
                found.append(str(udp.getsockname()[0]))
        except OSError:
            pass
    addresses: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if address.is_link_local or (address.is_loopback and text not in loopback.values()):
            continue
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _file_response(name: str, content_type: str) -> Response:
    body = (_STATIC_DIR / name).read_bytes()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
    )
    return Response(http.HTTPStatus.OK.value, "OK", headers, body)


def _origin_host(origin: str) -> str:
    """The lower-case host name of an origin (``"https://a.b:8"`` -> ``"a.b"``)."""
    if "//" not in origin:
        origin = "//" + origin
    try:
        return (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return ""


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

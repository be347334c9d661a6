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
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import os
import ssl as ssl_module
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from importlib import resources
from typing import TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .clock import Clock, SystemClock
from .protocol import CloseCode, MessageEntry, UserEntry, encode
from .room import HistoryStore, MessageFilter, Outcome, Room

__all__ = ["ChatServer"]

logger = logging.getLogger("wslab.server")

T = TypeVar("T")

CHAT_PATH = "/chat"
_STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class ChatServer:
    """A chat server on a background thread. See the module docstring.

    Args:
        host: address to bind; loopback unless told otherwise.
        port: port to bind; 0 picks a free one (read it back from :attr:`port`).
        grace: reload grace in seconds (0 announces departures at once).
        max_size: largest frame accepted, in bytes; larger ones close with 1009.
        max_clients: open sockets beyond which a new one is closed with 1013.
        allowed_origins: extra browser origins (``"https://example.org"`` or a bare
            host name) allowed besides no ``Origin``, ``localhost``, ``127.0.0.1``,
            ``[::1]`` and the bound host.
        rate_limit: frames per second per socket, 0 for no limit.
        rate_burst: frames a socket may send at once.
        history: messages kept and sent to newcomers.
        seed_compatible: the original design's behaviour (full history in every
            ``messageWritten``; ids trusted without tokens). Insecure; for lessons.
        ssl: a server-side :class:`ssl.SSLContext` to serve ``wss://``.
        clock: where the room reads time (message timestamps, grace, rates).
        compression: ``None`` (default) or ``"deflate"`` for permessage-deflate.
        message_filter: ``f(username, text) -> text`` run on each new message on the
            server thread; if it raises, that socket is closed with 1011.
        store: durable history and tokens (a path or a :class:`~wslab.store.SQLiteStore`).
        close_timeout: seconds to wait for a client's closing handshake.
        presence_tick: seconds over which presence changes are batched for clients
            that announce the ``presence`` feature.

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
        presence_tick: float = 0.05,
    ) -> None:
        self.host = host
        self._port = port
        self.max_size = max_size
        self.ssl = ssl
        self.compression = compression
        self.close_timeout = close_timeout
        self._allowed_hosts = _LOCAL_HOSTS | {_origin_host(o) for o in allowed_origins}
        if host not in _WILDCARD_HOSTS:
            self._allowed_hosts |= {host.strip("[]").lower()}
        # Under JupyterHub (Binder) the page comes through jupyter-server-proxy, which
        # checked the learner's login and forwards the hub's Host and Origin as they are.
        # Only the proxy can reach this server there, so a same-origin request is trusted.
        self._trust_same_origin = bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        if isinstance(store, (str, os.PathLike)):
            from .store import SQLiteStore

            store = SQLiteStore(store)
        self.store = store
        self.room = Room(
            grace=grace,
            history=history,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            max_clients=max_clients,
            seed_compatible=seed_compatible,
            clock=clock or SystemClock(),
            message_filter=message_filter,
            store=store,
            presence_tick=presence_tick,
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.handler_errors = 0

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
    def _url_host(self) -> str:
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        return f"[{host}]" if ":" in host else host

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
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self._port,
                ssl=self.ssl,
                process_request=self._process_request,
                max_size=self.max_size,
                compression=self.compression,
                close_timeout=self.close_timeout,
                logger=logger,
            )
        except BaseException as error:  # reported to start(), in the caller's thread
            self._startup_error = error
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        threading.current_thread().name = f"wslab-server-{self._port}"
        self._schedule_expiry()  # graces that ran while a restarted server was down
        self._ready.set()
        await self._server.wait_closed()

    async def _shutdown(self, close_timeout: float) -> None:
        server = self._server
        if server is None:
            return
        for connection in server.connections:
            connection.close_timeout = close_timeout
        server.close(code=CloseCode.GOING_AWAY, reason="server stopping")
        await server.wait_closed()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Sockets that died in the shutdown leave the room now; their grace
        # starts, so a restart of this object within the grace is a reload.
        self._server = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == CHAT_PATH:
            if not self._origin_allowed(request.headers.get("Origin"), request.headers.get("Host")):
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
        room = self.room
        if await self._apply(room.open(socket), socket):
            return
        try:
            async for data in socket:
                try:
                    closed = await self._apply(room.receive(socket, data), socket)
                    if room.presence_due is not None and self._timer_later(room.presence_due):
                        self._schedule_expiry()  # a join started a presence tick
                except ConnectionClosed:
                    raise
                except Exception:
                    self.handler_errors += 1
                    logger.exception("handler error; closing this socket with 1011")
                    await socket.close(CloseCode.INTERNAL_ERROR, "internal error")
                    return
                if closed:
                    return
        except ConnectionClosed:
            pass  # the peer's close code is on the socket; the room only needs to know
        finally:
            self._apply_now(room.close(socket))
            self._schedule_expiry()

    async def _apply(self, outcome: Outcome, socket: ServerConnection) -> bool:
        """Deliver an outcome; return True if it closed ``socket``."""
        self._apply_now(outcome)
        close = outcome.close
        if close is None:
            return False
        assert isinstance(close.socket, ServerConnection)
        await close.socket.close(close.code, close.reason)
        return close.socket is socket

    def _apply_now(self, outcome: Outcome) -> None:
        for send in outcome.sends:
            # One serialization per event, however many receivers: no per-socket work.
            broadcast(send.to, encode(send.event))  # type: ignore[arg-type]

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
        self._apply_now(self.room.expire())
        self._schedule_expiry()


def _file_response(name: str, content_type: str) -> Response:
    body = resources.files("wslab").joinpath("static").joinpath(name).read_bytes()
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

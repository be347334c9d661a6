"""WireTap: a TCP relay that shows what a WebSocket sends, frame by frame.

Put it between a client and a server: the client connects to :attr:`WireTap.url`
instead of the server's URL, and the tap copies every byte to the server and
back, unchanged, while it decodes a copy of each direction::

    client  --bytes-->  WireTap (127.0.0.1, a free port)  --same bytes-->  server
            <--bytes--                                    <--same bytes--
                           |
                           +-- decodes a copy: the HTTP handshake as text,
                               then frames (websockets' sans-I/O Frame.parse)

It works for any client (:class:`~wslab.client.ChatClient`, the browser page,
a browser socket) since it only relays TCP. For ``wss://`` the bytes are TLS
records: the tap relays them as they are and records them as opaque ``bytes``
(it holds no key, which is the point of TLS). Frames compressed with permessage-deflate
are not decoded either: the first one ends decoding for that connection.

Threads::

    caller thread (a notebook cell)          tap thread (a LoopThread)
    start() / stop() / frames / watch() ---> accepts, relays, decodes, records
    watchers, on the caller's loop      <--- call_soon_threadsafe after new records

Records are appended under a lock by the tap thread; :attr:`WireTap.records`
returns a copy, so any thread may read it. The notebook views (a live HTML table)
are in :mod:`wslab.lab.tap`; :meth:`WireTap.view` makes one.

HTTP heads are parsed with websockets' own HTTP/1.1 parser
(:class:`websockets.http11.Request`, :class:`~websockets.http11.Response`), frames
with its :class:`~websockets.frames.Frame` parser: the tap shows the bytes as the
library reads them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, ProtocolError, WebSocketException
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.streams import StreamReader

from .clock import Clock, SystemClock
from .loopthread import LoopService

if TYPE_CHECKING:
    import ipywidgets  # type: ignore[import-untyped]

__all__ = ["DirectionDecoder", "WireRecord", "WireTap", "build_frame", "describe_opcode"]

logger = logging.getLogger("wslab.wiretap")

Direction = Literal["client->server", "server->client"]
Kind = Literal["handshake", "frame", "bytes", "error"]

#: How many characters of a payload :attr:`WireRecord.preview` shows.
PREVIEW_CHARS = 60
#: A larger frame ends decoding for its direction (it is still relayed): a tap
#: must not hold a huge message twice in memory just to show it.
MAX_DECODED_FRAME = 16 * 2**20
_CHUNK = 64 * 1024

_OPCODE_NAMES = {0: "CONT", 1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}


def describe_opcode(opcode: int) -> str:
    """The opcode's name as capture tools print it: ``TEXT``, ``CLOSE``, ``0x3``..."""
    return _OPCODE_NAMES.get(opcode, f"0x{opcode:X}")


@dataclass(frozen=True)
class WireRecord:
    """One thing the tap saw go by, in one direction of one connection.

    ``kind`` is ``"handshake"`` (an HTTP request or response head, in ``text``),
    ``"frame"`` (one WebSocket frame), ``"bytes"`` (bytes relayed undecoded, in
    ``payload``: TLS, an HTTP body, what follows a decoding error) or ``"error"``
    (why decoding stopped, in ``text``).

    For a frame, ``header`` holds its raw header bytes as they travelled
    (including the masking key, if any), ``mask`` the 4-byte masking key (empty
    if not masked) and ``payload`` the payload *unmasked*; ``length`` is the
    payload length. Otherwise ``length`` counts the bytes the record covers.
    """

    time: float  # seconds since the tap started
    connection: int  # 1 for the first connection the tap accepted, then 2, ...
    direction: Direction
    kind: Kind
    length: int
    opcode: int | None = None
    fin: bool = False
    rsv: tuple[bool, bool, bool] = (False, False, False)
    masked: bool = False
    header: bytes = b""
    mask: bytes = b""
    payload: bytes = b""
    text: str = ""

    @property
    def opcode_name(self) -> str:
        """``TEXT``, ``BINARY``, ``CONT``, ``CLOSE``, ``PING``, ``PONG``; else ``kind``."""
        return describe_opcode(self.opcode) if self.opcode is not None else self.kind

    @property
    def arrow(self) -> str:
        """``→`` from client to server, ``←`` back, as in browsers' developer tools."""
        return "→" if self.direction == "client->server" else "←"

    @property
    def preview(self) -> str:
        """A short readable view of the content: text, a close code, or hex bytes."""
        if self.kind != "frame":
            first = self.text.split("\r\n", 1)[0] if self.text else f"{self.length} bytes"
            return _shorten(first)
        if self.opcode == Opcode.CLOSE:
            if not self.payload:
                return "(no status code: 1005)"
            try:
                close = Close.parse(self.payload)
            except (ProtocolError, UnicodeDecodeError):
                return _shorten(self.payload.hex(" "))
            return _shorten(f"{close.code} {close.reason}".rstrip())
        if self.opcode in (Opcode.TEXT, Opcode.CONT):
            try:
                return _shorten(self.payload.decode())
            except UnicodeDecodeError:
                pass  # a continuation of binary data, or UTF-8 split across fragments
        return _shorten(self.payload.hex(" "))

    @property
    def raw(self) -> bytes:
        """The bytes as they travelled; for a frame, its payload masked again if it was."""
        if self.kind == "handshake":
            return self.text.encode("latin-1")
        if self.kind != "frame":
            return self.payload
        if not self.mask:
            return self.header + self.payload
        masked = bytes(b ^ self.mask[i % 4] for i, b in enumerate(self.payload))
        return self.header + masked

    def __str__(self) -> str:
        flags = "FIN" if self.fin else "..."
        if self.kind != "frame":
            return f"#{self.connection} {self.arrow} {self.kind:<9} {self.preview}"
        mask = "masked" if self.masked else "      "
        return (
            f"#{self.connection} {self.arrow} {self.opcode_name:<6} {flags} {mask} "
            f"{self.length:>5}  {self.preview}"
        )


def _shorten(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


# ------------------------------------------------------------------ encoding and decoding (pure)


def build_frame(opcode: int, payload: bytes, *, mask: bytes = b"", fin: bool = True) -> bytes:
    """One frame's bytes, built by hand as RFC 6455 section 5.2 draws them.

    ``mask`` is the 4-byte masking key a client must use (empty: not masked, as a
    server sends). Lengths up to 125 fit in 7 bits; up to 65535 take 16 more
    bits, big-endian, after the marker 126; longer take 64 bits after 127.
    """
    if mask and len(mask) != 4:
        raise ValueError("a masking key is 4 bytes")
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        header = bytes([first, mask_bit | n])
    elif n < 1 << 16:
        header = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class DirectionDecoder:
    """Decode one direction of one connection: HTTP heads, then frames.

    Pure: no sockets, no threads. Feed it the bytes in the order they travelled
    with :meth:`feed`; it returns the records they completed. ``tls=True``
    records every chunk as opaque ``bytes``.
    """

    def __init__(
        self,
        connection: int,
        direction: Direction,
        now: Callable[[], float],
        *,
        tls: bool = False,
    ) -> None:
        self.connection = connection
        self.direction = direction
        self._now = now
        self._reader = StreamReader()
        self._pending = bytearray()  # fed bytes not yet part of a record
        self._records: list[WireRecord] = []
        self._opaque = tls
        self._parser = self._parse()
        next(self._parser)

    def feed(self, data: bytes) -> list[WireRecord]:
        """Decode ``data`` (the next bytes of this direction); return new records."""
        if self._opaque:
            return [self._record("bytes", len(data), payload=data)]
        self._pending += data
        self._reader.feed_data(data)
        try:
            next(self._parser)
        except StopIteration:  # the parser gave up: the rest is opaque
            self._opaque = True
        except (ProtocolError, PayloadTooBig, ValueError, LookupError, WebSocketException) as error:
            self._records.append(self._record("error", 0, text=f"cannot decode: {error}"))
            self._opaque = True
        if self._opaque and self._pending:
            rest = bytes(self._pending)
            self._records.append(self._record("bytes", len(rest), payload=rest))
            self._pending.clear()
        records, self._records = self._records, []
        return records

    def _record(self, kind: Kind, length: int, **fields: Any) -> WireRecord:
        return WireRecord(self._now(), self.connection, self.direction, kind, length, **fields)

    def _take(self) -> bytes:
        """The bytes of what was just parsed (fed minus what the reader still holds)."""
        used = len(self._pending) - len(self._reader.buffer)
        taken = bytes(self._pending[:used])
        del self._pending[:used]
        return taken

    def _record_head(self) -> None:
        text = self._take().decode("latin-1")
        self._records.append(self._record("handshake", len(text), text=text))

    def _parse(self) -> Generator[None, None, None]:
        yield  # primed by __init__
        while True:  # HTTP heads until a WebSocket handshake succeeds
            if self.direction == "client->server":
                request = yield from Request.parse(self._reader.read_line)
                self._record_head()
                if "websocket" in _tokens(request.headers, "Upgrade"):
                    break
                continue
            # The body is read here, not by the parser: a body of unknown length is
            # relayed undecoded instead of waited for until the connection ends.
            response = yield from Response.parse(
                self._reader.read_line,
                self._reader.read_exact,
                self._reader.read_to_eof,
                proxy=True,
            )
            self._record_head()
            if response.status_code == 101:
                break
            lengths = response.headers.get_all("Content-Length")
            if len(lengths) != 1 or not lengths[0].isdigit():
                return  # a body of unknown length: relay the rest undecoded
            if int(lengths[0]):
                yield from self._reader.read_exact(int(lengths[0]))
                body = self._take()
                self._records.append(self._record("bytes", len(body), payload=body))
        masked = self.direction == "client->server"  # RFC 6455: clients mask, servers do not
        while True:
            frame = yield from Frame.parse(
                self._reader.read_exact, mask=masked, max_size=MAX_DECODED_FRAME
            )
            raw = self._take()
            header_length = len(raw) - len(frame.data)
            header = raw[:header_length]
            self._records.append(
                self._record(
                    "frame",
                    len(frame.data),
                    opcode=int(frame.opcode),
                    fin=frame.fin,
                    rsv=(frame.rsv1, frame.rsv2, frame.rsv3),
                    masked=masked,
                    header=header,
                    mask=header[-4:] if masked else b"",
                    payload=bytes(frame.data),
                )
            )


def _tokens(headers: Headers, name: str) -> set[str]:
    """The comma-separated tokens of every ``name`` header, lower-case."""
    return {t.strip().lower() for value in headers.get_all(name) for t in value.split(",")}


# ------------------------------------------------------------------ the relay


@dataclass
class _Watcher:
    """A callback to run on its own loop after new records; at most one run pending."""

    loop: asyncio.AbstractEventLoop | None
    callback: Callable[[], None]
    scheduled: bool = False


class WireTap(LoopService):
    """A TCP relay between a client and a WebSocket server that records every frame.

    Args:
        target_url: the server's socket URL (``ws://127.0.0.1:8765/chat``).
        clock: where record times are read (seconds since :meth:`start`).
        max_records: records kept; the oldest go first.

    Start and stop it like :class:`~wslab.server.ChatServer`: ``start()`` returns
    the tap once it listens on a free loopback port, ``stop()`` closes every
    relayed connection (as if the network dropped: the peers see no close frame
    from the tap) and joins the thread (safe to repeat), and ``with
    WireTap(url) as tap:`` does both. Call them from any thread but the tap's.
    """

    _kind = "tap"

    def __init__(
        self, target_url: str, *, clock: Clock | None = None, max_records: int = 10_000
    ) -> None:
        parts = urlsplit(target_url)
        if parts.scheme not in ("ws", "wss") or parts.hostname is None:
            raise ValueError(f"expected a ws:// or wss:// URL, got {target_url!r}")
        self.target_url = target_url
        self.tls = parts.scheme == "wss"
        self._target = (parts.hostname, parts.port or (443 if self.tls else 80))
        self._clock = clock or SystemClock()
        self.max_records = max_records
        self._started_at = 0.0
        self._records: list[WireRecord] = []
        self._records_lock = threading.Lock()
        self._connections = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._port = 0
        self._watchers: list[_Watcher] = []
        super().__init__("wslab-wiretap")

    @property
    def _listening(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ what it shows

    @property
    def port(self) -> int:
        """The port the tap listens on (0 before :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The URL to connect to instead of :attr:`target_url`: same path, the tap's port."""
        parts = urlsplit(self.target_url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self._port}"))

    @property
    def page_url(self) -> str:
        """The server's page (``GET /``) through the tap, for a browser."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._port}/"

    @property
    def records(self) -> list[WireRecord]:
        """Everything recorded, oldest first (a copy). Any thread."""
        with self._records_lock:
            return list(self._records)

    @property
    def frames(self) -> list[WireRecord]:
        """The WebSocket frames recorded, oldest first (a copy). Any thread."""
        return [r for r in self.records if r.kind == "frame"]

    @property
    def handshakes(self) -> list[WireRecord]:
        """The HTTP requests and responses recorded, oldest first. Any thread."""
        return [r for r in self.records if r.kind == "handshake"]

    async def wait_for(
        self, predicate: Callable[[list[WireRecord]], bool], timeout: float = 10.0
    ) -> list[WireRecord]:
        """Wait until ``predicate(records)`` holds; return those records.

        For asyncio code on any loop (a notebook cell: ``await tap.wait_for(...)``).
        Records arrive on the tap's thread, so this looks at them every few
        milliseconds.

        Raises:
            TimeoutError: the records did not satisfy ``predicate`` within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(records := self.records):
            if loop.time() > deadline:
                raise TimeoutError(f"the tap did not record what was awaited within {timeout} s")
            await asyncio.sleep(0.005)
        return records

    def clear(self) -> None:
        """Forget the records so far (connections go on being recorded). Any thread."""
        with self._records_lock:
            self._records.clear()
        self._notify()

    def table(self, records: list[WireRecord] | None = None) -> str:
        """The records as plain text, one line each: what a cell can print."""
        return "\n".join(str(r) for r in (self.records if records is None else records))

    def view(self, rows: int = 50) -> ipywidgets.HTML:
        """A widget table of the last ``rows`` records, kept up to date live.

        Call it from the kernel's thread (a notebook cell): the widget is then
        only ever updated on that thread's loop. See :func:`wslab.lab.tap.view`.
        """
        from .lab.tap import view

        return view(self, rows)

    def refresh(self) -> None:
        """Redraw this tap's views now. Call it from the thread that made them."""
        from .lab.tap import refresh

        refresh(self)

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after new records (or :meth:`clear`), on the caller's loop.

        Calls are coalesced: at most one is pending at a time. Without a running
        loop in the calling thread the callback is never called (call it yourself).
        The caller's thread; ``callback`` must not raise (what it raises is logged).
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._watchers.append(_Watcher(loop, callback))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<WireTap {self.url} -> {self.target_url} {state}, {len(self.records)} records>"

    # ------------------------------------------------------------------ tap thread

    def _now(self) -> float:
        return round(self._clock.monotonic() - self._started_at, 6)

    def _add(self, records: list[WireRecord]) -> None:
        if not records:
            return
        with self._records_lock:
            self._records.extend(records)
            del self._records[: -self.max_records]
        self._notify()

    def _notify(self) -> None:
        for watcher in self._watchers:
            if watcher.loop is None or watcher.scheduled or watcher.loop.is_closed():
                continue
            watcher.scheduled = True

            def run(watcher: _Watcher = watcher) -> None:
                watcher.scheduled = False
                try:
                    watcher.callback()
                except Exception:  # a view must never break the relay
                    logger.exception("a wire tap watcher failed")

            watcher.loop.call_soon_threadsafe(run)

    async def _listen(self) -> None:
        self._started_at = self._clock.monotonic()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        name = f"wslab-wiretap-{self._port}"
        self._loop_thread.name = threading.current_thread().name = name

    async def _shutdown(self, close_timeout: float) -> None:
        server = self._server
        if server is None:
            return
        server.close()
        # Abort rather than cancel: a relay then ends as if the network dropped.
        for transport in list(self._transports):
            transport.abort()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await server.wait_closed()
        self._server = None

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._connections += 1
        number = self._connections
        self._transports.add(client_writer.transport)
        server_writer: asyncio.StreamWriter | None = None
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection(*self._target)
                self._transports.add(server_writer.transport)
            except OSError as error:
                self._add(
                    [
                        WireRecord(
                            self._now(),
                            number,
                            "client->server",
                            "error",
                            0,
                            text=f"cannot reach {self.target_url}: {error}",
                        )
                    ]
                )
                client_writer.transport.abort()
                return
            upstream = DirectionDecoder(number, "client->server", self._now, tls=self.tls)
            downstream = DirectionDecoder(number, "server->client", self._now, tls=self.tls)
            writers = (client_writer, server_writer)
            try:
                await asyncio.gather(
                    self._pump(client_reader, server_writer, upstream, writers),
                    self._pump(server_reader, client_writer, downstream, writers),
                )
            finally:
                for writer in writers:
                    writer.transport.abort()
        finally:
            self._relays.discard(task)
            self._transports.discard(client_writer.transport)
            if server_writer is not None:
                self._transports.discard(server_writer.transport)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: DirectionDecoder,
        writers: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """Copy one direction until its end: a clean end half-closes, a reset resets both."""
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)  # the bytes as read, before anything looks at them
                try:
                    self._add(decoder.feed(data))
                except Exception:  # decoding must never stop the relay
                    logger.exception("wire tap decoder failed")
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            for each in writers:  # a reset on one side is passed on to the other
                each.transport.abort()

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

    caller thread (a notebook cell)          tap thread (its own asyncio loop)
    start() / stop() / frames / view()  ---> accepts, relays, decodes, records
    widget views, on the kernel loop    <--- call_soon_threadsafe after new records

Records are appended under a lock by the tap thread; :attr:`WireTap.records`
returns a copy, so any thread may read it.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from .clock import Clock, SystemClock

if TYPE_CHECKING:
    import ipywidgets  # type: ignore[import-untyped]

__all__ = ["DirectionDecoder", "WireRecord", "WireTap", "build_frame", "describe_opcode"]

logger = logging.getLogger("wslab.wiretap")

Direction = Literal["client->server", "server->client"]
Kind = Literal["handshake", "frame", "bytes", "error"]

#: How many characters of a payload :attr:`WireRecord.preview` shows.
PREVIEW_CHARS = 60
_MAX_HEAD = 16 * 1024  # an HTTP head longer than this is not a handshake
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
        except (ProtocolError, PayloadTooBig, ValueError) as error:
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

    def _parse(self) -> Generator[None, None, None]:
        yield  # primed by __init__
        while True:  # HTTP heads until a WebSocket handshake succeeds
            head = b""
            while not head.endswith(b"\r\n\r\n") and head != b"\r\n":
                head += yield from self._reader.read_line(_MAX_HEAD, ValueError)
                if len(head) > _MAX_HEAD:
                    raise ValueError("not an HTTP head")
            text = self._take().decode("latin-1")
            self._records.append(self._record("handshake", len(text), text=text))
            start, headers = _parse_head(text)
            if self.direction == "client->server":
                if "websocket" in _tokens(headers.get("upgrade", "")):
                    break
            else:
                if start.split(" ")[1:2] == ["101"]:
                    break
                length = int(headers.get("content-length", "-1"))
                if length < 0:
                    return  # a body of unknown length: relay the rest undecoded
                if length:
                    yield from self._reader.read_exact(length)
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


def _parse_head(text: str) -> tuple[str, dict[str, str]]:
    """An HTTP head's start line, and its headers by lower-case name."""
    start, *lines = text.split("\r\n")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return start, headers


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


# ------------------------------------------------------------------ the relay


@dataclass
class _Views:
    """The widget views of one tap and the loop they live on."""

    loop: asyncio.AbstractEventLoop | None
    widgets: list[Any] = field(default_factory=list)
    scheduled: bool = False


class WireTap:
    """A TCP relay between a client and a WebSocket server that records every frame.

    Args:
        target_url: the server's socket URL (``ws://127.0.0.1:8765/chat``).
        clock: where record times are read (seconds since :meth:`start`).
        max_records: records kept; the oldest go first.

    Start and stop it like :class:`~wslab.server.ChatServer`: ``start()`` returns
    the tap once it listens on a free loopback port, ``stop()`` closes every
    relayed connection and joins the thread (safe to repeat), and ``with
    WireTap(url) as tap:`` does both.
    """

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
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._port = 0
        self._views: list[_Views] = []

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> WireTap:
        """Listen on 127.0.0.1 (a free port); return once listening. Safe to repeat.

        Any thread but the tap's own may call it.
        """
        with self._lock:
            if self.running:
                return self
            self._ready.clear()
            self._startup_error = None
            self._started_at = self._clock.monotonic()
            self._thread = threading.Thread(target=self._run, name="wslab-wiretap", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout):
                raise TimeoutError(f"the tap did not start within {timeout} s")
            if self._startup_error is not None:
                self._thread.join()
                self._thread = None
                raise self._startup_error
        return self

    def stop(self) -> None:
        """Close every relayed connection, stop listening and join the thread. Safe twice.

        Any thread but the tap's own may call it. Relayed connections end as if
        the network dropped (the peers see no close frame from the tap).
        """
        with self._lock:
            loop, thread, stopping = self._loop, self._thread, self._stopping
            if loop is None or thread is None or stopping is None:
                return
            if threading.current_thread() is thread:
                raise RuntimeError("the tap cannot be stopped from its own thread")
            loop.call_soon_threadsafe(stopping.set)
            thread.join()
            self._thread = None

    def __enter__(self) -> WireTap:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the tap thread is alive and listening."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

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
        self._schedule_views()

    def table(self, records: list[WireRecord] | None = None) -> str:
        """The records as plain text, one line each: what a cell can print."""
        return "\n".join(str(r) for r in (self.records if records is None else records))

    def view(self, rows: int = 50) -> ipywidgets.HTML:
        """A widget table of the last ``rows`` records, kept up to date live.

        Call it from the kernel's thread (a notebook cell): the widget is then
        only ever updated on that thread's loop.
        """
        import ipywidgets

        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        widget = ipywidgets.HTML(_table_html(self.records[-rows:]))
        widget.add_class("wslab-wiretap")
        widget.wslab_rows = rows
        views = next((v for v in self._views if v.loop is loop), None)
        if views is None:
            views = _Views(loop)
            self._views.append(views)
        views.widgets.append(widget)
        return widget

    def refresh(self) -> None:
        """Redraw the views now. Call it from the thread that made them."""
        records = self.records
        for views in self._views:
            for widget in views.widgets:
                widget.value = _table_html(records[-widget.wslab_rows :])

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
        self._schedule_views()

    def _schedule_views(self) -> None:
        for views in self._views:
            if views.loop is None or views.scheduled or views.loop.is_closed():
                continue
            views.scheduled = True

            def redraw(views: _Views = views) -> None:
                views.scheduled = False
                try:
                    records = self.records
                    for widget in views.widgets:
                        widget.value = _table_html(records[-widget.wslab_rows :])
                except Exception:  # a view must never break the relay
                    logger.exception("could not redraw a wire tap view")

            views.loop.call_soon_threadsafe(redraw)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self._port)
        except BaseException as error:  # reported to start(), in the caller's thread
            self._startup_error = error
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        threading.current_thread().name = f"wslab-wiretap-{self._port}"
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        # Abort rather than cancel: a relay then ends as if the network dropped.
        for transport in list(self._transports):
            transport.abort()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()
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


# ------------------------------------------------------------------ the widget table

_TD = 'style="padding:1px 8px;text-align:left;vertical-align:top;white-space:nowrap"'
_TH = 'style="padding:1px 8px;text-align:left;border-bottom:1px solid #d9dee6"'


def _table_html(records: list[WireRecord]) -> str:
    head = "".join(
        f"<th {_TH}>{h}</th>"
        for h in ("time", "#", "dir", "opcode", "FIN", "masked", "length", "header", "payload")
    )
    rows = []
    for r in records:
        cells: tuple[str, ...]
        if r.kind == "frame":
            cells = (
                f"{r.time:.3f}",
                str(r.connection),
                r.arrow,
                r.opcode_name,
                "1" if r.fin else "0",
                "1" if r.masked else "0",
                str(r.length),
                r.header.hex(" "),
                r.preview,
            )
            rows.append(
                "<tr>" + "".join(f"<td {_TD}>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        else:
            cells = (f"{r.time:.3f}", str(r.connection), r.arrow, r.kind)
            text = r.text if r.kind == "handshake" else r.preview
            rows.append(
                "<tr>"
                + "".join(f"<td {_TD}>{html.escape(c)}</td>" for c in cells)
                + f'<td colspan="5" {_TD}><pre style="margin:0;font-size:smaller">'
                f"{html.escape(text.rstrip())}</pre></td></tr>"
            )
    if not rows:
        rows.append(f'<tr><td colspan="9" {_TD}><i>nothing captured yet</i></td></tr>')
    return (
        '<table class="wslab-wiretap-table" style="font-family:monospace;font-size:12px;'
        f'border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )

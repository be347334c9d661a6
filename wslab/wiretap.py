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

What the tap keeps is bounded (it runs in a learner's kernel): each record keeps at
most ``max_payload`` bytes of what it covers (``length`` stays the true length), all
records at most ``max_bytes``, and a request body over ``max_http_body`` before the
handshake is answered ``413`` by the tap instead of relayed.

HTTP heads are parsed with websockets' own HTTP/1.1 parser
(:class:`websockets.http11.Request`, :class:`~websockets.http11.Response`), frames
with its :class:`~websockets.frames.Frame` parser: the tap shows the bytes as the
library reads them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from websockets.datastructures import Headers
from websockets.exceptions import PayloadTooBig, ProtocolError, WebSocketException
from websockets.frames import CTRL_OPCODES, Close, Frame, Opcode
from websockets.http11 import Request, Response, parse_headers
from websockets.streams import StreamReader

from .clock import Clock, SystemClock
from .loopthread import LoopService, stop_accepting

if TYPE_CHECKING:
    import ipywidgets  # type: ignore[import-untyped]

__all__ = ["DirectionDecoder", "WireRecord", "WireTap", "build_frame", "describe_opcode"]

logger = logging.getLogger("wslab.wiretap")

Direction = Literal["client->server", "server->client"]
Kind = Literal["handshake", "frame", "bytes", "error"]

#: How many characters of a payload :attr:`WireRecord.preview` shows.
PREVIEW_CHARS = 60
#: Bytes of one payload (a frame's, an HTTP body's, undecoded bytes) or of one HTTP
#: head that a record keeps by default; :attr:`WireRecord.length` is the true length.
MAX_PAYLOAD = 64 * 2**10
#: Bytes of payloads and heads all records keep together by default (oldest go first).
MAX_BYTES = 16 * 2**20
#: The largest HTTP request body relayed before the WebSocket handshake by default.
MAX_HTTP_BODY = 2**20
#: A control frame (close, ping, pong) never carries more (RFC 6455 section 5.5).
MAX_CONTROL_PAYLOAD = 125
_CHUNK = 64 * 1024
#: After answering 413, how long the tap reads (and drops) what the client still
#: sends, so that the client reads the answer instead of a reset.
_LINGER = 2.0

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

    ``length`` is always the true length; ``payload`` (and a head's ``text``)
    keep at most the tap's ``max_payload`` first bytes of it: :attr:`truncated`
    says when they hold less.
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
    def truncated(self) -> bool:
        """Whether ``payload`` (or a head's ``text``) holds only the first bytes of ``length``."""
        if self.kind == "handshake":
            return len(self.text) < self.length
        return self.kind != "error" and len(self.payload) < self.length

    @property
    def kept(self) -> int:
        """Bytes this record keeps of what travelled: its payload and its text."""
        return len(self.payload) + len(self.text)

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
            text = _utf8(self.payload, self.truncated)
            if text is not None:
                return _shorten(text)
        return _shorten(self.payload.hex(" "))

    @property
    def raw(self) -> bytes:
        """The bytes as they travelled; for a frame, its payload masked again if it was.

        For a :attr:`truncated` record, only the first of them.
        """
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


def _utf8(payload: bytes, truncated: bool) -> str | None:
    """``payload`` as text, or None if it is not UTF-8 (a character cut at its end is dropped)."""
    try:
        return payload.decode()
    except UnicodeDecodeError as error:
        if truncated and error.reason == "unexpected end of data":
            return payload[: error.start].decode()
        return None  # binary data, or UTF-8 split across fragments


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


class _BodyTooLarge(Exception):
    """A request body over the decoder's ``max_http_body`` (``size``: its bytes, or so far)."""

    def __init__(self, size: int, known: bool) -> None:
        super().__init__(size)
        self.size = size
        self.known = known


class DirectionDecoder:
    """Decode one direction of one connection: HTTP heads, then frames.

    Pure: no sockets, no threads. Feed it the bytes in the order they travelled
    with :meth:`feed`; it returns the records they completed. ``tls=True``
    records every chunk as opaque ``bytes``.

    A record keeps at most ``max_payload`` bytes of a payload or head (its
    ``length`` is the true one); the rest is passed over as it arrives, so a
    large frame is never held whole. In the client's direction, a request body
    (or undecodable bytes) over ``max_http_body`` before the WebSocket handshake
    ends decoding with an ``error`` record and sets :attr:`refused`: the relay
    then answers ``413`` instead of relaying more.
    """

    def __init__(
        self,
        connection: int,
        direction: Direction,
        now: Callable[[], float],
        *,
        tls: bool = False,
        max_payload: int = MAX_PAYLOAD,
        max_http_body: int | None = None,
    ) -> None:
        if max_payload < MAX_CONTROL_PAYLOAD:
            raise ValueError(f"max_payload must be at least {MAX_CONTROL_PAYLOAD} bytes")
        self.connection = connection
        self.direction = direction
        self.max_payload = max_payload
        self.max_http_body = max_http_body
        #: The size of the request body refused (see the class), else None.
        self.refused: int | None = None
        self._now = now
        self._reader = StreamReader()
        self._consumed = bytearray()  # the kept bytes parsed since the last record
        self._skipped = 0  # bytes parsed since the last record and not kept
        self._records: list[WireRecord] = []
        self._opaque = tls
        # Bytes from the client that are neither a head nor a frame count as body.
        self._body: int | None = None if tls or direction != "client->server" else 0
        self._parser = self._parse()
        next(self._parser)

    def feed(self, data: bytes) -> list[WireRecord]:
        """Decode ``data`` (the next bytes of this direction); return new records."""
        if self.refused is not None:
            return []
        try:
            if self._opaque:
                self._opaque_bytes(data, len(data))
            else:
                self._reader.feed_data(data)
                self._decode()
        except _BodyTooLarge as over:
            self._refuse(over)
        records, self._records = self._records, []
        return records

    def _decode(self) -> None:
        try:
            next(self._parser)
        except StopIteration:  # the parser gave up: the rest is opaque
            self._give_up()
        except _BodyTooLarge:
            raise
        except (
            ProtocolError,
            PayloadTooBig,
            ValueError,
            LookupError,
            NotImplementedError,
            WebSocketException,
        ) as error:
            self._records.append(self._record("error", 0, text=f"cannot decode: {error}"))
            self._give_up()

    def _give_up(self) -> None:
        """Record what is not decoded yet as ``bytes``; the rest of the direction follows."""
        self._opaque = True
        rest = bytes(self._consumed + self._reader.buffer[: self.max_payload])
        length = len(self._consumed) + self._skipped + len(self._reader.buffer)
        self._consumed.clear()
        self._skipped = 0
        self._reader.discard()
        if length:
            self._opaque_bytes(rest, length)

    def _opaque_bytes(self, data: bytes, length: int) -> None:
        self._records.append(self._record("bytes", length, payload=data[: self.max_payload]))
        self._count_body(length, known=False)

    def _count_body(self, length: int, *, known: bool) -> None:
        """Count request-body bytes before the handshake; raise once over the limit."""
        if self._body is None or self.max_http_body is None:
            return
        self._body = length if known else self._body + length
        if self._body > self.max_http_body:
            raise _BodyTooLarge(self._body, known)

    def _refuse(self, over: _BodyTooLarge) -> None:
        self.refused = over.size
        size = f"{over.size} bytes" if over.known else f"over {over.size - 1} bytes so far"
        self._records.append(
            self._record(
                "error",
                0,
                text=f"request body of {size} is over max_http_body ({self.max_http_body} "
                "bytes): the tap answers 413 and closes the connection",
            )
        )

    def _record(self, kind: Kind, length: int, **fields: Any) -> WireRecord:
        return WireRecord(self._now(), self.connection, self.direction, kind, length, **fields)

    def _take(self) -> tuple[bytes, int]:
        """The kept bytes of what was just parsed, and how many bytes it was in all."""
        taken, length = bytes(self._consumed), len(self._consumed) + self._skipped
        self._consumed.clear()
        self._skipped = 0
        return taken, length

    def _read_line(
        self, limit: int, too_long: type[Exception] = RuntimeError
    ) -> Generator[None, None, bytes]:
        line = yield from self._reader.read_line(limit, too_long)
        self._consumed += line
        return bytes(line)

    def _read_exact(self, n: int) -> Generator[None, None, bytes]:
        """Read ``n`` bytes; return the first ``max_payload``, pass over the rest as it comes."""
        kept = yield from self._reader.read_exact(min(n, self.max_payload))
        self._consumed += kept
        rest = n - len(kept)
        while rest:
            while not self._reader.buffer:
                yield
            dropped = min(rest, len(self._reader.buffer))
            del self._reader.buffer[:dropped]
            self._skipped += dropped
            rest -= dropped
        return bytes(kept)

    def _record_head(self) -> None:
        head, length = self._take()
        self._records.append(
            self._record("handshake", length, text=head[: self.max_payload].decode("latin-1"))
        )

    def _record_body(self, length: int) -> Generator[None, None, None]:
        if length:
            yield from self._read_exact(length)
            body, length = self._take()
            self._records.append(self._record("bytes", length, payload=body))

    def _parse(self) -> Generator[None, None, None]:
        yield  # primed by __init__
        while True:  # HTTP heads until a WebSocket handshake succeeds
            if self.direction == "client->server":
                headers = yield from self._request_head()
                self._record_head()
                self._body = 0
                if "websocket" in _tokens(headers, "Upgrade"):
                    self._body = None  # what follows is frames, of any size
                    break
                if "Transfer-Encoding" in headers:
                    return  # a body of unknown length: relay (and count) it undecoded
                self._count_body(_content_length(headers), known=True)
                yield from self._record_body(_content_length(headers))
                continue
            # The body is read here, not by the parser: a body of unknown length is
            # relayed undecoded instead of waited for until the connection ends.
            response = yield from Response.parse(
                self._read_line, self._read_exact, self._reader.read_to_eof, proxy=True
            )
            self._record_head()
            if response.status_code == 101:
                break
            lengths = response.headers.get_all("Content-Length")
            if len(lengths) != 1 or not lengths[0].isdigit():
                return  # a body of unknown length: relay the rest undecoded
            yield from self._record_body(int(lengths[0]))
        yield from self._parse_frames()

    def _request_head(self) -> Generator[None, None, Headers]:
        """A request head's headers, read by websockets' parser, with a body or not."""
        try:
            request = yield from Request.parse(self._read_line)
        except (ValueError, NotImplementedError):
            # The parser refuses a head announcing a body once it has read it all;
            # the tap relays such a request, so it reads the head's headers again.
            head = bytes(self._consumed)
            if not head.endswith(b"\r\n\r\n"):
                raise
            reader = StreamReader()
            reader.feed_data(head.partition(b"\r\n")[2])
            reader.feed_eof()
            try:
                next(parse_headers(reader.read_line))
            except StopIteration as parsed:
                headers: Headers = parsed.value
                return headers
            raise
        return request.headers

    def _parse_frames(self) -> Generator[None, None, None]:
        masked = self.direction == "client->server"  # RFC 6455: clients mask, servers do not
        while True:
            frame = yield from Frame.parse(self._read_exact, mask=masked, max_size=None)
            length = len(frame.data) + self._skipped  # the true payload length
            if frame.opcode in CTRL_OPCODES and length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frame too long")
            raw, _ = self._take()
            header_length = len(raw) - len(frame.data)
            header = raw[:header_length]
            self._records.append(
                self._record(
                    "frame",
                    length,
                    opcode=int(frame.opcode),
                    fin=frame.fin,
                    rsv=(frame.rsv1, frame.rsv2, frame.rsv3),
                    masked=masked,
                    header=header,
                    mask=header[-4:] if masked else b"",
                    payload=bytes(frame.data),
                )
            )


def _content_length(headers: Headers) -> int:
    """The length of a request's body (0 without one); ValueError if it is unclear."""
    lengths = set(headers.get_all("Content-Length"))
    if not lengths:
        return 0
    if len(lengths) != 1 or not (value := lengths.pop()).isdigit():
        raise ValueError(f"invalid Content-Length: {', '.join(headers.get_all('Content-Length'))}")
    return int(value)


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
        max_bytes: bytes of payloads and heads all records keep together
            (:attr:`WireRecord.kept`); the oldest records go first.
        max_payload: bytes one record keeps of its payload or head (at least
            125); :attr:`WireRecord.length` stays the true length.
        max_http_body: the largest HTTP request body relayed before the
            WebSocket handshake; a request with a larger one is answered
            ``413 Content Too Large`` by the tap and its connection closed.

    Limits bound what the tap keeps and decodes; the relay itself forwards every
    byte unaltered (but those of a refused body).

    Start and stop it like :class:`~wslab.server.ChatServer`: ``start()`` returns
    the tap once it listens on a free loopback port, ``stop()`` closes every
    relayed connection (as if the network dropped: the peers see no close frame
    from the tap) and joins the thread (safe to repeat), and ``with
    WireTap(url) as tap:`` does both. Call them from any thread but the tap's.
    """

    _kind = "tap"

    def __init__(
        self,
        target_url: str,
        *,
        clock: Clock | None = None,
        max_records: int = 10_000,
        max_bytes: int = MAX_BYTES,
        max_payload: int = MAX_PAYLOAD,
        max_http_body: int = MAX_HTTP_BODY,
    ) -> None:
        parts = urlsplit(target_url)
        if parts.scheme not in ("ws", "wss") or parts.hostname is None:
            raise ValueError(f"expected a ws:// or wss:// URL, got {target_url!r}")
        if max_payload < MAX_CONTROL_PAYLOAD:
            raise ValueError(f"max_payload must be at least {MAX_CONTROL_PAYLOAD} bytes")
        if max_bytes < max_payload or max_records < 1 or max_http_body < 0:
            raise ValueError("need max_bytes >= max_payload, max_records >= 1, max_http_body >= 0")
        self.target_url = target_url
        self.tls = parts.scheme == "wss"
        self._target = (parts.hostname, parts.port or (443 if self.tls else 80))
        self._clock = clock or SystemClock()
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_payload = max_payload
        self.max_http_body = max_http_body
        self._started_at = 0.0
        self._records: deque[WireRecord] = deque()
        self._kept = 0  # the sum of the records' kept bytes
        self._records_lock = threading.Lock()
        self._connections = 0
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._closing = False
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
    def kept_bytes(self) -> int:
        """Bytes of payloads and heads the records keep (at most ``max_bytes``). Any thread."""
        with self._records_lock:
            return self._kept

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
            self._kept = 0
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
            for record in records:
                self._records.append(record)
                self._kept += record.kept
            while len(self._records) > self.max_records or self._kept > self.max_bytes:
                self._kept -= self._records.popleft().kept
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
        self._closing = False
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accepted(self), "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        name = f"wslab-wiretap-{self._port}"
        self._loop_thread.name = threading.current_thread().name = name

    async def _shutdown(self, close_timeout: float) -> None:
        server = self._server
        if server is None:
            return
        # From here a connection accepted late is aborted as it arrives (_Accepted).
        self._closing = True
        await stop_accepting(server)
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
        server_writer: asyncio.StreamWriter | None = None
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection(*self._target)
                self._transports.add(server_writer.transport)
            except OSError as error:
                text = f"cannot reach {self.target_url}: {error}"
                self._add(
                    [WireRecord(self._now(), number, "client->server", "error", 0, text=text)]
                )
                client_writer.transport.abort()
                return
            relay = _Relay(
                self, number, (client_reader, client_writer), (server_reader, server_writer)
            )
            await relay.run()
        finally:
            self._relays.discard(task)
            self._transports.discard(client_writer.transport)
            if server_writer is not None:
                self._transports.discard(server_writer.transport)


class _Accepted(asyncio.StreamReaderProtocol):
    """A connection the tap accepted: its transport is known to the tap from the moment
    it is made, so that a shutdown aborts it even before its relay runs, and one made
    while the tap closes is aborted at once. Tap thread only."""

    def __init__(self, tap: WireTap) -> None:
        super().__init__(asyncio.StreamReader(), tap._relay)
        self._tap = tap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        if self._tap._closing:
            transport.abort()
            return
        self._tap._transports.add(transport)
        super().connection_made(transport)


_Ends = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Relay:
    """One relayed connection: a pump each way, and the refusal of a too large body.

    Runs on the tap's thread.
    """

    def __init__(self, tap: WireTap, number: int, client: _Ends, server: _Ends) -> None:
        self.tap = tap
        self.number = number
        self.client = client
        self.server = server
        self.refused = False
        self.answered = False  # the server's side ended: the client was sent its EOF

    async def run(self) -> None:
        tap, number = self.tap, self.number
        limits: dict[str, Any] = {"tls": tap.tls, "max_payload": tap.max_payload}
        upstream = DirectionDecoder(
            number, "client->server", tap._now, max_http_body=tap.max_http_body, **limits
        )
        downstream = DirectionDecoder(number, "server->client", tap._now, **limits)
        try:
            await asyncio.gather(
                self._pump(self.client[0], self.server[1], upstream),
                self._pump(self.server[0], self.client[1], downstream),
            )
        finally:
            for _, writer in (self.client, self.server):
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: DirectionDecoder
    ) -> None:
        """Copy one direction until its end: a clean end half-closes, a reset resets both."""
        try:
            while data := await reader.read(_CHUNK):
                if self.refused:
                    return
                writer.write(data)  # the bytes as read, before anything looks at them
                try:
                    self.tap._add(decoder.feed(data))
                except Exception:  # decoding must never stop the relay
                    logger.exception("wire tap decoder failed")
                if decoder.refused is not None:
                    await self._refuse(decoder.refused)
                    return
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing() and not self.refused:
                writer.write_eof()
                self.answered = self.answered or writer is self.client[1]
        except (ConnectionError, OSError):
            if not self.refused:
                for _, each in (self.client, self.server):  # a reset is passed on
                    each.transport.abort()

    async def _refuse(self, size: int) -> None:
        """Answer 413 in the server's place, drop the server side, then close."""
        self.refused = True
        self.server[1].transport.abort()
        limit = self.tap.max_http_body
        logger.warning(
            "wire tap %s: connection %d: a request body over max_http_body (%d bytes "
            "announced or relayed, limit %d): answered 413",
            self.tap.url,
            self.number,
            size,
            limit,
        )
        body = f"Request body over the WireTap limit of {limit} bytes (max_http_body).\n"
        reader, writer = self.client
        if self.answered or writer.is_closing():
            return  # the server answered and ended first: nothing more to send
        writer.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body.encode())
        )
        writer.write_eof()
        try:
            await writer.drain()
            async with asyncio.timeout(_LINGER):  # read and drop what the client still sends
                while await reader.read(_CHUNK):
                    pass
        except (TimeoutError, ConnectionError, OSError):
            pass

"""WireTap: a relay that records the handshake and the frames, and alters nothing."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import trustme
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.conftest import WAIT
from wslab import BlockingChatClient, ChatClient, ChatServer
from wslab.lab.tap import table_html
from wslab.wiretap import DirectionDecoder, WireRecord, WireTap, build_frame

_CHUNK_SIZE = 64 * 1024

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
MASK = b"\x37\xfa\x21\x3d"


def synchronous(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded in time (fixtures pass through)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 6 * WAIT))

    return run


@pytest.fixture
def tap_for(make_server: Callable[..., ChatServer]) -> Iterator[Callable[[str], WireTap]]:
    """Start WireTaps in front of a URL; stop them all at teardown."""
    taps: list[WireTap] = []

    def make(url: str) -> WireTap:
        tap = WireTap(url).start()
        taps.append(tap)
        return tap

    yield make
    for tap in taps:
        tap.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll the tap's records (they are filled on the tap's thread) until predicate holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the tap did not record what was expected")
        await asyncio.sleep(0.005)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def header_value(text: str, name: str) -> str:
    for line in text.split("\r\n"):
        field, _, value = line.partition(":")
        if field.lower() == name.lower():
            return value.strip()
    raise KeyError(name)


async def raw_handshake(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a WebSocket by hand through ``url`` (a tap): fixed key, no library."""
    port = int(url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer


# ------------------------------------------------------------------ with a real client and server


@synchronous
async def test_the_handshake_is_captured_as_text(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    await client.close()
    request, response = tap.handshakes[:2]
    assert request.direction == "client->server"
    assert request.text.startswith("GET /chat HTTP/1.1\r\n")
    assert response.direction == "server->client"
    assert response.text.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert response.text.endswith("\r\n\r\n")
    key = header_value(request.text, "Sec-WebSocket-Key")
    assert header_value(response.text, "Sec-WebSocket-Accept") == accept_for(key)
    # The first frames are the chat's own: connecting, then connected.
    first, second = tap.frames[:2]
    assert (first.direction, first.opcode, first.masked) == ("client->server", Opcode.TEXT, True)
    assert b'"event":"connecting"' in first.payload
    assert (second.direction, second.masked) == ("server->client", False)
    assert b'"event":"connected"' in second.payload


@synchronous
async def test_a_fragmented_message_is_several_frames_and_one_message(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    ada = ChatClient(tap.url, "Ada", reconnect=False)
    bob = ChatClient(server.url, "Bob", reconnect=False)
    await ada.connect(timeout=WAIT)
    await bob.connect(timeout=WAIT)
    parts = ['{"event":"writeMessage",', '"message":"in three",', '"clientMessageId":"m-frag"}']
    socket = ada._socket
    assert socket is not None
    await socket.send(parts)  # an iterable: one message, sent as fragments
    await bob.wait_for(lambda c: "in three" in c.texts(), WAIT)
    await ada.wait_for(lambda c: "in three" in c.texts(), WAIT)
    sent = [f for f in tap.frames if f.direction == "client->server"][1:]  # after connecting
    assert [f.opcode_name for f in sent[:3]] == ["TEXT", "CONT", "CONT"]
    assert [f.fin for f in sent[:3]] == [False, False, False]
    assert b"".join(f.payload for f in sent[:3]) == "".join(parts).encode()
    assert sent[3].opcode == Opcode.CONT and sent[3].fin and sent[3].payload == b""
    # One message on the other side: Bob's client saw it once.
    assert bob.texts().count("in three") == 1
    await ada.close()
    await bob.close()


@synchronous
async def test_a_ping_is_answered_by_a_pong_with_the_same_payload(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    socket = client._socket
    assert socket is not None
    pong = await socket.ping(b"are you there?")
    await asyncio.wait_for(pong, WAIT)
    await wait_until(lambda: any(f.opcode == Opcode.PONG for f in tap.frames))
    ping = next(f for f in tap.frames if f.opcode == Opcode.PING)
    answer = next(f for f in tap.frames if f.opcode == Opcode.PONG)
    assert (ping.direction, ping.masked) == ("client->server", True)
    assert (answer.direction, answer.masked) == ("server->client", False)
    assert ping.payload == answer.payload == b"are you there?"
    await client.close()


@synchronous
async def test_a_close_with_a_code_is_echoed(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    await client.close(4000, "bye")
    await wait_until(lambda: sum(f.opcode == Opcode.CLOSE for f in tap.frames) == 2)
    ours, theirs = [f for f in tap.frames if f.opcode == Opcode.CLOSE]
    assert ours.payload == b"\x0f\xa0bye" and ours.preview == "4000 bye"
    assert theirs.direction == "server->client" and theirs.payload == ours.payload


@synchronous
async def test_a_close_frame_without_a_code_means_1005(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    reader, writer = await raw_handshake(tap.url)
    writer.write(build_frame(Opcode.CLOSE, b"", mask=MASK))  # an empty close frame
    answer = await asyncio.wait_for(reader.read(), WAIT)  # the server's, then EOF
    assert answer == b"\x88\x00"  # the server echoes an empty close frame
    writer.close()
    await wait_until(lambda: sum(f.opcode == Opcode.CLOSE for f in tap.frames) == 2)
    ours, theirs = [f for f in tap.frames if f.opcode == Opcode.CLOSE]
    assert ours.length == theirs.length == 0
    assert ours.raw == b"\x88\x80" + MASK
    assert ours.preview == "(no status code: 1005)"


@synchronous
async def test_a_dropped_connection_has_no_close_frame(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    assert server.drop(client.id) == 1
    await client.wait_for(lambda c: c.status == "offline", WAIT)
    assert client.last_close == (1006, "")
    assert not any(f.opcode == Opcode.CLOSE for f in tap.frames)


@synchronous
async def test_relayed_frames_are_what_each_end_saw(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    for text in ("one", "two <b>", "é" * 200):  # 400 bytes: a 16-bit length
        await client.send_message(text)
    await client.wait_for(lambda c: not c.pending and len(c.messages) == 3, WAIT)
    await client.close()
    received = [e.data for e in client.events if e.type == "message"]
    down = [f for f in tap.frames if f.direction == "server->client" and f.opcode == Opcode.TEXT]
    assert [f.payload.decode() for f in down] == received
    assert [m["message"] for m in server.history] == ["one", "two <b>", "é" * 200]
    big = next(f for f in tap.frames if f.direction == "client->server" and f.length > 125)
    assert big.header[1] & 0x7F == 126 and len(big.header) == 2 + 2 + 4


@synchronous
async def test_relayed_bytes_are_unaltered_even_when_not_websocket() -> None:
    """A plain TCP peer on each side: both ends receive exactly what the other sent."""
    received: list[bytes] = []
    from_server = os.urandom(200_000)
    done = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(from_server)
        await writer.drain()
        writer.write_eof()
        received.append(await reader.read())
        writer.close()
        done.set()

    target = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    from_client = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n" + os.urandom(300_000)
    with WireTap(f"ws://127.0.0.1:{port}/chat") as tap:
        reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
        for start in range(0, len(from_client), 7_000):  # many chunks of odd sizes
            writer.write(from_client[start : start + 7_000])
            await writer.drain()
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(), WAIT)
        await asyncio.wait_for(done.wait(), WAIT)
        writer.close()
    target.close()
    await target.wait_closed()
    assert got == from_server
    assert received == [from_client]
    # What could not be decoded is recorded as such, never dropped from the relay.
    kinds = {r.kind for r in tap.records}
    assert "handshake" in kinds and ("error" in kinds or "bytes" in kinds)


@synchronous
async def test_an_http_get_without_upgrade_gets_426_through_the_tap(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", tap.port)
    writer.write(b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    await wait_until(lambda: len(tap.handshakes) == 2)
    assert tap.handshakes[1].text.startswith("HTTP/1.1 426")
    assert not tap.frames


def test_stop_is_idempotent_and_leaves_no_thread(make_server: Callable[..., ChatServer]) -> None:
    server = make_server()
    before = set(threading.enumerate())
    tap = WireTap(server.url)
    tap.stop()  # never started: nothing to do
    assert tap.start() is tap and tap.running
    assert tap.start() is tap  # a re-run cell
    with _blocking(tap.url) as client:
        client.send_message("hello")
        client.wait_for(lambda c: not c.pending, WAIT)
        tap.stop()  # with a connection still open: it is dropped
        client.wait_for(lambda c: c.status != "online", WAIT)
    tap.stop()
    assert not tap.running
    assert set(threading.enumerate()) - before == set()


def _blocking(url: str) -> BlockingChatClient:
    return BlockingChatClient(url, "Ada", reconnect=False)


def test_the_view_escapes_what_it_shows(make_server: Callable[..., ChatServer]) -> None:
    server = make_server()
    with WireTap(server.url) as tap, _blocking(tap.url) as client:
        client.send_message("<img src=x onerror=alert(1)>")
        client.wait_for(lambda c: not c.pending, WAIT)
        view = tap.view()
        tap.refresh()
        assert "&lt;img src=x" in view.value
        assert "<img" not in view.value
        assert "GET /chat HTTP/1.1" in view.value
        client.close()


# ------------------------------------------------------------------ the decoder alone


def test_build_frame_agrees_with_the_library() -> None:
    for size in (0, 125, 126, 65535, 65536):
        payload = os.urandom(size)
        for mask in (b"", MASK):
            data = build_frame(Opcode.BINARY, payload, mask=mask)
            reader = StreamReader()
            reader.feed_data(data)
            parser = Frame.parse(reader.read_exact, mask=bool(mask))
            with pytest.raises(StopIteration) as stop:
                next(parser)
            assert stop.value.value.data == payload
            assert not reader.buffer


def _decode(
    chunks: list[bytes], direction: str = "client->server", **limits: Any
) -> list[WireRecord]:
    decoder = DirectionDecoder(1, direction, lambda: 0.0, **limits)  # type: ignore[arg-type]
    records: list[WireRecord] = []
    for chunk in chunks:
        records += decoder.feed(chunk)
    return records


def test_the_decoder_gives_the_same_records_whatever_the_chunks() -> None:
    stream = (
        f"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\r\n".encode()
        + build_frame(Opcode.TEXT, b"hel", mask=MASK, fin=False)
        + build_frame(Opcode.CONT, b"lo", mask=MASK)
        + build_frame(Opcode.PING, b"", mask=MASK)
        + build_frame(Opcode.BINARY, bytes(70_000), mask=MASK)
        + build_frame(Opcode.CLOSE, b"\x03\xe8", mask=MASK)
    )
    whole = _decode([stream], max_payload=100_000)
    byte_by_byte = _decode([stream[i : i + 1] for i in range(len(stream))], max_payload=100_000)
    assert whole == byte_by_byte
    assert [r.opcode_name for r in whole] == [
        "handshake",
        "TEXT",
        "CONT",
        "PING",
        "BINARY",
        "CLOSE",
    ]
    big = whole[4]
    assert big.length == 70_000 and big.header[1] == 0x80 | 127 and len(big.header) == 14
    assert b"".join(r.raw if r.kind == "frame" else r.text.encode("latin-1") for r in whole) == (
        stream
    )


def test_the_decoder_reports_a_bad_frame_and_goes_on_relaying() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    masked_from_server = build_frame(Opcode.TEXT, b"hi", mask=MASK)  # servers must not mask
    records = _decode([head, masked_from_server, b"more"], "server->client")
    assert [r.kind for r in records] == ["handshake", "error", "bytes", "bytes"]
    assert "incorrect masking" in records[1].text
    assert records[2].length == len(masked_from_server) and records[3].length == 4


@synchronous
async def test_wss_is_relayed_as_opaque_tls_bytes(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    server = make_server(ssl=server_context)
    tap = tap_for(server.url)
    assert tap.url.startswith("wss://127.0.0.1:")
    client = ChatClient(tap.url, "Ada", reconnect=False, ssl=client_context)
    await client.connect(timeout=WAIT)
    await client.send_message("secret plan")
    await client.wait_for(lambda c: not c.pending, WAIT)
    await client.close()
    records = tap.records
    assert records and {r.kind for r in records} == {"bytes"}
    assert records[0].payload[0] == 0x16  # a TLS handshake record
    assert not tap.frames and not tap.handshakes
    assert not any(b"secret plan" in r.payload for r in records)


@synchronous
async def test_a_view_made_on_a_loop_is_redrawn_on_that_loop(
    make_server: Callable[..., ChatServer], tap_for: Callable[[str], WireTap]
) -> None:
    server = make_server()
    tap = tap_for(server.url)
    view = tap.view()
    assert "nothing captured yet" in view.value
    redraws: list[int] = []
    view.observe(lambda change: redraws.append(threading.get_ident()), names="value")
    client = ChatClient(tap.url, "Ada", reconnect=False)
    await client.connect(timeout=WAIT)
    await client.send_message("drawn live")
    await client.wait_for(lambda c: not c.pending, WAIT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while "drawn live" not in view.value and loop.time() < deadline:
        await asyncio.sleep(0.005)
    assert "drawn live" in view.value
    assert set(redraws) == {threading.get_ident()}  # only ever on this loop's thread
    await client.close()


@synchronous
async def test_an_unreachable_target_is_recorded_and_the_client_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    with WireTap(f"ws://127.0.0.1:{port}/chat") as tap:
        client = ChatClient(tap.url, "Ada", reconnect=False)
        with pytest.raises(ConnectionError):
            await client.connect(timeout=WAIT)
        records = await tap.wait_for(lambda rs: bool(rs))
    assert records[0].kind == "error" and "cannot reach" in records[0].text


def test_a_compressed_frame_ends_decoding_for_its_direction() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    compressed = b"\xc1" + build_frame(Opcode.TEXT, b"\xf2\x00\x00")[1:]  # RSV1 set
    records = _decode([head, compressed], "server->client")
    assert [r.kind for r in records] == ["handshake", "error", "bytes"]
    assert "reserved bits" in records[1].text


def test_a_frame_larger_than_max_payload_keeps_its_first_bytes_and_its_true_length() -> None:
    head = f"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    text = ("é" * 100_000).encode()  # 200,000 bytes; a cut at 1,001 splits a character
    stream = head.encode() + build_frame(Opcode.TEXT, text, mask=MASK)
    stream += build_frame(Opcode.PING, b"after", mask=MASK)
    in_chunks = [stream[i : i + 4_093] for i in range(0, len(stream), 4_093)]
    records = _decode(in_chunks, max_payload=1_001)
    assert records == _decode([stream], max_payload=1_001)
    assert [r.opcode_name for r in records] == ["handshake", "TEXT", "PING"]
    big = records[1]
    assert big.length == 200_000 and big.truncated and big.payload == text[:1_001]
    assert big.header == build_frame(Opcode.TEXT, text, mask=MASK)[:14]
    assert big.preview.startswith("éé") and big.kept == 1_001
    assert records[2].payload == b"after" and not records[2].truncated


def test_a_frame_announcing_a_terabyte_is_passed_over_as_it_comes() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    huge = b"\x82\x7f" + (2**40).to_bytes(8, "big")  # announces a terabyte
    decoder = DirectionDecoder(1, "server->client", lambda: 0.0, max_payload=200)
    assert [r.kind for r in decoder.feed(head + huge)] == ["handshake"]
    for _ in range(100):  # 6.4 MB of it: nothing recorded, nothing held
        assert decoder.feed(bytes(_CHUNK_SIZE)) == []
    assert len(decoder._reader.buffer) == 0 and len(decoder._consumed) == 10 + 200


def test_a_control_frame_over_125_bytes_is_an_error_whatever_is_kept() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    ping = b"\x89\x7e\x00\xc8" + bytes(200)  # a ping of 200 bytes
    records = _decode([head, ping], "server->client", max_payload=125)
    assert [r.kind for r in records] == ["handshake", "error", "bytes"]
    assert "control frame too long" in records[1].text
    assert records[2].length == len(ping) and len(records[2].payload) == 125


def test_a_request_body_is_recorded_cut_and_one_over_max_http_body_is_refused() -> None:
    body = b"x" * 5_000
    post = b"POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + body
    get = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
    records = _decode([post, get], max_payload=1_000, max_http_body=5_000)
    assert [r.kind for r in records] == ["handshake", "bytes", "handshake"]
    assert records[1].length == 5_000 and records[1].payload == body[:1_000]
    decoder = DirectionDecoder(1, "client->server", lambda: 0.0, max_http_body=4_999)
    refused = decoder.feed(post)
    assert [r.kind for r in refused] == ["handshake", "error"]
    assert decoder.refused == 5_000 and "413" in refused[1].text
    assert decoder.feed(get) == []  # nothing more is decoded


def test_a_chunked_request_body_counts_as_it_comes() -> None:
    post = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    decoder = DirectionDecoder(1, "client->server", lambda: 0.0, max_http_body=10_000)
    assert [r.kind for r in decoder.feed(post)] == ["handshake"]
    assert [r.kind for r in decoder.feed(b"1f40\r\n" + bytes(8_000))] == ["bytes"]
    assert decoder.refused is None
    assert [r.kind for r in decoder.feed(bytes(8_000))] == ["bytes", "error"]
    assert decoder.refused == 16_006


def test_the_upgrade_header_is_read_case_and_list_insensitively() -> None:
    request = b"GET /chat HTTP/1.1\r\nupgrade:WebSocket, foo\r\n\r\n"
    records = _decode([request, build_frame(Opcode.TEXT, b"hi", mask=MASK)])
    assert [r.opcode_name for r in records] == ["handshake", "TEXT"]


def test_a_refused_handshake_shows_its_head_and_its_body() -> None:
    body = b"Not found. The chat socket is at /chat.\n"
    refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    records = _decode([refused[:20], refused[20:], b"HTTP/1.1 101 OK\r\n\r\n"], "server->client")
    assert [r.kind for r in records] == ["handshake", "bytes", "handshake"]
    assert records[0].text.startswith("HTTP/1.1 404 Not Found\r\n") and records[1].payload == body


def test_a_body_of_unknown_length_is_relayed_undecoded() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    records = _decode([head, b"<html>", b"</html>"], "server->client")
    assert [r.kind for r in records] == ["handshake", "bytes", "bytes"]
    assert records[1].payload == b"<html>"


def test_a_head_websockets_cannot_parse_is_an_error_then_bytes() -> None:
    records = _decode([b"HTTP/1.1 abc Nope\r\n\r\nrest"], "server->client")
    assert [r.kind for r in records] == ["error", "bytes"]
    assert "invalid status code" in records[0].text
    assert records[1].payload == b"HTTP/1.1 abc Nope\r\n\r\nrest"


def test_the_table_shows_the_true_length_of_a_cut_record() -> None:
    text = ("é" * 1_000).encode()
    frame = build_frame(Opcode.TEXT, text)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    head += b"X-Padding: " + b"p" * 300 + b"\r\n\r\n"
    records = _decode([head + frame], "server->client", max_payload=201)
    assert [r.truncated for r in records] == [True, True]
    shown = table_html(records)
    assert "2000 (kept 201)" in shown and f"({len(head)} bytes in all)" in shown
    assert "#1 ← TEXT   FIN         2000  éééé" in str(records[1])

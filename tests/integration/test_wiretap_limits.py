"""WireTap's bounds: what it keeps of large frames and bodies, and the HTTP body it relays."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import WAIT, run_bounded
from wslab import ChatServer, WireTap
from wslab.wiretap import MAX_BYTES, MAX_PAYLOAD, WireRecord

MiB = 2**20


def kept(records: list[WireRecord]) -> int:
    return sum(r.kept for r in records)


async def wait_records(tap: WireTap, predicate: Callable[[list[WireRecord]], bool]) -> None:
    await tap.wait_for(predicate, WAIT)


async def exchange_big_frames(tap_options: dict[str, int], count: int, size: int) -> WireTap:
    """``count`` binary frames of ``size`` bytes each way through a tap; check both ends."""
    sent = [os.urandom(size) for _ in range(count)]
    received_by_server: list[bytes] = []

    async def echo(socket: ServerConnection) -> None:
        async for message in socket:
            assert isinstance(message, bytes)
            received_by_server.append(message)
            await socket.send(message)

    async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        tap = WireTap(f"ws://127.0.0.1:{port}/", **tap_options).start()
        try:
            async with connect(tap.url, max_size=None, compression=None) as client:
                for message in sent:
                    await client.send(message)
                    assert await asyncio.wait_for(client.recv(), WAIT) == message
            await wait_records(
                tap, lambda rs: sum(r.opcode == 0x8 for r in rs) == 2
            )  # both close frames
        finally:
            tap.stop()
    assert received_by_server == sent  # the relay altered nothing
    return tap


def test_large_frames_are_kept_cut_within_the_default_budget() -> None:
    tap = run_bounded(exchange_big_frames({}, count=8, size=3 * MiB))
    records = tap.records
    big = [r for r in records if r.kind == "frame" and r.opcode == 0x2]
    assert len(big) == 16  # each frame, both ways, is still one record
    assert all(r.length == 3 * MiB and r.truncated for r in big)
    assert all(len(r.payload) == MAX_PAYLOAD for r in big)
    assert kept(records) == tap.kept_bytes <= MAX_BYTES
    assert kept(records) < 16 * MAX_PAYLOAD + 1_000  # 16 cut payloads and two heads


def test_the_oldest_records_go_when_the_byte_budget_is_spent() -> None:
    options = {"max_bytes": 100_000, "max_payload": 10_000}
    tap = run_bounded(exchange_big_frames(options, count=12, size=MiB))
    records = tap.records
    assert kept(records) == tap.kept_bytes <= 100_000
    assert all(r.kept <= 10_000 for r in records)
    frames = [r for r in records if r.kind == "frame" and r.opcode == 0x2]
    assert 0 < len(frames) < 24 and not tap.handshakes  # the oldest went first
    assert frames[-1].length == MiB and frames[-1].payload == frames[-2].payload[:10_000]
    assert records[-1].opcode == 0x8  # the newest stay


async def post(port: int, head: bytes, body_chunks: int, chunk: bytes) -> bytes:
    """Send ``head`` then the body in chunks while reading the answer; return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(head)
        for _ in range(body_chunks):
            writer.write(chunk)
            await writer.drain()

    sending = asyncio.create_task(send())
    try:
        answer = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer


async def check_refused(tap: WireTap, answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"max_http_body" in answer
    await wait_records(tap, lambda rs: any(r.kind == "error" for r in rs))
    error = next(r for r in tap.records if r.kind == "error")
    assert "over max_http_body" in error.text and "413" in error.text
    # What was relayed of the body, and the head, at most.
    assert kept(tap.records) <= tap.max_http_body + 2 * MAX_PAYLOAD


def test_a_post_over_max_http_body_is_answered_413(make_server: Callable[..., ChatServer]) -> None:
    server = make_server()
    with WireTap(server.url) as tap:
        head = b"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (40 * MiB)
        answer = run_bounded(post(tap.port, head, 40 * 16, b"x" * 65536))
        run_bounded(check_refused(tap, answer))
        # The tap and the server go on serving.
        plain = run_bounded(post(tap.port, b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 0, b""))
        assert plain.startswith(b"HTTP/1.1 426 ")


def test_a_chunked_post_is_answered_413_once_over_max_http_body() -> None:
    async def scenario() -> None:
        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.read(65536):  # a server that reads and never answers
                    pass
            except ConnectionError:
                pass  # the tap drops this side when it refuses the body
            finally:
                writer.close()

        target = await asyncio.start_server(sink, "127.0.0.1", 0)
        port = target.sockets[0].getsockname()[1]
        with WireTap(f"ws://127.0.0.1:{port}/", max_http_body=MiB) as tap:
            head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            await check_refused(tap, await post(tap.port, head, 40 * 16, b"x" * 65536))
        target.close()
        await target.wait_closed()

    run_bounded(scenario())


def test_a_small_post_is_relayed_and_recorded() -> None:
    async def scenario() -> tuple[bytes, list[bytes]]:
        got: list[bytes] = []

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                got.append(await reader.readexactly(len(request)))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
            finally:
                writer.close()

        target = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = target.sockets[0].getsockname()[1]
        with WireTap(f"ws://127.0.0.1:{port}/", max_http_body=300_000) as tap:
            answer = await post(tap.port, request, 0, b"")
            await tap.wait_for(lambda rs: len(rs) == 3, WAIT)
            kinds = [(r.kind, r.length, r.truncated) for r in tap.records]
        target.close()
        await target.wait_closed()
        assert kinds == [
            ("handshake", len(head), False),
            ("bytes", 300_000, True),
            ("handshake", 27, False),
        ]
        return answer, got

    body = os.urandom(300_000)
    head = b"POST /x HTTP/1.1\r\nContent-Length: 300000\r\n\r\n"
    request = head + body
    answer, got = run_bounded(scenario())
    assert answer == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert got == [request]

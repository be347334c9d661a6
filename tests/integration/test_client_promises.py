"""The client's promises (docs/protocol.md, "Client promises"), on real sockets.

Fake servers (plain websockets on port 0, in this process) play servers that break the
contract: a frame no parser expected, a ``disconnected`` for the client's own id, a
server that never answers ``connecting``, a frame far over the client's ``max_size``.
A real :class:`ChatServer` with its default rate limit checks that one author's
messages arrive in the order they were typed.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import WAIT, run_bounded, unit
from wslab import ChatClient, ChatServer, RetryPolicy

FAST = RetryPolicy(initial=0.01, factor=1.0, cap=0.01, min_uptime=60)
TYPING = 0.1  # seconds between two messages a person types quickly
Handler = Callable[[ServerConnection], Awaitable[None]]


def connected(hello: dict[str, Any], **fields: Any) -> str:
    """The ``connected`` a server answers to ``hello``."""
    me = {"id": hello["id"], "username": hello["username"]}
    frame = {
        "event": "connected",
        "roomId": "r",
        **me,
        "token": "t",
        "connectedUserList": [me],
        "messagesList": [],
        "wasPageReload": False,
    }
    return json.dumps({**frame, **fields})


def joined(user_id: str) -> str:
    return json.dumps({"event": "joined", "id": user_id, "username": user_id.title()})


async def fake_server(handler: Handler) -> tuple[Any, str]:
    server = await serve(handler, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"


def test_a_400_digit_message_id_is_a_protocol_error_the_client_survives() -> None:
    async def handler(socket: ServerConnection) -> None:
        await socket.send(connected(json.loads(await socket.recv())))
        await socket.send(
            '{"event":"messageWritten","message":{"messageId":' + "9" * 400 + ',"id":"x",'
            '"username":"X","message":"boom","ts":"t"}}'
        )
        await socket.send('{"event":"messageWritten","message":' + "[" * 5000 + "]" * 5000 + "}")
        await socket.send('{"event":"messageWritten","message":{"messageId":1e400}}')
        entry = {"messageId": 1, "id": "x", "username": "X", "message": "fine", "ts": "t"}
        await socket.send(json.dumps({"event": "messageWritten", "message": entry}))
        await socket.wait_closed()

    async def scenario() -> None:
        server, url = await fake_server(handler)
        client = ChatClient(url, "Me", id="me", reconnect=False)
        try:
            await client.connect(WAIT)
            await client.wait_for(lambda c: c.texts() == ["fine"], WAIT)
            assert client.online
            assert len(client.protocol_errors) == 3
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


def test_a_connected_client_keeps_listing_itself() -> None:
    """A server that froze past its heartbeat tells the user's own sockets that the user
    left, and never sends the ``joined`` that follows: the client still lists itself."""

    async def handler(socket: ServerConnection) -> None:
        hello = json.loads(await socket.recv())
        others = [{"id": "bob", "username": "Bob"}]
        me = {"id": hello["id"], "username": hello["username"]}
        await socket.send(connected(hello, connectedUserList=[me, *others]))
        await socket.send(json.dumps({"event": "disconnected", **me}))
        await socket.send(json.dumps({"event": "presence", "joined": [], "left": [me]}))
        await socket.send(joined("after"))
        await socket.wait_closed()

    async def scenario() -> None:
        server, url = await fake_server(handler)
        client = ChatClient(url, "Me", id="me", reconnect=False)
        left: list[str] = []
        client.on_disconnected = lambda event: left.append(event.id)
        try:
            await client.connect(WAIT)
            await client.wait_for(lambda c: "after" in c.users, WAIT)
            assert sorted(client.users) == ["after", "bob", "me"]
            assert left == []
            assert [p.id for p in client.presence] == ["after"]
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


async def silent(socket: ServerConnection) -> None:
    """A server that accepts the socket and never answers ``connecting``."""
    await socket.wait_closed()


def test_a_silent_server_is_left_after_the_join_timeout(make_server: Any) -> None:
    healthy: ChatServer = make_server()

    async def scenario() -> None:
        server, url = await fake_server(silent)
        client = ChatClient([url, healthy.url], "Me", join_timeout=unit(0.5), policy=FAST)
        try:
            await client.connect(WAIT)
            assert client.url == healthy.url
            assert client.attempts == 2
            errors = [e.detail for e in client.events if e.type == "error"]
            assert errors == ["no connected within 0.5 s"] or unit() != 1
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


def test_a_silent_server_counts_as_failed_attempts() -> None:
    async def scenario() -> None:
        server, url = await fake_server(silent)
        client = ChatClient(url, "Me", join_timeout=unit(0.2), policy=FAST)
        try:
            client.start()
            await client.wait_for(lambda c: c.attempts >= 3, WAIT)
            assert client.status != "offline"
            assert client.reconnector.failures >= 2
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


def test_a_frame_over_max_size_closes_with_1009_before_it_is_read() -> None:
    """The server announces a 10 MB frame and sends only a part of it: the client refuses
    it from its header (it never holds the payload), closes with 1009, and stays closed."""
    sent = asyncio.Event()

    async def handler(socket: ServerConnection) -> None:
        await socket.send(connected(json.loads(await socket.recv())))
        header = struct.pack("!BBQ", 0x81, 127, 10 * 2**20)  # FIN + text, 64-bit length
        socket.transport.write(header + b"x" * 2**16)
        sent.set()
        await socket.wait_closed()

    async def scenario() -> None:
        server, url = await fake_server(handler)
        client = ChatClient(url, "Me", max_size=2**20, policy=FAST)
        try:
            await client.connect(WAIT)
            await client.wait_for(lambda c: c.status == "offline", WAIT)
            assert sent.is_set()
            assert client.last_close is not None and client.last_close[0] == 1009
            assert client.attempts == 1  # 1009 is final: a retry would only repeat it
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


def test_the_default_max_size_takes_a_full_connected() -> None:
    """A ``connected`` with 100 long messages and 1,000 users is far under the default."""
    long = "\x01" * 2000  # each escaped as \\u0001: 12,000 bytes of JSON
    history = [
        {"messageId": n, "id": "w" * 64, "username": "W", "message": long, "ts": "t"}
        for n in range(1, 101)
    ]
    users = [{"id": "me", "username": "Me"}]
    users += [{"id": f"u{n}", "username": "U" * 32} for n in range(999)]

    async def handler(socket: ServerConnection) -> None:
        hello = json.loads(await socket.recv())
        await socket.send(connected(hello, messagesList=history, connectedUserList=users))
        await socket.wait_closed()

    async def scenario() -> None:
        server, url = await fake_server(handler)
        client = ChatClient(url, "Me", id="me", reconnect=False)
        try:
            await client.connect(WAIT)
            assert len(client.messages) == 100 and len(client.users) == 1000
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())


def test_one_authors_messages_arrive_in_typing_order_after_a_rate_limit(
    make_server: Any,
) -> None:
    """60 messages typed offline, then 3 typed after the reconnect, one every 0.1 s:
    with the server's default rate limit (20/s, burst 40), the resend of the first 60
    is cut short, and everyone still sees all 63 in typing order."""
    server: ChatServer = make_server(grace=5.0)
    typed = [f"offline-{n}" for n in range(1, 61)] + [f"online-{n}" for n in range(1, 4)]

    async def scenario() -> None:
        reader = await ChatClient(server.url, "Reader", id="reader").connect(WAIT)
        writer = await ChatClient(server.url, "Writer", id="writer", policy=FAST).connect(WAIT)
        try:
            server.drop("writer")
            await writer.wait_for(lambda c: not c.online, WAIT)
            for text in typed[:60]:
                await writer.send_message(text)
            await writer.wait_for(lambda c: c.online, WAIT)
            await writer.wait_for(lambda c: bool(c.errors), WAIT)  # the limit dropped some
            for text in typed[60:]:
                await asyncio.sleep(TYPING)  # the limit refills meanwhile: 20 per second
                await writer.send_message(text)
            await reader.wait_for(lambda c: len(c.messages) == len(typed), 4 * WAIT)
            await writer.wait_for(lambda c: len(c.messages) == len(typed), WAIT)
            assert reader.texts() == typed
            assert writer.texts() == typed and not writer.pending
            assert any(e.code.value == "rate_limited" for e in writer.errors)
        finally:
            await writer.close()
            await reader.close()

    run_bounded(scenario())


def test_the_raw_log_keeps_a_bounded_number_of_bytes() -> None:
    """Frames under ``max_size`` still add up: the raw log drops its oldest events beyond
    ``max_log_bytes``, and what the client knows of the chat stays right."""
    big = json.dumps({"event": "joined", "id": "big", "username": "B" * 100_000})

    async def handler(socket: ServerConnection) -> None:
        await socket.send(connected(json.loads(await socket.recv())))
        for _ in range(20):
            await socket.send(big)
        await socket.send(joined("after"))
        await socket.wait_closed()

    async def scenario() -> None:
        server, url = await fake_server(handler)
        client = ChatClient(url, "Me", id="me", reconnect=False)
        client.max_log_bytes = 500_000
        try:
            await client.connect(WAIT)
            await client.wait_for(lambda c: "after" in c.users, WAIT)
            held = sum(len(e.data) for e in client.events if e.data is not None)
            assert held <= 500_000
            assert str(client.events[-1]) == f"message {joined('after')!r}"
        finally:
            await client.close()
            server.close()

    run_bounded(scenario())

"""The Python client under faults: a broken server, a close at an awkward moment.

A fake server (plain websockets on port 0) plays a server that breaks the
protocol; the client must log the bad frame, ignore it and carry on, as the
browser page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.helpers.reliability import unit
from wslab import ChatClient, ChatServer, RetryPolicy

CONNECTED = {
    "event": "connected",
    "roomId": "r1",
    "id": "me",
    "username": "Me",
    "token": "t",
    "connectedUserList": [{"id": "me", "username": "Me"}],
    "messagesList": [],
    "wasPageReload": False,
}

BROKEN_FRAMES = {
    "entry-without-id": {"event": "messageWritten", "message": {"messageId": 1}},
    "history-entry-without-id": {**CONNECTED, "messagesList": [{"messageId": 1}]},
    "user-list-of-strings": {**CONNECTED, "connectedUserList": "ab"},
    "history-of-numbers": {**CONNECTED, "messagesList": [1, 2]},
    "joined-unhashable-id": {"event": "joined", "id": ["x"], "username": "x"},
}


async def _fake_server(frames: list[dict[str, Any]]) -> tuple[Any, str]:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # connecting
        for frame in [CONNECTED, *frames, {"event": "joined", "id": "after", "username": "After"}]:
            await ws.send(json.dumps(frame))
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/chat"


@pytest.mark.parametrize("name", list(BROKEN_FRAMES))
def test_a_malformed_server_frame_is_ignored(name: str) -> None:
    async def scenario() -> tuple[str, dict[str, str]]:
        server, url = await _fake_server([BROKEN_FRAMES[name]])
        client = ChatClient(url, "Me", id="me", reconnect=False)
        try:
            await client.connect(unit(5))
            with contextlib.suppress(TimeoutError):
                await client.wait_for(lambda c: "after" in c.users, unit(3))
            return client.status, dict(client.users)
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    status, users = asyncio.run(scenario())
    assert status == "online" and "after" in users


def test_close_during_the_handshake_returns(chat_server: Any) -> None:
    server: ChatServer = chat_server(grace=0.0)

    async def scenario() -> tuple[bool, str]:
        client = ChatClient(server.url, "Hasty")
        client.start()
        await client.wait_for(lambda c: c.status == "connecting", unit(5))
        try:
            await asyncio.wait_for(client.close(), unit(3))
            returned = True
        except TimeoutError:
            returned = False
            socket = client._socket  # clean up what the bug left behind
            if socket is not None:
                socket.transport.abort()
            task = client._task  # cancelled along with the close() that awaited it
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, unit(5))
        return returned, client.status

    returned, status = asyncio.run(scenario())
    assert returned and status == "offline"


def test_close_while_reconnecting_returns_at_once(chat_server: Any) -> None:
    """close() during the backoff sleep wakes the client up and stops it."""
    server: ChatServer = chat_server(grace=0.0)

    async def scenario() -> str:
        slow = RetryPolicy(initial=unit(30), jitter=False)  # it sleeps until woken
        client = ChatClient(server.url, "Patient", id="patient", policy=slow)
        await client.connect(unit(10))
        await asyncio.to_thread(server.drop, "patient")
        await client.wait_for(lambda c: c.status == "reconnecting", unit(5))
        await asyncio.wait_for(client.close(), unit(5))
        return client.status

    assert asyncio.run(scenario()) == "offline"


def test_messages_dropped_by_the_rate_limit_are_delivered_eventually(chat_server: Any) -> None:
    server: ChatServer = chat_server(rate_limit=20.0, rate_burst=10)

    async def scenario() -> tuple[int, int]:
        client = ChatClient(server.url, "Chatty", id="chatty")
        await client.connect(unit(10))
        for i in range(30):  # a notebook loop: faster than 20/s, past the burst
            await client.send_message(f"quick {i}")
        with contextlib.suppress(TimeoutError):
            # 30 messages at 20/s need 1.5 s at most once the burst is spent.
            await client.wait_for(lambda c: not c.pending, unit(4))
        pending = len(client.pending)
        await client.close()
        return pending, len(server.history)

    pending, stored = asyncio.run(scenario())
    assert (pending, stored) == (0, 30)

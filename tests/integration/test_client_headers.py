"""Handshake headers a client adds (a hub token), on real sockets.

A plain websockets server on port 0 records every handshake's headers and closes
the first connection with 1012, so the client reconnects: the header must be on
both handshakes, and the token nowhere in the client's repr, its raw event log or
websockets' debug log.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import WAIT, run_bounded
from wslab import BlockingChatClient, ChatClient, RetryPolicy

FAST = RetryPolicy(initial=0.01, factor=1.0, cap=0.01, min_uptime=60)
SECRET = "s3cret-hub-token"


def connected(hello: dict[str, str]) -> str:
    me = {"id": hello["id"], "username": hello["username"]}
    return json.dumps(
        {
            "event": "connected",
            "roomId": "r",
            **me,
            "connectedUserList": [me],
            "messagesList": [],
            "wasPageReload": False,
        }
    )


def test_the_headers_go_out_on_every_handshake_and_nowhere_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str | None] = []

    async def handler(socket: ServerConnection) -> None:
        assert socket.request is not None
        seen.append(socket.request.headers.get("Authorization"))
        await socket.send(connected(json.loads(await socket.recv())))
        if len(seen) == 1:
            await socket.close(1012, "restart")  # retried: the client comes back
        else:
            await socket.wait_closed()

    async def scenario() -> ChatClient:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = ChatClient(
                f"ws://127.0.0.1:{port}/chat",
                "ada",
                policy=FAST,
                additional_headers={"Authorization": f"token {SECRET}"},
            )
            await client.connect(WAIT)
            await client.wait_for(lambda c: len(seen) == 2 and c.online, WAIT)
            await client.close()
            return client

    with caplog.at_level(logging.DEBUG):
        client = run_bounded(scenario())
    assert seen == [f"token {SECRET}"] * 2
    assert any("Authorization: [hidden]" in r.getMessage() for r in caplog.records)
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert not any(SECRET in r.getMessage() for r in ours)  # (this test's server logs it)
    assert SECRET not in repr(client)
    assert not any(SECRET in str(event) for event in client.events)


def test_a_blocking_client_sends_them_too() -> None:
    seen: list[str | None] = []

    async def handler(socket: ServerConnection) -> None:
        assert socket.request is not None
        seen.append(socket.request.headers.get("Authorization"))
        await socket.send(connected(json.loads(await socket.recv())))
        await socket.wait_closed()

    async def scenario() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"
            await asyncio.to_thread(join_blocking, url)

    def join_blocking(url: str) -> None:  # a script's thread, not the server's loop
        headers = {"Authorization": f"token {SECRET}"}
        with BlockingChatClient(url, "bob", additional_headers=headers) as client:
            assert client.online
            assert SECRET not in repr(client.client)

    run_bounded(scenario())
    assert seen == [f"token {SECRET}"]


def test_the_chat_server_debug_log_masks_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """A chat server's websockets log at DEBUG shows the credential headers it received
    as ``[hidden]``: an operator who turns on debug logging sees no hub token or cookie."""
    from wslab import ChatServer

    async def scenario() -> None:
        async with ChatServer(port=0) as server:
            client = ChatClient(
                server.url,
                "ada",
                policy=FAST,
                additional_headers={
                    "Authorization": f"token {SECRET}",
                    "Cookie": f"login={SECRET}",
                },
            )
            await client.connect(WAIT)
            await client.close()

    with caplog.at_level(logging.DEBUG):
        run_bounded(scenario())
    server_lines = [r.getMessage() for r in caplog.records if r.name == "wslab.server"]
    assert any("Authorization: [hidden]" in line for line in server_lines), server_lines
    assert any("Cookie: [hidden]" in line for line in server_lines), server_lines
    assert not [r for r in caplog.records if SECRET in r.getMessage()]

"""The Python client against the close-code and resend table, on real sockets.

A scripted websockets server answers ``connecting`` and then closes with each
code of :data:`tests.test_retry.CLOSE_TABLE`; the client must reconnect exactly
when the table says so. ``tests/e2e/browser/test_chat_page.py`` drives the page
through the same table.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.server import serve

from tests.conftest import WAIT, run_bounded
from tests.unit.test_retry import CLOSE_TABLE
from wslab import ChatClient, RetryPolicy

FAST = RetryPolicy(initial=0.01, factor=1.0, cap=0.01, min_uptime=60)


def connected_frame(hello: dict[str, Any]) -> str:
    return json.dumps(
        {
            "event": "connected",
            "roomId": "r",
            "id": hello["id"],
            "username": hello["username"],
            "token": "t",
            "connectedUserList": [{"id": hello["id"], "username": hello["username"]}],
            "messagesList": [],
            "wasPageReload": False,
        }
    )


@pytest.mark.parametrize(
    ("code", "retried"),
    [(code, retried) for code, by_us, retried in CLOSE_TABLE if not by_us],
)
def test_the_client_reconnects_exactly_after_the_codes_the_table_retries(
    code: int | None, retried: bool
) -> None:
    async def closing(socket: Any) -> None:
        await socket.send(connected_frame(json.loads(await socket.recv())))
        if code in (None, 1006):
            socket.transport.abort()  # no close frame: the client sees 1006
        else:
            await socket.close(code)

    async def scenario() -> None:
        async with serve(closing, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = ChatClient(f"ws://127.0.0.1:{port}/chat", "ann", policy=FAST)
            client.start()
            if retried:
                await client.wait_for(lambda c: c.attempts >= 3, WAIT)
                assert client.status != "offline"
            else:
                # "offline" is set only once the client's loop has decided to stop.
                await client.wait_for(lambda c: c.status == "offline", WAIT)
                assert client.attempts == 1 and client.next_retry_in is None
            await client.close()
            closes = [e.code for e in client.events if e.type == "close"]
            assert closes[0] == (code or 1006)

    run_bounded(scenario())


def test_the_client_resends_what_a_rate_limited_error_dropped() -> None:
    """The table's resend row: the server drops a message with ``rate_limited``; the
    client sends it again after its pause, and it is delivered once."""
    writes: list[dict[str, Any]] = []

    async def limiting(socket: Any) -> None:
        await socket.send(connected_frame(json.loads(await socket.recv())))
        async for data in socket:
            frame = json.loads(data)
            writes.append(frame)
            if len(writes) == 1:
                error = {"event": "error", "code": "rate_limited", "detail": "slow down"}
                await socket.send(json.dumps(error))
                continue
            entry = {
                "messageId": len(writes),
                "id": "ann-id",
                "username": "ann",
                "message": frame["message"],
                "ts": "2026-01-01T00:00:00.000Z",
                "clientMessageId": frame["clientMessageId"],
            }
            await socket.send(json.dumps({"event": "messageWritten", "message": entry}))

    async def scenario() -> None:
        async with serve(limiting, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            client = ChatClient(f"ws://127.0.0.1:{port}/chat", "ann", id="ann-id", policy=FAST)
            client.rate_limit_pause = 0.05
            await client.connect(WAIT)
            await client.send_message("hello")
            await client.wait_for(lambda c: not c.pending and c.messages, WAIT)
            assert client.texts() == ["hello"]
            assert [w["clientMessageId"] for w in writes] == [writes[0]["clientMessageId"]] * 2
            await client.close()

    run_bounded(scenario())

"""Durable history: ``ChatServer(store=path)`` and ``python -m wslab serve --store PATH``.

A restart with the same store keeps the history, the messageId sequence, the
room id and every id's token. A SIGKILL of the CLI in the middle of a stream
of messages loses no acknowledged message, and the unacknowledged ones, once
the client resends them, are stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.helpers.reliability import CliServer, hello, say, unit
from wslab import ChatClient, ChatServer, RetryPolicy

FAST = RetryPolicy(initial=0.05, factor=2.0, cap=0.5, min_uptime=0.5)


def stored_entries(path: Path) -> list[dict[str, Any]]:
    """Read the store's messages straight from SQLite, oldest first."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT message_id, entry FROM messages ORDER BY message_id").fetchall()
    entries = [json.loads(entry) for _, entry in rows]
    assert [mid for mid, _ in rows] == [e["messageId"] for e in entries]
    return entries


@pytest.fixture
def clis() -> Iterator[list[CliServer]]:
    started: list[CliServer] = []
    yield started
    for cli in started:
        cli.close()


def test_restart_with_a_store_keeps_history_sequence_room_and_tokens(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"

    async def first_life() -> dict[str, Any]:
        server = ChatServer(store=path, grace=0.0).start()
        try:
            ann = ChatClient(server.url, "Ann", id="ann", reconnect=False)
            await ann.connect(unit(10))
            for i in range(5):
                await ann.send_message(f"before {i}")
            await ann.wait_for(lambda c: len(c.messages) == 5 and not c.pending, unit(10))
            await ann.close()
            return {"token": ann.token, "room": ann.room_id, "history": server.history}
        finally:
            await server.aclose()
            server.store.close()  # type: ignore[union-attr]

    async def second_life(before: dict[str, Any]) -> dict[str, Any]:
        server = ChatServer(store=path, grace=0.0).start()
        try:
            history = server.history
            ann = ChatClient(server.url, "Ann", id="ann", token=before["token"], reconnect=False)
            await ann.connect(unit(10))
            await ann.send_message("after")
            await ann.wait_for(lambda c: not c.pending and len(c.messages) == 6, unit(10))
            # A reload that knows the room asks only for what it missed.
            async with connect(server.url) as tab:
                await tab.send(
                    hello(
                        "ann", "Ann", token=before["token"], lastMessageId=4, roomId=before["room"]
                    )
                )
                recovered = json.loads(await asyncio.wait_for(tab.recv(), unit(5)))
            # Without the token, the online id is refused.
            async with connect(server.url) as thief:
                await thief.send(hello("ann", "Thief"))
                refusal = json.loads(await asyncio.wait_for(thief.recv(), unit(5)))
                await asyncio.wait_for(thief.wait_closed(), unit(5))
                thief_code = thief.close_code
            result = {
                "history": history,
                "token": ann.token,
                "room": ann.room_id,
                "ids": [m["messageId"] for m in ann.messages],
                "recovered": [m["messageId"] for m in recovered["messagesList"]],
                "refusal": refusal,
                "thief_code": thief_code,
            }
            await ann.close()
            return result
        finally:
            await server.aclose()
            server.store.close()  # type: ignore[union-attr]

    before = asyncio.run(first_life())
    after = asyncio.run(second_life(before))
    assert after["history"] == before["history"]
    assert after["room"] == before["room"]
    assert after["token"] == before["token"]
    assert after["ids"] == [1, 2, 3, 4, 5, 6]  # the sequence goes on, no id reused
    assert after["recovered"] == [5, 6]
    assert after["refusal"]["event"] == "error" and after["refusal"]["code"] == "id_taken"
    assert after["thief_code"] == 1008
    assert [e["messageId"] for e in stored_entries(path)] == [1, 2, 3, 4, 5, 6]


def test_a_resend_after_a_restart_is_not_stored_twice(tmp_path: Path) -> None:
    """The de-duplication of clientMessageId survives a restart (it is loaded from the store)."""
    path = tmp_path / "chat.db"

    async def send(server: ChatServer, token: str | None) -> tuple[str, list[dict[str, Any]]]:
        async with connect(server.url) as ws:
            await ws.send(hello("bob", "Bob", token=token))
            connected = json.loads(await asyncio.wait_for(ws.recv(), unit(5)))
            await ws.send(say("only once", "cmid-1"))
            ack = json.loads(await asyncio.wait_for(ws.recv(), unit(5)))
        return connected["token"], [ack]

    server = ChatServer(store=path, grace=0.0).start()
    token, first = asyncio.run(send(server, None))
    server.stop()
    server.store.close()  # type: ignore[union-attr]
    server = ChatServer(store=path, grace=0.0).start()
    try:
        _, second = asyncio.run(send(server, token))
        history = server.history
    finally:
        server.stop()
        server.store.close()  # type: ignore[union-attr]
    assert first[0]["event"] == second[0]["event"] == "messageWritten"
    assert second[0]["message"] == first[0]["message"]  # the original entry, acknowledged again
    assert [m["message"] for m in history] == ["only once"]


@pytest.mark.slow
def test_sigkill_of_the_cli_loses_no_acknowledged_message(
    tmp_path: Path, clis: list[CliServer]
) -> None:
    """kill -9 mid-stream; restart on the same store; acked messages all there, none twice."""
    path = tmp_path / "chat.db"
    total = 300
    options = ["--store", str(path), "--rate-limit", "0", "--history", "10000", "--grace", "0.5"]
    cli = CliServer.start("--port", "0", *options)
    clis.append(cli)
    assert cli.first_line == f"wslab chat server listening on ws://127.0.0.1:{cli.port}/chat"

    async def scenario() -> dict[str, Any]:
        nonlocal cli
        writer = ChatClient(cli.url, "writer", id="writer", policy=FAST)
        acks: dict[str, int] = {}  # clientMessageId -> messageId, as acknowledged live

        def on_message(entry: dict[str, Any]) -> None:
            if entry["id"] == "writer" and "clientMessageId" in entry:
                acks[entry["clientMessageId"]] = entry["messageId"]

        writer.on_message = on_message  # type: ignore[assignment]
        await writer.connect(unit(10))
        texts: dict[str, str] = {}  # clientMessageId -> text

        async def stream() -> None:
            for i in range(total):
                text = f"message {i}"
                texts[await writer.send_message(text)] = text
                if i % 10 == 9:
                    await asyncio.sleep(0.005)  # pacing: let acks flow while we send

        sending = asyncio.create_task(stream())
        await writer.wait_for(lambda c: len(acks) >= total // 3, unit(30))
        cli.kill9()  # mid-stream: some messages acked, some in flight, some not sent yet
        acked_at_kill = dict(acks)
        await sending
        restarted = CliServer.start("--port", str(cli.port), *options)
        clis.append(restarted)
        cli = restarted
        await writer.wait_for(lambda c: c.online and not c.pending, unit(30))
        await writer.wait_for(lambda c: len(c.messages) >= total, unit(30))
        result = {
            "acked_at_kill": acked_at_kill,
            "texts": texts,
            "view": [(m["messageId"], m["message"]) for m in writer.messages],
        }
        await writer.close()
        return result

    result = asyncio.run(asyncio.wait_for(scenario(), unit(120)))
    assert cli.terminate() == 0
    entries = stored_entries(path)
    stored = {e["clientMessageId"]: e for e in entries}
    acked = result["acked_at_kill"]
    assert 0 < len(acked) < total, "the kill did not land mid-stream"
    # Every acknowledged message is on disk, under the messageId its ack carried.
    assert {cmid: stored[cmid]["messageId"] for cmid in acked if cmid in stored} == acked
    # Every message, acked before the kill or resent after it, is there exactly once.
    assert sorted(e["message"] for e in entries) == sorted(result["texts"].values())
    assert len(entries) == len(stored) == total
    assert [e["messageId"] for e in entries] == list(range(1, total + 1))
    assert result["view"] == [(e["messageId"], e["message"]) for e in entries]

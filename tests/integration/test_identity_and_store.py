"""Attacks on identity, rate limits, recovery, de-duplication and the store, rerun.

Each test plays the attack against a real server on a loopback port (or, where
only memory is measured, against the pure room) and records its figures: what
the attacker got, what the owner and a witness saw, how much was kept.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.helpers.reliability import claim, hello, record_figures, say, unit
from wslab import ChatClient, ChatServer
from wslab.clock import FakeClock
from wslab.engine import MemoryEngine
from wslab.protocol import Connecting, encode
from wslab.room import Room
from wslab.store import StoreError


async def rejoin(client: ChatClient) -> None:
    """Start a closed client again and wait until it is online.

    (``connect()`` right after ``close()`` sees the old "offline" status at once.)
    """
    client.start()
    await client.wait_for(lambda c: c.online, unit(10))


def refused(attempt: tuple[list[dict[str, Any]], int | None]) -> bool:
    received, code = attempt
    return [(e["event"], e.get("code")) for e in received] == [("error", "id_taken")] and (
        code == 1008
    )


# --------------------------------------------------------------------------- identity


def test_an_id_cannot_be_taken_after_its_grace_nor_after_a_restart(tmp_path: Path) -> None:
    """Offline, and across a restart with the store, only the token claims the id.

    The owner is a reconnecting client with a message typed while the server was
    down; a thief tries the id (no token, a wrong token) first. The owner comes
    back with its token and its pending message is delivered once.
    """
    path = tmp_path / "chat.db"

    async def scenario() -> dict[str, Any]:
        server = ChatServer(store=path, grace=0.0).start()
        port = server.port
        owner = ChatClient(server.url, "Owner", id="owner")
        await owner.connect(unit(10))
        await owner.send_message("before")
        await owner.wait_for(lambda c: not c.pending, unit(5))
        token = owner.token
        await owner.close()  # gone: after the grace, nobody is present as "owner"
        offline = [await claim(server.url, "owner"), await claim(server.url, "owner", token="x")]

        await server.aclose()
        assert server.store is not None
        server.store.close()  # type: ignore[attr-defined]
        await owner.send_message("typed while the server was down")  # pending
        server = ChatServer(port=port, store=path, grace=0.0).start()
        try:
            restarted = [await claim(server.url, "owner"), await claim(server.url, "owner")]
            await rejoin(owner)  # the same client object: id, token, lastMessageId
            await owner.wait_for(lambda c: not c.pending, unit(5))
            texts = [m["message"] for m in server.history]
            result = {
                "offline_refused": sum(map(refused, offline)),
                "restart_refused": sum(map(refused, restarted)),
                "owner_token_kept": owner.token == token,
                "owner_online": owner.online,
                "stored_texts": texts,
            }
            await owner.close()
            return result
        finally:
            await server.aclose()
            server.store.close()  # type: ignore[union-attr]

    result = asyncio.run(scenario())
    record_figures("identity_after_grace_and_restart", result)
    assert result["offline_refused"] == 2 and result["restart_refused"] == 2
    assert result["owner_token_kept"] and result["owner_online"]
    assert result["stored_texts"] == ["before", "typed while the server was down"]


def test_without_a_store_an_offline_binding_holds_until_newer_ones_push_it_out() -> None:
    """The newest ``max_bindings`` away ids keep their binding; memory stays bounded."""
    clock = FakeClock()
    room = Room(grace=0, clock=clock, max_bindings=2_000, rate_limit=0)
    engine = room.engine
    assert isinstance(engine, MemoryEngine)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]

    def visit(n: int) -> str | None:
        room.open(f"s{n}")
        outcome = room.receive(f"s{n}", encode(Connecting(f"u{n}", "U")))
        room.close(f"s{n}")
        event = outcome.sends[0].event
        return getattr(event, "token", None)

    first_token = visit(0)
    for n in range(1, 4_000):
        visit(n)
    at_4k = tracemalloc.get_traced_memory()[0] - base
    for n in range(4_000, 10_000):
        visit(n)
    at_10k = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # u0 was pushed out by 9,999 newer ids: free again. u9999 is still bound.
    room.open("t1")
    reclaimed = room.receive("t1", encode(Connecting("u0", "New")))
    room.open("t2")
    thief = room.receive("t2", encode(Connecting("u9999", "Thief")))
    figures = {
        "ids_visited": 10_000,
        "bindings_kept": engine.bindings_kept,
        "kib_after_4k_ids": at_4k // 1024,
        "kib_after_10k_ids": at_10k // 1024,
    }
    record_figures("offline_bindings_bounded", figures)
    assert first_token is not None
    assert figures["bindings_kept"] == 2_000
    assert at_10k < at_4k + 64 * 1024  # 6,000 more ids, no more memory
    assert type(reclaimed.sends[0].event).__name__ == "Connected"
    assert thief.close is not None and thief.close.code == 1008


def test_seed_mode_hands_out_no_token(chat_server: Any) -> None:
    server = chat_server(seed_compatible=True, grace=0.0)

    async def scenario() -> list[dict[str, Any]]:
        frames = []
        for name in ("Owner", "Newcomer"):
            async with connect(server.url) as ws:
                await ws.send(hello("owner", name))
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), unit(5))))
        return frames

    owner, newcomer = asyncio.run(scenario())
    assert owner["event"] == newcomer["event"] == "connected"
    assert "token" not in owner and "token" not in newcomer


# --------------------------------------------------------------------------- rate limit


def test_a_user_reconnecting_in_a_loop_cannot_exceed_the_rate_limit(chat_server: Any) -> None:
    """Each round: reconnect with the token, blast 100 messages, drop. The bucket is the id's."""
    server = chat_server(rate_limit=20.0, rate_burst=40.0, grace=0.0, max_size=2**20)
    rounds, per_round = 30, 100

    async def scenario() -> tuple[int, float, int]:
        async with connect(server.url) as ws:
            await ws.send(hello("flood", "Flood"))
            token = json.loads(await ws.recv())["token"]
        started = time.monotonic()
        sent = 0
        for r in range(rounds):
            async with connect(server.url) as ws:
                await ws.send(hello("flood", "Flood", token=token))
                assert json.loads(await ws.recv())["event"] == "connected"
                for n in range(per_round):
                    await ws.send(say(f"{r}-{n}", f"c-{r}-{n}"))
                    sent += 1
                # The answers show what the server took of this round before we leave.
                await ws.send(say("end", f"end-{r}"))
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), unit(5)))
                    if event["event"] == "messageWritten" and event["message"]["message"] == "end":
                        break
                    if event["event"] == "error" and event["code"] == "rate_limited":
                        break
        return sent, time.monotonic() - started, len(server.history)

    sent, elapsed, stored = asyncio.run(scenario())
    allowed = 40 + 20 * elapsed
    figures = {
        "rounds": rounds,
        "sent": sent,
        "seconds": round(elapsed, 2),
        "stored": stored,
        "allowed_by_the_limit": round(allowed, 1),
        "stored_per_second": round(stored / elapsed, 1),
    }
    record_figures("rate_limit_across_reconnects", figures)
    assert stored <= allowed + 1  # never more than the burst plus the rate over the time


# --------------------------------------------------------------------------- recovery


def test_with_a_store_a_client_recovers_every_missed_message(
    chat_server: Any, tmp_path: Path
) -> None:
    server = chat_server(store=tmp_path / "chat.db", history=20, rate_limit=0.0, grace=0.0)
    missed = 1000

    async def scenario() -> dict[str, Any]:
        reader = ChatClient(server.url, "Reader", id="reader", reconnect=False)
        writer = ChatClient(server.url, "Writer", id="writer", reconnect=False)
        await reader.connect(unit(10))
        await writer.connect(unit(10))
        await writer.send_message("seen")
        await reader.wait_for_message("seen", unit(5))
        await reader.close()
        async with connect(server.url, max_size=None) as ws:  # the writer, faster than one by one
            await ws.send(hello("writer", "Writer", token=writer.token))
            await ws.recv()
            for n in range(missed):
                await ws.send(say(f"m{n}", f"w-{n}"))
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), unit(10)))
                if event.get("message", {}).get("message") == f"m{missed - 1}":
                    break
        started = time.monotonic()
        await rejoin(reader)
        total = 1 + missed
        await reader.wait_for(lambda c: len(c.messages) == total, unit(20))
        seconds = time.monotonic() - started
        ids = [m["messageId"] for m in reader.messages]
        await reader.close()
        await writer.close()
        return {"ids": ids, "seconds": seconds, "truncated": reader.truncated}

    result = asyncio.run(scenario())
    ids = result["ids"]
    record_figures(
        "recovery_from_the_store",
        {
            "missed": missed,
            "recovered": len(ids) - 1,
            "history_cap": 20,
            "seconds": round(result["seconds"], 2),
        },
    )
    assert ids == list(range(1, missed + 2))  # every message, once, in order
    assert result["truncated"] is False


def test_without_a_store_a_gap_is_marked_truncated(chat_server: Any) -> None:
    server = chat_server(history=5, rate_limit=0.0, grace=0.0)

    async def scenario() -> tuple[bool, list[int], bool]:
        reader = ChatClient(server.url, "Reader", id="reader", reconnect=False)
        writer = ChatClient(server.url, "Writer", id="writer", reconnect=False)
        await reader.connect(unit(10))
        await writer.connect(unit(10))
        await writer.send_message("seen")
        await reader.wait_for_message("seen", unit(5))
        await reader.close()
        for n in range(3):  # fewer than the history holds: no gap
            await writer.send_message(f"a{n}")
        await writer.wait_for(lambda c: not c.pending, unit(5))
        await rejoin(reader)
        no_gap = reader.truncated
        await reader.close()
        for n in range(10):  # more than the history holds: a gap
            await writer.send_message(f"b{n}")
        await writer.wait_for(lambda c: not c.pending, unit(5))
        await rejoin(reader)
        ids = [m["messageId"] for m in reader.messages]
        gap = reader.truncated
        await reader.close()
        await writer.close()
        return no_gap, ids, gap

    no_gap, ids, gap = asyncio.run(scenario())
    assert no_gap is False
    assert gap is True
    assert ids == [1, 2, 3, 4, 10, 11, 12, 13, 14]  # what is kept, after the mark


# --------------------------------------------------------------------------- de-duplication


def test_dedupe_survives_a_flood_and_refuses_a_reused_id_with_new_text(chat_server: Any) -> None:
    server = chat_server(history=50, rate_limit=0.0, grace=0.0)
    flood = 12_000

    async def scenario() -> dict[str, Any]:
        async with connect(server.url) as me, connect(server.url, max_size=None) as other:
            await me.send(hello("me", "Me"))
            await me.recv()
            await other.send(hello("other", "Other"))
            await other.recv()
            await me.send(say("mine", "c-1"))
            first = json.loads(await me.recv())
            while first["event"] != "messageWritten":  # "joined" of the other came first
                first = json.loads(await asyncio.wait_for(me.recv(), unit(5)))
            await other.recv()
            for n in range(flood):  # another user's messages cannot push out my ids
                await other.send(say(f"f{n}", f"o-{n}"))
            while True:
                if (
                    json.loads(await asyncio.wait_for(other.recv(), unit(10)))
                    .get("message", {})
                    .get("message")
                    == f"f{flood - 1}"
                ):
                    break
            # Drain what the flood sent to me, then resend.
            while True:
                event = json.loads(await asyncio.wait_for(me.recv(), unit(10)))
                if event.get("message", {}).get("message") == f"f{flood - 1}":
                    break
            await me.send(say("mine", "c-1"))
            resend = json.loads(await asyncio.wait_for(me.recv(), unit(5)))
            await me.send(say("something else", "c-1"))
            reuse = json.loads(await asyncio.wait_for(me.recv(), unit(5)))
            return {"first": first, "resend": resend, "reuse": reuse}

    result = asyncio.run(scenario())
    stored_mine = [m for m in server.history if m["id"] == "me"]
    record_figures(
        "dedupe_after_a_flood",
        {"flood": flood, "resend_acknowledged_as": result["resend"]["message"]["messageId"]},
    )
    assert result["resend"]["message"] == result["first"]["message"]  # the original entry
    assert result["reuse"]["event"] == "error" and result["reuse"]["code"] == "duplicate_id"
    assert stored_mine == []  # long gone from the history of 50, and not stored again
    assert server.history[-1]["message"] == f"f{flood - 1}"


# --------------------------------------------------------------------------- the store


def test_a_second_server_on_the_same_store_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    first = ChatServer(store=path).start()
    try:
        with pytest.raises(StoreError, match=r"is in use by another server \(it is locked\)$"):
            ChatServer(store=path)
        assert first.running

        async def still_serves() -> str:
            client = ChatClient(first.url, "Ann", reconnect=False)
            await client.connect(unit(10))
            await client.send_message("still here")
            await client.wait_for(lambda c: not c.pending, unit(5))
            await client.close()
            return client.messages[-1]["message"]

        assert asyncio.run(still_serves()) == "still here"
    finally:
        first.stop()
        first.store.close()  # type: ignore[union-attr]
    second = ChatServer(store=path).start()  # the lock went with the first server
    second.stop()
    second.store.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["corrupt", "missing-directory", "directory", "not-wslab"])
def test_a_bad_store_is_one_clear_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "chat.db"
    if case == "corrupt":
        path.write_bytes(b"\x00garbage" * 512)
        expected = "is not a SQLite database, or it is corrupt"
    elif case == "missing-directory":
        path = tmp_path / "nowhere" / "chat.db"
        expected = "store directory does not exist"
    elif case == "directory":
        path.mkdir()
        expected = "is a directory"
    else:
        import sqlite3

        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE messages (x TEXT)")
        db.close()
        expected = "is a SQLite file but not a wslab store"
    with pytest.raises(StoreError) as caught:
        ChatServer(store=path)
    message = str(caught.value)
    assert expected in message and "\n" not in message


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root reads and writes any file: a read-only file cannot be shown as root",
)
def test_a_read_only_store_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    ChatServer(store=path).store.close()  # type: ignore[union-attr]
    path.chmod(0o444)
    with pytest.raises(StoreError, match="not readable and writable"):
        ChatServer(store=path)

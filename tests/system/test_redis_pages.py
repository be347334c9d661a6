"""Every read-back of a server on Redis fits in a small reply, however long the entries.

A Redis whose ``client-output-buffer-limit`` cuts any reply over 32 KiB at once: a
server reads back the history, the present users, a client's missed messages, its
own holds and a dead server's holds in pages, and no read is cut, with ids, names
and messages at the longest the protocol allows. A heartbeat takes over a dead server's
holds a page at a time, and a server given up that wakes meanwhile keeps the rest.
"""

from __future__ import annotations

import asyncio
import json

import redis

from tests.conftest import run_bounded
from wslab import RedisServer
from wslab.backplane import PAGE_ITEMS, RedisBackplane
from wslab.engine import Append, Claim, digest
from wslab.protocol import (
    MAX_ID_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_USERNAME_LENGTH,
    Connecting,
    MessageEntry,
)

USERS, MESSAGES = 150, 60
NAME = "\U0001f600" * MAX_USERNAME_LENGTH  # 4 bytes a character in UTF-8
TEXT = "\U0001f600" * MAX_MESSAGE_LENGTH  # about 8 KB
HARD_LIMIT = "normal 32kb 0 0"


def user_id(n: int) -> str:
    return f"{n:04d}".ljust(MAX_ID_LENGTH, "u")


async def fill(writer: RedisBackplane, holder: RedisBackplane) -> None:
    """``holder`` holds ``USERS`` users; ``writer`` writes ``MESSAGES`` long messages."""
    for n in range(USERS):
        event = Connecting(id=user_id(n), username=NAME)
        await holder.claim(Claim(None, event), f"token-{n}")
    for _ in range(MESSAGES):
        draft: MessageEntry = {
            "id": user_id(0),
            "username": NAME,
            "message": TEXT,
            "ts": "2026-01-01T00:00:00Z",
            "messageId": 0,
        }
        await writer.append(Append(None, draft, digest(TEXT), TEXT))


def test_history_users_recovery_and_holds_are_read_back_under_a_32_kib_reply_limit(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        writer = RedisBackplane(redis_server.url, history=100)
        dead = RedisBackplane(redis_server.url, heartbeat=0.1)
        survivor = RedisBackplane(redis_server.url, history=100)
        try:
            await dead.beat()
            await fill(writer, dead)
            with redis.Redis.from_url(redis_server.url) as connection:
                connection.config_set("client-output-buffer-limit", HARD_LIMIT)
                connection.delete(f"wslab:alive:{dead.server_id}")  # it died

            snapshot = await survivor.snapshot()
            assert [m["messageId"] for m in snapshot.history] == list(range(1, MESSAGES + 1))
            assert [u["id"] for u in snapshot.users] == [user_id(n) for n in range(USERS)]
            found, complete = await survivor.messages_after(0)
            assert complete and [m["message"] for m in found] == [TEXT] * MESSAGES

            beat = await survivor.beat()  # takes over every hold of the dead server
            assert sorted(u["id"] for u in beat.adopted) == [user_id(n) for n in range(USERS)]
            assert (await survivor.beat()).adopted == []  # each hold taken over once
            adopted = await survivor.regrace()  # now the survivor's own holds, in grace
            assert sorted(u["id"] for u in adopted) == [user_id(n) for n in range(USERS)]
        finally:
            await asyncio.gather(writer.aclose(), dead.aclose(), survivor.aclose())
        with open(redis_server.log_path, encoding="utf-8") as log:
            assert "output buffer limits" not in log.read()

    run_bounded(scenario())


def test_a_server_given_up_that_wakes_mid_takeover_keeps_the_holds_not_yet_taken(
    redis_server: RedisServer,
) -> None:
    """Its holds are taken over a page at a time; when it beats again, the rest stay its own."""

    async def scenario() -> None:
        sleeper = RedisBackplane(redis_server.url)
        survivor = RedisBackplane(redis_server.url)
        try:
            await sleeper.beat()
            await fill(survivor, sleeper)
            await survivor._redis.delete(f"wslab:alive:{sleeper.server_id}")
            # One page of the survivor's heartbeat script: the first users are taken over.
            keys = ["wslab:servers", "wslab:users", "wslab:given_up"]
            args = [survivor.server_id, survivor.ttl_ms, "wslab:", PAGE_ITEMS]
            _, *taken = await survivor._scripts["beat"](keys=keys, args=args)
            assert len(taken) == PAGE_ITEMS

            woke = await sleeper.beat()  # it wakes: given up, so it holds its users again
            assert not woke.was_listed and woke.adopted == []
            assert (await survivor.beat()).adopted == []  # the rest are the sleeper's
            taken_ids = {json.loads(user.split(" ", 1)[1])["id"] for user in taken}
            for n in range(USERS):
                holders = await survivor._redis.hgetall(f"wslab:holders:{user_id(n)}")
                if user_id(n) in taken_ids:
                    assert holders == {survivor.server_id: "grace"}
                else:
                    assert holders == {sleeper.server_id: "open"}
        finally:
            await asyncio.gather(sleeper.aclose(), survivor.aclose())

    run_bounded(scenario())

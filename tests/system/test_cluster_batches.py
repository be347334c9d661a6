"""New messages reach Redis in batches: order, de-duplication and leaves stay as promised.

A socket that sends many frames at once has them numbered together, in one script
call per batch; these tests send such bursts on real Redis and check what the other
server's clients see.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import WAIT, hello, run_bounded, say, unit
from wslab import ChatClient, ChatServer, RedisServer
from wslab.engine import Append, AppendResult, digest

Make = Callable[..., ChatServer]


@pytest.fixture
def cluster(redis_server: RedisServer, make_server: Make) -> Iterator[Make]:
    """Start servers that share ``redis_server`` (small heartbeat)."""

    def make(**options: Any) -> ChatServer:
        options = {"redis": redis_server.url, "redis_heartbeat": 0.1, **options}
        return make_server(**options)

    yield make


def test_a_burst_from_one_socket_is_numbered_in_order_and_a_resend_in_it_once(
    cluster: Make,
) -> None:
    a, b = cluster(rate_limit=0), cluster()
    texts = [f"burst {i}" for i in range(60)]

    async def scenario() -> None:
        bob = await ChatClient(b.url, "bob").connect()
        async with connect(a.url) as burst:
            await burst.send(hello("ann-1", "ann"))
            assert json.loads(await burst.recv())["event"] == "connected"
            for i, text in enumerate(texts):  # no wait for any answer in between
                await burst.send(say(text, f"cm-{i}"))
            await burst.send(say(texts[3], "cm-3"))  # a resend inside the burst
            await bob.wait_for_message(texts[-1], WAIT)
            frames = [json.loads(await burst.recv()) for _ in range(len(texts) + 1)]
        written = [f["message"] for f in frames if f["event"] == "messageWritten"]
        assert len(written) == len(texts) + 1
        assert sorted(m["messageId"] for m in written if m["clientMessageId"] == "cm-3") == [4, 4]
        assert bob.texts() == texts
        assert [m["messageId"] for m in bob.messages] == list(range(1, len(texts) + 1))
        await bob.close()

    run_bounded(scenario())


def test_a_leave_never_overtakes_the_messages_sent_before_it(cluster: Make) -> None:
    a, b = cluster(rate_limit=0, grace=0), cluster(grace=unit(0.5))

    async def scenario() -> None:
        bob = await ChatClient(b.url, "bob").connect()
        async with connect(a.url) as burst:
            await burst.send(hello("ann-1", "ann"))
            assert json.loads(await burst.recv())["event"] == "connected"
            await bob.wait_for(lambda c: "ann-1" in c.users, WAIT)
            for i in range(200):
                await burst.send(say(f"last words {i}"))
        # Closed at once, with no grace: the leave is logged right after the messages
        # (those the server read before the close; it reads no frame after it).
        await bob.wait_for(lambda c: "ann-1" not in c.users, WAIT)
        await bob.send_message("after")
        await bob.wait_for_message("after", WAIT)
        seen = []
        for event in bob.events:
            if event.type == "message" and isinstance(event.data, str):
                frame = json.loads(event.data)
                if frame["event"] in ("messageWritten", "disconnected"):
                    seen.append(frame.get("message", {}).get("message", frame["event"]))
        sent = len(seen) - 2
        assert sent > 0
        assert seen == [f"last words {i}" for i in range(sent)] + ["disconnected", "after"]
        await bob.close()

    run_bounded(scenario())


def test_one_script_call_numbers_a_batch_and_answers_a_resend_with_its_entry(
    redis_server: RedisServer,
) -> None:
    from wslab.backplane import RedisBackplane

    def draft(text: str, cmid: str | None = None) -> Append:
        entry: dict[str, Any] = {"messageId": 0, "id": "ann", "username": "ann"}
        entry |= {"message": text, "ts": "2026-01-01T00:00:00.000Z"}
        if cmid is not None:
            entry["clientMessageId"] = cmid
        return Append("s1", entry, digest(text) if cmid else "", text)  # type: ignore[arg-type]

    async def scenario() -> list[AppendResult]:
        backplane = RedisBackplane(redis_server.url, dedupe_per_id=2)
        try:
            return await backplane.append_batch(
                [draft("a", "c1"), draft("a", "c1"), draft("b"), draft("c", "c2"), draft("d", "c3")]
            )
        finally:
            await backplane.aclose()

    first, resend, plain, _, _ = run_bounded(scenario())
    assert (first.stored, first.message_id) == (True, 1)
    assert (resend.stored, resend.message_id, resend.digest) == (False, 1, digest("a"))
    assert resend.entry is not None and resend.entry["message"] == "a"
    assert resend.entry["clientMessageId"] == "c1"
    assert (plain.stored, plain.message_id) == (True, 2)

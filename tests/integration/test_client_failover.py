"""ChatClient with several URLs: each retry goes to the next one, on real ChatServers.

Two plain ChatServers are two different rooms (their ``roomId``s differ); that is
enough here: which server the client reaches is what these tests watch.
"""

from __future__ import annotations

import random
import secrets
import socket
from collections.abc import Callable

import pytest

from tests.conftest import WAIT, run_bounded
from wslab import (
    BlockingChatClient,
    ChatClient,
    ChatConnectionError,
    ChatServer,
    Reconnector,
    RetryPolicy,
)

# Retries at once (the waits are the policy's business, tested in test_retry.py).
FAST = RetryPolicy(initial=0.01, factor=1.0, cap=0.01, min_uptime=60)
MakeServer = Callable[..., ChatServer]


def dead_url() -> str:
    """A chat URL on a loopback port that nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}/chat"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def attempted(client: ChatClient) -> dict[int, str]:
    """Record which URL each connection attempt went to: {attempt number: url}."""
    tried: dict[int, str] = {}

    def note(c: ChatClient) -> None:
        if c.status == "connecting":
            tried.setdefault(c.attempts, c.url)

    client.on_change = note
    return tried


def test_one_url_stays_a_string_and_urls_is_a_tuple() -> None:
    client = ChatClient("ws://127.0.0.1:1/chat", "ann")
    assert client.url == "ws://127.0.0.1:1/chat"
    assert client.urls == ("ws://127.0.0.1:1/chat",)
    several = ChatClient(["ws://a:1/chat", "ws://b:2/chat"], "ann")
    assert several.url == "ws://a:1/chat" and several.urls == ("ws://a:1/chat", "ws://b:2/chat")
    several.url = "ws://c:3/chat"  # one URL assigned replaces them all
    assert several.urls == ("ws://c:3/chat",)
    with pytest.raises(ValueError, match="at least one URL"):
        ChatClient([], "ann")
    with pytest.raises(TypeError, match="must be a str"):
        ChatClient(["ws://a:1/chat", 8765], "ann")  # type: ignore[list-item]


def test_a_dead_first_url_is_skipped_for_a_live_second(make_server: MakeServer) -> None:
    live = make_server()
    dead = dead_url()

    async def scenario() -> None:
        client = ChatClient([dead, live.url], "ann", policy=FAST)
        await client.connect(WAIT)
        assert client.url == live.url and client.attempts == 2
        kinds = [e.type for e in client.events]
        assert kinds[:3] == ["error", "close", "open"]  # the dead one failed first
        await client.close()

    run_bounded(scenario())


def test_a_client_fails_over_when_its_server_stops_and_sends_what_was_pending(
    make_server: MakeServer,
) -> None:
    first, second = make_server(grace=0), make_server(grace=0)

    async def scenario() -> None:
        client = ChatClient([first.url, second.url], "ann", policy=FAST)
        await client.connect(WAIT)
        assert client.url == first.url
        room = client.room_id
        await first.aclose()  # every client gets 1001 and retries
        await client.send_message("still here")  # queued while offline, or sent on B
        await client.wait_for(lambda c: c.online and c.url == second.url, WAIT)
        assert client.room_id != room  # another server, another room
        assert client.last_close is not None and client.last_close[0] == 1001
        await client.wait_for(lambda c: not c.pending, WAIT)
        assert [m["message"] for m in second.history] == ["still here"]
        await client.close()

    run_bounded(scenario())


def test_retries_go_round_robin_over_the_urls() -> None:
    urls = [dead_url(), dead_url(), dead_url()]

    async def scenario() -> None:
        client = ChatClient(urls, "ann", policy=FAST)
        tried = attempted(client)
        client.start()
        await client.wait_for(lambda c: c.attempts >= 7, WAIT)
        await client.close()
        assert [tried[n] for n in range(1, 8)] == [urls[(n - 1) % 3] for n in range(1, 8)]

    run_bounded(scenario())


def test_after_the_last_url_the_client_comes_back_to_the_first(make_server: MakeServer) -> None:
    first, second = make_server(grace=0), make_server(grace=0)

    async def scenario() -> None:
        client = ChatClient([first.url, second.url], "ann", policy=FAST)
        await client.connect(WAIT)
        await first.aclose()
        await client.wait_for(lambda c: c.online and c.url == second.url, WAIT)
        again = make_server(port=first.port, grace=0)  # the first server is back
        await second.aclose()
        await client.wait_for(lambda c: c.online and c.url == first.url, WAIT)
        assert client.url == again.url
        await client.close()

    run_bounded(scenario())


def test_when_every_url_refuses_for_good_the_client_gives_up(make_server: MakeServer) -> None:
    """A foreign Origin gets HTTP 403 from every server: once from each, then no more."""
    servers = [make_server(), make_server(), make_server()]

    async def scenario() -> None:
        client = ChatClient(
            [s.url for s in servers], "ann", policy=FAST, origin="https://elsewhere.example"
        )
        tried = attempted(client)
        with pytest.raises(ChatConnectionError, match="HTTP 403"):
            await client.connect(WAIT)
        assert client.status == "offline" and client.attempts == 3
        assert list(tried.values()) == [s.url for s in servers]
        errors = [e.detail for e in client.events if e.type == "error"]
        assert errors == ["handshake refused: HTTP 403"] * 3

    run_bounded(scenario())


def test_a_403_on_one_url_moves_on_to_a_server_that_accepts(make_server: MakeServer) -> None:
    origin = "https://school.example"
    strict, welcoming = make_server(), make_server(allowed_origins=[origin])

    async def scenario() -> None:
        client = ChatClient([strict.url, welcoming.url], "ann", policy=FAST, origin=origin)
        await client.connect(WAIT)
        assert client.url == welcoming.url and client.attempts == 2
        assert client.events[0].detail == "handshake refused: HTTP 403"
        await client.close()

    run_bounded(scenario())


def test_refusals_give_up_only_in_a_row_a_dead_url_may_come_back(make_server: MakeServer) -> None:
    """[403, nothing listening]: the dead one may start, so the client keeps trying."""
    strict = make_server()
    dead = dead_url()

    async def scenario() -> None:
        client = ChatClient([strict.url, dead], "ann", policy=FAST, origin="https://x.example")
        client.start()
        await client.wait_for(lambda c: c.attempts >= 6, WAIT)
        assert client.status != "offline"
        revived = make_server(port=port_of(dead), allowed_origins=["https://x.example"])
        await client.wait_for(lambda c: c.online, WAIT)
        assert client.url == revived.url == dead
        await client.close()

    run_bounded(scenario())


def test_a_1008_stays_final_whatever_other_urls_there_are(make_server: MakeServer) -> None:
    """A close about what the client sent (id_taken, 1008) would be refused anywhere."""
    first, second = make_server(), make_server()

    async def scenario() -> None:
        owner = ChatClient(first.url, "ann", id="ann-1", policy=FAST)
        await owner.connect(WAIT)
        thief = ChatClient(
            [first.url, second.url],
            "ann",
            id="ann-1",
            token=secrets.token_urlsafe(24),
            policy=FAST,
        )
        with pytest.raises(ChatConnectionError, match="1008"):
            await thief.connect(WAIT)
        assert (
            thief.attempts == 1
        )  # offline: its reconnect loop has ended and thief.url == first.url
        assert [e.code.value for e in thief.errors] == ["id_taken"]
        await owner.close()

    run_bounded(scenario())


def test_the_blocking_client_takes_several_urls(make_server: MakeServer) -> None:
    live = make_server()
    with BlockingChatClient([dead_url(), live.url], "ann", policy=FAST) as client:
        assert client.online and client.url == live.url
        assert client.urls[1] == live.url


def test_the_waits_between_urls_are_the_reconnectors_own() -> None:
    """Several URLs change where the client knocks, never how long it waits."""
    policy = RetryPolicy(initial=0.01, factor=2.0, cap=0.05, min_uptime=60)

    async def scenario() -> None:
        client = ChatClient(
            [dead_url(), dead_url()], "ann", policy=policy, rng=random.Random(7).random
        )
        waits: dict[int, float] = {}  # attempt number -> the wait after it

        def note(c: ChatClient) -> None:
            if c.status == "reconnecting" and c.next_retry_in is not None:
                waits.setdefault(c.attempts, c.next_retry_in)

        client.on_change = note
        client.start()
        await client.wait_for(lambda c: c.attempts >= 6, WAIT)
        await client.close()
        alone = Reconnector(policy, random.Random(7).random)
        expected = []
        for _ in range(5):
            alone.begin_attempt()
            expected.append(alone.after_close(1006, closed_by_us=False, now=0.0))
        assert [waits[n] for n in range(1, 6)] == expected

    run_bounded(scenario())


def test_a_client_that_gave_up_tries_every_url_again_when_started_again(
    make_server: MakeServer,
) -> None:
    servers = [make_server(), make_server()]

    async def scenario() -> None:
        client = ChatClient(
            [s.url for s in servers], "ann", policy=FAST, origin="https://elsewhere.example"
        )
        for tries in (2, 4):
            with pytest.raises(ChatConnectionError, match="HTTP 403"):
                await client.connect(WAIT)
            assert client.attempts == tries  # each URL once more, not one refusal and out

    run_bounded(scenario())

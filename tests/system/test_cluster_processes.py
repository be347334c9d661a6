"""Three real ``python -m wslab serve --redis URL`` processes, one real Redis: one chat.

Each test states one promise of a shared chat (see the docstrings of
:mod:`wslab.engine` and :mod:`wslab.backplane`) and shows it with
chat clients spread over the three servers: presence, the reload
grace across servers, tokens, history, de-duplication, recovery, a server killed
with SIGKILL, and Redis missing at start or stopping while the servers run. What a
client saw is read from its raw event log, frame by frame, as a browser's
``WebSocket`` would have fired it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.conftest import WAIT, run_bounded, say, unit
from tests.helpers.cluster import Cluster, close_codes, frames, presence_frames, since_last_open
from tests.helpers.reliability import RawWebSocket, claim
from wslab import ChatClient, RedisServer, RetryPolicy
from wslab.display import user_tag

# Reconnects come quickly, so a test waits on what it is about, not on the backoff.
FAST = RetryPolicy(initial=0.05, factor=2.0, cap=0.5, min_uptime=60)
MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(redis_server: RedisServer) -> Iterator[MakeCluster]:
    """``make_cluster(*serve_options)`` starts three servers on the test's Redis."""
    clusters: list[Cluster] = []

    def make(*options: str, count: int = 3) -> Cluster:
        cluster = Cluster(redis_server, count, options)
        clusters.append(cluster)
        return cluster.start()

    yield make
    for cluster in clusters:
        cluster.kill()
        print(cluster.output())  # shown when the test failed


class Crowd:
    """The clients of one scenario: all closed at its end, whatever happened."""

    def __init__(self) -> None:
        self.clients: list[ChatClient] = []

    def add(self, url: str | list[str], username: str, **options: Any) -> ChatClient:
        options.setdefault("policy", FAST)
        client = ChatClient(url, username, **options)
        self.clients.append(client)
        return client

    async def join(self, url: str | list[str], username: str, **options: Any) -> ChatClient:
        return await self.add(url, username, **options).connect(WAIT)

    async def __aenter__(self) -> Crowd:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


async def all_see(clients: list[ChatClient], ids: set[str]) -> None:
    """Wait until every client lists exactly these user ids."""
    await asyncio.gather(*(c.wait_for(lambda c: set(c.users) == ids, WAIT) for c in clients))


async def barrier(author: ChatClient, readers: list[ChatClient], text: str) -> None:
    """A message through the one log: whatever was logged before it has been read by then."""
    await author.send_message(text)
    await asyncio.gather(*(r.wait_for_message(text, WAIT) for r in readers))


def holders(redis_url: str, user_id: str) -> dict[str, str]:
    """Which servers hold ``user_id`` in Redis (server -> ``open`` or ``grace``)."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as connection:
        return dict(connection.hgetall(f"wslab:holders:{user_id}"))


def news(clients: list[ChatClient], user_id: str, before: list[str]) -> list[str]:
    """The presence frames about ``user_id`` that came after ``before`` (client by client)."""
    found = []
    for client in clients:
        earlier = sum(1 for line in before if line.startswith(f"{client.id} got "))
        found += presence_frames([client], user_id)[earlier:]
    return found


async def wait_holders(redis_url: str, user_id: str, count: int, *states: str) -> None:
    """Wait until exactly ``count`` servers hold ``user_id``, in one of ``states`` if given."""
    deadline = time.monotonic() + WAIT
    while True:
        held = await asyncio.to_thread(holders, redis_url, user_id)
        if len(held) == count and all(not states or s in states for s in held.values()):
            return
        assert time.monotonic() < deadline, f"{user_id} is held as {held}"
        await asyncio.sleep(0.02)  # polling Redis, bounded by the deadline


# ------------------------------------------------------------------------- presence


def test_presence_is_one_list_on_every_server_and_a_second_tab_is_not_a_second_user(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with Crowd() as crowd:
            ann = await crowd.join(cluster.url(0), "Ann", id="ann")
            bob = await crowd.join(cluster.url(1), "Bob", id="bob")
            cid = await crowd.join(cluster.url(2), "Cid", id="cid")
            everyone = [ann, bob, cid]
            await all_see(everyone, {"ann", "bob", "cid"})
            views = [sorted(c.users.items()) for c in everyone]
            assert views[0] == views[1] == views[2]
            assert views[0] == [("ann", "Ann"), ("bob", "Bob"), ("cid", "Cid")]

            before = presence_frames(everyone, "ann")
            # Ann opens a second tab, on server B, while her first one is open on A.
            tab = await crowd.join(cluster.url(1), "Ann", id="ann", token=ann.token)
            assert tab.was_page_reload is False
            listed = since_last_open(tab, "connected")[0]["connectedUserList"]
            assert sorted(u["id"] for u in listed) == ["ann", "bob", "cid"]  # Ann once
            await barrier(cid, [*everyone, tab], "after the second tab")
            assert presence_frames(everyone, "ann") == before  # nobody was told she joined
            for client in [*everyone, tab]:
                assert sorted(client.users.items()) == views[0]

    run_bounded(scenario())


def test_servers_sharing_a_chat_show_a_user_with_one_tag(make_cluster: MakeCluster) -> None:
    """The tag comes from the chat's secret in Redis (made once, by the first server)."""
    cluster = make_cluster(count=2)

    async def scenario() -> None:
        async with Crowd() as crowd:
            ann = await crowd.join(cluster.url(0), "ann", id="a-1234")
            bob = await crowd.join(cluster.url(1), "bob", id="b-1")
            await all_see([ann, bob], {"a-1234", "b-1"})
            await ann.wait_for(lambda c: len(c.tags) == 2, WAIT)
            await bob.wait_for(lambda c: len(c.tags) == 2, WAIT)
            assert ann.tags == bob.tags
            with redis.Redis.from_url(cluster.redis.url, decode_responses=True) as connection:
                key = connection.get("wslab:tag_key")
            assert key is not None and ann.tags["a-1234"] == user_tag(key, "a-1234")
            # The same user through the other server: the same tag.
            tab = await crowd.join(cluster.url(1), "ann", id="a-1234", token=ann.token)
            assert tab.tags == ann.tags

    run_bounded(scenario())


# ---------------------------------------------------------------------------- grace

GRACE = unit(0.5)  # long enough for a reload to land first, however slow the machine


def test_a_reload_on_another_server_within_the_grace_is_neither_a_leave_nor_a_join(
    make_cluster: MakeCluster, redis_server: RedisServer
) -> None:
    cluster = make_cluster("--grace", str(GRACE))

    async def scenario() -> None:
        async with Crowd() as crowd:
            watchers = [await crowd.join(cluster.url(i), f"W{i}", id=f"w{i}") for i in range(3)]
            xena = await crowd.join(cluster.url(0), "Xena", id="xena")
            ids = {"w0", "w1", "w2", "xena"}
            await all_see(watchers, ids)
            before = presence_frames(watchers, "xena")

            await xena.close()  # her page unloads on server A: A runs her grace
            closed_at = time.monotonic()
            # A tells Redis of her grace just after her socket closed; a reloaded page
            # takes longer than that to load and connect.
            await wait_holders(redis_server.url, "xena", 1, "grace")
            back = await crowd.join(cluster.url(1), "Xena", id="xena", token=xena.token)
            assert time.monotonic() - closed_at < GRACE, "the reload came too late to test"
            assert back.was_page_reload is True
            # A's grace runs out: it lets go of her in Redis; B holds her still.
            await wait_holders(redis_server.url, "xena", 1, "open")
            await barrier(watchers[2], [*watchers, back], "after A's grace")
            assert presence_frames(watchers, "xena") == before
            await all_see(watchers, ids)

            # Now she goes for longer than the grace: everyone is told, once.
            await back.close()
            await all_see(watchers, ids - {"xena"})
            assert news(watchers, "xena", before) == [f"w{i} got disconnected" for i in range(3)]
            # And she comes back on server C: a join, not a reload.
            again = await crowd.join(cluster.url(2), "Xena", id="xena", token=xena.token)
            assert again.was_page_reload is False
            await all_see(watchers, ids)
            assert news(watchers, "xena", before) == [
                f"w{i} got {event}" for i in range(3) for event in ("disconnected", "joined")
            ]

    run_bounded(scenario())


# --------------------------------------------------------------------------- tokens


def test_an_id_claimed_without_its_token_on_another_server_is_refused_and_the_owner_unaffected(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with Crowd() as crowd:
            owner = await crowd.join(cluster.url(0), "Olga", id="olga")
            watchers = [await crowd.join(cluster.url(i), f"W{i}", id=f"w{i}") for i in (1, 2)]
            await all_see([owner, *watchers], {"olga", "w1", "w2"})
            token, before = owner.token, presence_frames(watchers, "olga")

            for url, fields in ((cluster.url(1), {}), (cluster.url(2), {"token": "f" * 32})):
                received, code = await claim(url, "olga", **fields)
                assert code == 1008
                assert [e["event"] for e in received] == ["error"]
                assert received[0]["code"] == "id_taken"

            assert owner.online and owner.token == token
            assert close_codes(owner) == []  # her socket never closed
            await barrier(owner, watchers, "still me")
            assert presence_frames(watchers, "olga") == before
            for watcher in watchers:
                assert watcher.users["olga"] == "Olga"
                message = await watcher.wait_for_message("still me", WAIT)
                assert (message["id"], message["username"]) == ("olga", "Olga")

    run_bounded(scenario())


# -------------------------------------------------------------------------- history


def test_a_newcomer_on_the_third_server_gets_what_was_written_on_the_other_two_in_order(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with Crowd() as crowd:
            ann = await crowd.join(cluster.url(0), "Ann", id="ann")
            bob = await crowd.join(cluster.url(1), "Bob", id="bob")
            order = []
            for n in range(3):
                for author in (ann, bob):
                    text = f"{author.id} {n}"
                    await author.send_message(text)
                    await author.wait_for(lambda c: not c.pending, WAIT)  # acknowledged
                    order.append(text)
            cid = await crowd.join(cluster.url(2), "Cid", id="cid")
            history = since_last_open(cid, "connected")[0]["messagesList"]
            assert [m["message"] for m in history] == order
            assert [m["messageId"] for m in history] == list(range(1, 7))
            assert [m["id"] for m in history] == ["ann", "bob"] * 3
            for client in (ann, bob):
                await client.wait_for(lambda c: c.texts() == order, WAIT)

    run_bounded(scenario())


# ------------------------------------------------------------------- de-duplication


def test_a_resend_through_another_server_is_acknowledged_with_its_first_id_and_stored_once(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with Crowd() as crowd:
            watcher = await crowd.join(cluster.url(2), "Wes", id="wes")
            una = await crowd.join(cluster.url(0), "Una", id="una")
            await una.send_raw(say("only once", "cm-1"))
            first = await una.wait_for_message("only once", WAIT)
            await una.close()

            # The same message again, through server B (say, its acknowledgement was lost).
            again = await crowd.join(cluster.url(1), "Una", id="una", token=una.token)
            await again.send_raw(say("only once", "cm-1"))
            await again.wait_for(lambda c: len(since_last_open(c, "messageWritten")) == 1, WAIT)
            ack = since_last_open(again, "messageWritten")[0]["message"]
            assert ack["messageId"] == first["messageId"]
            assert ack["clientMessageId"] == "cm-1" and ack["ts"] == first["ts"]

            await barrier(again, [watcher], "next")
            written = [e["message"]["message"] for e in frames(watcher, "messageWritten")]
            assert written == ["only once", "next"]  # the resend reached nobody else
            newcomer = await crowd.join(cluster.url(2), "New", id="new")
            stored = since_last_open(newcomer, "connected")[0]["messagesList"]
            assert [(m["messageId"], m["message"]) for m in stored] == [
                (first["messageId"], "only once"),
                (first["messageId"] + 1, "next"),
            ]

    run_bounded(scenario())


# ------------------------------------------------------------------------- recovery


def test_a_client_back_on_another_server_gets_exactly_what_it_missed_beyond_the_history(
    make_cluster: MakeCluster,
) -> None:
    kept, missed = 5, 12
    cluster = make_cluster("--history", str(kept))

    async def scenario() -> None:
        async with Crowd() as crowd:
            rita = await crowd.join(cluster.url(0), "Rita", id="rita")
            writer = await crowd.join(cluster.url(1), "Will", id="will")
            for n in range(3):
                await writer.send_message(f"seen {n}")
            await rita.wait_for(lambda c: len(c.messages) == 3, WAIT)
            last_seen = rita.last_message_id
            await rita.close()

            for n in range(missed):  # more than any server keeps in memory
                await writer.send_message(f"missed {n}")
            await writer.wait_for(lambda c: not c.pending and len(c.messages) == 3 + missed, WAIT)

            rita.url = cluster.url(2)  # she comes back on server C
            rita.reconnect = True
            rita.start()
            await rita.wait_for(lambda c: c.online and len(c.messages) == 3 + missed, WAIT)
            hello = since_last_open(rita, "connected")[0]
            assert "truncated" not in hello  # nothing missing
            got = [m["messageId"] for m in hello["messagesList"]]
            got += [e["message"]["messageId"] for e in since_last_open(rita, "messageWritten")]
            assert last_seen is not None
            assert got == list(range(last_seen + 1, last_seen + 1 + missed))  # each once
            assert len(hello["messagesList"]) <= kept  # the rest came after it, in order
            assert rita.texts() == writer.texts()

    run_bounded(scenario())


# --------------------------------------------------------------------------- kill -9

HEARTBEAT = 0.1


def test_a_killed_servers_users_are_announced_gone_unless_they_fail_over_losing_nothing(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster("--grace", str(GRACE), "--redis-heartbeat", str(HEARTBEAT))

    async def scenario() -> None:
        async with Crowd() as crowd:
            watchers = [await crowd.join(cluster.url(i), f"W{i}", id=f"w{i}") for i in (1, 2)]
            # Vic's page is gone with the server; Max's client knows all three URLs.
            vic = await crowd.join(cluster.url(0), "Vic", id="vic", reconnect=False)
            max_ = await crowd.join(cluster.urls, "Max", id="max")
            assert max_.url == cluster.url(0)
            await all_see([vic, max_, *watchers], {"w1", "w2", "vic", "max"})
            sent = [f"before {n}" for n in range(5)]
            for text in sent:
                await max_.send_message(text)
            await max_.wait_for(lambda c: not c.pending, WAIT)

            await asyncio.to_thread(cluster.servers[0].kill)
            killed_at = time.monotonic()
            for n in range(5):  # written as the server dies: queued, then resent elsewhere
                sent.append(f"after {n}")
                await max_.send_message(sent[-1])
            await max_.wait_for(lambda c: c.online and not c.pending, WAIT)
            assert max_.url != cluster.url(0)

            # Vic never comes back: the survivors notice the silent server, then run his grace.
            await all_see(watchers, {"w1", "w2", "max"})
            gone_after = time.monotonic() - killed_at
            # Not before his server's heartbeat key expired (five beats after its last
            # one) and his grace then ran out on a survivor.
            assert gone_after >= 4 * HEARTBEAT + GRACE
            assert presence_frames(watchers, "vic") == [
                f"w{i} got {event}" for i in (1, 2) for event in ("joined", "disconnected")
            ]
            assert presence_frames(watchers, "max") == ["w1 got joined", "w2 got joined"]  # once
            for client in [max_, *watchers]:
                await client.wait_for(lambda c: c.texts() == sent, WAIT)
                ids = [m["messageId"] for m in client.messages]
                assert ids == list(range(1, len(sent) + 1))
            print(f"vic announced gone {gone_after:.2f} s after the kill")

    run_bounded(scenario())


def test_a_server_stopped_with_sigterm_exits_0_and_the_others_take_over_at_once(
    make_cluster: MakeCluster,
) -> None:
    """A clean stop deletes the server's heartbeat key: no waiting for it to expire."""
    cluster = make_cluster("--grace", str(GRACE))  # the default heartbeat: 2.5 s to expire

    async def scenario() -> None:
        async with Crowd() as crowd:
            watcher = await crowd.join(cluster.url(1), "Wes", id="wes")
            vic = await crowd.join(cluster.url(0), "Vic", id="vic", reconnect=False)
            await all_see([watcher], {"wes", "vic"})
            code = await asyncio.to_thread(cluster.servers[0].stop, unit(5))
            stopped_at = time.monotonic()
            assert code == 0
            assert close_codes(vic) == [1001]
            await all_see([watcher], {"wes"})
            # Taken over at the others' next beat (0.5 s), not once the key expired (2.5 s
            # after the stopped server's last beat, itself at most 0.5 s before the stop).
            assert time.monotonic() - stopped_at < GRACE + 1.5

    run_bounded(scenario())


# ---------------------------------------------------------------------------- Redis


def test_serve_with_redis_unreachable_says_so_in_one_line_and_exits_1() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    done = subprocess.run(
        [sys.executable, "-m", "wslab", "serve", "--port", "0", "--redis", url],
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("python -m wslab serve: error: cannot reach Redis at ")
    assert url in done.stderr and "connection refused" in done.stderr


def test_redis_stopping_closes_clients_with_1013_refuses_handshakes_and_service_comes_back(
    make_cluster: MakeCluster, redis_server: RedisServer
) -> None:
    cluster = make_cluster()
    urls = cluster.urls

    async def scenario() -> None:
        async with Crowd() as crowd:
            # Each client starts on another server and knows all three.
            clients = [await crowd.join(urls[i:] + urls[:i], f"C{i}", id=f"c{i}") for i in range(3)]
            written = []
            for client in clients:
                for n in range(2):
                    written.append(f"{client.id} {n}")
                    await client.send_message(written[-1])
                await client.wait_for(lambda c: not c.pending, WAIT)
            room = clients[0].room_id

            await asyncio.to_thread(redis_server.stop)
            for client in clients:
                await client.wait_for(lambda c: 1013 in close_codes(c), WAIT)
            for url in urls:
                port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
                peer = await asyncio.to_thread(RawWebSocket.connect, "127.0.0.1", port)
                peer.close()
                assert peer.status == 503
            for client in clients:  # typed while the chat is down: kept, sent later
                written.append(f"{client.id} offline")
                await client.send_message(written[-1])
                assert not client.online

            await asyncio.to_thread(redis_server.restart, unit(20))
            for client in clients:
                await client.wait_for(lambda c: c.online and not c.pending, 2 * WAIT)
            for client in clients:
                await client.wait_for(lambda c: len(c.messages) == len(written), WAIT)
                assert client.room_id == room  # the same chat: Redis kept its data
                assert [m["messageId"] for m in client.messages] == list(range(1, len(written) + 1))
                assert sorted(client.texts()) == sorted(written)
                assert client.texts() == clients[0].texts()
                assert client.texts()[:6] == written[:6]  # acknowledged first, kept first

    run_bounded(scenario(), timeout=12 * WAIT)


def test_a_redis_restart_is_one_outage_each_client_is_closed_with_1013_once(
    make_cluster: MakeCluster, redis_server: RedisServer
) -> None:
    cluster = make_cluster()

    async def scenario() -> None:
        async with Crowd() as crowd:
            clients = [await crowd.join(cluster.url(i), f"C{i}", id=f"c{i}") for i in range(3)]
            await asyncio.to_thread(redis_server.restart, unit(20))
            for client in clients:
                await client.wait_for(lambda c: 1013 in close_codes(c), WAIT)
            for client in clients:  # back, and writing again
                await client.wait_for(lambda c: c.online, 2 * WAIT)
                await client.send_message(f"{client.id} is back")
                await client.wait_for(lambda c: c.online and not c.pending, 2 * WAIT)
            assert [close_codes(c).count(1013) for c in clients] == [1, 1, 1]

    run_bounded(scenario(), timeout=12 * WAIT)

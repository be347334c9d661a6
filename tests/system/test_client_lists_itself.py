"""A connected client lists itself, even after its server froze and woke up.

Two ``serve --redis`` processes share one chat. Alice is on server 0, Bob on server 1.
Server 0 is frozen (SIGSTOP) past its heartbeat's expiry, so server 1 takes it for dead
and announces Alice gone once her grace ran out; woken (SIGCONT), server 0 finds it was
given up and holds Alice again. Alice's own socket never closed, and she reads the
``disconnected`` about herself, but never the ``joined`` that followed (nobody announces
a user to herself): her client must still list her.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import WAIT, run_bounded
from tests.helpers.cluster import Cluster
from wslab import ChatClient, RedisServer, RetryPolicy

FAST = RetryPolicy(initial=0.05, factor=2.0, cap=0.5, min_uptime=60)
HEARTBEAT = 0.1
GRACE = 0.2


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    servers = Cluster(redis_server, 2, ("--grace", str(GRACE), "--redis-heartbeat", str(HEARTBEAT)))
    try:
        yield servers.start()
    finally:
        for server in servers.servers:  # a frozen process cannot even take SIGKILL's exit
            if server.running:
                server.send_signal(signal.SIGCONT)
        servers.kill()
        print(servers.output())  # shown when the test failed


def told_gone(client: ChatClient, user_id: str) -> bool:
    """Whether ``client``'s raw log holds a ``disconnected`` (or presence left) for the id."""
    for event in client.events:
        if event.type != "message" or not isinstance(event.data, str):
            continue
        frame = json.loads(event.data)
        if frame.get("event") == "disconnected" and frame.get("id") == user_id:
            return True
        if frame.get("event") == "presence" and any(
            u.get("id") == user_id for u in frame.get("left", [])
        ):
            return True
    return False


def test_a_frozen_servers_user_keeps_listing_herself_after_it_wakes(cluster: Cluster) -> None:
    async def scenario() -> None:
        alice = ChatClient(cluster.url(0), "alice", id="alice", policy=FAST)
        bob = ChatClient(cluster.url(1), "bob", id="bob", policy=FAST)
        try:
            await alice.connect(WAIT)
            await bob.connect(WAIT)
            await alice.wait_for(lambda c: set(c.users) == {"alice", "bob"}, WAIT)
            await bob.wait_for(lambda c: set(c.users) == {"alice", "bob"}, WAIT)

            cluster.servers[0].send_signal(signal.SIGSTOP)
            await bob.wait_for(lambda c: "alice" not in c.users, 2 * WAIT)  # taken for dead
            cluster.servers[0].send_signal(signal.SIGCONT)

            await bob.wait_for(lambda c: set(c.users) == {"alice", "bob"}, 2 * WAIT)
            await alice.wait_for(lambda c: told_gone(c, "alice"), 2 * WAIT)
            await alice.wait_for(lambda c: set(c.users) == {"alice", "bob"}, WAIT)
            assert alice.online and alice.attempts == 1  # the same socket all along
        finally:
            await alice.close()
            await bob.close()

    run_bounded(scenario())

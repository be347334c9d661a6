"""Servers on a Redis that limits what it sends each client, and a server that cannot resync.

Redis cuts a client whose unsent replies pass its ``client-output-buffer-limit``
(``normal 64kb 32kb 5``: at once over 64 KiB, or over 32 KiB for 5 s). A server cut
off must come back while the limit stays, so it reads the chat back in pages that
each stay well under it. A server that cannot read the chat back is not taken for
alive: the others run the graces of its users and announce who left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import WAIT, run_bounded, unit
from tests.helpers.cluster import Cluster, close_codes, since_last_open
from tests.helpers.reliability import wait_until
from wslab import ChatClient, RedisServer, RetryPolicy, ServerProcess

FAST = RetryPolicy(initial=0.05, factor=2.0, cap=0.5, min_uptime=60)
LIMIT = "normal 64kb 32kb 5"
GRACE = unit(0.5)
#: Messages of the flood: their log is far over 64 KiB (1,000 x about 300 bytes).
FLOOD, TEXT = 1000, "x" * 200
#: How soon every server serves again after Redis cut them all off.
BACK_WITHIN = unit(10)


def cuts(redis_server: RedisServer) -> int:
    """How many clients Redis closed for passing an output buffer limit so far (its log)."""
    with open(redis_server.log_path, encoding="utf-8", errors="replace") as log:
        return log.read().count("for overcoming of output buffer limits")


def redis_command(redis_server: RedisServer, *command: str) -> object:
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as connection:
        return connection.execute_command(*command)


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    options = ("--grace", str(GRACE), "--rate-limit", "0", "--history", "100")
    cluster = Cluster(redis_server, 3, options).start()
    yield cluster
    cluster.kill()
    print(cluster.output())  # shown when the test failed


def test_servers_cut_off_by_a_reply_limit_serve_again_within_seconds_while_it_stays(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    """A flood under the limit, then Redis cuts every client: each server serves again
    within seconds, a user who left meanwhile is announced gone, a client far behind
    gets every message it missed, and Redis cuts nobody again."""

    async def scenario() -> None:
        clients = [ChatClient(cluster.url(i), f"C{i}", id=f"c{i}", policy=FAST) for i in range(3)]
        leaver = ChatClient(cluster.url(0), "Lea", id="lea", reconnect=False)
        rita = ChatClient(cluster.url(1), "Rita", id="rita", policy=FAST)
        everyone = [*clients, leaver, rita]
        try:
            for client in everyone:
                await client.connect(WAIT)
            await clients[0].send_message("before the flood")
            await rita.wait_for_message("before the flood", WAIT)
            await rita.close()  # away during the flood: she recovers it all later

            await asyncio.to_thread(
                redis_command, redis_server, "CONFIG", "SET", "client-output-buffer-limit", LIMIT
            )
            for n in range(FLOOD):
                await clients[0].send_message(f"{n} {TEXT}")
            for client in clients:
                await client.wait_for(lambda c: len(c.messages) == FLOOD + 1, 4 * WAIT)
            await clients[0].wait_for(lambda c: not c.pending, WAIT)

            cut_before = await asyncio.to_thread(cuts, redis_server)
            await asyncio.to_thread(redis_command, redis_server, "CLIENT", "KILL", "TYPE", "normal")
            killed_at = time.monotonic()
            for client in [*clients, leaver]:
                await client.wait_for(lambda c: 1013 in close_codes(c), WAIT)

            # Every server serves again, and its clients write again, while the limit stays.
            for client in clients:
                await client.wait_for(lambda c: c.online, BACK_WITHIN)
            back_after = time.monotonic() - killed_at
            for client in clients:
                await client.send_message(f"{client.id} is back")
            for client in clients:
                await client.wait_for(lambda c: len(c.messages) == FLOOD + 4, WAIT)
            written = clients[0].texts()

            # Lea closed with the outage and never came back: everyone is told she left.
            for client in clients:
                await client.wait_for(lambda c: "lea" not in c.users, WAIT)

            # Rita comes back with her lastMessageId, far behind any server's history.
            rita.reconnect = True
            rita.start()
            await rita.wait_for(lambda c: c.online and len(c.messages) == FLOOD + 4, 2 * WAIT)
            assert rita.texts() == written
            assert [m["messageId"] for m in rita.messages] == list(range(1, FLOOD + 5))
            assert "truncated" not in since_last_open(rita, "connected")[0]

            limit = await asyncio.to_thread(
                redis_command, redis_server, "CONFIG", "GET", "client-output-buffer-limit"
            )
            assert "normal 65536 32768 5" in str(limit)
            cut_after = await asyncio.to_thread(cuts, redis_server) - cut_before
            assert cut_after == 0, f"Redis cut {cut_after} clients after the kill"
            print(
                f"every server served again {back_after:.2f} s after the kill;"
                f" Redis cut {cut_before} clients during the flood"
            )
        finally:
            await asyncio.gather(*(c.close() for c in everyone), return_exceptions=True)

    run_bounded(scenario(), timeout=16 * WAIT)


def test_a_server_that_cannot_read_the_chat_back_is_not_kept_alive_and_says_so_once(
    redis_server: RedisServer,
) -> None:
    """Server A's Redis user may no longer read the log (``-xrevrange``): it cannot resync.

    Server B runs the grace of A's user and announces that she left, and A says
    in one line what happened and what it does, without its URL's password.
    """
    redis_command(
        redis_server, "ACL", "SETUSER", "server-a", "on", ">s3cret-pw", "~*", "&*", "+@all"
    )
    a_url = redis_server.url.replace("redis://", "redis://server-a:s3cret-pw@")
    a = ServerProcess("--redis", a_url, "--grace", str(GRACE))
    b = ServerProcess("--redis", redis_server.url, "--grace", str(GRACE))

    async def scenario() -> None:
        alice = ChatClient(a.url or "", "Alice", id="alice", reconnect=False)
        bob = ChatClient(b.url or "", "Bob", id="bob", policy=FAST)
        try:
            await alice.connect(WAIT)
            await bob.connect(WAIT)
            await bob.wait_for(lambda c: "alice" in c.users, WAIT)

            await asyncio.to_thread(
                redis_command, redis_server, "ACL", "SETUSER", "server-a", "-xrevrange"
            )
            await asyncio.to_thread(
                redis_command, redis_server, "CLIENT", "KILL", "USER", "server-a"
            )
            await alice.wait_for(lambda c: 1013 in close_codes(c), WAIT)
            # A's heartbeat stops (2.5 s to expire), then B runs Alice's grace.
            await bob.wait_for(lambda c: "alice" not in c.users, 2 * WAIT)
            assert bob.online and close_codes(bob) == []
        finally:
            await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)

    with a, b:
        try:
            run_bounded(scenario(), timeout=6 * WAIT)
            # By now A has tried again several times (its heartbeat stopped 2.5 s ago).
            wait_until(lambda: "cannot read the chat back" in a.output(), WAIT, "A's line")
        finally:
            print(a.output())
        said = [line for line in a.output("stderr").splitlines() if line.strip()]
        assert all("s3cret-pw" not in line for line in said)
        faults = [line for line in said if "cannot read the chat back" in line]
        assert len(faults) == 1, said
        assert faults[0].startswith(
            f"Redis at redis://server-a:***@127.0.0.1:{redis_server.port}/0"
        )

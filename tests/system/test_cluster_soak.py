"""Cluster soak: ~60 chatting clients on three server processes and one Redis, under fire.

Three ``python -m wslab serve --redis URL`` processes share one chat through one
persistent ``redis-server``. Every client knows all three URLs (each starts on
another one) and chats under the rate limit, as in :mod:`test_chaos_soak`, whose
clients and bookkeeping this soak reuses (:class:`~.test_chaos_soak.Chatters`).
While they chat, a fault injector

- drops random clients' connections (their TCP connection vanishes: 1006; they
  reconnect, to the next URL),
- kills clients (a NEW ChatClient comes back with the same id and token, as a
  reloaded page does) and ends some for good,
- kills one server with SIGKILL mid-run and starts it again on the same port,
- restarts Redis once (persistent: its data survive; meanwhile every server
  closes its clients with 1013 and refuses handshakes with 503).

Pass: every message acknowledged to its author (or still pending at a client
that stayed) is stored exactly once, ``messageId``\\ s have no gap, every
client's list is the history (from where it joined) in order, presence
converges (Redis and every server list exactly the clients still there), and no
process, thread or file descriptor is left behind. The figures are printed and
written to ``$WSLAB_RESULTS_DIR/cluster-soak.json``.

Length: ``WSLAB_CLUSTER_SOAK_SECONDS`` of faults (default 15: every fault above,
about 50 client faults); the whole run stays under 60 s on an idle machine and stops
by itself.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
import redis

from tests.helpers.cluster import Cluster, frames, since_last_open
from tests.helpers.reliability import record_figures, unit, wait_until
from tests.system.test_chaos_soak import Chatters
from wslab import ChatClient, RedisServer

SOAK_SECONDS = float(os.environ.get("WSLAB_CLUSTER_SOAK_SECONDS", "15"))
CLIENTS = int(os.environ.get("WSLAB_CLUSTER_SOAK_CLIENTS", "60"))
GRACE = 0.5
HEARTBEAT = 0.2  # a server silent for 1 s is taken for dead
MAX_ENDED = 5
RAW_LOG = 100_000  # frames a client keeps: all of them, in a bounded run


def stored_messages(redis_url: str) -> list[dict[str, Any]]:
    """Every message in the chat's log in Redis, oldest first (the whole history)."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as connection:
        log = connection.xrange("wslab:log", "-", "+")
        return [json.loads(fields["e"]) for _, fields in log if fields["t"] == "m"]


def present_ids(redis_url: str) -> set[str]:
    """The ids Redis lists as present in the whole chat."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as connection:
        return set(connection.hkeys("wslab:users"))


@dataclass
class ClusterSoak(Chatters):
    """The chat of three server processes on one Redis, and the faults it suffers."""

    cluster: Cluster = field(kw_only=True)

    @property
    def redis(self) -> RedisServer:
        return self.cluster.redis

    def new_client(self, username: str, **identity: Any) -> ChatClient:
        client = super().new_client(username, **identity)
        # Keep every frame: duplicate deliveries are counted from the raw log at the end.
        client.events = deque(maxlen=RAW_LOG)
        return client

    def duplicate_deliveries(self) -> tuple[int, int]:
        """Messages of others that live clients received, and how many of them more than once.

        A client's own messages may legitimately come twice: a resend of a message whose
        acknowledgement was lost is acknowledged again (and it may be in the recovery too).
        """
        delivered = duplicates = 0
        for client in self.live:
            seen = Counter(
                entry["messageId"]
                for event in frames(client, "connected", "messageWritten")
                for entry in (
                    event["messagesList"] if event["event"] == "connected" else [event["message"]]
                )
                if entry["id"] != client.id
            )
            delivered += sum(seen.values())
            duplicates += sum(n - 1 for n in seen.values())
        return delivered, duplicates

    def client_urls(self) -> list[str]:
        """All three URLs, starting with another server for each new client."""
        urls = self.cluster.urls
        first = self.created % len(urls)
        return urls[first:] + urls[:first]

    # ------------------------------------------------------------------ faults

    async def inject_faults(self, seconds: float) -> None:
        """Client faults all along; a server killed and started again; Redis restarted."""
        started = time.monotonic()
        victim = self.rng.randrange(len(self.cluster.servers))
        # (when, what): the server is down for a while; Redis restarts once it is back.
        plan = [(0.25, "kill_server"), (0.4, "restart_server"), (0.65, "restart_redis")]
        while time.monotonic() - started < seconds:
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))  # pacing between faults
            elapsed = (time.monotonic() - started) / seconds
            if plan and elapsed >= plan[0][0]:
                _, what = plan.pop(0)
                await self.big_fault(what, victim)
                continue
            kind = self.rng.choices(["drop", "kill", "end"], [6, 3, 1])[0]
            await self.client_fault(kind)
        for _, what in plan:  # a slow machine still gets every big fault
            await self.big_fault(what, victim)

    async def big_fault(self, what: str, victim: int) -> None:
        server = self.cluster.servers[victim]
        if what == "kill_server":
            await asyncio.to_thread(server.kill)
            self.faults["server_kill"] += 1
        elif what == "restart_server":
            await asyncio.to_thread(server.restart, unit(15))
            self.faults["server_restart"] += 1
        else:
            await asyncio.to_thread(self.redis.restart, unit(15))
            self.faults["redis_restart"] += 1

    # ------------------------------------------------------------------ the end

    async def converge(self) -> dict[str, Any]:
        """Wait until every survivor is online, has sent everything and has all history,
        and presence is the survivors everywhere; how long that took after the faults."""
        started = time.monotonic()
        timeout = unit(40)
        try:
            await asyncio.gather(
                *(c.wait_for(lambda c: c.online and not c.pending, timeout) for c in self.live)
            )
        except TimeoutError:
            stuck = [
                f"{c.id}: {c.status}, pending={len(c.pending)}, last close {c.last_close},"
                f" attempts {c.attempts}, events {[str(e)[:60] for e in c.events][-4:]}"
                for c in self.live
                if not (c.online and not c.pending)
            ]
            pytest.fail("survivors did not converge:\n" + "\n".join(stuck))
        history = await asyncio.to_thread(stored_messages, self.redis.url)
        last = history[-1]["messageId"] if history else None
        await asyncio.gather(
            *(c.wait_for(lambda c: c.last_message_id == last, timeout) for c in self.live)
        )
        survivors = {c.id for c in self.live}
        await asyncio.gather(
            *(c.wait_for(lambda c: set(c.users) == survivors, timeout) for c in self.live)
        )
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(present_ids, self.redis.url) != survivors:
            assert time.monotonic() < deadline, "presence in Redis did not converge"
            await asyncio.sleep(0.05)  # polling Redis, bounded by the deadline
        converged = time.monotonic() - started
        views = [await self.server_view(url, survivors, deadline) for url in self.cluster.urls]
        return {
            "history": history,
            "survivors": survivors,
            "convergence_seconds": round(converged, 2),
            "server_views_agree": all(view == survivors for view in views),
            "clients_per_server": [sum(c.url == u for c in self.live) for u in self.cluster.urls],
        }

    async def server_view(self, url: str, survivors: set[str], deadline: float) -> set[str]:
        """The users a server lists, read by a second tab of a survivor opened on it.

        A second tab changes nobody's presence, so looking does not disturb the chat.
        """
        owner = self.live[0]
        while True:
            tab = ChatClient(url, owner.username, id=owner.id, token=owner.token, reconnect=False)
            try:
                await tab.connect(unit(10))
                listed = since_last_open(tab, "connected")[0]["connectedUserList"]
            finally:
                await tab.close()
            view = {user["id"] for user in listed}
            if view == survivors or time.monotonic() > deadline:
                return view
            await asyncio.sleep(0.05)  # the server has not read the log that far yet


async def run_soak(cluster: Cluster, seconds: float, seed: int) -> dict[str, Any]:
    soak = ClusterSoak(random.Random(seed), cluster=cluster)
    for i in range(CLIENTS):
        soak.new_client(f"user{i}", id=f"c{i:03d}")
    await asyncio.gather(*(c.connect(unit(30)) for c in list(soak.live)))
    started = time.monotonic()
    chatting = asyncio.create_task(soak.chat())
    try:
        await soak.inject_faults(seconds)
    finally:
        soak.stop.set()
        await chatting
    chaos_seconds = time.monotonic() - started
    try:
        end = await soak.converge()
    except BaseException:  # a failed run must not leave clients reconnecting
        await asyncio.gather(*(c.close() for c in soak.live), return_exceptions=True)
        raise
    history = end.pop("history")
    everything = [(m["messageId"], m["message"]) for m in history]
    position = {message_id: i for i, (message_id, _) in enumerate(everything)}

    def expected_view(view: list[tuple[int, str]]) -> list[tuple[int, str]]:
        # A client there from the start has every message; a reloaded page starts
        # from the history its first connected carried, and misses nothing after it.
        if not view:
            return everything
        return everything[position.get(view[0][0], 0) :]

    figures = soak.figures(history, expected_view)
    figures["deliveries"], figures["duplicate_deliveries"] = soak.duplicate_deliveries()
    await asyncio.gather(*(c.close() for c in soak.live))
    return {
        "seed": seed,
        "seconds": round(chaos_seconds, 1),
        "servers": len(cluster.servers),
        "clients_at_once": CLIENTS,
        **figures,
        **{k: v for k, v in end.items() if k != "survivors"},
    }


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + unit(120))
def test_cluster_soak_loses_and_duplicates_nothing(redis_server: RedisServer) -> None:
    """60 clients on three server processes and one Redis, through client faults, a
    server SIGKILLed and started again, and a Redis restart. See the module docstring."""
    seed = int(os.environ.get("WSLAB_SOAK_SEED") or secrets.randbits(32))
    gc.collect()
    me = psutil.Process()
    threads_before, fds_before = _threads(), me.num_fds()
    children_before = {p.pid for p in me.children(recursive=True)}
    began = time.monotonic()
    cluster = Cluster(redis_server, 3, ("--grace", str(GRACE), "--redis-heartbeat", str(HEARTBEAT)))
    try:
        cluster.start()
        result = asyncio.run(
            asyncio.wait_for(run_soak(cluster, SOAK_SECONDS, seed), SOAK_SECONDS + unit(50))
        )
    finally:
        cluster.kill()
        print(cluster.output()[-4000:])  # shown when the test failed
    result["total_seconds"] = round(time.monotonic() - began, 1)
    gc.collect()
    wait_until(lambda: _threads() <= threads_before, unit(10), "the soak's threads to end")
    wait_until(lambda: me.num_fds() <= fds_before, unit(10), "the soak's sockets to close")
    # Only the Redis server of the fixture may remain (a new pid since its restart).
    left = {p.pid for p in me.children(recursive=True)} - children_before - {redis_server.pid}
    result["processes_leaked"] = len(left)
    result["threads_leaked"] = len(_threads() - threads_before)
    result["fds_leaked"] = max(0, me.num_fds() - fds_before)
    record_figures("cluster-soak", result)
    assert result["clients"] >= CLIENTS and result["faults_total"] > 0
    faults = result["faults"]
    assert faults.get("server_kill") == faults.get("server_restart") == 1
    assert faults.get("redis_restart") == 1
    assert result["lost"] == 0, result["lost_sample"]
    assert result["duplicated"] == 0 and result["unknown"] == 0
    assert result["deliveries"] > 0 and result["duplicate_deliveries"] == 0
    assert result["ids_contiguous"] and result["views_differing"] == 0
    assert result["out_of_order"] == 0
    assert result["server_views_agree"]
    assert result["processes_leaked"] == 0

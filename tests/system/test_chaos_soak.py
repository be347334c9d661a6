"""Chaos soak: 100+ chatting clients while a fault injector breaks things.

One asyncio loop (this test's) runs every ChatClient; the ChatServer runs on its
own thread, as in a notebook. While the clients chat, a fault injector

- drops random sockets without a close frame (``server.drop(id)``: 1006),
- kills clients (their TCP connection vanishes, then a NEW ChatClient comes
  back with the same id and token, as a reloaded page does),
- ends clients for good (``close()``),
- stops and restarts the server on the SAME ChatServer object (same port,
  same room),
- adds members that join and then never read a byte again (stalled readers:
  raw sockets with a tiny receive buffer). They must be dropped (by the
  keepalive, the unread-output cap or a restart) and leave presence, while
  everyone else goes on.

Pass: every message that was acknowledged, or was still pending at a client
that survived, is in every surviving client's view exactly once and in
messageId order; presence converges to the surviving ids after the grace; no
thread and no file descriptor leaks. The figures are printed in the terminal
summary and written to ``$WSLAB_RESULTS_DIR/soak.json``.

Length: ``WSLAB_SOAK_SECONDS`` (default 18; "full mode" is 60).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.attackers import raw_peer
from tests.helpers.reliability import RawWebSocket, hello, record_figures, unit, wait_until
from wslab import ChatClient, ChatServer, RetryPolicy
from wslab.store import SQLiteStore

SOAK_SECONDS = float(os.environ.get("WSLAB_SOAK_SECONDS", "18"))
CLIENTS = int(os.environ.get("WSLAB_SOAK_CLIENTS", "110"))
MESSAGES_PER_SECOND = float(os.environ.get("WSLAB_SOAK_RATE", "20"))
GRACE = 0.5
MAX_ENDED = 8  # clients ended for good: CLIENTS - MAX_ENDED >= 100 stay
MAX_STALLED = 6  # members that stop reading
# Short keepalive, so a stalled reader that joined after the last restart is dropped
# well within the convergence wait; the ChatClients answer pings from their own loop.
PING_INTERVAL, PING_TIMEOUT = 2.0, 3.0
# Fast reconnects keep the soak short; the policy is data, the logic is the client's.
POLICY = RetryPolicy(initial=0.2, factor=2.0, cap=2.0, min_uptime=1.0)


def abort_transport(client: ChatClient) -> bool:
    """Make a client's TCP connection vanish, as a crashed process or lost network does.

    There is no public handle on the client's socket, hence the private attribute.
    """
    socket = client._socket
    if socket is None:
        return False
    socket.transport.abort()
    return True


@dataclass
class Chatters:
    """Clients chatting at a steady rate, and what each one sent and saw acknowledged.

    What a soak needs whatever the servers are: :meth:`client_urls` says where a new
    client connects; :meth:`figures` compares what the clients saw with the history.
    """

    rng: random.Random
    live: list[ChatClient] = field(default_factory=list)
    dead: list[ChatClient] = field(default_factory=list)  # killed or ended
    sent_by: dict[int, list[str]] = field(default_factory=dict)  # id(client) -> texts
    author: dict[str, str] = field(default_factory=dict)  # text -> user id
    acked_by_dead: set[str] = field(default_factory=set)
    faults: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    created: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def client_urls(self) -> str | list[str]:
        """Where the next new client connects (one URL, or several to fail over)."""
        raise NotImplementedError

    def new_client(self, username: str, **identity: Any) -> ChatClient:
        client = ChatClient(
            self.client_urls(), username, policy=POLICY, rng=self.rng.random, **identity
        )
        last = [0]

        def in_order(entry: dict[str, Any]) -> None:
            # messageWritten must arrive in messageId order (docs/protocol.md, delivery).
            if entry["messageId"] <= last[0]:
                self.out_of_order += 1
            last[0] = entry["messageId"]

        def on_connected(event: Any) -> None:
            last[0] = max([last[0], *(m["messageId"] for m in event.messages_list)])

        client.on_message = in_order  # type: ignore[assignment]
        client.on_connected = on_connected
        self.sent_by[id(client)] = []
        self.live.append(client)
        self.created += 1
        return client

    async def retire(self, client: ChatClient) -> None:
        """Record what a dead client saw acknowledged: only that must survive it."""
        await client.wait_for(lambda c: c.status == "offline", unit(10))
        pending = {p.message for p in client.pending}
        self.acked_by_dead.update(t for t in self.sent_by[id(client)] if t not in pending)
        self.live.remove(client)
        self.dead.append(client)

    def online(self) -> list[ChatClient]:
        return [c for c in self.live if c.online and c.token]

    async def kill(self, client: ChatClient) -> None:
        client.reconnect = False  # the process is gone: nobody will reconnect this object
        if not abort_transport(client):
            client.reconnect = True
            return
        self.faults["kill"] += 1
        await self.retire(client)
        # The page is reloaded: a NEW client with the same id and token.
        self.new_client(client.username, id=client.id, token=client.token).start()

    async def drop(self, client: ChatClient) -> bool:
        """Cut a client's connection without a close frame; False if it had none."""
        return abort_transport(client)

    async def client_fault(self, kind: str) -> None:
        """One fault on a random online client: ``drop``, ``kill`` or ``end``."""
        candidates = self.online()
        if not candidates:
            return
        client = self.rng.choice(candidates)
        if kind == "drop":
            if await self.drop(client):
                self.faults["drop"] += 1
        elif kind == "kill":
            await self.kill(client)
        elif kind == "end" and self.faults["end"] < MAX_ENDED:
            self.faults["end"] += 1
            await client.close()
            await self.retire(client)

    async def chat(self) -> None:
        started = time.monotonic()
        sent = 0
        for tick in range(10**7):
            if self.stop.is_set():
                return
            # As many messages as the rate asks for by now, however slow the machine.
            due = int(MESSAGES_PER_SECOND * (time.monotonic() - started)) - sent
            for _ in range(min(due, 50)):
                sent += 1
                client = self.rng.choice(self.live)
                text = f"{client.id}#{tick}-{secrets.token_hex(3)}"
                self.sent_by[id(client)].append(text)
                self.author[text] = client.id
                await client.send_message(text)  # queued while offline
            await asyncio.sleep(0.05)  # pacing, not waiting for a result

    def figures(
        self,
        history: list[Any],
        expected_view: Callable[[list[tuple[int, str]]], list[tuple[int, str]]],
    ) -> dict[str, Any]:
        """Lost, duplicated and misordered messages: the history against what was sent,
        and every live client's view against ``expected_view(view)``.

        A message must be in the history if its author saw it acknowledged, or is
        still live (its pending messages were resent).
        """
        texts = [m["message"] for m in history]
        counts = Counter(texts)
        sent_by_survivors = {t for c in self.live for t in self.sent_by[id(c)]}
        expected = self.acked_by_dead | sent_by_survivors
        lost = expected - set(counts)
        ids = [m["messageId"] for m in history]
        views_differ = 0
        for c in self.live:
            view = [(m["messageId"], m["message"]) for m in c.messages]
            views_differ += view != expected_view(view)
        return {
            "clients": self.created,
            "survivors": len(self.live),
            "messages": len(self.author),
            "stored": len(history),
            "acked_by_dead_clients": len(self.acked_by_dead),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "reconnects": sum(c.attempts - 1 for c in self.live + self.dead),
            "lost": len(lost),
            "duplicated": sum(n - 1 for n in counts.values() if n > 1),
            "unknown": sum(1 for t in counts if t not in self.author),
            "ids_contiguous": ids == list(range(1, len(ids) + 1)),
            "views_differing": views_differ,
            "out_of_order": self.out_of_order,
            "lost_sample": sorted(lost)[:5],
        }


@dataclass
class Soak(Chatters):
    """The chat of one in-process ChatServer, and the faults it suffers."""

    server: ChatServer = field(kw_only=True)
    stalled: list[RawWebSocket] = field(default_factory=list)

    def client_urls(self) -> str:
        return self.server.url

    async def inject_faults(self, seconds: float) -> None:
        started = time.monotonic()
        restarts_every = max(3.0, seconds / 4)
        next_restart = started + restarts_every / 2
        while time.monotonic() - started < seconds:
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))  # pacing between faults
            if time.monotonic() >= next_restart:
                next_restart += restarts_every
                await self.restart()
                continue
            kind = self.rng.choices(["drop", "kill", "end", "stall"], [6, 3, 1, 1])[0]
            if kind == "stall":
                if len(self.stalled) < MAX_STALLED:
                    await self.stall()
                continue
            await self.client_fault(kind)

    async def drop(self, client: ChatClient) -> bool:
        return bool(await asyncio.to_thread(self.server.drop, client.id))

    async def stall(self) -> None:
        """A member joins, then reads nothing more: the server must drop it."""
        try:
            peer = await asyncio.to_thread(raw_peer, self.server.port)
        except OSError:
            return  # the server is restarting: no stall this time
        self.stalled.append(peer)
        if peer.status == 101:
            peer.send_text(hello(f"stall{len(self.stalled)}", "stalled"))
            self.faults["stall"] += 1

    async def restart(self) -> None:
        self.faults["restart"] += 1
        await self.server.aclose()
        await asyncio.sleep(self.rng.uniform(0.05, 0.5))  # pacing: the server stays down a while
        await asyncio.to_thread(self.server.start)
        if len(self.stalled) < MAX_STALLED:
            await self.stall()  # at least one per restart: the keepalive must drop it

    # ------------------------------------------------------------------ the end

    async def converge(self) -> dict[str, Any]:
        """Wait until every survivor is online with nothing pending and has all history."""
        timeout = unit(40)
        try:
            await asyncio.gather(
                *(c.wait_for(lambda c: c.online and not c.pending, timeout) for c in self.live)
            )
        except TimeoutError:
            stuck = [
                f"{c.id}: {c.status}, pending={len(c.pending)}, errors="
                f"{[e.code.value for e in c.errors][-3:]}, last close {c.last_close}, "
                f"attempts {c.attempts}, events {[str(e)[:60] for e in c.events][-4:]}"
                for c in self.live
                if not (c.online and not c.pending)
            ]
            pytest.fail("survivors did not converge:\n" + "\n".join(stuck))
        history = await asyncio.to_thread(full_history, self.server)
        last = history[-1]["messageId"] if history else None
        await asyncio.gather(
            *(c.wait_for(lambda c: c.last_message_id == last, timeout) for c in self.live)
        )
        survivors = {c.id for c in self.live}
        # Presence: the ended and killed-for-good ids leave after the grace.
        await asyncio.gather(
            *(c.wait_for(lambda c: set(c.users) == survivors, timeout) for c in self.live)
        )
        deadline = time.monotonic() + timeout
        while {u["id"] for u in await asyncio.to_thread(lambda: self.server.users)} != survivors:
            assert time.monotonic() < deadline, "server presence did not converge"
            await asyncio.sleep(0.05)  # polling another thread's state, bounded by the deadline
        return {"history": history, "survivors": survivors}


def full_history(server: ChatServer) -> list[Any]:
    """Every message the server accepted, oldest first: from its store if it has one."""
    store = server.store
    if store is None:
        return server.history
    return server._call(lambda: store.load_messages(10**9))  # on the server's own thread


async def run_soak(server: ChatServer, seconds: float, seed: int) -> dict[str, Any]:
    soak = Soak(random.Random(seed), server=server)
    server.start()
    for i in range(CLIENTS):
        soak.new_client(f"user{i}", id=f"c{i:03d}")
    await asyncio.gather(*(c.connect(unit(30)) for c in list(soak.live)))
    started = time.monotonic()
    chatting = asyncio.create_task(soak.chat())
    await soak.inject_faults(seconds)
    soak.stop.set()
    await chatting
    chaos_seconds = time.monotonic() - started
    try:
        end = await soak.converge()
    except BaseException:
        for client in list(soak.live):  # a failed run must not leak sockets into the next test
            await client.close()
        raise
    finally:
        for peer in soak.stalled:
            peer.close()
    history, survivors = end["history"], end["survivors"]
    everything = [(m["messageId"], m["message"]) for m in history]
    position = {message_id: i for i, (message_id, _) in enumerate(everything)}

    def expected_view(view: list[tuple[int, str]]) -> list[tuple[int, str]]:
        # In memory the server keeps everything, so every view is the whole history.
        # With a store it keeps the newest few in memory: a newcomer starts there, and
        # from then on it must miss nothing (what a reconnect missed comes from the store).
        if server.store is None or not view:
            return everything
        return everything[position.get(view[0][0], 0) :]

    figures = soak.figures(history, expected_view)
    for client in list(soak.live):
        await client.close()
    return {
        "seed": seed,
        "seconds": round(chaos_seconds, 1),
        "clients_at_once": CLIENTS,
        **figures,
        "survivors": len(survivors),
        "stalled_readers": soak.faults["stall"],
        "stalled_dropped_by_cap": server.slow_peers_dropped,
    }


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


@pytest.mark.timeout(SOAK_SECONDS + unit(180))
@pytest.mark.slow
@pytest.mark.parametrize("durable", [False, True], ids=["in-memory", "store"])
def test_chaos_soak_loses_and_duplicates_nothing(durable: bool, tmp_path: Path) -> None:
    """100+ clients chat through drops, kills, ends and server restarts. See the docstring.

    With a store the server keeps only 20 messages in memory, so a client that missed
    more gets them back from the store across the restarts.
    """
    seed = int(os.environ.get("WSLAB_SOAK_SEED") or secrets.randbits(32))
    gc.collect()
    threads_before, fds_before = _threads(), psutil.Process().num_fds()
    server = ChatServer(
        grace=GRACE,
        history=20 if durable else 10**6,
        store=tmp_path / "soak.sqlite" if durable else None,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
    )
    try:
        result = asyncio.run(
            asyncio.wait_for(run_soak(server, SOAK_SECONDS, seed), SOAK_SECONDS + unit(120))
        )
    finally:
        server.stop()
        if isinstance(server.store, SQLiteStore):
            server.store.close()
    gc.collect()
    wait_until(lambda: _threads() <= threads_before, unit(10), "the soak's threads to end")
    left = ", ".join(
        f"{c.status} {c.laddr} -> {c.raddr}" for c in psutil.Process().net_connections()
    )
    wait_until(
        lambda: psutil.Process().num_fds() <= fds_before,
        unit(10),
        f"the soak's sockets to close (open after the stop: {left or 'none'})",
    )
    result["threads_leaked"] = len(_threads() - threads_before)
    result["fds_leaked"] = max(0, psutil.Process().num_fds() - fds_before)
    record_figures("soak-store" if durable else "soak", result)
    assert result["clients"] >= 100 and result["faults_total"] > 0
    assert result["lost"] == 0, result["lost_sample"]
    assert result["duplicated"] == 0 and result["unknown"] == 0
    assert result["ids_contiguous"] and result["views_differing"] == 0
    assert result["out_of_order"] == 0
    assert result["stalled_readers"] > 0  # and presence converged without them


def test_restarts_leak_no_threads_or_fds() -> None:
    """Five stop/start cycles of one ChatServer with a client on it: same threads, same fds."""

    async def cycle(server: ChatServer, client: ChatClient) -> None:
        await server.aclose()
        server.start()
        await client.wait_for(lambda c: c.online and c.attempts > attempts[0], unit(10))
        attempts[0] = client.attempts

    attempts = [0]

    async def main() -> tuple[int, int, int, int]:
        server = ChatServer(grace=GRACE).start()
        client = ChatClient(server.url, "steady", policy=RetryPolicy(initial=0.05, cap=0.2))
        await client.connect(unit(10))
        attempts[0] = client.attempts
        await cycle(server, client)  # warm-up: the first restart may allocate for good
        gc.collect()
        before = (len(_threads()), psutil.Process().num_fds())
        for _ in range(5):
            await cycle(server, client)
        gc.collect()
        after = (len(_threads()), psutil.Process().num_fds())
        await client.close()
        await server.aclose()
        return (*before, *after)

    threads_before, fds_before, threads_after, fds_after = asyncio.run(main())
    assert threads_after == threads_before
    assert fds_after == fds_before


def test_presence_expires_after_a_restart_without_any_new_event() -> None:
    async def main() -> list[Any]:
        server = ChatServer(grace=0.2).start()
        client = ChatClient(server.url, "Gone", reconnect=False)
        await client.connect(unit(10))
        await server.aclose()  # the client reads 1001 and, told not to, stays away
        server.start()
        try:
            deadline = time.monotonic() + unit(3)
            while server.users and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # polling the server thread's state, bounded
            return server.users
        finally:
            await server.aclose()

    assert asyncio.run(main()) == []

"""The server's limits on one peer, each alone, on real sockets.

Unread output over ``max_buffer`` (1013), keepalive on a peer that reads nothing,
the join timeout (1008), the per-address cap, handshakes counted against
``max_clients``, duplicate headers (400), public-host URLs and origins. The
figures under attack are in ``tests/system/test_attacks.py``; the static files
found wherever ``python -m wslab serve`` was started from, in
``tests/system/test_cli.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import WAIT
from tests.helpers.attackers import is_closed_by_server, masked_frame, raw_peer
from tests.helpers.reliability import hello, say
from wslab import ChatClient, ChatServer, RetryPolicy
from wslab.admission import SERVER_FULL

MakeServer = Callable[..., ChatServer]
BIG = "\U0001d11e" * 1996  # 1996 characters, 7984 bytes of UTF-8


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling the server thread's state, bounded by the deadline


def join_raw(port: int, user_id: str, **options: Any) -> Any:
    peer = raw_peer(port, **options)
    assert peer.status == 101
    peer.send_text(hello(user_id, user_id))
    return peer


# --------------------------------------------------------------------------- backpressure


def test_a_peer_that_never_reads_is_closed_with_1013_over_max_buffer(
    make_server: MakeServer,
) -> None:
    server = make_server(max_buffer=32 * 1024, grace=0, rate_limit=0, close_timeout=0.5)
    stalled = join_raw(server.port, "stalled")
    wait_until(lambda: len(server.users) == 1, WAIT, "the stalled peer to join")

    async def scenario() -> tuple[float, list[str], str]:
        # A flood: many messages on the wire at once, not one per acknowledgement.
        talker = await ChatClient(server.url, "talker", window=64).connect(WAIT)
        started = time.monotonic()
        for i in range(2000):  # up to 16 MB: more than the kernel holds for one socket
            await talker.send_message(f"{i:04d}" + BIG)
            if i % 20 == 0:
                if "stalled" not in talker.users:
                    break
                await asyncio.sleep(0.001)  # let the talker read its own acknowledgements
        await talker.wait_for(lambda c: "stalled" not in c.users, WAIT)
        seconds = time.monotonic() - started
        present = [u["id"] for u in await asyncio.to_thread(lambda: server.users)]
        await talker.close()
        return seconds, present, talker.id

    seconds, present, talker_id = asyncio.run(scenario())
    assert server.slow_peers_dropped == 1
    assert present == [talker_id]  # the stalled peer's room state was closed
    assert seconds < 2 * WAIT
    # Reading now, long after close_timeout: a few MiB the kernel held, then the
    # end of the connection (aborted: it did not read its close frame in time).
    stalled.sock.settimeout(WAIT)
    frames, code = stalled.recv_until_close(limit=100_000)
    assert code is None and len(frames) < 2000
    stalled.close()


def test_a_slow_reader_that_reads_in_time_gets_the_1013_reason(make_server: MakeServer) -> None:
    server = make_server(max_buffer=32 * 1024, rate_limit=0, close_timeout=4 * WAIT)
    slow = join_raw(server.port, "slow")
    wait_until(lambda: len(server.users) == 1, WAIT, "the slow peer to join")

    async def scenario() -> None:
        # A flood: many messages on the wire at once, not one per acknowledgement.
        talker = await ChatClient(server.url, "talker", window=64).connect(WAIT)
        for i in range(2000):  # until the server gives up on the slow reader
            await talker.send_message(f"{i:04d}" + BIG)
            if i % 20 == 0:
                await asyncio.sleep(0.001)  # let the talker read its own acknowledgements
                if server.slow_peers_dropped:
                    break
        await talker.close()

    asyncio.run(scenario())
    assert server.slow_peers_dropped == 1
    # It reads what was already on its way, then the close frame and its reason.
    slow.sock.settimeout(WAIT)
    for _ in range(100_000):
        frame = slow.recv_frame()
        if frame.opcode == 0x8:
            break
    assert frame.close_code == 1013
    assert frame.payload[2:].decode() == "too slow: over 32 KiB unread"
    assert is_closed_by_server(slow.sock, WAIT)  # and the server ends the connection
    slow.close()


def test_pongs_to_a_ping_flood_count_against_max_buffer(make_server: MakeServer) -> None:
    server = make_server(max_buffer=16 * 1024, join_timeout=60, close_timeout=0.5)
    flooder = raw_peer(server.port)
    batch = masked_frame(0x9, bytes(125)) * 1000
    reset = False
    deadline = time.monotonic() + WAIT
    try:
        # Bounded in time: the server reads (and ignores) what follows its close
        # frame until it aborts the connection, close_timeout later.
        while time.monotonic() < deadline:
            flooder.sock.sendall(batch)
    except OSError:
        reset = True  # the server aborted the connection: the point
    assert reset
    assert server.slow_peers_dropped == 1
    wait_until(lambda: server.connection_count == 0, WAIT, "the flooder to be gone")
    flooder.close()


def test_keepalive_drops_a_silent_peer_under_max_buffer(make_server: MakeServer) -> None:
    # A peer that reads nothing, with unread output above websockets' write limit
    # (32 KiB) but under max_buffer: the keepalive ping either waits for a drain that
    # never comes (that wait is bounded) or gets no pong. Either way it is dropped.
    server = make_server(
        max_buffer=64 * 1024 * 1024, ping_interval=0.3, ping_timeout=0.5, grace=0, rate_limit=0
    )
    stalled = join_raw(server.port, "quiet")
    wait_until(lambda: len(server.users) == 1, WAIT, "the silent peer to join")

    def unread() -> int:
        return max(c.transport.get_write_buffer_size() for c in list(server.admission.connections))

    async def scenario() -> float:
        # A flood: many messages on the wire at once, not one per acknowledgement.
        talker = await ChatClient(server.url, "talker", window=64).connect(WAIT)
        for i in range(2000):  # until the kernel is full and the server holds 64 KiB
            await talker.send_message(f"{i:04d}" + BIG)
            if i % 20 == 0:
                await asyncio.sleep(0.001)  # let the talker read its own acknowledgements
                if unread() > 64 * 1024 or "quiet" not in talker.users:
                    break
        started = time.monotonic()
        await talker.wait_for(lambda c: "quiet" not in c.users, 4 * WAIT)
        await talker.close()
        return time.monotonic() - started

    seconds = asyncio.run(scenario())
    assert server.slow_peers_dropped == 0  # the keepalive did it, not the cap
    assert seconds < 0.3 + 0.5 + 2.0 + WAIT  # interval + timeout + close_timeout
    stalled.close()


def test_a_reading_peer_gets_a_frame_larger_than_max_buffer(make_server: MakeServer) -> None:
    """The cap counts what was unread before a write: one big frame still goes."""
    server = make_server(max_buffer=4 * 1024, history=20, rate_limit=0)

    async def scenario() -> int:
        writer = await ChatClient(server.url, "writer").connect(WAIT)
        for i in range(20):
            await writer.send_message(f"{i:02d}" + "z" * 1998)
        await writer.wait_for(lambda c: not c.pending, WAIT)
        reader = await ChatClient(server.url, "reader", reconnect=False).connect(WAIT)
        count = len(reader.messages)
        await reader.close()
        await writer.close()
        return count

    assert asyncio.run(scenario()) == 20
    assert server.slow_peers_dropped == 0


# --------------------------------------------------------------------------- join timeout


def test_a_socket_that_never_sends_connecting_is_closed_with_1008(make_server: MakeServer) -> None:
    server = make_server(join_timeout=0.3)
    silent = raw_peer(server.port, rcvbuf=None)
    joined = join_raw(server.port, "early", rcvbuf=None)
    started = time.monotonic()
    silent.sock.settimeout(WAIT)
    frames, code = silent.recv_until_close()
    elapsed = time.monotonic() - started
    assert code == 1008 and frames == []
    # The close frame's reason, after the 2-byte code.
    assert server.join_timeouts == 1
    assert 0.2 < elapsed < 0.3 + WAIT / 5
    # The one that joined in time stays: once a socket opened after it is closed by
    # the join timeout, its own deadline is past too. A close would have come before
    # the answer to the message it sends then.
    assert joined.recv_frame().json()["event"] == "connected"
    later = raw_peer(server.port, rcvbuf=None)
    later.sock.settimeout(WAIT)
    assert later.recv_until_close()[1] == 1008
    joined.send_text(say("still here"))
    joined.sock.settimeout(WAIT)
    assert joined.recv_frame().json()["event"] == "messageWritten"
    for peer in (silent, later, joined):
        peer.close()


def test_the_join_timeout_reason_says_why(make_server: MakeServer) -> None:
    server = make_server(join_timeout=0.2)
    silent = raw_peer(server.port, rcvbuf=None)
    silent.sock.settimeout(WAIT)
    frame = silent.recv_frame()
    assert frame.opcode == 0x8 and frame.payload[2:] == b"join timeout"
    silent.close()


# --------------------------------------------------------------------------- connection caps


def test_the_per_address_cap_closes_extra_connections_at_once(make_server: MakeServer) -> None:
    server = make_server(max_per_address=3)
    peers = [raw_peer(server.port, source="127.0.0.2", rcvbuf=None) for _ in range(3)]
    assert [p.status for p in peers] == [101, 101, 101]
    try:
        extra = raw_peer(server.port, source="127.0.0.2", rcvbuf=None)
        status = extra.status
        extra.close()
    except OSError:
        status = 0
    assert status == 0  # no answer at all: closed before a byte was read
    assert server.refused_per_address == 1
    # Another address is not affected, and 127.0.0.1 (this machine) is not capped.
    other = raw_peer(server.port, source="127.0.0.3", rcvbuf=None)
    local = [raw_peer(server.port, rcvbuf=None) for _ in range(5)]
    assert other.status == 101 and all(p.status == 101 for p in local)
    for peer in [*peers, other, *local]:
        peer.close()
    # Once one leaves, the address may connect again.
    wait_until(lambda: server.connection_count == 0, WAIT, "the peers to be gone")
    again = raw_peer(server.port, source="127.0.0.2", rcvbuf=None)
    assert again.status == 101
    again.close()


def test_half_open_handshakes_count_against_max_clients_until_open_timeout(
    make_server: MakeServer,
) -> None:
    server = make_server(max_clients=3, open_timeout=0.5)
    half_open = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        sock.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\n")  # and never the end of it
        half_open.append(sock)
    wait_until(lambda: server.connection_count == 3, WAIT, "three half-open connections")

    async def refused() -> list[int | None]:
        client = ChatClient(server.url, "late", policy=RetryPolicy(max_attempts=0))
        with pytest.raises(ConnectionError):
            await client.connect(WAIT)
        return [e.code for e in client.events if e.type == "close"]

    assert asyncio.run(refused()) == [1013]
    started = time.monotonic()
    assert all(is_closed_by_server(sock, WAIT) for sock in half_open)
    assert time.monotonic() - started < 0.5 + WAIT / 5

    async def admitted() -> bool:
        client = await ChatClient(server.url, "later").connect(WAIT)
        await client.close()
        return True

    assert asyncio.run(admitted())
    for sock in half_open:
        sock.close()


def test_the_server_alone_enforces_max_clients_with_one_reason(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admission turns the extra socket away with 1013 and its reason; the room has no say."""
    server = make_server(max_clients=2)
    monkeypatch.setattr(server.room, "max_clients", 10**6, raising=False)

    async def scenario() -> tuple[Any, Any]:
        ann = await ChatClient(server.url, "ann").connect(WAIT)
        bob = await ChatClient(server.url, "bob").connect(WAIT)
        late = ChatClient(server.url, "late", policy=RetryPolicy(max_attempts=0))
        with pytest.raises(ConnectionError):
            await late.connect(WAIT)
        refused = late.last_close
        await bob.close()
        wait_until(lambda: server.connection_count == 1, WAIT, "bob's connection to end")
        again = await ChatClient(server.url, "again").connect(WAIT)
        admitted = again.status
        await again.close()
        await ann.close()
        return refused, admitted

    refused, admitted = asyncio.run(scenario())
    assert refused == (1013, SERVER_FULL.format(max_clients=2))
    assert refused[1] == "server full (2 clients); try again later"
    assert admitted == "online"
    assert server.admission.refused_full == 1


def test_stop_does_not_wait_for_half_open_handshakes(make_server: MakeServer) -> None:
    server = make_server(open_timeout=4 * WAIT)
    half_open = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    wait_until(lambda: server.connection_count == 20, WAIT, "twenty half-open connections")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < WAIT
    assert all(is_closed_by_server(sock, WAIT) for sock in half_open)
    for sock in half_open:
        sock.close()


# --------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("header", ["Origin", "Host"])
def test_two_origin_or_host_headers_get_400_without_a_traceback(
    make_server: MakeServer, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    value = "http://127.0.0.1" if header == "Origin" else f"127.0.0.1:{server.port}"
    headers = [(header, value), (header, value)] if header == "Origin" else [(header, value)]
    with caplog.at_level(logging.ERROR):
        peer = raw_peer(server.port, headers=headers, rcvbuf=None)
    assert peer.status == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    peer.close()
    assert server.client_count == 0


def test_listens_publicly_and_reachable_urls() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert not ChatServer(host).listens_publicly, host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "myhost.example"):
        assert ChatServer(host).listens_publicly, host
    assert ChatServer("127.0.0.1", 8765).reachable_urls == ["http://127.0.0.1:8765/"]
    assert ChatServer("192.168.1.5", 80).reachable_urls == ["http://192.168.1.5:80/"]

    urls = ChatServer("0.0.0.0", 8765).reachable_urls
    assert urls[0] == "http://127.0.0.1:8765/"
    assert len(urls) == len(set(urls))
    hosts = [re.fullmatch(r"http://([^/]+):8765/", url).group(1) for url in urls]  # type: ignore[union-attr]
    assert all(ipaddress.ip_address(h).version == 4 for h in hosts)
    try:
        own = {
            str(info[4][0])
            for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        }
    except OSError:
        own = set()
    assert {a for a in own if not ipaddress.ip_address(a).is_loopback} <= set(hosts)
    both = ChatServer("", 8765).reachable_urls
    assert both[0] == "http://127.0.0.1:8765/" and "http://[::1]:8765/" in both
    six = ChatServer("::", 8765).reachable_urls
    assert six[0] == "http://[::1]:8765/" and all(u.startswith("http://[") for u in six)


def test_the_pages_own_origin_is_allowed_only_when_listening_publicly() -> None:
    public, local = ChatServer("0.0.0.0", 8765), ChatServer("127.0.0.1", 8765)
    page = ("http://192.168.1.5:8765", "192.168.1.5:8765")
    assert public.admission.origin_allowed(*page)
    assert not local.admission.origin_allowed(*page)  # DNS rebinding stays out on loopback
    assert not public.admission.origin_allowed("http://evil.example", "192.168.1.5:8765")
    assert public.admission.origin_allowed("http://localhost:3000", "192.168.1.5:8765")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ChatServer(max_buffer=0)
    with pytest.raises(ValueError):
        ChatServer(join_timeout=0)
    with pytest.raises(ValueError):
        ChatServer(max_per_address=-1)


def test_a_chat_still_works_with_the_limits_on(make_server: MakeServer) -> None:
    server = make_server(max_buffer=64 * 1024, join_timeout=0.5, max_per_address=3)

    async def scenario() -> list[str]:
        ann = await ChatClient(server.url, "ann").connect(WAIT)
        bob = await ChatClient(server.url, "bob").connect(WAIT)
        # Past the join timeout, joined sockets stay: a socket opened after them that
        # never joins is closed by it, so their own deadline has passed as well.
        async with connect(server.url) as silent:
            await asyncio.wait_for(silent.wait_closed(), WAIT)
        assert silent.close_code == 1008
        await ann.send_message("hello")
        await bob.wait_for_message("hello", WAIT)
        texts = [m["message"] for m in bob.messages]
        assert ann.attempts == bob.attempts == 1  # neither was closed and came back
        await ann.close()
        await bob.close()
        return texts

    assert asyncio.run(scenario()) == ["hello"]

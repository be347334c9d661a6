"""Real sockets on port 0: every close code of the table, handshakes, reconnects, restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

from tests.conftest import WAIT, untagged
from wslab import BlockingChatClient, ChatClient, ChatServer, RetryPolicy
from wslab.clock import FakeClock
from wslab.protocol import CloseCode, Connected, encode
from wslab.room import CloseSocket, Outcome

MakeServer = Callable[..., ChatServer]


def run(scenario: Coroutine[Any, Any, None]) -> None:
    """Run one async scenario with an overall bound, so a hang fails instead of blocking."""
    asyncio.run(asyncio.wait_for(scenario, 6 * WAIT))


def close_codes(client: ChatClient) -> list[int | None]:
    return [event.code for event in client.events if event.type == "close"]


async def joined(server: ChatServer, username: str, **options: Any) -> ChatClient:
    return await ChatClient(server.url, username, **options).connect(WAIT)


# --------------------------------------------------------------------------- close codes


def test_1000_when_the_client_closes(make_server: MakeServer) -> None:
    server = make_server()

    async def scenario() -> None:
        client = await joined(server, "ann")
        await client.close()
        last = client.events[-1]
        assert (last.type, last.code, last.was_clean) == ("close", 1000, True)
        assert client.status == "offline"

    run(scenario())


def test_1001_when_the_server_stops_and_aclose_does_not_wait_out_the_timeout(
    make_server: MakeServer,
) -> None:
    server = make_server(close_timeout=3 * WAIT)

    async def scenario() -> None:
        client = await joined(server, "ann", policy=RetryPolicy(max_attempts=0))
        started = time.monotonic()
        await server.aclose()
        assert time.monotonic() - started < WAIT  # far less than close_timeout
        await client.wait_for(lambda c: c.status == "offline", WAIT)
        assert close_codes(client) == [1001]
        assert client.events[-1].was_clean

    run(scenario())


def test_blocking_stop_from_a_running_loop_does_not_hang(make_server: MakeServer) -> None:
    """The notebook trap: clients on the caller's loop cannot answer while stop() blocks."""
    server = make_server(close_timeout=3 * WAIT)

    async def scenario() -> None:
        client = await joined(server, "ann", reconnect=False)
        started = time.monotonic()
        server.stop()  # blocks this loop, as a cell would
        assert time.monotonic() - started < WAIT
        await client.wait_for(lambda c: c.status == "offline", WAIT)
        assert close_codes(client) == [1001]

    run(scenario())


def test_1006_when_the_server_drops_a_user(make_server: MakeServer) -> None:
    server = make_server()

    async def scenario() -> None:
        client = await joined(server, "ann", reconnect=False)
        assert server.drop(client.id) == 1
        await client.wait_for(lambda c: c.status == "offline", WAIT)
        last = client.events[-1]
        assert (last.code, last.was_clean) == (1006, False)

    run(scenario())


def test_1008_for_a_stolen_id_and_the_owner_is_not_disturbed(make_server: MakeServer) -> None:
    server = make_server()

    async def scenario() -> None:
        owner = await joined(server, "ann")
        thief = ChatClient(server.url, "mallory", id=owner.id)
        with pytest.raises(ConnectionError):
            await thief.connect(WAIT)
        assert [e.code.value for e in thief.errors] == ["id_taken"]
        assert close_codes(thief) == [1008]
        assert thief.attempts == 1  # 1008 is never retried
        assert owner.online and len(owner.events) == 2  # open, connected: nothing else
        await owner.close()

    run(scenario())


def test_1008_after_ten_protocol_errors(make_server: MakeServer) -> None:
    server = make_server()

    async def scenario() -> None:
        client = await joined(server, "ann", reconnect=False)
        for _ in range(10):
            await client.send_raw("this is not JSON")
        await client.wait_for(lambda c: c.status == "offline", WAIT)
        assert len(client.errors) == 10
        assert close_codes(client) == [1008]

    run(scenario())


def test_1009_for_a_frame_over_max_size(make_server: MakeServer) -> None:
    server = make_server(max_size=1024)

    async def scenario() -> None:
        client = await joined(server, "ann")
        await client.send_raw(json.dumps({"event": "writeMessage", "message": "x" * 2000}))
        await client.wait_for(lambda c: c.status == "offline", WAIT)
        assert close_codes(client) == [1009]
        assert client.attempts == 1  # 1009 is never retried

    run(scenario())


def test_1011_when_a_handler_raises_and_the_server_lives_on(make_server: MakeServer) -> None:
    def explode(username: str, text: str) -> str:
        if text == "boom":
            raise RuntimeError("a bug in a message filter")
        return text

    server = make_server(message_filter=explode)

    async def scenario() -> None:
        victim = await joined(server, "ann", reconnect=False)
        other = await joined(server, "bob")
        await victim.send_message("boom")
        await victim.wait_for(lambda c: c.status == "offline", WAIT)
        assert close_codes(victim) == [1011]
        assert server.handler_errors == 1
        await other.send_message("still here")
        await other.wait_for_message("still here", WAIT)
        await other.close()

    run(scenario())


def test_1013_when_the_server_is_full(make_server: MakeServer) -> None:
    server = make_server(max_clients=1)

    async def scenario() -> None:
        first = await joined(server, "ann")
        second = ChatClient(server.url, "bob", policy=RetryPolicy(max_attempts=0))
        with pytest.raises(ConnectionError):
            await second.connect(WAIT)
        assert close_codes(second) == [1013]
        await first.close()

    run(scenario())


def test_a_close_the_room_decides_at_a_deadline_is_carried_out(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every outcome is carried out the same way: its close too, when a timer fired."""
    server = make_server()

    async def scenario() -> None:
        ann = await joined(server, "ann")
        (socket_of_ann,) = server._call(lambda: server.room.sockets_of(ann.id))
        reason = "closed at a deadline"
        close = CloseSocket(socket_of_ann, CloseCode.POLICY_VIOLATION, reason)
        monkeypatch.setattr(server.room, "expire", lambda: Outcome(close=close))
        server._call(server._on_timer)  # what the server's timer does at a deadline
        async with asyncio.timeout(WAIT):
            while close_codes(ann) != [1008]:
                await asyncio.sleep(0.01)
        await ann.close()

    run(scenario())


# --------------------------------------------------------------------------- HTTP


def test_other_paths_get_404_and_foreign_origins_get_403(make_server: MakeServer) -> None:
    server = make_server(allowed_origins=["https://teacher.example"])
    base = f"ws://127.0.0.1:{server.port}"

    async def status_of(path: str, origin: str | None = None) -> int:
        try:
            async with connect(base + path, origin=origin):  # type: ignore[arg-type]
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    async def scenario() -> None:
        assert await status_of("/elsewhere") == 404
        assert await status_of("/chat", "https://evil.example") == 403
        assert await status_of("/chat", "null") == 403
        assert await status_of("/chat", "https://teacher.example:8443") == 101
        assert await status_of("/chat", "http://localhost:9999") == 101
        assert await status_of("/chat", "http://[::1]:9999") == 101
        assert await status_of("/chat") == 101

    run(scenario())


def handshake_status(port: int, headers: dict[str, str]) -> int:
    """Send a WebSocket handshake by hand (any Host header) and return the HTTP status."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /chat HTTP/1.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        raw.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = raw.recv(1024).split(b"\r\n")[0]
    return int(status_line.split()[1])


def test_same_origin_through_a_jupyterhub_proxy_is_trusted_only_under_jupyterhub(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied = {"Host": "hub.example.org", "Origin": "https://hub.example.org"}
    local = make_server()
    assert handshake_status(local.port, proxied) == 403  # could be DNS rebinding
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ann/")
    hub = make_server()
    assert handshake_status(hub.port, proxied) == 101
    assert handshake_status(hub.port, {**proxied, "Origin": "https://evil.example"}) == 403
    assert hub.proxied_page_url == f"/user/ann/proxy/{hub.port}/"


def test_get_slash_serves_the_chat_page(make_server: MakeServer) -> None:
    server = make_server()
    with urllib.request.urlopen(server.page_url, timeout=WAIT) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert b"chat.js" in response.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server.page_url + "nothing-here", timeout=WAIT)
    assert missing.value.code == 404
    missing.value.close()


# --------------------------------------------------------------------------- reconnect


def test_a_dropped_client_reconnects_and_gets_what_it_missed(make_server: MakeServer) -> None:
    server = make_server(grace=WAIT)

    async def scenario() -> None:
        ann = await joined(server, "ann")
        bob = await joined(server, "bob")
        server.drop(ann.id)
        await bob.send_message("while you were away")
        await ann.wait_for_message("while you were away", 3 * WAIT)
        assert close_codes(ann) == [1006]
        assert ann.was_page_reload  # back within the grace: a reload, not a new join
        assert list(bob.users) == [ann.id, bob.id]
        await ann.close()
        await bob.close()

    run(scenario())


@pytest.mark.parametrize("same_object", [True, False], ids=["restart", "new-server"])
def test_restart_on_the_same_port_delivers_offline_messages_once(
    make_server: MakeServer, same_object: bool
) -> None:
    server = make_server(grace=WAIT)
    port = server.port

    async def scenario() -> None:
        ann = await joined(server, "ann")
        bob = await joined(server, "bob")
        await ann.send_message("before")
        await bob.wait_for_message("before", WAIT)
        await server.aclose()
        await ann.wait_for(lambda c: c.status != "online", WAIT)
        await ann.send_message("typed while the server was down")
        assert [p.message for p in ann.pending] == ["typed while the server was down"]
        again = server.start() if same_object else make_server(port=port, grace=WAIT)
        assert again.port == port
        for client in (ann, bob):
            await client.wait_for_message("typed while the server was down", 6 * WAIT)
        await ann.wait_for(lambda c: not c.pending, WAIT)
        for client in (ann, bob):
            assert client.texts().count("typed while the server was down") == 1
        assert [m["message"] for m in again.history].count("typed while the server was down") == 1
        assert 1001 in close_codes(ann)
        await ann.close()
        await bob.close()

    run(scenario())


async def answer_connecting(socket: Any) -> None:
    """Play a minimal server: read the client's connecting, answer connected."""
    hello = json.loads(await socket.recv())
    await socket.send(encode(Connected(hello["id"], hello["username"], "t", [], [], False)))


def test_backoff_resets_only_after_a_connection_held(make_server: MakeServer) -> None:
    """A server that accepts and drops at once sees the delays grow, not a steady hammering."""

    async def flaky(socket: Any) -> None:
        await answer_connecting(socket)
        await socket.close(1011)

    async def delays(min_uptime: float) -> list[float]:
        async with serve(flaky, "127.0.0.1", 0) as flaky_server:
            port = flaky_server.sockets[0].getsockname()[1]
            policy = RetryPolicy(initial=0.02, factor=2, cap=1, min_uptime=min_uptime)
            client = ChatClient(
                f"ws://127.0.0.1:{port}/chat", "ann", policy=policy, rng=lambda: 1.0
            )
            seen: list[float] = []
            client.on_change = lambda c: (
                seen.append(c.next_retry_in)
                if c.status == "reconnecting" and c.next_retry_in is not None
                else None
            )
            client.start()
            await client.wait_for(lambda c: len(seen) >= 4, 3 * WAIT)
            await client.close()
            return seen[:4]

    async def scenario() -> None:
        assert await delays(min_uptime=60) == pytest.approx([0.02, 0.04, 0.08, 0.16])
        assert await delays(min_uptime=0) == pytest.approx([0.02, 0.02, 0.02, 0.02])

    run(scenario())


def test_a_503_during_a_shutdown_is_retried_but_a_403_is_not() -> None:
    """A server that is stopping answers handshakes with 503: that is worth another try."""
    refusals = {"count": 0}

    def refuse_first(connection: Any, request: Any) -> Any:
        if request.headers.get("Origin") == "https://evil.example":
            return connection.respond(403, "no\n")
        if refusals["count"] < 2:
            refusals["count"] += 1
            return connection.respond(503, "shutting down\n")
        return None

    async def handler(socket: Any) -> None:
        await answer_connecting(socket)
        await socket.wait_closed()

    async def scenario() -> None:
        async with serve(handler, "127.0.0.1", 0, process_request=refuse_first) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/chat"
            policy = RetryPolicy(initial=0.01)
            patient = await ChatClient(url, "ann", policy=policy).connect(WAIT)
            assert patient.attempts == 3
            await patient.close()
            refused = ChatClient(url, "bob", policy=policy, origin="https://evil.example")
            with pytest.raises(ConnectionError):
                await refused.connect(WAIT)
            assert refused.attempts == 1

    run(scenario())


# --------------------------------------------------------------------------- life cycle


def test_start_and_stop_are_safe_to_repeat_and_threads_are_joined() -> None:
    before = threading.active_count()
    with ChatServer() as server:
        assert server.start() is server
        port = server.port
        assert port > 0 and server.url == f"ws://127.0.0.1:{port}/chat"
    server.stop()
    assert not server.running
    assert threading.active_count() == before


def test_a_port_in_use_raises_at_start(make_server: MakeServer) -> None:
    busy = make_server()
    with pytest.raises(OSError):
        ChatServer(port=busy.port).start()


def test_the_server_binds_loopback_by_default(make_server: MakeServer) -> None:
    server = make_server()
    assert server.host == "127.0.0.1"
    assert server.page_url == f"http://127.0.0.1:{server.port}/"


def test_blocking_client_from_plain_code(make_server: MakeServer) -> None:
    clock = FakeClock()
    server = make_server(clock=clock)
    with BlockingChatClient(server.url, "ann") as ann, BlockingChatClient(server.url, "bob") as bob:
        ann.send_message("from a script")
        entry = bob.wait_for_message("from a script", WAIT)
        assert entry["username"] == "ann"
        assert entry["ts"] == "2026-01-01T00:00:00.000Z"
        assert untagged(server.users) == [
            {"id": ann.id, "username": "ann"},
            {"id": bob.id, "username": "bob"},
        ]


def test_wss_with_a_certificate_made_at_run_time(make_server: MakeServer) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    server = make_server(ssl=server_context)
    assert server.url.startswith("wss://")

    async def scenario() -> None:
        ann = await joined(server, "ann", ssl=client_context)
        await ann.send_message("over TLS")
        await ann.wait_for_message("over TLS", WAIT)
        await ann.close()
        stranger = ChatClient(server.url, "bob", reconnect=False)  # no CA: refused
        with pytest.raises(ConnectionError):
            await stranger.connect(WAIT)
        assert "CERTIFICATE_VERIFY_FAILED" in stranger.events[0].detail

    run(scenario())


# --------------------------------------------------------------------------- the original design


def test_a_client_of_the_original_design_works_in_seed_compatible_mode(
    make_server: MakeServer,
) -> None:
    """It sends connecting with id and username only, reads connectedUserList and messagesList."""
    server = make_server(seed_compatible=True)

    async def seed_client(user_id: str, name: str) -> Any:
        socket = await connect(server.url)
        await socket.send(json.dumps({"event": "connecting", "id": user_id, "username": name}))
        return socket

    async def next_event(socket: Any, name: str) -> dict[str, Any]:
        while True:
            event = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
            if event["event"] == name:
                return event  # type: ignore[no-any-return]

    async def scenario() -> None:
        ann = await seed_client("1", "ann")
        connected = await next_event(ann, "connected")
        assert untagged(connected["connectedUserList"]) == [{"id": "1", "username": "ann"}]
        bob = await seed_client("2", "bob")
        await next_event(bob, "connected")
        assert (await next_event(ann, "joined"))["username"] == "bob"
        await ann.send(json.dumps({"event": "writeMessage", "message": "hi", "username": "ann"}))
        written = await next_event(bob, "messageWritten")
        assert [m["message"] for m in written["messagesList"]] == ["hi"]
        await bob.close()
        # A reload of such a client reconnects with its id alone, and is trusted.
        bob_again = await seed_client("2", "bob")
        assert (await next_event(bob_again, "connected"))["wasPageReload"] is True
        await ann.close()
        await bob_again.close()

    run(scenario())

"""Several ChatServers on one real Redis serve one chat (servers in this process).

Processes killed with SIGKILL are in ``test_cluster_processes.py``; these tests
start the servers on threads here, which lets them look inside.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import WAIT, hello, run_bounded, say, unit, untagged
from wslab import ChatClient, ChatServer, RedisServer
from wslab.errors import BackplaneError, ConfigurationError
from wslab.protocol import CloseCode

Make = Callable[..., ChatServer]


@pytest.fixture
def cluster(redis_server: RedisServer, make_server: Make) -> Iterator[Make]:
    """Start servers that share ``redis_server`` (small heartbeat, short grace)."""

    def make(**options: Any) -> ChatServer:
        options = {"redis": redis_server.url, "redis_heartbeat": 0.1, "grace": unit(0.5), **options}
        return make_server(**options)

    yield make


def kinds(client: ChatClient, *names: str) -> list[tuple[str, str]]:
    """The room events a client received, as ``(event, id)``, of the given kinds."""
    found = []
    for event in client.events:
        if event.type == "message" and isinstance(event.data, str):
            frame = json.loads(event.data)
            if frame["event"] in names:
                found.append((frame["event"], frame.get("id", "")))
    return found


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition that no client event announces (server-side state)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_clients_on_two_servers_chat_in_one_order(cluster: Make) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        alice = await ChatClient(a.url, "alice").connect()
        bob = await ChatClient(b.url, "bob").connect()
        await alice.wait_for(lambda c: len(c.users) == 2, WAIT)
        for i in range(5):
            await alice.send_message(f"a{i}")
            await bob.send_message(f"b{i}")
        for client in (alice, bob):
            await client.wait_for(lambda c: len(c.messages) == 10 and not c.pending, WAIT)
        assert alice.messages == bob.messages
        assert [m["messageId"] for m in alice.messages] == list(range(1, 11))
        assert kinds(alice, "joined") == [("joined", bob.id)]  # bob arrived after alice
        assert list(alice.users) == list(bob.users) == [alice.id, bob.id]
        await until(
            lambda: (
                a.users == b.users
                and untagged(a.users)
                == [{"id": alice.id, "username": "alice"}, {"id": bob.id, "username": "bob"}]
            )
        )
        await alice.close()
        await bob.close()

    run_bounded(scenario())


def test_a_reload_on_another_server_within_the_grace_is_neither_leave_nor_join(
    cluster: Make,
) -> None:
    a, b = cluster(grace=unit(2)), cluster(grace=unit(2))

    async def scenario() -> None:
        carol = await ChatClient(a.url, "carol").connect()
        alice = await ChatClient(a.url, "alice").connect()
        await carol.wait_for(lambda c: len(c.users) == 2, WAIT)
        await alice.close()
        await until(lambda: a.link is not None and _held_in_grace(a, alice.id))
        again = ChatClient(b.url, "alice", id=alice.id, token=alice.token)
        await again.connect()
        assert again.was_page_reload is True
        await carol.send_message("still here?")  # anything after the grace window
        await again.wait_for_message("still here?", WAIT)
        # Server A's grace for the old socket runs out: A lets go of alice, B still holds her.
        await until(lambda: alice.id not in _held(a), 2 * WAIT)
        await carol.send_message("and now?")
        await again.wait_for_message("and now?", WAIT)
        assert kinds(carol, "joined", "disconnected") == [("joined", alice.id)]
        assert set(carol.users) == {carol.id, alice.id}
        await again.close()
        await carol.close()

    run_bounded(scenario())


def _held(server: ChatServer) -> dict[str, bool]:
    """The ids a server holds, each with whether a socket of it is open there."""
    return {h[0]: h[3] for h in server._call(server.room.holdings)}  # type: ignore[attr-defined]


def _held_in_grace(server: ChatServer, user_id: str) -> bool:
    return _held(server).get(user_id) is False


def test_after_the_grace_everyone_on_every_server_hears_the_leave_once(cluster: Make) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        alice = await ChatClient(a.url, "alice").connect()
        bob = await ChatClient(b.url, "bob").connect()
        carol = await ChatClient(a.url, "carol").connect()
        await alice.wait_for(lambda c: len(c.users) == 3, WAIT)
        await bob.close()
        for client in (alice, carol):
            await client.wait_for(lambda c: bob.id not in c.users, WAIT)
            assert kinds(client, "disconnected") == [("disconnected", bob.id)]
        await alice.close()
        await carol.close()

    run_bounded(scenario())


def test_a_token_binds_the_id_on_every_server(cluster: Make) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        owner = await ChatClient(a.url, "owner").connect()
        async with connect(b.url) as thief:
            await thief.send(hello(owner.id, "thief"))
            error = json.loads(await thief.recv())
            assert error["event"] == "error" and error["code"] == "id_taken"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(thief.recv(), WAIT)
            assert thief.close_code == CloseCode.POLICY_VIOLATION
        second_tab = await ChatClient(b.url, "owner", id=owner.id, token=owner.token).connect()
        assert second_tab.was_page_reload is False and len(second_tab.users) == 1
        await owner.send_message("mine")
        await second_tab.wait_for_message("mine", WAIT)
        await owner.close()
        await second_tab.close()

    run_bounded(scenario())


def test_a_resend_through_another_server_is_stored_once(cluster: Make) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        watcher = await ChatClient(a.url, "watcher").connect()
        user = await ChatClient(a.url, "user").connect()
        await user.send_raw(say("once", "cm-1"))
        await watcher.wait_for_message("once", WAIT)
        async with connect(b.url) as again:
            await again.send(hello(user.id, "user", token=user.token))
            assert json.loads(await again.recv())["event"] == "connected"
            await again.send(say("once", "cm-1"))
            ack = json.loads(await again.recv())
            assert ack["event"] == "messageWritten" and ack["message"]["messageId"] == 1
            await again.send(say("other text", "cm-1"))
            refused = json.loads(await again.recv())
            assert refused["event"] == "error" and refused["code"] == "duplicate_id"
        await watcher.send_message("after")
        await watcher.wait_for_message("after", WAIT)
        assert watcher.texts() == ["once", "after"]
        assert [m["messageId"] for m in watcher.messages] == [1, 2]
        await watcher.close()
        await user.close()

    run_bounded(scenario())


def test_recovery_from_another_server_reaches_beyond_its_memory(cluster: Make) -> None:
    a, b = cluster(history=5), cluster(history=5)

    async def scenario() -> None:
        talker = await ChatClient(a.url, "talker").connect()
        away = await ChatClient(a.url, "away").connect()
        await talker.send_message("seen")
        await away.wait_for_message("seen", WAIT)
        last, room_id = away.last_message_id, away.room_id
        await away.close()
        for i in range(20):
            await talker.send_message(f"missed {i}")
        await talker.wait_for(lambda c: len(c.messages) == 21 and not c.pending, WAIT)
        async with connect(b.url) as back:
            await back.send(
                hello(away.id, "away", token=away.token, lastMessageId=last, roomId=room_id)
            )
            connected = json.loads(await back.recv())
            got = [m["message"] for m in connected["messagesList"]]
            while len(got) < 20:
                got.append(json.loads(await back.recv())["message"]["message"])
            assert got == [f"missed {i}" for i in range(20)]
            assert "truncated" not in connected
        await talker.close()

    run_bounded(scenario())


def test_a_stopped_server_hands_its_users_over_and_they_leave_after_the_grace(
    cluster: Make,
) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        stay = await ChatClient(b.url, "stay").connect()
        gone = await ChatClient(a.url, "gone", reconnect=False).connect()
        moving = await ChatClient([a.url, b.url], "moving").connect()
        await stay.wait_for(lambda c: len(c.users) == 3, WAIT)
        await asyncio.to_thread(a.stop)
        await moving.wait_for(lambda c: c.online and c.url == b.url, WAIT)
        await moving.send_message("moved")
        await stay.wait_for_message("moved", WAIT)
        await stay.wait_for(lambda c: gone.id not in c.users, 2 * WAIT)
        assert moving.id in stay.users
        assert ("disconnected", moving.id) not in kinds(stay, "disconnected")
        assert kinds(stay, "joined").count(("joined", moving.id)) == 1  # when it arrived
        await moving.close()
        await stay.close()
        await gone.close()

    run_bounded(scenario())


def test_redis_unreachable_at_start_is_one_clear_error(make_server: Make) -> None:
    with RedisServer() as redis:
        url = redis.url
    with pytest.raises(BackplaneError, match=r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0"):
        ChatServer(redis=url).start()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0"])
def test_a_malformed_redis_url_is_a_configuration_error_not_a_connection_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="redis") as caught:
        ChatServer(redis=url)  # refused where it is given, before anything starts
    assert not isinstance(caught.value, ConnectionError)  # retrying would not help
    assert isinstance(caught.value, ValueError)


def test_a_redis_url_with_a_password_is_never_shown_with_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ChatServer(redis="redis://user:s3cret@127.0.0.1:notaport/0")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_a_server_on_redis_takes_no_store_and_no_seed_mode(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="no store"):
        ChatServer(redis=redis_server.url, seed_compatible=True)


def test_redis_lost_closes_clients_with_1013_refuses_handshakes_and_comes_back(
    redis_server: RedisServer, cluster: Make
) -> None:
    a, b = cluster(), cluster()

    async def scenario() -> None:
        alice = await ChatClient(a.url, "alice").connect()
        bob = await ChatClient(b.url, "bob").connect()
        await alice.send_message("before")
        await bob.wait_for_message("before", WAIT)
        closes: list[int] = []
        alice.on_close = lambda code, reason: closes.append(code)
        await asyncio.to_thread(redis_server.kill)
        await alice.wait_for(lambda c: not c.online, WAIT)
        assert closes[0] == CloseCode.TRY_AGAIN_LATER
        await until(lambda: not a.backplane_up)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(a.url):
                pass
        assert refused.value.response.status_code == 503
        await alice.send_message("while down")  # pending until the chat is back
        await asyncio.to_thread(redis_server.restart)
        for client in (alice, bob):
            await client.wait_for(lambda c: c.online, 4 * WAIT)
            await client.wait_for_message("while down", 2 * WAIT)
        assert alice.texts() == bob.texts() == ["before", "while down"]
        assert [m["messageId"] for m in bob.messages] == [1, 2]
        assert a.link is not None and a.link.outages == 1
        await alice.close()
        await bob.close()

    run_bounded(scenario(), timeout=12 * WAIT)


def test_a_restarted_redis_without_its_data_is_a_new_room(make_server: Make) -> None:
    with RedisServer(persist=False) as redis:
        server = make_server(redis=redis.url, redis_heartbeat=0.1)

        async def scenario() -> None:
            client = await ChatClient(server.url, "alice").connect()
            await client.send_message("old room")
            await client.wait_for(lambda c: not c.pending, WAIT)
            old_room = client.room_id
            await asyncio.to_thread(redis.restart)
            await client.wait_for(lambda c: c.online and c.room_id != old_room, 4 * WAIT)
            await client.send_message("new room")
            await client.wait_for(lambda c: not c.pending, WAIT)
            assert client.messages[-1]["messageId"] == 1  # numbering starts over
            await client.close()

        run_bounded(scenario(), timeout=12 * WAIT)


def test_a_server_taken_for_dead_while_alive_holds_its_users_again(cluster: Make) -> None:
    """Another server adopts this one's users (as if its heartbeat had expired); this one
    notices at its next heartbeat and claims them again: nobody hears of a leave."""
    from wslab.backplane import RedisBackplane

    a, b = cluster(grace=unit(0.5)), cluster(grace=unit(0.5))
    assert a.link is not None and a.redis is not None
    victim_id = a.link.backplane.server_id

    async def scenario() -> None:
        alice = await ChatClient(a.url, "alice").connect()
        carol = await ChatClient(b.url, "carol").connect()
        await carol.wait_for(lambda c: len(c.users) == 2, WAIT)
        assert a.redis is not None
        usurper = RedisBackplane(a.redis, heartbeat=0.1)
        try:
            async with asyncio.timeout(WAIT):
                while True:  # until the usurper's beat finds the victim's key gone
                    await usurper._redis.delete(f"wslab:alive:{victim_id}")
                    beat = await usurper.beat()
                    if any(user["id"] == alice.id for user in beat.adopted):
                        break
            # Server a finds at its next heartbeat that it was given up, and holds alice again.
            holders = f"wslab:holders:{alice.id}"
            async with asyncio.timeout(WAIT):
                while await usurper._redis.hget(holders, victim_id) != "open":
                    await asyncio.sleep(0.02)
            # The usurper runs alice's grace to its end: alice is still held by a.
            await usurper.release(alice.id)
            await usurper.leave()
            # ... and is taken for dead by a or b at their next heartbeat.
            async with asyncio.timeout(WAIT):
                while await usurper._redis.sismember("wslab:servers", usurper.server_id):
                    await asyncio.sleep(0.02)
            assert await usurper._redis.hgetall(holders) == {victim_id: "open"}
        finally:
            await usurper.aclose()
        await alice.send_message("still here")
        await carol.wait_for_message("still here", WAIT)
        assert kinds(carol, "joined", "disconnected") == []
        assert set(carol.users) == {alice.id, carol.id}
        await alice.close()
        await carol.close()

    run_bounded(scenario())

"""Batched presence: the pure room on a fake clock, then real clients on a real server.

A socket that announces ``"features": ["presence"]`` gets one ``presence`` event per
tick at most, instead of one ``joined``/``disconnected`` per user; other sockets keep
the single events. Grace and ``connectedUserList`` behave exactly as without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import WAIT, RoomEngine
from tests.unit.test_room import Harness, hello, names, to
from wslab import ChatClient, ChatServer
from wslab.protocol import Presence, ProtocolError, encode, parse_client_event
from wslab.room import Outcome

BATCHED = {"features": ["presence"]}


def presence_to(outcome: Outcome, socket: str) -> list[dict[str, Any]]:
    return [e for e in to(outcome, socket) if e["event"] == "presence"]


def ids(entries: list[dict[str, str]]) -> list[str]:
    return [u["id"] for u in entries]


# --------------------------------------------------------------------------- protocol


def test_features_are_parsed_and_unknown_names_kept_for_the_room_to_ignore() -> None:
    frame = json.dumps({"event": "connecting", "id": "a", "username": "A", "features": ["x"]})
    assert parse_client_event(frame).features == ("x",)  # type: ignore[union-attr]


@pytest.mark.parametrize("features", ["presence", [1], [""], ["f"] * 17, {"presence": 1}])
def test_features_of_the_wrong_shape_are_invalid_fields(features: object) -> None:
    frame = json.dumps({"event": "connecting", "id": "a", "username": "A", "features": features})
    with pytest.raises(ProtocolError, match="features"):
        parse_client_event(frame)


def test_presence_event_serializes_as_documented() -> None:
    event = Presence(joined=[{"id": "a", "username": "A"}], left=[])
    assert json.loads(encode(event)) == {
        "event": "presence",
        "joined": [{"id": "a", "username": "A"}],
        "left": [],
    }


# --------------------------------------------------------------------------- pure room


def test_a_join_storm_reaches_batched_sockets_as_one_event_per_tick(engine: RoomEngine) -> None:
    h = Harness(engine, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.join("plain", "p", "P")
    for i in range(50):
        h.room.open(f"s{i}")
        outcome = h.room.receive(f"s{i}", hello(f"u{i}", f"U{i}", **BATCHED))
        assert presence_to(outcome, "watcher") == []  # nothing before the tick
        assert names(outcome, "plain")[-1:] == ["joined"]  # plain: one per user, at once
    assert h.room.next_deadline() == pytest.approx(h.clock.monotonic() + 0.05)
    h.clock.advance(0.049)
    assert h.room.expire().sends == []
    h.clock.advance(0.001)
    outcome = h.room.expire()
    (event,) = presence_to(outcome, "watcher")
    assert ids(event["joined"]) == ["p"] + [f"u{i}" for i in range(50)]
    assert event["left"] == []
    assert presence_to(outcome, "plain") == []
    assert h.room.next_deadline() is None  # nothing pending: no timer


def test_a_newcomer_mid_storm_gets_the_full_list_and_the_diff_keeps_it_right(
    engine: RoomEngine,
) -> None:
    h = Harness(engine, presence_tick=0.05)
    h.join("s0", "u0", "U0", **BATCHED)
    h.join("s1", "u1", "U1", **BATCHED)
    connected = h.join("s2", "u2", "U2", **BATCHED)
    assert ids(connected["connectedUserList"]) == ["u0", "u1", "u2"]
    view = set(ids(connected["connectedUserList"]))
    h.clock.advance(0.05)
    (event,) = presence_to(h.room.expire(), "s2")
    view -= set(ids(event["left"]))
    view |= set(ids(event["joined"]))
    assert view == {"u0", "u1", "u2"}


def test_join_then_leave_within_a_tick_tells_batched_sockets_nothing(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.clock.advance(0.05)
    h.room.expire()
    h.join("s1", "ann", "Ann")
    h.room.close("s1")
    h.clock.advance(0.05)
    assert presence_to(h.room.expire(), "watcher") == []


def test_join_then_leave_is_sent_when_a_newcomer_saw_the_user_in_between(
    engine: RoomEngine,
) -> None:
    h = Harness(engine, grace=0, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.join("s1", "ann", "Ann")
    late = h.join("late", "bob", "Bob", **BATCHED)
    assert "ann" in ids(late["connectedUserList"])
    h.room.close("s1")  # ann leaves in the same tick
    h.clock.advance(0.05)
    outcome = h.room.expire()
    (event,) = presence_to(outcome, "late")
    assert ids(event["left"]) == ["ann"]  # late must forget ann; watcher ignores it
    assert "ann" not in ids(event["joined"])


def test_a_leave_after_the_grace_is_batched_once(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.join("plain", "p", "P")
    h.join("s1", "ann", "Ann")
    h.clock.advance(0.05)
    h.room.expire()
    h.room.close("s1")
    h.clock.advance(1.0)
    outcome = h.room.expire()  # the grace ends: plain hears at once, batched at the tick
    assert names(outcome, "plain") == ["disconnected"]
    assert presence_to(outcome, "watcher") == []
    h.clock.advance(0.05)
    (event,) = presence_to(h.room.expire(), "watcher")
    assert ids(event["left"]) == ["ann"] and event["joined"] == []


def test_a_reload_within_the_grace_shows_nothing_to_anyone(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.join("plain", "p", "P")
    token = h.join("s1", "ann", "Ann", **BATCHED)["token"]
    h.clock.advance(0.05)
    h.room.expire()
    h.room.close("s1")
    h.clock.advance(0.5)
    again = h.join("s2", "ann", "Ann", token=token, **BATCHED)
    assert again["wasPageReload"] is True
    for _ in range(30):
        h.clock.advance(0.05)
        outcome = h.room.expire()
        assert outcome.sends == []


def test_a_leave_and_a_return_of_the_same_id_in_one_tick_leave_it_present(
    engine: RoomEngine,
) -> None:
    h = Harness(engine, grace=0, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    token = h.join("s1", "ann", "Ann")["token"]
    h.clock.advance(0.05)
    h.room.expire()
    h.room.close("s1")  # gone at once (no grace), then back with its token in the same tick
    h.join("s2", "ann", "Ann", token=token)
    h.clock.advance(0.05)
    (event,) = presence_to(h.room.expire(), "watcher")
    view = {"w", "ann"} - set(ids(event["left"])) | set(ids(event["joined"]))
    assert view == {u["id"] for u in h.room.users}


def test_unknown_features_leave_a_socket_on_single_events(engine: RoomEngine) -> None:
    h = Harness(engine, presence_tick=0.05)
    h.join("odd", "o", "O", features=["typing", "emoji"])
    h.room.open("s1")
    outcome = h.room.receive("s1", hello("ann", "Ann"))
    assert names(outcome, "odd") == ["joined"]


def test_presence_tick_must_not_be_negative(engine: RoomEngine) -> None:
    with pytest.raises(ValueError, match="presence_tick"):
        Harness(engine, presence_tick=-1)


# --------------------------------------------------------------------------- live


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario, 6 * WAIT))


def test_real_clients_see_a_storm_batched_and_plain_clients_one_by_one(
    make_server: Callable[..., ChatServer],
) -> None:
    server = make_server(presence_tick=0.05, rate_limit=0)

    async def scenario() -> None:
        batched = ChatClient(server.url, "watch", features=("presence",))
        plain = ChatClient(server.url, "plain")
        await batched.connect(timeout=WAIT)
        await plain.connect(timeout=WAIT)
        frames_before = len(batched.events)
        storm = [ChatClient(server.url, f"n{i}") for i in range(30)]
        await asyncio.gather(*(c.connect(timeout=WAIT) for c in storm))
        everyone = {c.id for c in [batched, plain, *storm]}
        await batched.wait_for(lambda c: set(c.users) == everyone, WAIT)
        await plain.wait_for(lambda c: set(c.users) == everyone, WAIT)
        batched_frames = [
            json.loads(e.data)
            for e in list(batched.events)[frames_before:]
            if e.type == "message" and isinstance(e.data, str)
        ]
        kinds = {f["event"] for f in batched_frames}
        assert kinds == {"presence"}, kinds
        assert len(batched_frames) < 30  # batched: fewer events than joins
        plain_joined = [
            e for e in plain.events if e.type == "message" and '"event":"joined"' in str(e.data)
        ]
        assert len(plain_joined) == 30  # plain: one per newcomer
        # A newcomer in the middle of it all gets the whole list in connected.
        late = ChatClient(server.url, "late", features=("presence",))
        await late.connect(timeout=WAIT)
        assert set(late.users) == everyone | {late.id}
        for c in storm[:10]:
            await c.close()
        gone = {c.id for c in storm[:10]}
        await batched.wait_for(lambda c: not gone & set(c.users), WAIT)
        await late.wait_for(lambda c: not gone & set(c.users), WAIT)
        await plain.wait_for(lambda c: not gone & set(c.users), WAIT)
        for c in [batched, plain, late, *storm[10:]]:
            await c.close()

    run(scenario())


def test_a_message_from_a_pending_newcomer_is_preceded_by_its_join(engine: RoomEngine) -> None:
    h = Harness(engine, presence_tick=0.05)
    h.join("watcher", "w", "W", **BATCHED)
    h.join("s1", "ann", "Ann", **BATCHED)
    outcome = h.room.receive("s1", json.dumps({"event": "writeMessage", "message": "hi"}))
    assert names(outcome, "watcher") == ["presence", "messageWritten"]
    assert ids(presence_to(outcome, "watcher")[0]["joined"]) == ["ann"]
    assert h.room.next_deadline() is None  # the diff went out with the message


def test_connected_with_a_kept_user_list_encodes_like_the_plain_event(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0)
    for i in range(5):
        h.join(f"s{i}", f"u{i}", 'name "quoted" \u00e9\U0001f600 <b>')
    h.room.close("s2")
    h.room.open("new")
    outcome = h.room.receive("new", hello("n", "N"))
    event = outcome.sends[0].event
    plain = dataclasses.replace(event, users_json=None)
    assert encode(event) == encode(plain)  # the same text, keys in the same order

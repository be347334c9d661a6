"""The room on a remote engine (Redis), its pure side: requests out, answers and log in.

The answers and the log are written here by hand, as Redis would give them, so
these tests need no Redis: they check how the one :class:`~wslab.room.Room` reads
a remote engine's answers. The same rules on a real Redis, and on the memory
engine, are checked by tests/unit/test_room.py and tests/integration/test_presence.py.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import hello, say
from wslab.clock import FakeClock
from wslab.engine import (
    Append,
    AppendResult,
    Claim,
    ClaimResult,
    MarkGrace,
    RedisEngine,
    Release,
    Snapshot,
)
from wslab.protocol import CloseCode, MessageEntry, encode
from wslab.room import Outcome, Room


def make_room(**options: Any) -> tuple[Room, FakeClock]:
    clock = FakeClock()
    room = Room(clock=clock, engine=RedisEngine(), **options)
    room.load(Snapshot("room-1", [], [], 0, "0-0"))
    return room, clock


def frames(outcome: Outcome, socket: str) -> list[dict[str, Any]]:
    """What ``socket`` receives from an outcome, decoded."""
    return [json.loads(encode(s.event)) for s in outcome.sends if socket in s.to]


def events(outcome: Outcome, socket: str) -> list[str]:
    return [frame["event"] for frame in frames(outcome, socket)]


def entry(message_id: int, user: str = "b", text: str = "hi") -> MessageEntry:
    return {"messageId": message_id, "id": user, "username": user, "message": text, "ts": "t"}


def join(room: Room, socket: str, user: str, status: str = "new", **fields: Any) -> Outcome:
    """Open ``socket``, send connecting, answer its claim as the backplane would."""
    room.open(socket)
    outcome = room.receive(socket, hello(user, user, **fields))
    (claim,) = outcome.tasks
    assert isinstance(claim, Claim)
    result = ClaimResult(status, token=f"tok-{user}", username=user)  # type: ignore[arg-type]
    return room.answer(claim, result)


def test_connecting_asks_the_backplane_and_connected_lists_the_newcomer() -> None:
    room, _ = make_room()
    room.log_joined({"id": "b", "username": "b"})
    room.open("s1")
    outcome = room.receive("s1", hello("a", "alice"))
    assert outcome.sends == [] and isinstance(outcome.tasks[0], Claim)
    connected = frames(room.answer(outcome.tasks[0], ClaimResult("new", "tok", "alice")), "s1")
    assert connected[0]["event"] == "connected"
    assert connected[0]["connectedUserList"] == [
        {"id": "b", "username": "b"},
        {"id": "a", "username": "alice"},
    ]
    assert connected[0]["token"] == "tok" and connected[0]["wasPageReload"] is False


def test_joined_comes_from_the_log_and_skips_the_newcomers_own_sockets() -> None:
    room, _ = make_room()
    join(room, "s-b", "b")
    room.log_joined({"id": "b", "username": "b"})
    join(room, "s-a", "a")
    told = room.log_joined({"id": "a", "username": "a"})
    assert events(told, "s-b") == ["joined"]
    assert events(told, "s-a") == []  # its connected listed it already
    assert room.log_joined({"id": "a", "username": "a"}).sends == []  # read twice: once
    assert [u["id"] for u in room.users] == ["b", "a"]


def test_an_id_taken_elsewhere_is_refused_with_1008_and_nothing_changes() -> None:
    room, _ = make_room()
    room.open("s1")
    (claim,) = room.receive("s1", hello("a")).tasks
    assert isinstance(claim, Claim)
    outcome = room.answer(claim, ClaimResult("taken"))
    assert events(outcome, "s1") == ["error"]
    assert frames(outcome, "s1")[0]["code"] == "id_taken"
    assert outcome.close is not None and outcome.close.code == CloseCode.POLICY_VIOLATION
    assert room.users == [] and room.holdings() == []


def test_a_second_tab_is_claimed_like_any_connecting_and_is_not_a_reload() -> None:
    room, _ = make_room()
    join(room, "s1", "a")
    tab = join(room, "s2", "a", status="tab", token="tok-a")
    assert events(tab, "s2") == ["connected"]
    assert frames(tab, "s2")[0]["wasPageReload"] is False
    assert sorted(room.sockets_of("a")) == ["s1", "s2"]
    room.open("s3")
    (claim,) = room.receive("s3", hello("a", "a", token="wrong")).tasks
    thief = room.answer(claim, ClaimResult("taken"))  # the engine checks every token
    assert frames(thief, "s3")[0]["code"] == "id_taken" and thief.close is not None


def test_grace_is_marked_then_released_and_the_leave_is_told_by_the_log() -> None:
    room, clock = make_room(grace=1.0)
    join(room, "s-a", "a")
    join(room, "s-b", "b")
    for user in ("a", "b"):
        room.log_joined({"id": user, "username": user})
    closed = room.close("s-a")
    assert closed.tasks == [MarkGrace("a")] and closed.sends == []
    clock.advance(0.5)
    assert room.expire().tasks == []
    clock.advance(0.6)
    expired = room.expire()
    assert expired.tasks == [Release("a")] and expired.sends == []  # nobody is told yet
    told = room.log_left({"id": "a", "username": "a"})
    assert events(told, "s-b") == ["disconnected"]
    assert [u["id"] for u in room.users] == ["b"]


def test_grace_zero_marks_and_releases_at_once() -> None:
    room, _ = make_room(grace=0)
    join(room, "s-a", "a")
    assert room.close("s-a").tasks == [MarkGrace("a"), Release("a")]


def test_a_reconnect_here_within_the_grace_is_a_reload() -> None:
    room, clock = make_room(grace=1.0)
    join(room, "s1", "a")
    room.log_joined({"id": "a", "username": "a"})
    room.close("s1")
    clock.advance(0.5)
    back = join(room, "s2", "a", status="reload", token="tok-a")
    assert frames(back, "s2")[0]["wasPageReload"] is True
    clock.advance(1.0)
    assert room.expire().tasks == []  # the grace was cancelled


def test_messages_are_numbered_by_the_backplane_and_delivered_from_the_log() -> None:
    room, _ = make_room()
    join(room, "s-a", "a")
    join(room, "s-b", "b")
    written = room.receive("s-a", say("hello", "c1"))
    (append,) = written.tasks
    assert isinstance(append, Append) and written.sends == []
    assert append.draft["message"] == "hello" and append.draft["clientMessageId"] == "c1"
    assert room.answer(append, AppendResult(True, 1)).sends == []  # the log tells everyone
    delivered = room.deliver({**append.draft, "messageId": 1})
    assert events(delivered, "s-a") == events(delivered, "s-b") == ["messageWritten"]
    assert room.deliver({**append.draft, "messageId": 1}).sends == []  # never twice


def test_a_resend_is_acknowledged_to_its_socket_and_a_reused_id_is_refused() -> None:
    room, _ = make_room()
    join(room, "s-a", "a")
    join(room, "s-b", "b")
    (append,) = room.receive("s-a", say("hello", "c1")).tasks
    assert isinstance(append, Append)
    room.deliver({**append.draft, "messageId": 1})
    (again,) = room.receive("s-a", say("hello", "c1")).tasks
    assert isinstance(again, Append)
    ack = room.answer(again, AppendResult(False, 1, again.digest, "t"))
    assert events(ack, "s-a") == ["messageWritten"] and events(ack, "s-b") == []
    assert frames(ack, "s-a")[0]["message"]["messageId"] == 1
    (other,) = room.receive("s-a", say("another text", "c1")).tasks
    assert isinstance(other, Append)
    refused = room.answer(other, AppendResult(False, 1, again.digest, "t"))
    assert frames(refused, "s-a")[0]["code"] == "duplicate_id"


def test_an_earlier_message_gone_from_memory_and_log_is_rebuilt_for_the_ack() -> None:
    room, _ = make_room()
    join(room, "s-a", "a")
    (append,) = room.receive("s-a", say("hello", "c1")).tasks
    assert isinstance(append, Append)
    ack = room.answer(append, AppendResult(False, 7, append.digest, "then"))
    message = frames(ack, "s-a")[0]["message"]
    assert (message["messageId"], message["message"], message["ts"]) == (7, "hello", "then")


def test_recovery_joins_what_the_log_returned_with_what_this_server_keeps() -> None:
    room, _ = make_room(history=3)
    for n in range(1, 11):
        room.deliver(entry(n))
    room.open("s1")
    outcome = room.receive("s1", hello("a", "a", lastMessageId=2, roomId="room-1"))
    (claim,) = outcome.tasks
    assert isinstance(claim, Claim) and claim.recover_after == 2  # kept: 8..10 only
    older = [entry(n) for n in range(3, 12)]  # the log may be ahead of this server
    got = room.answer(claim, ClaimResult("reload", "t", "a", older, complete=True))
    first, *rest = frames(got, "s1")
    ids = [m["messageId"] for m in first["messagesList"]]
    ids += [f["message"]["messageId"] for f in rest]
    assert ids == list(range(3, 11))  # 11 comes through the log, like for everyone
    assert "truncated" not in first


def test_recovery_is_marked_truncated_when_the_log_was_trimmed() -> None:
    room, _ = make_room(history=2)
    for n in range(1, 6):
        room.deliver(entry(n))
    room.open("s1")
    (claim,) = room.receive("s1", hello("a", "a", lastMessageId=1, roomId="room-1")).tasks
    assert isinstance(claim, Claim)
    got = room.answer(claim, ClaimResult("new", "t", "a", [entry(3), entry(4)], complete=False))
    assert frames(got, "s1")[0]["truncated"] is True


def test_a_client_of_another_room_gets_the_history_as_a_first_visit() -> None:
    room, _ = make_room()
    room.deliver(entry(1))
    room.open("s1")
    (claim,) = room.receive("s1", hello("a", "a", lastMessageId=50, roomId="old-room")).tasks
    assert isinstance(claim, Claim) and claim.recover_after is None
    got = room.answer(claim, ClaimResult("new", "t", "a"))
    assert [m["messageId"] for m in frames(got, "s1")[0]["messagesList"]] == [1]


def test_adopted_users_run_their_grace_here_and_are_released() -> None:
    room, clock = make_room(grace=1.0)
    room.log_joined({"id": "z", "username": "zoe"})
    room.adopt([{"id": "z", "username": "zoe"}])
    assert room.holdings() == [("z", "zoe", None, False)]
    clock.advance(1.1)
    assert room.expire().tasks == [Release("z")]


def test_an_adopted_user_who_reconnects_here_is_claimed_as_a_reload() -> None:
    room, clock = make_room(grace=1.0)
    room.log_joined({"id": "z", "username": "zoe"})
    room.adopt([{"id": "z", "username": "zoe"}])
    back = join(room, "s1", "z", status="reload", token="tok-z")
    assert frames(back, "s1")[0]["wasPageReload"] is True
    clock.advance(2)
    assert room.expire().tasks == []


def test_batched_presence_comes_from_the_log_too() -> None:
    room, clock = make_room(presence_tick=0.05)
    join(room, "s1", "a", features=["presence"])
    room.log_joined({"id": "a", "username": "a"})
    room.log_joined({"id": "b", "username": "b"})
    clock.advance(0.06)
    flushed = room.expire()
    (presence,) = frames(flushed, "s1")
    assert presence["event"] == "presence" and presence["joined"] == [{"id": "b", "username": "b"}]


def test_load_forgets_every_socket_and_hold() -> None:
    room, _ = make_room()
    join(room, "s1", "a")
    room.load(Snapshot("room-2", [{"id": "q", "username": "q"}], [entry(4)], 4, "4-0"))
    assert room.socket_count == 0 and room.holdings() == []
    assert room.room_id == "room-2" and room.users == [{"id": "q", "username": "q"}]
    assert room.last_message_id == 4 and room.receive("s1", say("x")).sends == []

"""The classroom's rules (wslab.moderation.ClassRoom), driven directly: a fake clock,
string sockets, no hub and no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TEACHER_EVENTS, hello, say, untagged
from wslab.clock import FakeClock
from wslab.moderation import ClassRoom, Role
from wslab.protocol import (
    CloseCode,
    ErrorCode,
    encode,
    parse_classroom_event,
    parse_client_event,
    parse_server_event,
)
from wslab.room import Outcome, Room


def to(outcome: Outcome, socket: str) -> list[dict[str, Any]]:
    """The events an outcome delivers to one socket, as the JSON it would read."""
    return [json.loads(encode(s.event)) for s in outcome.sends if socket in s.to]


def frame(event: str, **fields: Any) -> str:
    return json.dumps({"event": event, **fields})


class Class:
    """A classroom with a fake clock; ``join`` admits a socket as a hub user and connects it."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        options.setdefault("grace", 1.0)
        self.room = ClassRoom(clock=self.clock, **options)

    def join(self, socket: str, name: str, role: Role = "student", **fields: Any) -> dict[str, Any]:
        self.room.admit(socket, name, role)
        self.room.open(socket)
        claimed = hello(fields.pop("id", "x"), fields.pop("username", "someone"), **fields)
        outcome = self.room.receive(socket, claimed)
        (connected,) = [e for e in to(outcome, socket) if e["event"] == "connected"]
        return connected

    def send(self, socket: str, event: str, **fields: Any) -> Outcome:
        return self.room.receive(socket, frame(event, **fields))


@pytest.fixture
def room() -> Class:
    c = Class(kick_seconds=30)
    c.join("t", "tom", "teacher")
    c.join("a", "ada")
    c.join("b", "bob")
    return c


def error_of(outcome: Outcome, socket: str) -> str:
    (error,) = [e for e in to(outcome, socket) if e["event"] == "error"]
    return str(error["code"])


def test_the_hub_name_is_the_id_and_username_whatever_connecting_claims() -> None:
    c = Class()
    connected = c.join("s", "ada", id="tom", token="forged")
    assert (connected["id"], connected["username"], connected["role"]) == ("ada", "ada", "student")
    assert "token" not in connected  # no chat token: the hub decides who a socket is
    assert "progressList" not in connected
    assert untagged(c.room.users) == [{"id": "ada", "username": "ada"}]
    teacher = c.join("t", "tom", "teacher", id="ada", username="ada")
    assert (teacher["id"], teacher["role"], teacher["progressList"]) == ("tom", "teacher", [])


def test_connecting_is_read_without_its_id_username_and_token() -> None:
    c = Class()
    c.room.admit("s", "ada.lovelace@uni.example", "student")
    c.room.open("s")
    # the hub name sent back as the id (not a plain chat id), no username at all
    claimed = json.dumps({"event": "connecting", "id": "ada.lovelace@uni.example"})
    (connected,) = to(c.room.receive("s", claimed), "s")
    assert connected["id"] == "ada.lovelace@uni.example"
    bad = json.dumps({"event": "connecting", "lastMessageId": -1})  # the rest is checked
    c.room.open("t")
    c.room.admit("t", "tom", "teacher")
    assert error_of(c.room.receive("t", bad), "t") == "invalid_field"


def test_messages_carry_the_hub_name() -> None:
    c = Class()
    c.join("s", "ada.lovelace@uni.example")  # a hub name need not be a plain chat id
    (written,) = to(c.room.receive("s", say("hi")), "s")
    assert written["message"]["id"] == written["message"]["username"] == "ada.lovelace@uni.example"


def test_a_second_tab_and_a_reload_within_the_grace_are_the_same_user() -> None:
    c = Class(grace=5)
    c.join("s1", "ada")
    assert c.join("s2", "ada")["wasPageReload"] is False  # a second tab
    c.room.close("s1")
    c.room.close("s2")
    c.clock.advance(2)
    assert c.join("s3", "ada")["wasPageReload"] is True
    assert untagged(c.room.users) == [{"id": "ada", "username": "ada"}]


@pytest.mark.parametrize(("event", "fields"), TEACHER_EVENTS)
def test_every_teacher_event_is_forbidden_to_a_student(
    room: Class, event: str, fields: dict[str, Any]
) -> None:
    outcome = room.send("a", event, **fields)
    assert error_of(outcome, "a") == "forbidden"
    assert [s.to for s in outcome.sends] == [("a",)] and outcome.closes == []
    assert room.room.muted == [] and room.room.kicked_until("bob") is None


def test_a_muted_user_is_told_cannot_write_and_is_not_struck(room: Class) -> None:
    outcome = room.send("t", "mute", id="bob")
    for socket in "tab":
        assert to(outcome, socket) == [{"event": "muted", "id": "bob", "username": "bob"}]
    for _ in range(12):  # more than the ten strikes that close a socket
        refused = room.room.receive("b", say("let me speak"))
        assert error_of(refused, "b") == "muted" and refused.close is None
    assert room.room.history == []
    unmuted = room.send("t", "unmute", id="bob")
    assert to(unmuted, "a") == [{"event": "unmuted", "id": "bob", "username": "bob"}]
    assert to(room.room.receive("b", say("thanks")), "a")[0]["message"]["message"] == "thanks"


def test_a_kick_closes_every_tab_with_4003_and_keeps_the_user_out_for_the_kick_time(
    room: Class,
) -> None:
    room.join("b2", "bob")
    outcome = room.send("t", "kick", id="bob")
    assert {(c.socket, c.code, c.reason) for c in outcome.closes} == {
        ("b", CloseCode.REMOVED, "removed by the teacher"),
        ("b2", CloseCode.REMOVED, "removed by the teacher"),
    }
    assert room.room.kicked_until("bob") == room.clock.monotonic() + 30
    room.clock.advance(29.9)
    assert room.room.kicked_until("bob") is not None
    room.clock.advance(0.1)
    assert room.room.kicked_until("bob") is None
    assert room.room.kicked_until("ada") is None


def test_clear_empties_history_for_everyone_and_recovery_starts_from_it(room: Class) -> None:
    room.room.receive("a", say("one"))
    before = room.join("a2", "ada")
    old_room, last = before["roomId"], before["messagesList"][-1]["messageId"]
    outcome = room.send("t", "clear")
    (cleared,) = {json.dumps(e) for s in "tab" for e in to(outcome, s)}
    new_room = json.loads(cleared)["roomId"]
    assert json.loads(cleared) == {"event": "cleared", "roomId": new_room} and new_room != old_room
    assert room.room.history == []
    room.room.receive("b", say("two"))
    # a client back with a lastMessageId from before the clear gets what followed it only
    back = room.join("a3", "ada", lastMessageId=last, roomId=old_room)
    assert [m["message"] for m in back["messagesList"]] == ["two"]
    assert back["roomId"] == new_room and "truncated" not in back


def test_an_announcement_reaches_everyone_marked_and_is_kept(room: Class) -> None:
    outcome = room.send("t", "announce", message="exam at 10")
    for socket in "tab":
        (written,) = to(outcome, socket)
        assert written["message"]["announcement"] is True
        assert written["message"]["message"] == "exam at 10"
        assert written["message"]["username"] == "tom"
    assert room.room.history[-1]["announcement"] is True
    entry = parse_server_event(encode(outcome.sends[0].event))
    assert entry.message["announcement"] is True  # type: ignore[union-attr]


def test_progress_reaches_teachers_live_never_students_newest_kept(room: Class) -> None:
    first = room.send("a", "progress", exercise="echo", passed=False)
    assert to(first, "a") == [] and to(first, "b") == []
    (live,) = to(first, "t")
    assert {k: live[k] for k in ("event", "id", "username", "exercise", "passed")} == {
        "event": "progress",
        "id": "ada",
        "username": "ada",
        "exercise": "echo",
        "passed": False,
    }
    room.send("a", "progress", exercise="echo", passed=True)
    room.send("b", "progress", exercise="echo", passed=False)
    teacher = room.join("t2", "ida", "teacher")
    assert [(p["id"], p["exercise"], p["passed"]) for p in teacher["progressList"]] == [
        ("ada", "echo", True),
        ("bob", "echo", False),
    ]
    assert "progressList" not in room.join("a2", "ada")


@pytest.mark.parametrize(
    "fields",
    [{}, {"exercise": "", "passed": True}, {"exercise": "x" * 65, "passed": True},
     {"exercise": "echo", "passed": 1}, {"exercise": "echo"}],
)  # fmt: skip
def test_bad_progress_is_an_invalid_field(room: Class, fields: dict[str, Any]) -> None:
    assert error_of(room.send("a", "progress", **fields), "a") == "invalid_field"


def test_classroom_events_before_connecting_and_on_unadmitted_sockets_are_refused() -> None:
    c = Class()
    c.room.admit("s", "tom", "teacher")
    c.room.open("s")
    assert error_of(c.send("s", "clear"), "s") == "not_connected"
    c.room.open("stranger")
    assert error_of(c.room.receive("stranger", hello("x", "x")), "stranger") == "forbidden"


def test_a_plain_room_answers_classroom_events_as_unknown_events_as_before() -> None:
    room = Room(clock=FakeClock())
    room.open("s")
    room.receive("s", hello("ann", "Ann"))
    (error,) = to(room.receive("s", frame("kick", id="bob")), "s")
    assert error == {
        "event": "error",
        "code": "unknown_event",
        "detail": "unknown event 'kick'; a client may send connecting, writeMessage",
    }


def test_the_classroom_parser_knows_every_event_and_the_plain_one_none_of_them() -> None:
    frames = {
        "mute": {"id": "bob"},
        "unmute": {"id": "bob"},
        "kick": {"id": "bob"},
        "clear": {},
        "announce": {"message": "hello"},
        "progress": {"exercise": "echo", "passed": True},
    }
    for name, fields in frames.items():
        event = parse_classroom_event(frame(name, **fields))
        assert event.to_dict() == {"event": name, **fields}
        with pytest.raises(Exception) as caught:
            parse_client_event(frame(name, **fields))
        assert getattr(caught.value, "code", None) is ErrorCode.UNKNOWN_EVENT


def test_server_events_of_the_classroom_parse_back() -> None:
    c = Class()
    c.join("t", "tom", "teacher")
    c.room.receive("t", frame("progress", exercise="echo", passed=True))
    connected = parse_server_event(encode(c.room.receive("t", say("x")).sends[0].event))
    assert connected is not None
    for event in (
        {"event": "muted", "id": "a", "username": "a"},
        {"event": "cleared", "roomId": "r"},
        {"event": "progress", "id": "a", "username": "a", "exercise": "e", "passed": True,
         "ts": "t"},
    ):  # fmt: skip
        assert parse_server_event(json.dumps(event)).to_dict() == event
    teacher = Class()
    raw = teacher.join("t", "tom", "teacher")
    back = parse_server_event(json.dumps(raw))
    assert back.role == "teacher" and back.progress_list == []  # type: ignore[union-attr]


# --------------------------------------------------------------------------- fuzzing

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=70), st.just("bob")
)
_frames = st.one_of(
    st.builds(
        lambda event, fields: json.dumps({"event": event, **fields}),
        st.sampled_from(
            ["connecting", "writeMessage", "mute", "unmute", "kick", "clear", "announce",
             "progress", "nope"]
        ),
        st.dictionaries(
            st.sampled_from(["id", "username", "message", "exercise", "passed", "roomId",
                             "lastMessageId", "token"]),
            _values,
            max_size=4,
        ),
    ),
    st.text(max_size=20),
)  # fmt: skip
_who = {"t": ("tom", "teacher"), "a": ("ada", "student"), "b": ("bob", "student")}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(_who)), _frames, st.booleans()), max_size=40))
def test_random_frames_never_break_the_classroom_rules(steps: list[tuple[str, str, bool]]) -> None:
    """Whatever arrives: no exception, students never get a progress event, every close
    is 4003 or 1008, and a muted user's message is never stored."""
    c = Class(kick_seconds=5, rate_limit=0)
    generation = dict.fromkeys(_who, 0)
    for socket, name in _who.items():
        c.room.admit(f"{socket}0", *name)
        c.room.open(f"{socket}0")
    for who, data, advance in steps:
        socket = f"{who}{generation[who]}"
        stored_before = len(c.room.history)
        muted = _who[who][0] in c.room.muted
        outcome = c.room.receive(socket, data)
        for send in outcome.sends:
            event = json.loads(encode(send.event))
            if event["event"] == "progress":
                assert all(c.room.role_of(s) == "teacher" for s in send.to)
        if muted and '"event": "writeMessage"' in data:
            assert len(c.room.history) == stored_before
        for close in [outcome.close, *outcome.closes]:
            if close is None:
                continue
            assert close.code in (CloseCode.REMOVED, CloseCode.POLICY_VIOLATION)
            c.room.close(close.socket)
            closed = str(close.socket)[0]
            generation[closed] += 1
            fresh = f"{closed}{generation[closed]}"
            c.room.admit(fresh, *_who[closed])
            c.room.open(fresh)
        if advance:
            c.clock.advance(1)
            c.room.expire()

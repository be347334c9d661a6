"""The room state machine, driven directly: fake clock, string sockets, no network.

One test (or a few) per row of the protocol's tables (docs/protocol.md). Each test
that takes the ``engine`` fixture runs on both engines: in memory here, and on a real
Redis, whose answers the harness waits for, in tests/system/test_room_on_redis.py, so
one test body checks both.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import RoomEngine, hello, say, untagged
from wslab.clock import FakeClock
from wslab.protocol import CloseCode, encode
from wslab.room import Outcome


def to(outcome: Outcome, socket: str) -> list[dict[str, Any]]:
    """The events an outcome delivers to one socket, as the JSON it would read."""
    return [json.loads(encode(s.event)) for s in outcome.sends if socket in s.to]


def names(outcome: Outcome, socket: str) -> list[str]:
    return [event["event"] for event in to(outcome, socket)]


#: Why the truncation tests are the memory engine's: Redis recovers from its log.
KEEPS_THE_LOG = "the Redis engine keeps its log (redis_keep entries): nothing is truncated"


class Harness:
    """A room on ``engine`` with a fake clock, and helpers that open sockets and join users."""

    def __init__(self, engine: RoomEngine, **options: Any) -> None:
        self.clock = FakeClock()
        counter = iter(range(1_000_000))
        options.setdefault("token_factory", lambda: f"token-{next(counter)}")
        self.room = engine.room(clock=self.clock, **options)

    def join(self, socket: str, user_id: str, username: str, **fields: Any) -> dict[str, Any]:
        self.room.open(socket)
        outcome = self.room.receive(socket, hello(user_id, username, **fields))
        (connected,) = [e for e in to(outcome, socket) if e["event"] == "connected"]
        return connected


# --------------------------------------------------------------------------- handshake


def test_connecting_answers_connected_to_the_socket_only(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s1", "ann", "Ann")
    h.room.open("s2")
    outcome = h.room.receive("s2", hello("bob", "Bob"))
    (connected,) = to(outcome, "s2")
    assert connected["event"] == "connected"
    assert connected["id"] == "bob" and connected["username"] == "Bob"
    assert untagged(connected["connectedUserList"]) == [
        {"id": "ann", "username": "Ann"},
        {"id": "bob", "username": "Bob"},
    ]
    assert connected["messagesList"] == []
    assert connected["wasPageReload"] is False
    assert len(connected["token"]) > 0
    assert names(outcome, "s1") == ["joined"]


def test_the_first_user_gets_no_joined_from_anyone(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.room.open("s1")
    outcome = h.room.receive("s1", hello("ann", "Ann"))
    assert names(outcome, "s1") == ["connected"]
    assert len(outcome.sends) == 1


def test_default_tokens_carry_128_random_bits(engine: RoomEngine) -> None:
    room = engine.room(clock=FakeClock())
    room.open("s")
    token = to(room.receive("s", hello("a", "A")), "s")[0]["token"]
    assert len(token) >= 22  # 16 bytes, url-safe base64


def test_names_are_bound_while_present(engine: RoomEngine) -> None:
    """A later connecting with another username keeps the bound name."""
    h = Harness(engine)
    first = h.join("s1", "ann", "Ann")
    second = h.join("s2", "ann", "Annie", token=first["token"])
    assert second["username"] == "Ann"
    assert untagged(h.room.users) == [{"id": "ann", "username": "Ann"}]


def test_messages_carry_the_bound_name_not_a_sent_one(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s1", "ann", "Ann")
    frame = json.dumps({"event": "writeMessage", "message": "hi", "username": "Mallory"})
    (written,) = to(h.room.receive("s1", frame), "s1")
    assert written["message"]["username"] == "Ann"


# --------------------------------------------------------------------------- presence


def test_second_tab_is_one_user_and_announces_nothing(engine: RoomEngine) -> None:
    h = Harness(engine)
    first = h.join("tab1", "ann", "Ann")
    h.join("other", "bob", "Bob")
    h.room.open("tab2")
    outcome = h.room.receive("tab2", hello("ann", "Ann", token=first["token"]))
    assert names(outcome, "other") == []
    assert to(outcome, "tab2")[0]["wasPageReload"] is False
    assert [u["id"] for u in h.room.users] == ["ann", "bob"]
    # Closing one tab keeps the user online and silent.
    assert h.room.close("tab1").sends == []
    assert h.room.next_deadline() is None


def test_broadcast_goes_to_all_sockets_the_sender_included(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s1", "ann", "Ann")
    h.join("s2", "bob", "Bob")
    h.room.open("idle")  # never sent connecting: not a member of the room
    outcome = h.room.receive("s1", say("hello"))
    (send,) = outcome.sends
    assert set(send.to) == {"s1", "s2"}
    assert to(outcome, "s2")[0]["message"]["message"] == "hello"


# --------------------------------------------------------------------------- grace


def test_reload_within_grace_is_silent_and_flagged(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    first = h.join("old", "ann", "Ann")
    h.join("bob", "bob", "Bob")
    assert h.room.close("old").sends == []
    h.clock.advance(0.9)
    assert h.room.expire().sends == []
    h.room.open("new")
    outcome = h.room.receive("new", hello("ann", "Ann", token=first["token"]))
    assert names(outcome, "bob") == []
    assert to(outcome, "new")[0]["wasPageReload"] is True
    h.clock.advance(5)
    assert h.room.expire().sends == []  # the timer was cancelled
    assert [u["id"] for u in h.room.users] == ["ann", "bob"]


def test_grace_expiry_announces_disconnected_once(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    h.join("a", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.close("a")
    assert h.room.next_deadline() == pytest.approx(1.0)
    h.clock.advance(1.0)
    outcome = h.room.expire()
    assert untagged(to(outcome, "b")) == [{"event": "disconnected", "id": "ann", "username": "Ann"}]
    assert h.room.expire().sends == []
    assert untagged(h.room.users) == [{"id": "bob", "username": "Bob"}]


def test_presence_includes_users_inside_their_grace(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    h.join("a", "ann", "Ann")
    h.room.close("a")
    newcomer = h.join("c", "cy", "Cy")
    assert [u["id"] for u in newcomer["connectedUserList"]] == ["ann", "cy"]


def test_overlap_new_socket_before_old_closes_is_a_second_tab(engine: RoomEngine) -> None:
    """A reload whose new socket arrives before the old one closed: no flag, no events."""
    h = Harness(engine, grace=1.0)
    first = h.join("old", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.open("new")
    outcome = h.room.receive("new", hello("ann", "Ann", token=first["token"]))
    assert to(outcome, "new")[0]["wasPageReload"] is False
    assert names(outcome, "b") == []
    assert h.room.close("old").sends == []  # the new socket keeps the id online
    h.clock.advance(10)
    assert h.room.expire().sends == []


def test_zero_grace_announces_at_once(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0)
    h.join("a", "ann", "Ann")
    h.join("b", "bob", "Bob")
    assert names(h.room.close("a"), "b") == ["disconnected"]


def test_after_the_grace_a_return_is_a_new_join(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    first = h.join("a", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.close("a")
    h.clock.advance(2)
    h.room.expire()
    h.room.open("a2")
    outcome = h.room.receive("a2", hello("ann", "Ann", token=first["token"]))
    assert names(outcome, "b") == ["joined"]
    assert to(outcome, "a2")[0]["wasPageReload"] is False
    assert to(outcome, "a2")[0]["token"] == first["token"]  # the owner keeps its token


# --------------------------------------------------------------------------- identity


def test_claiming_an_online_id_without_its_token_is_refused_with_1008(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("victim", "ann", "Ann")
    h.room.open("thief")
    outcome = h.room.receive("thief", hello("ann", "Mallory"))
    assert [e["code"] for e in to(outcome, "thief")] == ["id_taken"]
    assert outcome.close is not None and outcome.close.code == CloseCode.POLICY_VIOLATION
    assert names(outcome, "victim") == []  # the real user is not disturbed
    assert untagged(h.room.users) == [{"id": "ann", "username": "Ann"}]


def test_a_wrong_token_is_refused_inside_the_grace_too(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    h.join("a", "ann", "Ann")
    h.room.close("a")
    h.room.open("thief")
    outcome = h.room.receive("thief", hello("ann", "Ann", token="guess"))
    assert [e["code"] for e in to(outcome, "thief")] == ["id_taken"]


def claim(h: Harness, socket: str, user_id: str, **fields: Any) -> Outcome:
    h.room.open(socket)
    return h.room.receive(socket, hello(user_id, "Mallory", **fields))


def test_an_offline_id_is_claimed_only_with_its_token(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0)
    first = h.join("a", "ann", "Ann")
    h.room.close("a")  # gone: nobody present under "ann"
    for socket, fields in [("t1", {}), ("t2", {"token": "guess"})]:
        outcome = claim(h, socket, "ann", **fields)
        assert [e["code"] for e in to(outcome, socket)] == ["id_taken"]
        assert outcome.close is not None and outcome.close.code == CloseCode.POLICY_VIOLATION
    assert h.room.users == []  # the thief is not present
    back = h.join("a2", "ann", "Ann", token=first["token"])
    assert back["token"] == first["token"]  # the owner's binding did not change


def test_a_claim_inside_the_grace_changes_nothing_of_the_owner(engine: RoomEngine) -> None:
    h = Harness(engine, grace=5.0)
    first = h.join("a", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.close("a")
    outcome = claim(h, "thief", "ann")
    assert names(outcome, "b") == []
    assert untagged(h.room.users) == [
        {"id": "ann", "username": "Ann"},
        {"id": "bob", "username": "Bob"},
    ]
    back = h.join("a2", "ann", "Ann", token=first["token"])
    assert back["wasPageReload"] is True and back["token"] == first["token"]


def test_offline_bindings_are_bounded_newest_used_kept(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0, max_bindings=3)
    tokens = {}
    for n in range(4):
        tokens[n] = h.join(f"s{n}", f"u{n}", "U")["token"]
        h.room.close(f"s{n}")
    # u0 was the least recently used: forgotten, so its id is free again.
    assert "token" in h.join("x0", "u0", "New")
    h.room.close("x0")
    for n in (2, 3):  # the newest are still bound
        assert names(claim(h, f"t{n}", f"u{n}"), f"t{n}") == ["error"]
        assert h.join(f"y{n}", f"u{n}", "U", token=tokens[n])["token"] == tokens[n]


def test_present_ids_keep_their_binding_whatever_the_bound(engine: RoomEngine) -> None:
    h = Harness(engine, grace=0, max_bindings=1)
    first = h.join("a", "ann", "Ann")
    for n in range(5):
        h.join(f"s{n}", f"u{n}", "U")
    h.room.close("a")
    assert names(claim(h, "thief", "ann"), "thief") == ["error"]
    assert h.join("a2", "ann", "Ann", token=first["token"])["token"] == first["token"]


def test_seed_compatible_mode_issues_no_tokens(engine: RoomEngine) -> None:
    h = Harness(engine, seed_compatible=True, grace=0)
    first = h.join("a", "ann", "Ann")
    assert "token" not in first
    h.room.close("a")
    assert "token" not in h.join("b", "ann", "Ann")


def test_seed_compatible_mode_trusts_ids_and_sends_full_history(engine: RoomEngine) -> None:
    h = Harness(engine, seed_compatible=True)
    h.join("victim", "ann", "Ann")
    h.room.receive("victim", say("one"))
    hijack = h.join("thief", "ann", "Mallory")  # no token: accepted, as in the original
    assert hijack["username"] == "Ann"
    assert "token" not in hijack  # and it learns no secret of the owner's
    outcome = h.room.receive("thief", say("two"))
    (written,) = to(outcome, "victim")
    assert [m["message"] for m in written["messagesList"]] == ["one", "two"]


def test_default_mode_sends_only_the_new_entry(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    (written,) = to(h.room.receive("s", say("one")), "s")
    assert "messagesList" not in written


# --------------------------------------------------------------------------- history


def test_message_ids_grow_and_timestamps_use_the_clock(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    first = to(h.room.receive("s", say("a")), "s")[0]["message"]
    h.clock.advance(1.5)
    second = to(h.room.receive("s", say("b")), "s")[0]["message"]
    assert (first["messageId"], second["messageId"]) == (1, 2)
    assert first["ts"] == "2026-01-01T00:00:00.000Z"
    assert second["ts"] == "2026-01-01T00:00:01.500Z"


def test_history_is_capped_and_oldest_first(engine: RoomEngine) -> None:
    h = Harness(engine, history=3)
    h.join("s", "ann", "Ann")
    for n in range(5):
        h.room.receive("s", say(f"m{n}"))
    newcomer = h.join("t", "bob", "Bob")
    assert [m["message"] for m in newcomer["messagesList"]] == ["m2", "m3", "m4"]


def test_last_message_id_recovers_only_what_was_missed(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    for n in range(4):
        h.room.receive("s", say(f"m{n}"))
    room_id = h.room.room_id
    back = h.join("t", "bob", "Bob", lastMessageId=2, roomId=room_id)
    assert [m["messageId"] for m in back["messagesList"]] == [3, 4]


def test_last_message_id_of_another_room_gets_the_full_history(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    h.room.receive("s", say("only"))
    back = h.join("t", "bob", "Bob", lastMessageId=57, roomId="an-older-room")
    assert [m["message"] for m in back["messagesList"]] == ["only"]


def test_recovery_without_a_store_is_capped_and_marked_truncated(engine: RoomEngine) -> None:
    engine.memory_only(KEEPS_THE_LOG)
    h = Harness(engine, history=2)
    h.join("s", "ann", "Ann")
    for n in range(5):
        h.room.receive("s", say(f"m{n}"))
    back = h.join("t", "bob", "Bob", lastMessageId=0)
    assert [m["messageId"] for m in back["messagesList"]] == [4, 5]
    assert back["truncated"] is True


@pytest.mark.parametrize(("last", "truncated"), [(3, False), (2, True), (4, False)])
def test_truncated_only_when_a_missed_message_is_gone(
    engine: RoomEngine, last: int, truncated: bool
) -> None:
    engine.memory_only(KEEPS_THE_LOG)
    h = Harness(engine, history=2)
    h.join("s", "ann", "Ann")
    for n in range(5):
        h.room.receive("s", say(f"m{n}"))  # ids 1-5; 4 and 5 are kept
    back = h.join("t", "bob", "Bob", lastMessageId=last, roomId=h.room.room_id)
    assert back.get("truncated", False) is truncated


def test_a_first_visit_is_never_truncated(engine: RoomEngine) -> None:
    h = Harness(engine, history=2)
    h.join("s", "ann", "Ann")
    for n in range(5):
        h.room.receive("s", say(f"m{n}"))
    assert "truncated" not in h.join("t", "bob", "Bob")


class ListStore:
    """A store in a list: what the room needs of :class:`~wslab.room.HistoryStore`."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.tokens: dict[str, str] = {}

    def room_id(self) -> str:
        return "stored-room"

    def tag_key(self) -> str:
        return "stored-key"

    def load_messages(self, limit: int) -> list[Any]:
        return self.messages[-limit:]

    def load_messages_after(self, message_id: int, limit: int) -> list[Any]:
        return [m for m in self.messages if m["messageId"] > message_id][:limit]

    def last_message_id(self) -> int:
        return self.messages[-1]["messageId"] if self.messages else 0

    def load_token(self, user_id: str) -> str | None:
        return self.tokens.get(user_id)

    def save_message(self, entry: Any) -> None:
        self.messages.append(entry)

    def save_token(self, user_id: str, token: str) -> None:
        self.tokens[user_id] = token


def test_with_a_store_every_missed_message_comes_back_in_order(engine: RoomEngine) -> None:
    store = ListStore()
    h = Harness(engine, history=3, store=store, rate_limit=0)
    h.join("s", "ann", "Ann")
    for n in range(1200):
        h.room.receive("s", say(f"m{n}"))
    h.room.open("t")
    outcome = h.room.receive("t", hello("bob", "Bob", lastMessageId=5, roomId="stored-room"))
    events = to(outcome, "t")
    assert events[0]["event"] == "connected" and "truncated" not in events[0]
    assert [m["messageId"] for m in events[0]["messagesList"]] == [6, 7, 8]  # the first page
    rest = [e["message"]["messageId"] for e in events[1:] if e["event"] == "messageWritten"]
    assert rest == list(range(9, 1201))  # then the others, each once, in order


def test_with_a_store_bindings_survive_a_restart(engine: RoomEngine) -> None:
    store = ListStore()
    h = Harness(engine, grace=0, store=store, max_bindings=1)
    first = h.join("a", "ann", "Ann")
    h.room.close("a")
    restarted = Harness(engine, grace=0, store=store, max_bindings=1)
    for n in range(3):
        restarted.join(f"s{n}", f"u{n}", "U")
    assert names(claim(restarted, "thief", "ann"), "thief") == ["error"]
    assert restarted.join("a2", "ann", "Ann", token=first["token"])["token"] == first["token"]


# --------------------------------------------------------------------------- de-duplication


def test_a_resent_client_message_id_is_acknowledged_to_the_sender_only(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    h.join("b", "bob", "Bob")
    first = h.room.receive("s", say("once", "c-1"))
    again = h.room.receive("s", say("once", "c-1"))
    assert [s.to for s in again.sends] == [("s",)]
    assert to(again, "s")[0]["message"] == to(first, "s")[0]["message"]
    assert [m["message"] for m in h.room.history] == ["once"]


def test_dedupe_works_across_a_reconnect(engine: RoomEngine) -> None:
    h = Harness(engine, grace=1.0)
    first = h.join("s", "ann", "Ann")
    h.room.receive("s", say("typed", "c-9"))
    h.room.close("s")
    h.join("s2", "ann", "Ann", token=first["token"])
    h.room.receive("s2", say("typed", "c-9"))
    assert len(h.room.history) == 1


def test_a_reused_client_message_id_with_another_text_is_an_error(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    h.room.receive("s", say("first", "c-1"))
    outcome = h.room.receive("s", say("second", "c-1"))
    assert [e.get("code") for e in to(outcome, "s")] == ["duplicate_id"]
    assert [m["message"] for m in h.room.history] == ["first"]


def test_dedupe_keeps_the_newest_ids_per_user_and_answers_from_them(engine: RoomEngine) -> None:
    h = Harness(engine, history=2, dedupe_per_id=3, rate_limit=0)
    h.join("s", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.receive("s", say("m0", "c-0"))
    for n in range(50):
        h.room.receive("b", say(f"bob {n}", f"b-{n}"))  # another user cannot evict ann's
    for n in range(1, 3):
        h.room.receive("s", say(f"m{n}", f"c-{n}"))
    again = h.room.receive("s", say("m0", "c-0"))  # gone from the history, still known
    (ack,) = to(again, "s")
    assert ack["message"]["messageId"] == 1 and ack["message"]["message"] == "m0"
    assert [m["message"] for m in h.room.history] == ["m1", "m2"]
    h.room.receive("s", say("m3", "c-3"))  # the fourth id pushes out c-0
    (again,) = to(h.room.receive("s", say("m0", "c-0")), "s")
    assert again["message"]["messageId"] == 55  # forgotten: a new message
    assert h.room.receive("s", say("m3", "c-3")).sends[0].to == ("s",)  # c-3 is still known


def test_the_same_client_message_id_from_two_users_is_two_messages(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("a", "ann", "Ann")
    h.join("b", "bob", "Bob")
    h.room.receive("a", say("x", "c-1"))
    h.room.receive("b", say("y", "c-1"))
    assert [m["message"] for m in h.room.history] == ["x", "y"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("nope", "bad_json"),
        (b"\x00\x01", "bad_json"),
        ('{"event":"ping"}', "unknown_event"),
        ('{"event":"connecting","id":"a"}', "invalid_field"),
    ],
)
def test_errors_answer_the_socket_and_keep_it_open(
    engine: RoomEngine, frame: str | bytes, code: str
) -> None:
    h = Harness(engine)
    h.room.open("s")
    outcome = h.room.receive("s", frame)
    assert to(outcome, "s") == [
        {"event": "error", "code": code, "detail": to(outcome, "s")[0]["detail"]}
    ]
    assert outcome.close is None


def test_write_before_connecting_is_not_connected(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.room.open("s")
    assert to(h.room.receive("s", say("hi")), "s")[0]["code"] == "not_connected"


def test_second_connecting_is_already_connected(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.join("s", "ann", "Ann")
    assert to(h.room.receive("s", hello("ann", "Ann")), "s")[0]["code"] == "already_connected"


def test_the_tenth_protocol_error_is_answered_then_closes_with_1008(engine: RoomEngine) -> None:
    h = Harness(engine)
    h.room.open("s")
    for _ in range(9):
        assert h.room.receive("s", "bad").close is None
    tenth = h.room.receive("s", "bad")
    assert names(tenth, "s") == ["error"]
    assert tenth.close is not None and tenth.close.code == CloseCode.POLICY_VIOLATION


def test_rate_limit_drops_messages_and_does_not_count_as_strikes(engine: RoomEngine) -> None:
    h = Harness(engine, rate_limit=20, rate_burst=40)
    h.join("s", "ann", "Ann")
    results = [h.room.receive("s", say(f"m{n}")) for n in range(60)]
    limited = [r for r in results if any(e.get("code") == "rate_limited" for e in to(r, "s"))]
    assert len(h.room.history) == 40  # the burst of 40 (connecting came before the id's)
    assert len(limited) == 1  # one error per run of dropped frames, not one per frame
    assert all(r.close is None for r in results)
    h.clock.advance(1.0)  # 20 tokens come back
    for n in range(20):
        h.room.receive("s", say(f"later{n}"))
    assert len(h.room.history) == 60


def test_the_rate_limit_follows_the_id_across_reconnects_and_tabs(engine: RoomEngine) -> None:
    h = Harness(engine, rate_limit=20, rate_burst=40, grace=0)
    first = h.join("s0", "ann", "Ann")
    for round_ in range(10):  # reconnect, spend, reconnect: no fresh bucket
        socket = f"s{round_}"
        if round_:
            h.join(socket, "ann", "Ann", token=first["token"])
        for n in range(20):
            h.room.receive(socket, say(f"{round_}-{n}"))
        h.room.close(socket)
    assert len(h.room.history) == 40
    h.join("tab1", "ann", "Ann", token=first["token"])
    h.join("tab2", "ann", "Ann", token=first["token"])
    h.clock.advance(1.0)
    for n in range(30):
        h.room.receive("tab1" if n % 2 else "tab2", say(f"tab {n}"))
    assert len(h.room.history) == 60  # two tabs share the 20 that came back


def test_rate_limit_zero_turns_it_off(engine: RoomEngine) -> None:
    h = Harness(engine, rate_limit=0)
    h.join("s", "ann", "Ann")
    for n in range(500):
        h.room.receive("s", say(f"m{n}"))
    assert len(h.room.history) == 100


def test_a_failing_message_filter_leaves_the_room_unchanged(engine: RoomEngine) -> None:
    def explode(username: str, text: str) -> str:
        raise RuntimeError("filter bug")

    h = Harness(engine, message_filter=explode)
    h.join("s", "ann", "Ann")
    with pytest.raises(RuntimeError):
        h.room.receive("s", say("boom"))
    assert h.room.history == []


def test_frames_from_unknown_or_closed_sockets_are_ignored(engine: RoomEngine) -> None:
    h = Harness(engine)
    assert h.room.receive("ghost", say("hi")).sends == []
    assert h.room.close("ghost").sends == []

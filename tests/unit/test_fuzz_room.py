"""Stateful fuzzing of the Room: random frames from several sockets, a fake clock.

A hypothesis state machine opens and closes sockets, sends valid and hostile
frames, and moves the clock; after every step it checks the room against a
small model written from the protocol (docs/protocol.md): the room never raises, presence holds one
entry per id, every member's view of presence equals the room's, history is
ordered by messageId, each socket sees messageWritten in messageId order, ten
protocol errors close a socket with 1008, rate_limited is not a strike, sockets
that announced batched presence get at most one ``presence`` event per tick and
see the room's presence once it is flushed, ...

Strings with lone surrogates (``"\\ud800"`` escapes) have dedicated tests at the
end: they must be refused as ``invalid_field``, since they cannot be sent on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from tests.helpers.json_values import deep_values, floats, integers, number_literals, to_json
from wslab.clock import FakeClock
from wslab.protocol import (
    CloseCode,
    Connected,
    Connecting,
    Disconnected,
    ErrorCode,
    ErrorEvent,
    Joined,
    MessageWritten,
    Presence,
    ProtocolError,
    WriteMessage,
    encode,
    parse_client_event,
)
from wslab.room import Outcome, Room
from wslab.testing.rooms import SettledRoom

IDS = ["ann", "bob", "cy"]
TICK = 0.05
NO_SURROGATES = st.characters(exclude_categories=("Cs",))
texts = st.text(NO_SURROGATES, max_size=12)


# Any JSON value (tests/helpers/json_values.py): huge integers and number literals,
# -0.0 and 1e308, NaN and the infinities, values nested too deep to parse.
json_scalars = st.none() | st.booleans() | integers | floats | texts | number_literals | deep_values
junk_frames = (
    st.text(NO_SURROGATES, max_size=30)
    | st.binary(max_size=20)
    | st.recursive(
        json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
        max_leaves=8,
    ).map(to_json)
    | st.builds(
        lambda ev, fields: to_json({"event": ev, **fields}),
        st.sampled_from(["connecting", "writeMessage", "joined", "nope"]),
        st.dictionaries(
            st.sampled_from(
                ["id", "username", "token", "lastMessageId", "message", "clientMessageId"]
            ),
            json_scalars | st.sampled_from(["ann", "  ", "x" * 70, -1, 2**60]),
            max_size=4,
        ),
    )
)


class _Bucket:
    """The protocol's token bucket, modelled independently of room.TokenBucket."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class SocketModel:
    name: str
    bucket: _Bucket | None
    user: str | None = None
    view: set[str] | None = None  # presence as this socket's events tell it
    strikes: int = 0
    limited: bool = False
    last_message_id: int = 0  # of the messageWritten events it got live
    batched: bool = False  # announced the "presence" feature


@dataclass
class UserModel:
    username: str
    token: str | None
    sockets: set[str] = field(default_factory=set)
    deadline: float | None = None


class RoomMachine(RuleBasedStateMachine):
    """The room against a model of the protocol. See the module docstring."""

    sockets = Bundle("sockets")

    @initialize(
        grace=st.sampled_from([0.0, 0.5, 1.0]),
        rate_limit=st.sampled_from([0.0, 4.0]),
        seed=st.booleans(),
        cap=st.sampled_from([1, 3, 100]),
    )
    def setup(self, grace: float, rate_limit: float, seed: bool, cap: int) -> None:
        self.clock = FakeClock()
        seed, cap = self.engine_options(seed, cap)
        self.room = self.make_room(
            grace=grace,
            history=cap,
            rate_limit=rate_limit,
            rate_burst=6,
            seed_compatible=seed,
            clock=self.clock,
            presence_tick=TICK,
        )
        self.last_flush: float | None = None
        self.grace, self.seed, self.cap = grace, seed, cap
        self.open_sockets: dict[str, SocketModel] = {}
        self.users: dict[str, UserModel] = {}  # present ids
        self.tokens: dict[str, str] = {}  # every id's token so far
        self.id_buckets: dict[str, _Bucket] = {}  # the rate limit of each id, once it joined
        self.history: list[dict[str, Any]] = []
        self.accepted: dict[tuple[str, str], dict[str, Any]] = {}
        self.counter = 0

    # ------------------------------------------------------------------ the engine

    def engine_options(self, seed: bool, cap: int) -> tuple[bool, int]:
        """The drawn seed mode and history cap, as this engine can have them."""
        return seed, cap

    def make_room(self, **options: Any) -> SettledRoom:
        counter = iter(range(10**9))
        return SettledRoom(Room(token_factory=lambda: f"tok{next(counter)}", **options))

    # ------------------------------------------------------------------ helpers

    def members(self) -> set[str]:
        return {s for s, m in self.open_sockets.items() if m.user is not None}

    def plain(self) -> set[str]:
        return {s for s in self.members() if not self.open_sockets[s].batched}

    def apply(self, outcome: Outcome, origin: str | None) -> None:
        """Check every delivery against the model, then update the sockets' views."""
        assert isinstance(outcome, Outcome)
        for send in outcome.sends:
            encode(send.event)  # every event serializes
            recipients = set(send.to)
            assert len(recipients) == len(send.to), "a socket listed twice"
            assert recipients <= set(self.open_sockets), "an event for a closed socket"
            event = send.event
            if isinstance(event, (Connected, ErrorEvent)):
                assert recipients == {origin}, event
            if isinstance(event, ErrorEvent):
                continue
            if isinstance(event, Connected):
                continue  # handled by the connecting rule, which knows what it sent
            assert recipients <= self.members(), f"{event} for a socket before connecting"
            if isinstance(event, (Joined, Disconnected)):
                assert recipients <= self.plain(), f"{event} for a batched socket"
            if isinstance(event, Presence):
                assert recipients == self.members() - self.plain(), "presence to the wrong sockets"
                now = self.clock.monotonic()
                # Early only to announce the author of a message in the same outcome.
                early = any(isinstance(s.event, MessageWritten) for s in outcome.sends)
                last = self.last_flush
                # The room's deadline is (time armed) + TICK in floats: now - last can
                # fall short of TICK by a rounding error and still be a full tick.
                assert early or last is None or now - last >= TICK - 1e-9, "two per tick"
                self.last_flush = now
            for name in send.to:
                model = self.open_sockets[name]
                assert model.view is not None
                if isinstance(event, Joined):
                    assert event.id not in model.view, f"joined for a present id {event.id}"
                    model.view.add(event.id)
                elif isinstance(event, Disconnected):
                    assert event.id in model.view, f"disconnected for an absent id {event.id}"
                    model.view.discard(event.id)
                elif isinstance(event, Presence):
                    model.view -= {u["id"] for u in event.left}
                    model.view |= {u["id"] for u in event.joined}
                elif isinstance(event, MessageWritten):
                    mid = event.message["messageId"]
                    if recipients == {origin} and mid <= model.last_message_id:
                        continue  # a de-duplicated resend, answered to its sender only
                    assert mid > model.last_message_id, "messageWritten out of order"
                    model.last_message_id = mid

    def closed(self, name: str) -> None:
        """The socket closed: tell the room, as the server's handler does."""
        model = self.open_sockets.pop(name)
        outcome = self.room.close(name)
        if model.user is not None:
            user = self.users[model.user]
            user.sockets.discard(name)
            if not user.sockets:
                if self.grace == 0:
                    del self.users[model.user]
                    self.expect_departures(outcome, [model.user])
                else:
                    user.deadline = self.clock.monotonic() + self.grace
        self.apply(outcome, None)
        if model.user is None or self.grace > 0:
            assert outcome.sends == [] and outcome.close is None

    def expect_departures(self, outcome: Outcome, ids: list[str]) -> None:
        sent = [s.event.id for s in outcome.sends if isinstance(s.event, Disconnected)]
        assert sorted(sent) == sorted(ids) if self.plain() else sent == []
        for send in outcome.sends:
            if isinstance(send.event, Disconnected):
                assert set(send.to) == self.plain()

    def receive(self, name: str, data: str | bytes) -> Outcome:
        model = self.open_sockets[name]
        outcome = self.room.receive(name, data)  # must never raise
        bucket = model.bucket if model.user is None else self.id_bucket(model.user)
        if bucket is not None and not bucket.take(self.clock.monotonic()):
            if model.limited:
                assert outcome.sends == [] and outcome.close is None
            else:
                assert [type(s.event) for s in outcome.sends] == [ErrorEvent]
                assert outcome.sends[0].event.code is ErrorCode.RATE_LIMITED
                assert outcome.close is None, "rate_limited must not close the socket"
            model.limited = True
            self.apply(outcome, name)
            return Outcome()  # nothing else to check: the frame was dropped
        model.limited = False
        return outcome

    def id_bucket(self, user_id: str) -> _Bucket | None:
        """An id's bucket follows it across sockets: reconnecting does not refill it."""
        rate = self.room.rate_limit
        if not rate:
            return None
        if user_id not in self.id_buckets:
            self.id_buckets[user_id] = _Bucket(rate, 6, self.clock.monotonic())
        return self.id_buckets[user_id]

    def check_error(self, name: str, outcome: Outcome, code: ErrorCode) -> None:
        model = self.open_sockets[name]
        errors = [s.event for s in outcome.sends if isinstance(s.event, ErrorEvent)]
        assert [e.code for e in errors] == [code], (code, outcome)
        assert len(outcome.sends) == 1
        self.apply(outcome, name)
        if code is ErrorCode.ID_TAKEN:
            assert outcome.close is not None
            assert outcome.close.code is CloseCode.POLICY_VIOLATION
        else:
            assert code.is_strike
            model.strikes += 1
            if model.strikes >= 10:
                assert outcome.close is not None and outcome.close.socket == name
                assert outcome.close.code is CloseCode.POLICY_VIOLATION
            else:
                assert outcome.close is None
        if outcome.close is not None:
            self.closed(name)

    # ------------------------------------------------------------------ rules

    @rule(target=sockets)
    def open_socket(self) -> str:
        self.counter += 1
        name = f"s{self.counter}"
        outcome = self.room.open(name)  # the server decides whether it is full
        assert outcome.sends == [] and outcome.close is None
        rate = self.room.rate_limit
        bucket = _Bucket(rate, 6, self.clock.monotonic()) if rate else None
        self.open_sockets[name] = SocketModel(name, bucket)
        return name

    @rule(name=consumes(sockets))
    def close_socket(self, name: str) -> None:
        if name in self.open_sockets:
            self.closed(name)
        else:
            assert self.room.close(name).sends == []

    @rule(
        name=sockets,
        user_id=st.sampled_from(IDS),
        username=st.sampled_from(["Ann", " Bob ", "Cy"]),
        token=st.sampled_from(["none", "right", "wrong"]),
        last=st.none() | st.integers(0, 8),
        room=st.sampled_from(["none", "right", "other"]),
        features=st.sampled_from([None, ["presence"], ["presence", "unknown"], ["unknown"]]),
    )
    def connecting(
        self,
        name: str,
        user_id: str,
        username: str,
        token: str,
        last: int | None,
        room: str,
        features: list[str] | None = None,
    ) -> None:
        if name not in self.open_sockets:
            return
        fields: dict[str, Any] = {}
        if token == "right" and user_id in self.tokens:
            fields["token"] = self.tokens[user_id]
        elif token == "wrong":
            fields["token"] = "forged"
        if last is not None:
            fields["lastMessageId"] = last
        if room != "none":
            fields["roomId"] = self.room.room_id if room == "right" else "another-room"
        if features is not None:
            fields["features"] = features
        data = json.dumps({"event": "connecting", "id": user_id, "username": username, **fields})
        outcome = self.receive(name, data)
        if not outcome.sends:
            return  # rate limited
        model = self.open_sockets[name]
        if model.user is not None:
            return self.check_error(name, outcome, ErrorCode.ALREADY_CONNECTED)
        user = self.users.get(user_id)
        offered = fields.get("token")
        known = self.tokens.get(user_id)
        if known is not None and not self.seed and offered != known:
            # Once bound, only the token claims the id: online, in grace or gone.
            return self.check_error(name, outcome, ErrorCode.ID_TAKEN)
        others = self.plain()
        connected = outcome.sends[0].event
        assert isinstance(connected, Connected), outcome
        reload = False
        if self.seed:
            assert connected.token is None, "seed-compatible mode issues no tokens"
        if user is None:
            if known is not None and not self.seed:
                assert connected.token == known, "a returning owner must keep its token"
            elif not self.seed:
                assert connected.token is not None
                self.tokens[user_id] = connected.token
            user = UserModel(username.strip(), connected.token)
            self.users[user_id] = user
            is_new = True
        else:
            reload = not user.sockets
            is_new = False
            user.deadline = None
            assert connected.token == user.token
        user.sockets.add(name)
        assert connected.id == user_id and connected.username == user.username
        assert connected.was_page_reload is reload
        listed = [u["id"] for u in connected.connected_user_list]
        assert sorted(listed) == sorted(self.users), "connectedUserList is not the present ids"
        assert len(set(listed)) == len(listed)
        kept = self.history[-self.cap :]
        if last is None or fields.get("roomId", self.room.room_id) != self.room.room_id:
            assert connected.messages_list == kept
            assert connected.truncated is False
        else:
            assert connected.messages_list == [e for e in kept if e["messageId"] > last]
            gone = bool(kept) and kept[0]["messageId"] > last + 1
            assert connected.truncated is gone, "a gap must be marked, and only a gap"
        model.user, model.view = user_id, set(listed)
        model.batched = features is not None and "presence" in features
        model.last_message_id = max((e["messageId"] for e in connected.messages_list), default=0)
        joined = [s for s in outcome.sends[1:] if isinstance(s.event, Joined)]
        if is_new and others:
            assert len(joined) == 1 and set(joined[0].to) == others
        else:
            assert joined == []
        assert len(outcome.sends) == 1 + len(joined) and outcome.close is None
        self.apply(Outcome(outcome.sends[1:]), name)

    @rule(
        name=sockets,
        text=st.sampled_from(["hi", "  spaced  ", "x" * 2000]) | texts,
        cmid=st.none() | st.sampled_from(["c1", "c2", "c3"]),
    )
    def write(self, name: str, text: str, cmid: str | None) -> None:
        if name not in self.open_sockets:
            return
        fields = {"clientMessageId": cmid} if cmid else {}
        data = json.dumps(
            {"event": "writeMessage", "message": text, "username": "forged", **fields}
        )
        outcome = self.receive(name, data)
        if not outcome.sends:
            return
        if not text.strip():
            return self.check_error(name, outcome, ErrorCode.INVALID_FIELD)
        self.check_write(name, text, cmid, outcome)

    def check_write(self, name: str, text: str, cmid: str | None, outcome: Outcome) -> None:
        """Check the room's answer to a valid ``writeMessage``, and follow it in the model."""
        model = self.open_sockets[name]
        if model.user is None:
            return self.check_error(name, outcome, ErrorCode.NOT_CONNECTED)
        earlier = self.accepted.get((model.user, cmid)) if cmid else None
        if earlier is not None and earlier["message"] != text:
            return self.check_error(name, outcome, ErrorCode.DUPLICATE_ID)
        assert outcome.close is None
        if outcome.sends and isinstance(outcome.sends[0].event, Presence):
            # The author's join was still pending: it goes out first.
            self.apply(Outcome(outcome.sends[:1]), name)
            outcome = Outcome(outcome.sends[1:])
        for other in self.open_sockets.values():
            if other.view is not None:
                assert model.user in other.view, "a message before its author's join"
        assert len(outcome.sends) == 1
        (send,) = outcome.sends
        assert isinstance(send.event, MessageWritten)
        assert (send.event.messages_list is not None) is self.seed
        if earlier is not None:
            assert send.to == (name,) and send.event.message == earlier
        else:
            entry = dict(send.event.message)
            previous = self.history[-1]["messageId"] if self.history else 0
            assert entry["messageId"] == previous + 1
            assert entry["id"] == model.user and entry["message"] == text
            assert entry["username"] == self.users[model.user].username  # never the forged one
            assert entry.get("clientMessageId") == cmid
            assert set(send.to) == self.members()
            self.history.append(entry)
            if cmid:
                self.accepted[(model.user, cmid)] = entry
        if self.seed:
            assert send.event.messages_list == self.history[-self.cap :]
        self.apply(outcome, name)

    @rule(name=sockets, data=junk_frames)
    def junk(self, name: str, data: str | bytes) -> None:
        if name not in self.open_sockets:
            return
        try:
            parsed = parse_client_event(data)
        except ProtocolError as error:
            expected: ErrorCode | None = error.code
        else:
            expected = None
            if isinstance(parsed, Connecting):
                return  # a valid connecting: the connecting rule models those
        outcome = self.receive(name, data)
        if not outcome.sends:
            return
        if expected is None:  # a valid writeMessage built by chance
            assert isinstance(parsed, WriteMessage)
            return self.check_write(name, parsed.message, parsed.client_message_id, outcome)
        self.check_error(name, outcome, expected)

    @rule(name=sockets, user_id=st.sampled_from(IDS), back=st.integers(0, 3))
    def recover(self, name: str, user_id: str, back: int) -> None:
        """A reconnect as the owner, asking only for what came after lastMessageId."""
        last = max(0, (self.history[-1]["messageId"] if self.history else 0) - back)
        self.connecting(name, user_id, "Ann", "right", last, "right")

    @rule(name=sockets, pick=st.integers(0, 100))
    def resend(self, name: str, pick: int) -> None:
        """A resend of an accepted clientMessageId (after a lost acknowledgement)."""
        model = self.open_sockets.get(name)
        mine = [k for k in self.accepted if model is not None and k[0] == model.user]
        if mine:
            user_id, cmid = mine[pick % len(mine)]
            self.write(name, self.accepted[(user_id, cmid)]["message"], cmid)

    @rule(
        name=sockets,
        count=st.integers(1, 12),
        frame=st.sampled_from(["{", "[]", '{"event":"nope"}', '{"event":"writeMessage"}', b"\x00"]),
    )
    def strike_burst(self, name: str, count: int, frame: str | bytes) -> None:
        """Several protocol errors in a row: the tenth closes the socket with 1008."""
        for _ in range(count):
            if name not in self.open_sockets:
                return
            self.junk(name, frame)

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0, 2.5]))
    def advance_and_expire(self, seconds: float) -> None:
        self.clock.advance(seconds)
        now = self.clock.monotonic()
        due = [i for i, u in self.users.items() if u.deadline is not None and u.deadline <= now]
        outcome = self.room.expire()
        for user_id in due:
            del self.users[user_id]
        self.expect_departures(outcome, due)
        self.apply(outcome, None)

    @rule()
    def expire_early(self) -> None:
        """expire() before any deadline changes nothing."""
        now = self.clock.monotonic()
        if any(u.deadline is not None and u.deadline <= now for u in self.users.values()):
            return
        due = self.room.presence_due
        if due is not None and due <= now:
            return
        outcome = self.room.expire()
        assert outcome.sends == [] and outcome.close is None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def presence_is_one_entry_per_present_id(self) -> None:
        ids = [u["id"] for u in self.room.users]
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(self.users)
        for user_id, user in self.users.items():
            assert sorted(self.room.sockets_of(user_id)) == sorted(user.sockets)
            assert bool(user.sockets) != (user.deadline is not None) or self.grace == 0

    @invariant()
    def every_member_sees_the_rooms_presence(self) -> None:
        present = {u["id"] for u in self.room.users}
        flushed = self.room.presence_due is None  # batched views lag until the flush
        for model in self.open_sockets.values():
            if model.view is not None and (flushed or not model.batched):
                assert model.view == present, (model.name, model.view, present)

    @invariant()
    def history_is_ordered_and_capped(self) -> None:
        history = self.room.history
        assert history == self.history[-self.cap :]
        ids = [e["messageId"] for e in history]
        assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
        assert len(history) <= self.cap

    @invariant()
    def sockets_are_counted(self) -> None:
        assert self.room.socket_count == len(self.open_sockets)
        for name, model in self.open_sockets.items():
            assert self.room.user_of(name) == model.user


RoomMachine.TestCase.settings = settings(
    database=None,
    deadline=None,
    max_examples=40,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_room_keeps_its_invariants_under_random_frames = RoomMachine.TestCase


# --------------------------------------------------------------------------- lone surrogates


@pytest.mark.parametrize(
    "fields",
    [
        {"event": "writeMessage", "message": "\ud800"},
        {"event": "writeMessage", "message": "ok", "clientMessageId": "\udfff"},
        {"event": "connecting", "id": "ann", "username": "\ud83d"},
        {"event": "connecting", "id": "ann", "username": "Ann", "token": "\ud800"},
    ],
    ids=["message", "clientMessageId", "username", "token"],
)
def test_lone_surrogates_are_invalid_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(json.dumps(fields))  # ensure_ascii: the frame is valid UTF-8
    assert caught.value.code is ErrorCode.INVALID_FIELD


def test_room_never_raises_on_a_token_with_a_lone_surrogate() -> None:
    room = Room(clock=FakeClock())
    room.open("owner")
    room.receive("owner", json.dumps({"event": "connecting", "id": "ann", "username": "Ann"}))
    room.open("thief")
    frame = json.dumps({"event": "connecting", "id": "ann", "username": "X", "token": "\ud800"})
    outcome = room.receive("thief", frame)
    # Fields are checked before state (docs/protocol.md), so this is invalid_field, not id_taken.
    (send,) = outcome.sends
    assert send.to == ("thief",)
    assert isinstance(send.event, ErrorEvent) and send.event.code is ErrorCode.INVALID_FIELD
    assert [(u["id"], u["username"]) for u in room.users] == [("ann", "Ann")]


def test_every_event_the_room_emits_can_be_sent() -> None:
    room = Room(clock=FakeClock())
    room.open("a")
    room.receive("a", json.dumps({"event": "connecting", "id": "ann", "username": "Ann"}))
    outcome = room.receive("a", json.dumps({"event": "writeMessage", "message": "x\ud800"}))
    room.open("b")
    outcome.extend(
        room.receive("b", json.dumps({"event": "connecting", "id": "bob", "username": "B"}))
    )
    for send in outcome.sends:
        encode(send.event).encode("utf-8")  # what the server's broadcast() does

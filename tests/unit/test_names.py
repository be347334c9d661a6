"""Names and tags on the server: what is bound, what is refused, what tells users apart.

The server leaves out of a name every character that shows as nothing
(``display.NAME_INVISIBLES``, the bidi controls, control and format characters),
refuses a name made of nothing else, and gives every user a tag derived from the
id with the chat's secret (``display.user_tag``), which every entry it sends
carries. Pure: rooms on the memory engine with a fake clock, no sockets.
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RoomEngine, hello, say
from wslab.clock import FakeClock
from wslab.display import (
    BIDI_CONTROLS,
    NAME_INVISIBLES,
    TAG_LENGTH,
    blank_name,
    new_tag_key,
    user_tag,
)
from wslab.engine import MemoryEngine
from wslab.protocol import (
    Connecting,
    Disconnected,
    ErrorCode,
    Joined,
    ProtocolError,
    encode,
    normalize_username,
    parse_client_event,
    parse_server_event,
)
from wslab.room import Outcome, Room

FUZZ = settings(
    database=None,  # never write .hypothesis/ into the repository
    deadline=None,  # the machine is shared with other test runs
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Every character a name may not show: the listed ranges and the bidi controls.
INVISIBLE = st.one_of(
    *(st.integers(first, last).map(chr) for first, last in NAME_INVISIBLES),
    st.sampled_from(sorted(BIDI_CONTROLS)),
)
BLANK = st.one_of(INVISIBLE, st.sampled_from(" \t\u00a0\u3000"))
#: Names of letters, digits and spaces inside, as people type them.
VISIBLE = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "éßжλ日本"), min_size=1, max_size=20
)


def refusal(username: str) -> ProtocolError:
    frame = json.dumps({"event": "connecting", "id": "u-1", "username": username})
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(frame)
    return caught.value


def bound_name(username: str) -> str:
    event = parse_client_event(
        json.dumps({"event": "connecting", "id": "u-1", "username": username})
    )
    assert isinstance(event, Connecting)
    return event.username


# --------------------------------------------------------------------------- the name rule


@pytest.mark.parametrize(
    "name", ["\u3164", "\ufe0f", "\u115f\u1160", " \u200d\u2800 ", "\U000e0100"]
)
def test_a_name_that_shows_as_nothing_is_refused_saying_why(name: str) -> None:
    error = refusal(name)
    assert error.code is ErrorCode.INVALID_FIELD
    assert error.detail.startswith("username: shows as nothing")


@FUZZ
@given(st.text(BLANK, min_size=1, max_size=40))
def test_any_name_of_invisible_and_blank_characters_only_is_refused(name: str) -> None:
    assert blank_name(name)
    assert refusal(name).code is ErrorCode.INVALID_FIELD


@FUZZ
@given(VISIBLE, st.lists(st.tuples(st.integers(0, 20), INVISIBLE), max_size=6))
def test_invisible_characters_anywhere_in_a_name_are_left_out(
    name: str, inserts: list[tuple[int, str]]
) -> None:
    """The name is bound as if they were never typed: "admin" + U+FE0F is "admin"."""
    typed = name
    for at, char in inserts:
        typed = typed[:at] + char + typed[at:]
    if len(normalize_username(name)) > 32 or not name.strip():
        return
    assert bound_name(typed) == normalize_username(name)


@FUZZ
@given(st.text(max_size=60))
def test_a_bound_name_never_holds_an_invisible_character(name: str) -> None:
    bound = normalize_username(name)
    assert not bound or not blank_name(bound)
    assert not any(blank_name(char) and not char.isspace() for char in bound)


def test_the_look_alikes_of_the_attack_are_bound_as_the_plain_name() -> None:
    assert bound_name("admin\ufe0f") == "admin"
    assert bound_name("ad\u200bmin\U000e0100") == "admin"
    assert bound_name("\u3164admin\u3164") == "admin"


# --------------------------------------------------------------------------- tags


def test_a_tag_is_six_base32_characters_the_same_for_the_same_key_and_id() -> None:
    key = new_tag_key()
    tag = user_tag(key, "x-1234")
    assert len(tag) == TAG_LENGTH and set(tag) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert user_tag(key, "x-1234") == tag
    assert user_tag(new_tag_key(), "x-1234") != tag  # another chat: another tag


def test_ids_that_share_their_end_get_unrelated_tags() -> None:
    key = new_tag_key()
    tags = {user_tag(key, f"{prefix}-1234") for prefix in ("a", "b", "x", "alice", "u-00")}
    assert len(tags) == 5


def sent(outcome: Outcome, socket: str) -> list[dict[str, Any]]:
    return [json.loads(encode(s.event)) for s in outcome.sends if socket in s.to]


def join(room: Any, socket: str, user_id: str, name: str, **fields: Any) -> list[dict[str, Any]]:
    room.open(socket)
    return sent(room.receive(socket, hello(user_id, name, **fields)), socket)


def test_the_attack_an_id_ending_like_alices_does_not_get_her_tag() -> None:
    """Mallory picks ``x-1234`` and the name "alice": the views still tell them apart."""
    engine = MemoryEngine()
    room = Room(clock=FakeClock(), engine=engine, grace=0)
    join(room, "alice", "a-1234", "alice")
    (connected,) = join(room, "mallory", "x-1234", "alice")
    alice, mallory = connected["connectedUserList"]
    assert alice["tag"] == user_tag(engine.tag_key, "a-1234")
    assert mallory["tag"] == user_tag(engine.tag_key, "x-1234")
    assert alice["tag"] != mallory["tag"]


def test_every_entry_the_room_sends_carries_the_tag(engine: RoomEngine) -> None:
    """connected's list, joined, messageWritten, disconnected, and the presence diff,
    on both engines: one tag for the user, derived from the chat's secret."""
    room = engine.room(clock=FakeClock(), grace=0, presence_tick=0)
    join(room, "plain", "ann", "Ann")
    join(room, "batched", "cy", "Cy", features=["presence"])
    outcome = Outcome()
    room.open("bob")
    outcome.extend(room.receive("bob", hello("bob", "Bob")))
    outcome.extend(room.receive("bob", say("hi")))
    outcome.extend(room.close("bob"))
    outcome.extend(room.flush_presence())
    tag = sent(outcome, "bob")[0]["connectedUserList"][-1]["tag"]
    assert len(tag) == TAG_LENGTH
    events = sent(outcome, "plain")
    assert [(e["event"], e.get("tag")) for e in events] == [
        ("joined", tag),
        ("messageWritten", None),
        ("disconnected", tag),
    ]
    assert events[1]["message"]["tag"] == tag
    diffs = [e for e in sent(outcome, "batched") if e["event"] == "presence"]
    assert [u["tag"] for d in diffs for u in d["joined"] + d["left"]] == [tag, tag]
    if engine.redis is None:
        assert tag == user_tag(room.engine.tag_key, "bob")
    else:  # the secret is in Redis, made by the first server that asked
        assert tag != user_tag("", "bob")


def test_the_client_reads_the_tag_of_joined_and_disconnected() -> None:
    frame = '{"event":"joined","id":"bob","username":"Bob","tag":"abcdef"}'
    assert parse_server_event(frame) == Joined("bob", "Bob", "abcdef")
    frame = '{"event":"disconnected","id":"bob","username":"Bob"}'
    assert parse_server_event(frame) == Disconnected("bob", "Bob", "")
    assert encode(Joined("bob", "Bob")) == '{"event":"joined","id":"bob","username":"Bob"}'

"""Property tests of the pure protocol layer: any input gives an event or a ProtocolError.

``parse_client_event`` is what stands between a hostile socket and the room, so
it is held to an oracle written from the protocol's error table in docs/protocol.md (checks run in
the order JSON shape, event name, fields). ``parse_server_event`` is what
stands between a (possibly broken) server and the Python client.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers.json_values import json_pieces, json_scalars, to_json
from tests.helpers.reliability import expected_kind
from wslab.protocol import (
    CLIENT_EVENTS,
    MAX_MESSAGE_LENGTH,
    MAX_USERNAME_LENGTH,
    Connected,
    Connecting,
    Disconnected,
    ErrorCode,
    ErrorEvent,
    Joined,
    MessageWritten,
    ProtocolError,
    WriteMessage,
    encode,
    normalize_username,
    parse_client_event,
    parse_server_event,
    valid_id,
)

FUZZ = settings(
    database=None,  # never write .hypothesis/ into the repository
    deadline=None,  # the machine is shared with other test runs
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------- strategies

# Any JSON value (tests/helpers/json_values.py): huge integers and number literals,
# -0.0 and 1e308, NaN and the infinities Python's encoder writes, deep nesting.

FIELD_NAMES = [
    "id",
    "username",
    "token",
    "lastMessageId",
    "roomId",
    "message",
    "clientMessageId",
    "event",
    "code",
    "detail",
    "connectedUserList",
    "messagesList",
    "wasPageReload",
]
EVENT_NAMES = [*CLIENT_EVENTS, "connected", "joined", "messageWritten", "error", "", "CONNECTING"]

# Values that are sometimes valid for some field and often not.
field_values = (
    json_pieces
    | st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True)
    | st.text(min_size=0, max_size=MAX_MESSAGE_LENGTH + 2).map(
        lambda s: s[: MAX_MESSAGE_LENGTH + 1]
    )
    | st.sampled_from(["", " ", "  ann  ", "x" * 33, "x" * 64, "x" * 65, "x" * 2001, "ok"])
    | st.sampled_from([0, -1, 2**53 - 1, 2**53, 10**400, 1.0, math.inf, True])
)

event_objects = st.builds(
    lambda event, fields: {"event": event, **fields},
    st.sampled_from(EVENT_NAMES) | st.text(max_size=10) | json_scalars,
    st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=6),
)


special_texts = st.sampled_from(
    [
        "",
        "null",
        "[]",
        "{}",
        '{"event": null}',
        '{"event": 1}',
        '{"event": "connecting"}',
        '{"event": "writeMessage", "message": NaN}',
        '{"event": "connecting", "id": "a", "username": "b", "lastMessageId": Infinity}',
        '{"event": "connecting", "id": "a", "username": "b", "lastMessageId": 1e999}',
        '{"event": "connecting", "id": "a", "username": "b", "lastMessageId": ' + "9" * 5000 + "}",
        "[" * 50_000,
        '{"a":' * 5_000 + "1" + "}" * 5_000,
        "\ud800",
        '{"event": "writeMessage", "message": "\\ud800"}',
        '{"event": "writeMessage", "message": "a", "message": 1}',
    ]
)

any_frame = (
    st.text()
    | st.binary()
    | special_texts
    | json_pieces.map(to_json)
    | event_objects.map(to_json)
    # Valid JSON, then mangled: truncated or with a character inserted.
    | st.tuples(event_objects.map(to_json), st.integers(0, 200), st.characters()).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
)

# --------------------------------------------------------------------------- oracle


def assert_valid_client_event(event: object) -> None:
    if isinstance(event, Connecting):
        assert valid_id(event.id)
        assert isinstance(event.username, str)
        assert event.username == normalize_username(event.username)  # idempotent
        assert 1 <= len(event.username) <= MAX_USERNAME_LENGTH
        assert event.token is None or (
            isinstance(event.token, str) and 1 <= len(event.token) <= 256
        )
        last = event.last_message_id
        assert last is None or (type(last) is int and 0 <= last < 2**53)
        assert event.room_id is None or isinstance(event.room_id, str)
    elif isinstance(event, WriteMessage):
        assert isinstance(event.message, str)
        assert 1 <= len(event.message) <= MAX_MESSAGE_LENGTH and event.message.strip()
        cmid = event.client_message_id
        assert cmid is None or (isinstance(cmid, str) and 1 <= len(cmid) <= 64)
    else:  # pragma: no cover - a failure message
        raise AssertionError(f"not a client event: {event!r}")


# --------------------------------------------------------------------------- client events


@FUZZ
@given(any_frame)
@example(b"\xff\xfe")
@example('{"event":"writeMessage","message":"hi","username":"someone-else"}')
def test_parse_client_event_gives_an_event_or_the_error_the_table_names(data: str | bytes) -> None:
    """Any text or bytes: a valid event, or a ProtocolError whose code follows the check order."""
    kind = expected_kind(data)
    try:
        event = parse_client_event(data)
    except ProtocolError as error:
        assert isinstance(error.code, ErrorCode) and isinstance(error.detail, str)
        if kind in CLIENT_EVENTS:
            assert error.code is ErrorCode.INVALID_FIELD, error
            field = error.detail.split(":")[0]
            assert field in {
                "id",
                "username",
                "token",
                "lastMessageId",
                "roomId",
                "message",
                "clientMessageId",
            }, error.detail
        else:
            assert error.code.value == kind, (kind, error)
        return
    assert kind in CLIENT_EVENTS, f"{data!r} was accepted although it is {kind}"
    assert_valid_client_event(event)
    assert (kind == "connecting") == isinstance(event, Connecting)


# Valid usernames are what the server binds: already normalized (NFC, nothing invisible).
usernames = (
    st.text(min_size=1, max_size=MAX_USERNAME_LENGTH)
    .map(normalize_username)
    .filter(lambda name: 1 <= len(name) <= MAX_USERNAME_LENGTH)
)
valid_client_events = st.builds(
    Connecting,
    id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    username=usernames,
    token=st.none() | st.text(min_size=1, max_size=256),
    last_message_id=st.none() | st.integers(0, 2**53 - 1),
    room_id=st.none() | st.text(max_size=20),
) | st.builds(
    WriteMessage,
    message=st.text(min_size=1, max_size=MAX_MESSAGE_LENGTH).filter(str.strip),
    client_message_id=st.none() | st.text(min_size=1, max_size=64),
)


@settings(FUZZ, max_examples=60)
@given(valid_client_events)
def test_every_valid_client_event_round_trips(event: Connecting | WriteMessage) -> None:
    """What wslab's own client encodes, the server parses back to the same event."""
    assert parse_client_event(encode(event)) == event


# --------------------------------------------------------------------------- server events

server_event_objects = st.builds(
    lambda event, fields: {"event": event, **fields},
    st.sampled_from(["connected", "joined", "disconnected", "messageWritten", "error"]),
    st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=8),
)
ENTRY_FIELDS = ["messageId", "id", "username", "message", "ts", "clientMessageId"]
# Message entries that are right but for a field or two, whose values are any JSON.
message_entries = st.builds(
    lambda fields, changes: {**fields, **changes},
    st.fixed_dictionaries(
        {"messageId": st.integers(0, 2**53 - 1), "id": st.just("u1"), "username": st.just("ann")},
        optional={"message": st.just("hi"), "ts": st.just("2025-01-01T00:00:00Z")},
    ),
    st.dictionaries(st.sampled_from(ENTRY_FIELDS), field_values, max_size=2),
)
server_entry_events = st.builds(
    lambda event, entries: (
        {"event": event, "message": entries[0], "messagesList": entries[1:]}
        if event == "messageWritten"
        else {"event": event, "id": "u1", "username": "ann", "roomId": "r", "messagesList": entries}
    ),
    st.sampled_from(["messageWritten", "connected"]),
    st.lists(message_entries, min_size=1, max_size=3),
)
server_frames = any_frame | server_event_objects.map(to_json) | server_entry_events.map(to_json)

#: A frame that once stopped the Python client: a 400-digit ``messageId``.
HUGE_MESSAGE_ID = (
    '{"event":"messageWritten","message":{"messageId":' + "1" * 400 + ',"id":"u1",'
    '"username":"ann","message":"hi","ts":"2025-01-01T00:00:00Z"}}'
)


@FUZZ
@given(server_frames)
@example(HUGE_MESSAGE_ID)
def test_parse_server_event_raises_only_protocol_error(data: str | bytes) -> None:
    """A broken server cannot make the client's parser raise anything but ProtocolError."""
    try:
        parse_server_event(data)
    except ProtocolError as error:
        assert isinstance(error.code, ErrorCode)


def _is_user_entry(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("username"), str)
    )


def _is_message_entry(value: object) -> bool:
    return (
        isinstance(value, dict)
        and type(value.get("messageId")) is int
        and all(isinstance(value.get(k), str) for k in ("id", "username", "message", "ts"))
    )


def assert_valid_server_event(event: object) -> None:
    """The field types the protocol gives each server event."""
    if isinstance(event, Connected):
        assert isinstance(event.id, str) and isinstance(event.username, str)
        assert event.token is None or isinstance(event.token, str)  # none in seed mode
        assert isinstance(event.room_id, str)
        assert all(_is_user_entry(u) for u in event.connected_user_list), event
        assert all(_is_message_entry(m) for m in event.messages_list), event
    elif isinstance(event, (Joined, Disconnected)):
        assert isinstance(event.id, str) and isinstance(event.username, str), event
    elif isinstance(event, MessageWritten):
        assert _is_message_entry(event.message), event
        history = event.messages_list
        assert history is None or all(_is_message_entry(m) for m in history), event
    else:
        assert isinstance(event, ErrorEvent)


@FUZZ
@given(server_frames)
@example('{"event":"joined","id":1,"username":null}')
@example('{"event":"messageWritten","message":{"messageId":1}}')
def test_parse_server_event_returns_only_well_typed_events(data: str | bytes) -> None:
    """Any input: a ProtocolError, or an event whose fields have the documented types."""
    try:
        event = parse_server_event(data)
    except ProtocolError:
        return
    assert_valid_server_event(event)

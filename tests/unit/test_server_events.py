"""Every server event, every field, every wrong value: a ServerProtocolError, nothing else.

The Python client parses each frame a server sends with ``parse_server_event``. A frame
that breaks the contract must become a :class:`ServerProtocolError` (which the client
logs and survives), never another exception, which would stop the client for good.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from wslab.errors import ServerProtocolError
from wslab.protocol import MAX_MESSAGE_ID, MessageWritten, parse_server_event

ENTRY = {"messageId": 1, "id": "a", "username": "A", "message": "hi", "ts": "t"}
USER = {"id": "a", "username": "A"}
GOOD: dict[str, dict[str, Any]] = {
    "connected": {
        "event": "connected",
        "roomId": "r",
        "id": "a",
        "username": "A",
        "token": "t",
        "connectedUserList": [USER],
        "messagesList": [ENTRY],
        "wasPageReload": False,
    },
    "joined": {"event": "joined", **USER},
    "disconnected": {"event": "disconnected", **USER},
    "presence": {"event": "presence", "joined": [USER], "left": [USER]},
    "messageWritten": {"event": "messageWritten", "message": ENTRY, "messagesList": [ENTRY]},
    "error": {"event": "error", "code": "rate_limited", "detail": "slow down"},
}

HUGE_INT = int("9" * 400)  # json.dumps writes all 400 digits
DEEP = json.loads("[" * 900 + "]" * 900)  # deep, yet within what json.dumps writes
WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    HUGE_INT,
    -HUGE_INT,
    1.5,
    1e308,
    "",
    "x",
    "\ud800",  # a lone surrogate: valid JSON text, not valid Unicode
    [],
    [1, "a", None],
    {},
    {"messageId": HUGE_INT},
    DEEP,
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value: object keys and list indexes, nested."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*path, index))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


CASES = [
    pytest.param(name, path, wrong, id=f"{name}-{'.'.join(map(str, path))}-{index}")
    for name, frame in GOOD.items()
    for path in _paths(frame)
    if path != ("event",)
    for index, wrong in enumerate(WRONG_VALUES)
]


def test_the_good_frames_parse() -> None:
    for frame in GOOD.values():
        parse_server_event(json.dumps(frame))


@pytest.mark.parametrize(("name", "path", "wrong"), CASES)
def test_a_wrong_value_anywhere_is_a_protocol_error_or_ignored(
    name: str, path: tuple[Any, ...], wrong: Any
) -> None:
    text = json.dumps(_replaced(GOOD[name], path, wrong))
    with contextlib.suppress(ServerProtocolError):  # the one failure a client expects
        parse_server_event(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"messageWritten","message":{"messageId":' + "9" * 400 + "}}",
        '{"event":"messageWritten","message":{"messageId":' + "9" * 5000 + "}}",
        '{"event":"messageWritten","message":{"messageId":1e400}}',
        '{"event":"messageWritten","message":{"messageId":-1}}',
        '{"event":"error","code":"rate_limited","detail":1e400}',
        '{"event":"error","code":["rate_limited"]}',
        '{"event":"error","code":{"a":1}}',
        '{"event":"joined","id":' + "[" * 100_000 + "]" * 100_000 + "}",
        "[" * 100_000,
        '{"event":' + "9" * 400 + "}",
    ],
    ids=[
        "400-digits",
        "5000-digits",
        "huge-float",
        "negative",
        "huge-float-detail",
        "list-code",
        "object-code",
        "deep",
        "deep-unclosed",
        "huge-event",
    ],
)
def test_huge_numbers_and_deep_nesting_are_protocol_errors(text: str) -> None:
    with pytest.raises(ServerProtocolError):
        parse_server_event(text)


def test_message_ids_up_to_the_largest_exact_javascript_integer_parse() -> None:
    frame = {"event": "messageWritten", "message": {**ENTRY, "messageId": MAX_MESSAGE_ID}}
    event = parse_server_event(json.dumps(frame))
    assert isinstance(event, MessageWritten)
    assert event.message["messageId"] == MAX_MESSAGE_ID
    frame["message"]["messageId"] = MAX_MESSAGE_ID + 1
    with pytest.raises(ServerProtocolError):
        parse_server_event(json.dumps(frame))

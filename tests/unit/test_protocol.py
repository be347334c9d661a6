"""The pure protocol layer: parsing, validation order, encoding, close codes."""

from __future__ import annotations

import json

import pytest

from wslab.protocol import (
    CloseCode,
    Connected,
    Connecting,
    ErrorCode,
    ErrorEvent,
    MessageWritten,
    ProtocolError,
    WriteMessage,
    describe_close,
    encode,
    normalize_username,
    parse_client_event,
    parse_server_event,
)


def error_code(data: str | bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(data)
    return caught.value.code


def test_connecting_is_parsed_with_optional_fields() -> None:
    event = parse_client_event(
        '{"event":"connecting","id":"a-1","username":"  Ann ","token":"t","lastMessageId":3}'
    )
    assert event == Connecting("a-1", "Ann", "t", last_message_id=3)


def test_write_message_ignores_a_username_field() -> None:
    """The server uses the name bound at connecting; a sent username changes nothing."""
    event = parse_client_event(
        '{"event":"writeMessage","message":"hi","username":"mallory","clientMessageId":"c1"}'
    )
    assert event == WriteMessage("hi", "c1")


@pytest.mark.parametrize(
    "frame",
    ["not json", "[1,2]", '"text"', "{}", '{"event":3}', "NaN", '{"event":"x","n":NaN}', ""],
)
def test_shapes_that_are_not_event_objects_are_bad_json(frame: str) -> None:
    assert error_code(frame) is ErrorCode.BAD_JSON


def test_binary_frames_are_bad_json() -> None:
    assert error_code(b'{"event":"connecting"}') is ErrorCode.BAD_JSON


def test_deep_nesting_is_bad_json_not_a_crash() -> None:
    assert error_code("[" * 100_000 + "]" * 100_000) is ErrorCode.BAD_JSON


def test_unknown_event() -> None:
    assert error_code('{"event":"dance"}') is ErrorCode.UNKNOWN_EVENT


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ('{"event":"connecting","username":"a"}', "id"),
        ('{"event":"connecting","id":"bad id!","username":"a"}', "id"),
        ('{"event":"connecting","id":"' + "x" * 65 + '","username":"a"}', "id"),
        ('{"event":"connecting","id":"a","username":"   "}', "username"),
        ('{"event":"connecting","id":"a","username":"' + "n" * 33 + '"}', "username"),
        ('{"event":"connecting","id":"a","username":5}', "username"),
        ('{"event":"connecting","id":"a","username":"b","lastMessageId":true}', "lastMessageId"),
        ('{"event":"connecting","id":"a","username":"b","lastMessageId":-1}', "lastMessageId"),
        ('{"event":"connecting","id":"a","username":"b","lastMessageId":1e400}', "lastMessageId"),
        ('{"event":"writeMessage"}', "message"),
        ('{"event":"writeMessage","message":""}', "message"),
        ('{"event":"writeMessage","message":"  "}', "message"),
        ('{"event":"writeMessage","message":"' + "m" * 2001 + '"}', "message"),
        ('{"event":"writeMessage","message":"hi","clientMessageId":""}', "clientMessageId"),
    ],
)
def test_invalid_fields_name_the_field(frame: str, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(frame)
    assert caught.value.code is ErrorCode.INVALID_FIELD
    assert caught.value.detail.startswith(field)


def test_checks_run_in_the_documented_order() -> None:
    """Shape before event name before fields."""
    assert error_code('{"event":"dance","id":5}') is ErrorCode.UNKNOWN_EVENT
    assert error_code('{"id":5}') is ErrorCode.BAD_JSON


def test_encode_round_trips_through_the_server_parser() -> None:
    entry = {"messageId": 1, "id": "a", "username": "A", "message": "é<b>", "ts": "t"}
    frame = encode(MessageWritten(entry))  # type: ignore[arg-type]
    assert "é" in frame  # UTF-8 text, not \\u escapes
    assert parse_server_event(frame) == MessageWritten(entry)  # type: ignore[arg-type]
    assert json.loads(encode(ErrorEvent(ErrorCode.BAD_JSON, "x"))) == {
        "event": "error",
        "code": "bad_json",
        "detail": "x",
    }


def test_connected_carries_every_field_of_the_contract() -> None:
    event = Connected("a", "A", "tok", [{"id": "a", "username": "A"}], [], False, room_id="r")
    assert set(json.loads(encode(event))) == {
        "event",
        "id",
        "username",
        "token",
        "connectedUserList",
        "messagesList",
        "wasPageReload",
        "roomId",
    }


def test_close_codes_explain_themselves() -> None:
    codes = [1000, 1001, 1002, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 4003]
    assert [int(c) for c in CloseCode] == codes
    assert all(code.explanation for code in CloseCode)
    assert describe_close(1009).startswith("1009 (message too big")
    assert describe_close(4000) == "4000 (not a code this kit uses)"


def test_only_rate_limits_id_taken_and_muted_are_not_strikes() -> None:
    strikes = {code for code in ErrorCode if code.is_strike}
    assert strikes == set(ErrorCode) - {ErrorCode.RATE_LIMITED, ErrorCode.ID_TAKEN, ErrorCode.MUTED}


# --------------------------------------------------------------------------- names and display


@pytest.mark.parametrize(
    ("sent", "bound"),
    [
        ("  Ann  ", "Ann"),
        ("A\u200bnn", "Ann"),  # zero-width space
        ("\u202eAnn", "Ann"),  # right-to-left override
        ("An\u200dn\ufeff", "Ann"),  # zero-width joiner, BOM
        ("Ann\x00\x07\n", "Ann"),  # controls
        ("Zoe\u0301", "Zo\u00e9"),  # NFC: e + combining acute -> e-acute
    ],
)
def test_usernames_are_normalized(sent: str, bound: str) -> None:
    event = parse_client_event(json.dumps({"event": "connecting", "id": "a", "username": sent}))
    assert isinstance(event, Connecting) and event.username == bound


@pytest.mark.parametrize("sent", ["\u200b\u200b", "\u202e ", "\x00\t", "\u2066\u2069"])
def test_a_username_with_nothing_visible_is_refused(sent: str) -> None:
    frame = json.dumps({"event": "connecting", "id": "a", "username": sent})
    assert error_code(frame) is ErrorCode.INVALID_FIELD
    assert normalize_username(sent) == ""


def test_connected_without_a_token_and_with_truncated_parses() -> None:
    frame = json.dumps(
        {
            "event": "connected",
            "id": "a",
            "username": "A",
            "connectedUserList": [],
            "messagesList": [],
            "wasPageReload": False,
            "truncated": True,
        }
    )
    event = parse_server_event(frame)
    assert isinstance(event, Connected) and event.token is None and event.truncated is True
    assert "token" not in json.loads(encode(event)) and json.loads(encode(event))["truncated"]
    quiet = Connected("a", "A", "t", [], [], False)
    assert "truncated" not in json.loads(encode(quiet))


def test_the_duplicate_id_error_is_a_known_code() -> None:
    frame = json.dumps({"event": "error", "code": "duplicate_id", "detail": "x"})
    assert parse_server_event(frame) == ErrorEvent(ErrorCode.DUPLICATE_ID, "x")

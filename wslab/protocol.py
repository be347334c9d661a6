"""The wslab chat protocol: events, parsing, validation, error codes, close codes.

This module is pure: no asyncio, no sockets, no threads. Text goes in, a typed
event or a typed :class:`ProtocolError` comes out; events go in, JSON text comes
out. The server, the Python client and the lessons all use it.

Every application message is one JSON object with a string field ``event``::

    client -> server   connecting, writeMessage
    server -> client   connected, joined, disconnected, messageWritten, error

Classroom mode (``serve --hub``) adds the teacher's events and ``progress``
(:data:`CLASSROOM_EVENTS`, parsed by :func:`parse_classroom_event`) and their
answers ``muted``, ``unmuted``, ``cleared`` and ``progress``; a plain server
answers those names as unknown events.

Bad input never raises anything but :class:`ProtocolError`, whose ``code`` is
what the server answers in its ``error`` event.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, NotRequired, ParamSpec, TypedDict, TypeVar

from .display import blank_name, without_invisibles
from .errors import ClientProtocolError, ProtocolError, ServerProtocolError

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "CLASSROOM_EVENTS",
    "CLIENT_EVENTS",
    "FEATURE_PRESENCE",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_ID",
    "MAX_MESSAGE_LENGTH",
    "MAX_USERNAME_LENGTH",
    "UNKNOWN_CLOSE_MEANING",
    "Announce",
    "ClassroomEvent",
    "Clear",
    "Cleared",
    "ClientEvent",
    "CloseCode",
    "Connected",
    "Connecting",
    "Disconnected",
    "ErrorCode",
    "ErrorEvent",
    "Joined",
    "Kick",
    "MessageEntry",
    "MessageWritten",
    "Mute",
    "Muted",
    "Presence",
    "Progress",
    "ProgressEntry",
    "ProgressReport",
    "ProtocolError",
    "ServerEvent",
    "Unmute",
    "Unmuted",
    "UserEntry",
    "WriteMessage",
    "close_codes_table",
    "describe_close",
    "encode",
    "normalize_username",
    "parse_classroom_event",
    "parse_client_event",
    "parse_server_event",
    "user_entry",
    "valid_id",
]

MAX_ID_LENGTH = 64
MAX_USERNAME_LENGTH = 32
MAX_MESSAGE_LENGTH = 2000
MAX_CLIENT_MESSAGE_ID_LENGTH = 64
#: The longest hub user name a teacher's event may name (JupyterHub's own limit).
MAX_HUB_NAME_LENGTH = 255
MAX_EXERCISE_LENGTH = 64
#: The largest ``messageId`` a client accepts: the largest integer a JavaScript number
#: holds exactly (2**53 - 1), so the page and the Python client agree on every id.
MAX_MESSAGE_ID = 2**53 - 1
_ID_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


class CloseCode(IntEnum):
    """The WebSocket close codes the kit produces or reads, each with its meaning and causes.

    :attr:`explanation` is one line a person can read; :attr:`causes` lists every
    reason the kit has to close with the code, each with the reason text its close
    frame carries when the kit writes one (docs/protocol.md shows them as a table,
    :func:`close_codes_table`). 1012 is never sent by the kit: clients retry it, like
    any code but 1008, 1009 and 4003.
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    REMOVED = 4003

    @property
    def explanation(self) -> str:
        """One line a person can read: what this code means and who sends it."""
        return _CLOSE_EXPLANATIONS[self]

    @property
    def causes(self) -> tuple[str, ...]:
        """Every cause the kit has for this code (empty: the kit never sends it).

        A cause whose close frame carries a reason the kit writes ends with it:
        ``(reason "join timeout")``, ``N`` standing for a number.
        """
        return _CLOSE_CAUSES[self]


_CLOSE_EXPLANATIONS = {
    CloseCode.NORMAL_CLOSURE: "normal closure: one side called close() and the other agreed",
    CloseCode.GOING_AWAY: "going away: the server is stopping or the page was left",
    CloseCode.PROTOCOL_ERROR: (
        "protocol error: a frame broke the WebSocket protocol (RFC 6455) itself"
    ),
    CloseCode.NO_STATUS_RCVD: (
        "no status received: the close frame carried no code, as after ws.close() "
        "(never sent on the wire)"
    ),
    CloseCode.ABNORMAL_CLOSURE: (
        "abnormal closure: the connection died without a close frame (never sent on the wire)"
    ),
    CloseCode.INVALID_PAYLOAD_DATA: "invalid payload data: a text frame that was not UTF-8",
    CloseCode.POLICY_VIOLATION: (
        "policy violation: the server refused this client (id taken, repeated errors, join timeout)"
    ),
    CloseCode.MESSAGE_TOO_BIG: "message too big: a frame was over the receiver's max_size",
    CloseCode.INTERNAL_ERROR: (
        "internal error: the server's handler failed, or a peer missed its keepalive"
    ),
    CloseCode.SERVICE_RESTART: (
        "service restart: a server restarting may send it; clients retry (wslab never sends it)"
    ),
    CloseCode.TRY_AGAIN_LATER: (
        "try again later: the server is full, the reader too slow, or the chat's Redis is down"
    ),
    CloseCode.REMOVED: (
        "removed by the teacher: a classroom's teacher kicked this user; clients do not retry"
    ),
}

_CLOSE_CAUSES: dict[CloseCode, tuple[str, ...]] = {
    CloseCode.NORMAL_CLOSURE: (
        "a client's `close()` (the Python client, `BlockingChatClient`, the widget's `aclose()`)",
        "the Python client's own join timeout: no `connected` within its `join_timeout`;"
        ' the next attempt goes to the next URL (reason "join timeout")',
        "a handshake the client abandons because its own `close()` came first",
        'a lesson\'s cleanup of the widgets it made (reason "notebook cleanup")',
        'a `BrowserSocket` widget taken off the page (reason "widget closed")',
    ),
    CloseCode.GOING_AWAY: (
        "the server stops: `stop()`, `aclose()`, Ctrl+C or SIGTERM on `python -m wslab serve`"
        ' (reason "server stopping")',
        'a notebook chat widget replaced by a new one (reason "replaced by a new widget")',
        "a browser page that is left or reloaded",
    ),
    CloseCode.PROTOCOL_ERROR: (
        "a frame that breaks RFC 6455 (an unmasked frame from a client, a reserved opcode or"
        " bit, a fragmented or too long control frame): websockets closes it, in the server"
        " and in the Python client, and its reason names the rule, as in incorrect masking",
    ),
    CloseCode.NO_STATUS_RCVD: ("a close frame without a code (`close(None)`, `ws.close()`)",),
    CloseCode.ABNORMAL_CLOSURE: (
        "`server.drop(id)`, a lost network, a killed process",
        "a connection over `max_per_address`, aborted when accepted",
        "a failed handshake (refused with 403, 404, 503, or no server)",
        "a handshake not finished within the server's `open_timeout`, dropped by the server",
        "a peer that never finishes closing, aborted after `close_timeout`",
    ),
    CloseCode.INVALID_PAYLOAD_DATA: ("a text frame that is not UTF-8 (websockets closes it)",),
    CloseCode.POLICY_VIOLATION: (
        'id taken: `connecting` for a bound id without its token (reason "id taken")',
        '`max_strikes` (10) protocol errors on one socket (reason "N protocol errors")',
        'join timeout: no `connecting` within the server\'s `join_timeout` (reason "join timeout")',
        "classroom mode: a socket that reached the chat without a hub user from its"
        " handshake, a safeguard: the handshake refuses such a request first"
        ' (reason "no hub user")',
    ),
    CloseCode.MESSAGE_TOO_BIG: (
        "a frame over the server's `max_size`",
        "a frame over the Python client's `max_size`",
    ),
    CloseCode.INTERNAL_ERROR: (
        "the server's handler raised (a `message_filter`, say), for that socket only"
        ' (reason "internal error")',
        "keepalive: no pong within `ping_timeout` (websockets closes it)",
    ),
    CloseCode.SERVICE_RESTART: (),
    CloseCode.TRY_AGAIN_LATER: (
        "server full: `max_clients` connections already open"
        ' (reason "server full (N clients); try again later")',
        'slow reader: more than `max_buffer` bytes left unread (reason "too slow: over N unread")',
        "Redis backplane outage: every client, and every new one until Redis is back"
        ' (reason "chat backplane unavailable; try again later")',
    ),
    CloseCode.REMOVED: (
        "a teacher's `kick` in classroom mode (`serve --hub`): every socket of that user;"
        " their handshakes then get 403 for `--kick-seconds`"
        ' (reason "removed by the teacher")',
    ),
}


def close_codes_table() -> str:
    """The close codes as a Markdown table: code, meaning, every cause the kit has."""
    lines = ["| code | meaning | causes in wslab |", "|---|---|---|"]
    for code in CloseCode:
        meaning = code.explanation.split(":", 1)[0]
        causes = "; ".join(code.causes) or "never sent by wslab; clients retry it"
        lines.append(f"| {int(code)} | {meaning} | {causes} |")
    return "\n".join(lines) + "\n"


#: How a close code the kit does not use is described, here and by the front ends.
UNKNOWN_CLOSE_MEANING = "not a code this kit uses"


def describe_close(code: int | None) -> str:
    """Return ``"1001 (going away: ...)"`` for any close code, known or not."""
    if code is None:
        return "no close code"
    try:
        return f"{code} ({CloseCode(code).explanation})"
    except ValueError:
        return f"{code} ({UNKNOWN_CLOSE_MEANING})"


class ErrorCode(str, Enum):  # noqa: UP042 (str() of a member stays "ErrorCode.X")
    """The ``code`` of an ``error`` event: what the server blames the client for."""

    BAD_JSON = "bad_json"
    UNKNOWN_EVENT = "unknown_event"
    INVALID_FIELD = "invalid_field"
    NOT_CONNECTED = "not_connected"
    ALREADY_CONNECTED = "already_connected"
    RATE_LIMITED = "rate_limited"
    ID_TAKEN = "id_taken"
    DUPLICATE_ID = "duplicate_id"
    #: Classroom mode: a teacher's event from a student.
    FORBIDDEN = "forbidden"
    #: Classroom mode: a message from a user a teacher muted (nothing is stored).
    MUTED = "muted"

    @property
    def is_strike(self) -> bool:
        """Whether this error counts toward the ten that close a socket with 1008.

        ``rate_limited`` and ``muted`` do not (docs/protocol.md); ``id_taken`` closes
        at once anyway.
        """
        return self not in (ErrorCode.RATE_LIMITED, ErrorCode.ID_TAKEN, ErrorCode.MUTED)


def _raised_as(kind: type[ProtocolError]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-raise a parser's :class:`ProtocolError` as ``kind``: which side broke the protocol."""

    def decorate(parse: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(parse)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return parse(*args, **kwargs)
            except ProtocolError as error:
                if isinstance(error, kind):
                    raise
                raise kind(error.code, error.detail) from None

        return wrapper

    return decorate


class UserEntry(TypedDict):
    """One entry of ``connectedUserList`` (and of ``presence``).

    ``tag`` is what the views show after a name two users share (see
    :func:`wslab.display.user_tag`); a server of the original design sends none.
    """

    id: str
    username: str
    tag: NotRequired[str]


def user_entry(user_id: str, username: str, tag: str = "") -> UserEntry:
    """A user entry, with its ``tag`` if it has one."""
    entry: UserEntry = {"id": user_id, "username": username}
    if tag:
        entry["tag"] = tag
    return entry


class _MessageEntryRequired(TypedDict):
    messageId: int
    id: str
    username: str
    message: str
    ts: str


class MessageEntry(_MessageEntryRequired, total=False):
    """One chat message as stored in history and sent in ``messageWritten``.

    ``tag`` is the author's (as in :class:`UserEntry`). ``clientMessageId`` is
    present when the author sent one, so that the author's clients can match the
    server's acknowledgement to what they sent. ``announcement`` is present
    (``True``) on a classroom teacher's announcement.
    """

    tag: str
    clientMessageId: str
    announcement: bool


class ProgressEntry(TypedDict):
    """One verdict in classroom mode: a user's newest result on one exercise."""

    id: str
    username: str
    exercise: str
    passed: bool
    ts: str


# --------------------------------------------------------------------------- client events


@dataclass(frozen=True)
class Connecting:
    """``connecting``: the first message of every connection."""

    id: str
    username: str
    token: str | None = None
    last_message_id: int | None = None
    room_id: str | None = None
    #: capabilities the client announces (``"presence"``: batched presence events);
    #: the server ignores names it does not know (left out of the repr, as optional)
    features: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "connecting", "id": self.id, "username": self.username}
        if self.token is not None:
            data["token"] = self.token
        if self.last_message_id is not None:
            data["lastMessageId"] = self.last_message_id
        if self.room_id is not None:
            data["roomId"] = self.room_id
        if self.features:
            data["features"] = list(self.features)
        return data


@dataclass(frozen=True)
class WriteMessage:
    """``writeMessage``: a chat message from a connected client."""

    message: str
    client_message_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "writeMessage", "message": self.message}
        if self.client_message_id is not None:
            data["clientMessageId"] = self.client_message_id
        return data


ClientEvent = Connecting | WriteMessage


# --------------------------------------------------------------------------- classroom events


@dataclass(frozen=True)
class Mute:
    """``mute``: a teacher stops a user's messages (classroom mode)."""

    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "mute", "id": self.id}


@dataclass(frozen=True)
class Unmute:
    """``unmute``: a teacher lets a muted user write again (classroom mode)."""

    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "unmute", "id": self.id}


@dataclass(frozen=True)
class Kick:
    """``kick``: a teacher closes a user's sockets with 4003 and keeps them out a while."""

    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "kick", "id": self.id}


@dataclass(frozen=True)
class Clear:
    """``clear``: a teacher empties the history for everyone (classroom mode)."""

    def to_dict(self) -> dict[str, Any]:
        return {"event": "clear"}


@dataclass(frozen=True)
class Announce:
    """``announce``: a teacher's message to all, marked ``"announcement": true``."""

    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "announce", "message": self.message}


@dataclass(frozen=True)
class Progress:
    """``progress``: a user's verdict on an exercise, relayed to the teachers only."""

    exercise: str
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"event": "progress", "exercise": self.exercise, "passed": self.passed}


ClassroomEvent = Mute | Unmute | Kick | Clear | Announce | Progress

# --------------------------------------------------------------------------- server events


@dataclass(frozen=True)
class Connected:
    """``connected``: the answer to ``connecting``, for the connecting socket only."""

    id: str
    username: str
    token: str | None  # None in seed-compatible mode, which issues no tokens
    connected_user_list: list[UserEntry]
    messages_list: list[MessageEntry]
    was_page_reload: bool
    room_id: str = ""
    #: Messages the client missed are gone: older than the oldest one the server kept.
    truncated: bool = False
    #: ``connected_user_list`` already encoded as JSON, when the sender keeps it so:
    #: a join storm then costs no re-encoding of the whole list per newcomer
    users_json: str | None = field(default=None, repr=False, compare=False)
    #: Classroom mode: ``"teacher"`` or ``"student"`` (absent elsewhere).
    role: str | None = None
    #: Classroom mode, a teacher's only: the newest verdict per user and exercise.
    progress_list: list[ProgressEntry] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "connected", "roomId": self.room_id, "id": self.id}
        data["username"] = self.username
        if self.token is not None:
            data["token"] = self.token
        data["connectedUserList"] = self.connected_user_list
        data["messagesList"] = self.messages_list
        data["wasPageReload"] = self.was_page_reload
        if self.truncated:
            data["truncated"] = True
        if self.role is not None:
            data["role"] = self.role
        if self.progress_list is not None:
            data["progressList"] = self.progress_list
        return data


@dataclass(frozen=True)
class Joined:
    """``joined``: a new user arrived (not sent for a reload or a second tab)."""

    id: str
    username: str
    tag: str = ""  # see UserEntry; empty: the server sent none

    def to_dict(self) -> dict[str, Any]:
        return {"event": "joined", **user_entry(self.id, self.username, self.tag)}


@dataclass(frozen=True)
class Disconnected:
    """``disconnected``: a user left and did not come back within the grace."""

    id: str
    username: str
    tag: str = ""  # see UserEntry; empty: the server sent none

    def to_dict(self) -> dict[str, Any]:
        return {"event": "disconnected", **user_entry(self.id, self.username, self.tag)}


@dataclass(frozen=True)
class Presence:
    """``presence``: the presence changes of one short tick, for sockets that asked.

    A receiver removes every ``left`` id, then adds (or renames) every ``joined`` one;
    an id may be in both (it left and a new user took it within the tick).
    """

    joined: list[UserEntry]
    left: list[UserEntry]

    def to_dict(self) -> dict[str, Any]:
        return {"event": "presence", "joined": self.joined, "left": self.left}


@dataclass(frozen=True)
class MessageWritten:
    """``messageWritten``: a stored message; ``messages_list`` only in seed mode."""

    message: MessageEntry
    messages_list: list[MessageEntry] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "messageWritten", "message": self.message}
        if self.messages_list is not None:
            data["messagesList"] = self.messages_list
        return data


@dataclass(frozen=True)
class ErrorEvent:
    """``error``: what the offending socket did wrong, for a person to read."""

    code: ErrorCode
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "error", "code": self.code.value, "detail": self.detail}


@dataclass(frozen=True)
class Muted:
    """``muted``: a teacher muted this user (classroom mode; every socket gets it)."""

    id: str
    username: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "muted", "id": self.id, "username": self.username}


@dataclass(frozen=True)
class Unmuted:
    """``unmuted``: a teacher let this user write again (classroom mode)."""

    id: str
    username: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "unmuted", "id": self.id, "username": self.username}


@dataclass(frozen=True)
class Cleared:
    """``cleared``: a teacher emptied the history; it goes on in room ``room_id``.

    A client drops the messages it shows and counts ``lastMessageId`` in the new room.
    """

    room_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "cleared", "roomId": self.room_id}


@dataclass(frozen=True)
class ProgressReport:
    """``progress``: a user's newest verdict on an exercise, for teachers' sockets only."""

    entry: ProgressEntry

    def to_dict(self) -> dict[str, Any]:
        return {"event": "progress", **self.entry}


ServerEvent = (
    Connected
    | Joined
    | Disconnected
    | Presence
    | MessageWritten
    | ErrorEvent
    | Muted
    | Unmuted
    | Cleared
    | ProgressReport
)

CLIENT_EVENTS = ("connecting", "writeMessage")
#: What a client may send besides :data:`CLIENT_EVENTS` in classroom mode.
CLASSROOM_EVENTS = ("mute", "unmute", "kick", "clear", "announce", "progress")
#: Features a client may announce in ``connecting``; others are accepted and ignored.
FEATURE_PRESENCE = "presence"
MAX_FEATURES = 16
MAX_FEATURE_LENGTH = 32


# Built once: json.dumps and json.loads with options build a new coder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(event: ClientEvent | ClassroomEvent | ServerEvent) -> str:
    """Serialize an event to the JSON text of one frame (compact, UTF-8 safe)."""
    if isinstance(event, Connected) and event.users_json is not None:
        # The same text as below, the kept list spliced in at its place (keys in order).
        data = event.to_dict()
        keys = list(data)
        at = keys.index("connectedUserList")
        head = _ENCODER.encode({k: data[k] for k in keys[:at]})  # "{...}"
        tail = _ENCODER.encode({k: data[k] for k in keys[at + 1 :]})  # "{...}"
        return f'{head[:-1]},"connectedUserList":{event.users_json},{tail[1:]}'
    return _ENCODER.encode(event.to_dict())


# --------------------------------------------------------------------------- parsing


def _load_object(data: str | bytes) -> dict[str, Any]:
    """Decode one frame into a JSON object with a string ``event``, or raise bad_json."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(
            ErrorCode.BAD_JSON, "binary frames are not part of the chat protocol; send text"
        )
    try:
        obj = _DECODER.decode(data)
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and the rejected constants
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, f"expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("event"), str):
        raise ProtocolError(ErrorCode.BAD_JSON, 'the object needs a string field "event"')
    return obj


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told not to.
    raise ValueError(f"{name} is not allowed in JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _field_error(name: str, expectation: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: {expectation}")


def _string(obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _field_error(name, "is required")
        return None  # an optional field may be absent or null
    if not isinstance(value, str):
        raise _field_error(name, f"must be a string, got {type(value).__name__}")
    if not _is_unicode_text(value):
        raise _field_error(name, "must be valid Unicode text (no lone surrogates)")
    return value


def _is_unicode_text(value: str) -> bool:
    # JSON may spell a lone surrogate ("\ud800"): Python accepts it in a str, but it
    # cannot be encoded as UTF-8, so it could never be sent on to anyone.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_id(value: object) -> bool:
    """Whether ``value`` is a valid user id: 1-64 of ``[A-Za-z0-9_-]``."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def _parse_connecting(obj: dict[str, Any]) -> Connecting:
    user_id = _string(obj, "id", required=True)
    if not valid_id(user_id):
        raise _field_error("id", "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
    raw_name = _string(obj, "username", required=True)
    assert user_id is not None and raw_name is not None
    if blank_name(raw_name):
        raise _field_error(
            "username",
            "shows as nothing: it has only invisible or blank characters (such as"
            " zero-width characters, variation selectors or the Hangul filler U+3164)",
        )
    username = normalize_username(raw_name)
    if not 1 <= len(username) <= MAX_USERNAME_LENGTH:
        raise _field_error(
            "username",
            f"must be 1-{MAX_USERNAME_LENGTH} characters once the invisible ones are"
            " removed and the rest trimmed",
        )
    token = _string(obj, "token", required=False)
    if token is not None and not 1 <= len(token) <= 256:
        raise _field_error("token", "must be 1-256 characters")
    last = obj.get("lastMessageId")
    if last is not None and (
        isinstance(last, bool) or not isinstance(last, int) or not 0 <= last < 2**53
    ):
        raise _field_error("lastMessageId", "must be a non-negative integer")
    room_id = _string(obj, "roomId", required=False)
    features = _features(obj.get("features"))
    return Connecting(
        user_id, username, token, last_message_id=last, room_id=room_id, features=features
    )


def _features(value: Any) -> tuple[str, ...]:
    # Unknown names are kept (and ignored by the room); only the shape is checked.
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or len(value) > MAX_FEATURES
        or not all(isinstance(f, str) and 1 <= len(f) <= MAX_FEATURE_LENGTH for f in value)
    ):
        raise _field_error(
            "features",
            f"must be a list of at most {MAX_FEATURES} strings"
            f" of 1-{MAX_FEATURE_LENGTH} characters",
        )
    return tuple(value)


def _message_text(obj: dict[str, Any]) -> str:
    message = _string(obj, "message", required=True)
    assert message is not None
    if not 1 <= len(message) <= MAX_MESSAGE_LENGTH or not message.strip():
        raise _field_error("message", f"must be 1-{MAX_MESSAGE_LENGTH} characters, not only spaces")
    return message


def _parse_write_message(obj: dict[str, Any]) -> WriteMessage:
    message = _message_text(obj)
    cmid = _string(obj, "clientMessageId", required=False)
    if cmid is not None and not 1 <= len(cmid) <= MAX_CLIENT_MESSAGE_ID_LENGTH:
        raise _field_error("clientMessageId", "must be 1-64 characters")
    # A "username" field is ignored on purpose: the server uses the bound name.
    return WriteMessage(message=message, client_message_id=cmid)


_CLIENT_PARSERS: dict[str, Callable[[dict[str, Any]], ClientEvent]] = {
    "connecting": _parse_connecting,
    "writeMessage": _parse_write_message,
}


def _hub_name(obj: dict[str, Any]) -> str:
    name = _string(obj, "id", required=True)
    if not name or len(name) > MAX_HUB_NAME_LENGTH:
        raise _field_error("id", f"must be a hub user's name, 1-{MAX_HUB_NAME_LENGTH} characters")
    return name


def _parse_progress(obj: dict[str, Any]) -> Progress:
    exercise = _string(obj, "exercise", required=True)
    if not exercise or len(exercise) > MAX_EXERCISE_LENGTH or not exercise.strip():
        raise _field_error("exercise", f"must be 1-{MAX_EXERCISE_LENGTH} characters")
    passed = obj.get("passed")
    if not isinstance(passed, bool):
        raise _field_error("passed", "must be true or false")
    return Progress(exercise, passed)


def _parse_classroom_connecting(obj: dict[str, Any]) -> Connecting:
    # The hub says who the socket is: id, username and token are not read at all (a
    # client may send back the hub name it was given, which need not be a plain id).
    return _parse_connecting({**obj, "id": "hub", "username": "hub", "token": None})


_CLASSROOM_PARSERS: dict[str, Callable[[dict[str, Any]], ClientEvent | ClassroomEvent]] = {
    "connecting": _parse_classroom_connecting,
    "mute": lambda obj: Mute(_hub_name(obj)),
    "unmute": lambda obj: Unmute(_hub_name(obj)),
    "kick": lambda obj: Kick(_hub_name(obj)),
    "clear": lambda obj: Clear(),
    "announce": lambda obj: Announce(_message_text(obj)),
    "progress": _parse_progress,
}


@_raised_as(ClientProtocolError)
def parse_classroom_event(data: str | bytes) -> ClientEvent | ClassroomEvent:
    """Parse one frame a client of a classroom (``serve --hub``) sent.

    :func:`parse_client_event`, and the classroom's events (:data:`CLASSROOM_EVENTS`);
    the ``id``, ``username`` and ``token`` of ``connecting`` are not read (the hub says
    who the socket is), so they may be absent or anything.

    Raises:
        ProtocolError: ``bad_json``, ``unknown_event`` or ``invalid_field``; never
            any other exception, whatever the input.
    """
    obj = _load_object(data)
    parser = _CLASSROOM_PARSERS.get(obj["event"])
    if parser is None:
        return _parse_known(obj, CLIENT_EVENTS + CLASSROOM_EVENTS)
    return parser(obj)


def _parse_known(obj: dict[str, Any], known: tuple[str, ...]) -> ClientEvent:
    parser = _CLIENT_PARSERS.get(obj["event"])
    if parser is None:
        name = obj["event"][:40]
        raise ProtocolError(
            ErrorCode.UNKNOWN_EVENT,
            f"unknown event {name!r}; a client may send {', '.join(known)}",
        )
    return parser(obj)


@_raised_as(ClientProtocolError)
def parse_client_event(data: str | bytes) -> ClientEvent:
    """Parse one frame a client sent into an event.

    Checks run in the order docs/protocol.md fixes: JSON shape, event name, fields.

    Raises:
        ProtocolError: ``bad_json``, ``unknown_event`` or ``invalid_field``; never
            any other exception, whatever the input.
    """
    return _parse_known(_load_object(data), CLIENT_EVENTS)


# --------------------------------------------------------------------------- usernames


def normalize_username(name: str) -> str:
    """The name as the room binds it: NFC, no invisible characters, trimmed.

    Control characters (``Cc``), format characters (``Cf``: bidi controls,
    zero-width spaces and joiners, the BOM, soft hyphens), line or paragraph
    separators, and every other character that shows as nothing
    (:data:`wslab.display.NAME_INVISIBLES`: variation selectors, fillers) are
    removed, so that two names that look the same are the same string:
    "admin" + U+FE0F is bound as "admin". An empty result means the name had
    nothing visible.
    """
    kept = "".join(
        c
        for c in without_invisibles(name)
        if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")
    )
    # NFC after the removal: "e" ZWSP U+0301 becomes "e" U+0301, which NFC joins.
    return unicodedata.normalize("NFC", kept).strip()


# --------------------------------------------------------------------------- server events in


def _message_id(value: Any) -> bool:
    # Any JSON integer parses, however long: a bound, not a float conversion, checks it.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MESSAGE_ID


@_raised_as(ServerProtocolError)
def parse_server_event(data: str | bytes) -> ServerEvent:
    """Parse one frame the server sent (used by the Python client).

    Every field is type-checked, so a client can trust what it gets.

    Raises:
        ProtocolError: ``bad_json``, ``unknown_event`` or ``invalid_field`` if the
            server broke the protocol; never any other exception.
    """
    obj = _load_object(data)
    name = obj["event"]
    if name == "connected":
        return Connected(
            id=_text(obj, "id"),
            username=_text(obj, "username"),
            token=_string(obj, "token", required=False),
            connected_user_list=[_user(u) for u in _list(obj, "connectedUserList")],
            messages_list=[_entry(m) for m in _list(obj, "messagesList")],
            was_page_reload=obj.get("wasPageReload") is True,
            room_id=_text(obj, "roomId") if "roomId" in obj else "",
            truncated=obj.get("truncated") is True,
            role=_string(obj, "role", required=False),
            progress_list=(
                [_progress(p) for p in _list(obj, "progressList")]
                if obj.get("progressList") is not None
                else None
            ),
        )
    if name == "joined":
        return Joined(**_user_fields(obj))
    if name == "disconnected":
        return Disconnected(**_user_fields(obj))
    if name == "presence":
        return Presence(
            joined=[_user(u) for u in _list(obj, "joined")],
            left=[_user(u) for u in _list(obj, "left")],
        )
    if name == "messageWritten":
        history = None
        if obj.get("messagesList") is not None:
            history = [_entry(m) for m in _list(obj, "messagesList")]
        return MessageWritten(message=_entry(obj.get("message")), messages_list=history)
    classroom = _CLASSROOM_SERVER_PARSERS.get(name)
    if classroom is not None:
        return classroom(obj)
    if name == "error":
        code = obj.get("code")
        if not isinstance(code, str) or code not in _ERROR_CODES:
            raise _field_error("code", "must be a known error code")
        detail = _string(obj, "detail", required=False)
        return ErrorEvent(code=ErrorCode(code), detail=detail or "")
    raise ProtocolError(ErrorCode.UNKNOWN_EVENT, f"unknown server event {name[:40]!r}")


_ERROR_CODES = frozenset(code.value for code in ErrorCode)

_CLASSROOM_SERVER_PARSERS: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "muted": lambda obj: Muted(_text(obj, "id"), _text(obj, "username")),
    "unmuted": lambda obj: Unmuted(_text(obj, "id"), _text(obj, "username")),
    "cleared": lambda obj: Cleared(_text(obj, "roomId")),
    "progress": lambda obj: ProgressReport(_progress(obj)),
}


def _progress(value: Any) -> ProgressEntry:
    if not isinstance(value, dict) or not isinstance(value.get("passed"), bool):
        raise _field_error("progress", "must be an entry with a boolean passed")
    return {
        "id": _text(value, "id"),
        "username": _text(value, "username"),
        "exercise": _text(value, "exercise"),
        "passed": value["passed"],
        "ts": _text(value, "ts"),
    }


def _text(obj: Any, name: str) -> str:
    if not isinstance(obj, dict):
        raise _field_error(name, "must be inside an object")
    value = _string(obj, name, required=True)
    assert value is not None
    return value


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    value = obj.get(name, [])
    if not isinstance(value, list):
        raise _field_error(name, "must be a list")
    return value


def _user_fields(value: Any) -> dict[str, str]:
    tag = _string(value, "tag", required=False) if isinstance(value, dict) else None
    return {"id": _text(value, "id"), "username": _text(value, "username"), "tag": tag or ""}


def _user(value: Any) -> UserEntry:
    fields = _user_fields(value)
    return user_entry(fields["id"], fields["username"], fields["tag"])


def _entry(value: Any) -> MessageEntry:
    if not isinstance(value, dict) or not _message_id(value.get("messageId")):
        raise _field_error(
            "message", f"must be an entry with an integer messageId in 0..{MAX_MESSAGE_ID}"
        )
    entry: MessageEntry = {
        "messageId": value["messageId"],
        "id": _text(value, "id"),
        "username": _text(value, "username"),
        "message": _text(value, "message"),
        "ts": _text(value, "ts"),
    }
    if value.get("tag") is not None:
        entry["tag"] = _text(value, "tag")
    if value.get("clientMessageId") is not None:
        entry["clientMessageId"] = _text(value, "clientMessageId")
    if value.get("announcement") is True:
        entry["announcement"] = True
    return entry

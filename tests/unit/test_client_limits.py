"""The client's default ``max_size`` against the largest frames a default server sends.

The default must never refuse a legal frame of a server with default limits: the
largest is a ``connected`` with a full history (100 entries) and a long user list, or a
seed-compatible ``messageWritten`` carrying the whole history. Each is built here at
its longest JSON spelling, with the kit's own encoder.
"""

from __future__ import annotations

from wslab.client import DEFAULT_MAX_SIZE
from wslab.protocol import (
    MAX_CLIENT_MESSAGE_ID_LENGTH,
    MAX_ID_LENGTH,
    MAX_MESSAGE_ID,
    MAX_MESSAGE_LENGTH,
    MAX_USERNAME_LENGTH,
    Connected,
    MessageEntry,
    MessageWritten,
    UserEntry,
    encode,
)

HISTORY = 100  # the server's default history
USERS = 12_000  # what the docs promise room for


def longest_entry(n: int) -> MessageEntry:
    """A message entry whose every field is at its longest JSON spelling."""
    entry: MessageEntry = {
        "messageId": MAX_MESSAGE_ID - n,
        "id": "i" * MAX_ID_LENGTH,
        "username": "\U0001f600" * MAX_USERNAME_LENGTH,  # 4 bytes of UTF-8 each
        "message": "\x01" * MAX_MESSAGE_LENGTH,  # escaped as \u0001: 6 bytes each
        "ts": "2026-01-01T00:00:00.000Z",
        "clientMessageId": "\x01" * MAX_CLIENT_MESSAGE_ID_LENGTH,
    }
    entry["announcement"] = True  # type: ignore[typeddict-unknown-key]  # classroom mode
    return entry


def longest_user(n: int) -> UserEntry:
    return {"id": f"{n:0{MAX_ID_LENGTH}d}", "username": "\U0001f600" * MAX_USERNAME_LENGTH}


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_the_default_max_size_holds_a_full_connected_for_twelve_thousand_users() -> None:
    history = [longest_entry(n) for n in range(HISTORY)]
    users = [longest_user(n) for n in range(USERS)]
    frame = Connected(
        "i" * MAX_ID_LENGTH,
        "\U0001f600" * MAX_USERNAME_LENGTH,
        "t" * 256,
        users,
        history,
        was_page_reload=True,
        room_id="r" * 64,
        truncated=True,
    )
    assert size(encode(frame)) <= DEFAULT_MAX_SIZE
    print(f"largest connected: {size(encode(frame)) / 2**20:.2f} MiB")


def test_the_default_max_size_holds_a_seed_compatible_message_with_the_history() -> None:
    history = [longest_entry(n) for n in range(HISTORY)]
    frame = MessageWritten(history[-1], history)
    assert size(encode(frame)) <= DEFAULT_MAX_SIZE

"""RawEvent: what a browser's ``WebSocket`` object fires, and a log bounded in bytes. Pure.

A :class:`~wslab.client.ChatClient` keeps every event of its sockets in its raw
event log (:attr:`~wslab.client.ChatClient.events`), as a lesson reads them; the
log holds a number of events and a number of frame bytes at most.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

__all__ = ["RawEvent", "append_bounded", "log_bytes"]


@dataclass(frozen=True)
class RawEvent:
    """One event as a browser's ``WebSocket`` object would fire it.

    ``type`` is ``open``, ``message``, ``error`` or ``close``; ``data`` is the
    frame of a ``message`` (``str`` for text, ``bytes`` for binary); ``code``,
    ``reason`` and ``was_clean`` describe a ``close``; ``detail`` an ``error``
    (a browser gives none). As in Chromium, ``error`` fires only when the
    connection fails (a refused handshake, nothing listening, a certificate
    that does not verify), then ``close`` 1006; a close frame from the server,
    whatever its code, fires ``close`` alone. One ``error`` has no browser
    counterpart: a server that does not answer ``connecting`` within the join
    timeout (``detail`` says so), before the client closes the socket. The chat
    protocol's ``error`` events are ordinary ``message`` events (see
    ``ChatClient.errors``).
    """

    type: Literal["open", "message", "error", "close"]
    data: str | bytes | None = None
    code: int | None = None
    reason: str = ""
    was_clean: bool | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.type == "message":
            return f"message {self.data!r}"
        if self.type == "close":
            return f"close code={self.code} reason={self.reason!r} wasClean={self.was_clean}"
        if self.type == "error":
            return f"error {self.detail}"
        return "open"


def append_bounded(events: deque[RawEvent], held: int, event: RawEvent, max_bytes: int) -> int:
    """Append ``event`` to a log that holds ``held`` bytes; return the bytes it holds then.

    The oldest events go first, as the deque's ``maxlen`` drops them and until the
    log holds at most ``max_bytes`` (the newest event always stays).
    """
    if len(events) == events.maxlen:
        held -= _size(events[0])  # appending drops it
    events.append(event)
    held += _size(event)
    while held > max_bytes and len(events) > 1:
        held -= _size(events.popleft())
    return held


def log_bytes(events: deque[RawEvent]) -> int:
    """How many bytes of frames a log holds."""
    return sum(_size(e) for e in events)


def _size(event: RawEvent) -> int:
    """About how many bytes a raw event holds: its frame's length (a ``str`` in characters)."""
    return len(event.data) if event.data is not None else 0

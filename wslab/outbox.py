"""The client's outbox: messages typed and not yet acknowledged, sent in typing order. Pure.

Every client keeps one promise about what it sends (docs/protocol.md, "Client
promises"): a user's messages reach the room in the order they were typed, across
reconnects and rate limits. The outbox holds that rule; the client only sends what
it hands out, and tells it what happened::

    add(text) -> PendingMessage     the user typed a message
    opened()                        ``connected`` came: everything pending may go out
    closed()                        the connection ended: nothing is in flight any more
    acknowledged(client_message_id) the server stored it (a ``messageWritten`` of ours)
    rate_limited(now)               the server dropped a message of ours
    refused()                       the server refused our oldest message in flight for good
    due(now) -> [PendingMessage]    what to send now, oldest first (marked in flight)
    paused_until                    when a pause after ``rate_limited`` ends (or None)

The rules, in one place:

- messages go out oldest first, at most ``window`` unacknowledged at a time on one
  connection (the acknowledgements pace the sending). With the default window of 1
  the order holds whatever the server drops; a larger window sends faster over a slow
  network, but a message sent after one the rate limit dropped, before the
  ``rate_limited`` came back, may then get in first;
- after ``connected`` everything pending goes out again from the oldest, once (the
  server's de-duplication by ``clientMessageId`` makes a resend harmless);
- after ``rate_limited`` nothing goes out for ``pause`` seconds; then the outbox
  resends from the oldest unacknowledged message, one at a time (the next only after
  the previous one is acknowledged), until it is empty: a newer message never
  overtakes an older one the server dropped, and the server's own limit paces the
  resending;
- a message refused for good (``muted``: a classroom's teacher muted the user) leaves
  the outbox: it is never resent, and the next ones go out as usual.

``now`` is any monotonic clock's reading, in seconds. Not thread-safe: one client,
one thread (the client's loop).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["Outbox", "PendingMessage"]


@dataclass(frozen=True)
class PendingMessage:
    """A message sent (or queued) and not yet acknowledged by the server."""

    client_message_id: str
    message: str


class Outbox:
    """Unacknowledged messages in typing order, and which of them to send when.

    Args:
        window: how many messages may be unacknowledged on one connection at once.
        pause: seconds to send nothing after a ``rate_limited`` error.
    """

    def __init__(self, window: int = 1, pause: float = 1.0) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.pause = pause
        #: Unacknowledged messages, oldest first.
        self.pending: list[PendingMessage] = []
        #: When the pause after a ``rate_limited`` error ends (``None``: no pause).
        self.paused_until: float | None = None
        self._open = False
        self._in_flight = 0  # how many of pending, from the oldest, went out on this connection
        self._one_at_a_time = False  # after a drop, until the outbox is empty

    def add(self, text: str) -> PendingMessage:
        """Queue a message the user typed; return it with its new ``clientMessageId``."""
        pending = PendingMessage("m-" + secrets.token_hex(8), text)
        self.pending.append(pending)
        return pending

    def opened(self) -> None:
        """A connection joined (``connected``): every pending message is to be sent."""
        self._open, self._in_flight = True, 0

    def closed(self) -> None:
        """The connection ended: what was in flight is unsent again."""
        self._open, self._in_flight = False, 0

    def acknowledged(self, client_message_id: str) -> bool:
        """The server stored this message; returns whether it was pending."""
        for index, pending in enumerate(self.pending):
            if pending.client_message_id == client_message_id:
                del self.pending[index]
                if index < self._in_flight:
                    self._in_flight -= 1
                if not self.pending:
                    self._one_at_a_time = False
                return True
        return False

    def rate_limited(self, now: float) -> None:
        """The server dropped a message of ours: pause, then resend from the oldest."""
        self._in_flight = 0
        self._one_at_a_time = True
        self.paused_until = now + self.pause

    def refused(self) -> PendingMessage | None:
        """The server refused the oldest message in flight for good: drop it; return it.

        The server answers in order, so the refused one is the oldest sent and not
        acknowledged. ``None`` when nothing was in flight.
        """
        if self._in_flight == 0:
            return None
        self._in_flight -= 1
        refused = self.pending.pop(0)
        if not self.pending:
            self._one_at_a_time = False
        return refused

    def due(self, now: float) -> list[PendingMessage]:
        """The messages to send now, oldest first; they count as in flight from here."""
        if self.paused_until is not None:
            if now < self.paused_until:
                return []
            self.paused_until = None
        if not self._open:
            return []
        limit = 1 if self._one_at_a_time else self.window
        start, end = self._in_flight, min(len(self.pending), limit)
        if end <= start:
            return []
        self._in_flight = end
        return self.pending[start:end]

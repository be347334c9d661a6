"""ClientEvents: what a chat client does with each server event, whatever its sockets.

:class:`ClientEvents` is the part of :class:`~wslab.client.ChatClient` between the
pure rules of :class:`~wslab.chatstate.ChatState` and the sockets: it applies an
event to the state, takes acknowledged messages out of the outbox, pauses sending
after ``rate_limited``, calls the user's handlers and wakes whoever waits for a
change. How the frames arrive and how the outbox's messages go out is the
client's part (:meth:`ClientEvents._send_due`).

Runs on the client's loop; call it from that loop's thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Self

from .chatstate import ChatState
from .errors import ServerProtocolError
from .outbox import Outbox
from .protocol import (
    Cleared,
    Connected,
    Disconnected,
    ErrorCode,
    ErrorEvent,
    Joined,
    MessageEntry,
    MessageWritten,
    Muted,
    Presence,
    ProgressEntry,
    ProgressReport,
    ServerEvent,
    Unmuted,
    describe_close,
    user_entry,
)

__all__ = ["ClientEvents", "Status"]

logger = logging.getLogger("wslab.client")

Status = Literal["idle", "connecting", "online", "reconnecting", "offline"]


class ClientEvents(ChatState):
    """A chat state that a server's events change, with handlers and waits.

    Args:
        id, username, token, max_log: as for :class:`~wslab.chatstate.ChatState`;
            ``max_log`` bounds :attr:`protocol_errors` too.
        outbox: what is typed and not yet acknowledged.

    Every method runs on the client's loop; call it from that loop's thread only.
    """

    def __init__(
        self, id: str, username: str, token: str | None, max_log: int, outbox: Outbox
    ) -> None:
        super().__init__(id, username, token, max_log)
        self.status: Status = "idle"
        #: Seconds until the next attempt while ``reconnecting``.
        self.next_retry_in: float | None = None
        #: What is typed and not yet acknowledged, and when each part goes out.
        self.outbox = outbox
        self.errors: list[ErrorEvent] = []  # error events the server sent
        #: Frames from a server that broke the protocol (each one ignored), newest last.
        self.protocol_errors: deque[ServerProtocolError] = deque(maxlen=max_log)
        #: The last close: its code and reason (``None``: never closed).
        self.last_close: tuple[int, str] | None = None

        # Handlers: set any of these to a callable; they run on the client's loop.
        self.on_connected: Callable[[Connected], Any] | None = None
        self.on_joined: Callable[[Joined], Any] | None = None
        self.on_disconnected: Callable[[Disconnected], Any] | None = None
        self.on_message: Callable[[MessageEntry], Any] | None = None
        self.on_close: Callable[[int, str], Any] | None = None
        self.on_error: Callable[[ErrorEvent], Any] | None = None
        self.on_progress: Callable[[ProgressEntry], Any] | None = None  # a teacher's
        self.on_change: Callable[[Self], Any] | None = None  # any state change

        self._waiters: list[tuple[Callable[[Self], bool], asyncio.Future[None]]] = []
        self._pause_task: asyncio.Task[None] | None = None

    @property
    def online(self) -> bool:
        """Whether the client is connected and has received ``connected``."""
        return self.status == "online"

    def describe_last_close(self) -> str:
        """The last close code with its meaning, for a person."""
        if self.last_close is None:
            return "never closed"
        code, reason = self.last_close
        return describe_close(code) + (f" reason={reason!r}" if reason else "")

    async def wait_for(
        self, predicate: Callable[[Self], bool], timeout: float | None = 10.0
    ) -> None:
        """Wait until ``predicate(client)`` is true; it is checked after every change.

        Raises:
            TimeoutError: still false after ``timeout`` seconds.
        """
        if predicate(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_for_message(self, text: str, timeout: float | None = 10.0) -> MessageEntry:
        """Wait until a message with this exact text is in :attr:`messages`; return it."""
        await self.wait_for(lambda c: any(m["message"] == text for m in c.messages), timeout)
        return next(m for m in self.messages if m["message"] == text)

    async def _send_due(self) -> None:
        """Send what the outbox says is due; the client, which has the sockets, does."""
        raise NotImplementedError

    async def _handle(self, event: ServerEvent) -> bool:
        """Apply one server event; return True if it was ``connected``."""
        if isinstance(event, Connected):
            self.apply_connected(event)
            for entry in event.messages_list:
                self._acknowledge(entry)
            self.status, self.next_retry_in = "online", None
            self._changed()
            self._call(self.on_connected, event)
            self.outbox.opened()
            return True
        if isinstance(event, MessageWritten):
            acknowledged = self._acknowledge(event.message)
            if self.add_message(event.message):
                self._call(self.on_message, event.message)
            if acknowledged:
                await self._send_due()  # the next message may go out
        elif isinstance(event, Joined):
            self.join(user_entry(event.id, event.username, event.tag))
            self._call(self.on_joined, event)
        elif isinstance(event, Disconnected):
            if self.leave(user_entry(event.id, event.username, event.tag)):
                self._call(self.on_disconnected, event)
        elif isinstance(event, Presence):
            for kind, user in self.apply_presence(event):
                fields = (user["id"], user["username"], user.get("tag", ""))
                if kind == "joined":
                    self._call(self.on_joined, Joined(*fields))
                else:
                    self._call(self.on_disconnected, Disconnected(*fields))
        elif isinstance(event, ErrorEvent):
            if self._error(event):
                await self._send_due()  # the next message may go out
        else:
            self._classroom(event)
        self._changed()
        return False

    def _error(self, event: ErrorEvent) -> bool:
        """Keep an ``error``; return whether it dropped a message of the outbox."""
        self.errors.append(event)
        refused = None
        if event.code is ErrorCode.RATE_LIMITED:
            self._pause_sending()
        elif event.code is ErrorCode.MUTED:  # dropped for good: never resent after an unmute
            refused = self.outbox.refused()
        self._call(self.on_error, event)
        return refused is not None

    def _classroom(self, event: Muted | Unmuted | Cleared | ProgressReport) -> None:
        """A classroom's events (``serve --hub``): mutes, a cleared history, verdicts."""
        if isinstance(event, Muted | Unmuted):
            self.set_muted({"id": event.id, "username": event.username}, isinstance(event, Muted))
        elif isinstance(event, Cleared):
            self.clear(event)
        else:
            self.add_progress(event.entry)
            self._call(self.on_progress, event.entry)

    def _acknowledge(self, entry: MessageEntry) -> bool:
        """Whether this entry acknowledges a message of ours (it leaves the outbox)."""
        cmid = entry.get("clientMessageId")
        return entry["id"] == self.id and cmid is not None and self.outbox.acknowledged(cmid)

    def _pause_sending(self) -> None:
        """The server dropped a message: send nothing for a while, then from the oldest.

        The pause outlives a connection: a client that reconnects during it waits too.
        """
        loop = asyncio.get_running_loop()
        self.outbox.rate_limited(loop.time())
        if self._pause_task is not None and not self._pause_task.done():
            return  # the running pause reads the new end when it wakes

        async def resume() -> None:
            while (until := self.outbox.paused_until) is not None:
                await asyncio.sleep(max(0.0, until - loop.time()))
                if self.outbox.paused_until == until:
                    await self._send_due()

        self._pause_task = loop.create_task(resume())

    def _changed(self: Self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self):
                future.set_result(None)
        self._call(self.on_change, self)

    @staticmethod
    def _call(handler: Callable[..., Any] | None, *args: Any) -> None:
        """Run a user's handler; its bug is logged and must not stop the client."""
        if handler is None:
            return
        try:
            handler(*args)
        except Exception:
            logger.exception("a ChatClient handler raised; the client goes on")

"""What one client knows of the chat, rebuilt from the server's events. Pure.

A :class:`ChatState` takes the events a server sends (already parsed, see
:func:`wslab.protocol.parse_server_event`) and keeps the client's view: who is
present, the messages in order, and the join and leave lines to show. It sends
nothing and knows no sockets; :class:`~wslab.client.ChatClient` is one.

The rules, in one place:

- ``connected`` replaces the user list and merges its messages; from another room
  (another ``roomId``: a restarted server without a store) the old messages are
  dropped first, since that room's ``messageId`` values start again;
- a message is kept once per ``messageId``, in ``messageId`` order;
- a ``joined`` lists a user; a ``disconnected`` unlists one; a ``presence`` diff
  removes its ``left``, then adds its ``joined`` (an id in both was taken over);
  each join and leave that changed the list is logged in :attr:`ChatState.presence`;
- a user's ``tag`` (what the views show after a name two users share), when the
  server sends one, is kept in :attr:`ChatState.tags` beside the user list;
- the client's own user stays listed, whatever presence events say: its socket is
  open, so it is present (a server that froze past its heartbeat announces its own
  users gone when it wakes, and the ``joined`` that follows is never sent to them).

In a classroom (``serve --hub``) it also keeps:

- the client's ``role`` from ``connected`` (``"teacher"`` or ``"student"``);
- who is muted (``muted`` / ``unmuted``), as heard since this client started;
- ``cleared``: every message and join line dropped; the history goes on in the new ``roomId``;
- a teacher's verdicts: ``progressList`` in ``connected`` replaces them, each
  ``progress`` keeps the newest per user and exercise.

Not thread-safe: one client, one thread (the client's loop).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from .protocol import Cleared, Connected, MessageEntry, Presence, ProgressEntry, UserEntry

__all__ = ["ChatState", "PresenceEvent"]


@dataclass(frozen=True)
class PresenceEvent:
    """A user joined or left (``kind`` is ``joined`` or ``disconnected``), for display.

    ``after`` is the ``messageId`` of the newest message the client had when it
    came (``None``: none yet), so a view can place the line among the messages.
    """

    kind: Literal["joined", "disconnected"]
    id: str
    username: str
    after: int | None


class ChatState:
    """The chat as one client sees it: users, messages, join and leave lines.

    Args:
        id: the client's user id (the server may confirm another in ``connected``).
        username: the name it joins with.
        token: its identity token, if it has one.
        max_log: how many join and leave lines :attr:`presence` keeps.
    """

    def __init__(self, id: str, username: str, token: str | None, max_log: int = 1000) -> None:
        self.id = id
        self.username = username
        self.token = token
        self.users: dict[str, str] = {}  # id -> username, in the server's order
        #: id -> tag, for the listed users whose server sent one (see UserEntry).
        self.tags: dict[str, str] = {}
        self.messages: list[MessageEntry] = []  # by messageId, each once
        self.room_id: str | None = None
        self.was_page_reload = False
        #: The last ``connected`` said that some missed messages are gone.
        self.truncated = False
        #: Joins and leaves seen, newest last.
        self.presence: deque[PresenceEvent] = deque(maxlen=max_log)
        self._message_ids: set[int] = set()
        #: Classroom: ``"teacher"`` or ``"student"``, from ``connected`` (else ``None``).
        self.role: str | None = None
        #: Classroom: the users a teacher muted, id -> username.
        self.muted: dict[str, str] = {}
        #: Classroom, a teacher's: the newest verdict per (user id, exercise), oldest first.
        self.progress: dict[tuple[str, str], ProgressEntry] = {}

    @property
    def last_message_id(self) -> int | None:
        """The newest ``messageId`` seen, sent as ``lastMessageId`` on reconnect."""
        return self.messages[-1]["messageId"] if self.messages else None

    def texts(self) -> list[str]:
        """The text of every message in order: handy in lessons and tests."""
        return [m["message"] for m in self.messages]

    def apply_connected(self, event: Connected) -> None:
        """The server accepted the client: take its identity, users and messages."""
        self.id, self.username, self.token = event.id, event.username, event.token
        if self.room_id is not None and event.room_id != self.room_id:
            self.messages.clear()
            self._message_ids.clear()
            self.presence.clear()
        self.room_id = event.room_id
        self.role = event.role
        if event.progress_list is not None:
            self.progress = {}
            for verdict in event.progress_list:
                self.add_progress(verdict)
        self.was_page_reload = event.was_page_reload
        self.truncated = event.truncated
        self.users = {u["id"]: u["username"] for u in event.connected_user_list}
        self.users.setdefault(self.id, self.username)
        self.tags = {u["id"]: u["tag"] for u in event.connected_user_list if "tag" in u}
        for entry in event.messages_list:
            self.add_message(entry)

    def add_message(self, entry: MessageEntry) -> bool:
        """Keep a message entry; return whether it was new (not seen before)."""
        if entry["messageId"] in self._message_ids:
            return False
        self._message_ids.add(entry["messageId"])
        self.messages.append(entry)
        if len(self.messages) > 1 and entry["messageId"] < self.messages[-2]["messageId"]:
            self.messages.sort(key=lambda m: m["messageId"])
        return True

    def join(self, user: UserEntry) -> None:
        """A user joined (``joined``): list them and log the line."""
        self.users[user["id"]] = user["username"]
        self.tags.pop(user["id"], None)
        if "tag" in user:
            self.tags[user["id"]] = user["tag"]
        self._log("joined", user)

    def leave(self, user: UserEntry) -> bool:
        """A user left (``disconnected``): unlist them and log the line.

        Returns ``False``, changing nothing, for the client's own user.
        """
        if user["id"] == self.id:
            return False
        self.users.pop(user["id"], None)
        self.tags.pop(user["id"], None)
        self._log("disconnected", user)
        return True

    def apply_presence(self, event: Presence) -> list[tuple[str, UserEntry]]:
        """Apply a ``presence`` diff; return what changed: ``("joined"|"disconnected", user)``.

        Entries the user list already agrees with change nothing.
        """
        changes: list[tuple[str, UserEntry]] = []
        for user in event.left:
            if user["id"] in self.users and self.leave(user):
                changes.append(("disconnected", user))
        for user in event.joined:
            if self.users.get(user["id"]) != user["username"]:
                self.join(user)
                changes.append(("joined", user))
        return changes

    def set_muted(self, user: UserEntry, muted: bool) -> None:
        """A teacher muted (``muted=True``) or unmuted a user."""
        if muted:
            self.muted[user["id"]] = user["username"]
        else:
            self.muted.pop(user["id"], None)

    def clear(self, event: Cleared) -> None:
        """A teacher emptied the history: drop every message and join line; go on in its room."""
        self.messages.clear()
        self._message_ids.clear()
        self.presence.clear()
        self.room_id = event.room_id
        self.truncated = False

    def add_progress(self, verdict: ProgressEntry) -> None:
        """Keep a verdict: the newest one per user and exercise, moved to the end."""
        key = (verdict["id"], verdict["exercise"])
        self.progress.pop(key, None)
        self.progress[key] = verdict

    def _log(self, kind: Literal["joined", "disconnected"], user: UserEntry) -> None:
        self.presence.append(
            PresenceEvent(kind, user["id"], user["username"], self.last_message_id)
        )

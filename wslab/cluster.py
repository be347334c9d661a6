"""SharedRoom: the room's state machine when several servers share one chat.

Each server has its own sockets; what they share (who is present, ids and their
tokens, the messages and their order, ``clientMessageId`` memory) lives in a
backplane (:mod:`wslab.backplane`, on Redis). This module stays pure, like
:mod:`wslab.room`: where the room alone would decide, a shared room asks its
server to ask the backplane, with a *task* in :attr:`Outcome.tasks`, and is told
the answer (:meth:`SharedRoom.claimed`, :meth:`SharedRoom.appended`).

One log, read by every server in the same order, carries the chat's history::

    server A                 backplane (one log)               server B
    connecting(x) --Claim-->  token ok, x held by A:
                              "joined x"            ---------> log_joined: "joined" to B's sockets
    writeMessage  --Append--> messageId 7           ---------> deliver: "messageWritten" to all,
                 <--------------------------------------------  A's sockets too (the author's ack)
    x's last socket closes --MarkGrace--> x in grace on A
    grace runs out --Release--> nobody holds x:
                              "disconnected x"      ---------> log_left: "disconnected" to all

So presence and messages change only when the log says so, and every server
tells its sockets the same story in the same order. A user holds on to the chat
through any server that has a socket of theirs open, or runs their grace; a
reconnect on another server within the grace finds the id held "in grace" and
is a reload there: nobody hears of a leave or a join.

A server's own sockets and graces stay local (:attr:`Room._users` here means the
users *this* server holds); the present users of the whole chat are the view the
log builds (:attr:`Room.users`).

Not thread-safe: call it from one thread (the server's loop thread).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from .clock import iso_utc
from .protocol import (
    Connected,
    Connecting,
    Disconnected,
    ErrorCode,
    Joined,
    MessageEntry,
    MessageWritten,
    ProtocolError,
    UserEntry,
    WriteMessage,
)
from .room import (
    Outcome,
    Room,
    Send,
    Socket,
    _digest,
    _id_taken,
    _reused_id,
    _same_token,
    _SocketState,
    _User,
)

__all__ = [
    "Append",
    "AppendResult",
    "Claim",
    "ClaimResult",
    "MarkGrace",
    "Release",
    "SharedRoom",
    "Snapshot",
]


# ---------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Claim:
    """Hold ``event.id`` on this server: check or bind its token, learn its state.

    ``recover_after``: the client came back with this ``lastMessageId`` and this
    server no longer keeps all it missed: fetch the messages after it from the log.
    """

    socket: Socket
    event: Connecting
    recover_after: int | None = None


@dataclass(frozen=True)
class ClaimResult:
    """The backplane's answer to a :class:`Claim`.

    ``status``: ``"new"`` (nobody held the id: the log now says it joined),
    ``"reload"`` (held only in grace somewhere), ``"tab"`` (a socket of it is open
    somewhere), ``"taken"`` (bound to another token: nothing changed).
    ``older``: the fetched messages (oldest first); ``complete`` is false when the
    log no longer reaches back to the first one missed.
    """

    status: Literal["new", "reload", "tab", "taken"]
    token: str | None = None
    username: str = ""
    older: list[MessageEntry] = field(default_factory=list)
    complete: bool = True


@dataclass(frozen=True)
class Append:
    """Store a new message: the backplane gives it the next ``messageId`` and logs it.

    ``draft`` is the entry without its ``messageId``; ``digest`` a short hash of the
    text as sent (a resend's text must match it); ``sent`` that text.
    """

    socket: Socket
    draft: MessageEntry
    digest: str
    sent: str


@dataclass(frozen=True)
class AppendResult:
    """The backplane's answer to an :class:`Append`.

    ``stored``: a new message, ``message_id`` its id (it reaches every socket through
    the log). Otherwise its ``clientMessageId`` was accepted before, as
    ``message_id``, for a text whose hash is ``digest``, at ``ts``; ``entry`` is that
    message when the log still has it.
    """

    stored: bool
    message_id: int
    digest: str = ""
    ts: str = ""
    entry: MessageEntry | None = None


@dataclass(frozen=True)
class MarkGrace:
    """The id's last socket on this server closed: its hold here is now a grace."""

    user_id: str


@dataclass(frozen=True)
class Release:
    """The id's grace ran out here: let go of it (the last holder's release logs a leave)."""

    user_id: str


@dataclass(frozen=True)
class Snapshot:
    """The shared chat as of one point of the log: where a server starts reading it."""

    room_id: str
    users: list[UserEntry]
    history: list[MessageEntry]
    last_message_id: int
    position: str  # the log entry after which reading goes on


# ---------------------------------------------------------------------- the room


class SharedRoom(Room):
    """The part of a shared chat that one server holds. See the module docstring.

    Takes the options of :class:`~wslab.room.Room` except ``store`` and
    ``seed_compatible``: the backplane keeps tokens and history, and ids are never
    trusted without their token.
    """

    def load(self, snapshot: Snapshot) -> None:
        """Start from a snapshot: every socket and hold of this server is forgotten.

        Used at start and after the backplane came back from an outage (the server
        closed all its sockets when it went away).
        """
        self._sockets.clear()
        self._members.clear()
        self._plain.clear()
        self._batched.clear()
        self._users.clear()
        self._pending_joined.clear()
        self._pending_left.clear()
        self._batched_joins = 0
        self.presence_due = None
        self.room_id = snapshot.room_id
        self._user_entries = {}
        self._user_json = {}
        self._users_json = None
        for entry in snapshot.users:
            self._add_view(entry)
        self._history.clear()
        self._history.extend(snapshot.history[-self.history_cap :])
        self._last_message_id = snapshot.last_message_id

    @property
    def last_message_id(self) -> int:
        """The newest ``messageId`` this server has read from the log."""
        return self._last_message_id

    def holdings(self) -> list[tuple[str, str, str | None, bool]]:
        """The ids held here: ``(id, username, token, has an open socket)``."""
        return [(u.id, u.username, u.token, bool(u.sockets)) for u in self._users.values()]

    # ------------------------------------------------------------ sockets -> tasks

    def _connect(self, socket: Socket, state: _SocketState, event: Connecting) -> Outcome:
        if state.user_id is not None:
            raise ProtocolError(ErrorCode.ALREADY_CONNECTED, "this socket already sent connecting")
        user = self._users.get(event.id)
        if user is not None and user.sockets:
            # Another tab on this server: the id is held here already.
            if not _same_token(event.token, user.token):
                raise _id_taken(event.id)
            return self._join(socket, state, event, user, was_page_reload=False, claim=None)
        return Outcome(tasks=[Claim(socket, event, self._recover_after(event))])

    def _write(self, socket: Socket, state: _SocketState, event: WriteMessage) -> Outcome:
        if state.user_id is None:
            raise ProtocolError(ErrorCode.NOT_CONNECTED, "send connecting first")
        user = self._users[state.user_id]
        text = self._filter(user.username, event.message) if self._filter else event.message
        draft: MessageEntry = {
            "messageId": 0,  # the backplane numbers it
            "id": user.id,
            "username": user.username,
            "message": text,
            "ts": iso_utc(self.clock.time()),
        }
        if event.client_message_id is not None:
            draft["clientMessageId"] = event.client_message_id
        return Outcome(tasks=[Append(socket, draft, _digest(event.message).hex(), event.message)])

    def close(self, socket: Socket) -> Outcome:
        """A socket closed. The id's last socket here starts its grace (a task)."""
        state = self._forget(socket)
        if state is None or state.user_id is None:
            return Outcome()
        user = self._users.get(state.user_id)
        if user is None:
            return Outcome()
        user.sockets.discard(socket)
        if user.sockets:
            return Outcome()
        return self._start_grace(user)

    def _start_grace(self, user: _User) -> Outcome:
        outcome = Outcome(tasks=[MarkGrace(user.id)])
        if self.grace == 0:
            outcome.extend(self._depart(user))
        else:
            user.grace_deadline = self.clock.monotonic() + self.grace
        return outcome

    def _depart(self, user: _User) -> Outcome:
        # Nobody is told here: the backplane logs the leave if no other server holds the id.
        del self._users[user.id]
        return Outcome(tasks=[Release(user.id)])

    # ------------------------------------------------------------ answers -> sockets

    def claimed(self, claim: Claim, result: ClaimResult) -> Outcome:
        """The backplane answered a :class:`Claim`: send ``connected``, or refuse."""
        socket, event = claim.socket, claim.event
        state = self._sockets.get(socket)
        if result.status == "taken":
            if state is None:
                return Outcome()
            return self._refuse(socket, state, _id_taken(event.id))
        user = self._users.get(event.id)
        if user is None:
            user = self._users[event.id] = _User(event.id, result.username, result.token)
        else:
            user.username, user.token = result.username, result.token
        if state is None or state.user_id is not None:
            # The socket closed while its claim was out: the id is held here with no socket.
            return self._start_grace(user) if not user.sockets else Outcome()
        reload = result.status == "reload" and not user.sockets
        return self._join(socket, state, event, user, was_page_reload=reload, claim=result)

    def appended(self, append: Append, result: AppendResult) -> Outcome:
        """The backplane answered an :class:`Append`.

        A stored message reaches every socket through the log. A resend of an
        accepted message is acknowledged again, to its socket only; a reused
        ``clientMessageId`` with another text is refused (``duplicate_id``).
        """
        if result.stored:
            return Outcome()
        socket = append.socket
        state = self._sockets.get(socket)
        if state is None:
            return Outcome()
        if result.digest != append.digest:
            return self._refuse(socket, state, _reused_id(append.draft.get("clientMessageId")))
        entry = self._kept(result.message_id) or result.entry
        if entry is None:  # gone from the log too: the same text under its stored id and time
            entry = {**append.draft, "messageId": result.message_id, "message": append.sent}
            entry["ts"] = result.ts
        return Outcome([Send((socket,), MessageWritten(entry))])

    # ------------------------------------------------------------ the log -> sockets

    def deliver(self, entry: MessageEntry) -> Outcome:
        """A message from the log: every member gets it, in ``messageId`` order."""
        if entry["messageId"] <= self._last_message_id:
            return Outcome()  # read already (a snapshot may overlap the log)
        self._last_message_id = entry["messageId"]
        self._history.append(entry)
        outcome = Outcome()
        if entry["id"] in self._pending_joined:
            # Nobody reads a message from a user they were not told about yet.
            outcome = self.flush_presence()
        if self._members:
            outcome.sends.append(Send(tuple(self._members), MessageWritten(entry)))
        return outcome

    def log_joined(self, entry: UserEntry) -> Outcome:
        """The log says a user joined (on any server): tell this server's sockets."""
        if entry["id"] in self._user_entries:
            return Outcome()
        self._add_view(entry)
        user = self._users.get(entry["id"])
        own = user.sockets if user is not None else set()
        self._batch_joined(entry, own)
        to = tuple(s for s in self._plain if s not in own)  # its own sockets listed it already
        if not to:
            return Outcome()
        return Outcome([Send(to, Joined(entry["id"], entry["username"]))])

    def log_left(self, entry: UserEntry) -> Outcome:
        """The log says a user left (their grace ran out everywhere): tell this server's sockets."""
        if entry["id"] not in self._user_entries:
            return Outcome()
        del self._user_entries[entry["id"]]
        del self._user_json[entry["id"]]
        self._users_json = None
        self._batch_left(entry)
        if not self._plain:
            return Outcome()
        return Outcome([Send(tuple(self._plain), Disconnected(entry["id"], entry["username"]))])

    def adopt(self, entries: Iterable[UserEntry]) -> Outcome:
        """Run the grace of users whose server died: the backplane handed their hold here.

        They are present until the grace runs out (then a :class:`Release` each),
        unless they reconnect, here or on any server.
        """
        deadline = self.clock.monotonic() + self.grace
        for entry in entries:
            if entry["id"] not in self._users:
                user = _User(entry["id"], entry["username"], None, grace_deadline=deadline)
                self._users[entry["id"]] = user
        return Outcome()

    # ------------------------------------------------------------ helpers

    def _join(
        self,
        socket: Socket,
        state: _SocketState,
        event: Connecting,
        user: _User,
        *,
        was_page_reload: bool,
        claim: ClaimResult | None,
    ) -> Outcome:
        user.grace_deadline = None
        self._seat(socket, state, user, event)
        first_page, rest, truncated = self._shared_recovery(event, claim)
        if self._users_json is None:
            self._users_json = "[" + ",".join(self._user_json.values()) + "]"
        entries, users_json = list(self._user_entries.values()), self._users_json
        if user.id not in self._user_entries:
            # Its own join is still on its way through the log: list it already.
            entries.append(user.entry())
            own = _compact(user.entry())
            users_json = f"[{own}]" if not self._user_json else f"{users_json[:-1]},{own}]"
        connected = Connected(
            id=user.id,
            username=user.username,
            token=user.token,
            connected_user_list=entries,
            messages_list=first_page,
            was_page_reload=was_page_reload,
            room_id=self.room_id,
            truncated=truncated,
            users_json=users_json,
        )
        outcome = Outcome([Send((socket,), connected)])
        outcome.sends.extend(Send((socket,), MessageWritten(entry)) for entry in rest)
        return outcome

    def _recover_after(self, event: Connecting) -> int | None:
        """The ``lastMessageId`` to recover from the log, or None if this server keeps enough."""
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != self.room_id):
            return None
        oldest_kept = self._history[0]["messageId"] if self._history else self._last_message_id + 1
        return last if oldest_kept > last + 1 else None

    def _shared_recovery(
        self, event: Connecting, claim: ClaimResult | None
    ) -> tuple[list[MessageEntry], list[MessageEntry], bool]:
        """The first page, the entries after it, and whether some are missing.

        The fetched messages go no further than this server has read from the log:
        the newer ones reach the socket through the log like everyone's.
        """
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != self.room_id):
            return self.history, [], False
        fetched = [
            e
            for e in (claim.older if claim else [])
            if last < e["messageId"] <= self._last_message_id
        ]
        after = fetched[-1]["messageId"] if fetched else last
        newer = [e for e in self._history if e["messageId"] > after]
        complete = (claim.complete if claim else True) and (
            not newer or newer[0]["messageId"] == after + 1
        )
        found = fetched + newer
        cap = self.history_cap
        return found[:cap], found[cap:], not complete

    def _kept(self, message_id: int) -> MessageEntry | None:
        for entry in reversed(self._history):
            if entry["messageId"] == message_id:
                return entry
            if entry["messageId"] < message_id:
                break
        return None

    def _add_view(self, entry: UserEntry) -> None:
        entry = {"id": entry["id"], "username": entry["username"]}
        self._user_entries[entry["id"]] = entry
        self._user_json[entry["id"]] = _compact(entry)
        self._users_json = None

    def present_ids(self) -> Collection[str]:
        """The ids of the chat's present users, as this server's view has them."""
        return self._user_entries.keys()


def _compact(entry: UserEntry) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)

"""The classroom's rules: hub identities, roles, the teacher's events and progress.

Pure: no asyncio, no sockets, no threads. :class:`ClassRoom` is a
:class:`~wslab.room.Room` for classroom mode (``python -m wslab serve --hub``): the
server tells it which hub user each socket belongs to (:meth:`ClassRoom.admit`,
decided by the hub before the socket existed) and the room applies these rules on
top of the plain room's, through the hooks :class:`~wslab.room.Room` offers a room
with more events (:meth:`~wslab.room.Room.handle`, :meth:`~wslab.room.Room.welcome`)::

    connecting        id, username, token ignored: the socket is its hub user;
                      "connected" carries "role", and a teacher's "progressList"
    writeMessage      a muted user's gets error "muted" (not a strike), nothing stored
    mute / unmute id  teachers only; every socket gets "muted" / "unmuted"
    kick id           teachers only; that user's sockets close with 4003, and
                      kicked_until(id) keeps their handshakes out for kick_seconds
    clear             teachers only; history emptied, the chat goes on in a new
                      room id (recovery starts from the clear); every socket gets "cleared"
    announce message  teachers only; a message to all marked "announcement": true
    progress          anyone; the newest per (user, exercise) is kept, teachers'
                      sockets get it live, students never see anyone else's

A teacher's event from a student is answered with ``error`` ``forbidden`` (a strike,
as any protocol error). A hub user's name is their chat id and username; no chat
tokens are issued (the hub decides who a socket is).

Not thread-safe: call it from one thread (the server's loop thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, Literal

from .clock import iso_utc
from .engine import MemoryEngine
from .options import DEFAULT_CLASSROOM, DEFAULT_LIMITS, ClassroomOptions
from .protocol import (
    Announce,
    ClassroomEvent,
    Clear,
    Cleared,
    CloseCode,
    Connected,
    Connecting,
    ErrorCode,
    Kick,
    MessageEntry,
    Mute,
    Muted,
    Progress,
    ProgressEntry,
    ProgressReport,
    ProtocolError,
    Unmuted,
    WriteMessage,
    parse_classroom_event,
)
from .room import CloseSocket, Outcome, Room, Send

__all__ = ["KICK_SECONDS", "MAX_EXERCISES_PER_USER", "ClassRoom", "Role"]

Socket = Hashable
Role = Literal["teacher", "student"]

#: How long a kicked user's handshakes are refused, in seconds (``--kick-seconds``).
KICK_SECONDS = DEFAULT_CLASSROOM.kick_seconds
#: Exercises whose newest verdict is kept per user (the oldest verdict goes first).
MAX_EXERCISES_PER_USER = 256

#: The reason of a kick's close frame.
REMOVED_REASON = "removed by the teacher"


class ClassRoom(Room):
    """A room whose users are hub users, with teachers. See the module docstring.

    Args:
        kick_seconds: how long :meth:`kicked_until` keeps a kicked user out
            (:class:`~wslab.options.ClassroomOptions`).
        max_bindings, dedupe_per_id: the memory engine's (:class:`~wslab.options.Limits`).
        **options: the plain :class:`~wslab.room.Room`'s (``grace``, ``history``,
            ``clock``...), but not ``store``, ``seed_compatible``, ``token_factory``
            or ``engine``: a classroom is one server, in memory, without chat tokens.
    """

    def __init__(
        self,
        *,
        kick_seconds: float = DEFAULT_CLASSROOM.kick_seconds,
        max_bindings: int = DEFAULT_LIMITS.max_bindings,
        dedupe_per_id: int = DEFAULT_LIMITS.dedupe_per_id,
        **options: Any,
    ) -> None:
        ClassroomOptions.check(kick_seconds=kick_seconds)
        engine = MemoryEngine(
            trust_ids=True,  # the hub decided who each socket is: no chat tokens
            max_bindings=max_bindings,
            dedupe_per_id=dedupe_per_id,
        )
        super().__init__(
            engine=engine, max_bindings=max_bindings, dedupe_per_id=dedupe_per_id, **options
        )
        self.kick_seconds = kick_seconds
        self._hub_users: dict[Socket, tuple[str, Role]] = {}
        self._muted: set[str] = set()
        self._kicked: dict[str, float] = {}  # name -> clock.monotonic() it may come back
        self._progress: dict[str, dict[str, ProgressEntry]] = {}  # name -> exercise -> entry

    # ------------------------------------------------------------------ the server's side

    def admit(self, socket: Socket, name: str, role: Role) -> None:
        """The hub says ``socket`` (about to be opened) is hub user ``name`` with ``role``."""
        self._hub_users[socket] = (name, role)

    def kicked_until(self, name: str) -> float | None:
        """When a kicked user may connect again (clock seconds), or ``None``: they may now."""
        until = self._kicked.get(name)
        if until is not None and until <= self.clock.monotonic():
            del self._kicked[name]
            return None
        return until

    def close(self, socket: Socket) -> Outcome:
        """A socket closed: as in the plain room, and its hub user is forgotten."""
        outcome = super().close(socket)
        self._hub_users.pop(socket, None)
        return outcome

    # ------------------------------------------------------------------ queries

    @property
    def muted(self) -> list[str]:
        """The names of the muted users, sorted."""
        return sorted(self._muted)

    def role_of(self, socket: Socket) -> Role | None:
        """The role of a socket's hub user, or ``None`` for a socket it was not told of."""
        known = self._hub_users.get(socket)
        return known[1] if known else None

    def progress(self) -> list[ProgressEntry]:
        """The newest verdict per user and exercise, by user then exercise."""
        return [entry for _, done in sorted(self._progress.items()) for entry in done.values()]

    # ------------------------------------------------------------------ the rules

    def handle(self, socket: Socket, data: str | bytes) -> Outcome:
        """The plain room's events as the hub user, the classroom's by the rules above."""
        event = parse_classroom_event(data)
        known = self._hub_users.get(socket)
        if known is None:  # not admitted by the server: nobody may use it
            raise ProtocolError(ErrorCode.FORBIDDEN, "this socket has no hub user")
        name, role = known
        if isinstance(event, Connecting):
            hub_user = dataclasses.replace(event, id=name, username=name, token=None)
            return self.connect(socket, hub_user)
        if self.user_of(socket) is None:
            raise ProtocolError(ErrorCode.NOT_CONNECTED, "send connecting first")
        if isinstance(event, WriteMessage):
            if name in self._muted:
                raise ProtocolError(ErrorCode.MUTED, "a teacher muted you; nothing was stored")
            return self.write(socket, event)
        if isinstance(event, Progress):
            return self._note_progress(name, event)
        if role != "teacher":
            raise ProtocolError(ErrorCode.FORBIDDEN, f"only a teacher may send {_name(event)}")
        return self._teach(socket, name, event)

    def _teach(self, socket: Socket, name: str, event: ClassroomEvent) -> Outcome:
        """A teacher's event (``progress`` is not one)."""
        everyone = self.members
        if isinstance(event, Mute):
            self._muted.add(event.id)
            return Outcome([Send(everyone, Muted(event.id, event.id))])
        if isinstance(event, Kick):
            return self._kick(event.id)
        if isinstance(event, Clear):
            # A new room id: a client coming back with a lastMessageId from before the
            # clear gets what is kept (nothing older), not a gap to recover.
            return Outcome([Send(everyone, Cleared(self.clear_history()))])
        if isinstance(event, Announce):
            draft: MessageEntry = {
                "messageId": 0,
                "id": name,
                "username": name,
                "message": event.message,
                "ts": iso_utc(self.clock.time()),
                "announcement": True,
            }
            return self.post(socket, draft)
        assert not isinstance(event, Progress)
        self._muted.discard(event.id)
        return Outcome([Send(everyone, Unmuted(event.id, event.id))])

    def _kick(self, name: str) -> Outcome:
        self._kicked[name] = self.clock.monotonic() + self.kick_seconds
        closes = [CloseSocket(s, CloseCode.REMOVED, REMOVED_REASON) for s in self.sockets_of(name)]
        return Outcome(closes=closes)

    def _note_progress(self, name: str, event: Progress) -> Outcome:
        done = self._progress.setdefault(name, {})
        done.pop(event.exercise, None)  # the newest last
        entry: ProgressEntry = {
            "id": name,
            "username": name,
            "exercise": event.exercise,
            "passed": event.passed,
            "ts": iso_utc(self.clock.time()),
        }
        done[event.exercise] = entry
        if len(done) > MAX_EXERCISES_PER_USER:
            del done[next(iter(done))]
        teachers = tuple(s for s in self.members if self.role_of(s) == "teacher")
        return Outcome([Send(teachers, ProgressReport(entry))] if teachers else [])

    def welcome(self, socket: Socket, connected: Connected) -> Connected:
        """The plain room's ``connected``, with the role and a teacher's progress list."""
        role = self.role_of(socket)
        progress = self.progress() if role == "teacher" else None
        return dataclasses.replace(connected, role=role, progress_list=progress)


def _name(event: ClassroomEvent) -> str:
    """The wire name of a classroom event: ``mute``, ``kick``..."""
    return str(event.to_dict()["event"])

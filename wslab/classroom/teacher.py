"""A teacher's hand on the class chat: the moderation events and the class's verdicts.

:class:`Teacher` wraps a :class:`~wslab.client.ChatClient` connected as a teacher
(a hub admin, or a member of a group the service names with ``--teachers``):

    await teacher.mute("ada") / unmute / kick     one user, by hub name
    await teacher.clear()                         the history, for everyone
    await teacher.announce("Break until 11:00")   a message marked as an announcement
    teacher.table()                               the verdicts: students x exercises

Each action sends one event and returns; the chat answers every socket (``muted``,
``unmuted``, ``cleared``, an announcement's ``messageWritten``), which the client
keeps (:attr:`ChatClient.muted`, ...), or refuses it to a student with ``error``
``forbidden``. A kick closes that user's sockets with 4003, a close their client
does not retry. :func:`progress_table` turns the verdicts into rows, the same data
the board (:mod:`wslab.classroom.widget`) draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..client import ChatClient
from ..errors import ClassroomError
from ..protocol import Announce, ClassroomEvent, Clear, Kick, Mute, ProgressEntry, Unmute, encode
from .join import address

__all__ = ["ProgressRow", "Teacher", "progress_table", "teacher"]


@dataclass(frozen=True)
class ProgressRow:
    """One student's row of the board: who, whether present and muted, their verdicts."""

    id: str
    username: str
    online: bool
    muted: bool
    #: exercise -> passed, the newest verdict of each exercise the student checked.
    verdicts: Mapping[str, bool] = field(default_factory=dict)


def progress_table(
    progress: Mapping[tuple[str, str], ProgressEntry],
    online: Mapping[str, str],
    muted: Mapping[str, str],
    *,
    leave_out: str | None = None,
) -> tuple[list[str], list[ProgressRow]]:
    """The class as a table: the exercises (in the order first seen) and one row per user.

    A user is a row if they are online or sent a verdict, sorted by name;
    ``leave_out`` (the teacher's own id) is not. Pure: any thread.
    """
    exercises: dict[str, None] = {}
    verdicts: dict[str, dict[str, bool]] = {}
    names = dict(online)
    for (user_id, exercise), entry in progress.items():
        exercises.setdefault(exercise, None)
        verdicts.setdefault(user_id, {})[exercise] = entry["passed"]
        names.setdefault(user_id, entry["username"])
    rows = [
        ProgressRow(user_id, name, user_id in online, user_id in muted, verdicts.get(user_id, {}))
        for user_id, name in names.items()
        if user_id != leave_out
    ]
    rows.sort(key=lambda row: (row.username.casefold(), row.id))
    return list(exercises), rows


class Teacher:
    """The teacher's actions and view over a client of the class chat. See the module text.

    Args:
        client: a :class:`~wslab.client.ChatClient` of the class chat, connected
            (or connected by :meth:`connect`) with a teacher's hub token.

    Every method runs on the client's loop; call it from that loop's thread only
    (a cell, in a notebook).
    """

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    async def connect(self, timeout: float | None = 10.0) -> Teacher:
        """Join the class chat; return this teacher.

        Raises:
            ClassroomError: the hub user is not a teacher of this class (the
                client is closed again).
            ChatConnectionError, TimeoutError: as :meth:`ChatClient.connect`.
        """
        await self.client.connect(timeout)
        if self.client.role != "teacher":
            await self.client.close()
            raise ClassroomError(
                f"{self.client.username} is a {self.client.role or 'user'} of this chat, not a"
                " teacher: the hub's admins and the --teachers groups are"
            )
        return self

    async def mute(self, user_id: str) -> None:
        """Mute a user: their messages are refused until :meth:`unmute`."""
        await self._send(Mute(user_id))

    async def unmute(self, user_id: str) -> None:
        """Let a muted user write again."""
        await self._send(Unmute(user_id))

    async def kick(self, user_id: str) -> None:
        """Close a user's sockets with 4003; the chat refuses them for a while."""
        await self._send(Kick(user_id))

    async def clear(self) -> None:
        """Empty the history for everyone."""
        await self._send(Clear())

    async def announce(self, text: str) -> None:
        """Send ``text`` to everyone as an announcement."""
        await self._send(Announce(text))

    async def close(self) -> None:
        """Close the client. Safe to repeat."""
        await self.client.close()

    def table(self) -> tuple[list[str], list[ProgressRow]]:
        """The verdicts as :func:`progress_table` gives them: exercises, rows."""
        client = self.client
        return progress_table(client.progress, client.users, client.muted, leave_out=client.id)

    @property
    def progress(self) -> dict[str, dict[str, bool]]:
        """The verdicts as data: student name -> exercise -> passed (the newest of each)."""
        return {row.username: dict(row.verdicts) for row in self.table()[1] if row.verdicts}

    async def _send(self, event: ClassroomEvent) -> None:
        """Send one event. Raises :class:`~wslab.errors.ChatConnectionError` when offline."""
        await self.client.send_raw(encode(event))

    def __repr__(self) -> str:
        return f"<Teacher {self.client.username!r} {self.client.status}>"


def teacher(service: str | None = None, **options: Any) -> Teacher:
    """A :class:`Teacher` for the class chat, as the hub user; not connected.

    ``await teacher().connect()`` joins. Blocking (one hub request at most, see
    :func:`~wslab.classroom.join.address`); call it from the loop that will run it.
    """
    return Teacher(address(service).client(features=("presence",), **options))

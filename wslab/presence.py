"""Who is present in a chat, as a room's sockets were told, and the batched diff. Pure.

A :class:`~wslab.room.Room` keeps one :class:`PresenceView`: the present users in
order of arrival (with their JSON, so that a newcomer's ``connectedUserList`` costs
a list copy and a string join, not N encodings), and the changes the sockets that
announced the ``presence`` feature have not been sent yet (one ``presence`` event
per tick at most).

Not thread-safe: the room's thread only.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Hashable, Iterable

from .clock import Clock
from .protocol import UserEntry, user_entry

__all__ = ["PresenceView"]


class PresenceView:
    """The present users and the pending presence diff. See the module docstring.

    Args:
        tick: seconds over which changes are batched (at most one event per tick);
            the room checked it (``presence_tick`` in :class:`~wslab.options.Timeouts`).
        clock: where time comes from.
    """

    def __init__(self, tick: float, clock: Clock) -> None:
        self.tick = tick
        self.clock = clock
        self._entries: dict[str, UserEntry] = {}
        self._json: dict[str, str] = {}
        self._all_json: str | None = None  # the whole list, until presence changes
        # The diff not yet sent: joins (with batched_joins at that time), and leaves.
        self._joined: dict[str, tuple[UserEntry, int]] = {}
        self._left: dict[str, UserEntry] = {}
        #: Batched sockets that got a user list so far.
        self.batched_joins = 0
        #: When the pending diff must go out (clock seconds), or ``None``.
        self.due: float | None = None

    def reset(self, users: Iterable[UserEntry]) -> None:
        """Start again from this list of present users, with nothing pending."""
        self._entries, self._json, self._all_json = {}, {}, None
        self._joined.clear()
        self._left.clear()
        self.batched_joins = 0
        self.due = None
        for entry in users:
            self.add(entry)

    @property
    def users(self) -> list[UserEntry]:
        """The present users, one per id, by arrival (copies)."""
        return [_copy(e) for e in self._entries.values()]

    @property
    def pending_joins(self) -> Collection[str]:
        """The ids whose join the batched sockets have not been sent yet."""
        return self._joined.keys()

    def add(self, entry: UserEntry) -> bool:
        """A user is present; ``False`` if it was already."""
        if entry["id"] in self._entries:
            return False
        entry = _copy(entry)
        self._entries[entry["id"]] = entry
        self._json[entry["id"]] = _compact(entry)
        self._all_json = None
        return True

    def remove(self, user_id: str) -> bool:
        """A user left; ``False`` if it was not present."""
        if self._entries.pop(user_id, None) is None:
            return False
        del self._json[user_id]
        self._all_json = None
        return True

    def listing(self, newcomer: UserEntry) -> tuple[list[UserEntry], str]:
        """A ``connectedUserList`` and its JSON, ``newcomer`` last if not listed yet."""
        entries = list(self._entries.values())
        if newcomer["id"] not in self._entries:
            # Its own join is still on its way through the log: list it already. (The
            # join changes the list right after: no use keeping this text.)
            entries.append(newcomer)
            return entries, "[" + ",".join([*self._json.values(), _compact(newcomer)]) + "]"
        if self._all_json is None:
            self._all_json = "[" + ",".join(self._json.values()) + "]"
        return entries, self._all_json

    def note_joined(
        self, entry: UserEntry, own: Collection[Hashable], batched: Collection[Hashable]
    ) -> None:
        """Batch a join for the ``batched`` sockets (``own``: the user's, which listed it)."""
        # Batched sockets that join later get the user in their list; only those
        # already there need the diff (the newcomer itself has itself in its list).
        if not batched:
            return
        if len(batched) == 1 and next(iter(batched)) in own:
            return
        self._joined[entry["id"]] = (entry, self.batched_joins)
        self._arm()

    def note_left(self, entry: UserEntry, batched: Collection[Hashable]) -> None:
        """Batch a leave for the ``batched`` sockets."""
        if not batched:
            return
        pending = self._joined.pop(entry["id"], None)
        if pending is not None and pending[1] == self.batched_joins:
            # Joined and left within the tick, and no batched socket got a user list
            # since the join: nobody batched ever saw this user, so nothing to say.
            return
        self._left[entry["id"]] = entry
        self._arm()

    def take_diff(self) -> tuple[list[UserEntry], list[UserEntry]]:
        """The pending ``(joined, left)``, which are then no longer pending."""
        self.due = None
        joined = [entry for entry, _ in self._joined.values()]
        left = list(self._left.values())
        self._joined.clear()
        self._left.clear()
        return joined, left

    def _arm(self) -> None:
        if self.due is None:
            self.due = self.clock.monotonic() + self.tick


def _copy(entry: UserEntry) -> UserEntry:
    """The entry's fields, and no others."""
    return user_entry(entry["id"], entry["username"], entry.get("tag", ""))


def _compact(entry: UserEntry) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)

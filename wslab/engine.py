"""Engines: where a chat room's shared state lives, behind one small interface.

The room (:class:`wslab.room.Room`) holds the rules; an engine holds what must be
one for the whole chat: which ids are bound to which tokens, who holds each id
(an open socket, or a grace), who is present, the numbered messages and the
``clientMessageId`` values already accepted. The room talks to its engine in
*requests*, and learns what changed from the engine's *log*::

    room                         engine                            room
    connecting(x) --Claim-->     token ok, x held:
                                 ClaimResult("new")         ---->  "connected" to the socket
                                 log: joined x              ---->  "joined" to the others
    writeMessage  --Append-->    messageId 7, log: message  ---->  "messageWritten" to all
    last socket closes --MarkGrace-->  x held in grace
    grace runs out --Release-->  nobody holds x, log: left x ---->  "disconnected" to all

Two engines answer these requests:

- :class:`MemoryEngine` keeps everything in this process (optionally writing
  through a :class:`HistoryStore`, such as :class:`wslab.store.SQLiteStore`). It
  answers within the call, so a single server pays nothing for the split. Its
  methods are the readable reference of the Redis engine's Lua scripts, one to
  one: :meth:`~MemoryEngine.claim`, :meth:`~MemoryEngine.append`,
  :meth:`~MemoryEngine.mark_grace`, :meth:`~MemoryEngine.release`.
- :class:`RedisEngine` is the room's side of an engine in Redis, shared by
  several servers: every request is answered later. The server's link
  (:class:`wslab.backplane.BackplaneLink`) runs the request's script
  (:class:`wslab.backplane.RedisBackplane`) and hands the answer back to
  :meth:`Room.answer() <wslab.room.Room.answer>`; the log reaches
  :meth:`Room.read_log() <wslab.room.Room.read_log>` the same way.

Pure: no asyncio, no sockets, no threads. Not thread-safe: one thread (the server's
loop thread) calls an engine and its room.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal, Protocol, TypeAlias

from .display import new_tag_key, user_tag
from .errors import ConfigurationError
from .options import DEFAULT_LIMITS, Limits
from .protocol import Connecting, MessageEntry, UserEntry, user_entry

__all__ = [
    "PENDING",
    "Append",
    "AppendResult",
    "Claim",
    "ClaimResult",
    "Engine",
    "HistoryStore",
    "LoggedJoin",
    "LoggedLeave",
    "LoggedMessage",
    "MarkGrace",
    "MemoryEngine",
    "RedisEngine",
    "Release",
    "Snapshot",
    "digest",
    "new_token",
]

Socket = Hashable


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Claim:
    """Hold ``event.id`` for ``socket``: check or bind its token, say how it stands.

    ``recover_after``: the client came back with this ``lastMessageId`` and the room
    no longer keeps all it missed: fetch the messages after it from the engine.
    """

    socket: Socket
    event: Connecting
    recover_after: int | None = None


@dataclass(frozen=True)
class Append:
    """Store a new message: the engine gives it the next ``messageId`` and logs it.

    ``draft`` is the entry with ``messageId`` 0; ``digest`` a short hash of the text
    as sent when it has a ``clientMessageId`` (a resend's text must match it), and
    ``sent`` that text.
    """

    socket: Socket
    draft: MessageEntry
    digest: str
    sent: str


@dataclass(frozen=True)
class MarkGrace:
    """The id's last socket here closed: its hold is now a grace."""

    user_id: str


@dataclass(frozen=True)
class Release:
    """The id's grace ran out here: let go of it (the last holder's release logs a leave)."""

    user_id: str


Request: TypeAlias = Claim | Append | MarkGrace | Release


# ---------------------------------------------------------------------- answers


@dataclass(frozen=True)
class ClaimResult:
    """The engine's answer to a :class:`Claim`.

    ``status``: ``"new"`` (nobody held the id: the log now says it joined),
    ``"reload"`` (held only in grace), ``"tab"`` (a socket of it is open),
    ``"taken"`` (bound to another token: nothing changed). ``token`` is ``None``
    when the engine trusts ids without tokens (seed-compatible mode). ``username``
    and ``tag`` are the id's entry as the engine keeps it.
    ``older``: the fetched messages (oldest first); ``complete`` is false when the
    engine no longer reaches back to the first one missed.
    """

    status: Literal["new", "reload", "tab", "taken"]
    token: str | None = None
    username: str = ""
    older: list[MessageEntry] = field(default_factory=list)
    complete: bool = True
    tag: str = ""


@dataclass(frozen=True)
class AppendResult:
    """The engine's answer to an :class:`Append`.

    ``stored``: a new message, ``message_id`` its id (it reaches every socket through
    the log). Otherwise its ``clientMessageId`` was accepted before, as
    ``message_id``, for a text whose hash is ``digest``, at ``ts``; ``entry`` is that
    message when the engine still has it.
    """

    stored: bool
    message_id: int
    digest: str = ""
    ts: str = ""
    entry: MessageEntry | None = None


Answer: TypeAlias = ClaimResult | AppendResult | None


class Pending(enum.Enum):
    """The type of :data:`PENDING`."""

    PENDING = "pending"


#: What :meth:`Engine.request` returns when the answer comes later (a remote engine).
PENDING = Pending.PENDING


# ---------------------------------------------------------------------- the log


@dataclass(frozen=True)
class LoggedMessage:
    """The log: a message was stored (on any server), numbered ``entry["messageId"]``."""

    entry: MessageEntry


@dataclass(frozen=True)
class LoggedJoin:
    """The log: nobody held this id, now someone does."""

    user: UserEntry


@dataclass(frozen=True)
class LoggedLeave:
    """The log: the last holder of this id let it go (its grace ran out everywhere)."""

    user: UserEntry


LogEvent: TypeAlias = LoggedMessage | LoggedJoin | LoggedLeave


@dataclass(frozen=True)
class Snapshot:
    """The chat as of one point of the log: where a room starts reading it."""

    room_id: str
    users: list[UserEntry]
    history: list[MessageEntry]
    last_message_id: int
    position: str = ""  # the log entry after which reading goes on (Redis)


# ---------------------------------------------------------------------- the interface


class Engine(Protocol):
    """Where a room's shared state lives. See the module docstring.

    One room per engine object; the thread that calls the room calls its engine.
    """

    def snapshot(self, history: int) -> Snapshot | None:
        """The chat to start from (with at most ``history`` messages), or ``None``:
        it comes later, through :meth:`Room.load() <wslab.room.Room.load>`."""

    def request(self, request: Request) -> Answer | Pending:
        """Carry out ``request`` now and return its answer (``None`` for grace marks
        and releases), or return :data:`PENDING`: the answer comes later, through
        :meth:`Room.answer() <wslab.room.Room.answer>`."""

    def take_log(self) -> list[LogEvent]:
        """What the engine logged since the last call, oldest first."""

    def clear_history(self) -> str:
        """Forget the messages and go on under a new room id, which it returns.

        A client coming back with a ``lastMessageId`` from before then gets what is
        kept, not a gap to recover; ``messageId`` numbers go on growing.

        Raises:
            ConfigurationError: this engine's history is not its own to clear
                (durable in a store, or shared by several servers).
        """


class HistoryStore(Protocol):
    """Durable storage a :class:`MemoryEngine` writes through (see :mod:`wslab.store`)."""

    def room_id(self) -> str:
        """The stored room's id, the same across restarts."""

    def tag_key(self) -> str:
        """The stored room's secret for :func:`wslab.display.user_tag`, made once."""

    def load_messages(self, limit: int) -> list[MessageEntry]:
        """The newest ``limit`` messages, oldest first."""

    def load_messages_after(self, message_id: int, limit: int) -> list[MessageEntry]:
        """Up to ``limit`` messages with a ``messageId`` above ``message_id``, oldest first."""

    def last_message_id(self) -> int:
        """The highest ``messageId`` ever stored, 0 if none."""

    def load_token(self, user_id: str) -> str | None:
        """The token bound to ``user_id``, or ``None`` if it has none."""

    def save_message(self, entry: MessageEntry) -> None:
        """Store and commit one message; return only once it is durable."""

    def save_token(self, user_id: str, token: str) -> None:
        """Store and commit an id's token."""


# ---------------------------------------------------------------------- Redis


class RedisEngine:
    """The room's side of the Redis engine: every request is answered later.

    The server's :class:`~wslab.backplane.BackplaneLink` takes the requests from
    :attr:`Outcome.tasks <wslab.room.Outcome.tasks>`, runs their Lua scripts
    (:class:`~wslab.backplane.RedisBackplane`, whose keys and scripts mirror
    :class:`MemoryEngine`), and hands the answers and the log back to the room.
    """

    def snapshot(self, history: int) -> Snapshot | None:
        return None  # the link loads it from Redis when it connects

    def request(self, request: Request) -> Answer | Pending:
        return PENDING

    def take_log(self) -> list[LogEvent]:
        return []  # the link reads the log from Redis

    def clear_history(self) -> str:
        raise ConfigurationError("a chat on Redis shares its history: one server cannot clear it")


# ---------------------------------------------------------------------- memory


@dataclass(frozen=True)
class _Accepted:
    """What the engine keeps of an accepted ``clientMessageId``: not the message itself."""

    message_id: int
    digest: str  # of the text as sent, to tell a resend from a reused id
    ts: str


class MemoryEngine:
    """An engine in this process: it answers every request within the call.

    Args:
        store: optional durable history and tokens, written through before answering.
        trust_ids: the original design's trust (seed-compatible mode): any
            ``connecting`` gets its id, and no token is issued.
        token_factory: makes identity tokens for ids bound for the first time
            (default :func:`new_token`).
        max_bindings: how many ids it remembers while nobody holds them (their
            token without a store, and their ``clientMessageId`` values), the most
            recently used first. Held ids are always remembered.
        dedupe_per_id: ``clientMessageId`` values remembered per id (the newest).

    One room per engine. Not thread-safe: the room's thread only.
    """

    def __init__(
        self,
        *,
        store: HistoryStore | None = None,
        trust_ids: bool = False,
        token_factory: Callable[[], str] | None = None,
        max_bindings: int = DEFAULT_LIMITS.max_bindings,
        dedupe_per_id: int = DEFAULT_LIMITS.dedupe_per_id,
    ) -> None:
        Limits.check(max_bindings=max_bindings, dedupe_per_id=dedupe_per_id)
        self.store = store
        self.trust_ids = trust_ids
        self.max_bindings = max_bindings
        self.dedupe_per_id = dedupe_per_id
        self._new_token = token_factory or new_token
        self._tokens: OrderedDict[str, str] = OrderedDict()  # Redis: tokens
        self._holds: dict[str, Literal["open", "grace"]] = {}  # Redis: holders:{id}
        self._users: dict[str, UserEntry] = {}  # Redis: users, in order of arrival
        self._seq = 0  # Redis: seq
        self._accepted: OrderedDict[str, OrderedDict[str, _Accepted]] = OrderedDict()
        self._log: list[LogEvent] = []  # Redis: log (here only what the room has not read)
        # Names this chat's history: a client that comes back to another one (a
        # restarted server without a store) must not trust its lastMessageId.
        self.room_id = secrets.token_hex(8)
        #: The secret users' tags are derived with (Redis: tag_key).
        self.tag_key = new_tag_key()
        if store is not None:
            self.room_id = store.room_id()
            self.tag_key = store.tag_key()
            self._seq = store.last_message_id()
            # The newest messages rebuild the de-duplication memory, so that a client
            # resending across a restart is acknowledged, not stored twice.
            for entry in store.load_messages(_DEDUPE_RELOAD):
                cmid = entry.get("clientMessageId")
                if cmid is not None:
                    self._remember(entry["id"], cmid, entry, digest(entry["message"]))

    # ------------------------------------------------------------ the interface

    def snapshot(self, history: int) -> Snapshot:
        kept = self.store.load_messages(history) if self.store is not None else []
        return Snapshot(self.room_id, list(self._users.values()), kept, self._seq)

    def request(self, request: Request) -> Answer:
        if isinstance(request, Append):  # the most frequent request first
            return self.append(request)
        if isinstance(request, Claim):
            return self.claim(request)
        if isinstance(request, MarkGrace):
            self.mark_grace(request.user_id)
        else:
            self.release(request.user_id)
        return None

    def take_log(self) -> list[LogEvent]:
        logged, self._log = self._log, []
        return logged

    def clear_history(self) -> str:
        if self.store is not None:
            raise ConfigurationError("a chat with a store keeps its history: it is not cleared")
        self.room_id = secrets.token_hex(8)
        return self.room_id

    # ------------------------------------------------------------ the scripts

    def claim(self, claim: Claim) -> ClaimResult:
        """Check or bind the id's token, hold it, log a join if nobody held it."""
        event = claim.event
        user_id = event.id
        token: str | None = None
        if not self.trust_ids:
            token = self._token_of(user_id)
            if token is None:
                token = self._new_token()
                self._bind(user_id, token)
            elif not _same_token(event.token, token):
                return ClaimResult("taken")
        held = self._holds.get(user_id)
        status: Literal["new", "reload", "tab"] = (
            "new" if held is None else "tab" if held == "open" else "reload"
        )
        self._holds[user_id] = "open"
        user = self._users.get(user_id)
        if user is None:
            tag = user_tag(self.tag_key, user_id)
            user = self._users[user_id] = user_entry(user_id, event.username, tag)
            self._log.append(LoggedJoin(user))
        self._touch(user_id)
        older, complete = self._messages_after(claim.recover_after)
        return ClaimResult(status, token, user["username"], older, complete, user.get("tag", ""))

    def mark_grace(self, user_id: str) -> None:
        """The id's last socket closed: its hold becomes a grace."""
        if user_id in self._holds:
            self._holds[user_id] = "grace"

    def release(self, user_id: str) -> None:
        """The id's grace ran out: let it go, and log that it left."""
        if self._holds.get(user_id) != "grace":
            return
        del self._holds[user_id]
        user = self._users.pop(user_id, None)
        if user is not None:
            self._log.append(LoggedLeave(user))
        self._touch(user_id)

    def append(self, append: Append) -> AppendResult:
        """Number, store and log a message, unless its ``clientMessageId`` was accepted."""
        draft = append.draft
        user_id = draft["id"]
        cmid = draft.get("clientMessageId")
        if cmid is not None:
            seen = self._accepted.get(user_id)
            earlier = seen.get(cmid) if seen is not None else None
            if earlier is not None:
                entry = self._stored(earlier.message_id)
                return AppendResult(False, earlier.message_id, earlier.digest, earlier.ts, entry)
        self._seq += 1
        entry = {**draft, "messageId": self._seq}
        if self.store is not None:
            self.store.save_message(entry)  # durable before anyone is told
        if cmid is not None:
            self._remember(user_id, cmid, entry, append.digest)
        self._log.append(LoggedMessage(entry))
        return AppendResult(True, self._seq)

    @property
    def bindings_kept(self) -> int:
        """How many ids nobody holds keep their token in memory (``max_bindings`` at most)."""
        return sum(1 for user_id in self._tokens if user_id not in self._holds)

    def remembered(self, user_id: str) -> list[str]:
        """The ``clientMessageId`` values remembered for an id, oldest first."""
        return list(self._accepted.get(user_id, ()))

    # ------------------------------------------------------------ helpers

    def _token_of(self, user_id: str) -> str | None:
        token = self._tokens.get(user_id)
        if token is None and self.store is not None:
            token = self.store.load_token(user_id)
            if token is not None:
                self._tokens[user_id] = token
        return token

    def _bind(self, user_id: str, token: str) -> None:
        self._tokens[user_id] = token
        if self.store is not None:
            self.store.save_token(user_id, token)

    def _remember(self, user_id: str, cmid: str, entry: MessageEntry, text_digest: str) -> None:
        seen = self._accepted.get(user_id)
        if seen is None:
            seen = self._accepted[user_id] = OrderedDict()
        seen[cmid] = _Accepted(entry["messageId"], text_digest, entry["ts"])
        if len(seen) > self.dedupe_per_id:
            seen.popitem(last=False)
        self._touch(user_id)

    def _stored(self, message_id: int) -> MessageEntry | None:
        if self.store is None:
            return None
        found = self.store.load_messages_after(message_id - 1, 1)
        return found[0] if found and found[0]["messageId"] == message_id else None

    def _messages_after(self, message_id: int | None) -> tuple[list[MessageEntry], bool]:
        """Stored messages after ``message_id``, and whether none is missing."""
        if message_id is None:
            return [], True
        if self.store is None:
            return [], False  # only what the room keeps: the rest is gone
        found: list[MessageEntry] = []
        after = message_id
        while page := self.store.load_messages_after(after, _RECOVERY_PAGE):
            found.extend(page)
            after = page[-1]["messageId"]
        return found, not found or found[0]["messageId"] == message_id + 1

    def _touch(self, user_id: str) -> None:
        """Mark an id as just used; forget the least recently used away ids over the bound."""
        for memory in (self._tokens, self._accepted):
            if user_id in memory:
                memory.move_to_end(user_id)
            excess = len(memory) - self.max_bindings - len(self._holds)
            if excess > 0:
                away = (key for key in memory if key not in self._holds)
                for key in list(islice(away, excess)):
                    del memory[key]


_DEDUPE_RELOAD = 10_000  # messages read back from a store to rebuild de-duplication
_RECOVERY_PAGE = 500  # messages read from the store at a time during recovery


def new_token() -> str:
    """A new identity token: 128 random bits, url-safe text."""
    return secrets.token_urlsafe(16)


def digest(text: str) -> str:
    """A short hash of a message's text as sent, to tell a resend from a reused id."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _same_token(offered: str | None, expected: str) -> bool:
    if offered is None:
        return False
    return secrets.compare_digest(offered.encode(), expected.encode())

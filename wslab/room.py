"""The chat room: one state machine for presence, reload grace, identity, history.

Pure: no asyncio, no sockets, no threads. The server hands the room what
happened on a socket (``open``, ``receive``, ``close``) and asks it to ``expire``
grace timers; the room answers with an :class:`Outcome`: which sockets must get
which event, and which socket must be closed with which code. Sockets are any
hashable handle the caller chooses (the server uses its connection objects,
tests use strings).

Presence in one picture::

    connecting (new id)          -> present, others get "joined"
    connecting (id, token)       -> same user: second tab, or a reload in grace
    last socket closes           -> in grace (still present, nobody told)
    grace runs out               -> gone, others get "disconnected"

Identity: the first ``connecting`` for an id binds it to a token; from then on
only that token claims the id, present or not. Without a store the room keeps
the newest ``max_bindings`` bindings (by last use); with a store, all of them.
The rate limit, like the binding, belongs to the id, not to one socket.

A socket whose ``connecting`` announced ``"features": ["presence"]`` gets presence
changes batched instead: one ``presence`` event per ``presence_tick`` at most, listing
who left and who joined since the last one (the flush is a deadline reported by
:meth:`Room.next_deadline` and carried out by :meth:`Room.expire`). Other sockets keep
one ``joined`` or ``disconnected`` per user. A join storm of N users thus costs about
N ticks' worth of presence frames per socket instead of N frames.

Not thread-safe: call it from one thread (the server's loop thread).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from .clock import Clock, SystemClock, iso_utc
from .protocol import (
    FEATURE_PRESENCE,
    CloseCode,
    Connected,
    Connecting,
    Disconnected,
    ErrorCode,
    ErrorEvent,
    Joined,
    MessageEntry,
    MessageWritten,
    Presence,
    ProtocolError,
    ServerEvent,
    UserEntry,
    WriteMessage,
    parse_client_event,
)

__all__ = [
    "CloseSocket",
    "HistoryStore",
    "Outcome",
    "Room",
    "Send",
    "TokenBucket",
]

Socket = Hashable
MessageFilter = Callable[[str, str], str]


@dataclass(frozen=True)
class Send:
    """Send ``event`` to every socket in ``to`` (serialize it once for all of them)."""

    to: tuple[Socket, ...]
    event: ServerEvent


@dataclass(frozen=True)
class CloseSocket:
    """Close ``socket`` with ``code`` after the sends of the same outcome."""

    socket: Socket
    code: CloseCode
    reason: str


@dataclass
class Outcome:
    """What the caller must do: the sends in order, then at most one close.

    ``tasks`` are requests for the caller beyond sockets: a room shared by several
    servers (:class:`wslab.cluster.SharedRoom`) asks its server to claim ids and
    store messages in the shared backplane this way. A :class:`Room` never sets it.
    """

    sends: list[Send] = field(default_factory=list)
    close: CloseSocket | None = None
    tasks: list[object] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.sends.extend(other.sends)
        self.close = self.close or other.close
        self.tasks.extend(other.tasks)


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; ``False`` means: over the limit."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class HistoryStore(Protocol):
    """Durable storage the room writes through (see :mod:`wslab.store`)."""

    def room_id(self) -> str:
        """The stored room's id, the same across restarts."""

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


@dataclass
class _User:
    id: str
    username: str
    token: str | None  # None in seed-compatible mode
    sockets: set[Socket] = field(default_factory=set)
    grace_deadline: float | None = None  # set while no socket is open

    def entry(self) -> UserEntry:
        return {"id": self.id, "username": self.username}


@dataclass
class _SocketState:
    bucket: TokenBucket | None  # for frames before "connecting"; then the id's bucket
    user_id: str | None = None  # set by a successful "connecting"
    strikes: int = 0
    limited: bool = False  # inside a run of rate-limited frames


class Room:
    """The chat room state machine. See the module docstring.

    Args:
        grace: seconds an id stays present after its last socket closed (0 allowed).
        history: how many messages ``connected`` and seed-mode events carry.
        rate_limit: frames per second per id, all its sockets together (0 turns the
            limit off); a socket that has not joined yet has a bucket of its own.
        rate_burst: frames an id may send at once before the rate applies.
        max_strikes: protocol errors after which a socket is closed with 1008.
        max_clients: open sockets beyond which a new one is closed with 1013.
        seed_compatible: behave like the original design (full ``messagesList`` in
            every ``messageWritten``, tokens ignored and none issued).
        clock: where time comes from (:class:`~wslab.clock.FakeClock` in tests).
        token_factory: makes identity tokens (default: 128 random bits, url-safe).
        message_filter: ``f(username, text) -> text`` applied to each new message;
            if it raises, the exception propagates (the server closes with 1011).
        store: optional durable history and tokens.
        dedupe_per_id: how many ``clientMessageId`` values are remembered per id
            (the newest ones).
        max_bindings: how many ids the room remembers while they are away (their
            token without a store, their rate bucket and ``clientMessageId`` values),
            the most recently used first. Present users are always remembered.
        presence_tick: seconds over which presence changes are batched for sockets
            that announced the ``presence`` feature (at most one event per tick).
    """

    def __init__(
        self,
        *,
        grace: float = 1.0,
        history: int = 100,
        rate_limit: float = 20.0,
        rate_burst: float = 40.0,
        max_strikes: int = 10,
        max_clients: int = 1000,
        seed_compatible: bool = False,
        clock: Clock | None = None,
        token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(16),
        message_filter: MessageFilter | None = None,
        store: HistoryStore | None = None,
        dedupe_per_id: int = 100,
        max_bindings: int = 10_000,
        presence_tick: float = 0.05,
    ) -> None:
        if grace < 0:
            raise ValueError("grace must be >= 0")
        if presence_tick < 0:
            raise ValueError("presence_tick must be >= 0")
        if history < 1:
            raise ValueError("history must be >= 1")
        if dedupe_per_id < 1 or max_bindings < 1:
            raise ValueError("dedupe_per_id and max_bindings must be >= 1")
        self.grace = grace
        self.history_cap = history
        self.rate_limit = rate_limit
        self.rate_burst = max(rate_burst, 1.0)
        self.max_strikes = max_strikes
        self.max_clients = max_clients
        self.seed_compatible = seed_compatible
        self.clock: Clock = clock or SystemClock()
        self._new_token = token_factory
        self._filter = message_filter
        self._store = store
        self.dedupe_per_id = dedupe_per_id
        self.max_bindings = max_bindings
        self.presence_tick = presence_tick

        self._sockets: dict[Socket, _SocketState] = {}
        self._members: dict[Socket, None] = {}  # sockets past "connecting", in order
        self._plain: dict[Socket, None] = {}  # members that get one event per user
        self._batched: dict[Socket, None] = {}  # members that get "presence" per tick
        # The presence diff not yet sent to the batched members.
        self._pending_joined: dict[str, tuple[UserEntry, int]] = {}  # entry, _batched_joins
        self._pending_left: dict[str, UserEntry] = {}
        self._batched_joins = 0  # batched sockets that got a user list so far
        self.presence_due: float | None = None  # when the pending diff must go out
        self._users: dict[str, _User] = {}  # present ids, in order of arrival
        # What the room remembers of ids, least recently used first, each bounded by
        # max_bindings: the tokens of away ids (only without a store: the store keeps
        # them all), rate buckets, and per id the newest clientMessageIds.
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._accepted: OrderedDict[str, OrderedDict[str, _Accepted]] = OrderedDict()
        # The present users' entries and their JSON, kept beside _users so that a
        # newcomer's connectedUserList costs a list copy and a join, not N encodings.
        self._user_entries: dict[str, UserEntry] = {}
        self._user_json: dict[str, str] = {}
        self._users_json: str | None = None  # the whole list, until presence changes
        self._history: deque[MessageEntry] = deque(maxlen=history)
        self._last_message_id = 0
        # Names this room's history: a client that comes back to a different room
        # (a restarted server without a store) must not trust its lastMessageId.
        self.room_id = secrets.token_hex(8)
        if store is not None:
            self._load(store)

    def _load(self, store: HistoryStore) -> None:
        self.room_id = store.room_id()
        self._last_message_id = store.last_message_id()
        # The newest messages rebuild the history and the de-duplication memory, so
        # that a client resending across a restart is still acknowledged, not stored twice.
        for entry in store.load_messages(max(self.history_cap, _DEDUPE_RELOAD)):
            self._remember(entry)

    # ------------------------------------------------------------------ queries

    @property
    def users(self) -> list[UserEntry]:
        """Present users (online or inside their grace), one per id, by arrival."""
        return [{"id": e["id"], "username": e["username"]} for e in self._user_entries.values()]

    @property
    def history(self) -> list[MessageEntry]:
        """The kept history, oldest first."""
        return list(self._history)

    @property
    def socket_count(self) -> int:
        """Open sockets, whether or not they have sent ``connecting``."""
        return len(self._sockets)

    def sockets_of(self, user_id: str) -> list[Socket]:
        """The open sockets of an id (several for several tabs)."""
        user = self._users.get(user_id)
        return list(user.sockets) if user else []

    def user_of(self, socket: Socket) -> str | None:
        """The id a socket connected as, or ``None`` before ``connecting``."""
        state = self._sockets.get(socket)
        return state.user_id if state else None

    def next_deadline(self) -> float | None:
        """The earliest grace deadline or presence flush (clock seconds), or ``None``."""
        deadlines = [u.grace_deadline for u in self._users.values() if u.grace_deadline]
        if self.presence_due is not None:
            deadlines.append(self.presence_due)
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ inputs

    def open(self, socket: Socket) -> Outcome:
        """A socket opened. Closes it with 1013 when the room is full."""
        if len(self._sockets) >= self.max_clients:
            reason = f"server full ({self.max_clients} clients); try again later"
            return Outcome(close=CloseSocket(socket, CloseCode.TRY_AGAIN_LATER, reason))
        self._sockets[socket] = _SocketState(bucket=self._new_bucket())
        return Outcome()

    def receive(self, socket: Socket, data: str | bytes) -> Outcome:
        """A socket sent a frame (text or binary). Bad input becomes an ``error``."""
        state = self._sockets.get(socket)
        if state is None:
            return Outcome()  # closed or refused already: nothing to answer
        bucket = state.bucket if state.user_id is None else self._bucket_of(state.user_id)
        if bucket is not None and not bucket.take(self.clock.monotonic()):
            if state.limited:
                return Outcome()  # one error per run of dropped frames, not one each
            state.limited = True
            detail = f"over {self.rate_limit:g} messages/s per user; this message was dropped"
            return Outcome([Send((socket,), ErrorEvent(ErrorCode.RATE_LIMITED, detail))])
        state.limited = False
        try:
            event = parse_client_event(data)
            if isinstance(event, Connecting):
                return self._connect(socket, state, event)
            return self._write(socket, state, event)
        except ProtocolError as error:
            return self._refuse(socket, state, error)

    def close(self, socket: Socket) -> Outcome:
        """A socket closed (cleanly or not). Starts the grace of its id if it was the last."""
        state = self._forget(socket)
        if state is None or state.user_id is None:
            return Outcome()
        user = self._users[state.user_id]
        user.sockets.discard(socket)
        if user.sockets:
            return Outcome()  # another tab of the same id is still open
        if self.grace == 0:
            return self._depart(user)
        user.grace_deadline = self.clock.monotonic() + self.grace
        return Outcome()

    def _seat(self, socket: Socket, state: _SocketState, user: _User, event: Connecting) -> None:
        """A socket joined as ``user``: a member from now on, batched if it asked for it."""
        user.sockets.add(socket)
        state.user_id = user.id
        state.bucket = None  # from now on the id's bucket counts this socket's frames
        self._touch(user.id)
        self._members[socket] = None
        if FEATURE_PRESENCE in event.features:
            self._batched[socket] = None
            self._batched_joins += 1
        else:
            self._plain[socket] = None

    def _forget(self, socket: Socket) -> _SocketState | None:
        """Take a socket out of every set; return what the room knew of it."""
        self._members.pop(socket, None)
        self._plain.pop(socket, None)
        self._batched.pop(socket, None)
        return self._sockets.pop(socket, None)

    def expire(self) -> Outcome:
        """End every grace that ran out (``disconnected``); send a due presence diff."""
        now = self.clock.monotonic()
        outcome = Outcome()
        due = [u for u in self._users.values() if u.grace_deadline and u.grace_deadline <= now]
        for user in sorted(due, key=lambda u: u.grace_deadline or 0.0):
            outcome.extend(self._depart(user))
        if self.presence_due is not None and self.presence_due <= now:
            outcome.extend(self.flush_presence())
        return outcome

    def flush_presence(self) -> Outcome:
        """Send the pending presence diff to the batched sockets now, if there is one."""
        self.presence_due = None
        joined = [entry for entry, _ in self._pending_joined.values()]
        left = list(self._pending_left.values())
        self._pending_joined.clear()
        self._pending_left.clear()
        if not (joined or left) or not self._batched:
            return Outcome()
        return Outcome([Send(tuple(self._batched), Presence(joined=joined, left=left))])

    # ------------------------------------------------------------------ handlers

    def _connect(self, socket: Socket, state: _SocketState, event: Connecting) -> Outcome:
        if state.user_id is not None:
            raise ProtocolError(ErrorCode.ALREADY_CONNECTED, "this socket already sent connecting")
        user = self._users.get(event.id)
        was_page_reload = False
        if user is not None:
            if not self.seed_compatible and not _same_token(event.token, user.token):
                raise _id_taken(event.id)
            # Same user again: a reload inside the grace, or a second tab.
            was_page_reload = not user.sockets
            user.grace_deadline = None
        else:
            user = _User(id=event.id, username=event.username, token=self._claim(event))
            self._users[event.id] = user
            entry = self._user_entries[user.id] = user.entry()
            self._user_json[user.id] = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
            self._users_json = None
        is_new = not user.sockets and not was_page_reload
        others = tuple(self._plain)
        self._seat(socket, state, user, event)

        first_page, rest, truncated = self._recovery(event)
        if self._users_json is None:
            self._users_json = "[" + ",".join(self._user_json.values()) + "]"
        connected = Connected(
            id=user.id,
            username=user.username,
            token=user.token,
            connected_user_list=list(self._user_entries.values()),
            messages_list=first_page,
            was_page_reload=was_page_reload,
            room_id=self.room_id,
            truncated=truncated,
            users_json=self._users_json,
        )
        outcome = Outcome([Send((socket,), connected)])
        outcome.sends.extend(Send((socket,), MessageWritten(entry)) for entry in rest)
        if is_new and others:
            outcome.sends.append(Send(others, Joined(id=user.id, username=user.username)))
        if is_new:
            self._batch_joined(user.entry(), user.sockets)
        return outcome

    def _claim(self, event: Connecting) -> str | None:
        """The token of an absent id that is claimed; raises ``id_taken`` without proof."""
        if self.seed_compatible:
            return None  # the original design: ids are trusted, no token is issued
        known = self._tokens.get(event.id)
        if known is None and self._store is not None:
            known = self._store.load_token(event.id)
        if known is not None:
            if not _same_token(event.token, known):
                raise _id_taken(event.id)  # and the binding stays as it was
            self._tokens.pop(event.id, None)  # present from now on: kept on the user
            return known  # the returning owner keeps its token
        token = self._new_token()  # a new id: bind it
        if self._store is not None:
            self._store.save_token(event.id, token)
        return token

    def _write(self, socket: Socket, state: _SocketState, event: WriteMessage) -> Outcome:
        if state.user_id is None:
            raise ProtocolError(ErrorCode.NOT_CONNECTED, "send connecting first")
        user = self._users[state.user_id]
        cmid = event.client_message_id
        if cmid is not None:
            seen = self._accepted.get(user.id)
            earlier = seen.get(cmid) if seen is not None else None
            if earlier is not None:
                if earlier.digest != _digest(event.message):
                    raise _reused_id(cmid)
                # Already stored: acknowledge again, to this socket only.
                stored = self._stored_entry(user, cmid, earlier, event.message)
                return Outcome([Send((socket,), self._message_event(stored))])
        text = self._filter(user.username, event.message) if self._filter else event.message
        entry: MessageEntry = {
            "messageId": self._last_message_id + 1,
            "id": user.id,
            "username": user.username,
            "message": text,
            "ts": iso_utc(self.clock.time()),
        }
        if cmid is not None:
            entry["clientMessageId"] = cmid
        if self._store is not None:
            self._store.save_message(entry)  # durable before anyone is told
        self._remember(entry, sent_text=event.message)
        outcome = Outcome()
        if user.id in self._pending_joined:
            # Nobody reads a message from a user they were not told about yet.
            outcome = self.flush_presence()
        outcome.sends.append(Send(tuple(self._members), self._message_event(entry)))
        return outcome

    def _refuse(self, socket: Socket, state: _SocketState, error: ProtocolError) -> Outcome:
        outcome = Outcome([Send((socket,), ErrorEvent(error.code, error.detail))])
        if error.code is ErrorCode.ID_TAKEN:
            outcome.close = CloseSocket(socket, CloseCode.POLICY_VIOLATION, "id taken")
        elif error.code.is_strike:
            state.strikes += 1
            if state.strikes >= self.max_strikes:
                reason = f"{state.strikes} protocol errors"
                outcome.close = CloseSocket(socket, CloseCode.POLICY_VIOLATION, reason)
        return outcome

    # ------------------------------------------------------------------ helpers

    def _remember(self, entry: MessageEntry, sent_text: str | None = None) -> None:
        self._last_message_id = max(self._last_message_id, entry["messageId"])
        self._history.append(entry)
        cmid = entry.get("clientMessageId")
        if cmid is None:
            return
        seen = self._accepted.get(entry["id"])
        if seen is None:
            seen = self._accepted[entry["id"]] = OrderedDict()
        text = entry["message"] if sent_text is None else sent_text
        seen[cmid] = _Accepted(entry["messageId"], _digest(text), entry["ts"])
        if len(seen) > self.dedupe_per_id:
            seen.popitem(last=False)
        self._touch(entry["id"])

    def _stored_entry(self, user: _User, cmid: str, seen: _Accepted, text: str) -> MessageEntry:
        """The entry a ``clientMessageId`` stored: from the history, the store, or rebuilt."""
        index = bisect.bisect_left(self._history, seen.message_id, key=lambda e: e["messageId"])
        if index < len(self._history) and self._history[index]["messageId"] == seen.message_id:
            return self._history[index]
        if self._store is not None:
            found = self._store.load_messages_after(seen.message_id - 1, 1)
            if found and found[0]["messageId"] == seen.message_id:
                return found[0]
        # Gone from memory: the same text (the digest matched) under its stored id and time.
        return {
            "messageId": seen.message_id,
            "id": user.id,
            "username": user.username,
            "message": text,
            "ts": seen.ts,
            "clientMessageId": cmid,
        }

    def _touch(self, user_id: str) -> None:
        """Mark an id as just used, and forget the least recently used beyond the bound.

        The tokens map holds away ids only (a present id's token is on its user); the
        other maps hold present ids too, which are never forgotten (there are at most
        ``max_clients`` of them), so those may hold that many more.
        """
        for memory, present in ((self._tokens, 0), (self._buckets, 1), (self._accepted, 1)):
            if user_id in memory:
                memory.move_to_end(user_id)
            excess = len(memory) - self.max_bindings - present * len(self._users)
            if excess > 0:
                away = (key for key in memory if key not in self._users)
                for key in list(islice(away, excess)):
                    del memory[key]

    def _new_bucket(self) -> TokenBucket | None:
        if not self.rate_limit:
            return None
        return TokenBucket(self.rate_limit, self.rate_burst, self.clock.monotonic())

    def _bucket_of(self, user_id: str) -> TokenBucket | None:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._new_bucket()
            if bucket is None:
                return None
            self._buckets[user_id] = bucket
            self._touch(user_id)
        return bucket

    def _message_event(self, entry: MessageEntry) -> MessageWritten:
        return MessageWritten(entry, self.history if self.seed_compatible else None)

    def _recovery(self, event: Connecting) -> tuple[list[MessageEntry], list[MessageEntry], bool]:
        """What a connecting client gets: the first page, the entries after it, truncated.

        A first visit (no ``lastMessageId``, or one counted in another room) gets the
        kept history. A return gets what
        it missed: from the kept history when that reaches back far enough, else from
        the store (the first page in ``connected``, the rest as ``messageWritten``);
        without a store, what is kept, marked as truncated.
        """
        last = event.last_message_id
        if last is None:
            return self.history, [], False
        if event.room_id is not None and event.room_id != self.room_id:
            return self.history, [], False  # ids of another room's history: a first visit
        oldest_kept = self._history[0]["messageId"] if self._history else last + 1
        if oldest_kept <= last + 1:
            return [e for e in self._history if e["messageId"] > last], [], False
        if self._store is None:
            return self.history, [], True
        first_page = self._store.load_messages_after(last, self.history_cap)
        rest: list[MessageEntry] = []
        after = first_page[-1]["messageId"] if first_page else last
        while after < self._last_message_id:
            page = self._store.load_messages_after(after, _RECOVERY_PAGE)
            if not page:
                break
            rest.extend(page)
            after = page[-1]["messageId"]
        return first_page, rest, False

    def _depart(self, user: _User) -> Outcome:
        del self._users[user.id]
        if user.token is not None and self._store is None:
            self._tokens[user.id] = user.token  # kept while away, within max_bindings
        self._touch(user.id)
        del self._user_entries[user.id]
        del self._user_json[user.id]
        self._users_json = None
        self._batch_left(user.entry())
        if not self._plain:
            return Outcome()
        return Outcome([Send(tuple(self._plain), Disconnected(user.id, user.username))])

    def _batch_joined(self, entry: UserEntry, own: Collection[Socket]) -> None:
        # Batched sockets that join later get the user in their list; only those
        # already there need the diff (the newcomer itself has itself in its list).
        if not self._batched:
            return
        if len(self._batched) == 1 and next(iter(self._batched)) in own:
            return
        self._pending_joined[entry["id"]] = (entry, self._batched_joins)
        self._arm_presence()

    def _batch_left(self, entry: UserEntry) -> None:
        if not self._batched:
            return
        pending = self._pending_joined.pop(entry["id"], None)
        if pending is not None and pending[1] == self._batched_joins:
            # Joined and left within the tick, and no batched socket got a user list
            # since the join: nobody batched ever saw this user, so nothing to say.
            return
        self._pending_left[entry["id"]] = entry
        self._arm_presence()

    def _arm_presence(self) -> None:
        if self.presence_due is None:
            self.presence_due = self.clock.monotonic() + self.presence_tick


_DEDUPE_RELOAD = 10_000  # messages read back from a store to rebuild de-duplication
_RECOVERY_PAGE = 500  # messages read from the store at a time during recovery


@dataclass(frozen=True)
class _Accepted:
    """What the room keeps of an accepted ``clientMessageId``: not the message itself."""

    message_id: int
    digest: bytes  # of the text as sent, to tell a resend from a reused id
    ts: str


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def _reused_id(client_message_id: str | None) -> ProtocolError:
    return ProtocolError(
        ErrorCode.DUPLICATE_ID,
        f"clientMessageId {client_message_id!r} was already used for another text;"
        " use a new id for a new message",
    )


def _id_taken(user_id: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.ID_TAKEN,
        f"id {user_id!r} belongs to someone else; only its owner (with its token) may use it",
    )


def _same_token(offered: str | None, expected: str | None) -> bool:
    if offered is None or expected is None:
        return False
    return secrets.compare_digest(offered.encode(), expected.encode())

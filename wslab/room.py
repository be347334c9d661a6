"""The chat room: the rules of presence, reload grace, identity, history, in one place.

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

What must be one for the whole chat (ids and their tokens, who holds each id,
the numbered messages, the ``clientMessageId`` values accepted) lives in an
*engine* (:mod:`wslab.engine`). The room asks it with requests (claim an id,
append a message, mark a grace, release an id) and tells its sockets what the
engine's log says happened (a join, a message, a leave), so one server and
several servers sharing Redis follow the same rules, written here once. The
default :class:`~wslab.engine.MemoryEngine` answers within the call: ``receive``
returns the ``connected`` at once. A remote engine (Redis) answers later: the
request is in :attr:`Outcome.tasks`, and the server hands the answer to
:meth:`Room.answer`.

Identity: the first ``connecting`` for an id binds it to a token; from then on
only that token claims the id, present or not (the engine decides). The rate
limit belongs to the id, not to one socket.

A socket whose ``connecting`` announced ``"features": ["presence"]`` gets presence
changes batched instead: one ``presence`` event per ``presence_tick`` at most, listing
who left and who joined since the last one (the flush is a deadline reported by
:meth:`Room.next_deadline` and carried out by :meth:`Room.expire`). Other sockets keep
one ``joined`` or ``disconnected`` per user. A join storm of N users thus costs about
N ticks' worth of presence frames per socket instead of N frames.

Not thread-safe: call it from one thread (the server's loop thread).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from .clock import Clock, SystemClock, iso_utc
from .engine import (
    PENDING,
    Answer,
    Append,
    AppendResult,
    Claim,
    ClaimResult,
    Engine,
    HistoryStore,
    LogEvent,
    LoggedJoin,
    LoggedLeave,
    LoggedMessage,
    MarkGrace,
    MemoryEngine,
    Release,
    Request,
    Snapshot,
    digest,
)
from .presence import PresenceView
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

    ``tasks`` are requests for a remote engine (see :mod:`wslab.engine`): the server
    carries them out and hands each answer to :meth:`Room.answer`. With the memory
    engine it stays empty.
    """

    sends: list[Send] = field(default_factory=list)
    close: CloseSocket | None = None
    tasks: list[Request] = field(default_factory=list)

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


@dataclass
class _User:
    """An id this room holds: it has a socket here, or runs its grace here."""

    id: str
    username: str
    token: str | None  # None in seed-compatible mode, or for an adopted grace
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
        engine: where the shared state lives (:mod:`wslab.engine`). By default a
            :class:`~wslab.engine.MemoryEngine` built from ``store``,
            ``seed_compatible``, ``token_factory``, ``max_bindings`` and
            ``dedupe_per_id``; with another engine those belong to that engine.
    """

    def __init__(
        self,
        *,
        grace: float = 1.0,
        history: int = 100,
        rate_limit: float = 20.0,
        rate_burst: float = 40.0,
        max_strikes: int = 10,
        seed_compatible: bool = False,
        clock: Clock | None = None,
        token_factory: Callable[[], str] = lambda: secrets.token_urlsafe(16),
        message_filter: MessageFilter | None = None,
        store: HistoryStore | None = None,
        dedupe_per_id: int = 100,
        max_bindings: int = 10_000,
        presence_tick: float = 0.05,
        engine: Engine | None = None,
    ) -> None:
        if grace < 0:
            raise ValueError("grace must be >= 0")
        if history < 1:
            raise ValueError("history must be >= 1")
        if dedupe_per_id < 1 or max_bindings < 1:
            raise ValueError("dedupe_per_id and max_bindings must be >= 1")
        if engine is not None and (store is not None or seed_compatible):
            raise ValueError("store and seed_compatible belong to the memory engine")
        self.grace = grace
        self.history_cap = history
        self.rate_limit = rate_limit
        self.rate_burst = max(rate_burst, 1.0)
        self.max_strikes = max_strikes
        self.seed_compatible = seed_compatible
        self.clock: Clock = clock or SystemClock()
        self._filter = message_filter
        self.dedupe_per_id = dedupe_per_id
        self.max_bindings = max_bindings
        self.engine: Engine = engine or MemoryEngine(
            store=store,
            trust_ids=seed_compatible,
            token_factory=token_factory,
            max_bindings=max_bindings,
            dedupe_per_id=dedupe_per_id,
        )
        self._presence = PresenceView(presence_tick, self.clock)
        self._sockets: dict[Socket, _SocketState] = {}
        self._members: dict[Socket, None] = {}  # sockets past "connecting", in order
        self._plain: dict[Socket, None] = {}  # members that get one event per user
        self._batched: dict[Socket, None] = {}  # members that get "presence" per tick
        self._users: dict[str, _User] = {}  # the ids this room holds
        # Rate buckets by id, least recently used first, bounded like the engine's memory.
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._history: deque[MessageEntry] = deque(maxlen=history)
        self._last_message_id = 0
        self.room_id = ""
        snapshot = self.engine.snapshot(history)
        if snapshot is not None:
            self.load(snapshot)

    def load(self, snapshot: Snapshot) -> None:
        """Start from a snapshot of the engine: every socket and hold here is forgotten.

        A remote engine's link calls it at start and after an outage (the server
        closed all its sockets when the engine went away).
        """
        self._sockets.clear()
        self._members.clear()
        self._plain.clear()
        self._batched.clear()
        self._users.clear()
        self._presence.reset(snapshot.users)
        self.room_id = snapshot.room_id
        self._history.clear()
        self._history.extend(snapshot.history[-self.history_cap :])
        self._last_message_id = snapshot.last_message_id

    # ------------------------------------------------------------------ queries

    @property
    def users(self) -> list[UserEntry]:
        """Present users (online or inside their grace), one per id, by arrival."""
        return self._presence.users

    @property
    def history(self) -> list[MessageEntry]:
        """The kept history, oldest first."""
        return list(self._history)

    @property
    def last_message_id(self) -> int:
        """The newest ``messageId`` this room has read from the engine's log."""
        return self._last_message_id

    @property
    def socket_count(self) -> int:
        """Open sockets, whether or not they have sent ``connecting``."""
        return len(self._sockets)

    @property
    def presence_due(self) -> float | None:
        """When the pending presence diff must go out (clock seconds), or ``None``."""
        return self._presence.due

    def sockets_of(self, user_id: str) -> list[Socket]:
        """The open sockets of an id (several for several tabs)."""
        user = self._users.get(user_id)
        return list(user.sockets) if user else []

    def user_of(self, socket: Socket) -> str | None:
        """The id a socket connected as, or ``None`` before ``connecting``."""
        state = self._sockets.get(socket)
        return state.user_id if state else None

    def holdings(self) -> list[tuple[str, str, str | None, bool]]:
        """The ids held here: ``(id, username, token, has an open socket)``."""
        return [(u.id, u.username, u.token, bool(u.sockets)) for u in self._users.values()]

    def next_deadline(self) -> float | None:
        """The earliest grace deadline or presence flush (clock seconds), or ``None``."""
        deadlines = [u.grace_deadline for u in self._users.values() if u.grace_deadline]
        if self._presence.due is not None:
            deadlines.append(self._presence.due)
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ sockets in

    def open(self, socket: Socket) -> Outcome:
        """A socket opened (the server decided it may: see ``max_clients`` there)."""
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
                return self._connect(state, socket, event)
            return self._write(state, socket, event)
        except ProtocolError as error:
            return self._refuse(socket, state, error)

    def close(self, socket: Socket) -> Outcome:
        """A socket closed (cleanly or not). Starts the grace of its id if it was the last."""
        state = self._forget(socket)
        if state is None or state.user_id is None:
            return Outcome()
        user = self._users.get(state.user_id)
        if user is None:
            return Outcome()
        user.sockets.discard(socket)
        if user.sockets:
            return Outcome()  # another tab of the same id is still open
        return self._start_grace(user)

    def expire(self) -> Outcome:
        """End every grace that ran out (a release); send a due presence diff."""
        now = self.clock.monotonic()
        outcome = Outcome()
        due = [u for u in self._users.values() if u.grace_deadline and u.grace_deadline <= now]
        for user in sorted(due, key=lambda u: u.grace_deadline or 0.0):
            outcome.extend(self._depart(user))
        if self._presence.due is not None and self._presence.due <= now:
            outcome.extend(self.flush_presence())
        return outcome

    def flush_presence(self) -> Outcome:
        """Send the pending presence diff to the batched sockets now, if there is one."""
        joined, left = self._presence.take_diff()
        if not (joined or left) or not self._batched:
            return Outcome()
        return Outcome([Send(tuple(self._batched), Presence(joined=joined, left=left))])

    # ------------------------------------------------------------------ the engine

    def _ask(self, request: Request) -> Outcome:
        """Hand a request to the engine; apply its answer and its log if it answered now."""
        answer = self.engine.request(request)
        if answer is PENDING:
            return Outcome(tasks=[request])  # the server brings the answer to answer()
        outcome = self.answer(request, answer)
        outcome.extend(self.read_log(self.engine.take_log()))
        return outcome

    def answer(self, request: Request, answer: Answer) -> Outcome:
        """The engine answered a request: send ``connected``, acknowledge, or refuse."""
        if isinstance(request, Claim) and isinstance(answer, ClaimResult):
            return self._claimed(request, answer)
        if isinstance(request, Append) and isinstance(answer, AppendResult):
            return self._appended(request, answer)
        return Outcome()  # grace marks and releases need no answer

    def read_log(self, events: Iterable[LogEvent]) -> Outcome:
        """What the engine's log says happened, in its order: tell this room's sockets."""
        outcome = Outcome()
        for event in events:
            if isinstance(event, LoggedMessage):
                outcome.extend(self.deliver(event.entry))
            elif isinstance(event, LoggedJoin):
                outcome.extend(self.log_joined(event.user))
            else:
                outcome.extend(self.log_left(event.user))
        return outcome

    def adopt(self, entries: Iterable[UserEntry]) -> Outcome:
        """Run the grace of users whose server died: the engine handed their hold here.

        They are present until the grace runs out (then a :class:`Release` each),
        unless they reconnect, here or on any server.
        """
        deadline = self.clock.monotonic() + self.grace
        for entry in entries:
            if entry["id"] not in self._users:
                user = _User(entry["id"], entry["username"], None, grace_deadline=deadline)
                self._users[entry["id"]] = user
        return Outcome()

    # ------------------------------------------------------------------ the rules

    def _connect(self, state: _SocketState, socket: Socket, event: Connecting) -> Outcome:
        if state.user_id is not None:
            raise ProtocolError(ErrorCode.ALREADY_CONNECTED, "this socket already sent connecting")
        return self._ask(Claim(socket, event, self._recover_after(event)))

    def _claimed(self, claim: Claim, result: ClaimResult) -> Outcome:
        socket, event = claim.socket, claim.event
        state = self._sockets.get(socket)
        if result.status == "taken":
            return self._refuse(socket, state, _id_taken(event.id)) if state else Outcome()
        user = self._users.get(event.id)
        if user is None:
            user = self._users[event.id] = _User(event.id, result.username, result.token)
        else:
            user.username, user.token = result.username, result.token
        if state is None or state.user_id is not None:
            # The socket closed while its claim was out: the id is held here with no socket.
            return self._start_grace(user) if not user.sockets else Outcome()
        # A reload: the id was only in grace (here or on another server) and no tab is open.
        reload = result.status == "reload" and not user.sockets
        user.grace_deadline = None
        self._seat(socket, state, user, event)
        first_page, rest, truncated = self._recovery(event, result)
        entries, users_json = self._presence.listing(user.entry())
        connected = Connected(
            id=user.id,
            username=user.username,
            token=user.token,
            connected_user_list=entries,
            messages_list=first_page,
            was_page_reload=reload,
            room_id=self.room_id,
            truncated=truncated,
            users_json=users_json,
        )
        outcome = Outcome([Send((socket,), connected)])
        outcome.sends.extend(Send((socket,), MessageWritten(entry)) for entry in rest)
        return outcome

    def _write(self, state: _SocketState, socket: Socket, event: WriteMessage) -> Outcome:
        if state.user_id is None:
            raise ProtocolError(ErrorCode.NOT_CONNECTED, "send connecting first")
        user = self._users[state.user_id]
        text = self._filter(user.username, event.message) if self._filter else event.message
        draft: MessageEntry = {
            "messageId": 0,  # the engine numbers it
            "id": user.id,
            "username": user.username,
            "message": text,
            "ts": iso_utc(self.clock.time()),
        }
        cmid = event.client_message_id
        if cmid is None:
            return self._ask(Append(socket, draft, "", event.message))
        draft["clientMessageId"] = cmid
        return self._ask(Append(socket, draft, digest(event.message), event.message))

    def _appended(self, append: Append, result: AppendResult) -> Outcome:
        """A stored message reaches every socket through the log. A resend of an
        accepted message is acknowledged again, to its socket only; a reused
        ``clientMessageId`` with another text is refused (``duplicate_id``)."""
        if result.stored:
            return Outcome()
        socket = append.socket
        state = self._sockets.get(socket)
        if state is None:
            return Outcome()
        if result.digest != append.digest:
            return self._refuse(socket, state, _reused_id(append.draft.get("clientMessageId")))
        entry = self._kept(result.message_id) or result.entry
        if entry is None:  # gone everywhere: the same text under its stored id and time
            entry = {**append.draft, "messageId": result.message_id, "message": append.sent}
            entry["ts"] = result.ts
        return Outcome([Send((socket,), self._message_event(entry))])

    def _start_grace(self, user: _User) -> Outcome:
        outcome = self._ask(MarkGrace(user.id))
        if self.grace == 0:
            outcome.extend(self._depart(user))
        else:
            user.grace_deadline = self.clock.monotonic() + self.grace
        return outcome

    def _depart(self, user: _User) -> Outcome:
        # Nobody is told here: the engine logs the leave if nobody else holds the id.
        del self._users[user.id]
        self._touch_bucket(user.id)
        return self._ask(Release(user.id))

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

    # ------------------------------------------------------------------ the log in

    def deliver(self, entry: MessageEntry) -> Outcome:
        """A message from the log: every member gets it, in ``messageId`` order."""
        if entry["messageId"] <= self._last_message_id:
            return Outcome()  # read already (a snapshot may overlap the log)
        self._last_message_id = entry["messageId"]
        self._history.append(entry)
        outcome = Outcome()
        if entry["id"] in self._presence.pending_joins:
            # Nobody reads a message from a user they were not told about yet.
            outcome = self.flush_presence()
        if self._members:
            outcome.sends.append(Send(tuple(self._members), self._message_event(entry)))
        return outcome

    def log_joined(self, entry: UserEntry) -> Outcome:
        """The log says a user joined (on any server): tell this room's sockets."""
        if not self._presence.add(entry):
            return Outcome()
        user = self._users.get(entry["id"])
        own: Collection[Socket] = user.sockets if user is not None else ()
        self._presence.note_joined(entry, own, self._batched)
        to = tuple(s for s in self._plain if s not in own)  # its own sockets listed it already
        if not to:
            return Outcome()
        return Outcome([Send(to, Joined(entry["id"], entry["username"]))])

    def log_left(self, entry: UserEntry) -> Outcome:
        """The log says a user left (their grace ran out everywhere): tell this room's sockets."""
        if not self._presence.remove(entry["id"]):
            return Outcome()
        self._presence.note_left(entry, self._batched)
        if not self._plain:
            return Outcome()
        return Outcome([Send(tuple(self._plain), Disconnected(entry["id"], entry["username"]))])

    # ------------------------------------------------------------------ helpers

    def _seat(self, socket: Socket, state: _SocketState, user: _User, event: Connecting) -> None:
        """A socket joined as ``user``: a member from now on, batched if it asked for it."""
        user.sockets.add(socket)
        state.user_id = user.id
        state.bucket = None  # from now on the id's bucket counts this socket's frames
        self._touch_bucket(user.id)
        self._members[socket] = None
        if FEATURE_PRESENCE in event.features:
            self._batched[socket] = None
            self._presence.batched_joins += 1
        else:
            self._plain[socket] = None

    def _forget(self, socket: Socket) -> _SocketState | None:
        """Take a socket out of every set; return what the room knew of it."""
        self._members.pop(socket, None)
        self._plain.pop(socket, None)
        self._batched.pop(socket, None)
        return self._sockets.pop(socket, None)

    def _recover_after(self, event: Connecting) -> int | None:
        """The ``lastMessageId`` to fetch from the engine, or None if this room keeps enough."""
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != self.room_id):
            return None
        oldest_kept = self._history[0]["messageId"] if self._history else self._last_message_id + 1
        return last if oldest_kept > last + 1 else None

    def _recovery(
        self, event: Connecting, claim: ClaimResult
    ) -> tuple[list[MessageEntry], list[MessageEntry], bool]:
        """What a connecting client gets: the first page, the entries after it, truncated.

        A first visit (no ``lastMessageId``, or one counted in another room) gets the
        kept history. A return gets what it missed: what the engine fetched, then
        what this room keeps (the first page in ``connected``, the rest as
        ``messageWritten``), marked truncated when some of it is gone. The fetched
        messages go no further than this room has read: newer ones come by the log.
        """
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != self.room_id):
            return self.history, [], False
        fetched = [e for e in claim.older if last < e["messageId"] <= self._last_message_id]
        after = fetched[-1]["messageId"] if fetched else last
        newer = [e for e in self._history if e["messageId"] > after]
        complete = claim.complete and (not newer or newer[0]["messageId"] == after + 1)
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

    def _message_event(self, entry: MessageEntry) -> MessageWritten:
        return MessageWritten(entry, self.history if self.seed_compatible else None)

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
            self._touch_bucket(user_id)
        return bucket

    def _touch_bucket(self, user_id: str) -> None:
        """Mark an id's bucket as just used; forget the least recently used away ones."""
        if user_id in self._buckets:
            self._buckets.move_to_end(user_id)
        excess = len(self._buckets) - self.max_bindings - len(self._users)
        if excess > 0:
            away = (key for key in self._buckets if key not in self._users)
            for key in list(islice(away, excess)):
                del self._buckets[key]


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

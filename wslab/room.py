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
    LoggedMessage,
    MarkGrace,
    MemoryEngine,
    Release,
    Request,
    Snapshot,
    digest,
)
from .options import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, Limits, Timeouts
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
    user_entry,
)

__all__ = [
    "CloseSocket",
    "History",
    "HistoryStore",
    "Outcome",
    "RateLimits",
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
    """What the caller must do: the sends in order, then the closes.

    ``close`` is at most one close of the socket the outcome answers; ``closes`` are
    closes of other sockets (a classroom teacher's ``kick`` closes a user's tabs).
    ``tasks`` are requests for a remote engine (see :mod:`wslab.engine`): the server
    carries them out and hands each answer to :meth:`Room.answer`. With the memory
    engine it stays empty.
    """

    sends: list[Send] = field(default_factory=list)
    close: CloseSocket | None = None
    tasks: list[Request] = field(default_factory=list)
    closes: list[CloseSocket] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.sends.extend(other.sends)
        self.close = self.close or other.close
        self.tasks.extend(other.tasks)
        self.closes.extend(other.closes)


class RateLimits:
    """Token buckets by id: the rate limit belongs to the id, all its sockets together.

    The buckets of ids that are away are kept for the ``max_ids`` most recently
    used; those of present ids always. ``rate`` 0 turns the limit off.
    """

    def __init__(self, rate: float, burst: float, max_ids: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_ids = max_ids
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def new_bucket(self, now: float) -> TokenBucket | None:
        """A bucket of its own (for a socket before ``connecting``), or ``None``: no limit."""
        return TokenBucket(self.rate, self.burst, now) if self.rate else None

    def of(self, user_id: str, now: float, present: Collection[str]) -> TokenBucket | None:
        """The id's bucket (made full the first time), or ``None``: no limit."""
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self.new_bucket(now)
            if bucket is None:
                return None
            self._buckets[user_id] = bucket
            self.touch(user_id, present)
        return bucket

    def refusal(
        self, socket: Socket, state: _SocketState, now: float, present: Collection[str]
    ) -> Outcome | None:
        """Take a token for a frame of ``socket``; what to answer if it is over the limit.

        ``None``: go on. Over the limit, the first frame of a run gets ``rate_limited``
        and the others nothing (one error per run of dropped frames, not one each).
        """
        user_id = state.user_id
        bucket = state.bucket if user_id is None else self.of(user_id, now, present)
        if bucket is None or bucket.take(now):
            state.limited = False
            return None
        if state.limited:
            return Outcome()
        state.limited = True
        detail = f"over {self.rate:g} messages/s per user; this message was dropped"
        return Outcome([Send((socket,), ErrorEvent(ErrorCode.RATE_LIMITED, detail))])

    def touch(self, user_id: str, present: Collection[str]) -> None:
        """Mark an id's bucket as just used; forget the least recently used away ones."""
        if user_id in self._buckets:
            self._buckets.move_to_end(user_id)
        excess = len(self._buckets) - self.max_ids - len(present)
        if excess > 0:
            away = (key for key in self._buckets if key not in present)
            for key in list(islice(away, excess)):
                del self._buckets[key]


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
    tag: str = ""  # as the engine derived it (see wslab.display.user_tag)

    def entry(self) -> UserEntry:
        return user_entry(self.id, self.username, self.tag)

    def draft(self, text: str, ts: str) -> MessageEntry:
        """A message by this user, with ``messageId`` 0: the engine numbers it."""
        return {
            "messageId": 0,
            "id": self.id,
            "username": self.username,
            "tag": self.tag,
            "message": text,
            "ts": ts,
        }


@dataclass
class _SocketState:
    bucket: TokenBucket | None  # its own before "connecting"; then the id's (see RateLimits)
    user_id: str | None = None  # set by a successful "connecting"
    strikes: int = 0
    limited: bool = False  # inside a run of rate-limited frames


class History:
    """The messages a room keeps (the newest ``cap``), and what a returning client missed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.entries: deque[MessageEntry] = deque(maxlen=cap)
        #: The newest ``messageId`` read from the engine's log.
        self.last_id = 0

    def load(self, entries: list[MessageEntry], last_id: int) -> None:
        self.entries = deque(entries[-self.cap :], maxlen=self.cap)
        self.last_id = last_id

    def clear(self) -> None:
        """Forget the kept messages; ``messageId`` numbers go on from :attr:`last_id`."""
        self.entries.clear()

    def add(self, entry: MessageEntry) -> bool:
        """Keep a message from the log; ``False`` if it was read already."""
        if entry["messageId"] <= self.last_id:
            return False  # a snapshot may overlap the log
        self.last_id = entry["messageId"]
        self.entries.append(entry)
        return True

    def kept(self, message_id: int) -> MessageEntry | None:
        """The entry numbered ``message_id``, if it is still kept."""
        for entry in reversed(self.entries):
            if entry["messageId"] == message_id:
                return entry
            if entry["messageId"] < message_id:
                break
        return None

    def recover_after(self, event: Connecting, room_id: str) -> int | None:
        """The ``lastMessageId`` to fetch from the engine, or None if enough is kept."""
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != room_id):
            return None
        oldest_kept = self.entries[0]["messageId"] if self.entries else self.last_id + 1
        return last if oldest_kept > last + 1 else None

    def recovery(
        self, event: Connecting, claim: ClaimResult, room_id: str
    ) -> tuple[list[MessageEntry], list[MessageEntry], bool]:
        """What a connecting client gets: the first page, the entries after it, truncated.

        A first visit (no ``lastMessageId``, or one counted in another room) gets the
        kept history. A return gets what it missed: what the engine fetched, then
        what is kept (the first ``cap`` in ``connected``, the rest as
        ``messageWritten``), marked truncated when some of it is gone. The fetched
        messages go no further than the log was read: newer ones come through it.
        """
        last = event.last_message_id
        if last is None or (event.room_id is not None and event.room_id != room_id):
            return list(self.entries), [], False
        fetched = [e for e in claim.older if last < e["messageId"] <= self.last_id]
        after = fetched[-1]["messageId"] if fetched else last
        newer = [e for e in self.entries if e["messageId"] > after]
        complete = claim.complete and (not newer or newer[0]["messageId"] == after + 1)
        found = fetched + newer
        return found[: self.cap], found[self.cap :], not complete


class _Holds(dict[str, _User]):
    """The ids a room holds (a socket here, or a grace running here), in arrival order."""

    def sockets_of(self, user_id: str) -> list[Socket]:
        user = self.get(user_id)
        return list(user.sockets) if user else []

    def next_deadline(self) -> float | None:
        return min((u.grace_deadline for u in self.values() if u.grace_deadline), default=None)

    def adopt(self, entries: Iterable[UserEntry], deadline: float) -> None:
        """Hold these users in grace until ``deadline``, unless held here already."""
        for entry in entries:
            if entry["id"] not in self:
                user = _User(entry["id"], entry["username"], None, set(), deadline)
                self[entry["id"]] = user
                user.tag = entry.get("tag", "")

    def due(self, now: float) -> list[_User]:
        """The users whose grace ran out, the earliest first."""
        due = [u for u in self.values() if u.grace_deadline and u.grace_deadline <= now]
        return sorted(due, key=lambda u: u.grace_deadline or 0.0)


class _Audience:
    """A room's sockets, and how news reaches them: one event per user, or batched.

    Sockets that announced the ``presence`` feature get the :class:`PresenceView`'s
    diff once per tick; the others one ``joined`` or ``disconnected`` per user.
    """

    def __init__(self, presence: PresenceView) -> None:
        self.presence = presence
        self.states: dict[Socket, _SocketState] = {}
        self.members: dict[Socket, None] = {}  # sockets past "connecting", in order
        self.plain: dict[Socket, None] = {}  # members that get one event per user
        self.batched: dict[Socket, None] = {}  # members that get "presence" per tick

    def seat(self, socket: Socket, *, batched: bool) -> None:
        """A socket joined: a member from now on, batched if it asked for it."""
        self.members[socket] = None
        if batched:
            self.batched[socket] = None
            self.presence.batched_joins += 1
        else:
            self.plain[socket] = None

    def forget(self, socket: Socket) -> _SocketState | None:
        """Take a socket out of every set; return its state, if it was open."""
        self.members.pop(socket, None)
        self.plain.pop(socket, None)
        self.batched.pop(socket, None)
        return self.states.pop(socket, None)

    def joined(self, entry: UserEntry, own: Collection[Socket]) -> Outcome:
        """A user joined; ``own`` are its sockets (their ``connected`` listed it)."""
        if not self.presence.add(entry):
            return Outcome()
        self.presence.note_joined(entry, own, self.batched)
        to = tuple(s for s in self.plain if s not in own)
        joined = Joined(entry["id"], entry["username"], entry.get("tag", ""))
        return Outcome([Send(to, joined)] if to else [])

    def left(self, entry: UserEntry) -> Outcome:
        """A user left (its grace ran out everywhere)."""
        if not self.presence.remove(entry["id"]):
            return Outcome()
        self.presence.note_left(entry, self.batched)
        if not self.plain:
            return Outcome()
        left = Disconnected(entry["id"], entry["username"], entry.get("tag", ""))
        return Outcome([Send(tuple(self.plain), left)])

    def message(self, author: str, event: MessageWritten) -> Outcome:
        """A message for every member, after its author's join if that is still pending."""
        # Nobody reads a message from a user they were not told about yet.
        outcome = self.flush() if author in self.presence.pending_joins else Outcome()
        if self.members:
            outcome.sends.append(Send(tuple(self.members), event))
        return outcome

    def flush(self) -> Outcome:
        """The pending presence diff, to the batched sockets, if there is one."""
        joined, left = self.presence.take_diff()
        if not (joined or left) or not self.batched:
            return Outcome()
        return Outcome([Send(tuple(self.batched), Presence(joined=joined, left=left))])


class Room:
    """The chat room state machine. See the module docstring.

    Args:
        grace, history, rate_limit, rate_burst, max_bindings, dedupe_per_id,
        presence_tick: the options of :class:`~wslab.options.Timeouts` and
            :class:`~wslab.options.Limits` of those names: their meaning, default and
            bounds are defined there (a value out of bounds raises
            :class:`~wslab.errors.ConfigurationError`). Before ``connecting`` a
            socket has a rate bucket of its own; then it shares its id's.
        max_strikes: protocol errors after which a socket is closed with 1008.
        seed_compatible: behave like the original design (full ``messagesList`` in
            every ``messageWritten``, tokens ignored and none issued).
        clock: where time comes from (:class:`~wslab.clock.FakeClock` in tests).
        token_factory: makes identity tokens (default :func:`wslab.engine.new_token`).
        message_filter: ``f(username, text) -> text`` applied to each new message;
            if it raises, the exception propagates (the server closes with 1011).
        store: durable history and tokens (a :class:`~wslab.engine.HistoryStore`).
        engine: where the shared state lives (:mod:`wslab.engine`). By default a
            :class:`~wslab.engine.MemoryEngine` built from ``store``,
            ``seed_compatible``, ``token_factory``, ``max_bindings`` and
            ``dedupe_per_id``; with another engine those belong to that engine.
    """

    def __init__(
        self,
        *,
        grace: float = DEFAULT_TIMEOUTS.grace,
        history: int = DEFAULT_LIMITS.history,
        rate_limit: float = DEFAULT_LIMITS.rate_limit,
        rate_burst: float = DEFAULT_LIMITS.rate_burst,
        max_strikes: int = 10,
        seed_compatible: bool = False,
        clock: Clock | None = None,
        token_factory: Callable[[], str] | None = None,
        message_filter: MessageFilter | None = None,
        store: HistoryStore | None = None,
        dedupe_per_id: int = DEFAULT_LIMITS.dedupe_per_id,
        max_bindings: int = DEFAULT_LIMITS.max_bindings,
        presence_tick: float = DEFAULT_TIMEOUTS.presence_tick,
        engine: Engine | None = None,
    ) -> None:
        Timeouts.check(grace=grace, presence_tick=presence_tick)
        Limits.check(history=history, rate_limit=rate_limit, rate_burst=rate_burst)
        Limits.check(max_bindings=max_bindings, dedupe_per_id=dedupe_per_id)
        if engine is not None and (store is not None or seed_compatible or token_factory):
            raise ValueError("store, seed_compatible and token_factory are the memory engine's")
        self.grace = grace
        self.history_cap = history
        self.rate_limit = rate_limit
        self.rates = RateLimits(rate_limit, rate_burst, max_bindings)
        self.max_strikes = max_strikes
        self.seed_compatible = seed_compatible
        self.clock: Clock = clock or SystemClock()
        self._filter = message_filter
        self.dedupe_per_id = dedupe_per_id
        self.engine: Engine = engine or MemoryEngine(
            store=store,
            trust_ids=seed_compatible,
            token_factory=token_factory,
            max_bindings=max_bindings,
            dedupe_per_id=dedupe_per_id,
        )
        self._presence = PresenceView(presence_tick, self.clock)
        self._audience = _Audience(self._presence)
        self._users = _Holds()
        self._history = History(history)
        self.room_id = ""
        snapshot = self.engine.snapshot(history)
        if snapshot is not None:
            self.load(snapshot)

    def load(self, snapshot: Snapshot) -> None:
        """Start from the engine's snapshot, forgetting every socket and hold here.

        A remote engine's link calls it at start and after an outage."""
        self._presence.reset(snapshot.users)
        self._audience = _Audience(self._presence)
        self._users = _Holds()
        self.room_id = snapshot.room_id
        self._history.load(snapshot.history, snapshot.last_message_id)

    # ------------------------------------------------------------------ queries

    @property
    def users(self) -> list[UserEntry]:
        """Present users (online or inside their grace), one per id, by arrival."""
        return self._presence.users

    @property
    def history(self) -> list[MessageEntry]:
        """The kept history, oldest first."""
        return list(self._history.entries)

    @property
    def last_message_id(self) -> int:
        """The newest ``messageId`` this room has read from the engine's log."""
        return self._history.last_id

    @property
    def socket_count(self) -> int:
        """Open sockets, whether or not they have sent ``connecting``."""
        return len(self._audience.states)

    @property
    def presence_due(self) -> float | None:
        """When the pending presence diff must go out (clock seconds), or ``None``."""
        return self._presence.due

    def sockets_of(self, user_id: str) -> list[Socket]:
        """The open sockets of an id (several for several tabs)."""
        return self._users.sockets_of(user_id)

    def user_of(self, socket: Socket) -> str | None:
        """The id a socket connected as, or ``None`` before ``connecting``."""
        state = self._audience.states.get(socket)
        return state.user_id if state else None

    def holdings(self) -> list[tuple[str, str, str | None, bool]]:
        """The ids held here: ``(id, username, token, has an open socket)``."""
        return [(u.id, u.username, u.token, bool(u.sockets)) for u in self._users.values()]

    def next_deadline(self) -> float | None:
        """The earliest grace deadline or presence flush (clock seconds), or ``None``."""
        deadlines = [d for d in (self._users.next_deadline(), self._presence.due) if d]
        return min(deadlines, default=None)

    # ------------------------------------------------------------------ sockets in

    def open(self, socket: Socket) -> Outcome:
        """A socket opened (the server decided it may: see ``max_clients`` there)."""
        self._audience.states[socket] = _SocketState(self.rates.new_bucket(self.clock.monotonic()))
        return Outcome()

    def receive(self, socket: Socket, data: str | bytes) -> Outcome:
        """A socket sent a frame (text or binary). Bad input becomes an ``error``."""
        state = self._audience.states.get(socket)
        if state is None:
            return Outcome()  # closed or refused already: nothing to answer
        refused = self.rates.refusal(socket, state, self.clock.monotonic(), self._users)
        if refused is not None:
            return refused
        try:
            return self.handle(socket, data)
        except ProtocolError as error:
            return _refusal(socket, state, error, self.max_strikes)

    def close(self, socket: Socket) -> Outcome:
        """A socket closed (cleanly or not). Starts the grace of its id if it was the last."""
        state = self._audience.forget(socket)
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
        for user in self._users.due(now):
            outcome.extend(self._depart(user))
        if self._presence.due is not None and self._presence.due <= now:
            outcome.extend(self.flush_presence())
        return outcome

    def flush_presence(self) -> Outcome:
        """Send the pending presence diff to the batched sockets now, if there is one."""
        return self._audience.flush()

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
        """Run the grace of users whose server died (the engine handed their hold
        here): they are present until it runs out, unless they reconnect anywhere."""
        self._users.adopt(entries, self.clock.monotonic() + self.grace)
        return Outcome()

    # ------------------------------------------------------------------ for subclasses
    # A room with more events (ClassRoom) overrides the hooks handle() and welcome(), and
    # carries its events out with connect(), write(), post(), clear_history(), members.

    def handle(self, socket: Socket, data: str | bytes) -> Outcome:
        """Parse a frame (past the rate limit) and carry it out. A hook: a room with more
        events overrides it. A :class:`ProtocolError` refuses the frame (a strike, or not)."""
        event = parse_client_event(data)
        if isinstance(event, Connecting):
            return self.connect(socket, event)
        return self.write(socket, event)

    def welcome(self, socket: Socket, connected: Connected) -> Connected:
        """The ``connected`` a socket gets for its claimed id. A hook: this one adds nothing."""
        return connected

    def connect(self, socket: Socket, event: Connecting) -> Outcome:
        """``connecting``: ask the engine for ``event.id`` (``already_connected`` twice)."""
        if self._audience.states[socket].user_id is not None:
            raise ProtocolError(ErrorCode.ALREADY_CONNECTED, "this socket already sent connecting")
        return self._ask(Claim(socket, event, self._history.recover_after(event, self.room_id)))

    def write(self, socket: Socket, event: WriteMessage) -> Outcome:
        """``writeMessage``: a new message for the engine (``not_connected`` before a join)."""
        user_id = self._audience.states[socket].user_id
        if user_id is None:
            raise ProtocolError(ErrorCode.NOT_CONNECTED, "send connecting first")
        user = self._users[user_id]
        text = self._filter(user.username, event.message) if self._filter else event.message
        draft = user.draft(text, iso_utc(self.clock.time()))
        cmid = event.client_message_id
        if cmid is None:
            return self.post(socket, draft)
        draft["clientMessageId"] = cmid
        return self._ask(Append(socket, draft, digest(event.message), event.message))

    def post(self, socket: Socket, draft: MessageEntry) -> Outcome:
        """Store a message (``messageId`` 0: the engine numbers it) written on ``socket``."""
        return self._ask(Append(socket, draft, "", draft["message"]))

    def clear_history(self) -> str:
        """Empty the history and go on under a new room id, returned (nobody is told).
        The engine raises :class:`~wslab.errors.ConfigurationError` if it is not its to clear."""
        self.room_id = self.engine.clear_history()
        self._history.clear()
        return self.room_id

    @property
    def members(self) -> tuple[Socket, ...]:
        """The sockets past ``connecting``, in the order they got in."""
        return tuple(self._audience.members)

    # ------------------------------------------------------------------ the rules

    def _claimed(self, claim: Claim, result: ClaimResult) -> Outcome:
        socket, event = claim.socket, claim.event
        state = self._audience.states.get(socket)
        if result.status == "taken":
            taken = _id_taken(event.id)
            return _refusal(socket, state, taken, self.max_strikes) if state else Outcome()
        user = self._users.setdefault(event.id, _User(event.id, "", None))
        user.username, user.token, user.tag = result.username, result.token, result.tag
        if state is None or state.user_id is not None:
            # The socket closed while its claim was out: the id is held here with no socket.
            return self._start_grace(user) if not user.sockets else Outcome()
        # A reload: the id was only in grace (here or on another server) and no tab is open.
        reload = result.status == "reload" and not user.sockets
        user.grace_deadline = None
        user.sockets.add(socket)
        state.user_id = user.id
        state.bucket = None  # from now on the id's bucket counts this socket's frames
        self.rates.touch(user.id, self._users)
        self._audience.seat(socket, batched=FEATURE_PRESENCE in event.features)
        first_page, rest, truncated = self._history.recovery(event, result, self.room_id)
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
        outcome = Outcome([Send((socket,), self.welcome(socket, connected))])
        outcome.sends.extend(Send((socket,), MessageWritten(entry)) for entry in rest)
        return outcome

    def _appended(self, append: Append, result: AppendResult) -> Outcome:
        # A stored message reaches every socket through the log. A resend of an accepted
        # message is acknowledged again, to its socket only; a reused id is refused.
        if result.stored:
            return Outcome()
        socket = append.socket
        state = self._audience.states.get(socket)
        if state is None:
            return Outcome()
        if result.digest != append.digest:
            reused = _reused_id(append.draft.get("clientMessageId"))
            return _refusal(socket, state, reused, self.max_strikes)
        entry = self._history.kept(result.message_id) or result.entry
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
        self.rates.touch(user.id, self._users)
        return self._ask(Release(user.id))

    def deliver(self, entry: MessageEntry) -> Outcome:
        """A message from the log: every member gets it, in ``messageId`` order."""
        if not self._history.add(entry):
            return Outcome()
        return self._audience.message(entry["id"], self._message_event(entry))

    def log_joined(self, entry: UserEntry) -> Outcome:
        """The log says a user joined (on any server): tell this room's sockets."""
        user = self._users.get(entry["id"])
        return self._audience.joined(entry, user.sockets if user is not None else ())

    def log_left(self, entry: UserEntry) -> Outcome:
        """The log says a user left (their grace ran out everywhere): tell this room's sockets."""
        return self._audience.left(entry)

    def _message_event(self, entry: MessageEntry) -> MessageWritten:  # seed: all history too
        return MessageWritten(entry, self.history if self.seed_compatible else None)


def _refusal(
    socket: Socket, state: _SocketState, error: ProtocolError, max_strikes: int
) -> Outcome:
    """What a refused frame gets: ``error``, a strike on ``state`` if the code is one,
    and a close for ``id_taken`` or for the ``max_strikes``-th strike."""
    outcome = Outcome([Send((socket,), ErrorEvent(error.code, error.detail))])
    if error.code is ErrorCode.ID_TAKEN:
        outcome.close = CloseSocket(socket, CloseCode.POLICY_VIOLATION, "id taken")
    elif error.code.is_strike:
        state.strikes += 1
        if state.strikes >= max_strikes:
            reason = f"{state.strikes} protocol errors"
            outcome.close = CloseSocket(socket, CloseCode.POLICY_VIOLATION, reason)
    return outcome


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

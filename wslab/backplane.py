"""The Redis engine: what several chat servers share, and how they stay one chat.

This is the I/O of :class:`wslab.engine.RedisEngine`: the room's requests
(claim, append, mark grace, release) run here as Lua scripts, and the log they
write is read back here. :class:`wslab.engine.MemoryEngine` is their readable
reference, one method per script. Each server keeps its own sockets; Redis keeps
what must be one for all of them. Every change goes through a short Lua script,
so it is atomic however many servers act at once (keys under ``wslab:``; one
Redis, not Redis Cluster):

=====================  ==================================================================
``room_id``            the chat's name for its history (a Redis that lost its data gets
                       a new one, and clients know their ``lastMessageId`` is void)
``seq``                the last ``messageId`` handed out (``INCR``: one global order)
``log``                a stream: every message and every join and leave, in order. A
                       message *n* is entry ``n-0``; the presence events after it are
                       ``n-1``, ``n-2``... so recovery reads ``XRANGE log n-0 +``
``tokens``             id -> token: an id is bound once, for every server
``tag_key``            the secret users' tags are derived with (set once, ``SET NX``), so
                       every server shows a user with the same tag
``users``              id -> its entry: who is present in the whole chat
``holders:{id}``       server -> ``open`` or ``grace``: which servers hold the id
``held:{server}``      the ids a server holds (what to hand over if it dies)
``servers``            the servers that joined; ``alive:{server}`` expires unless its
                       server renews it (the heartbeat)
``given_up``           servers taken for dead whose holds are still being taken over
``cmid:{id}``          ``clientMessageId`` -> ``messageId|digest|ts`` (and a list
                       ``cmids:{id}`` that bounds it to the newest ``dedupe_per_id``)
=====================  ==================================================================

Who publishes what: the server whose socket sent ``connecting`` runs *claim*,
which logs ``joined`` only when no server held the id; the server whose grace
for an id ran out runs *release*, which logs ``disconnected`` only when it was
the last holder; the server a message arrived on runs *append*. Every server
reads the log (``XREAD BLOCK``) and hands it to its room. Servers renew their
``alive:`` key every ``heartbeat`` seconds; a server that finds another's key
expired takes over its holds as graces (the *beat* script, atomic, so exactly one
survivor does), and those users are announced gone when the grace runs out
unless they reconnect.

:class:`RedisBackplane` is the Redis I/O of one server; :class:`BackplaneLink`
runs it on the server's loop (the log reader, the heartbeat, the ordered
queue of holds and releases) and notices an outage: it tells the server, which
closes every client (1013) and refuses handshakes until Redis is back, instead
of serving a chat split in two, and tries again with :func:`wslab.retry.backoff`.

Server thread (its event loop) only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .display import new_tag_key, user_tag
from .engine import (
    Answer,
    Append,
    AppendResult,
    Claim,
    ClaimResult,
    LogEvent,
    LoggedJoin,
    LoggedLeave,
    LoggedMessage,
    MarkGrace,
    Release,
    Request,
    Snapshot,
)
from .errors import BackplaneError, ConfigurationError, MissingExtraError
from .options import DEFAULT_LIMITS, DEFAULT_REDIS, safe_url
from .protocol import Connecting, MessageEntry, UserEntry, user_entry
from .retry import backoff
from .room import Outcome, Room

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["BackplaneLink", "RedisBackplane"]

logger = logging.getLogger("wslab.backplane")

T = TypeVar("T")

#: The entries' JSON as the protocol writes it (compact, UTF-8 kept).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

#: The oldest Redis whose streams take ``n-*`` ids (a given first part, a new second).
MIN_REDIS = (7, 0)

# KEYS: tokens, users, holders:{id}, held:{me}, log, seq, joins
# ARGV: id, me, offered token ('' if none), new token, entry JSON, keep
_CLAIM = """
local token = redis.call('HGET', KEYS[1], ARGV[1])
if token then
  if token ~= ARGV[3] then return {'taken'} end
else
  token = ARGV[4]
  redis.call('HSET', KEYS[1], ARGV[1], token)
end
local status = 'new'
for _, state in ipairs(redis.call('HVALS', KEYS[3])) do
  if state == 'open' then status = 'tab' elseif status == 'new' then status = 'reload' end
end
redis.call('HSET', KEYS[3], ARGV[2], 'open')
redis.call('SADD', KEYS[4], ARGV[1])
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then
  user = redis.call('INCR', KEYS[7]) .. ' ' .. ARGV[5]
  redis.call('HSET', KEYS[2], ARGV[1], user)
  local seq = redis.call('GET', KEYS[6]) or '0'
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], seq .. '-*', 't', 'j', 'e', ARGV[5])
end
return {status, token, user}
"""

# KEYS: holders:{id}
# ARGV: me
_MARK_GRACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) then redis.call('HSET', KEYS[1], ARGV[1], 'grace') end
return 1
"""

# KEYS: holders:{id}, held:{me}, users, log, seq
# ARGV: id, me, keep
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[2]) ~= 'grace' then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) > 0 then return 1 end
local user = redis.call('HGET', KEYS[3], ARGV[1])
if user then
  redis.call('HDEL', KEYS[3], ARGV[1])
  local entry = string.sub(user, string.find(user, ' ', 1, true) + 1)
  local seq = redis.call('GET', KEYS[5]) or '0'
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], seq .. '-*', 't', 'd', 'e', entry)
end
return 2
"""

# KEYS: seq, log
# ARGV: keep, dedupe_per_id, key prefix, then five per message, in order: id, entry
#       JSON after its messageId (starts with ','), clientMessageId ('' if none),
#       digest, ts
# One call numbers and logs a whole batch. Per message: {1, messageId} when stored,
# {0, 'messageId|digest|ts', entry JSON or ''} when its clientMessageId was accepted.
_APPEND = """
local keep, per_id, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local replies = {}
for i = 4, #ARGV, 5 do
  local cmid = ARGV[i + 2]
  local accepted = prefix .. 'cmid:' .. ARGV[i]
  local earlier = cmid ~= '' and redis.call('HGET', accepted, cmid)
  if earlier then
    local n = string.sub(earlier, 1, string.find(earlier, '|', 1, true) - 1)
    local entry = ''
    for _, found in ipairs(redis.call('XRANGE', KEYS[2], n .. '-0', n .. '-0')) do
      entry = found[2][4]
    end
    replies[#replies + 1] = {0, earlier, entry}
  else
    local n = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, n .. '-0',
               't', 'm', 'e', '{"messageId":' .. n .. ARGV[i + 1])
    if cmid ~= '' then
      local order = prefix .. 'cmids:' .. ARGV[i]
      redis.call('HSET', accepted, cmid, n .. '|' .. ARGV[i + 3] .. '|' .. ARGV[i + 4])
      redis.call('LPUSH', order, cmid)
      if redis.call('LLEN', order) > per_id then
        redis.call('HDEL', accepted, redis.call('RPOP', order))
      end
    end
    replies[#replies + 1] = {1, n}
  end
end
return replies
"""

# KEYS: servers, users, given_up
# ARGV: me, ttl (ms), key prefix, users per page
# Renews this server's heartbeat; takes over the holds of every server whose heartbeat
# expired, as graces of this server. Returns {was this server still listed, adopted...},
# one page of users at most: the servers given up keep the rest for the next call.
_BEAT = """
local prefix = ARGV[3]
local listed = redis.call('SISMEMBER', KEYS[1], ARGV[1])
redis.call('SET', prefix .. 'alive:' .. ARGV[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
local adopted = {listed}
for _, other in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if other ~= ARGV[1] and redis.call('EXISTS', prefix .. 'alive:' .. other) == 0 then
    redis.call('SREM', KEYS[1], other)
    redis.call('SADD', KEYS[3], other)
  end
end
for _, other in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local held = prefix .. 'held:' .. other
  for _, id in ipairs(redis.call('SMEMBERS', held)) do
    if #adopted > tonumber(ARGV[4]) then return adopted end
    redis.call('SREM', held, id)
    local holders = prefix .. 'holders:' .. id
    redis.call('HDEL', holders, other)
    if redis.call('HLEN', holders) == 0 then
      local user = redis.call('HGET', KEYS[2], id)
      if user then
        redis.call('HSET', holders, ARGV[1], 'grace')
        redis.call('SADD', prefix .. 'held:' .. ARGV[1], id)
        table.insert(adopted, user)
      end
    end
  end
  redis.call('SREM', KEYS[3], other)
end
return adopted
"""

# KEYS: held:{me}, users
# ARGV: me, key prefix, the last id of the page before ('' for the first), ids per page
# After an outage this server has no socket left: every id it holds is in grace here.
# One page of ids, in order: returns {its last id ('' when none was left), adopted...}.
_REGRACE = """
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
local adopted = {''}
for _, id in ipairs(ids) do
  if id > ARGV[3] then
    if #adopted > tonumber(ARGV[4]) then break end
    adopted[1] = id
    local holders = ARGV[2] .. 'holders:' .. id
    local user = redis.call('HGET', KEYS[2], id)
    if user and redis.call('HGET', holders, ARGV[1]) then
      redis.call('HSET', holders, ARGV[1], 'grace')
      table.insert(adopted, user)
    else
      redis.call('HDEL', holders, ARGV[1])
      redis.call('SREM', KEYS[1], id)
    end
  end
end
return adopted
"""

# KEYS: room_id, log, seq
# ARGV: new room id
# Where a snapshot starts: the users and the history are read after it, in pages.
_SNAPSHOT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local room = redis.call('GET', KEYS[1])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local position = '0-0'
if last[1] then position = last[1][1] end
return {room, position, redis.call('GET', KEYS[3]) or '0'}
"""

# KEYS: log
# ARGV: 'XRANGE' or 'XREVRANGE', from, to (as the command takes them; '(' excludes),
#       bytes per page, entries at most
# One page of the log: entries from ``from`` on until the next would bring the page
# over its bytes (one entry at least), so that no reply passes a client output limit.
_PAGE = """
local page, size, from = {}, 0, ARGV[2]
local budget, most = tonumber(ARGV[4]), tonumber(ARGV[5])
while #page < most do
  local batch = redis.call(ARGV[1], KEYS[1], from, ARGV[3], 'COUNT', math.min(100, most - #page))
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local bytes = 32 + #entry[1]
    for _, value in ipairs(entry[2]) do bytes = bytes + 8 + #value end
    if #page > 0 and size + bytes > budget then return page end
    size = size + bytes
    page[#page + 1] = entry
  end
  from = '(' .. batch[#batch][1]
end
return page
"""

#: The most bytes of entries one read of the log asks Redis for (one entry at least).
#: Redis counts the buffers a reply takes, up to about three times its bytes: a page
#: of the longest messages the protocol allows stays under a 32 KiB limit.
PAGE_BYTES = 8 * 1024
#: Users one ``HSCAN`` or paged script asks for: at most about 300 bytes each, so
#: that a page stays near :data:`PAGE_BYTES`.
PAGE_ITEMS = 30


@dataclass(frozen=True)
class Beat:
    """What a heartbeat found: whether others had given this server up, whom it adopted."""

    was_listed: bool
    adopted: list[UserEntry]


class RedisBackplane:
    """One server's Redis I/O for a shared chat. See the module docstring.

    Args:
        url: ``redis://HOST:PORT/DB`` (``rediss://`` for TLS, ``unix://`` for a socket).
        history: messages a snapshot carries (the server's history size).
        keep: log entries kept in Redis (approximately): recovery reaches this far back.
        dedupe_per_id: ``clientMessageId`` values remembered per id.
        heartbeat: seconds between heartbeats; a server silent for five of them is
            taken for dead.
        prefix: the key prefix (one chat per prefix in one Redis database).

    Server thread only. Every method raises :class:`~wslab.errors.BackplaneError` when
    Redis cannot be reached or answers with an error.
    """

    def __init__(
        self,
        url: str,
        *,
        history: int = DEFAULT_LIMITS.history,
        keep: int = DEFAULT_REDIS.keep,
        dedupe_per_id: int = DEFAULT_LIMITS.dedupe_per_id,
        heartbeat: float = DEFAULT_REDIS.heartbeat,
        prefix: str = "wslab:",
    ) -> None:
        try:
            from redis.asyncio import Redis
        except ImportError:
            raise MissingExtraError("ChatServer(redis=...)", "redis", extra="redis") from None
        self.url = url
        self.history = history
        self.keep = keep
        self.dedupe_per_id = dedupe_per_id
        self.heartbeat = heartbeat
        self.ttl_ms = max(1000, int(heartbeat * 5000))
        self.prefix = prefix
        #: This server's name in Redis: new at every start.
        self.server_id = secrets.token_hex(6)
        self.position = "0-0"
        #: The chat's secret for users' tags, read from Redis by :meth:`load_tag_key`.
        self.tag_key = ""
        block = 1.0
        self.block_ms = int(block * 1000)
        try:
            self._redis: Redis = Redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=2.0,
                socket_timeout=block + 5.0,
                health_check_interval=0,
            )
        except ValueError as error:
            raise ConfigurationError(f"bad Redis URL {safe_url(url)}: {error}") from None
        # The log reader blocks on its own connection, so that it never holds up a claim.
        self._reader: Redis = Redis(connection_pool=self._redis.connection_pool)
        self._scripts = {
            name: self._redis.register_script(source)
            for name, source in (
                ("claim", _CLAIM),
                ("grace", _MARK_GRACE),
                ("release", _RELEASE),
                ("append", _APPEND),
                ("beat", _BEAT),
                ("regrace", _REGRACE),
                ("snapshot", _SNAPSHOT),
                ("page", _PAGE),
            )
        }

    def key(self, name: str) -> str:
        return self.prefix + name

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        try:
            return await awaitable
        except (RedisError, OSError) as error:
            reason = str(error) or type(error).__name__
            if isinstance(error, (RedisConnectionError, ConnectionRefusedError)) and (
                "111" in reason or "refused" in reason.lower()
            ):
                reason = "connection refused (is redis-server running there?)"
            where = safe_url(self.url)
            if what == "connect":
                raise BackplaneError(f"cannot reach Redis at {where}: {reason}") from None
            raise BackplaneError(f"Redis at {where} failed ({what}): {reason}") from None

    async def check(self) -> None:
        """Reach Redis and check its version; raise :class:`BackplaneError` with why not."""
        info = await self._call("connect", self._redis.info("server"))
        version = str(info.get("redis_version", "0"))
        found = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
        if found < MIN_REDIS:
            raise BackplaneError(
                f"Redis at {safe_url(self.url)} is version {version};"
                f" a shared chat needs {MIN_REDIS[0]}.{MIN_REDIS[1]} or newer"
            )

    async def load_tag_key(self) -> None:
        """Read the chat's secret for users' tags; the first server to ask makes it."""
        key = self.key("tag_key")
        await self._call("tag key", self._redis.set(key, new_tag_key(), nx=True))
        self.tag_key = str(await self._call("tag key", self._redis.get(key)))

    async def snapshot(self) -> Snapshot:
        """The chat as of now, and the log position to read on from.

        Read in pages (:data:`PAGE_BYTES`): what changes meanwhile is in the log
        after the position, and reading it again changes nothing.
        """
        keys = [self.key("room_id"), self.key("log"), self.key("seq")]
        reply = await self._call(
            "snapshot", self._scripts["snapshot"](keys=keys, args=[secrets.token_hex(8)])
        )
        room_id, position, seq = reply
        history: list[MessageEntry] = []
        # Enough entries back for the history, with room for joins and leaves between.
        most = max(1000, self.history * 20)
        async for page in self._log_pages("XREVRANGE", position, "-", most, "snapshot"):
            history += _messages(page)
            if len(history) >= self.history:
                break
        history = history[: self.history]
        history.reverse()
        self.position = position
        return Snapshot(
            room_id=room_id,
            users=await self._users(),
            history=history,
            last_message_id=int(seq),
            position=position,
        )

    async def _users(self) -> list[UserEntry]:
        """Who is present, read in pages (``HSCAN``), in the order they joined."""
        stored: dict[str, str] = {}
        cursor = 0
        while True:
            cursor, page = await self._call(
                "snapshot", self._redis.hscan(self.key("users"), cursor, count=PAGE_ITEMS)
            )
            stored.update(page)
            if not cursor:
                return _parse_users(stored.values())

    async def _log_pages(
        self, command: str, start: str, end: str, most: int, what: str
    ) -> AsyncIterator[list[tuple[str, list[str]]]]:
        """Up to ``most`` entries of the log from ``start`` towards ``end``, page by page."""
        while most > 0:
            args: list[str | int] = [command, start, end, PAGE_BYTES, most]
            page = await self._call(what, self._scripts["page"](keys=[self.key("log")], args=args))
            if not page:
                return
            yield page
            most -= len(page)
            start = "(" + page[-1][0]

    async def claim(self, claim: Claim, new_token: str) -> ClaimResult:
        """Hold ``claim.event.id`` on this server (checking its token); fetch recovery."""
        event = claim.event
        user_id = event.id
        keys = [
            self.key("tokens"),
            self.key("users"),
            self.key(f"holders:{user_id}"),
            self.key(f"held:{self.server_id}"),
            self.key("log"),
            self.key("seq"),
            self.key("joins"),
        ]
        if not self.tag_key:
            await self.load_tag_key()  # never a tag from an empty key, whoever calls first
        user = user_entry(user_id, event.username, user_tag(self.tag_key, user_id))
        entry = json.dumps(user, ensure_ascii=False)
        args: list[str | int] = [
            user_id,
            self.server_id,
            event.token or "",
            new_token,
            entry,
            self.keep,
        ]
        reply = await self._call("claim", self._scripts["claim"](keys=keys, args=args))
        if reply[0] == "taken":
            return ClaimResult("taken")
        status, token, stored = reply
        held = _parse_user(stored)
        older: list[MessageEntry] = []
        complete = True
        if claim.recover_after is not None:
            older, complete = await self.messages_after(claim.recover_after)
        return ClaimResult(status, token, held["username"], older, complete, held.get("tag", ""))

    async def messages_after(
        self, message_id: int, limit: int = 100_000
    ) -> tuple[list[MessageEntry], bool]:
        """Logged messages after ``message_id``, oldest first, and whether none is missing."""
        found: list[MessageEntry] = []
        start = f"{message_id + 1}-0"
        # The log keeps about ``keep`` entries: the bound stops a read a flood outruns.
        async for page in self._log_pages("XRANGE", start, "+", self.keep * 2, "recovery"):
            found += _messages(page)
            if len(found) >= limit:
                break
        complete = not found or found[0]["messageId"] == message_id + 1
        return found, complete

    async def append(self, append: Append) -> AppendResult:
        """Number and log a message, unless its ``clientMessageId`` was accepted before."""
        (result,) = await self.append_batch([append])
        return result

    async def append_batch(self, appends: Sequence[Append]) -> list[AppendResult]:
        """:meth:`append` for several messages, in their order, in one script call."""
        args: list[str | int] = [self.keep, self.dedupe_per_id, self.prefix]
        for append in appends:
            draft = dict(append.draft)
            draft.pop("messageId", None)
            rest = _ENCODER.encode(draft)
            args += [
                str(draft["id"]),
                "," + rest[1:],
                str(draft.get("clientMessageId", "")),
                append.digest,
                str(draft["ts"]),
            ]
        keys = [self.key("seq"), self.key("log")]
        replies = await self._call("append", self._scripts["append"](keys=keys, args=args))
        return [_appended(reply) for reply in replies]

    async def mark_grace(self, user_id: str) -> None:
        keys = [self.key(f"holders:{user_id}")]
        await self._call("grace", self._scripts["grace"](keys=keys, args=[self.server_id]))

    async def release(self, user_id: str) -> None:
        keys = [
            self.key(f"holders:{user_id}"),
            self.key(f"held:{self.server_id}"),
            self.key("users"),
            self.key("log"),
            self.key("seq"),
        ]
        args: list[str | int] = [user_id, self.server_id, self.keep]
        await self._call("release", self._scripts["release"](keys=keys, args=args))

    async def beat(self) -> Beat:
        """Renew this server's heartbeat; take over the holds of servers that died (in pages)."""
        keys = [self.key("servers"), self.key("users"), self.key("given_up")]
        args: list[str | int] = [self.server_id, self.ttl_ms, self.prefix, PAGE_ITEMS]
        listed, *page = await self._call("heartbeat", self._scripts["beat"](keys=keys, args=args))
        adopted = [_parse_user(user) for user in page]
        while len(page) == PAGE_ITEMS:  # a full page: there may be more
            _, *page = await self._call("heartbeat", self._scripts["beat"](keys=keys, args=args))
            adopted += [_parse_user(user) for user in page]
        return Beat(bool(listed), adopted)

    async def regrace(self) -> list[UserEntry]:
        """After an outage: every id this server still holds is in grace here (in pages)."""
        keys = [self.key(f"held:{self.server_id}"), self.key("users")]
        adopted: list[UserEntry] = []
        after = ""
        while True:
            args: list[str | int] = [self.server_id, self.prefix, after, PAGE_ITEMS]
            after, *users = await self._call(
                "regrace", self._scripts["regrace"](keys=keys, args=args)
            )
            adopted += [_parse_user(user) for user in users]
            if not after:
                return adopted

    async def read(self, *, wait: bool = True) -> list[LogEvent]:
        """The log's next entries, oldest first (waits up to a second for one, if ``wait``)."""
        block = self.block_ms if wait else None
        reply = await self._call(
            "read log",
            self._reader.xread({self.key("log"): self.position}, count=1000, block=block),
        )
        events: list[LogEvent] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.position = entry_id
                events.append(_LOGGED[fields["t"]](json.loads(fields["e"])))
        return events

    async def reconnect(self) -> None:
        """Drop every pooled connection: after an outage they may point at a dead server."""
        with suppress(Exception):
            await self._redis.connection_pool.disconnect()

    async def leave(self) -> None:
        """A clean stop: let the others take over this server's holds at their next beat."""
        await self._call("leave", self._redis.delete(self.key(f"alive:{self.server_id}")))

    async def aclose(self) -> None:
        with suppress(Exception):
            await self._redis.aclose()


#: The log's entry kinds (the stream field ``t``) as the room reads them.
_LOGGED: dict[str, Callable[[Any], LogEvent]] = {
    "m": LoggedMessage,
    "j": LoggedJoin,
    "d": LoggedLeave,
}


def _is(fields: list[str], kind: str) -> bool:
    return fields[fields.index("t") + 1] == kind if "t" in fields else False


def _messages(page: list[tuple[str, list[str]]]) -> list[MessageEntry]:
    """The messages of a page of the log (without its joins and leaves)."""
    return [json.loads(fields[fields.index("e") + 1]) for _, fields in page if _is(fields, "m")]


def _parse_user(stored: str) -> UserEntry:
    entry = json.loads(stored.split(" ", 1)[1])
    return user_entry(entry["id"], entry["username"], entry.get("tag", ""))


def _parse_users(values: Iterable[str]) -> list[UserEntry]:
    """The values of ``users`` ("n entry") as entries, in the order they joined."""
    stored = sorted((int(value.split(" ", 1)[0]), value) for value in values)
    return [_parse_user(value) for _, value in stored]


def _appended(reply: list[Any]) -> AppendResult:
    """One message's reply from the append script."""
    if reply[0]:
        return AppendResult(True, int(reply[1]))
    message_id, digest, ts = str(reply[1]).split("|", 2)
    entry = cast(MessageEntry, json.loads(reply[2])) if reply[2] else None
    return AppendResult(False, int(message_id), digest, ts, entry)


class AppendBatcher:
    """Sends a server's new messages to Redis in batches: one script call per batch.

    One batch is out at a time; the messages that arrive meanwhile wait and go out
    together in the next, up to ``limit`` per call. A quiet chat's message goes out
    at once, alone; a busy chat shares each round trip among many messages. The
    order of :meth:`submit` calls is the order Redis numbers them in.

    Server thread only.
    """

    def __init__(
        self,
        send: Callable[[list[Append]], Awaitable[list[AppendResult]]],
        *,
        limit: int = 256,
    ) -> None:
        self._send = send
        self.limit = limit
        self._waiting: list[tuple[Append, asyncio.Future[AppendResult]]] = []
        self._sending = 0
        self._task: asyncio.Task[None] | None = None
        #: The answer to the message submitted last (``None`` before the first).
        self.last: asyncio.Future[AppendResult] | None = None

    @property
    def backlog(self) -> int:
        """Messages submitted and not answered yet."""
        return len(self._waiting) + self._sending

    def submit(self, append: Append) -> asyncio.Future[AppendResult]:
        """Queue a message for the next batch; the future gets its answer."""
        done: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((append, done))
        self.last = done
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return done

    def fail(self, error: BackplaneError) -> None:
        """Redis is lost or the server stops: every waiting message gets ``error``."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        _settle(self._waiting, error)
        self._waiting = []

    async def _run(self) -> None:
        batch: list[tuple[Append, asyncio.Future[AppendResult]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self.limit]
                del self._waiting[: self.limit]
                self._sending = len(batch)
                try:
                    results = await self._send([append for append, _ in batch])
                finally:
                    self._sending = 0
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        done.set_result(result)
        except asyncio.CancelledError as error:
            _settle(batch, error)
            raise
        except Exception as error:
            # A lost Redis: the link learns of it from the answers. Anything else is a bug.
            if not isinstance(error, BackplaneError):
                logger.exception("appending messages to Redis failed")
            _settle(batch + self._waiting, error)
            self._waiting = []
        finally:
            if self._task is asyncio.current_task():
                self._task = None


def _settle(
    waiting: list[tuple[Append, asyncio.Future[AppendResult]]], error: BaseException
) -> None:
    """End the futures of messages that will not be answered: with ``error``, or cancelled."""
    for _, done in waiting:
        if done.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)


class BackplaneLink:
    """Runs the Redis engine for a server's room, on the server's loop.

    The room's requests (:attr:`Outcome.tasks <wslab.room.Outcome.tasks>`) come
    here through :meth:`request`. Claims, grace marks and releases go through one
    queue, in order, so that Redis sees an id's holds change in the order they
    happened here; appends go out in batches, a hold change after the messages
    requested before it. The log reader hands what it reads to the room, and the
    heartbeat takes over the graces of servers that died.

    ``apply(outcome)`` carries an outcome out (the server's one way to do it);
    ``reschedule()`` re-arms the server's timer; ``on_lost()`` closes every client,
    as an outage must, and returns how many. Server thread only.
    """

    #: Messages that may wait for Redis before a socket that sends more waits too.
    max_backlog = 1024

    def __init__(
        self,
        room: Room,
        backplane: RedisBackplane,
        *,
        apply: Callable[[Outcome], object],
        reschedule: Callable[[], None],
        on_lost: Callable[[], int],
    ) -> None:
        self.room = room
        self.backplane = backplane
        self._apply = apply
        self._reschedule = reschedule
        self._on_lost = on_lost
        self.up = False
        #: Outages seen so far (each one closed every client with 1013).
        self.outages = 0
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._recovery: asyncio.Task[None] | None = None
        self._closing = False
        self._appends = AppendBatcher(backplane.append_batch)

    # ------------------------------------------------------------ life cycle

    async def open(self) -> None:
        """Reach Redis, load the chat, start reading. Raises :class:`BackplaneError`."""
        await self.backplane.check()
        await self._resync()

    async def _resync(self) -> None:
        backplane = self.backplane
        await backplane.load_tag_key()
        # The heartbeat comes last: a server that cannot read the chat back stays
        # silent, so the others take it for dead and run the graces of its users.
        snapshot = await backplane.snapshot()
        regraced = await backplane.regrace()
        beat = await backplane.beat()
        adopted = regraced + beat.adopted
        self.room.load(snapshot)
        self._apply(self.room.adopt(adopted))
        self._queue = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._guard(self._read_loop())),
            asyncio.create_task(self._guard(self._beat_loop())),
            asyncio.create_task(self._guard(self._work_loop())),
        ]
        self.up = True
        self._reschedule()

    async def aclose(self) -> None:
        """Stop: finish queued holds (briefly), leave, close the connection to Redis."""
        if self._recovery is not None:
            self._recovery.cancel()
        if self.up:
            with suppress(Exception):
                await asyncio.wait_for(self._queued(_nothing), 2.0)
            with suppress(Exception):
                await asyncio.wait_for(self.backplane.leave(), 2.0)
        self._closing = True
        self.up = False
        for task in self._tasks:
            task.cancel()
        self._fail_queued(BackplaneError("the server is stopping"))
        self._appends.fail(BackplaneError("the server is stopping"))
        # The loops also stop at their next turn by themselves (``_closing``): a cancel
        # that lands inside a Redis command may be absorbed by the client library.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2 * self.backplane.block_ms / 1000)
        await self.backplane.aclose()

    # ------------------------------------------------------------ requests from the room

    def request(self, task: Request) -> Coroutine[Any, Any, Outcome] | None:
        """Start a request of the room; return what awaits the room's answer, if it has one.

        A claim is answered: await the returned coroutine for the outcome the room
        makes of the answer. Claims, grace marks and releases are queued at once, in
        the order of the calls. Appends go out in batches (:class:`AppendBatcher`),
        and the link applies their answers itself, in order: nothing to await, unless
        more than :attr:`max_backlog` messages wait for Redis; then the coroutine
        returned waits for this one (the socket reads on once Redis caught up).
        During an outage nothing is done: the holds are redone when Redis is back.
        """
        if not self.up:
            return None
        if isinstance(task, Append):
            return self._append(task)
        if isinstance(task, Claim):
            reply = self._queued(partial(self.backplane.claim, task, secrets.token_urlsafe(16)))
            return self._answer(task, reply)
        # A hold changes after the messages sent before it: a leave never overtakes them.
        _detach(self._queued(partial(self._change_hold, task, self._appends.last)))
        return None

    def _append(self, task: Append) -> Coroutine[Any, Any, Outcome] | None:
        reply = self._appends.submit(task)
        reply.add_done_callback(partial(self._appended, task))
        return self._caught_up(reply) if self._appends.backlog > self.max_backlog else None

    def _appended(self, task: Append, reply: asyncio.Future[AppendResult]) -> None:
        if reply.cancelled():
            return
        error = reply.exception()
        if isinstance(error, BackplaneError):
            self.lost(error)
        elif error is None:
            more = self._apply(self.room.answer(task, reply.result()))
            if asyncio.iscoroutine(more):
                _detach(asyncio.ensure_future(more))

    async def _caught_up(self, reply: asyncio.Future[AppendResult]) -> Outcome:
        await asyncio.wait([reply])
        return Outcome()  # the answer is applied by _appended

    async def _answer(self, task: Request, reply: Awaitable[Answer]) -> Outcome:
        try:
            answer = await reply
        except BackplaneError as error:
            self.lost(error)
            return Outcome()
        return self.room.answer(task, answer)

    async def _change_hold(
        self, task: MarkGrace | Release, after: asyncio.Future[AppendResult] | None
    ) -> None:
        if after is not None and not after.done():
            await asyncio.wait([after])
        if isinstance(task, MarkGrace):
            await self.backplane.mark_grace(task.user_id)
        else:
            await self.backplane.release(task.user_id)

    def _queued(self, call: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((call, done))
        return done

    def _fail_queued(self, error: BackplaneError) -> None:
        while not self._queue.empty():
            _, done = self._queue.get_nowait()
            if not done.done():
                done.set_exception(error)

    # ------------------------------------------------------------ loops

    async def _work_loop(self) -> None:
        while not self._closing:
            call, done = await self._queue.get()
            try:
                result = await call()
            except BackplaneError as error:
                if not done.done():
                    done.set_exception(error)
                raise
            if not done.done():
                done.set_result(result)

    async def _read_loop(self) -> None:
        while not self._closing:
            events = await self.backplane.read()
            if events:
                self._apply(self.room.read_log(events))
                self._reschedule()

    async def _beat_loop(self) -> None:
        backplane = self.backplane
        while not self._closing:
            await asyncio.sleep(backplane.heartbeat)
            beat = await backplane.beat()
            if not beat.was_listed:
                # Taken for dead (this loop stalled longer than the others wait):
                # hold again every id this server holds.
                logger.warning(
                    "the other servers took this one for dead (no heartbeat for %g s):"
                    " holding its users again",
                    backplane.ttl_ms / 1000,
                )
                await self._rehold()
            if beat.adopted:
                logger.warning(
                    "took over the graces of %d users of a server whose heartbeat stopped",
                    len(beat.adopted),
                )
                self._apply(self.room.adopt(beat.adopted))
                self._reschedule()

    async def _rehold(self) -> None:
        for user_id, username, token, is_open in self.room.holdings():
            if token is None:
                continue  # an adopted grace: whoever took it over runs it now
            claim = Claim(None, Connecting(id=user_id, username=username, token=token))
            await self._queued(partial(self.backplane.claim, claim, token))
            if not is_open:
                self.request(MarkGrace(user_id))

    async def _guard(self, loop: Awaitable[None]) -> None:
        try:
            await loop
        except BackplaneError as error:
            self.lost(error)

    # ------------------------------------------------------------ outages

    def lost(self, error: BackplaneError) -> None:
        """Redis failed: close every client, refuse new ones, retry until it is back."""
        if not self.up or self._closing:
            return
        self.up = False
        self.outages += 1
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._fail_queued(error)
        self._appends.fail(error)
        closed = self._on_lost()
        logger.error(
            "%s; closed %d clients with 1013, refusing new ones (HTTP 503);"
            " reading the chat back from Redis",
            error,
            closed,
        )
        self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        said = ""
        for delay in backoff(initial=0.1, cap=_RETRY_CAP):
            await asyncio.sleep(delay)
            if self._closing:
                return
            await self.backplane.reconnect()
            try:
                await self._resync()
            except BackplaneError as error:
                if str(error) != said:  # one line per fault, not one per attempt
                    said = str(error)
                    logger.error(_CANNOT_RESYNC, error, _RETRY_CAP)
                continue
            logger.warning("backplane back at %s: serving again", safe_url(self.backplane.url))
            return


#: The most seconds between two attempts to read the chat back after an outage.
_RETRY_CAP = 2.0
_CANNOT_RESYNC = (
    "%s; cannot read the chat back: still refusing clients, and no heartbeat, so the"
    " other servers run the graces of this server's users; retrying (at most %g s apart)"
)


async def _nothing() -> None:
    return None


def _detach(future: asyncio.Future[Any]) -> None:
    """Nobody awaits ``future``: retrieve its exception, if any, here."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())

"""A room on either engine, driven the same way: each input returns once settled.

With the memory engine a :class:`~wslab.room.Room` answers every input in the
call. With the Redis engine its requests go out as tasks and the answers and
the log come back later; :class:`SettledRoom` carries them out on a real Redis
at once (:class:`RedisDriver`), so that a test body reads one outcome per input
whichever engine the room has::

    room = SettledRoom.on_redis(redis_url, clock=clock, grace=1.0)
    room.open("s1")
    outcome = room.receive("s1", connecting)   # "connected" is in it, as in memory

One thread only (the test's). Call :meth:`SettledRoom.close_engine` at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any

from ..backplane import RedisBackplane
from ..engine import Answer, Append, Claim, MarkGrace, RedisEngine, Request
from ..room import Outcome, Room, Socket

__all__ = ["RedisDriver", "SettledRoom"]

_prefixes = itertools.count(1)


class RedisDriver:
    """Carries a room's requests out on Redis, one at a time, and reads the log at once."""

    def __init__(self, room: Room, url: str, *, dedupe_per_id: int = 100) -> None:
        self.room = room
        self.loop = asyncio.new_event_loop()
        # A key prefix of its own: many rooms share one redis-server without meeting.
        prefix = f"wslab-test-{next(_prefixes)}-{secrets.token_hex(3)}:"
        self.backplane = RedisBackplane(
            url, history=room.history_cap, dedupe_per_id=dedupe_per_id, prefix=prefix
        )
        self.loop.run_until_complete(self.backplane.load_tag_key())
        room.load(self.loop.run_until_complete(self.backplane.snapshot()))

    def settle(self, outcome: Outcome) -> Outcome:
        """The outcome with each task answered, and what the log then said, in order."""
        settled = Outcome(list(outcome.sends), outcome.close)
        for task in outcome.tasks:
            more = self.room.answer(task, self.loop.run_until_complete(self._run(task)))
            events = self.loop.run_until_complete(self.backplane.read(wait=False))
            more.extend(self.room.read_log(events))
            settled.extend(self.settle(more))
        return settled

    async def _run(self, task: Request) -> Answer:
        if isinstance(task, Claim):
            return await self.backplane.claim(task, secrets.token_urlsafe(16))
        if isinstance(task, Append):
            return await self.backplane.append(task)
        if isinstance(task, MarkGrace):
            await self.backplane.mark_grace(task.user_id)
        else:
            await self.backplane.release(task.user_id)
        return None

    def close(self) -> None:
        self.loop.run_until_complete(self.backplane.aclose())
        self.loop.close()


class SettledRoom:
    """A :class:`~wslab.room.Room` whose inputs return settled outcomes. See the module.

    Every other attribute is the room's.
    """

    def __init__(self, room: Room, driver: RedisDriver | None = None) -> None:
        self.room = room
        self.driver = driver

    @classmethod
    def on_redis(cls, url: str, **options: Any) -> SettledRoom:
        """A room on the Redis engine at ``url`` (``dedupe_per_id`` goes to Redis)."""
        dedupe_per_id = options.pop("dedupe_per_id", 100)
        room = Room(engine=RedisEngine(), dedupe_per_id=dedupe_per_id, **options)
        return cls(room, RedisDriver(room, url, dedupe_per_id=dedupe_per_id))

    def _settle(self, outcome: Outcome) -> Outcome:
        return self.driver.settle(outcome) if self.driver is not None else outcome

    def open(self, socket: Socket) -> Outcome:
        return self._settle(self.room.open(socket))

    def receive(self, socket: Socket, data: str | bytes) -> Outcome:
        return self._settle(self.room.receive(socket, data))

    def close(self, socket: Socket) -> Outcome:
        return self._settle(self.room.close(socket))

    def expire(self) -> Outcome:
        return self._settle(self.room.expire())

    def flush_presence(self) -> Outcome:
        return self._settle(self.room.flush_presence())

    def close_engine(self) -> None:
        """Close the connection to Redis, if any. Safe to repeat."""
        if self.driver is not None:
            self.driver.close()
            self.driver = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.room, name)

"""What every test folder shares: the time unit, real servers on port 0, a Redis server,
frame builders.

Every wait in the suite is a condition with a timeout counted in *units*
(:func:`unit`), scaled by the environment variable ``WSLAB_TIME_SCALE``: a slow
machine raises one number (``WSLAB_TIME_SCALE=3``) instead of tests sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from wslab import ChatServer, MissingProgramError, RedisServer
from wslab.room import Room
from wslab.testing.rooms import SettledRoom

T = TypeVar("T")

#: The factor every timeout and stability window of the suite is multiplied by.
TIME_SCALE = float(os.environ.get("WSLAB_TIME_SCALE", "1"))
#: One ordinary wait, in seconds: conditions normally hold in milliseconds.
WAIT = 5.0 * TIME_SCALE


def unit(seconds: float = 1.0) -> float:
    """A duration of ``seconds``, scaled by ``WSLAB_TIME_SCALE``."""
    return seconds * TIME_SCALE


def run_bounded(scenario: Coroutine[Any, Any, T], timeout: float = 6 * WAIT) -> T:
    """Run one async scenario on a fresh loop, so that a hang fails instead of blocking."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


# ---------------------------------------------------------------------------- frames


def hello(user_id: str, username: str = "user", **fields: Any) -> str:
    """A ``connecting`` frame."""
    return json.dumps({"event": "connecting", "id": user_id, "username": username, **fields})


def say(text: str, cmid: str | None = None) -> str:
    """A ``writeMessage`` frame."""
    frame: dict[str, Any] = {"event": "writeMessage", "message": text}
    if cmid is not None:
        frame["clientMessageId"] = cmid
    return json.dumps(frame)


# ---------------------------------------------------------------------------- servers


@pytest.fixture
def make_server() -> Iterator[Callable[..., ChatServer]]:
    """Start ChatServers on free loopback ports; stop them all at teardown."""
    servers: list[ChatServer] = []

    def make(**options: Any) -> ChatServer:
        server = ChatServer(**options).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()  # safe twice: a test may have stopped it already
        store = getattr(server, "store", None)
        if store is not None and hasattr(store, "close"):
            store.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started, persistent ``redis-server`` on a free loopback port, in a temporary
    directory; stopped and removed after the test.

    A missing ``redis-server`` fails the test with the install command: the suite
    needs it (``.ci/run`` installs it), so it is never skipped.
    """
    try:
        server = RedisServer(persist=True)
    except MissingProgramError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server.start(timeout=2 * WAIT)
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One ``redis-server`` for a whole run: rooms on it each use a key prefix of their own."""
    try:
        server = RedisServer()
    except MissingProgramError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server.start(timeout=2 * WAIT)
    finally:
        server.close()


#: Room options only the memory engine has, and why the Redis engine has none.
MEMORY_ONLY = {
    "seed_compatible": "seed-compatible mode trusts ids: only the memory engine offers it",
    "store": "the SQLite store belongs to the memory engine (Redis keeps its own history)",
    "max_bindings": "Redis keeps every binding; max_bindings bounds the memory engine's",
}


class RoomEngine:
    """The engine a room test runs on (``memory`` or ``redis``); makes and closes its rooms."""

    def __init__(self, name: str, redis: RedisServer | None = None) -> None:
        self.name = name
        self.redis = redis
        self.rooms: list[SettledRoom] = []

    def __repr__(self) -> str:
        return self.name

    def room(self, **options: Any) -> SettledRoom:
        """A room with these options; on Redis, options it cannot have skip the test."""
        if self.redis is None:
            room = SettledRoom(Room(**options))
        else:
            for option, why in MEMORY_ONLY.items():
                if options.get(option):
                    pytest.skip(why)
            options.pop("token_factory", None)  # Redis makes the tokens
            room = SettledRoom.on_redis(self.redis.url, **options)
        self.rooms.append(room)
        return room

    def memory_only(self, why: str) -> None:
        """Skip the test on Redis, saying why."""
        if self.redis is not None:
            pytest.skip(why)

    def close(self) -> None:
        for room in self.rooms:
            room.close_engine()


@pytest.fixture(params=["memory", "redis"])
def engine(request: pytest.FixtureRequest) -> Iterator[RoomEngine]:
    """Run the test on each engine: in memory, and on a real Redis."""
    redis = request.getfixturevalue("shared_redis") if request.param == "redis" else None
    choice = RoomEngine(request.param, redis)
    try:
        yield choice
    finally:
        choice.close()

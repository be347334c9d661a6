"""What every test folder shares: the tiers, the time unit, real servers on port 0, a
Redis server, frame builders, and the reliability figures in the terminal summary.

Each test is marked by the tier its folder names (``tests/unit`` is ``unit``, and so on
for ``integration``, ``system`` and ``e2e``), so ``-m`` can pick tiers from anywhere;
everything under ``tests/e2e/browser`` is marked ``browser`` too. While a test runs, its
tier's rules hold (:func:`tier_rules`): a unit test opens no network socket, and an
integration test starts no process.

Every wait in the suite is a condition with a timeout counted in *units*
(:func:`unit`), scaled by the environment variable ``WSLAB_TIME_SCALE``: a slow
machine raises one number (``WSLAB_TIME_SCALE=3``) instead of tests sleeping.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import subprocess
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pytest_socket import disable_socket, enable_socket

from wslab import ChatServer, MissingProgramError, RedisServer
from wslab.room import Room
from wslab.testing.rooms import SettledRoom

T = TypeVar("T")

#: The tiers, fastest first: each is a folder of tests/ and a marker.
TIERS = ("unit", "integration", "system", "e2e")
TESTS = Path(__file__).resolve().parent

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


# ---------------------------------------------------------------------------- tiers


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the first folder under tests/ (None outside the tiers)."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(Path(item.path))
        if tier is None:
            continue
        item.add_marker(tier)
        if Path(item.path).resolve().is_relative_to(TESTS / "e2e" / "browser"):
            item.add_marker("browser")


@pytest.fixture(autouse=True)
def tier_rules(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hold each test to its tier's rules while it runs.

    A unit test opens no network socket: pytest-socket refuses every socket but
    ``AF_UNIX`` (an event loop's self-pipe). An integration test starts no process:
    its servers live in the test process, so a child process (a ``redis-server``, a
    ``python -m wslab serve``) fails the test, naming the tier where it belongs.
    """
    tier = tier_of(Path(request.node.path))
    if tier == "unit":
        disable_socket(allow_unix_socket=True)
    elif tier == "integration":
        monkeypatch.setattr(subprocess.Popen, "__init__", _no_process_in_integration)
    try:
        yield
    finally:
        if tier == "unit":
            enable_socket()


def _no_process_in_integration(popen: subprocess.Popen[Any], args: Any, *_: Any, **__: Any) -> None:
    raise RuntimeError(
        f"an integration test started a process ({args!r}): tests that run processes "
        "(redis-server, server processes, hubs) belong in tests/system"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Move the stack dump of ``faulthandler_timeout`` to a test's own timeout mark.

    pytest arms the dump for every test; a test allowed more time would otherwise
    print every thread's stack while it is still within its limit.
    """
    mark = item.get_closest_marker("timeout")
    limit = mark.kwargs.get("timeout", mark.args[0] if mark.args else None) if mark else None
    if limit is None or not float(item.config.getini("faulthandler_timeout") or 0):
        return
    from _pytest.faulthandler import fault_handler_stderr_fd_key  # where pytest dumps

    if fault_handler_stderr_fd_key in item.config.stash:
        stderr = item.config.stash[fault_handler_stderr_fd_key]
        faulthandler.dump_traceback_later(float(limit), file=stderr)


# ---------------------------------------------------------------------------- frames


def hello(user_id: str, username: str = "user", **fields: Any) -> str:
    """A ``connecting`` frame."""
    return json.dumps({"event": "connecting", "id": user_id, "username": username, **fields})


def untagged(value: Any) -> Any:
    """``value`` (an event, an entry, or a list of them) without any ``tag`` field.

    For tests about something else: a user's tag comes from the chat's random secret.
    """
    if isinstance(value, list):
        return [untagged(item) for item in value]
    if isinstance(value, dict):
        return {key: untagged(item) for key, item in value.items() if key != "tag"}
    return value


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


@pytest.fixture
def chat_server(make_server: Callable[..., ChatServer]) -> Callable[..., ChatServer]:
    """A factory: ``chat_server(**options)`` -> a started ChatServer on port 0.

    The suite's ``make_server``, under the name the reliability tests use.
    """
    return make_server


# ---------------------------------------------------------------------------- figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures of the soak, the live fuzz and the attacks (and where they are)."""
    from tests.helpers.reliability import FIGURES, results_dir

    if not FIGURES:
        return
    terminalreporter.section("wslab reliability figures")
    for name, figures in FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(figures, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {results_dir()})")


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


@pytest.fixture(params=["memory"])
def engine(request: pytest.FixtureRequest) -> Iterator[RoomEngine]:
    """The engine a room test runs on: in memory here; on a real Redis where a module
    parametrizes it with ``"redis"`` (tests/system/test_room_on_redis.py)."""
    redis = request.getfixturevalue("shared_redis") if request.param == "redis" else None
    choice = RoomEngine(request.param, redis)
    try:
        yield choice
    finally:
        choice.close()


#: Every classroom teacher event with the fields it takes (bob is the student acted on).
TEACHER_EVENTS = [
    ("mute", {"id": "bob"}),
    ("unmute", {"id": "bob"}),
    ("kick", {"id": "bob"}),
    ("clear", {}),
    ("announce", {"message": "exam at 10"}),
]

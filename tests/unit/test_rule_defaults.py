"""Each option of the room's rules has one default and one check, in wslab.options.

The room, the memory engine, the classroom and the Redis backplane take some of
the server's options one by one; these tests hold them to the option objects:
the same defaults (read from them, not written again) and the same refusals.
The classroom builds on the room through its documented hooks only.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import hello
from wslab import moderation
from wslab.backplane import RedisBackplane
from wslab.clock import FakeClock
from wslab.engine import MemoryEngine, RedisEngine
from wslab.errors import ConfigurationError
from wslab.moderation import ClassRoom
from wslab.options import (
    DEFAULT_CLASSROOM,
    DEFAULT_LIMITS,
    DEFAULT_REDIS,
    DEFAULT_TIMEOUTS,
    ClassroomOptions,
    Limits,
    Timeouts,
)
from wslab.protocol import Connected
from wslab.room import Room
from wslab.server import ChatServer
from wslab.store import SQLiteStore

#: Every parameter that is an option, by the option it is: (defaults object, field).
OPTION_PARAMETERS: dict[str, tuple[object, str]] = {
    "grace": (DEFAULT_TIMEOUTS, "grace"),
    "presence_tick": (DEFAULT_TIMEOUTS, "presence_tick"),
    "history": (DEFAULT_LIMITS, "history"),
    "rate_limit": (DEFAULT_LIMITS, "rate_limit"),
    "rate_burst": (DEFAULT_LIMITS, "rate_burst"),
    "max_bindings": (DEFAULT_LIMITS, "max_bindings"),
    "dedupe_per_id": (DEFAULT_LIMITS, "dedupe_per_id"),
    "kick_seconds": (DEFAULT_CLASSROOM, "kick_seconds"),
    "keep": (DEFAULT_REDIS, "keep"),
    "heartbeat": (DEFAULT_REDIS, "heartbeat"),
}

#: The constructors that take options one by one, and how many of them each takes.
TAKERS: list[tuple[Callable[..., object], int]] = [
    (Room, 7),
    (MemoryEngine, 2),
    (ClassRoom, 3),
    (RedisBackplane, 4),
]


@pytest.mark.parametrize(("taker", "count"), TAKERS, ids=lambda t: getattr(t, "__name__", ""))
def test_every_option_default_of_a_rule_taker_is_the_option_objects(
    taker: Callable[..., object], count: int
) -> None:
    parameters = inspect.signature(taker).parameters
    taken = [name for name in parameters if name in OPTION_PARAMETERS]
    assert len(taken) == count, taken
    for name in taken:
        defaults, field = OPTION_PARAMETERS[name]
        assert parameters[name].default == getattr(defaults, field), (taker, name)


@pytest.mark.parametrize(("taker", "count"), TAKERS, ids=lambda t: getattr(t, "__name__", ""))
def test_no_option_default_is_written_again_as_a_number(
    taker: Callable[..., object], count: int
) -> None:
    """A copy of a default that happens to agree today fails here too."""
    init = inspect.getsource(taker.__init__)  # type: ignore[misc]
    (function,) = ast.parse(textwrap.dedent(init)).body
    assert isinstance(function, ast.FunctionDef)
    arguments = function.args
    written = dict(zip([a.arg for a in arguments.kwonlyargs], arguments.kw_defaults, strict=True))
    for name, default in written.items():
        if name in OPTION_PARAMETERS:
            assert default is not None
            shown = ast.unparse(default)
            assert shown.startswith("DEFAULT_"), f"{taker.__name__}({name}={shown})"


def test_the_room_the_engine_and_the_classroom_get_what_a_server_is_given() -> None:
    server = ChatServer(dedupe_per_id=3, max_bindings=50, history=7, presence_tick=0.2)
    room = server.room
    assert (room.dedupe_per_id, room.history_cap, room.rates.max_ids) == (3, 7, 50)
    assert room.engine.dedupe_per_id == 3  # type: ignore[attr-defined]
    plain = ChatServer().room
    assert (plain.grace, plain.rate_limit, plain.history_cap) == (
        DEFAULT_TIMEOUTS.grace,
        DEFAULT_LIMITS.rate_limit,
        DEFAULT_LIMITS.history,
    )


BAD_VALUES: list[tuple[Callable[..., object], dict[str, Any], Callable[..., object]]] = [
    (Room, {"grace": -1}, Timeouts),
    (Room, {"grace": float("inf")}, Timeouts),
    (Room, {"presence_tick": -0.5}, Timeouts),
    (Room, {"history": 0}, Limits),
    (Room, {"rate_limit": -1}, Limits),
    (Room, {"rate_burst": 0}, Limits),
    (Room, {"max_bindings": 0}, Limits),
    (Room, {"dedupe_per_id": 0}, Limits),
    (Room, {"history": "5"}, Limits),
    (MemoryEngine, {"dedupe_per_id": 0}, Limits),
    (MemoryEngine, {"max_bindings": -3}, Limits),
    (ClassRoom, {"kick_seconds": -1}, ClassroomOptions),
    (ClassRoom, {"grace": -1}, Timeouts),
]


@pytest.mark.parametrize(("taker", "values", "options"), BAD_VALUES)
def test_a_bad_option_is_refused_in_the_option_objects_words(
    taker: Callable[..., object], values: dict[str, Any], options: Callable[..., object]
) -> None:
    with pytest.raises(ConfigurationError) as expected:
        options(**values)
    with pytest.raises(ConfigurationError) as refused:
        taker(**values)
    assert str(refused.value) == str(expected.value)
    assert isinstance(refused.value, ValueError)  # as a bad argument always was


def test_a_server_on_redis_with_a_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no store"):
        ChatServer(redis="redis://127.0.0.1:6379/0", store="chat.db")


# ---------------------------------------------------------------- the classroom on the room


def test_the_classroom_imports_no_private_name_and_overrides_no_private_method() -> None:
    tree = ast.parse(Path(moderation.__file__).read_text(encoding="utf-8"))
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert [name for name in imported if name.startswith("_")] == []
    overridden = [
        name
        for name in vars(ClassRoom)
        if name.startswith("_") and not name.startswith("__") and hasattr(Room, name)
    ]
    assert overridden == []


def test_the_classroom_touches_only_private_fields_of_its_own() -> None:
    """Every ``self._x`` in the classroom is a field or method the classroom made."""
    source = textwrap.dedent(inspect.getsource(ClassRoom))
    (cls,) = ast.parse(source).body
    assert isinstance(cls, ast.ClassDef)
    own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    own |= {
        target.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    }
    used = {
        node.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
    }
    assert used - own == set()


def test_clearing_a_memory_rooms_history_moves_room_and_engine_to_a_new_room_id() -> None:
    room = Room(clock=FakeClock(), grace=0)
    room.open("s")
    room.receive("s", hello("ann", "Ann"))
    room.receive("s", '{"event": "writeMessage", "message": "hi"}')
    before = room.room_id
    assert [e["message"] for e in room.history] == ["hi"]
    after = room.clear_history()
    assert after == room.room_id == room.engine.room_id != before  # type: ignore[attr-defined]
    assert room.history == []
    room.receive("s", '{"event": "writeMessage", "message": "again"}')
    assert [(e["messageId"], e["message"]) for e in room.history] == [(2, "again")]


def test_a_stored_or_shared_history_is_not_cleared(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chat.db")
    try:
        stored = Room(clock=FakeClock(), store=store)
        with pytest.raises(ConfigurationError, match="store"):
            stored.clear_history()
    finally:
        store.close()
    shared = Room(clock=FakeClock(), engine=RedisEngine())
    with pytest.raises(ConfigurationError, match="Redis"):
        shared.clear_history()


def test_a_room_that_welcomes_with_more_says_it_in_connected() -> None:
    class Tagged(Room):
        def welcome(self, socket: Hashable, connected: Connected) -> Connected:
            return dataclasses.replace(connected, role="teacher")

    room = Tagged(clock=FakeClock())
    room.open("s")
    (send,) = room.receive("s", hello("ann", "Ann")).sends
    assert send.event.role == "teacher"  # type: ignore[union-attr]

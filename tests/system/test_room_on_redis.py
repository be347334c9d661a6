"""The room's tests on the Redis engine: the same test bodies, on a real ``redis-server``.

tests/unit/test_room.py, tests/unit/test_names.py and tests/integration/test_presence.py
run every test that takes the ``engine`` fixture in memory. This module collects those
same functions and parametrizes ``engine`` with ``"redis"``, so one body checks both
engines; the state machine of tests/unit/test_fuzz_room.py runs here on Redis too.
Tests of options only the memory engine has skip here, saying why.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings

from tests.conftest import RoomEngine
from tests.integration import test_presence
from tests.unit import test_names, test_room
from tests.unit.test_fuzz_room import RoomMachine
from wslab.testing.rooms import SettledRoom

pytestmark = pytest.mark.parametrize("engine", ["redis"], indirect=True)


def engine_tests(*modules: ModuleType) -> dict[str, Callable[..., Any]]:
    """The test functions of ``modules`` that take the ``engine`` fixture, by name."""
    found: dict[str, Callable[..., Any]] = {}
    for module in modules:
        for name, test in vars(module).items():
            if not (name.startswith("test_") and inspect.isfunction(test)):
                continue
            if "engine" in inspect.signature(test).parameters:
                assert name not in found, f"two engine tests are called {name}"
                found[name] = test
    return found


# pytest collects a module's test functions wherever they were defined.
globals().update(engine_tests(test_room, test_names, test_presence))


class RedisRoomMachine(RoomMachine):
    """The same machine and model, the room on a real Redis (the ``redis`` engine).

    Seed-compatible mode is the memory engine's only, and the history cap is the
    default: Redis recovers beyond the cap from its log, where the model expects
    the memory engine's truncation (tested on both engines in tests/unit/test_room.py
    and here).
    """

    redis_url = ""

    def engine_options(self, seed: bool, cap: int) -> tuple[bool, int]:
        return False, 100

    def make_room(self, **options: Any) -> SettledRoom:
        options.pop("seed_compatible")
        return SettledRoom.on_redis(self.redis_url, **options)

    def teardown(self) -> None:
        room = getattr(self, "room", None)
        if room is not None:
            room.close_engine()


RedisRoomMachine.TestCase.settings = settings(
    RoomMachine.TestCase.settings, max_examples=15, stateful_step_count=40
)


def test_room_on_redis_keeps_its_invariants_under_random_frames(engine: RoomEngine) -> None:
    assert engine.redis is not None
    RedisRoomMachine.redis_url = engine.redis.url
    RedisRoomMachine.TestCase().runTest()

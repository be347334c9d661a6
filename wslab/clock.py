"""Clocks: the real one, and a fake one that tests and lessons move by hand.

Time-dependent logic in wslab (reload grace, rate limits, backoff uptime, message
timestamps) asks a clock instead of calling :mod:`time` directly, so a test can
make a second pass in no time at all. Pure: no asyncio, no threads.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "iso_utc"]


class Clock(Protocol):
    """What wslab needs from a clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""

    def time(self) -> float:
        """Seconds since the Unix epoch (for message timestamps)."""


class SystemClock:
    """The machine's clocks: :func:`time.monotonic` and :func:`time.time`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to, for deterministic tests and lessons.

    Not thread-safe: move it from the thread that uses it.
    """

    def __init__(self, start: float = 0.0, epoch: float = 1_767_225_600.0) -> None:
        # The default epoch is 2026-01-01T00:00:00Z, so timestamps read naturally.
        self._now = start
        self._epoch = epoch

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never backward)."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._now += seconds


def iso_utc(timestamp: float) -> str:
    """Format Unix seconds as ISO-8601 UTC with milliseconds: ``2026-01-01T00:00:00.000Z``."""
    # time.strftime on a struct is about twice as fast as going through datetime,
    # and this runs once per chat message.
    milliseconds = int(timestamp * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{milliseconds:03d}Z"

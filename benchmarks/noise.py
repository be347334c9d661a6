"""Other work on the machine: wait for quiet before a measurement, and repeat noisy runs.

A 2-core box shared with test suites or browsers gives figures that say more about the
neighbours than about the server. Each fan-out run records the CPU that every other
process used meanwhile (``other_cpu_percent``, 100 = one core). A :class:`QuietPolicy`
decides how long to wait for quiet before a run and whether to repeat a noisy one, all
within one time budget so that a busy machine cannot stretch a run past its bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psutil

__all__ = ["QuietPolicy"]

T = TypeVar("T")


@dataclass
class QuietPolicy:
    """How much waiting and repeating a run may spend on other people's CPU use."""

    #: machine CPU use (% of one core) under which the box counts as quiet
    quiet_percent: float = 10.0
    #: other processes' CPU during a run above which it is repeated (% of one core)
    noisy_percent: float = 15.0
    #: longest wait for quiet before one run, seconds
    max_wait: float = 3.0
    #: extra attempts of a noisy run
    retries: int = 1
    #: seconds all waits and repeats together may add to the whole benchmark
    budget: float = 60.0
    spent: float = field(default=0.0, init=False)

    @property
    def left(self) -> float:
        """Seconds of the budget not spent yet."""
        return max(0.0, self.budget - self.spent)

    def wait_for_quiet(self, sample: float = 0.5) -> float:
        """Wait (within budget) until the machine is quiet; return the last use seen."""
        cores = psutil.cpu_count() or 1
        started = time.monotonic()
        deadline = started + min(self.max_wait, self.left)
        busy = float(psutil.cpu_percent(interval=None)) * cores
        while time.monotonic() < deadline:
            busy = float(psutil.cpu_percent(interval=sample)) * cores
            if busy < self.quiet_percent:
                break
        self.spent += time.monotonic() - started
        return busy

    def quietest(self, run: Callable[[], T], noise: Callable[[T], float]) -> tuple[T, int]:
        """Run, repeating while ``noise(result)`` is over the limit; keep the quietest.

        Returns the kept result and the number of attempts made.
        """
        attempts: list[T] = []
        while True:
            self.wait_for_quiet()
            started = time.monotonic()
            attempts.append(run())
            if len(attempts) > 1:
                self.spent += time.monotonic() - started
            if noise(attempts[-1]) <= self.noisy_percent:
                break
            if len(attempts) > self.retries or self.left <= 0:
                break
        return min(attempts, key=noise), len(attempts)


#: For ``--quick`` (CI smoke): never wait, never repeat.
NO_WAITING = QuietPolicy(max_wait=0.0, retries=0, budget=0.0)

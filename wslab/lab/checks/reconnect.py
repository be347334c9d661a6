"""Checks for 06_reconnect: when to reconnect, and how long to wait.

Pure: compared with :mod:`wslab.retry`, the policy the kit's own client uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import islice

from ...protocol import CloseCode
from ...retry import backoff, should_retry
from ._common import fail, passed, run_learner

__all__ = ["check_full_jitter", "check_should_reconnect"]

# The codes the kit's own rules close with, then others a client may still meet
# (protocol error, unsupported data, no status, invalid payload, bad gateway, an
# application's 4000): "every other close" includes them.
_CODES = [1000, 1001, 1006, 1008, 1009, 1011, 1012, 1013, 1002, 1003, 1005, 1007, 1014, 4000]


def _named(code: int) -> str:
    try:
        return f"{code} ({CloseCode(code).name.lower()})"
    except ValueError:
        return f"{code} (a code the kit never sends)"


def check_should_reconnect(should_reconnect: Callable[[int, bool], bool]) -> None:
    """``should_reconnect(code, closed_by_us)`` must match the kit's retry policy."""
    name = "check_should_reconnect"
    for closed_by_us in (False, True):
        for code in _CODES:
            got = run_learner(name, should_reconnect, code, closed_by_us)
            expected = should_retry(code, closed_by_us=closed_by_us)
            if got is not expected:
                who = "we closed it" if closed_by_us else "we did not ask for it"
                raise fail(
                    name,
                    f"after {_named(code)}, {who}, you said {got!r}, expected {expected!r}",
                    "never retry a close you asked for, nor 1008 or 1009 (they would only "
                    "be refused again); retry every other close",
                )
    passed(name, f"{2 * len(_CODES)} closes: the same decision as the kit's client")


class _Script:
    """A fake ``random.random`` that returns a fixed sequence of numbers."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.calls = 0

    def __call__(self) -> float:
        value = self.values[self.calls % len(self.values)]
        self.calls += 1
        return value


def check_full_jitter(full_jitter: Callable[[int, Callable[[], float]], float]) -> None:
    """``full_jitter(attempt, rng)`` must return attempt ``n``'s delay with full jitter.

    The delay is ``rng() * min(10, 0.3 * 2**n)`` seconds: first ceiling 0.3 s,
    doubling, capped at 10 s, drawing exactly one random number per call.
    """
    name = "check_full_jitter"
    values = [0.5, 0.999, 0.0, 0.25, 0.75, 0.1, 0.9, 0.333, 0.666, 0.05, 0.95, 0.5]
    expected = list(islice(backoff(0.3, 2.0, 10.0, rng=_Script(values)), len(values)))
    rng = _Script(values)
    for attempt, want in enumerate(expected):
        before = rng.calls
        got = run_learner(name, full_jitter, attempt, rng)
        if rng.calls != before + 1:
            raise fail(
                name,
                f"attempt {attempt} called rng() {rng.calls - before} times",
                "draw exactly one random number per delay",
            )
        if not isinstance(got, (int, float)) or not math.isclose(got, want, abs_tol=1e-9):
            raise fail(
                name,
                f"attempt {attempt} with rng() = {values[attempt]} gave {got!r}, "
                f"expected {want:.4f}",
                "delay = rng() * min(cap, initial * factor ** attempt)",
            )
    passed(name, f"{len(values)} attempts: the same delays as wslab.retry.backoff()")

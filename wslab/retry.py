"""Reconnect policy: which closes are retried, and how long to wait. Pure.

The original JavaScript design retried every 300 ms, and only after an unclean
close: a server restart (a clean 1001) left every client offline, and a crash
made every client knock at the same instant. wslab's clients wait with
*exponential backoff and full jitter*: attempt ``n`` waits a random time in
``[0, min(cap, initial * factor**n))``, so a thousand clients spread out instead
of arriving together.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .protocol import CloseCode

__all__ = ["FINAL_CLOSE_CODES", "RetryPolicy", "backoff", "should_retry"]

#: Close codes after which a client does not reconnect: 1008 (policy) and 1009 (too
#: big) would only be refused again. Every other close the client did not ask for
#: (1000 or 1001 from the server, 1006, 1011, 1012, 1013, ...) is retried.
FINAL_CLOSE_CODES = frozenset({CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG})


def backoff(
    initial: float = 0.3,
    factor: float = 2.0,
    cap: float = 10.0,
    *,
    jitter: bool = True,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield reconnect delays forever: full jitter over ``min(cap, initial * factor**n)``.

    With ``jitter=False`` it yields the bare exponential ceiling (for comparisons).
    """
    ceiling = initial
    while True:
        yield rng() * ceiling if jitter else ceiling
        ceiling = min(cap, ceiling * factor)


def should_retry(code: int | None, *, closed_by_us: bool) -> bool:
    """Whether a client should reconnect after a close with this code (default policy).

    A close we asked for is never retried; a close without a code (the network
    died) counts as 1006.
    """
    return RetryPolicy().should_retry(code, closed_by_us=closed_by_us)


@dataclass(frozen=True)
class RetryPolicy:
    """Everything a client needs to decide when to reconnect, as plain data.

    ``min_uptime`` guards against a server that accepts and then closes at once:
    the backoff starts over only after a connection stayed up that long, so such
    a server sees attempts slow down instead of a steady hammering.

    ``final_codes`` are never retried. ``retry_codes``, when given, narrows the
    retried codes to that set (the original design retried only 1006).
    """

    initial: float = 0.3
    factor: float = 2.0
    cap: float = 10.0
    jitter: bool = True
    min_uptime: float = 2.0
    max_attempts: int | None = None
    final_codes: frozenset[int] = FINAL_CLOSE_CODES
    retry_codes: frozenset[int] | None = None

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """A fresh sequence of delays, one per attempt."""
        return backoff(self.initial, self.factor, self.cap, jitter=self.jitter, rng=rng)

    def should_retry(self, code: int | None, *, closed_by_us: bool) -> bool:
        """Like :func:`should_retry`, with this policy's codes."""
        if closed_by_us:
            return False
        code = code if code is not None else CloseCode.ABNORMAL_CLOSURE  # no code: it died
        if code in self.final_codes:
            return False
        return self.retry_codes is None or code in self.retry_codes


#: The policy of the original design, for lessons: a fixed 300 ms, no jitter.
SEED_POLICY = RetryPolicy(initial=0.3, factor=1.0, cap=0.3, jitter=False, min_uptime=0.0)

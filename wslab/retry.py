"""Reconnect rules: which closes are retried, how long to wait, when to start over. Pure.

Every client follows the same rules from here: :class:`RetryPolicy` holds the
numbers and the final codes, :class:`Reconnector` makes each decision (the
Python client only does what it answers), and :func:`page_policy` gives the
same numbers to the browser page, whose ``Reconnector`` in ``static/chat.js``
mirrors this one (the browser tests check both against one table).

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

__all__ = [
    "FINAL_CLOSE_CODES",
    "SEED_POLICY",
    "Reconnector",
    "RetryPolicy",
    "backoff",
    "page_policy",
    "should_retry",
]

#: Close codes after which a client does not reconnect: 1008 (policy) and 1009 (too
#: big) would only be refused again, and 4003 (a classroom's teacher removed the user)
#: is a decision to respect. Every other close the client did not ask for
#: (1000 or 1001 from the server, 1006, 1011, 1012, 1013, ...) is retried.
FINAL_CLOSE_CODES = frozenset(
    {CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG, CloseCode.REMOVED}
)


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

    ``rate_limit_pause`` is how long a client waits after a ``rate_limited``
    error before it resends what is still pending (the server dropped it).
    """

    initial: float = 0.3
    factor: float = 2.0
    cap: float = 10.0
    jitter: bool = True
    min_uptime: float = 2.0
    max_attempts: int | None = None
    final_codes: frozenset[int] = FINAL_CLOSE_CODES
    retry_codes: frozenset[int] | None = None
    rate_limit_pause: float = 1.0

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


class Reconnector:
    """The reconnect loop's decisions, as a pure state machine: no sockets, no sleeping.

    A client tells it what happened and does what it answers::

        begin_attempt()                      a connection attempt starts
        after_open()                         the handshake succeeded (the socket is open)
        after_connected(now)                 the server sent ``connected``
        after_close(code, closed_by_us=..., now=...) -> delay in seconds, or None: stop

    Rules, in one place:

    - a close we asked for, a final code (:data:`FINAL_CLOSE_CODES`) or a refused
      handshake (``refused=True``: a 4xx answer, a bad URL or certificate) stops;
    - a connection that stayed up ``policy.min_uptime`` seconds after ``connected``
      was stable: the backoff and the failure count start over;
    - after ``policy.max_attempts`` consecutive failures it stops;
    - otherwise the next delay of the policy's backoff (full jitter).

    ``now`` is any monotonic clock's reading (:meth:`wslab.clock.Clock.monotonic`).
    Not thread-safe: one client, one thread (the client's loop).
    """

    def __init__(
        self, policy: RetryPolicy | None = None, rng: Callable[[], float] = random.random
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._rng = rng
        self._delays = self.policy.delays(rng)
        #: Connection attempts started so far (for lessons and tests).
        self.attempts = 0
        #: Consecutive connections that ended without being stable.
        self.failures = 0
        #: Whether the current attempt's socket opened.
        self.opened = False
        self._connected_at: float | None = None

    def begin_attempt(self) -> None:
        """A connection attempt starts."""
        self.attempts += 1
        self.opened = False
        self._connected_at = None

    def after_open(self) -> None:
        """The current attempt's handshake succeeded."""
        self.opened = True

    def after_connected(self, now: float) -> None:
        """The server accepted us (``connected``) at time ``now``."""
        self._connected_at = now

    def failures_at(self, now: float) -> int:
        """The failures the next close would count from: 0 once this connection is stable."""
        uptime = self.uptime(now)
        if uptime is not None and uptime >= self.policy.min_uptime:
            return 0
        return self.failures

    def uptime(self, now: float) -> float | None:
        """Seconds since ``connected``, or ``None`` if this connection never joined."""
        return None if self._connected_at is None else now - self._connected_at

    def after_close(
        self, code: int | None, *, closed_by_us: bool, now: float, refused: bool = False
    ) -> float | None:
        """The connection ended with ``code`` (``None``: no close frame, as 1006).

        Returns how long to wait before the next attempt, or ``None`` to stop for good.
        """
        uptime = self.uptime(now)
        self._connected_at = None
        if uptime is not None and uptime >= self.policy.min_uptime:
            self._delays, self.failures = self.policy.delays(self._rng), 0  # it held
        self.failures += 1
        if refused or not self.policy.should_retry(code, closed_by_us=closed_by_us):
            return None
        limit = self.policy.max_attempts
        if limit is not None and self.failures > limit:
            return None
        return next(self._delays)

    def reset(self) -> None:
        """Forget the failures: the next close starts the backoff from the beginning."""
        self._delays, self.failures = self.policy.delays(self._rng), 0


def page_policy() -> dict[str, object]:
    """The default policy and the close codes' meanings as JSON-ready data.

    The browser page and the notebook widget get these numbers and words from
    here when they are served or rendered (:func:`wslab.frontend.page_config`).
    """
    policy = RetryPolicy()
    return {
        "initialS": policy.initial,
        "factor": policy.factor,
        "capS": policy.cap,
        "minUptimeS": policy.min_uptime,
        "finalCodes": sorted(int(code) for code in policy.final_codes),
        "rateLimitPauseS": policy.rate_limit_pause,
        "closeMeanings": {str(int(code)): code.explanation for code in CloseCode},
    }

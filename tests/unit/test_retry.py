"""The reconnect policy: full-jitter delays and which closes are retried."""

from __future__ import annotations

from itertools import islice

import pytest

from wslab.clock import FakeClock
from wslab.protocol import CloseCode
from wslab.retry import SEED_POLICY, Reconnector, RetryPolicy, backoff, page_policy, should_retry


def test_ceilings_double_from_0_3_up_to_10_seconds() -> None:
    ceilings = list(islice(backoff(jitter=False), 8))
    assert ceilings == pytest.approx([0.3, 0.6, 1.2, 2.4, 4.8, 9.6, 10.0, 10.0])


def test_full_jitter_spreads_each_delay_over_zero_to_the_ceiling() -> None:
    assert list(islice(backoff(rng=lambda: 0.5), 3)) == pytest.approx([0.15, 0.3, 0.6])
    assert list(islice(backoff(rng=lambda: 0.0), 3)) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1011, 1012, 1013, 4000, None])
def test_every_close_we_did_not_ask_for_is_retried(code: int | None) -> None:
    assert should_retry(code, closed_by_us=False)


@pytest.mark.parametrize("code", [1008, 1009])
def test_policy_violation_and_too_big_are_not_retried(code: int) -> None:
    assert not should_retry(code, closed_by_us=False)


def test_a_close_we_asked_for_is_never_retried() -> None:
    assert not should_retry(CloseCode.ABNORMAL_CLOSURE, closed_by_us=True)


def test_the_seed_policy_is_a_fixed_300_ms() -> None:
    assert list(islice(SEED_POLICY.delays(), 4)) == [0.3, 0.3, 0.3, 0.3]


def test_policies_are_plain_data() -> None:
    policy = RetryPolicy(initial=1, factor=3, cap=5, jitter=False, retry_codes=frozenset({4000}))
    assert list(islice(policy.delays(), 3)) == [1, 3, 5]
    assert policy.should_retry(4000, closed_by_us=False)
    assert not policy.should_retry(1001, closed_by_us=False)
    assert not RetryPolicy(retry_codes=frozenset({1008})).should_retry(1008, closed_by_us=False)


# ---------------------------------------------------------------------------- the Reconnector

#: The close-code table every client follows (the Python client and the page):
#: (code, closed by us, expected: reconnect?). ``None`` is a connection that died
#: without a close frame.
CLOSE_TABLE: list[tuple[int | None, bool, bool]] = [
    (1000, False, True),
    (1001, False, True),
    (1006, False, True),
    (None, False, True),
    (1011, False, True),
    (1012, False, True),
    (1013, False, True),
    (4000, False, True),
    (1008, False, False),
    (1009, False, False),
    (1000, True, False),
    (1006, True, False),
]


@pytest.mark.parametrize(("code", "by_us", "retried"), CLOSE_TABLE)
def test_the_reconnector_follows_the_close_code_table(
    code: int | None, by_us: bool, retried: bool
) -> None:
    machine = Reconnector(rng=lambda: 1.0)
    machine.begin_attempt()
    delay = machine.after_close(code, closed_by_us=by_us, now=0.0)
    assert (delay is not None) is retried


def run(machine: Reconnector, clock: FakeClock, uptimes: list[float | None]) -> list[float | None]:
    """Drive ``machine`` through connections that stayed up ``uptime`` s (None: never joined)."""
    delays = []
    for uptime in uptimes:
        machine.begin_attempt()
        machine.after_open()
        if uptime is not None:
            machine.after_connected(clock.monotonic())
            clock.advance(uptime)
        delays.append(machine.after_close(1006, closed_by_us=False, now=clock.monotonic()))
    return delays


def test_backoff_grows_while_connections_fail_and_starts_over_after_a_stable_one() -> None:
    clock = FakeClock()
    machine = Reconnector(RetryPolicy(min_uptime=2.0, jitter=False))
    assert run(machine, clock, [None, None, None]) == pytest.approx([0.3, 0.6, 1.2])
    assert machine.failures == 3
    # Up for 1.9 s: not stable, the backoff goes on growing.
    assert run(machine, clock, [1.9]) == pytest.approx([2.4])
    # Up for 2 s: stable, the next delay is the first one again.
    assert run(machine, clock, [2.0, None]) == pytest.approx([0.3, 0.6])
    assert machine.attempts == 6


def test_a_server_that_accepts_and_closes_at_once_does_not_reset_the_backoff() -> None:
    machine = Reconnector(RetryPolicy(jitter=False))
    assert run(machine, FakeClock(), [0.0] * 7) == pytest.approx(
        [0.3, 0.6, 1.2, 2.4, 4.8, 9.6, 10.0]
    )


def test_max_attempts_counts_consecutive_failures_only() -> None:
    clock = FakeClock()
    machine = Reconnector(RetryPolicy(max_attempts=2, jitter=False, min_uptime=1.0))
    assert run(machine, clock, [None, None, None]) == pytest.approx([0.3, 0.6, None])
    machine = Reconnector(RetryPolicy(max_attempts=2, jitter=False, min_uptime=1.0))
    delays = run(machine, clock, [None, None, 5.0, None, None])
    assert delays == pytest.approx([0.3, 0.6, 0.3, 0.6, None])


def test_max_attempts_zero_never_reconnects() -> None:
    assert run(Reconnector(RetryPolicy(max_attempts=0)), FakeClock(), [None]) == [None]


def test_a_refused_handshake_is_final() -> None:
    machine = Reconnector()
    machine.begin_attempt()
    assert machine.after_close(1006, closed_by_us=False, now=0.0, refused=True) is None
    assert not machine.opened


def test_delays_are_full_jitter_from_the_injected_random_source() -> None:
    machine = Reconnector(rng=lambda: 0.5)
    assert run(machine, FakeClock(), [None, None]) == pytest.approx([0.15, 0.3])


def test_the_page_policy_is_the_default_policy_as_data() -> None:
    policy = page_policy()
    meanings = policy.pop("closeMeanings")
    assert policy == {
        "initialS": 0.3,
        "factor": 2.0,
        "capS": 10.0,
        "minUptimeS": 2.0,
        "finalCodes": [1008, 1009, 4003],
        "rateLimitPauseS": 1.0,
    }
    assert isinstance(meanings, dict)
    assert meanings["1001"].startswith("going away: ")


def test_failures_at_reads_zero_once_the_connection_is_stable() -> None:
    clock = FakeClock()
    machine = Reconnector(RetryPolicy(min_uptime=2.0))
    run(machine, clock, [None, None])
    machine.begin_attempt()
    machine.after_connected(clock.monotonic())
    assert machine.failures_at(clock.monotonic()) == 2
    clock.advance(2.0)
    assert machine.failures_at(clock.monotonic()) == 0

"""The reconnect policy: full-jitter delays and which closes are retried."""

from __future__ import annotations

from itertools import islice

import pytest

from wslab.protocol import CloseCode
from wslab.retry import SEED_POLICY, RetryPolicy, backoff, should_retry


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

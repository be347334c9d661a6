"""The outbox's rules, driven by hand: no sockets, time as a number.

A model server with a token bucket (the room's rule: 20/s, burst 40, one
``rate_limited`` per run of dropped frames) receives what the outbox hands out; the
messages it stores must be in typing order, whatever the timing.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wslab.outbox import Outbox


def texts(outbox: Outbox, now: float) -> list[str]:
    return [p.message for p in outbox.due(now)]


def test_nothing_goes_out_before_connected_and_everything_after_it_in_order() -> None:
    outbox = Outbox(window=3)
    for n in range(5):
        outbox.add(f"m{n}")
    assert texts(outbox, 0.0) == []
    outbox.opened()
    assert texts(outbox, 0.0) == ["m0", "m1", "m2"]  # the window
    assert texts(outbox, 0.0) == []
    assert outbox.acknowledged(outbox.pending[0].client_message_id)
    assert texts(outbox, 0.0) == ["m3"]


def test_a_reconnect_sends_everything_unacknowledged_again_from_the_oldest() -> None:
    outbox = Outbox(window=8)
    for n in range(3):
        outbox.add(f"m{n}")
    outbox.opened()
    assert texts(outbox, 0.0) == ["m0", "m1", "m2"]
    outbox.acknowledged(outbox.pending[0].client_message_id)
    outbox.closed()
    assert texts(outbox, 0.0) == []
    outbox.opened()
    assert texts(outbox, 0.0) == ["m1", "m2"]


def test_after_rate_limited_it_pauses_then_resends_one_at_a_time_from_the_oldest() -> None:
    outbox = Outbox(window=8, pause=1.0)
    for n in range(4):
        outbox.add(f"m{n}")
    outbox.opened()
    assert texts(outbox, 0.0) == ["m0", "m1", "m2", "m3"]
    outbox.acknowledged(outbox.pending[0].client_message_id)  # m0 got in, m1 was dropped
    outbox.rate_limited(now=0.1)
    outbox.add("new")
    assert texts(outbox, 0.5) == []  # paused: "new" must not overtake m1
    assert texts(outbox, 1.1) == ["m1"]
    assert texts(outbox, 1.2) == []  # one at a time
    outbox.acknowledged(outbox.pending[0].client_message_id)
    assert texts(outbox, 1.2) == ["m2"]
    for expected in ["m3", "new"]:
        outbox.acknowledged(outbox.pending[0].client_message_id)
        assert texts(outbox, 1.3) == [expected]
    outbox.acknowledged(outbox.pending[0].client_message_id)
    assert outbox.pending == []
    outbox.add("later")
    outbox.add("later2")
    assert texts(outbox, 2.0) == ["later", "later2"]  # the window is back


def test_a_late_acknowledgement_of_a_resent_message_is_harmless() -> None:
    outbox = Outbox(window=2)
    first = outbox.add("m0")
    outbox.opened()
    assert texts(outbox, 0.0) == ["m0"]
    assert outbox.acknowledged(first.client_message_id)
    assert not outbox.acknowledged(first.client_message_id)  # a duplicate's answer
    assert not outbox.acknowledged("m-unknown")
    assert outbox.pending == []


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Outbox(window=0)


class Bucket:
    """The room's rate rule: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float = 20.0, burst: float = 40.0) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    offline=st.integers(0, 120),
    online=st.integers(0, 30),
)
def test_a_rate_limited_server_stores_one_authors_messages_in_typing_order(
    seed: int, offline: int, online: int
) -> None:
    """Messages typed offline and while online, a server that drops over its limit and
    answers after a delay: it stores every message once, in typing order.

    (A window over 1 does not hold this: a message sent after one the server dropped,
    before the ``rate_limited`` came back, gets in once the bucket refilled a token.)
    """
    rng = random.Random(seed)
    outbox, bucket = Outbox(pause=1.0), Bucket()
    typed = [f"m{n}" for n in range(offline + online)]
    for text in typed[:offline]:
        outbox.add(text)
    outbox.opened()
    stored: list[str] = []
    answers: list[tuple[float, str | None]] = []  # (when, acknowledged cmid or None: limited)
    limited = False
    now, next_typed = 0.0, offline
    while (outbox.pending or next_typed < len(typed)) and now < 120:
        now += rng.choice([0.001, 0.01, 0.05])
        if next_typed < len(typed) and rng.random() < 0.3:
            outbox.add(typed[next_typed])
            next_typed += 1
        for pending in outbox.due(now):  # the server reads each frame in order
            if not bucket.take(now):
                if not limited:
                    answers.append((now + 0.002, None))
                limited = True
                continue
            limited = False
            if pending.message not in stored:
                stored.append(pending.message)
            answers.append((now + 0.002, pending.client_message_id))
        for when, cmid in [a for a in answers if a[0] <= now]:
            answers.remove((when, cmid))
            if cmid is None:
                outbox.rate_limited(now)
            else:
                outbox.acknowledged(cmid)
    assert stored == typed

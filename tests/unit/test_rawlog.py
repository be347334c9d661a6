"""The raw event log keeps at most ``maxlen`` events and ``max_bytes`` bytes of frames."""

from __future__ import annotations

from collections import deque

from wslab.rawlog import RawEvent, append_bounded, log_bytes


def message(size: int) -> RawEvent:
    return RawEvent("message", data="x" * size)


def test_the_oldest_events_go_first_when_the_bytes_are_over() -> None:
    events: deque[RawEvent] = deque(maxlen=10)
    held = 0
    for size in (4, 5, 6):
        held = append_bounded(events, held, message(size), max_bytes=12)
    assert [len(e.data or "") for e in events] == [5, 6]  # 4 + 5 + 6 > 12 >= 5 + 6
    assert held == 11 == log_bytes(events)


def test_maxlen_drops_count_their_bytes_and_the_newest_event_always_stays() -> None:
    events: deque[RawEvent] = deque(maxlen=2)
    held = 0
    for event in (message(3), RawEvent("open"), message(4)):
        held = append_bounded(events, held, event, max_bytes=100)
    assert [e.type for e in events] == ["open", "message"] and held == 4 == log_bytes(events)
    held = append_bounded(events, held, message(500), max_bytes=100)
    assert list(events) == [message(500)] and held == 500

"""Check for lesson 07 (reload grace): what a ``connecting`` for a known id means.

The learner writes ``classify(open_sockets, grace_deadline, now, token_ok)``
returning ``"new"``, ``"second_tab"``, ``"reload"`` or ``"refused"``. The check
puts a real :class:`~wslab.room.Room` (with a fake clock, no sockets) in each
situation, sends the ``connecting``, reads what the room did, and compares.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from ...clock import FakeClock
from ...protocol import Connected, Connecting, ErrorEvent, Joined, encode
from ...room import Room
from ._common import fail, passed, run_learner

__all__ = ["ANSWERS", "check_grace"]

CHECK = "check_grace"
ANSWERS = ("new", "second_tab", "reload", "refused")
GRACE = 1.0

Classify = Callable[[int, "float | None", float, bool], str]


@dataclass(frozen=True)
class Situation:
    """Where alice stands when her ``connecting`` arrives (bob watches)."""

    open_sockets: int  # alice's sockets still open
    closed_at: float | None  # when her last socket closed (None: it did not)
    now: float  # when the new connecting arrives
    token_ok: bool  # whether it carries alice's token

    @property
    def grace_deadline(self) -> float | None:
        return None if self.closed_at is None else self.closed_at + GRACE

    def arguments(self) -> str:
        return (
            f"open_sockets={self.open_sockets}, grace_deadline={self.grace_deadline}, "
            f"now={self.now}, token_ok={self.token_ok}"
        )


SITUATIONS = (
    Situation(0, None, 5.0, False),  # nobody holds the id
    Situation(1, None, 5.0, True),  # alice is online: another tab
    Situation(2, None, 5.0, True),
    Situation(1, None, 5.0, False),  # online, and someone without the token
    Situation(0, 2.0, 2.4, True),  # inside the grace, with the token: a reload
    Situation(0, 2.0, 2.999, True),
    Situation(0, 2.0, 2.4, False),  # inside the grace, without it
    Situation(0, 2.0, 3.0, True),  # the grace ends exactly at the deadline
    Situation(0, 2.0, 3.5, True),  # after the grace: the owner is back, announced
    Situation(0, 2.0, 3.5, False),  # after the grace, without the token: still bound
)

HINTS = {
    "new": "no socket and no grace running: a first visit, or the owner back after its grace",
    "second_tab": "a socket of this id is still open, and the token matches: another tab",
    "reload": "no socket open, still inside the grace (now < grace_deadline), token ok",
    "refused": "an id that was ever bound needs its token: online, in its grace, or gone",
}


def room_answer(situation: Situation) -> str:
    """Drive a real Room into ``situation``, send alice's connecting, classify the result."""
    clock = FakeClock()
    tokens = (f"token-{n}" for n in itertools.count(1))
    room = Room(grace=GRACE, clock=clock, token_factory=lambda: next(tokens))
    room.open("bob")
    room.receive("bob", encode(Connecting("bob", "bob")))

    alice_token = "none-yet"
    tabs = max(situation.open_sockets, 1 if situation.closed_at is not None else 0)
    for tab in range(tabs):
        room.open(f"alice-{tab}")
        hello = Connecting("alice", "alice", None if tab == 0 else alice_token)
        (send, *_) = room.receive(f"alice-{tab}", encode(hello)).sends
        if tab == 0:
            assert isinstance(send.event, Connected) and send.event.token is not None
            alice_token = send.event.token
    if situation.closed_at is not None:
        clock.advance(situation.closed_at)
        room.close("alice-0")
    clock.advance(situation.now - clock.monotonic())
    room.expire()  # what the server's timer does at the deadline

    room.open("new-socket")
    token = alice_token if situation.token_ok else None
    outcome = room.receive("new-socket", encode(Connecting("alice", "alice", token)))
    events = [send.event for send in outcome.sends]
    if any(isinstance(e, ErrorEvent) for e in events):
        return "refused"
    connected = next(e for e in events if isinstance(e, Connected))
    if connected.was_page_reload:
        return "reload"
    return "new" if any(isinstance(e, Joined) for e in events) else "second_tab"


def check_grace(classify: Classify) -> None:
    """Compare the learner's ``classify`` with wslab's Room in every situation."""
    for situation in SITUATIONS:
        expected = room_answer(situation)
        answer = run_learner(
            CHECK,
            classify,
            situation.open_sockets,
            situation.grace_deadline,
            situation.now,
            situation.token_ok,
        )
        if answer not in ANSWERS:
            raise fail(
                CHECK,
                f"for {situation.arguments()} you answered {answer!r}",
                f"answer one of {', '.join(map(repr, ANSWERS))}",
            )
        if answer != expected:
            raise fail(
                CHECK,
                f"for {situation.arguments()} you answered {answer!r}, the Room says {expected!r}",
                HINTS[expected],
            )
    passed(CHECK, f"your decisions match wslab's Room in all {len(SITUATIONS)} situations")

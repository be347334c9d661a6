"""Check for lesson 12 (the original design): the token guard that stops the spoof.

The original design trusted any ``connecting`` that named an id. The learner
writes ``may_use_id(owner_token, offered_token)``: may a new socket use an id
whose owner holds ``owner_token`` (online, inside the reload grace, or gone),
when the socket offers ``offered_token`` (a string, or ``None`` for no token)?
The check puts a real default-mode :class:`~wslab.room.Room` (fake clock, no
sockets) in each situation, sends the ``connecting``, reads whether the room
refused it, and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ...clock import FakeClock
from ...protocol import Connecting, ErrorEvent, encode
from ...room import Room
from ._common import fail, passed, run_learner

__all__ = ["OWNER_TOKEN", "check_token_guard", "room_accepts"]

CHECK = "check_token_guard"
GRACE = 1.0
#: The token the room gives alice in every situation of the check.
OWNER_TOKEN = "Zq3-owner-token-9f1c2b7d"

MayUseId = Callable[[str, "str | None"], bool]
Presence = Literal["online", "in grace", "gone"]


@dataclass(frozen=True)
class Situation:
    """Alice got ``OWNER_TOKEN`` and is ``owner``; someone connects as alice with ``offered``."""

    owner: Presence
    offered: str | None
    why: str  # what the situation is, for the hint

    def arguments(self) -> str:
        return f"owner_token={OWNER_TOKEN!r}, offered_token={self.offered!r} (alice {self.owner})"


SITUATIONS = (
    Situation("online", OWNER_TOKEN, "the owner's second tab: it has the token"),
    Situation("in grace", OWNER_TOKEN, "the owner's page reloading: it has the token"),
    Situation("online", None, "the spoof of the original design: the id alone"),
    Situation("in grace", None, "the id alone, while the owner reloads: still a spoof"),
    Situation("online", "a-guessed-token", "a guess is not the token"),
    Situation("online", "", "an empty token is not the token"),
    Situation("online", OWNER_TOKEN[:-1], "a prefix of the token is not the token"),
    Situation("online", OWNER_TOKEN + "x", "the token with more after it is not the token"),
    Situation("online", OWNER_TOKEN.upper(), "tokens are case-sensitive"),
    Situation("in grace", OWNER_TOKEN.lower(), "tokens are case-sensitive"),
    Situation("gone", OWNER_TOKEN, "the owner coming back after the grace: it has the token"),
    Situation("gone", None, "the id alone after the owner left: the id is still theirs"),
)


def room_accepts(owner: Presence, offered: str | None) -> bool:
    """Whether wslab's default Room lets a ``connecting`` for alice's id in."""
    clock = FakeClock()
    room = Room(grace=GRACE, clock=clock, token_factory=lambda: OWNER_TOKEN)
    room.open("alice-socket")
    room.receive("alice-socket", encode(Connecting("alice", "alice")))
    if owner != "online":
        room.close("alice-socket")
        clock.advance(GRACE / 2 if owner == "in grace" else GRACE * 2)
        room.expire()  # what the server's timer would do now: in grace, nothing is due yet
    room.open("new-socket")
    outcome = room.receive("new-socket", encode(Connecting("alice", "eve", offered)))
    return not any(isinstance(send.event, ErrorEvent) for send in outcome.sends)


def check_token_guard(may_use_id: MayUseId) -> None:
    """Compare the learner's ``may_use_id`` with wslab's Room in every situation."""
    for situation in SITUATIONS:
        expected = room_accepts(situation.owner, situation.offered)
        answer = run_learner(CHECK, may_use_id, OWNER_TOKEN, situation.offered)
        if not isinstance(answer, bool):
            raise fail(
                CHECK,
                f"for {situation.arguments()} you returned {answer!r}",
                "return True (may use the id) or False (refused)",
            )
        if answer != expected:
            verdict = "accepted" if expected else "refused"
            raise fail(
                CHECK,
                f"for {situation.arguments()} you returned {answer}, the Room {verdict} it",
                situation.why,
            )
    passed(CHECK, f"your guard decides like wslab's Room in all {len(SITUATIONS)} situations")

"""Checks for 05_broadcast: who receives an event, compared with the room itself.

No sockets: the check drives :class:`~wslab.room.Room` (the pure state machine
the server uses) with string sockets and a fake clock, and compares the
learner's answer with the room's own ``Send.to``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ...clock import FakeClock
from ...protocol import Joined, MessageWritten
from ...room import Room
from ._common import fail, passed, run_learner

__all__ = ["check_broadcast"]

Recipients = Callable[[Sequence[str], str, bool], Sequence[str]]


def _hello(user: str) -> str:
    return json.dumps({"event": "connecting", "id": user, "username": user.title()})


def _room_cases() -> list[tuple[list[str], str, bool, list[str]]]:
    """(members before the event, sender, with_me, the room's real recipients)."""
    room = Room(clock=FakeClock())
    cases = []
    members: list[str] = []
    for socket in ("ada", "bob", "cy", "dee"):
        room.open(socket)
        outcome = room.receive(socket, _hello(socket))
        joined = [s.to for s in outcome.sends if isinstance(s.event, Joined)]
        # "joined" goes to those who were there before the newcomer.
        cases.append((list(members), socket, False, [str(s) for s in joined[0]] if joined else []))
        members.append(socket)
    for sender in ("bob", "dee"):
        outcome = room.receive(sender, json.dumps({"event": "writeMessage", "message": "hi"}))
        (written,) = [s.to for s in outcome.sends if isinstance(s.event, MessageWritten)]
        cases.append((list(members), sender, True, [str(s) for s in written]))
    return cases


def _rule_cases() -> list[tuple[list[str], str, bool, list[str]]]:
    """Cases the room's own events do not reach: the sender among ``members`` with
    ``with_me=False`` (the original ``broadcast(data, false)``), members not in
    alphabetical order, the sender alone, and nobody else there."""
    members = ["s3", "s1", "s4", "s2"]
    return [
        (members, "s1", False, ["s3", "s4", "s2"]),
        (members, "s2", False, ["s3", "s1", "s4"]),
        (members, "s3", True, members),
        (["s1"], "s1", False, []),
        (["s1"], "s1", True, ["s1"]),
        ([], "s1", False, []),
    ]


def check_broadcast(recipients: Recipients) -> None:
    """``recipients(members, sender, with_me)`` must list who gets the sender's event.

    ``members`` are the connected sockets in arrival order (the sender may not be
    among them yet, as for ``joined``). With ``with_me=False`` the sender is left
    out; with ``with_me=True`` everyone gets it. Keep the members' order.
    """
    name = "check_broadcast"
    cases = _room_cases() + _rule_cases()
    for members, sender, with_me, expected in cases:
        given = list(members)
        answer = run_learner(name, recipients, given, sender, with_me)
        if given != members:
            raise fail(
                name,
                f"recipients({members!r}, {sender!r}, with_me={with_me}) changed members "
                f"to {given!r}",
                "build a new list: members is the room's own list, and removing the sender "
                "from it would take them out of the room",
            )
        got = list(answer) if isinstance(answer, (list, tuple)) else answer
        if got != expected:
            raise fail(
                name,
                f"recipients({members!r}, {sender!r}, with_me={with_me}) gave {got!r}, "
                f"expected {expected!r}",
                "with_me=False leaves the sender out, with_me=True keeps everyone; "
                "keep the members' order",
            )
    passed(
        name,
        f"{len(cases)} events: the room's own recipients (joined, messageWritten), and the "
        "sender left out or kept as with_me says",
    )

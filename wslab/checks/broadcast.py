"""Checks for 05_broadcast: who receives an event, compared with the room itself.

No sockets: the check drives :class:`~wslab.room.Room` (the pure state machine
the server uses) with string sockets and a fake clock, and compares the
learner's answer with the room's own ``Send.to``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from ..clock import FakeClock
from ..protocol import Joined, MessageWritten
from ..room import Room
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


def check_broadcast(recipients: Recipients) -> None:
    """``recipients(members, sender, with_me)`` must list who gets the sender's event.

    ``members`` are the connected sockets in arrival order (the sender may not be
    among them yet, as for ``joined``). With ``with_me=False`` the sender is left
    out; with ``with_me=True`` everyone gets it. Keep the members' order.
    """
    name = "check_broadcast"
    cases = _room_cases()
    for members, sender, with_me, expected in cases:
        got = run_learner(name, recipients, list(members), sender, with_me)
        if got is None or list(got) != expected:
            raise fail(
                name,
                f"recipients({members!r}, {sender!r}, with_me={with_me}) gave {got!r}, "
                f"the room sends to {expected!r}",
                "with_me=False leaves the sender out; keep the members' order",
            )
    passed(name, f"{len(cases)} events: the same recipients as the room (joined, messageWritten)")

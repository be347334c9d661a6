"""Check for lesson 14 (the classroom): who a hub user is in the class chat.

The learner writes ``role_of(user, service, teacher_groups)``: ``user`` is the
hub's model of the user a handshake's token belongs to (what ``GET /hub/api/user``
answers: ``kind``, ``name``, ``admin``, ``groups``, ``scopes``), ``service`` the
chat's service name and ``teacher_groups`` the hub groups named with
``--teachers``. The answer is ``"teacher"``, ``"student"``, or ``None`` for a
handshake the chat refuses with 403.

The check hands each model to the class chat's own door, a real
:class:`~wslab.classroom.HubGate` whose hub look-up answers with that model,
lets it decide a handshake carrying a token, and compares.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...classroom.auth import HubGate, HubUser
from ._common import fail, passed, run_learner, run_scenario

__all__ = ["SITUATIONS", "check_role_of", "gate_decides"]

CHECK = "check_role_of"
ANSWERS = ("teacher", "student", None)

RoleOf = Callable[[Mapping[str, Any], str, tuple[str, ...]], "str | None"]


def _user(name: str, groups: Sequence[str], scopes: Sequence[str], *, admin: bool = False) -> Any:
    """A user model as the hub answers it for a token."""
    return {
        "kind": "user",
        "name": name,
        "admin": admin,
        "groups": list(groups),
        "scopes": [*scopes, f"read:users:name!user={name}"],
    }


ACCESS = "access:services!service=wslab"


@dataclass(frozen=True)
class Situation:
    """One handshake: the hub's model of its user, the service, the teacher groups."""

    user: Mapping[str, Any]
    why: str  # what decides it, for the hint
    service: str = "wslab"
    teacher_groups: tuple[str, ...] = ("teachers",)

    def arguments(self) -> str:
        user = self.user
        shown = {key: user[key] for key in ("kind", "name", "admin", "groups") if key in user}
        scopes = [s for s in user.get("scopes", ()) if not s.startswith("read:users:name")]
        return f"user {shown} with scopes {scopes}, service {self.service!r}, " + (
            f"teacher_groups {self.teacher_groups}"
        )


SITUATIONS = (
    Situation(_user("ada", ["class"], [ACCESS]), "a member of no teachers' group is a student"),
    Situation(_user("tom", ["teachers"], [ACCESS]), "members of a teachers' group are teachers"),
    Situation(
        _user("root", [], [ACCESS], admin=True),
        "the hub's admins are teachers, in a teachers' group or not",
    ),
    Situation(
        _user("eve", ["class"], ["read:users:groups!user=eve"]),
        "without access:services!service=<the service> the chat refuses the handshake",
    ),
    Situation(
        _user("tess", ["teachers"], []),
        "a teacher needs the access scope too: access is checked first",
    ),
    Situation(
        _user("root", [], ["read:users:groups!user=root"], admin=True),
        "an admin's token without the access scope is refused too",
    ),
    Situation(
        _user("ann", ["class"], ["access:services"]),
        "access:services without a filter gives access to every service, this one included",
    ),
    Situation(
        _user("ben", ["class"], ["access:services!service=wslab-old"]),
        "access to another service (wslab-old) is not access to wslab: compare whole scopes",
    ),
    Situation(
        _user("cy", ["teachers-2024"], [ACCESS]),
        "a group whose name starts with a teachers' group's is another group",
    ),
    Situation(
        _user("teachers", ["class"], [ACCESS]),
        "a user's name is not a group: being called 'teachers' makes nobody a teacher",
    ),
    Situation(
        _user("dee", ["class", "assistants"], [ACCESS]),
        "every group named with --teachers counts, not only the first",
        teacher_groups=("teachers", "assistants"),
    ),
    Situation(
        _user("tom", ["teachers"], [ACCESS]),
        "a chat started without --teachers has only the hub's admins as teachers",
        teacher_groups=(),
    ),
    Situation(
        _user("ada", ["class"], ["access:services!service=chat"]),
        "the service's name is an argument: this chat is called 'chat'",
        service="chat",
    ),
    Situation(
        {"kind": "service", "name": "grader", "admin": False, "scopes": [ACCESS]},
        "only hub users join, not services (a service's model has kind 'service', and no 'groups')",
    ),
)


async def _gate_answer(situation: Situation) -> str | None:
    async def lookup(token: str) -> Mapping[str, Any]:
        return situation.user

    gate = HubGate(situation.service, lookup, teacher_groups=situation.teacher_groups)
    decided = await gate.identify({"Authorization": "token a-token-of-this-user"})
    return decided.role if isinstance(decided, HubUser) else None


def gate_decides(situations: Sequence[Situation] = SITUATIONS) -> list[str | None]:
    """What the class chat's :class:`HubGate` decides in each situation (``None``: 403)."""

    async def scenario() -> list[str | None]:
        return list(await asyncio.gather(*(_gate_answer(s) for s in situations)))

    return run_scenario(scenario)


def _shown(answer: str | None) -> str:
    return "None (refused, 403)" if answer is None else repr(answer)


def check_role_of(role_of: RoleOf) -> None:
    """Compare the learner's ``role_of`` with the class chat's door in every situation."""
    for situation, expected in zip(SITUATIONS, gate_decides(), strict=True):
        user = copy.deepcopy(dict(situation.user))  # an answer may change its copy only
        answer = run_learner(CHECK, role_of, user, situation.service, situation.teacher_groups)
        if answer not in ANSWERS:
            raise fail(
                CHECK,
                f"for {situation.arguments()} you returned {answer!r}",
                "return 'teacher', 'student', or None for a handshake the chat refuses",
            )
        if answer != expected:
            raise fail(
                CHECK,
                f"for {situation.arguments()} you returned {_shown(answer)},"
                f" the chat's HubGate decided {_shown(expected)}",
                situation.why,
            )
    passed(
        CHECK,
        f"your roles match the class chat's HubGate in all {len(SITUATIONS)} handshakes",
    )

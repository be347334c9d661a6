"""The check of lesson 14 (a hub user's role): the class chat's door decides, a right answer
passes, and wrong answers fail with one line that names the handshake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from wslab.lab.checks._common import CheckFailed
from wslab.lab.checks.classroom import SITUATIONS, check_role_of, gate_decides


def role_of(user: Mapping[str, Any], service: str, teacher_groups: tuple[str, ...]) -> str | None:
    if user.get("kind") != "user":
        return None
    if not set(user["scopes"]) & {"access:services", f"access:services!service={service}"}:
        return None
    if user["admin"] or set(user["groups"]) & set(teacher_groups):
        return "teacher"
    return "student"


def test_the_door_has_teachers_students_and_refusals_among_the_situations() -> None:
    decided = gate_decides()
    assert len(decided) == len(SITUATIONS) >= 12
    assert {decided.count("teacher"), decided.count("student"), decided.count(None)} >= {3}
    assert decided[:3] == ["student", "teacher", "teacher"]  # ada, tom, an admin


def test_a_right_answer_passes(capsys: pytest.CaptureFixture[str]) -> None:
    check_role_of(role_of)
    out = capsys.readouterr().out
    assert (
        out
        == "PASS check_role_of: your roles match the class chat's HubGate in all 14 handshakes\n"
    )


def test_an_answer_that_changes_the_model_changes_no_later_situation() -> None:
    def clears_scopes(user: dict[str, Any], service: str, groups: tuple[str, ...]) -> Any:
        answer = role_of(user, service, groups)
        user["scopes"].clear()
        return answer

    check_role_of(clears_scopes)  # type: ignore[arg-type]


def test_an_unwritten_answer_says_so() -> None:
    def not_written(user: Any, service: str, groups: tuple[str, ...]) -> str | None:
        raise NotImplementedError("your code here")

    with pytest.raises(CheckFailed, match="not implemented yet"):
        check_role_of(not_written)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (lambda u, s, t: "refused" if role_of(u, s, t) is None else role_of(u, s, t), "or None"),
        (lambda u, s, t: role_of(u, s, t) == "teacher", "return 'teacher'"),
        (lambda u, s, t: role_of(u, "wslab", t), "called 'chat'"),
        (lambda u, s, t: role_of(u, s, t[:1]), "not only the first"),
    ],
)
def test_a_wrong_answer_gets_one_line_with_the_handshake_and_a_hint(
    answer: Any, words: str
) -> None:
    with pytest.raises(CheckFailed) as failure:
        check_role_of(answer)
    message = str(failure.value)
    assert message.startswith("FAIL check_role_of: for user {") and "\n" not in message
    assert words in message, message

"""The check of lesson 12 (the token guard): right answers pass, known-wrong ones fail."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from wslab.checks._common import CheckFailed
from wslab.checks.original_design import check_token_guard, room_accepts


def right(present: bool, owner_token: str, offered: str | None) -> bool:
    if not present:
        return True
    return offered is not None and hmac.compare_digest(offered, owner_token)


def test_the_room_refuses_a_present_id_without_its_token_and_frees_a_departed_one() -> None:
    assert room_accepts(True, None) is False
    assert room_accepts(False, None) is True


def test_a_right_guard_passes(capsys: pytest.CaptureFixture[str]) -> None:
    check_token_guard(right)
    assert capsys.readouterr().out.startswith("PASS check_token_guard:")


def not_written(present: bool, owner_token: str, offered: str | None) -> bool:
    raise NotImplementedError("your code here")


WRONG: dict[str, tuple[Callable[[bool, str, str | None], object], str]] = {
    "the original design: trust every id": (lambda p, o, t: True, "the id alone"),
    "refuse every id that was ever used": (lambda p, o, t: t == o, "free"),
    "any token will do": (lambda p, o, t: not p or t is not None, "a guess"),
    "a prefix match": (lambda p, o, t: not p or (t is not None and o.startswith(t)), "empty"),
    "case-insensitive": (lambda p, o, t: not p or (t or "").lower() == o.lower(), "case"),
    "the token is ignored, only presence counts": (lambda p, o, t: not p, "other tab"),
    "a string instead of a bool": (lambda p, o, t: "yes", "return True"),
    "not written yet": (not_written, "not implemented yet"),
}


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_guard_fails_with_one_line(name: str) -> None:
    guard, expected_words = WRONG[name]
    with pytest.raises(CheckFailed) as failure:
        check_token_guard(guard)  # type: ignore[arg-type]
    message = str(failure.value)
    assert message.startswith("FAIL check_token_guard:")
    assert "\n" not in message
    assert expected_words in message

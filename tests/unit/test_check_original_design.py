"""The check of lesson 12 (the token guard): right answers pass, known-wrong ones fail."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from wslab.lab.checks._common import CheckFailed
from wslab.lab.checks.original_design import OWNER_TOKEN, check_token_guard, room_accepts


def right(owner_token: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode(), owner_token.encode())


def test_the_room_wants_the_exact_token_while_the_owner_is_present() -> None:
    for owner in ("online", "in grace"):
        assert room_accepts(owner, OWNER_TOKEN) is True
        assert room_accepts(owner, None) is False
        assert room_accepts(owner, OWNER_TOKEN[:-1]) is False


def test_a_right_guard_passes(capsys: pytest.CaptureFixture[str]) -> None:
    check_token_guard(right)
    assert capsys.readouterr().out.startswith("PASS check_token_guard:")


def not_written(owner_token: str, offered: str | None) -> bool:
    raise NotImplementedError("your code here")


WRONG: dict[str, tuple[Callable[[str, str | None], object], str]] = {
    "the original design: trust every id": (lambda o, t: True, "the id alone"),
    "refuse everyone, the owner too": (lambda o, t: False, "second tab"),
    "any token will do": (lambda o, t: t is not None, "a guess"),
    "a prefix match": (lambda o, t: t is not None and o.startswith(t), "empty"),
    "case-insensitive": (lambda o, t: (t or "").lower() == o.lower(), "case"),
    "a token that contains the real one": (lambda o, t: t is not None and o in t, "more after"),
    "a string instead of a bool": (lambda o, t: "yes", "return True"),
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

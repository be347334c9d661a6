"""An exception in the learner's own function is a verdict, not the checks' traceback."""

from __future__ import annotations

import json

import pytest

from wslab.lab.checks._common import CheckFailed, _verdict_lines, run_learner


def parse(data: bytes) -> object:
    return json.loads(data.decode())  # the learner's line


def test_the_verdict_names_the_call_the_exception_and_a_hint() -> None:
    with pytest.raises(CheckFailed) as caught:
        run_learner("check_x", parse, b"\x00\x01", hint="return None for bytes")
    message = str(caught.value)
    assert message.startswith("FAIL check_x: parse(b'\\x00\\x01') raised JSONDecodeError: ")
    assert message.endswith(". Hint: return None for bytes") and "\n" not in message


def test_the_trace_holds_the_learners_lines_only_without_paths() -> None:
    with pytest.raises(CheckFailed) as caught:
        run_learner("check_x", parse, b"\xff")
    trace = caught.value.trace
    assert trace == (
        f"  test_learner_verdicts.py, line {parse.__code__.co_firstlineno + 1}, in parse",
        "    return json.loads(data.decode())  # the learner's line",
    )
    lines = _verdict_lines(caught.value)
    assert lines[1].startswith("Hint: ") and lines[2] == "Your code, where it raised:"
    assert lines[3:] == list(trace)


def test_a_long_argument_and_a_long_message_are_cut_short() -> None:
    def boom(text: str) -> None:
        raise ValueError("x" * 500)

    with pytest.raises(CheckFailed) as caught:
        run_learner("check_x", boom, "y" * 500)
    assert len(str(caught.value)) < 400


def test_an_expected_exception_and_a_stub_keep_their_meaning() -> None:
    def raises_value_error() -> None:
        raise ValueError("the scenario wants this")

    with pytest.raises(ValueError, match="the scenario wants this"):
        run_learner("check_x", raises_value_error, expect=(ValueError,))

    def stub() -> None:
        raise NotImplementedError("your code here")

    with pytest.raises(CheckFailed, match="not implemented yet"):
        run_learner("check_x", stub)

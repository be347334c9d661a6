"""The check of lesson 13 (``check_claim_status``): each answer meets a live chat of
three server processes on one ``redis-server``, so its tests are system tests.

The worked answer passes, and every wrong answer, those below and those of the corpus
(tests/integration/test_check_corpus.py), fails with a one-line verdict.
"""

from __future__ import annotations

import pytest

from tests.integration.test_check_corpus import ON_REDIS, assert_one_line_verdict, cases
from tests.integration.test_checks import fails, not_written, passes
from wslab.lab.checks.scaling import check_claim_status

CASES = cases(ON_REDIS)


def claim_status(states: list[str]) -> str:
    if "open" in states:
        return "tab"
    return "reload" if "grace" in states else "new"


def test_claim_status(capsys: pytest.CaptureFixture[str]) -> None:
    """Each wrong answer meets a live chat of three servers on Redis (redis-server needed)."""
    passes(check_claim_status, claim_status, capsys)
    assert "not implemented yet" in fails(check_claim_status, not_written)

    def first_server_decides(states: list[str]) -> str:
        return claim_status(states[:1])

    def grace_wins(states: list[str]) -> str:
        return "reload" if "grace" in states else claim_status(states)

    def grace_forgotten(states: list[str]) -> str:
        return "tab" if "open" in states else "new"

    def every_server_must_be_open(states: list[str]) -> str:
        if states and all(state == "open" for state in states):
            return "tab"
        return "reload" if states else "new"

    wrong_answers = [
        first_server_decides,  # misses ["grace", "open"]
        grace_wins,  # an open tab is still there: not a reload
        grace_forgotten,  # a grace on another server is a reload, not a newcomer
        every_server_must_be_open,  # one open socket anywhere is enough
        lambda states: "reload" if states else "tab",  # nobody holds it: new
    ]
    for wrong in wrong_answers:
        message = fails(check_claim_status, wrong)
        assert "the live chat of three servers said" in message, message
    assert "answer one of" in fails(check_claim_status, lambda states: "second_tab")


@pytest.mark.parametrize(("exercise", "label"), CASES, ids=[f"{e}: {w}" for e, w in CASES])
def test_every_wrong_answer_gets_a_one_line_verdict(exercise: str, label: str) -> None:
    assert_one_line_verdict(exercise, label)

"""The display rules (wslab.display), on one table that the page must agree with too.

``tests/e2e/browser/test_chat_page.py`` runs the page's JavaScript copy on the same
:data:`CASES` and asserts the same answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from wslab.display import display_names, neutralize, presence_line

#: One table for both implementations: each row names its function, input and answer.
CASES: list[dict[str, Any]] = [
    {"fn": "neutralize", "in": "plain text", "out": "plain text"},
    {"fn": "neutralize", "in": "invoice_\u202egnp.exe", "out": "invoice_\ufffdgnp.exe"},
    {"fn": "neutralize", "in": "a\u2066b\u2069c\u200e\u200f", "out": "a\ufffdb\ufffdc\ufffd\ufffd"},
    {"fn": "neutralize", "in": "שלום and عربى stay", "out": "שלום and عربى stay"},
    {
        "fn": "display_names",
        "in": [["u-aaaa1111", "alice"], ["u-bbbb2222", "bob"]],
        "out": {"u-aaaa1111": "alice", "u-bbbb2222": "bob"},
    },
    {
        "fn": "display_names",
        "in": [["u-aaaa1111", "alice"], ["u-bbbb2222", "alice"], ["u-c3", "carol"]],
        "out": {"u-aaaa1111": "alice #1111", "u-bbbb2222": "alice #2222", "u-c3": "carol"},
    },
    {
        "fn": "display_names",
        "in": [["x-0001", "Alice"], ["x-0002", "alice\u202e"]],
        "out": {"x-0001": "Alice #0001", "x-0002": "alice\ufffd #0002"},
    },
    {
        "fn": "display_names",
        "in": [["x-0001", "Zoe\u0301"], ["x-0002", "Zo\u00e9"]],
        "out": {"x-0001": "Zoe\u0301 #0001", "x-0002": "Zo\u00e9 #0002"},
    },
    {"fn": "presence_line", "in": ["joined", "bob"], "out": "bob joined"},
    {"fn": "presence_line", "in": ["disconnected", "bob"], "out": "bob left"},
]


def apply(case: dict[str, Any]) -> Any:
    if case["fn"] == "neutralize":
        return neutralize(case["in"])
    if case["fn"] == "display_names":
        return display_names([tuple(pair) for pair in case["in"]])
    return presence_line(*case["in"])


@pytest.mark.parametrize("case", CASES, ids=[f"{c['fn']}-{i}" for i, c in enumerate(CASES)])
def test_the_display_rules(case: dict[str, Any]) -> None:
    assert apply(case) == case["out"]

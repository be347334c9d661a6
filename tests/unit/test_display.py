"""The display rules: one table of cases, and what Python gives the front ends.

The rules are written once, in ``wslab/static/chatview.js``. The table
:data:`CASES` is run on that one implementation in chromium: on the file itself
in ``tests/e2e/browser/test_display_rules.py``, and through the page in
``tests/e2e/browser/test_page_rules.py`` (whose widget-view tests also check that
the widget shows the page's lines). Here: the table, and the configuration Python
hands to both views.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pytest

from wslab import frontend
from wslab.display import (
    BIDI_CONTROLS,
    NAME_INVISIBLES,
    REFUSED_NOTICE,
    TRUNCATED_NOTICE,
    blank_name,
    display_config,
)
from wslab.protocol import UNKNOWN_CLOSE_MEANING, CloseCode
from wslab.retry import page_policy

#: One table for every view: each row names a rule of chatview.js, its input and answer.
CASES: list[dict[str, Any]] = [
    {"fn": "neutralize", "in": "plain text", "out": "plain text"},
    {"fn": "neutralize", "in": "invoice_\u202egnp.exe", "out": "invoice_\ufffdgnp.exe"},
    {"fn": "neutralize", "in": "a\u2066b\u2069c\u200e\u200f", "out": "a\ufffdb\ufffdc\ufffd\ufffd"},
    {"fn": "neutralize", "in": "\u061c\u202a\u202b\u202c\u202d\u2067\u2068", "out": "\ufffd" * 7},
    {"fn": "neutralize", "in": "שלום and عربى stay", "out": "שלום and عربى stay"},
    {
        "fn": "neutralize",
        "in": "<img src=x onerror=alert(1)>",
        "out": "<img src=x onerror=alert(1)>",
    },
    {
        "fn": "displayNames",
        "in": [["u-aaaa1111", "alice"], ["u-bbbb2222", "bob"]],
        "out": {"u-aaaa1111": "alice", "u-bbbb2222": "bob"},
    },
    {
        "fn": "displayNames",
        "in": [["u-aaaa1111", "alice"], ["u-bbbb2222", "alice"], ["u-c3", "carol"]],
        "out": {"u-aaaa1111": "alice #1111", "u-bbbb2222": "alice #2222", "u-c3": "carol"},
    },
    {
        "fn": "displayNames",
        "in": [["x-0001", "Alice"], ["x-0002", "alice\u202e"]],
        "out": {"x-0001": "Alice #0001", "x-0002": "alice\ufffd #0002"},
    },
    {
        "fn": "displayNames",
        "in": [["x-0001", "Zoe\u0301"], ["x-0002", "Zo\u00e9"]],
        "out": {"x-0001": "Zoe\u0301 #0001", "x-0002": "Zo\u00e9 #0002"},
    },
    {"fn": "displayNames", "in": [["ab", "x"], ["cd", "X"]], "out": {"ab": "x #ab", "cd": "X #cd"}},
    # Invisible characters in names: shown as U+FFFD, left out when names are compared.
    {"fn": "neutralizeName", "in": "admin\ufe0f", "out": "admin\ufffd"},
    {"fn": "neutralizeName", "in": "\u3164", "out": "\ufffd"},
    {"fn": "neutralizeName", "in": "\u115f\u1160\uffa0\u2800", "out": "\ufffd" * 4},
    {
        "fn": "neutralizeName",
        "in": "a\u200bd\u200cm\u200di\u2060n\ufeff\u00ad",
        "out": "a\ufffdd\ufffdm\ufffdi\ufffdn\ufffd\ufffd",
    },
    {
        "fn": "neutralizeName",
        "in": "\U000e0100x\U000e01ef\U000e0041\u180e",
        "out": "\ufffdx\ufffd\ufffd\ufffd",
    },
    {"fn": "neutralizeName", "in": "bo\u034fb\u202e\u0007", "out": "bo\ufffdb\ufffd\ufffd"},
    {"fn": "neutralizeName", "in": "Zoé ☃ 日本 한글 ⠃⠕⠃", "out": "Zoé ☃ 日本 한글 ⠃⠕⠃"},
    # Message text keeps them: emoji are built with the joiner and the selectors.
    {
        "fn": "neutralize",
        "in": "\u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "out": "\u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467",
    },
    {
        "fn": "displayNames",
        "in": [["x-1234", "admin"], ["y-5678", "admin\ufe0f"]],
        "out": {"x-1234": "admin #1234", "y-5678": "admin\ufffd #5678"},
    },
    {"fn": "displayNames", "in": [["y-5678", "admin\U000e0100"]], "out": {"y-5678": "admin\ufffd"}},
    {"fn": "displayNames", "in": [["x-0001", "\u3164"]], "out": {"x-0001": "\ufffd"}},
    {
        "fn": "displayNames",
        "in": [["x-0001", "\u3164"], ["x-0002", "\u200b\u115f"]],
        "out": {"x-0001": "\ufffd #0001", "x-0002": "\ufffd\ufffd #0002"},
    },
    {
        "fn": "displayNames",
        "in": [["x-0001", "admin"], ["x-0002", "\uff41\uff44\uff4d\uff49\uff4e"]],
        "out": {"x-0001": "admin #0001", "x-0002": "\uff41\uff44\uff4d\uff49\uff4e #0002"},
    },
    # The server's tag, when it sends one, is the suffix; the id's end otherwise.
    {
        "fn": "displayNames",
        "in": [["a-1234", "alice", "k3m9qz"], ["x-1234", "alice", "ab2cde"]],
        "out": {"a-1234": "alice #k3m9qz", "x-1234": "alice #ab2cde"},
    },
    {
        "fn": "displayNames",
        "in": [["a-1234", "alice", "k3m9qz"], ["x-5678", "alice"], ["bob", "bob", "zzzzzz"]],
        "out": {"a-1234": "alice #k3m9qz", "x-5678": "alice #5678", "bob": "bob"},
    },
    {
        "fn": "displayNames",
        "in": [["a-1", "ann", "t\u202eag"], ["b-1", "ann", ""]],
        "out": {"a-1": "ann #t\ufffdag", "b-1": "ann #b-1"},
    },
    {"fn": "presenceLine", "in": ["joined", "bob"], "out": "bob joined"},
    {"fn": "presenceLine", "in": ["disconnected", "bob"], "out": "bob left"},
    {
        "fn": "describeClose",
        "in": [{"code": 1001, "reason": ""}],
        "out": f"1001 ({CloseCode.GOING_AWAY.explanation})",
    },
    {
        "fn": "describeClose",
        "in": [{"code": 4000, "reason": "bye\u202e"}],
        "out": '4000 (not a code this kit uses) "bye\ufffd"',
    },
    {
        "fn": "statusText",
        "in": [{"state": "idle"}],
        "out": {"badge": "not connected", "detail": "", "notice": "", "error": ""},
    },
    {
        "fn": "statusText",
        "in": [
            {
                "state": "reconnecting",
                "retryIn": 1.25,
                "lastClose": {"code": 1006, "reason": ""},
                "failedAttempts": 2,
                "truncated": True,
            }
        ],
        "out": {
            "badge": "reconnecting in 1.3 s",
            "detail": f"last close 1006 ({CloseCode.ABNORMAL_CLOSURE.explanation}), "
            "2 failed attempts since",
            "notice": TRUNCATED_NOTICE,
            "error": "",
        },
    },
    {
        "fn": "statusText",
        "in": [
            {
                "state": "online",
                "wasPageReload": True,
                "lastClose": {"code": 1001, "reason": ""},
                "error": {"code": "rate_limited", "detail": "slow down"},
            }
        ],
        "out": {
            "badge": "online",
            "detail": "back within the reload grace: the others saw no leave and no join",
            "notice": "",
            "error": "error rate_limited: slow down",
        },
    },
]

#: A JavaScript function of (rules, cases) -> answers, for page.evaluate.
RUN_CASES = """([rules, cases]) => cases.map((c) => {
    if (c.fn === "neutralize") return rules.neutralize(c.in);
    if (c.fn === "neutralizeName") return rules.neutralizeName(c.in);
    if (c.fn === "displayNames") return Object.fromEntries(rules.displayNames(c.in));
    return rules[c.fn](...c.in);
})"""


def test_the_page_config_is_the_policy_and_the_display_constants() -> None:
    config = frontend.page_config()
    display = {**display_config(), "unknownCloseMeaning": UNKNOWN_CLOSE_MEANING}
    assert config == {"policy": page_policy(), "display": display}
    meanings = page_policy()["closeMeanings"]
    assert isinstance(meanings, dict)
    assert meanings == {str(int(code)): code.explanation for code in CloseCode}
    assert set(display_config()["bidiControls"]) == BIDI_CONTROLS  # type: ignore[arg-type]


def test_the_served_page_gets_the_config_as_json_that_cannot_end_its_script() -> None:
    template = (frontend.STATIC_DIR / "index.html").read_bytes()
    assert template.count(frontend.CONFIG_MARKER) == 1
    page = frontend.fill_page(template).decode()
    found = re.search(r'<script id="wslab-config" type="application/json">(.*?)</script>', page)
    assert found is not None
    assert json.loads(found.group(1)) == frontend.page_config()
    assert "<" not in frontend.config_json()


def words_in(value: object) -> list[str]:
    """Every text of several words in a JSON-ready value (a sentence, not a key)."""
    if isinstance(value, str):
        return [value] if " " in value.strip() else []
    if isinstance(value, dict):
        return [word for item in value.values() for word in words_in(item)]
    if isinstance(value, list):
        return [word for item in value for word in words_in(item)]
    return []


def test_no_javascript_file_holds_a_copy_of_the_python_words() -> None:
    """The close meanings and the display words reach the front ends from Python only.

    The original design's page (``seed.js``) is kept as it was written."""
    words = words_in(frontend.page_config())
    assert {UNKNOWN_CLOSE_MEANING, TRUNCATED_NOTICE, REFUSED_NOTICE} <= set(words)
    assert {code.explanation for code in CloseCode} <= set(words)
    scripts = sorted(p for p in frontend.STATIC_DIR.glob("*.js") if p.name != "seed.js")
    assert {"chat.js", "chatview.js", "chatwidget.js"} <= {p.name for p in scripts}
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        for word in words:
            assert word not in source, (script.name, word)
        assert "initialS: 0.3" not in source and "capS: 10" not in source


def test_the_widget_module_is_built_from_the_files_on_disk() -> None:
    esm = frontend.widget_esm()
    view = (frontend.STATIC_DIR / "chatview.js").read_text(encoding="utf-8")
    widget = (frontend.STATIC_DIR / "chatwidget.js").read_text(encoding="utf-8")
    assert esm == view + "\n" + widget
    assert "export default" in widget and "export" not in view


@pytest.mark.parametrize(
    ("name", "blank"),
    [
        ("\u3164", True),
        ("\u115f\u1160\uffa0", True),
        (" \u200d\ufe0f\u2800 ", True),
        ("\U000e0100", True),
        ("", True),
        ("admin\ufe0f", False),
        ("\u2764\ufe0f", False),
        ("ann", False),
    ],
)
def test_a_name_of_invisible_characters_only_is_blank(name: str, blank: bool) -> None:
    assert blank_name(name) is blank


def test_the_invisible_ranges_hold_no_visible_character() -> None:
    """Every listed code point is a control, a format character, a combining mark
    (the selectors), a filler letter or the blank braille cell, or unassigned."""
    fillers = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x17B4, 0x17B5}
    for first, last in NAME_INVISIBLES:
        for code in range(first, last + 1):
            category = unicodedata.category(chr(code))
            assert code in fillers or category in {"Cc", "Cf", "Mn", "Cn"}, hex(code)

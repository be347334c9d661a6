"""How chat text is shown to a person: pure helpers shared by the widget and the page.

``static/chat.js`` has the same rules in JavaScript (``wslabChat.display``), and
``tests/e2e/browser`` checks that both give the same answer on one table of cases
(:data:`tests.test_display.CASES`).

- :func:`neutralize` replaces each bidirectional control character (which could
  make ``"gnp.exe"`` read as ``"exe.png"``) with U+FFFD, visibly.
- :func:`display_names` adds ``#`` and the last four characters of the id to a
  name that two present users share, so a third can tell them apart.
- :func:`presence_line` is the system line for a join or a leave.

Pure: any thread.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

__all__ = [
    "BIDI_CONTROLS",
    "TRUNCATED_NOTICE",
    "display_names",
    "name_key",
    "neutralize",
    "presence_line",
    "short_suffix",
]

#: The bidirectional formatting characters: embeddings, overrides, isolates, marks.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_TABLE = {ord(c): "\ufffd" for c in BIDI_CONTROLS}

#: Shown when ``connected`` says that messages the client missed are gone.
TRUNCATED_NOTICE = "some earlier messages are no longer available"


def neutralize(text: str) -> str:
    """``text`` with every bidirectional control replaced by U+FFFD (visible, inert)."""
    return text.translate(_TABLE)


def short_suffix(user_id: str) -> str:
    """The id's short suffix shown after a shared name: ``#`` and its last 4 characters."""
    return "#" + user_id[-4:]


def name_key(name: str) -> str:
    """What two names are compared by: NFC, bidi controls removed, lower case."""
    cleaned = "".join(c for c in unicodedata.normalize("NFC", name) if c not in BIDI_CONTROLS)
    return cleaned.lower()


def display_names(users: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each user's name as shown: ``id -> name``, with the id's suffix where names clash.

    ``users`` maps id to username (the present users). A name is neutralized;
    when two or more users' names compare equal (:func:`name_key`), each of them
    shows ``name #abcd`` with the last 4 characters of its id.
    """
    pairs = list(users.items() if isinstance(users, Mapping) else users)
    counts: dict[str, int] = {}
    for _, name in pairs:
        counts[name_key(name)] = counts.get(name_key(name), 0) + 1
    shown = {}
    for user_id, name in pairs:
        label = neutralize(name)
        if counts[name_key(name)] > 1:
            label += " " + short_suffix(user_id)
        shown[user_id] = label
    return shown


def presence_line(kind: str, name: str) -> str:
    """The system line for a ``joined`` or ``disconnected`` event (name as shown)."""
    return f"{name} joined" if kind == "joined" else f"{name} left"

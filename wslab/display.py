"""How chat text is shown to a person: the words and numbers the front end is given.

The rules themselves are written once, in JavaScript (``static/chatview.js``), and
both views draw through them: the browser page and the notebook chat widget. This
module holds what those rules are configured with, so that the page (filled in when
it is served) and the widget (a trait) get it from Python:

- :data:`BIDI_CONTROLS`: each bidirectional control character (which could make
  ``"gnp.exe"`` read as ``"exe.png"``) is shown as U+FFFD, visibly;
- :data:`SUFFIX_LENGTH`: a name that two present users share is shown with ``#``
  and that many last characters of each id, so a third can tell them apart;
- :data:`PRESENCE_WORDS`: the system line for a join or a leave is the name and
  this word;
- :data:`TRUNCATED_NOTICE`, :data:`RELOAD_NOTICE`, :data:`MAX_SHOWN`.

Pure: any thread.
"""

from __future__ import annotations

__all__ = [
    "BIDI_CONTROLS",
    "MAX_SHOWN",
    "PRESENCE_WORDS",
    "RELOAD_NOTICE",
    "SUFFIX_LENGTH",
    "TRUNCATED_NOTICE",
    "display_config",
]

#: The bidirectional formatting characters: embeddings, overrides, isolates, marks.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

#: How many last characters of the id tell apart two users who share a name.
SUFFIX_LENGTH = 4

#: The word after the name on a presence line, by event: "bob joined", "bob left".
PRESENCE_WORDS = {"joined": "joined", "disconnected": "left"}

#: Shown when ``connected`` says that messages the client missed are gone.
TRUNCATED_NOTICE = "some earlier messages are no longer available"

#: Shown when ``connected`` says this connection came back within the reload grace.
RELOAD_NOTICE = "back within the reload grace: the others saw no leave and no join"

#: The most messages a view keeps on screen; older ones are dropped from the list.
MAX_SHOWN = 200


def display_config() -> dict[str, object]:
    """The display constants as JSON-ready data, as ``static/chatview.js`` reads them."""
    return {
        "bidiControls": "".join(sorted(BIDI_CONTROLS)),
        "suffixLength": SUFFIX_LENGTH,
        "presenceWords": dict(PRESENCE_WORDS),
        "truncatedNotice": TRUNCATED_NOTICE,
        "reloadNotice": RELOAD_NOTICE,
        "maxShown": MAX_SHOWN,
    }

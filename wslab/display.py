"""How chat text is shown to a person: the words and numbers the front end is given.

The rules themselves are written once, in JavaScript (``static/chatview.js``), and
both views draw through them: the browser page and the notebook chat widget. This
module holds what those rules are configured with, so that the page (filled in when
it is served) and the widget (a trait) get it from Python:

- :data:`BIDI_CONTROLS`: each bidirectional control character (which could make
  ``"gnp.exe"`` read as ``"exe.png"``) is shown as U+FFFD, visibly;
- :data:`NAME_INVISIBLES`: in a name, each character that shows as nothing (zero
  width and format characters, variation selectors, blank-looking letters) is
  shown as U+FFFD too, and two names that differ only by such characters count as
  the same name. The server removes them from a name before binding it
  (:func:`without_invisibles`) and refuses a name that would show as nothing
  (:func:`blank_name`);
- :func:`user_tag`: a name that two present users share is shown with ``#`` and
  the user's *tag*, which the server derives from the id with a keyed hash (its
  key is the chat's secret), so that nobody can choose an id to get someone
  else's tag; from a server that sends no tag, the views take the last
  :data:`SUFFIX_LENGTH` characters of the id instead;
- :data:`PRESENCE_WORDS`: the system line for a join or a leave is the name and
  this word;
- :data:`TRUNCATED_NOTICE`, :data:`RELOAD_NOTICE`, :data:`REFUSED_NOTICE`, :data:`MAX_SHOWN`.

Pure: any thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "BIDI_CONTROLS",
    "MAX_SHOWN",
    "NAME_INVISIBLES",
    "PRESENCE_WORDS",
    "REFUSED_NOTICE",
    "RELOAD_NOTICE",
    "SUFFIX_LENGTH",
    "TAG_LENGTH",
    "TRUNCATED_NOTICE",
    "blank_name",
    "display_config",
    "new_tag_key",
    "user_tag",
    "without_invisibles",
]

#: The bidirectional formatting characters: embeddings, overrides, isolates, marks.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)

#: Characters that show as nothing, or as blank space, in a name: inclusive ranges of
#: code points. A name is where a look-alike matters ("admin" and "admin" + U+FE0F
#: would read the same), so there they are shown as U+FFFD, like the bidirectional
#: controls; message text keeps them, as emoji need the zero width joiner and the
#: variation selectors (U+2764 U+FE0F is a red heart).
NAME_INVISIBLES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),  # C0 controls
    (0x007F, 0x009F),  # DEL and C1 controls
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels (invisible)
    (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
    (0x200B, 0x200D),  # zero width space, non-joiner, joiner
    (0x2060, 0x2064),  # word joiner, invisible times/separator/plus, function application
    (0x206A, 0x206F),  # deprecated format characters
    (0x2800, 0x2800),  # braille pattern blank: a cell with no dots, blank on screen
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero width no-break space (byte order mark)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF9, 0xFFFB),  # interlinear annotation controls
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol formatting controls
    (0xE0000, 0xE007F),  # tag characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
)

#: How many last characters of the id tell apart two users who share a name, when
#: the server sends no tag (a server of the original design).
SUFFIX_LENGTH = 4

#: Characters in a tag: base32, 5 bits each, so 30 bits. Someone who wants another
#: user's tag can only try ids, one ``connecting`` each: about 10**9 of them.
TAG_LENGTH = 6

#: The word after the name on a presence line, by event: "bob joined", "bob left".
PRESENCE_WORDS = {"joined": "joined", "disconnected": "left"}

#: Shown when ``connected`` says that messages the client missed are gone.
TRUNCATED_NOTICE = "some earlier messages are no longer available"

#: Shown when ``connected`` says this connection came back within the reload grace.
RELOAD_NOTICE = "back within the reload grace: the others saw no leave and no join"

#: The system line for a message the server refused for good (it leaves the outbox).
REFUSED_NOTICE = "not sent, the server refused it"

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
        "refusedNotice": REFUSED_NOTICE,
        "nameInvisibles": [list(span) for span in NAME_INVISIBLES],
        "maxShown": MAX_SHOWN,
    }


def _invisible(char: str) -> bool:
    code = ord(char)
    return char in BIDI_CONTROLS or any(low <= code <= high for low, high in NAME_INVISIBLES)


def blank_name(name: str) -> bool:
    """Whether a name shows as nothing: only invisible characters and white space.

    Such a name (U+3164 alone, or spaces and a zero width joiner) names nobody a
    reader can see. The front ends show each of these characters as U+FFFD.
    """
    return all(char.isspace() or _invisible(char) for char in name)


def without_invisibles(name: str) -> str:
    """The name without the characters that show as nothing (see :func:`blank_name`)."""
    return "".join(char for char in name if not _invisible(char))


def new_tag_key() -> str:
    """A new secret for :func:`user_tag`: 256 random bits, as hex text (one per chat)."""
    return secrets.token_hex(32)


def user_tag(key: str, user_id: str) -> str:
    """The tag a chat shows after a shared name: a keyed hash of the id, in base32.

    ``key`` is the chat's secret (:func:`new_tag_key`), which only servers know:
    a client cannot compute the tag of an id it might choose, so it cannot aim at
    the tag of a user it wants to pass for. The same key and id give the same tag
    on every server of the chat and after a restart.
    """
    mac = hmac.new(key.encode(), user_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode("ascii")[:TAG_LENGTH].lower()

"""What the JavaScript front ends are given by Python: configuration and source.

The browser page (``static/index.html`` and ``chat.js``) and the notebook chat
widget (``static/chatwidget.js``, run by anywidget) draw through one set of
display rules, ``static/chatview.js``. None of these files holds the reconnect
policy, the close codes' meanings or the display words: they read
:func:`page_config`, which the server writes into the page each time it serves
``index.html`` (:func:`fill_page`), and the widget receives as a trait.

The widget's ES module is built from the same files on disk
(:func:`widget_esm`): no build step, no bundler, nothing downloaded.

Pure (it reads files next to it): any thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from .display import display_config
from .protocol import UNKNOWN_CLOSE_MEANING
from .retry import page_policy

__all__ = ["CONFIG_MARKER", "STATIC_DIR", "fill_page", "page_config", "widget_css", "widget_esm"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: The text of ``index.html``'s configuration script that :func:`fill_page` replaces.
CONFIG_MARKER = b"WSLAB_CONFIG"


def page_config() -> dict[str, object]:
    """Everything the front ends take from Python, as JSON-ready data.

    ``policy``: :func:`wslab.retry.page_policy` (backoff numbers, final codes, the
    resend pause and every close code's meaning); ``display``:
    :func:`wslab.display.display_config`, and ``unknownCloseMeaning``: what a
    close code with no meaning is called
    (:data:`~wslab.protocol.UNKNOWN_CLOSE_MEANING`).
    """
    display = {**display_config(), "unknownCloseMeaning": UNKNOWN_CLOSE_MEANING}
    return {"policy": page_policy(), "display": display}


def config_json(extra: Mapping[str, object] | None = None) -> str:
    """:func:`page_config` (and ``extra``) as JSON that is safe inside an HTML ``<script>``."""
    text = json.dumps({**page_config(), **(extra or {})}, ensure_ascii=True, separators=(",", ":"))
    # "</script>" or "<!--" in a string must not end the element: escape every "<".
    return text.replace("<", "\\u003c")


def fill_page(html: bytes, extra: Mapping[str, object] | None = None) -> bytes:
    """``index.html`` with its configuration filled in (see :data:`CONFIG_MARKER`).

    ``extra`` adds to it what one server knows: in classroom mode ``socketPath`` (the
    socket's path below the hub's service prefix) and ``classroom`` (join at once, as
    the hub user; no name to ask).
    """
    return html.replace(CONFIG_MARKER, config_json(extra).encode("ascii"), 1)


@cache
def widget_esm() -> str:
    """The chat widget's ES module: the display rules, then the widget's view code.

    ``chatview.js`` declares ``wslabView`` at its top level; concatenated in front
    of ``chatwidget.js`` it is in that module's scope, as it is in the page's
    global scope when both are loaded as scripts.
    """
    parts = ("chatview.js", "chatwidget.js")
    return "\n".join((STATIC_DIR / name).read_text(encoding="utf-8") for name in parts)


@cache
def widget_css() -> str:
    """The chat widget's style sheet."""
    return (STATIC_DIR / "chatwidget.css").read_text(encoding="utf-8")

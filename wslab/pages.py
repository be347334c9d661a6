"""The static pages a chat server serves over plain HTTP on its own port.

``GET /`` (and ``/index.html``) is the browser chat page, filled with its
configuration by :func:`wslab.frontend.fill_page` as it is served; ``/chat.js``,
``/chat.css`` and ``/chatview.js`` are its parts; ``/seed`` and ``/seed.js`` the
original design's page (it works with ``seed_compatible=True``). Any other path
except the chat socket's gets a 404 that names the socket's path. The method is
not looked at.

Pure apart from reading the files: any thread.
"""

from __future__ import annotations

import email.utils
import http
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .frontend import fill_page

__all__ = ["CHAT_PATH", "STATIC_DIR", "STATIC_FILES", "path_of", "respond"]

#: Where the chat's WebSocket is.
CHAT_PATH = "/chat"

# Next to this file, wherever Python was started from: a folder named "wslab" in the
# current directory (a clone of this project) must not shadow the installed package.
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: URL path -> (file in :data:`STATIC_DIR`, content type).
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/chatview.js": ("chatview.js", "text/javascript; charset=utf-8"),
    # The original design's client, for comparison (needs seed_compatible=True).
    "/seed": ("seed.html", "text/html; charset=utf-8"),
    "/seed.js": ("seed.js", "text/javascript; charset=utf-8"),
}


def path_of(request: Request) -> str:
    """The request's path without its query (``/chat?x=1`` -> ``/chat``)."""
    return urlsplit(request.path).path


def respond(path: str, config: Mapping[str, object] | None = None) -> Response:
    """The answer to ``GET path`` (a path other than :data:`CHAT_PATH`): a file or a 404.

    ``config`` adds to the page's configuration (:func:`wslab.frontend.fill_page`).
    """
    static = STATIC_FILES.get(path)
    if static is None:
        body = f"Not found. The chat socket is at {CHAT_PATH}.\n".encode()
        return _response(http.HTTPStatus.NOT_FOUND, body, "text/plain; charset=utf-8")
    name, content_type = static
    body = (STATIC_DIR / name).read_bytes()
    if name == "index.html":
        body = fill_page(body, config)  # the policy and the display words, from Python
    return _response(http.HTTPStatus.OK, body, content_type)


def _response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)

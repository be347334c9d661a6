"""The original design's client is served at /seed, and renders data as text only.

Its behaviour in a real browser is tested in tests/e2e/browser/test_seed_page.py.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from wslab import ChatServer

STATIC = Path(__file__).resolve().parents[2] / "wslab" / "static"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    server = ChatServer(seed_compatible=True).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("path", "content_type", "content"),
    [
        ("seed", "text/html", b'<script src="seed.js"'),
        ("seed.js", "text/javascript", b"const RECONNECT_MS = 300;"),
    ],
)
def test_the_seed_page_and_its_script_are_served(
    server: ChatServer, path: str, content_type: str, content: bytes
) -> None:
    with urllib.request.urlopen(server.page_url + path, timeout=10) as response:
        assert response.headers["Content-Type"].startswith(content_type)
        assert content in response.read()


def test_the_seed_script_builds_the_dom_with_text_only() -> None:
    script = re.sub(r"(?m)^\s*//.*$", "", (STATIC / "seed.js").read_text())
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    page = (STATIC / "seed.html").read_text()
    assert "innerHTML" not in page and not re.search(r"\son\w+\s*=", page)

"""What the lessons say about browsers, checked in the Chromium the tests run.

- Local Network Access (lesson 08): a page from a public address is blocked before
  its handshake request reaches 127.0.0.1 (``--ip-address-space-overrides`` makes this
  machine's page server public); a page of this machine, or of the local network,
  reaches it and sends its ``Origin``: the server's Origin check still matters.
- ``send`` on a closed socket (lesson 12) drops the frame and warns in the console.
- A refused handshake (lesson 01) gives the page only ``error`` and ``close 1006``;
  the status code is in the console (and DevTools), not in any event.
- ``docs/browser-events.md`` names the Chromium these tests run.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from wslab import ChatServer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "browser-events.md"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WAIT_MS = 10_000  # every step takes milliseconds; this only bounds a failure

# One page: opens a socket to the URL in its fragment, keeps its events in window.log.
PAGE = b"""<!doctype html><meta charset="utf-8"><script>
window.log = [];
window.ws = new WebSocket(location.hash.slice(1));
ws.onopen = () => log.push("open");
ws.onerror = () => log.push("error");
ws.onclose = (e) => log.push(`close ${e.code}`);
</script>"""


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


class Listener:
    """A loopback TCP port that records every handshake request it gets, and answers 403.

    A connection that closes without sending a byte is no handshake, and not recorded.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.sock.getsockname()[1]}/chat"
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(WAIT_MS / 1000)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if not head:
                    continue  # a connection that sent nothing: no handshake
                self.requests.append(head.decode("latin-1"))
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(WAIT_MS / 1000)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    with sync_playwright() as p:
        yield p


@pytest.fixture
def page_port() -> Iterator[int]:
    """A page server of this machine (127.0.0.1, a free port)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def launch(playwright: Playwright, *extra: str) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*ARGS, *extra])


def open_page(browser: Browser, page_port: int, socket_url: str) -> tuple[Page, list[str]]:
    """Load the page (it opens its socket); return it and its console messages."""
    page = browser.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"http://127.0.0.1:{page_port}/#{socket_url}")
    return page, console


def wait_log(page: Page, condition: str) -> list[str]:
    page.wait_for_function(f"window.log.some((e) => {condition})", timeout=WAIT_MS)
    log: list[str] = page.evaluate("window.log")
    return log


def test_a_public_page_is_blocked_before_any_connection_to_loopback(
    playwright: Playwright, page_port: int, listener: Listener
) -> None:
    browser = launch(playwright, f"--ip-address-space-overrides=127.0.0.1:{page_port}=public")
    try:
        page, console = open_page(browser, page_port, listener.url)
        assert wait_log(page, "e.startsWith('close')") == ["error", "close 1006"]
    finally:
        browser.close()
    assert any("net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS" in text for text in console)
    assert listener.requests == []  # no handshake request: the server never sees one


@pytest.mark.parametrize("space", [None, "local"], ids=["this machine", "the local network"])
def test_a_page_of_this_machine_or_network_reaches_loopback_with_its_origin(
    playwright: Playwright, page_port: int, listener: Listener, space: str | None
) -> None:
    extra = [f"--ip-address-space-overrides=127.0.0.1:{page_port}={space}"] if space else []
    browser = launch(playwright, *extra)
    try:
        page, _ = open_page(browser, page_port, listener.url)
        # The listener answers 403, as an Origin check does: error, then close 1006.
        assert wait_log(page, "e.startsWith('close')") == ["error", "close 1006"]
    finally:
        browser.close()
    (request,) = listener.requests
    assert request.startswith("GET /chat HTTP/1.1\r\n")
    assert re.search(rf"^Origin: http://127\.0\.0\.1:{page_port}\r$", request, re.M | re.I)


def test_send_on_a_closed_socket_drops_the_frame_and_warns_in_the_console(
    playwright: Playwright, page_port: int
) -> None:
    browser = launch(playwright)
    try:
        with ChatServer() as server:
            page, console = open_page(browser, page_port, server.url)
            wait_log(page, "e === 'open'")
            page.evaluate("ws.close()")
            wait_log(page, "e.startsWith('close')")
            with page.expect_console_message(
                lambda message: "CLOSING or CLOSED" in message.text, timeout=WAIT_MS
            ):
                page.evaluate("ws.send('too late')")  # no exception, no event
            assert page.evaluate("window.log") == ["open", "close 1005"]
    finally:
        browser.close()
    assert "WebSocket is already in CLOSING or CLOSED state." in console


def test_a_refused_handshake_shows_its_status_in_the_console_only(
    playwright: Playwright, page_port: int
) -> None:
    browser = launch(playwright)
    try:
        with ChatServer() as server:
            page, console = open_page(browser, page_port, server.url.replace("/chat", "/nowhere"))
            assert wait_log(page, "e.startsWith('close')") == ["error", "close 1006"]
    finally:
        browser.close()
    assert any("Unexpected response code: 404" in text for text in console), console


def test_the_events_table_names_the_chromium_under_test(playwright: Playwright) -> None:
    browser = launch(playwright)
    try:
        version = browser.version
    finally:
        browser.close()
    assert f"Chromium {version}" in DOCS.read_text(), f"docs/browser-events.md: not {version}"

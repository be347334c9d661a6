"""The DOM events of a real WebSocket, scenario by scenario: Chromium and ChatClient agree.

Each scenario runs twice against a fresh ChatServer: once with a raw ``WebSocket``
in a chromium page, once with a ``ChatClient`` (on a loop thread of its own).
Both must give the same sequence of ``(type, code, wasClean)``, and that sequence
must be the one in ``SCENARIOS`` and in the table of ``docs/browser-events.md``.

The page is a blank harness served by a small HTTP server on 127.0.0.1, so no
chat page opens a socket of its own. Reached as ``http://127.0.0.1:PORT`` its
``Origin`` is allowed; reached as ``http://foreign.test:PORT`` (this chromium
resolves that name to 127.0.0.1) it is another origin, refused with 403. (A
page served from outside the machine could not even try: Chromium's local
network access checks block it before any handshake.) Every wait is a
condition with a timeout (see helpers.py).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import pathlib
import re
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import pytest
import trustme
from playwright.sync_api import Browser, BrowserContext, Page, Playwright
from websockets.sync.client import connect as sync_connect

from wslab import ChatClient, ChatServer

from .conftest import CHROMIUM, CHROMIUM_ARGS
from .helpers import UNIT_S, wait_until

pytestmark = pytest.mark.browser

T = TypeVar("T")
DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "browser-events.md"
FOREIGN_HOST = "foreign.test"
USER = "truth"

HARNESS = """<!doctype html><meta charset="utf-8"><title>harness</title><script>
window.sockets = [];
window.openSocket = (url, hello) => {
  const log = [];
  let ws;
  try { ws = new WebSocket(url); } catch (e) { log.push({ type: "exception" }); }
  ws.binaryType = "arraybuffer";
  for (const type of ["open", "message", "error", "close"]) {
    ws.addEventListener(type, (e) => log.push({
      type, code: type === "close" ? e.code : null,
      wasClean: type === "close" ? e.wasClean : null,
    }));
  }
  if (hello) ws.addEventListener("open", () => ws.send(hello));
  window.sockets.push({ ws, log });
  return window.sockets.length - 1;
};
</script>"""

Event = tuple[str, int | None, bool | None]  # (type, code, wasClean)
OPEN: Event = ("open", None, None)
MESSAGE: Event = ("message", None, None)
ERROR: Event = ("error", None, None)


def close(code: int, clean: bool) -> Event:
    return ("close", code, clean)


FAILED_HANDSHAKE = [ERROR, close(1006, False)]

# scenario -> the events both a browser and ChatClient fire, in order
SCENARIOS: dict[str, list[Event]] = {
    "server closes with 1000": [OPEN, MESSAGE, close(1000, True)],
    "client closes with 1000": [OPEN, MESSAGE, close(1000, True)],
    "client closes without a code": [OPEN, MESSAGE, close(1005, True)],
    "server stops": [OPEN, MESSAGE, close(1001, True)],
    "dropped without a close frame": [OPEN, MESSAGE, close(1006, False)],
    "frame over max_size": [OPEN, MESSAGE, close(1009, True)],
    "ten bad frames": [OPEN, MESSAGE, *[MESSAGE] * 10, close(1008, True)],
    "handler error": [OPEN, MESSAGE, close(1011, True)],
    "server full": [OPEN, close(1013, True)],
    "handshake to a wrong path (404)": FAILED_HANDSHAKE,
    "foreign Origin (403)": FAILED_HANDSHAKE,
    "nothing listening": FAILED_HANDSHAKE,
    "wss:// with an untrusted certificate": FAILED_HANDSHAKE,
}


# --------------------------------------------------------------------------- the two sides


class Side(Protocol):
    """One client under test: a browser's WebSocket or a ChatClient."""

    def open(self, url: str, *, origin: str | None = None) -> None: ...
    def wait_joined(self) -> None: ...
    def send(self, data: str) -> None: ...
    def close(self, code: int | None) -> None: ...
    def events(self) -> list[Event]: ...


class BrowserSide:
    """A raw ``WebSocket`` in a blank page; it sends the chat's ``connecting`` on open."""

    def __init__(self, context: BrowserContext, harness: Harness) -> None:
        self.context = context
        self.harness = harness
        self.page: Page | None = None
        self.index = 0

    def open(self, url: str, *, origin: str | None = None) -> None:
        self.page = self.context.new_page()
        self.page.goto((origin or self.harness.origin) + "/truth-harness")
        hello = json.dumps({"event": "connecting", "id": USER, "username": USER})
        self.index = self.page.evaluate("([u, h]) => window.openSocket(u, h)", [url, hello])

    def _page(self) -> Page:
        assert self.page is not None
        return self.page

    def wait_joined(self) -> None:
        wait_until(
            self._page(),
            "(i) => window.sockets[i].log.some((e) => e.type === 'message')",
            self.index,
        )

    def send(self, data: str) -> None:
        self._page().evaluate("([i, d]) => window.sockets[i].ws.send(d)", [self.index, data])

    def close(self, code: int | None) -> None:
        self._page().evaluate(
            "([i, c]) => c === null ? window.sockets[i].ws.close() : window.sockets[i].ws.close(c)",
            [self.index, code],
        )

    def events(self) -> list[Event]:
        page = self._page()
        wait_until(page, "(i) => window.sockets[i].log.some((e) => e.type === 'close')", self.index)
        log: list[dict[str, Any]] = page.evaluate("(i) => window.sockets[i].log", self.index)
        return [(e["type"], e["code"], e["wasClean"]) for e in log]


class Harness:
    """The blank page, served over HTTP from 127.0.0.1 on a thread."""

    def __init__(self) -> None:
        body = HARNESS.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.foreign_origin = f"http://{FOREIGN_HOST}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class LoopThread:
    """An asyncio loop on a thread of its own (the main thread has Playwright's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(20 * UNIT_S)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class PythonSide:
    """A ChatClient that does not reconnect; its raw event log is the result."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.client: ChatClient | None = None

    def _client(self) -> ChatClient:
        assert self.client is not None
        return self.client

    def open(self, url: str, *, origin: str | None = None) -> None:
        async def start() -> None:
            self.client = ChatClient(url, USER, id=USER, reconnect=False, origin=origin)
            self.client.start()

        self.loop.run(start())

    def wait_joined(self) -> None:
        self.loop.run(self._client().wait_for(lambda c: c.online, 10 * UNIT_S))

    def send(self, data: str) -> None:
        self.loop.run(self._client().send_raw(data))

    def close(self, code: int | None) -> None:
        self.loop.run(self._client().close(code))

    def events(self) -> list[Event]:
        client = self._client()
        self.loop.run(client.wait_for(lambda c: c.status == "offline", 10 * UNIT_S))
        return [(e.type, e.code, e.was_clean) for e in client.events]


# --------------------------------------------------------------------------- the scenarios


class Servers:
    """Fresh ChatServers for one scenario, stopped afterwards."""

    def __init__(self) -> None:
        self.started: list[ChatServer] = []

    def start(self, **options: Any) -> ChatServer:
        server = ChatServer(grace=0, **options)
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def close_from_server(server: ChatServer, user_id: str, code: int, reason: str) -> None:
    """Close a user's sockets from the server side, on the server's thread."""

    async def close_all() -> None:
        for user_socket in server.room.sockets_of(user_id):
            await user_socket.close(code, reason)  # type: ignore[attr-defined]

    loop = server._loop
    assert loop is not None
    asyncio.run_coroutine_threadsafe(close_all(), loop).result(10 * UNIT_S)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def explode(username: str, text: str) -> str:
    raise ValueError("a bug in the server's message filter")


def run_scenario(name: str, side: Side, servers: Servers, harness: Harness) -> list[Event]:
    if name == "server closes with 1000":
        server = servers.start()
        side.open(server.url)
        side.wait_joined()
        close_from_server(server, USER, 1000, "goodbye")
    elif name in ("client closes with 1000", "client closes without a code"):
        server = servers.start()
        side.open(server.url)
        side.wait_joined()
        side.close(1000 if name == "client closes with 1000" else None)
    elif name == "server stops":
        server = servers.start()
        side.open(server.url)
        side.wait_joined()
        server.stop()
    elif name == "dropped without a close frame":
        server = servers.start()
        side.open(server.url)
        side.wait_joined()
        assert server.drop(USER) == 1
    elif name == "frame over max_size":
        server = servers.start(max_size=1024)
        side.open(server.url)
        side.wait_joined()
        side.send("x" * 2000)
    elif name == "ten bad frames":
        server = servers.start()
        side.open(server.url)
        side.wait_joined()
        for _ in range(10):
            side.send("this is not JSON")
    elif name == "handler error":
        server = servers.start(message_filter=explode)
        side.open(server.url)
        side.wait_joined()
        side.send(json.dumps({"event": "writeMessage", "message": "hi", "clientMessageId": "c1"}))
    elif name == "server full":
        server = servers.start(max_clients=1)
        with sync_connect(server.url, open_timeout=10 * UNIT_S):  # the one place taken
            side.open(server.url)
            return side.events()
    elif name == "handshake to a wrong path (404)":
        server = servers.start()
        side.open(server.url.replace("/chat", "/nowhere"))
    elif name == "foreign Origin (403)":
        server = servers.start()
        side.open(server.url, origin=harness.foreign_origin)
    elif name == "nothing listening":
        side.open(f"ws://127.0.0.1:{free_port()}/chat")
    elif name == "wss:// with an untrusted certificate":
        authority = trustme.CA()  # trusted by neither chromium nor the default context
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        server = servers.start(ssl=context)
        side.open(server.url)
    else:
        raise AssertionError(f"no such scenario: {name}")
    return side.events()


# --------------------------------------------------------------------------- fixtures, tests


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    served = Harness()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def truth_browser(playwright: Playwright) -> Iterator[Browser]:
    """A chromium of its own: it resolves foreign.test to 127.0.0.1 (no DNS asked)."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {FOREIGN_HOST} 127.0.0.1"],
    )
    yield browser
    browser.close()


@pytest.fixture
def harness_context(truth_browser: Browser) -> Iterator[BrowserContext]:
    context = truth_browser.new_context()
    context.set_default_timeout(10 * 1000 * UNIT_S)
    yield context
    context.close()


@pytest.fixture
def client_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def servers() -> Iterator[Servers]:
    found = Servers()
    yield found
    found.stop_all()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_chromium_and_chat_client_fire_the_same_events(
    name: str,
    harness: Harness,
    harness_context: BrowserContext,
    client_loop: LoopThread,
    servers: Servers,
) -> None:
    """Both clients, on fresh servers, give the scenario's (type, code, wasClean) sequence."""
    in_chromium = run_scenario(name, BrowserSide(harness_context, harness), servers, harness)
    in_python = run_scenario(name, PythonSide(client_loop), servers, harness)
    assert in_chromium == SCENARIOS[name], "Chromium"
    assert in_python == in_chromium, "ChatClient differs from Chromium"


# --------------------------------------------------------------------------- the docs table


def render(events: list[Event]) -> str:
    """``open · message x10 · close 1008 clean``: the docs' notation of a sequence."""
    words: list[str] = []
    for kind, code, clean in events:
        word = kind if kind != "close" else f"close {code} {'clean' if clean else 'unclean'}"
        if words and re.fullmatch(re.escape(word) + r"( x\d+)?", words[-1]):
            count = int(words[-1].split("x")[1]) + 1 if "x" in words[-1] else 2
            words[-1] = f"{word} x{count}"
        else:
            words.append(word)
    return " · ".join(words)


def parse(cell: str) -> list[Event]:
    """The inverse of :func:`render`, for one cell of the docs table."""
    events: list[Event] = []
    for word in cell.strip().strip("`").split(" · "):
        match = re.fullmatch(r"(open|message|error|close (\d+) (clean|unclean))(?: x(\d+))?", word)
        assert match, f"cannot read {word!r} in docs/browser-events.md"
        if match[2] is not None:
            event: Event = ("close", int(match[2]), match[3] == "clean")
        else:
            event = (match[1], None, None)
        events += [event] * int(match[4] or 1)
    return events


def docs_table() -> dict[str, list[Event]]:
    rows: dict[str, list[Event]] = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].startswith("`") and cells[0] not in ("scenario",):
            rows[cells[0]] = parse(cells[2])
    return rows


def test_the_docs_table_is_the_tested_table() -> None:
    """docs/browser-events.md lists every scenario, with the sequence tested above."""
    assert docs_table() == SCENARIOS
    assert re.search(r"Chromium \d+\.\d+\.\d+\.\d+", DOCS.read_text())


def test_render_and_parse_are_inverse() -> None:
    for events in SCENARIOS.values():
        assert parse(f"`{render(events)}`") == events
    assert render(SCENARIOS["ten bad frames"]) == "open · message x11 · close 1008 clean"


def test_a_page_not_from_this_machine_is_blocked_before_any_handshake(
    harness_context: BrowserContext, servers: Servers
) -> None:
    """Chromium's local network access checks stop a page that did not come from this
    machine (here: one Playwright's router supplies, so no local address served it)
    from reaching 127.0.0.1: the same error and close 1006, and the server saw nothing."""
    harness_context.route(
        re.compile(r"^http://public\.example/"),
        lambda route: route.fulfill(status=200, content_type="text/html", body=HARNESS),
    )
    server = servers.start()
    page = harness_context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto("http://public.example/truth-harness")
    index = page.evaluate("(u) => window.openSocket(u, null)", server.url)
    wait_until(page, "(i) => window.sockets[i].log.some((e) => e.type === 'close')", index)
    log = page.evaluate("(i) => window.sockets[i].log", index)
    assert [(e["type"], e["code"], e["wasClean"]) for e in log] == FAILED_HANDSHAKE
    assert any("ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS" in text for text in console)
    assert server.client_count == 0

"""What a real Chromium puts on the wire, read through a WireTap (lesson 02's claims)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, expect
from websockets.sync.server import ServerConnection, serve

from wslab import ChatServer, WireTap

from .helpers import UNIT_S, send_message, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def tap(server: ChatServer) -> Iterator[WireTap]:
    with WireTap(server.url) as tap:
        yield tap


def header(text: str, name: str) -> str | None:
    for line in text.split("\r\n"):
        field, _, value = line.partition(":")
        if field.lower() == name.lower():
            return value.strip()
    return None


def test_the_chat_page_works_through_the_tap_and_its_handshake_is_read(
    context: BrowserContext, tap: WireTap
) -> None:
    page = context.new_page()
    page.goto(f"{tap.page_url}?username={quote('alice')}")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    send_message(page, "hello from chromium")
    expect(page.locator("#messages li[data-message-id] .text")).to_have_text(
        ["hello from chromium"]
    )
    upgrade = next(r for r in tap.handshakes if r.text.startswith("GET /chat HTTP/1.1"))
    # A browser sends Origin and offers compression; the chat server declines it.
    assert header(upgrade.text, "Origin") == tap.page_url.rstrip("/")
    assert "permessage-deflate" in (header(upgrade.text, "Sec-WebSocket-Extensions") or "")
    answer = next(
        r
        for r in tap.handshakes
        if r.connection == upgrade.connection and r.direction == "server->client"
    )
    assert answer.text.startswith("HTTP/1.1 101 ")
    assert header(answer.text, "Sec-WebSocket-Extensions") is None
    sent = [f for f in tap.frames if f.connection == upgrade.connection and f.masked]
    assert sent and all(f.direction == "client->server" for f in sent)
    assert any(b"hello from chromium" in f.payload for f in sent)
    # A fresh masking key for every frame.
    assert len({f.mask for f in sent}) == len(sent)


def test_opening_the_socket_url_in_a_tab_gets_426(context: BrowserContext, tap: WireTap) -> None:
    page = context.new_page()
    response = page.goto(tap.url.replace("ws://", "http://"))
    assert response is not None and response.status == 426


def test_a_fragmented_message_fires_one_message_event_and_pings_are_answered(
    context: BrowserContext, server: ChatServer
) -> None:
    chat_page = server.page_url
    pongs: list[bool] = []

    def handler(websocket: ServerConnection) -> None:
        websocket.send(["frag", "men", "ted"])  # one message in fragments
        pongs.append(websocket.ping(b"still there?").wait(10 * UNIT_S))
        websocket.send("after the ping")
        for _ in websocket:  # until the page closes
            pass

    # No compression: the tap decodes uncompressed frames only.
    with serve(handler, "127.0.0.1", 0, compression=None) as plain:
        thread = threading.Thread(target=plain.serve_forever, daemon=True)
        thread.start()
        port = plain.socket.getsockname()[1]
        with WireTap(f"ws://127.0.0.1:{port}/") as tap:
            page = context.new_page()
            # A page from loopback (about:blank may not open sockets to a local address).
            page.goto(chat_page)
            page.evaluate(
                """(url) => {
                    window.received = [];
                    const ws = new WebSocket(url);
                    ws.onmessage = (e) => window.received.push(e.data);
                    window.ws = ws;
                }""",
                tap.url,
            )
            wait_until(page, "window.received.length === 2")
            assert page.evaluate("window.received") == ["fragmented", "after the ping"]
            page.evaluate("window.ws.close()")
            frames = tap.frames
        plain.shutdown()
        thread.join(10 * UNIT_S)
    down = [(f.opcode_name, f.fin) for f in frames if f.direction == "server->client"]
    assert down[:4] == [("TEXT", False), ("CONT", False), ("CONT", False), ("CONT", True)]
    assert pongs == [True]
    pong = next(f for f in frames if f.opcode_name == "PONG")
    assert pong.direction == "client->server" and pong.payload == b"still there?"

"""The browser chat page (wslab/static/) against a real ChatServer, in real chromium.

Each test drives pages as a person would (typing, pressing Enter, reloading,
closing) and checks what they show, plus the page's raw socket log
(`window.wslabChat.events`) where the behaviour is about what did NOT happen.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import threading
from collections.abc import Callable
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Locator,
    Page,
    WebSocketRoute,
    expect,
)

from wslab import BlockingChatClient, ChatServer

from .helpers import (
    GRACE_S,
    STABLE_S,
    UNIT_S,
    closes,
    delivered,
    received,
    send_message,
    wait_until,
)

pytestmark = pytest.mark.browser

REPO = pathlib.Path(__file__).resolve().parents[3]


def user_item(page: Page, user_id: str) -> Locator:
    """The user list's entry for `user_id`."""
    return page.locator(f'#users li[data-id="{user_id}"]')


def test_two_pages_see_each_other_and_share_one_conversation(
    open_chat: Callable[..., Page],
) -> None:
    """Each page lists the other once it joined, itself marked "(you)"; a conversation
    typed on both pages shows on both, in the order it was written."""
    alice = open_chat("alice")
    alice_id = alice.evaluate("wslabChat.id")
    expect(user_item(alice, alice_id)).to_have_text("alice (you)")

    bob = open_chat("bob")
    bob_id = bob.evaluate("wslabChat.id")
    expect(user_item(alice, bob_id)).to_have_text("bob")
    expect(user_item(bob, alice_id)).to_have_text("alice")
    expect(user_item(bob, bob_id)).to_have_text("bob (you)")
    assert [e["id"] for e in received(alice, "joined")] == [bob_id]

    conversation = [
        (alice, "Hi Bob, can you see me?"),
        (bob, "Yes, loud and clear."),
        (alice, "Try reloading your page."),
        (bob, "Done: same id, and nobody saw me leave."),
        (alice, "That is the reload grace at work."),
    ]
    written: list[str] = []
    for author, text in conversation:
        send_message(author, text)
        written.append(text)
        for page in (alice, bob):
            expect(delivered(page)).to_have_text(written)

    for page in (alice, bob):
        expect(page.locator("#messages li.pending")).to_have_count(0)
        ids = [m["messageId"] for m in page.evaluate("wslabChat.messages")]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

    if os.environ.get("WSLAB_SCREENSHOTS") == "1":
        alice.screenshot(path=str(REPO / "docs" / "images" / "page.png"))


def test_a_burst_from_two_pages_arrives_once_in_the_same_order_on_both(
    open_chat: Callable[..., Page],
) -> None:
    """Messages typed quickly on two pages at once arrive on both pages, each once,
    in one shared messageId order that keeps each author's own order."""
    alice = open_chat("alice")
    bob = open_chat("bob")
    expect(alice.locator("#users li")).to_have_count(2)

    for n in range(1, 6):
        send_message(alice, f"a{n}")
        send_message(bob, f"b{n}")

    for page in (alice, bob):
        expect(delivered(page)).to_have_count(10)
        expect(page.locator("#messages li.pending")).to_have_count(0)
    on_alice = delivered(alice).all_text_contents()
    assert delivered(bob).all_text_contents() == on_alice
    assert [t for t in on_alice if t.startswith("a")] == [f"a{n}" for n in range(1, 6)]
    assert [t for t in on_alice if t.startswith("b")] == [f"b{n}" for n in range(1, 6)]
    shown_ids = [
        int(i)
        for i in alice.locator("#messages li[data-message-id]").evaluate_all(
            "items => items.map((li) => li.dataset.messageId)"
        )
    ]
    assert shown_ids == sorted(shown_ids) and len(set(shown_ids)) == 10


def test_reload_within_grace_is_invisible_and_a_closed_page_leaves_once(
    open_chat: Callable[..., Page],
) -> None:
    """A page reloaded within the grace rejoins as the same user (wasPageReload) and
    shows the history, and the other page sees neither `disconnected` nor `joined`
    for it; when the page is closed, the other page sees `disconnected` exactly
    once, and not before the grace ran out."""
    alice = open_chat("alice")
    bob = open_chat("bob")
    bob_id = bob.evaluate("wslabChat.id")
    send_message(alice, "before the reload")
    expect(delivered(bob)).to_have_text(["before the reload"])

    bob.reload()
    expect(bob.locator("#status")).to_have_attribute("data-state", "online")
    assert bob.evaluate("wslabChat.id") == bob_id
    assert [e["wasPageReload"] for e in received(bob, "connected")] == [True]
    expect(delivered(bob)).to_have_text(["before the reload"])
    expect(user_item(bob, bob_id)).to_have_text("bob (you)")

    closed_at = alice.evaluate("Date.now()")
    bob.close()
    wait_until(alice, "(id) => !wslabChat.users.some((u) => u.id === id)", bob_id)
    # A round trip through the server: every event sent before it has arrived.
    send_message(alice, "still here")
    expect(delivered(alice)).to_have_text(["before the reload", "still here"])

    left = [e for e in received(alice, "disconnected") if e["id"] == bob_id]
    assert len(left) == 1, left
    # The server starts the grace only once it saw the close, after `closed_at`.
    assert left[0]["receivedAt"] - closed_at >= GRACE_S * 1000 - 50
    # Bob joined once, when he first came; the reload announced nothing.
    assert [e["id"] for e in received(alice, "joined")] == [bob_id]


def test_pages_come_back_after_a_server_restart_and_deliver_offline_messages_once(
    server: ChatServer,
    start_server: Callable[..., ChatServer],
    open_chat: Callable[..., Page],
) -> None:
    """When the server stops, pages show "reconnecting" with close code 1001; when a
    new server starts on the same port they come back online by themselves, and a
    message typed while offline arrives exactly once on both pages."""
    alice = open_chat("alice")
    bob = open_chat("bob")
    send_message(alice, "before the restart")
    expect(delivered(bob)).to_have_text(["before the restart"])

    server.stop()
    for page in (alice, bob):
        wait_until(page, "wslabChat.state === 'reconnecting'")
        expect(page.locator("#status")).to_contain_text("last close 1001 (going away:")
        first_close = closes(page)[0]
        assert (first_close["code"], first_close["wasClean"]) == (1001, True)

    send_message(alice, "typed while offline")
    expect(alice.locator("#messages li.pending")).to_contain_text(["typed while offline (pending)"])

    start_server(port=server.port)
    for page in (alice, bob):
        # The backoff may have grown while the port was closed: allow a few delays.
        wait_until(page, "wslabChat.state === 'online'", timeout_units=30)
    for page in (alice, bob):
        expect(delivered(page).filter(has_text="typed while offline")).to_have_count(1)
        expect(page.locator("#messages li.pending")).to_have_count(0)

    # A round trip after the restart: anything still in flight has arrived by now.
    # The old room's history stays above a divider: the new server numbers from 1.
    send_message(bob, "after the restart")
    for page in (alice, bob):
        expect(delivered(page)).to_have_text(
            ["before the restart", "typed while offline", "after the restart"]
        )
        expect(page.locator("#messages li.divider")).to_have_count(1)


def test_messages_typed_offline_and_after_reach_the_room_in_typing_order(
    context: BrowserContext, make_server: Callable[..., ChatServer]
) -> None:
    """60 messages typed while the page cannot reach the server, then 3 typed once it
    is back: the server's rate limit drops some of them on the way, yet another
    client sees all 63 in typing order, each once.

    Offline is played by Playwright between the page and the server: while
    ``offline`` every socket of the page is closed with 1012 at once. As Playwright
    relays every frame of the page's socket, a round trip takes tens of
    milliseconds: the server's limit is 10/s (burst 20), so that it is met.
    """
    server = make_server(port=0, grace=GRACE_S, rate_limit=10.0, rate_burst=20.0)
    offline = threading.Event()

    def network(ws: WebSocketRoute) -> None:
        if offline.is_set():
            ws.close(code=1012, reason="offline")
        else:
            ws.connect_to_server()

    context.route_web_socket(re.compile(r".*/chat$"), network)
    page = context.new_page()
    page.add_init_script("window.wslabPolicy = { capS: 0.5 };")  # come back quickly
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    ann = page.evaluate("wslabChat.id")
    typed_offline = [f"offline-{n}" for n in range(1, 61)]
    typed_online = [f"online-{n}" for n in range(1, 4)]

    with BlockingChatClient(server.url, "watcher") as watcher:
        offline.set()
        assert server.drop(ann) == 1
        wait_until(page, "wslabChat.state === 'reconnecting'")
        for text in typed_offline:
            send_message(page, text)
        expect(page.locator("#messages li.pending")).to_have_count(60)
        offline.clear()
        wait_until(page, "wslabChat.state === 'online'", timeout_units=10)
        for text in typed_online:
            send_message(page, text)
        expect(page.locator("#messages li.pending")).to_have_count(0, timeout=30_000 * UNIT_S)
        watcher.wait_for(
            lambda c: sum(m["id"] == ann for m in c.messages) >= 63, timeout=10 * UNIT_S
        )
        seen = [m["message"] for m in watcher.messages if m["id"] == ann]

    assert seen == typed_offline + typed_online
    assert [m["message"] for m in server.history] == seen
    # The test did go through the rate limit: some sends were dropped and resent.
    assert any(e["code"] == "rate_limited" for e in received(page, "error"))
    expect(delivered(page)).to_have_text(typed_offline + typed_online)


def test_typing_order_holds_across_a_server_restart(
    context: BrowserContext, make_server: Callable[..., ChatServer], tmp_path: pathlib.Path
) -> None:
    """The same with the server stopped and started again on its store (same room, same
    ids): the page resends the 60 straight to the server, the limit drops some, and
    another client sees all 63 in typing order, each once. (A round trip with a store
    takes about 15 ms here, so the default limit, 20/s with a burst of 40, is only just
    met by 60 messages: the limit is 10/s, burst 20, as above.)"""
    store = tmp_path / "chat.db"
    limits = {"grace": GRACE_S, "store": store, "rate_limit": 10.0, "rate_burst": 20.0}
    server = make_server(port=0, **limits)
    page = context.new_page()
    page.add_init_script("window.wslabPolicy = { capS: 0.5 };")  # come back quickly
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    ann = page.evaluate("wslabChat.id")
    typed_offline = [f"offline-{n}" for n in range(1, 61)]
    typed_online = [f"online-{n}" for n in range(1, 4)]

    with BlockingChatClient(server.url, "watcher") as watcher:
        server.stop()
        server.store.close()  # free the store for the next server
        wait_until(page, "wslabChat.state === 'reconnecting'")
        for text in typed_offline:
            send_message(page, text)
        expect(page.locator("#messages li.pending")).to_have_count(60)
        make_server(port=server.port, **limits)
        wait_until(page, "wslabChat.state === 'online'", timeout_units=10)
        for text in typed_online:
            send_message(page, text)
        expect(page.locator("#messages li.pending")).to_have_count(0, timeout=30_000 * UNIT_S)
        watcher.wait_for(
            lambda c: sum(m["id"] == ann for m in c.messages) >= 63, timeout=10 * UNIT_S
        )
        seen = [m["message"] for m in watcher.messages if m["id"] == ann]

    assert seen == typed_offline + typed_online
    assert any(e["code"] == "rate_limited" for e in received(page, "error"))
    expect(delivered(page)).to_have_text(typed_offline + typed_online)


def test_markup_in_names_and_messages_shows_as_text_and_never_runs(
    context: BrowserContext,
    server: ChatServer,
    open_chat: Callable[..., Page],
) -> None:
    """A username and messages made of HTML (img onerror, script, b) are shown as
    their characters on every page: no element is created, no script runs."""
    evil_name = "<img src=x onerror=alert(1)>"
    payloads = [
        '<img src=x onerror="window.wslabXss=1">',
        "<script>window.wslabXss=1</script>",
        "<b>bold?</b> &amp; <i>",
    ]
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()  # an undismissed alert() would block the page

    def watch_dialogs(page: Page) -> None:
        page.on("dialog", record)

    context.on("page", watch_dialogs)

    bob = open_chat("bob")
    mallory = open_chat(evil_name)
    mallory_id = mallory.evaluate("wslabChat.id")
    for text in payloads:
        send_message(mallory, text)

    expect(user_item(mallory, mallory_id)).to_have_text(evil_name + " (you)")
    expect(user_item(bob, mallory_id)).to_have_text(evil_name)
    for page in (mallory, bob):
        expect(delivered(page)).to_have_text(payloads)
        expect(page.locator("#messages li[data-message-id] .author")).to_have_text([evil_name] * 3)
        expect(page.locator("body img, body b, body i, #messages script")).to_have_count(0)
        assert page.evaluate("window.wslabXss") is None
    assert dialogs == []


def test_without_a_username_the_page_asks_for_one_and_enter_joins(
    context: BrowserContext, server: ChatServer
) -> None:
    """Opened without ?username=, the page shows a name form and stays unconnected;
    typing a name and pressing Enter joins, and puts the name in the URL so that a
    reload rejoins as the same user."""
    page = context.new_page()
    page.goto(server.page_url)
    expect(page.locator("#name-form")).to_be_visible()
    expect(page.locator("#chat")).to_be_hidden()
    expect(page.locator("#status")).to_have_attribute("data-state", "idle")
    assert page.evaluate("wslabChat.events.length") == 0

    page.locator("#name-input").fill("carol")
    page.locator("#name-input").press("Enter")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    expect(page.locator("#name-form")).to_be_hidden()
    carol_id = page.evaluate("wslabChat.id")
    expect(user_item(page, carol_id)).to_have_text("carol (you)")
    expect(page).to_have_url(re.compile(r"\?username=carol$"))

    page.reload()
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    assert page.evaluate("wslabChat.id") == carol_id
    assert [e["wasPageReload"] for e in received(page, "connected")] == [True]


def test_the_socket_url_is_resolved_against_the_page_url(
    server: ChatServer, open_chat: Callable[..., Page]
) -> None:
    """The page opens its socket at "chat" relative to its own URL (http->ws,
    https->wss), so it also works behind a path prefix such as Binder's proxy."""
    page = open_chat("alice")
    assert page.evaluate("wslabChat.socketUrl") == f"ws://127.0.0.1:{server.port}/chat"
    assert page.evaluate("wslabChat.socketUrl") == server.url
    resolve = "(href) => wslabChat.socketUrlFor(href)"
    prefix = "/user/ada/proxy/8765/"  # jupyter-server-proxy on a hub, as on Binder
    examples = [
        (f"https://hub.example.org{prefix}?username=a", f"wss://hub.example.org{prefix}chat"),
        (f"http://localhost:8888{prefix}#top", f"ws://localhost:8888{prefix}chat"),
        ("http://127.0.0.1:8765/", "ws://127.0.0.1:8765/chat"),
    ]
    for href, socket_url in examples:
        assert page.evaluate(resolve, href) == socket_url


def test_a_hijacked_id_is_refused_and_the_page_stays_offline(
    browser: Browser, open_chat: Callable[..., Page], server: ChatServer
) -> None:
    """A page that claims another user's id without its token gets `error`
    `id_taken` and close 1008: it shows "offline" with the code and the error, does
    not retry, and the real user sees nothing."""
    alice = open_chat("alice")
    alice_id = alice.evaluate("wslabChat.id")

    intruder_context = browser.new_context()
    try:
        # A forged localStorage identity: alice's id, no token.
        forged = json.dumps({"id": alice_id})
        intruder_context.add_init_script(
            f"localStorage.setItem('wslab:identity:eve', {json.dumps(forged)})"
        )
        eve = intruder_context.new_page()
        eve.goto(f"{server.page_url}?username={quote('eve')}")
        expect(eve.locator("#status")).to_have_attribute("data-state", "offline")
        expect(eve.locator("#status")).to_contain_text("last close 1008 (policy violation")
        expect(eve.locator("#error")).to_contain_text("id_taken")
        # "offline" is final: no retry was scheduled, so the socket opened once.
        assert eve.evaluate("wslabChat.events.filter((e) => e.type === 'open').length") == 1
    finally:
        intruder_context.close()

    send_message(alice, "still me")
    expect(delivered(alice)).to_have_text(["still me"])
    assert received(alice, "joined") == []
    assert received(alice, "disconnected") == []


def test_a_connection_dropped_at_once_keeps_the_backoff_growing(
    context: BrowserContext, server: ChatServer, open_chat: Callable[..., Page]
) -> None:
    """A connection lost right after `connected` (here: no close frame, 1006) does
    not reset the backoff, so a flapping server is not hammered every 0.3 s; a
    connection that stays up for the stability window (2 s, times the time unit
    here, so that a slow machine does not count a quick drop as stable) resets it."""
    context.add_init_script(f"window.wslabPolicy = {{ minUptimeS: {STABLE_S} }};")
    page = open_chat("alice")
    assert page.evaluate("wslabChat.policy.minUptimeS") == STABLE_S
    alice_id = page.evaluate("wslabChat.id")
    for attempt in (1, 2, 3):
        assert server.drop(alice_id) == 1
        # The close counts one more attempt; the `connected` that follows must not
        # reset the count (the close handler sets state and attempt together).
        wait_until(page, "(n) => wslabChat.attempt === n", attempt)
        expect(page.locator("#status")).to_have_attribute("data-close-code", "1006")
        wait_until(page, "wslabChat.state === 'online'")
    assert [c["code"] for c in closes(page)] == [1006, 1006, 1006]
    assert not any(c["wasClean"] for c in closes(page))
    # Up for the stability window after `connected`: a lost connection retries quickly again.
    wait_until(page, "wslabChat.attempt === 0")

"""The original design's client (wslab/static/seed.*, at /seed) in real chromium.

The page is a port of the original `useSocket` hook, flaws included, run against
a seed-compatible ChatServer. Each test shows one behaviour of that design that a
lesson states, next to what the kit's page (/) does instead where the lesson
compares them: the id kept in a cookie, the fixed 300 ms retry after an unclean
close only, no retry after a clean restart, an id that anyone can claim, and
messages typed while offline that are lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import untagged
from wslab import ChatServer

from .helpers import GRACE_S, UNIT_MS, closes, delivered, received, send_message, wait_until

pytestmark = pytest.mark.browser

RECONNECT_MS = 300  # the original design's fixed delay


@pytest.fixture
def start_seed_server() -> Iterator[Callable[..., ChatServer]]:
    """A factory: start_seed_server(seed_compatible=True) -> a started server, stopped after."""
    servers: list[ChatServer] = []

    def start(*, seed_compatible: bool = True) -> ChatServer:
        server = ChatServer(port=0, grace=GRACE_S, seed_compatible=seed_compatible)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def server(start_seed_server: Callable[..., ChatServer]) -> ChatServer:
    """The seed-compatible server (it also serves the kit's page, for comparisons)."""
    return start_seed_server()


def open_seed(context: BrowserContext, server: ChatServer, username: str) -> Page:
    """A /seed page in ``context`` joined as ``username`` and online."""
    page = context.new_page()
    page.goto(f"{server.page_url}seed?username={quote(username)}")
    wait_online(page)
    return page


def wait_online(page: Page) -> None:
    """Until the seed page's socket is open and its `connected` has arrived."""
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    wait_until(page, "seedChat.users.some((u) => u.id === seedChat.id)")


def seed_events(page: Page, kind: str) -> list[dict[str, Any]]:
    """The seed page's own log entries of one kind (open, message, close, send)."""
    found: list[dict[str, Any]] = page.evaluate(
        "(kind) => seedChat.events.filter((e) => e.type === kind)", kind
    )
    return found


def seed_received(page: Page, event: str) -> list[dict[str, Any]]:
    """The server events named ``event`` that a seed page received."""
    return [
        data
        for data in (json.loads(e["data"]) for e in seed_events(page, "message"))
        if data["event"] == event
    ]


def seed_sent(page: Page) -> list[dict[str, Any]]:
    """The frames a seed page handed to its socket, with the socket's readyState then."""
    return [
        {**json.loads(e["data"]), "readyState": e["readyState"]} for e in seed_events(page, "send")
    ]


def closes_of(page: Page) -> list[dict[str, Any]]:
    """The close events a seed page saw."""
    return seed_events(page, "close")


def seed_texts(page: Page) -> list[str]:
    """The message texts a seed page shows."""
    texts: list[str] = page.evaluate("seedChat.messages.map((m) => m.message)")
    return texts


def seed_send(page: Page, text: str) -> None:
    """Type a message on a seed page and press Enter."""
    page.locator("#message-input").fill(text)
    page.locator("#message-input").press("Enter")


def test_two_seed_pages_chat_and_every_message_carries_the_whole_history(
    browser: Browser, server: ChatServer
) -> None:
    """Two browsers (two cookie jars) chat through /seed: each lists the other, each
    `connecting` carries an id and a name and no token, and every `messageWritten`
    carries the whole history, which replaces the page's list."""
    contexts = [browser.new_context(), browser.new_context()]
    try:
        ann = open_seed(contexts[0], server, "ann")
        bob = open_seed(contexts[1], server, "bob")
        ann_id, bob_id = ann.evaluate("seedChat.id"), bob.evaluate("seedChat.id")
        assert ann_id != bob_id
        wait_until(ann, "(id) => seedChat.users.some((u) => u.id === id)", bob_id)
        assert [e["id"] for e in seed_received(ann, "joined")] == [bob_id]
        expect(ann.locator("#users li")).to_have_text(["ann", "bob"])

        written: list[str] = []
        for author, text in [(ann, "hi bob"), (bob, "hi ann"), (ann, "<b>not bold</b>")]:
            seed_send(author, text)
            written.append(text)
            for page in (ann, bob):
                wait_until(page, "(n) => seedChat.messages.length === n", len(written))
        for page in (ann, bob):
            assert seed_texts(page) == written
            lists = [e["messagesList"] for e in seed_received(page, "messageWritten")]
            assert [[m["message"] for m in full] for full in lists] == [
                written[:1],
                written[:2],
                written,
            ]
        # Markup is shown as text.
        expect(bob.locator("#messages li").last).to_have_text("ann: <b>not bold</b>")
        assert bob.locator("#messages b").all_text_contents() == ["ann", "bob", "ann"]

        hello = seed_sent(ann)[0]
        assert hello == {"event": "connecting", "id": ann_id, "username": "ann", "readyState": 1}
        # A reload sends the same thing: the page never keeps a token, whatever comes.
        assert all("token" not in frame for frame in seed_sent(ann))
    finally:
        for context in contexts:
            context.close()


def test_a_reload_keeps_the_id_from_the_cookie_and_is_no_leave_and_join(
    browser: Browser,
    server: ChatServer,
    context: BrowserContext,
    open_chat: Callable[..., Page],
    start_seed_server: Callable[..., ChatServer],
) -> None:
    """The id lives in the cookie `wsId`: a reload sends the same id, the server takes
    it as a reload (within its grace), and the other pages (a seed page and the kit's
    page) see neither a leave nor a join. A second tab of the same browser is the
    same user, under the name the first one joined with; so is a seed page of
    another server on the same host: the cookie belongs to the host, not the port."""
    ann = open_seed(context, server, "ann")
    ann_id = ann.evaluate("seedChat.id")
    assert ann.evaluate("document.cookie") == f"wsId={ann_id}"

    other = browser.new_context()
    try:
        bob = open_seed(other, server, "bob")
        kit = open_chat("cat", on=server)
        ann.reload()
        wait_online(ann)
        assert ann.evaluate("seedChat.id") == ann_id
        assert [e["wasPageReload"] for e in seed_received(ann, "connected")] == [True]
        # Once the grace is over, bob has still seen nothing of the reload.
        wait_until(bob, f"Date.now() - {ann.evaluate('Date.now()')} > {GRACE_S * 1000 + 200}")
        assert seed_received(bob, "disconnected") == []
        assert untagged(seed_received(bob, "joined")) == [
            {"event": "joined", "id": kit.evaluate("wslabChat.id"), "username": "cat"}
        ]
        assert received(kit, "disconnected") == []
        assert received(kit, "joined") == []

        # Another tab of ann's browser reads the same cookie: the same user, and
        # the server keeps the name it bound to the id.
        tab = open_seed(context, server, "someone else")
        assert tab.evaluate("seedChat.id") == ann_id
        assert [u["username"] for u in tab.evaluate("seedChat.users")] == ["ann", "bob", "cat"]
        seed_send(tab, "from the second tab")
        wait_until(bob, "seedChat.messages.length === 1")
        (entry,) = bob.evaluate("seedChat.messages")
        assert (entry["id"], entry["username"]) == (ann_id, "ann")
    finally:
        other.close()

    elsewhere = start_seed_server()
    assert elsewhere.port != server.port
    assert open_seed(context, elsewhere, "ann").evaluate("seedChat.id") == ann_id


def test_an_unclean_drop_is_retried_after_a_fixed_300_ms_every_time(
    server: ChatServer, context: BrowserContext
) -> None:
    """A connection lost without a close frame (1006, wasClean false) is retried
    300 ms after the close, and again 300 ms after the next one: no growth, no
    randomness."""
    ann = open_seed(context, server, "ann")
    ann_id = ann.evaluate("seedChat.id")
    for drop in (1, 2, 3):
        assert server.drop(ann_id) == 1
        wait_until(ann, "(n) => seedChat.events.filter((e) => e.type === 'open').length > n", drop)
        wait_online(ann)
    close_times = [c["t"] for c in seed_events(ann, "close")]
    open_times = [o["t"] for o in seed_events(ann, "open")][1:]
    assert [(c["code"], c["wasClean"]) for c in closes_of(ann)] == [(1006, False)] * 3
    gaps = [opened - closed for closed, opened in zip(close_times, open_times, strict=True)]
    # setTimeout(300) then a handshake on loopback: never sooner, and not much later.
    assert all(RECONNECT_MS <= gap < RECONNECT_MS + UNIT_MS for gap in gaps), gaps
    assert len(seed_events(ann, "close")) == 3


def test_a_clean_restart_leaves_the_seed_page_offline_while_the_kits_page_comes_back(
    server: ChatServer, context: BrowserContext, open_chat: Callable[..., Page]
) -> None:
    """A server restart closes every socket cleanly (1001): the kit's page reconnects
    by itself; the seed page never tries again, and once its grace is over the
    room announces it as gone."""
    seed = open_seed(context, server, "ann")
    seed_id = seed.evaluate("seedChat.id")
    kit = open_chat("bob", on=server)

    server.stop()
    wait_until(seed, "seedChat.lastClose !== null")
    assert [(c["code"], c["wasClean"]) for c in closes_of(seed)] == [(1001, True)]
    wait_until(kit, "wslabChat.state === 'reconnecting'")
    assert (closes(kit)[0]["code"], closes(kit)[0]["wasClean"]) == (1001, True)

    server.start()  # the same object: a restart on the same port, same room
    wait_until(kit, "wslabChat.state === 'online'", timeout_units=30)
    # The kit's page is back; the seed page would have knocked 300 ms after its
    # close. Give it the grace and more: it stays closed, with one socket ever.
    closed_at = closes_of(seed)[0]["t"]
    wait_until(seed, f"Date.now() - {closed_at} > {GRACE_S * 1000 + 3 * RECONNECT_MS}")
    expect(seed.locator("#status")).to_have_attribute("data-state", "offline")
    expect(seed.locator("#status")).to_have_text("offline (last close 1001)")
    assert len(seed_events(seed, "open")) == 1
    # For everyone else, the seed page's user has left.
    wait_until(kit, "(id) => !wslabChat.users.some((u) => u.id === id)", seed_id, timeout_units=10)
    assert seed_id not in [u["id"] for u in server.users]


def test_a_seed_page_takes_another_users_id_by_setting_the_cookie(
    browser: Browser,
    server: ChatServer,
    context: BrowserContext,
    start_seed_server: Callable[..., ChatServer],
) -> None:
    """On the seed design an id is the whole identity: a page whose cookie says
    alice's id is alice, writes as alice, and alice sees it as her own message.
    Against a default server the kit's page with the same forged id and no token
    is refused (id_taken, 1008) and alice sees nothing."""
    alice = open_seed(context, server, "alice")
    alice_id = alice.evaluate("seedChat.id")

    intruder = browser.new_context()
    try:
        # Eve opens the page as herself, then rewrites her cookie (one line in the
        # console) and reloads.
        eve = open_seed(intruder, server, "eve")
        eve_id = eve.evaluate("seedChat.id")
        assert eve_id != alice_id
        eve.evaluate("(id) => { document.cookie = 'wsId=' + id; }", alice_id)
        eve.reload()
        wait_online(eve)
        assert eve.evaluate("seedChat.id") == alice_id
        seed_send(eve, "alice here: please send me your password")
        wait_until(alice, "seedChat.messages.length === 1")
        (entry,) = alice.evaluate("seedChat.messages")
        assert (entry["id"], entry["username"]) == (alice_id, "alice")
        # Only eve's first page was announced: to the server, the reloaded page is
        # alice's second tab, and alice is listed once.
        assert [e["id"] for e in seed_received(alice, "joined")] == [eve_id]
        assert [u["id"] for u in server.users].count(alice_id) == 1
    finally:
        intruder.close()

    default = start_seed_server(seed_compatible=False)
    kit_alice = context.new_page()
    kit_alice.goto(f"{default.page_url}?username=alice")
    wait_until(kit_alice, "wslabChat.state === 'online'")
    kit_alice_id = kit_alice.evaluate("wslabChat.id")
    intruder = browser.new_context()
    try:
        forged = json.dumps({"id": kit_alice_id})  # the id is no secret; the token is
        intruder.add_init_script(
            f"localStorage.setItem('wslab:identity:eve', {json.dumps(forged)})"
        )
        kit_eve = intruder.new_page()
        kit_eve.goto(f"{default.page_url}?username=eve")
        wait_until(kit_eve, "wslabChat.state === 'offline'")
        assert [(c["code"], c["wasClean"]) for c in closes(kit_eve)] == [(1008, True)]
        expect(kit_eve.locator("#error")).to_contain_text("id_taken")
    finally:
        intruder.close()
    send_message(kit_alice, "still only me")
    expect(delivered(kit_alice)).to_have_text(["still only me"])
    assert received(kit_alice, "joined") == []
    assert received(kit_alice, "disconnected") == []
    assert kit_alice.evaluate("wslabChat.state") == "online"


def test_messages_typed_offline_are_lost_on_the_seed_page_and_kept_by_the_kits_page(
    server: ChatServer, context: BrowserContext, open_chat: Callable[..., Page]
) -> None:
    """A message typed in the 300 ms after a drop goes into a closed socket and is
    gone, although the page reconnects. A message typed while the server is down
    is lost on the seed page, and delivered exactly once from the kit's page."""
    seed = open_seed(context, server, "ann")
    kit = open_chat("bob", on=server)

    # Arm the page first: the moment its socket is closed, well inside the 300 ms
    # before the retry, a person types a message and presses Enter.
    seed.evaluate(
        """() => {
            const armed = setInterval(() => {
                if (!seedChat.events.some((e) => e.type === "close")) return;
                clearInterval(armed);
                document.getElementById("message-input").value = "typed during the drop";
                document.getElementById("message-form").requestSubmit();
            }, 5);
        }"""
    )
    server.drop(seed.evaluate("seedChat.id"))
    wait_until(seed, "seedChat.events.filter((e) => e.type === 'open').length === 2")
    wait_online(seed)
    lost = [m for m in seed_sent(seed) if m["event"] == "writeMessage"]
    assert [(m["message"], m["readyState"]) for m in lost] == [("typed during the drop", 3)]

    server.stop()
    wait_until(kit, "wslabChat.state === 'reconnecting'")
    wait_until(seed, "seedChat.readyState === WebSocket.CLOSED")
    seed_send(seed, "typed while the server is down")
    send_message(kit, "bob, typed while the server is down")
    expect(kit.locator("#messages li.pending")).to_have_count(1)
    assert seed.locator("#message-input").input_value() == ""  # it looked sent

    server.start()
    wait_until(kit, "wslabChat.state === 'online'", timeout_units=30)
    expect(delivered(kit)).to_have_text(["bob, typed while the server is down"])
    expect(kit.locator("#messages li.pending")).to_have_count(0)
    # A person reloads the offline seed page: the history has bob's message once,
    # and neither of ann's.
    seed.reload()
    wait_online(seed)
    assert seed_texts(seed) == ["bob, typed while the server is down"]
    assert [m["message"] for m in server.history] == ["bob, typed while the server is down"]


def test_against_a_default_server_the_seed_page_shows_no_messages(
    start_seed_server: Callable[..., ChatServer], context: BrowserContext
) -> None:
    """The seed page takes its list from `messagesList`, which only a seed-compatible
    server puts in `messageWritten`: against a default server its list stays empty,
    although the message was stored."""
    default = start_seed_server(seed_compatible=False)
    ann = open_seed(context, default, "ann")
    seed_send(ann, "where did it go?")
    wait_until(
        ann,
        "seedChat.events.some((e) => e.type === 'message' && e.data.includes('messageWritten'))",
    )
    (written,) = seed_received(ann, "messageWritten")
    assert "messagesList" not in written
    assert written["message"]["message"] == "where did it go?"
    assert seed_texts(ann) == []
    expect(ann.locator("#messages li")).to_have_count(0)


def test_the_seed_page_asks_for_a_name_and_resolves_its_socket_against_its_url(
    server: ChatServer, context: BrowserContext
) -> None:
    """Without ?username= the page asks for a name and Enter joins; its socket URL is
    built from the page's own address (ws/wss, any path prefix), like the kit's page."""
    page = context.new_page()
    page.goto(f"{server.page_url}seed")
    expect(page.locator("#name-form")).to_be_visible()
    page.locator("#name-input").fill("dee")
    page.locator("#name-input").press("Enter")
    wait_online(page)
    assert page.evaluate("seedChat.username") == "dee"
    assert page.url.endswith("/seed?username=dee")

    resolve = "(href) => seedChat.socketUrlFor(href)"
    prefix = "/user/ann/proxy/8765/"
    examples = [
        (f"https://hub.example.org{prefix}seed?username=a", f"wss://hub.example.org{prefix}chat"),
        ("http://127.0.0.1:8765/seed", "ws://127.0.0.1:8765/chat"),
    ]
    for href, socket_url in examples:
        assert page.evaluate(resolve, href) == socket_url

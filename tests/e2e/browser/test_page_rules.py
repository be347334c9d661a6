"""The page follows the Python client's rules: one policy, one close-code table, one
resend rule, one set of display rules; it keeps its outbox across a reload and stays
responsive under a flood.

The close-code and resend tables drive the real page in chromium against a scripted
socket (Playwright's ``route_web_socket``), so any close code can be produced.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect
from websockets.sync.client import connect

from tests.conftest import TIME_SCALE, hello, say
from tests.unit.test_display import CASES, RUN_CASES
from tests.unit.test_retry import CLOSE_TABLE
from wslab import ChatServer, Reconnector, RetryPolicy
from wslab.clock import FakeClock
from wslab.display import REFUSED_NOTICE, user_tag
from wslab.frontend import page_config, widget_css, widget_esm
from wslab.retry import page_policy

from .helpers import delivered, send_message, wait_until

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"

STATIC = Path(__file__).resolve().parents[3] / "wslab" / "static"


def connected_frame(hello_frame: dict[str, Any], **extra: Any) -> str:
    return json.dumps(
        {
            "event": "connected",
            "roomId": "r",
            "id": hello_frame["id"],
            "username": hello_frame["username"],
            "token": "t",
            "connectedUserList": [{"id": hello_frame["id"], "username": hello_frame["username"]}],
            "messagesList": [],
            "wasPageReload": False,
            **extra,
        }
    )


# ---------------------------------------------------------------------------- one source


def test_the_page_gets_the_policy_and_the_words_from_python(open_chat: Callable[..., Page]) -> None:
    """Backoff numbers, final codes, the resend pause, every close code's meaning and
    the display words: what the server wrote into the page (page_config())."""
    page = open_chat("alice")
    assert page.evaluate("wslabChat.config") == page_config()
    assert page.evaluate("wslabChat.defaultPolicy") == page_policy()
    assert page.evaluate("wslabChat.policy") == page_policy()


def test_the_page_reconnector_decides_like_the_python_one(open_chat: Callable[..., Page]) -> None:
    """The same close-code table and the same delays for the same connections
    (failures, an unstable one, a stable one), with a fixed random source."""
    page = open_chat("alice")
    decide = """([code, byUs]) => new wslabChat.Reconnector(wslabChat.defaultPolicy, () => 1)
        .afterClose(code, byUs, 0)"""
    for code, by_us, retried in CLOSE_TABLE:
        assert (page.evaluate(decide, [code, by_us]) is not None) is retried, (code, by_us)

    uptimes: list[float | None] = [None, None, 0.5, 1.9, 2.0, None, 0.0, 0.0, 0.0, 0.0, 0.0]
    python = Reconnector(RetryPolicy(), rng=lambda: 1.0)
    clock = FakeClock()
    expected = []
    for uptime in uptimes:
        python.begin_attempt()
        if uptime is not None:
            python.after_connected(clock.monotonic())
            clock.advance(uptime)
        expected.append(python.after_close(1006, closed_by_us=False, now=clock.monotonic()))
    delays = page.evaluate(
        """(uptimes) => {
            const r = new wslabChat.Reconnector(wslabChat.defaultPolicy, () => 1);
            let now = 0;
            return uptimes.map((up) => {
                r.beginAttempt();
                if (up !== null) { r.afterConnected(now); now += up; }
                return r.afterClose(1006, false, now);
            });
        }""",
        uptimes,
    )
    assert delays == pytest.approx(expected)


def test_the_display_rules_answer_the_table(open_chat: Callable[..., Page]) -> None:
    """The one implementation (chatview.js), as the page uses it, on tests/unit/test_display's
    table: names with id suffixes, presence lines, close meanings, the status text."""
    page = open_chat("alice")
    answers = page.evaluate(f"([cases]) => ({RUN_CASES})([wslabChat.display, cases])", [CASES])
    assert answers == [case["out"] for case in CASES]


# ---------------------------------------------------------------------------- the page itself


Script = Callable[[WebSocketRoute, dict[str, Any]], None]


def scripted(page: Page, on_hello: Script, on_frame: Script | None = None) -> list[WebSocketRoute]:
    """Answer the page's sockets ourselves: ``on_hello(ws, frame)`` for ``connecting``,
    ``on_frame(ws, frame)`` for every other frame. Returns the sockets opened."""
    sockets: list[WebSocketRoute] = []

    def handler(ws: WebSocketRoute) -> None:
        sockets.append(ws)

        def on_message(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("event") == "connecting":
                on_hello(ws, frame)
            elif on_frame is not None:
                on_frame(ws, frame)

        ws.on_message(on_message)

    page.route_web_socket(re.compile(r".*/chat$"), handler)
    return sockets


@pytest.mark.parametrize(
    ("code", "retried"),
    [(c, r) for c, by_us, r in CLOSE_TABLE if not by_us and c not in (None, 1006)],
)
def test_the_page_reconnects_exactly_after_the_codes_the_table_retries(
    context: BrowserContext, server: ChatServer, code: int, retried: bool
) -> None:
    """A scripted server accepts and closes with each code of the table; the page
    reconnects (another socket) or stays offline, as the Python client does
    (tests/integration/test_client_retry.py). 1006 is produced for real in test_chat_page."""
    page = context.new_page()
    page.add_init_script("window.wslabPolicy = { initialS: 0.01, factor: 1, capS: 0.01 };")

    def close_at_once(ws: WebSocketRoute, frame: dict[str, Any]) -> None:
        ws.send(connected_frame(frame))
        ws.close(code=code, reason="table")

    sockets = scripted(page, close_at_once)
    page.goto(f"{server.page_url}?username=ann")
    if retried:
        wait_until(page, "wslabChat.attempts >= 3")
        assert page.evaluate("wslabChat.state") != "offline"
    else:
        # "offline" is set only when the policy said not to reconnect: no retry is due.
        wait_until(page, "wslabChat.state === 'offline'")
        assert page.evaluate("wslabChat.attempts") == 1 and len(sockets) == 1
    first_close = page.evaluate("wslabChat.events.find((e) => e.type === 'close')")
    assert first_close["code"] == code


def test_the_page_resends_what_a_rate_limited_error_dropped(
    context: BrowserContext, server: ChatServer
) -> None:
    """The resend row of the table: the first writeMessage gets ``rate_limited``; the
    page sends it again after the pause (same clientMessageId), and it is delivered
    once with nothing left pending."""
    page = context.new_page()
    page.add_init_script("window.wslabPolicy = { rateLimitPauseS: 0.1 };")
    writes: list[dict[str, Any]] = []

    joined: dict[str, Any] = {}

    def accept(ws: WebSocketRoute, frame: dict[str, Any]) -> None:
        joined.update(frame)
        ws.send(connected_frame(frame))

    def limit_the_first(ws: WebSocketRoute, write: dict[str, Any]) -> None:
        writes.append(write)
        if len(writes) == 1:
            ws.send(json.dumps({"event": "error", "code": "rate_limited", "detail": "slow"}))
            return
        entry = {
            "messageId": len(writes),
            "id": joined["id"],
            "username": joined["username"],
            "message": write["message"],
            "ts": "2026-01-01T00:00:00.000Z",
            "clientMessageId": write["clientMessageId"],
        }
        ws.send(json.dumps({"event": "messageWritten", "message": entry}))

    scripted(page, accept, limit_the_first)
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    send_message(page, "hello")
    expect(delivered(page)).to_have_text(["hello"])
    expect(page.locator("#messages li.pending")).to_have_count(0)
    assert [w["clientMessageId"] for w in writes] == [writes[0]["clientMessageId"]] * 2


def test_a_connected_page_keeps_listing_itself_whatever_presence_says(
    context: BrowserContext, server: ChatServer
) -> None:
    """A server that froze past its heartbeat may leave the page's own user out of
    ``connected``, and send ``disconnected`` or a batched ``presence`` ``left`` for it
    while its socket is open: the page still lists itself, and shows no leave of its
    own. Leaves of others in the same frames apply as usual."""
    page = context.new_page()

    def stale(ws: WebSocketRoute, frame: dict[str, Any]) -> None:
        me = {"id": frame["id"], "username": frame["username"]}
        others = [{"id": "b-1", "username": "bob"}, {"id": "c-1", "username": "carol"}]
        ws.send(connected_frame(frame, connectedUserList=others))
        ws.send(json.dumps({"event": "disconnected", **me}))
        ws.send(json.dumps({"event": "presence", "left": [me, others[0]], "joined": []}))
        ws.send(json.dumps({"event": "disconnected", **others[1]}))

    scripted(page, stale)
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#messages li.system")).to_have_text(["bob left", "carol left"])
    expect(page.locator("#users li")).to_have_text(["ann (you)"])
    assert page.evaluate("wslabChat.users") == [
        {"id": page.evaluate("wslabChat.id"), "username": "ann"}
    ]


def test_the_page_sends_one_message_at_a_time_oldest_first(
    context: BrowserContext, server: ChatServer
) -> None:
    """Three messages typed at once: the second goes out only after the first is
    acknowledged. The first is dropped (``rate_limited``), and after the pause it is
    sent again before the others; a message the server refuses for good
    (``invalid_field``) leaves the outbox with a line that says so, and the next goes."""
    page = context.new_page()
    page.add_init_script("window.wslabPolicy = { rateLimitPauseS: 0.1 };")
    writes: list[str] = []
    joined: dict[str, Any] = {}

    def accept(ws: WebSocketRoute, frame: dict[str, Any]) -> None:
        joined.update(frame)
        ws.send(connected_frame(frame))

    def answer(ws: WebSocketRoute, write: dict[str, Any]) -> None:
        writes.append(write["message"])
        if len(writes) == 1:
            ws.send(json.dumps({"event": "error", "code": "rate_limited", "detail": "slow"}))
            return
        if write["message"] == "too long":
            ws.send(json.dumps({"event": "error", "code": "invalid_field", "detail": "message"}))
            return
        entry = {
            "messageId": len(writes),
            "id": joined["id"],
            "username": joined["username"],
            "message": write["message"],
            "ts": "2026-01-01T00:00:00.000Z",
            "clientMessageId": write["clientMessageId"],
        }
        ws.send(json.dumps({"event": "messageWritten", "message": entry}))

    scripted(page, accept, answer)
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    page.evaluate(
        """() => {
            const form = document.getElementById("message-form");
            const box = document.getElementById("message-input");
            for (const text of ["one", "too long", "two", "three"]) {
                box.value = text;
                form.requestSubmit();
            }
        }"""
    )
    expect(delivered(page)).to_have_text(["one", "two", "three"])
    expect(page.locator("#messages li.pending")).to_have_count(0)
    assert writes == ["one", "one", "too long", "two", "three"]
    expect(page.locator('#messages li.system[data-kind="refused"]')).to_have_text(
        [f"{REFUSED_NOTICE} (message): too long"]
    )


def test_the_outbox_survives_a_reload_while_offline_and_is_delivered_once(
    context: BrowserContext, server: ChatServer
) -> None:
    """Typed while the socket cannot reach the server, then the page is reloaded
    (still offline): the messages are still pending, and once the socket gets
    through they arrive exactly once, and a later reload sends nothing again.

    Offline is played by Playwright between the page and the server: while
    ``offline`` every socket is closed with 1012 at once; then sockets go through.
    """
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
    send_message(page, "typed online")
    expect(delivered(page)).to_have_text(["typed online"])

    offline.set()
    server.drop(page.evaluate("wslabChat.id"))
    wait_until(page, "wslabChat.state === 'reconnecting'")
    send_message(page, "typed offline")
    send_message(page, "and this too")
    page.reload()
    wait_until(page, "wslabChat.state === 'reconnecting'")
    expect(page.locator("#messages li.pending .text")).to_have_text(
        ["typed offline", "and this too"]
    )

    offline.clear()
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    expect(delivered(page)).to_have_text(["typed online", "typed offline", "and this too"])
    expect(page.locator("#messages li.pending")).to_have_count(0)
    page.reload()
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    expect(delivered(page)).to_have_text(["typed online", "typed offline", "and this too"])
    texts = [m["message"] for m in server.history]
    assert texts == ["typed online", "typed offline", "and this too"]


def test_joins_and_leaves_are_system_lines_and_a_reload_is_explained(
    open_chat: Callable[..., Page],
) -> None:
    """The others see "bob joined" and, after the grace, "bob left"; bob's reload
    shows no line on alice's page, and bob's page says why."""
    alice = open_chat("alice")
    bob = open_chat("bob")
    system = alice.locator("#messages li.system")
    expect(system).to_have_text(["bob joined"])
    bob.reload()
    expect(bob.locator("#status")).to_have_attribute("data-state", "online")
    expect(bob.locator("#status")).to_contain_text("the others saw no leave and no join")
    send_message(alice, "after the reload")  # a round trip: the reload's events are in
    expect(delivered(bob)).to_have_text(["after the reload"])
    expect(system).to_have_text(["bob joined"])
    bob.close()
    expect(system).to_have_text(["bob joined", "bob left"])


def test_a_truncated_recovery_shows_a_notice(context: BrowserContext, server: ChatServer) -> None:
    page = context.new_page()
    scripted(page, lambda ws, frame: ws.send(connected_frame(frame, truncated=True)))
    page.goto(f"{server.page_url}?username=ann")
    expect(page.locator("#notice")).to_have_text("some earlier messages are no longer available")
    assert page.evaluate("wslabChat.truncated") is True


def tags_of(server: ChatServer, *user_ids: str) -> list[str]:
    """The tags ``server`` gives these ids (from its secret, which no client is told)."""
    key = server.room.engine.tag_key  # type: ignore[attr-defined]
    return [user_tag(key, user_id) for user_id in user_ids]


def test_shared_names_get_the_users_tags_and_bidi_is_neutralized(
    context: BrowserContext, server: ChatServer
) -> None:
    """Two present "alice"s, the second with an id chosen to end like the first's,
    show with their tags (the server derives them from the ids with its secret), on
    the user list and on their messages; U+202E in a message shows as U+FFFD."""
    first_tag, second_tag = tags_of(server, "first-1111", "x-1111")
    assert first_tag != second_tag
    pages = []
    for user_id in ("first-1111", "x-1111"):
        page = context.new_page()
        identity = json.dumps(json.dumps({"id": user_id}))
        page.add_init_script(f"localStorage.setItem('wslab:identity:alice', {identity})")
        page.goto(f"{server.page_url}?username={quote('alice')}")
        expect(page.locator("#status")).to_have_attribute("data-state", "online")
        pages.append(page)
    first, second = pages
    shown = [f"alice #{first_tag} (you)", f"alice #{second_tag}"]
    expect(first.locator("#users li")).to_have_text(shown)
    send_message(second, "invoice_\u202egnp.exe")
    expect(delivered(first)).to_have_text(["invoice_\ufffdgnp.exe"])
    expect(first.locator("#messages li[data-message-id] .author")).to_have_text([shown[1]])


def test_a_flood_of_1000_messages_keeps_the_page_responsive(
    open_chat: Callable[..., Page], start_server: Callable[..., ChatServer]
) -> None:
    """1,000 messages arrive as fast as the server sends them: the page's longest
    main-thread stall (long tasks, and the gap between animation frames) stays
    under 200 ms, and the list keeps only the newest MAX_SHOWN."""
    server = ChatServer(rate_limit=0, history=100).start()
    try:
        page = open_chat("reader", on=server)
        page.evaluate(
            """() => {
                window.probe = { longest: 0, gap: 0, last: performance.now() };
                new PerformanceObserver((list) => {
                    for (const e of list.getEntries())
                        probe.longest = Math.max(probe.longest, e.duration);
                }).observe({ type: "longtask" });
                const frame = (t) => {
                    probe.gap = Math.max(probe.gap, t - probe.last);
                    probe.last = t;
                    requestAnimationFrame(frame);
                };
                requestAnimationFrame(frame);
            }"""
        )
        started = time.monotonic()

        def flood() -> None:
            with connect(server.url) as socket:
                socket.send(hello("flooder", "flooder"))
                socket.recv()
                for n in range(1000):
                    socket.send(say(f"flood {n}", f"f{n}"))
                acks = 0
                while acks < 1000:
                    if json.loads(socket.recv()).get("event") == "messageWritten":
                        acks += 1

        sender = threading.Thread(target=flood)
        sender.start()
        sender.join(timeout=60 * TIME_SCALE)
        wait_until(page, "wslabChat.lastMessageId === 1000", timeout_units=30)
        expect(delivered(page).last).to_have_text("flood 999")
        seconds = time.monotonic() - started
        probe = page.evaluate("window.probe")
        shown = delivered(page).count()
        print(
            f"\n[page flood] 1000 messages in {seconds:.2f} s; longest task "
            f"{probe['longest']:.0f} ms; longest frame gap {probe['gap']:.0f} ms; "
            f"{shown} shown"
        )
        assert shown == page.evaluate("wslabChat.limits.MAX_SHOWN")
        assert probe["longest"] < 200 * TIME_SCALE
        assert probe["gap"] < 200 * TIME_SCALE
    finally:
        server.stop()


# ---------------------------------------------------------------------------- the widget's view

#: A stand-in for anywidget's host: a model (get, set, on, off, send) and one view.
WIDGET_HOST = """async ([esm, css, state]) => {
    const style = document.createElement("style");
    style.textContent = css;
    document.head.append(style);
    const handlers = new Map();
    const fire = (name, ...args) => (handlers.get(name) || []).forEach((h) => h(...args));
    const model = {
        get: (key) => state[key],
        set: (key, value) => { state[key] = value; fire(`change:${key}`); },
        on: (name, handler) => handlers.set(name, [...(handlers.get(name) || []), handler]),
        off: (name, handler) =>
            handlers.set(name, (handlers.get(name) || []).filter((h) => h !== handler)),
        send: (content) => window.widgetSent.push(content),
        receive: (content) => fire("msg:custom", content, []),
    };
    window.widgetSent = [];
    window.widgetModel = model;
    const url = URL.createObjectURL(new Blob([esm], { type: "text/javascript" }));
    const module = await import(url);
    const el = document.createElement("div");
    document.body.append(el);
    module.default.render({ model, el });
}"""


def widget_state(**changes: Any) -> dict[str, Any]:
    """The traits of a ChatWidget's box, as the kernel would set them."""
    state: dict[str, Any] = {
        "config": page_config(),
        "status": {
            "state": "online",
            "retryIn": None,
            "url": "ws://127.0.0.1:1/chat",
            "id": "u-first-1111",
            "username": "alice",
            "lastClose": None,
            "error": None,
            "truncated": False,
            "wasPageReload": False,
            "notice": "",
        },
        "users": [],
        "messages": [],
        "cut": False,
        "presence": [],
        "pending": [],
        "log": [],
        "show_log": False,
    }
    state.update(changes)
    return state


def entry(message_id: int, user_id: str, username: str, message: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "id": user_id,
        "username": username,
        "message": message,
        "ts": "2026-01-01T12:34:56.000Z",
    }


@pytest.fixture
def widget_view(context: BrowserContext) -> Callable[..., Page]:
    """A factory: widget_view(state) -> a page showing the chat widget's view of it."""

    def open_view(state: dict[str, Any]) -> Page:
        page = context.new_page()
        page.route(
            "http://widget.test/",
            lambda route: route.fulfill(
                body="<!doctype html><body></body>", content_type="text/html"
            ),
        )
        page.goto("http://widget.test/")
        page.evaluate(WIDGET_HOST, [widget_esm(), widget_css(), state])
        return page

    return open_view


def set_trait(page: Page, name: str, value: Any) -> None:
    page.evaluate("([name, value]) => widgetModel.set(name, value)", [name, value])


def test_the_widget_and_the_page_show_the_same_lines(
    widget_view: Callable[..., Page], context: BrowserContext, server: ChatServer
) -> None:
    """Shared names with their tags, a bidi control as U+FFFD, markup as text, and
    "joined" / "left" lines: the widget shows what the page shows for the same chat."""
    first_tag, second_tag = tags_of(server, "u-first-1111", "u-second-2222")
    pages = []
    for user_id in ("u-first-1111", "u-second-2222"):
        page = context.new_page()
        identity = json.dumps(json.dumps({"id": user_id}))
        page.add_init_script(f"localStorage.setItem('wslab:identity:alice', {identity})")
        page.goto(f"{server.page_url}?username=alice")
        expect(page.locator("#status")).to_have_attribute("data-state", "online")
        pages.append(page)
    first, second = pages
    evil = context.new_page()
    evil.goto(f"{server.page_url}?username={quote(XSS)}")
    expect(first.locator("#users li")).to_have_count(3)
    send_message(second, "invoice_\u202egnp.exe")
    send_message(evil, XSS)
    expect(delivered(first)).to_have_text(["invoice_\ufffdgnp.exe", XSS])
    evil.close()
    expect(first.locator("#messages li.system")).to_have_count(3)  # the leave: after the grace

    users = first.evaluate("wslabChat.users")
    messages = first.evaluate("wslabChat.messages")
    evil_id = messages[1]["id"]
    state = widget_state(
        users=users,
        messages=messages,
        presence=[
            {"kind": "joined", "id": "u-second-2222", "username": "alice", "after": None},
            {"kind": "joined", "id": evil_id, "username": XSS, "after": None},
            {"kind": "disconnected", "id": evil_id, "username": XSS, "after": 2},
        ],
    )
    widget = widget_view(state)

    def lines(page: Page, selector: str) -> list[str]:
        found: list[str] = page.locator(selector).all_inner_texts()
        return [" ".join(text.split()) for text in found]

    page_users = lines(first, "#users li")
    assert page_users == [f"alice #{first_tag} (you)", f"alice #{second_tag}"]
    assert lines(widget, ".wslab-users li") == page_users
    shown = "li[data-message-id] .author, li[data-message-id] .text, li.system"
    assert lines(widget, f".wslab-messages :is({shown})") == lines(first, f"#messages :is({shown})")
    assert lines(widget, ".wslab-messages li.system") == [
        f"alice #{second_tag} joined",
        f"{XSS} joined",
        f"{XSS} left",
    ]
    assert widget.locator(".wslab-chat img").count() == 0 and first.locator("img").count() == 0


def test_the_widget_view_renders_incrementally(widget_view: Callable[..., Page]) -> None:
    """A new message adds one item: the items already shown are the same DOM nodes; a
    presence line goes after the message it came after; pending items come last."""
    widget = widget_view(widget_state(messages=[entry(1, "b", "bob", "one")]))
    widget.evaluate("document.querySelector('li[data-message-id=\"1\"]').marked = true")
    set_trait(widget, "messages", [entry(1, "b", "bob", "one"), entry(2, "b", "bob", "two")])
    set_trait(widget, "presence", [{"kind": "joined", "id": "c", "username": "carol", "after": 1}])
    set_trait(widget, "pending", [{"clientMessageId": "c1", "message": "mine"}])
    items = widget.locator(".wslab-messages > li")
    expect(items).to_have_count(4)
    texts = [" ".join(t.split()) for t in items.all_inner_texts()]
    assert texts[1:] == ["carol joined", texts[2], "--:-- alice mine (pending)"]
    assert texts[2].endswith("bob two") and texts[0].endswith("bob one")
    assert widget.evaluate("document.querySelector('li[data-message-id=\"1\"]').marked") is True
    set_trait(widget, "pending", [])
    expect(items).to_have_count(3)


def test_the_widget_status_says_why_and_offline_disables_the_box(
    widget_view: Callable[..., Page],
) -> None:
    """Reconnecting counts down and names the last close code with its meaning; the
    truncated notice shows; offline for good disables the text box and Send."""
    status = widget_state()["status"]
    reconnecting = {
        **status,
        "state": "reconnecting",
        "retryIn": 30.0,
        "lastClose": {"code": 1001, "reason": ""},
        "truncated": True,
    }
    widget = widget_view(widget_state(status=reconnecting))
    badge = widget.locator(".wslab-badge")
    expect(badge).to_have_attribute("data-state", "reconnecting")
    expect(badge).to_contain_text("reconnecting in 2")
    meaning = page_config()["policy"]["closeMeanings"]["1001"]  # type: ignore[index]
    expect(widget.locator(".wslab-detail")).to_have_text(f"last close 1001 ({meaning})")
    expect(widget.locator(".wslab-truncated")).to_have_text(
        "some earlier messages are no longer available"
    )
    expect(widget.locator(".wslab-input")).to_be_enabled()
    set_trait(widget, "status", {**reconnecting, "state": "offline", "notice": "not sent: offline"})
    expect(widget.locator(".wslab-input")).to_be_disabled()
    expect(widget.locator(".wslab-send")).to_be_disabled()
    expect(widget.locator(".wslab-notice")).to_have_text("not sent: offline")


def test_the_widget_sends_the_text_in_the_box_and_clears_it_once_taken(
    widget_view: Callable[..., Page],
) -> None:
    widget = widget_view(widget_state())
    box = widget.locator(".wslab-input")
    box.fill("from the widget")
    box.press("Enter")
    assert widget.evaluate("widgetSent") == [{"kind": "send", "text": "from the widget", "n": 1}]
    expect(box).to_have_value("from the widget")  # not yet taken
    widget.evaluate("widgetModel.receive({ kind: 'sent', n: 1, ok: true })")
    expect(box).to_have_value("")
    box.fill("x" * 2001)
    widget.locator(".wslab-send").click()
    widget.evaluate("widgetModel.receive({ kind: 'sent', n: 2, ok: false })")
    expect(box).to_have_value("x" * 2001)  # refused: the text stays to be fixed
    box.fill("   ")
    box.press("Enter")
    assert len(widget.evaluate("widgetSent")) == 2  # blank: nothing sent

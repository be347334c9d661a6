"""ChatWidget against a real ChatServer and ChatClient, without a browser.

Each test runs one asyncio loop (as a kernel does), binds a server to port 0,
and waits on conditions with timeouts (scaled by WSLAB_TIME_SCALE), never on
fixed sleeps. What a browser would do to the widget (type, press Enter, click
Send, answer the flush) is played by `FrontEnd`, through the widget's comm.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from websockets.asyncio.server import serve

import wslab.lab.lesson
from tests.conftest import TIME_SCALE
from wslab import ChatClient, ChatServer, RetryPolicy
from wslab.lab.widget import ChatWidget, chat, shared_server, stop_shared_server

UNIT = TIME_SCALE  # one time unit, in seconds
TIMEOUT = 10 * UNIT  # bounds a failure; conditions normally hold in milliseconds
GRACE = 0.3 * UNIT
FAST_RETRY = RetryPolicy(initial=0.05, cap=0.2, min_uptime=0.0)
XSS = "<img src=x onerror=alert(1)>"


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one test body on a fresh loop, like a kernel's, with an overall bound."""

    async def bounded() -> None:
        await asyncio.wait_for(main(), 6 * TIMEOUT)

    asyncio.run(bounded())


@pytest.fixture(autouse=True)
def forget_widgets() -> Iterator[None]:
    """Each test starts with an empty identity registry, as a fresh kernel does."""
    yield
    wslab.lab.lesson.registry.clear()


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(grace=GRACE) as server:
        yield server


class Item:
    def __init__(self, attrs: dict[str, str]) -> None:
        self.attrs = attrs
        self.text = ""  # all of the item's text
        self.body = ""  # the text of its <span class="text">: a message's own text


class _Items(HTMLParser):
    """Collects the <li> elements of a rendered fragment: attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[Item] = []
        self._in_item = False
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "li":
            self.items.append(Item(attributes))
            self._in_item = True
        elif tag == "span" and attributes.get("class") == "text":
            self._in_body = True
        elif tag in ("img", "script"):
            raise AssertionError(f"a user string became markup: <{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._in_item = False
        elif tag == "span":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_item:
            self.items[-1].text += data
            if self._in_body:
                self.items[-1].body += data


def items(fragment: str) -> list[Item]:
    parser = _Items()
    parser.feed(fragment)
    return parser.items


def message_texts(widget: ChatWidget) -> list[str]:
    """The texts of the delivered messages the widget shows, in order."""
    return [i.body for i in items(widget.messages_html.value) if "data-message-id" in i.attrs]


def pending_texts(widget: ChatWidget) -> list[str]:
    return [
        i.body for i in items(widget.messages_html.value) if "pending" in i.attrs.get("class", "")
    ]


def system_lines(widget: ChatWidget) -> list[str]:
    """The joins and leaves the message list shows, in order."""
    return [
        i.text.strip()
        for i in items(widget.messages_html.value)
        if "wslab-system" in i.attrs.get("class", "")
    ]


def user_names(widget: ChatWidget) -> list[str]:
    return [item.text for item in items(widget.users_html.value)]


def badge_state(widget: ChatWidget) -> str:
    marker = 'data-state="'
    value: str = widget.status_html.value
    start = value.index(marker) + len(marker)
    return value[start : value.index('"', start)]


class FrontEnd:
    """What the browser's widget views send to the kernel, through the text box's comm."""

    def __init__(self, widget: ChatWidget) -> None:
        self.widget = widget

    def _receive(self, data: dict[str, Any]) -> None:
        self.widget.text.comm.handle_msg({"content": {"data": data}, "buffers": []})

    def sync(self, **state: Any) -> None:
        """A state update from the text view (a keystroke's value, the link's reply)."""
        self._receive({"method": "update", "state": state, "buffer_paths": []})

    def press_enter(self) -> None:
        self._receive({"method": "custom", "content": {"event": "submit"}})

    def click_send(self) -> None:
        button = self.widget.send_button
        button.comm.handle_msg(
            {
                "content": {"data": {"method": "custom", "content": {"event": "click"}}},
                "buffers": [],
            }
        )

    def answer_flush(self, **state: Any) -> None:
        """The jsdlink copying flush_request to flush_reply, behind pending updates."""
        self.sync(flush_reply=self.widget.text.flush_request, **state)


# ---------------------------------------------------------------------- rendering


def test_widget_shows_status_users_and_messages_after_real_events(server: ChatServer) -> None:
    """Online badge, one user entry per id with "(you)", and every message in order,
    including those of another user; a departure removes that user."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect(TIMEOUT)
        client = widget.client
        assert badge_state(widget) == "online"
        assert user_names(widget) == ["alice (you)"]
        assert message_texts(widget) == []

        bob = await ChatClient(server.url, "bob").connect(TIMEOUT)
        await client.wait_for(lambda c: len(c.users) == 2, TIMEOUT)
        assert user_names(widget) == ["alice (you)", "bob"]
        second_tab = await ChatClient(server.url, "bob", id=bob.id, token=bob.token).connect()
        assert user_names(widget) == ["alice (you)", "bob"]  # two tabs, one user

        await bob.send_message("hi alice")
        assert widget.send("hi bob")
        await client.wait_for(lambda c: len(c.messages) == 2 and not c.pending, TIMEOUT)
        assert message_texts(widget) == ["hi alice", "hi bob"]
        shown = items(widget.messages_html.value)
        ids = [int(i.attrs["data-message-id"]) for i in shown if "data-message-id" in i.attrs]
        assert ids == sorted(ids)
        # Bob's arrival is a system line before the conversation; the second tab is not.
        assert system_lines(widget) == ["bob joined"]

        await second_tab.close()
        await bob.close()
        await client.wait_for(lambda c: len(c.users) == 1, TIMEOUT)  # after the grace
        assert user_names(widget) == ["alice (you)"]
        assert system_lines(widget) == ["bob joined", "bob left"]
        texts = [i.text.strip() for i in items(widget.messages_html.value)]
        assert texts[-1] == "bob left" and texts[0] == "bob joined"
        await widget.aclose()
        assert badge_state(widget) == "offline"
        assert "last close: 1000 (normal closure" in widget.status_html.value

    run(main)


def test_user_strings_are_escaped_before_they_reach_html(server: ChatServer) -> None:
    """A username, a message and a raw frame holding <img onerror> show as text."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice"), show_log=True).connect()
        evil = await ChatClient(server.url, XSS).connect(TIMEOUT)
        await evil.send_message(XSS)
        await widget.client.wait_for_message(XSS, TIMEOUT)

        rendered = [
            widget.status_html.value,
            widget.users_html.value,
            widget.messages_html.value,
            widget.log_html.value,
        ]
        for fragment in rendered:
            assert "<img" not in fragment
            items(fragment)  # raises if any user string became a tag
        assert message_texts(widget) == [XSS]
        assert user_names(widget) == ["alice (you)", XSS]
        assert "&lt;img src=x onerror=alert(1)&gt;" in widget.log_html.value
        await evil.close()
        await widget.aclose()

    run(main)


def test_max_messages_keeps_only_the_newest(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice"), max_messages=3).connect()
        for n in range(5):
            widget.send(f"message {n}")
        await widget.client.wait_for(lambda c: len(c.messages) == 5, TIMEOUT)
        assert message_texts(widget) == ["message 2", "message 3", "message 4"]
        await widget.aclose()

    run(main)


def test_raw_event_log_shows_open_messages_and_the_close_code(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice"), show_log=True).connect()
        assert "open" in widget.log_html.value
        assert "&quot;event&quot;:&quot;connected&quot;" in widget.log_html.value
        await widget.aclose(1000, "bye now")
        assert "close code=1000 reason=&#x27;bye now&#x27;" in widget.log_html.value
        hidden = ChatWidget(ChatClient(server.url, "bob"))
        assert hidden.log_html.layout.display == "none"

    run(main)


# ---------------------------------------------------------------------- sending


def test_enter_sends_the_text_the_learner_sees_not_the_stale_one(server: ChatServer) -> None:
    """The browser's Enter overtakes the last value update; the widget waits for the
    flush, which arrives behind it, and sends the full text, then clears the box."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        browser = FrontEnd(widget)
        browser.sync(value="from the widge")  # the last update is still held back...
        browser.press_enter()  # ...and Enter overtakes it
        assert widget.text.flush_request == 1
        assert widget.client.pending == []  # nothing sent before the flush came back
        browser.answer_flush(value="from the widget")  # the held update, with the reply
        await widget.client.wait_for_message("from the widget", TIMEOUT)
        assert widget.client.texts() == ["from the widget"]
        assert widget.text.value == ""

        browser.sync(value="clicked")
        browser.click_send()
        browser.answer_flush()
        browser.answer_flush()  # a second browser window answering the same flush
        await widget.client.wait_for(lambda c: c.texts()[-1:] == ["clicked"], TIMEOUT)
        assert [m["message"] for m in server.history] == ["from the widget", "clicked"]

        browser.sync(value="   ")
        browser.press_enter()
        browser.answer_flush()
        assert widget.client.pending == [] and widget.text.value == "   "  # blank: not sent
        await widget.aclose()

    run(main)


def test_send_queues_while_reconnecting_and_delivers_once(server: ChatServer) -> None:
    """While the server is down the box stays usable: messages show as pending, then
    are delivered once after the reconnect, in order."""

    async def main() -> None:
        client = ChatClient(server.url, "alice", policy=FAST_RETRY)
        widget = await ChatWidget(client).connect()
        await server.aclose()  # a server restart: clients see 1001 and retry
        await client.wait_for(lambda c: c.status == "reconnecting", TIMEOUT)
        assert badge_state(widget) == "reconnecting"
        assert "reconnecting in" in widget.status_html.value
        assert "last close: 1001 (going away" in widget.status_html.value
        assert not widget.text.disabled and not widget.send_button.disabled

        assert widget.send("typed while offline")
        assert widget.send("and another")
        await client.wait_for(lambda c: len(c.pending) == 2, TIMEOUT)
        assert pending_texts(widget) == ["typed while offline", "and another"]
        assert message_texts(widget) == []

        server.start()  # the same object: same port, same room
        await client.wait_for(lambda c: c.online and not c.pending and len(c.messages) == 2)
        assert message_texts(widget) == ["typed while offline", "and another"]
        assert pending_texts(widget) == []
        assert [m["message"] for m in server.history] == ["typed while offline", "and another"]
        await widget.aclose()

    run(main)


def test_offline_for_good_disables_the_box_and_refuses_to_send(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        await widget.aclose()
        assert badge_state(widget) == "offline"
        assert widget.text.disabled and widget.send_button.disabled
        assert widget.send("anyone?") is False
        assert "not sent: offline" in widget.status_html.value
        assert widget.client.pending == []

    run(main)


def test_send_refuses_blank_and_overlong_text(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        assert widget.send("") is False
        assert widget.send(" \t ") is False
        assert widget.send("x" * 2001) is False
        assert "2001 characters, the limit is 2000" in widget.status_html.value
        assert widget.send("x" * 2000) is True
        await widget.client.wait_for(lambda c: len(c.messages) == 1, TIMEOUT)
        assert "not sent" not in widget.status_html.value
        await widget.aclose()

    run(main)


# ---------------------------------------------------------------------- identity


def test_rerun_comes_back_as_the_same_user_and_others_see_no_leave_or_join(
    server: ChatServer,
) -> None:
    """A new widget for the same server and username closes the old one with 1001 and
    reconnects with its id and token: a reload within the grace for everyone else."""

    async def main() -> None:
        first = await ChatWidget(ChatClient(server.url, "alice")).connect()
        bob = await ChatClient(server.url, "bob").connect()
        carol = await ChatClient(server.url, "carol").connect()
        await bob.wait_for(lambda b: len(b.users) == 3, TIMEOUT)
        seen: list[tuple[str, str]] = []
        bob.on_joined = lambda e: seen.append(("joined", e.id))
        bob.on_disconnected = lambda e: seen.append(("disconnected", e.id))

        again = ChatWidget(ChatClient(server.url, "alice"))  # the re-run cell
        assert (again.client.id, again.client.token) == (first.client.id, first.client.token)
        await again.connect(TIMEOUT)
        assert first.client.last_close is not None and first.client.last_close[0] == 1001
        assert first.client.status == "offline" and badge_state(first) == "offline"
        assert "replaced by a newer widget" in first.status_html.value
        assert again.client.was_page_reload is True
        assert "the others saw no leave and no join" in again.status_html.value
        assert user_names(again) == ["alice (you)", "bob", "carol"]

        # Carol leaves after alice's reload began: once bob hears of it, alice's
        # grace (which started earlier) has run out too, had she not come back.
        await carol.close()
        await bob.wait_for(lambda b: ("disconnected", carol.id) in seen, TIMEOUT)
        assert seen == [("disconnected", carol.id)]
        assert [u["id"] for u in server.users] == [first.client.id, bob.id]
        await bob.close()
        await again.aclose()

    run(main)


def test_rerun_for_another_username_or_server_is_another_user(server: ChatServer) -> None:
    async def main() -> None:
        alice = await ChatWidget(ChatClient(server.url, "alice")).connect()
        bob = await ChatWidget(ChatClient(server.url, "bob")).connect()
        assert bob.client.id != alice.client.id
        assert alice.client.online  # not replaced
        with ChatServer() as other:
            elsewhere = await ChatWidget(ChatClient(other.url, "alice")).connect()
            assert elsewhere.client.id != alice.client.id
            await elsewhere.aclose()
        explicit = ChatWidget(ChatClient(server.url, "alice", id="a-1"), reuse_identity=False)
        assert explicit.client.id == "a-1"
        await explicit.connect()
        assert alice.client.status == "offline"  # still replaced, with its own id kept
        for widget in (bob, explicit):
            await widget.aclose()

    run(main)


def test_chat_uses_the_shared_server_and_is_safe_to_rerun(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> None:
        first = chat(username="learner")
        server = shared_server()
        assert first.client.url == server.url
        assert first.client.features == ("presence",)  # batched joins and leaves
        await first.client.wait_for(lambda c: c.online, TIMEOUT)
        again = chat(username="learner", show_log=True)
        await again.client.wait_for(lambda c: c.online, TIMEOUT)
        assert again.client.id == first.client.id and again.client.was_page_reload
        assert again.show_log
        assert server.users == [{"id": again.client.id, "username": "learner"}]
        await stop_shared_server()
        assert not server.running
        assert again.client.status == "offline"
        await stop_shared_server()  # safe twice

    run(main)
    assert "ChatWidget(username='learner'" in capsys.readouterr().out  # display() outside IPython


# ---------------------------------------------------------------------- threads, display


def test_a_change_reported_on_another_thread_is_rendered_on_the_loop(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        loop_thread = threading.get_ident()
        rendered_on: list[int] = []
        rendered = asyncio.Event()
        original = widget.refresh

        def recording_refresh() -> None:
            rendered_on.append(threading.get_ident())
            original()
            rendered.set()

        widget.refresh = recording_refresh  # type: ignore[method-assign]
        thread = threading.Thread(target=widget.client.on_change, args=(widget.client,))
        thread.start()
        thread.join()
        await asyncio.wait_for(rendered.wait(), TIMEOUT)
        assert rendered_on == [loop_thread]
        await widget.aclose()

    run(main)


def test_repr_and_mime_bundle_are_stable_for_stored_outputs(server: ChatServer) -> None:
    async def main() -> None:
        widget = ChatWidget(ChatClient(server.url, "alice"))
        assert repr(widget) == f"ChatWidget(username='alice', url='{server.url}')"
        bundle = widget._repr_mimebundle_()
        assert bundle["text/plain"] == (
            f"[chat widget: 'alice' on {server.url}; run this cell to open it live]"
        )
        view = bundle["application/vnd.jupyter.widget-view+json"]
        assert view["model_id"] == widget.box.model_id
        assert badge_state(widget) == "idle"  # not started by the constructor
        with pytest.raises(ValueError):
            ChatWidget(ChatClient(server.url, "bob"), max_messages=0)

    run(main)


def test_shared_names_get_the_id_suffix_and_bidi_controls_are_neutralized(
    server: ChatServer,
) -> None:
    """Two present users called "alice" show as "alice #abcd" with their ids' last four
    characters, in the user list and on their messages; a message with U+202E shows
    the control as U+FFFD instead of reversing the text."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice", id="u-first-1111")).connect(
            TIMEOUT
        )
        twin = await ChatClient(server.url, "alice", id="u-second-2222").connect(TIMEOUT)
        await widget.client.wait_for(lambda c: len(c.users) == 2, TIMEOUT)
        assert user_names(widget) == ["alice #1111 (you)", "alice #2222"]
        await twin.send_message("invoice_\u202egnp.exe")
        await widget.client.wait_for(lambda c: len(c.messages) == 1, TIMEOUT)
        (item,) = [i for i in items(widget.messages_html.value) if "data-message-id" in i.attrs]
        assert item.body == "invoice_\ufffdgnp.exe"
        assert "alice #2222" in item.text
        assert "\u202e" not in widget.messages_html.value
        await twin.close()
        await widget.client.wait_for(lambda c: len(c.users) == 1, TIMEOUT)
        assert user_names(widget) == ["alice (you)"]  # no clash left: no suffix
        await widget.aclose()

    run(main)


def test_a_truncated_recovery_is_shown_as_a_notice() -> None:
    """``connected`` with ``truncated: true`` (missed messages are gone) shows
    "some earlier messages are no longer available" under the badge."""

    async def truncating(socket: Any) -> None:
        hello = json.loads(await socket.recv())
        await socket.send(
            json.dumps(
                {
                    "event": "connected",
                    "roomId": "r",
                    "id": hello["id"],
                    "username": hello["username"],
                    "token": "t",
                    "connectedUserList": [{"id": hello["id"], "username": hello["username"]}],
                    "messagesList": [],
                    "wasPageReload": False,
                    "truncated": True,
                }
            )
        )
        await socket.wait_closed()

    async def main() -> None:
        async with serve(truncating, "127.0.0.1", 0) as fake:
            port = fake.sockets[0].getsockname()[1]
            widget = await ChatWidget(ChatClient(f"ws://127.0.0.1:{port}/chat", "ann")).connect(
                TIMEOUT
            )
            assert widget.client.truncated
            assert "some earlier messages are no longer available" in widget.status_html.value
            await widget.aclose()

    run(main)

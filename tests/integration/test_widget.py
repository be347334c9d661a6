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
from typing import Any

import pytest
from websockets.asyncio.server import serve

import wslab.lab.lesson
from tests.conftest import TIME_SCALE, untagged
from wslab import ChatClient, ChatServer, RetryPolicy
from wslab.frontend import page_config
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


def message_texts(widget: ChatWidget) -> list[str]:
    """The texts of the delivered messages the widget shows, in order."""
    return [entry["message"] for entry in widget.box.messages]


def pending_texts(widget: ChatWidget) -> list[str]:
    return [item["message"] for item in widget.box.pending]


def system_lines(widget: ChatWidget) -> list[tuple[str, str]]:
    """The joins and leaves the message list shows, in order: (kind, username)."""
    return [(line["kind"], line["username"]) for line in widget.box.presence]


def user_names(widget: ChatWidget) -> list[str]:
    """The user list as shown, yourself marked (the suffix rule is tested in chromium)."""
    me = widget.box.status["id"]
    return [u["username"] + (" (you)" if u["id"] == me else "") for u in widget.box.users]


def badge_state(widget: ChatWidget) -> str:
    state: str = widget.box.status["state"]
    return state


def last_close(widget: ChatWidget) -> int | None:
    close = widget.box.status["lastClose"]
    return None if close is None else int(close["code"])


def notice(widget: ChatWidget) -> str:
    text: str = widget.box.status["notice"]
    return text


class FrontEnd:
    """What the widget's front end sends to the kernel, through the widget's comm."""

    def __init__(self, widget: ChatWidget) -> None:
        self.widget = widget
        self.replies: list[dict[str, Any]] = []
        self._sent = 0
        send = widget.box.send

        def record(content: dict[str, Any], buffers: Any = None) -> None:
            self.replies.append(content)
            send(content, buffers)

        widget.box.send = record  # type: ignore[method-assign]

    def press_enter(self, text: str) -> dict[str, Any]:
        """Enter (or Send) with ``text`` in the box: the page sends that text; the reply."""
        self._sent += 1
        content = {"kind": "send", "text": text, "n": self._sent}
        self.widget.box.comm.handle_msg(
            {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
        )
        return self.replies[-1]


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
        ids = [entry["messageId"] for entry in widget.box.messages]
        assert ids == sorted(ids)
        # Bob's arrival is a system line before the conversation; the second tab is not.
        assert system_lines(widget) == [("joined", "bob")]
        assert widget.box.presence[0]["after"] is None

        await second_tab.close()
        await bob.close()
        await client.wait_for(lambda c: len(c.users) == 1, TIMEOUT)  # after the grace
        assert user_names(widget) == ["alice (you)"]
        assert system_lines(widget) == [("joined", "bob"), ("disconnected", "bob")]
        assert widget.box.presence[1]["after"] == ids[-1]  # after the last message
        await widget.aclose()
        assert badge_state(widget) == "offline"
        assert last_close(widget) == 1000

    run(main)


def test_user_strings_reach_the_front_end_as_data(server: ChatServer) -> None:
    """A username, a message and a raw frame holding <img onerror> are kept as the
    text they are: the front end sets them with textContent (checked in chromium,
    tests/e2e/browser/test_page_rules.py), so nothing is escaped twice or dropped."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice"), show_log=True).connect()
        evil = await ChatClient(server.url, XSS).connect(TIMEOUT)
        await evil.send_message(XSS)
        await widget.client.wait_for_message(XSS, TIMEOUT)
        assert message_texts(widget) == [XSS]
        assert user_names(widget) == ["alice (you)", XSS]
        assert any(XSS in line for line in widget.box.log)
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
        assert widget.box.show_log and widget.box.log[0] == "open"
        assert any('"event":"connected"' in line for line in widget.box.log)
        await widget.aclose(1000, "bye now")
        assert widget.box.log[-1] == "close code=1000 reason='bye now' wasClean=True"
        hidden = ChatWidget(ChatClient(server.url, "bob"))
        assert not hidden.box.show_log and hidden.box.log == []

    run(main)


# ---------------------------------------------------------------------- sending


def test_enter_sends_the_text_the_learner_sees_and_says_if_it_was_taken(
    server: ChatServer,
) -> None:
    """Enter and Send carry the box's text as the page holds it, in one message; the
    kernel answers whether it took it (the page clears the box only then)."""

    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        browser = FrontEnd(widget)
        assert browser.press_enter("from the widget") == {"kind": "sent", "n": 1, "ok": True}
        await widget.client.wait_for_message("from the widget", TIMEOUT)
        assert browser.press_enter("clicked")["ok"] is True
        await widget.client.wait_for(lambda c: c.texts()[-1:] == ["clicked"], TIMEOUT)
        assert [m["message"] for m in server.history] == ["from the widget", "clicked"]

        assert browser.press_enter("   ") == {"kind": "sent", "n": 3, "ok": False}  # blank
        widget.box.comm.handle_msg(  # not ours: ignored, no answer
            {"content": {"data": {"method": "custom", "content": {"x": 1}}}, "buffers": []}
        )
        assert len(browser.replies) == 3 and widget.client.pending == []
        await widget.aclose()
        assert browser.press_enter("too late")["ok"] is False
        assert "not sent: offline" in notice(widget)

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
        assert widget.box.status["retryIn"] is not None
        assert last_close(widget) == 1001

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
        assert widget.send("anyone?") is False
        assert "not sent: offline" in notice(widget)
        assert widget.client.pending == []

    run(main)


def test_send_refuses_blank_and_overlong_text(server: ChatServer) -> None:
    async def main() -> None:
        widget = await ChatWidget(ChatClient(server.url, "alice")).connect()
        assert widget.send("") is False
        assert widget.send(" \t ") is False
        assert widget.send("x" * 2001) is False
        assert "2001 characters, the limit is 2000" in notice(widget)
        assert widget.send("x" * 2000) is True
        await widget.client.wait_for(lambda c: len(c.messages) == 1, TIMEOUT)
        assert notice(widget) == ""
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
        assert "replaced by a newer widget" in notice(first)
        assert again.client.was_page_reload is True
        assert again.box.status["wasPageReload"] is True
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
        assert again.show_log and again.box.show_log
        assert untagged(server.users) == [{"id": again.client.id, "username": "learner"}]
        await stop_shared_server()
        assert not server.running
        assert again.client.status == "offline"
        await stop_shared_server()  # safe twice

    run(main)
    assert "ChatWidget(username='learner'" in capsys.readouterr().out  # display() outside IPython


def test_a_widget_made_by_chat_shows_joins_and_leaves(server: ChatServer) -> None:
    """chat() asks for batched presence; its widget still gets the "joined" and
    "left" lines (a presence event), placed among the messages, as the page shows them."""

    async def main() -> None:
        widget = chat(server.url, "alice")  # exactly as a lesson's cell makes it
        assert widget.client.features == ("presence",)
        await widget.client.wait_for(lambda c: c.online, TIMEOUT)
        bob = await ChatClient(server.url, "bob").connect(TIMEOUT)
        await widget.client.wait_for(lambda c: len(c.users) == 2, TIMEOUT)
        assert system_lines(widget) == [("joined", "bob")]
        await bob.send_message("bye")
        await widget.client.wait_for(lambda c: len(c.messages) == 1, TIMEOUT)
        await bob.close()
        await widget.client.wait_for(lambda c: len(c.users) == 1, TIMEOUT)  # after the grace
        assert system_lines(widget) == [("joined", "bob"), ("disconnected", "bob")]
        assert [line["after"] for line in widget.box.presence] == [
            None,
            widget.box.messages[0]["messageId"],
        ]
        await widget.aclose()

    run(main)


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
        assert widget.box.config == page_config()  # the close meanings, the display words
        with pytest.raises(ValueError):
            ChatWidget(ChatClient(server.url, "bob"), max_messages=0)

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
            assert widget.box.status["truncated"] is True
            await widget.aclose()

    run(main)

"""BrowserSocket's Python side, without a browser.

The front end's messages are fed to `handle_front_end_message` (what the widget's
message handler calls), so these tests check what the kernel keeps and answers;
`tests/e2e/browser/test_browser_socket_lab.py` runs the same object in JupyterLab
in a real chromium.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import wslab
import wslab.lab.widget
from wslab.lab.browser import CLOSED, CONNECTING, OPEN, BrowserSocket

UNIT = float(os.environ.get("WSLAB_TIME_SCALE", "1"))


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one test body on a fresh loop, as a kernel's, with an overall bound."""

    async def bounded() -> None:
        await asyncio.wait_for(main(), 20 * UNIT)

    asyncio.run(bounded())


def event(type: str, ready_state: int, **fields: Any) -> dict[str, Any]:
    return {"kind": "event", "type": type, "readyState": ready_state, "t": 0.01, **fields}


def test_front_end_events_become_dicts_in_order_with_the_ready_state() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        ws.handle_front_end_message({"kind": "hello", "readyState": CONNECTING}, [])
        ws.handle_front_end_message(event("open", OPEN), [])
        ws.handle_front_end_message(event("message", OPEN, data="hi <b>"), [])
        ws.handle_front_end_message(event("message", OPEN, binary=True), [memoryview(b"\x00\x01")])
        ws.handle_front_end_message(event("close", CLOSED, code=1005, reason="", wasClean=True), [])
        assert [e["type"] for e in ws.events] == ["open", "message", "message", "close"]
        assert ws.events[1]["data"] == "hi <b>"
        assert ws.events[2]["data"] == b"\x00\x01" and isinstance(ws.events[2]["data"], bytes)
        assert ws.events[3] == {
            "type": "close",
            "data": None,
            "code": 1005,
            "reason": "",
            "wasClean": True,
            "readyState": CLOSED,
            "t": 0.01,
        }
        assert ws.events[0]["code"] is None and ws.events[0]["wasClean"] is None
        assert ws.ready_state == CLOSED and ws.ready_state_name == "CLOSED"
        assert ws.summary() == [
            "open",
            "message 'hi <b>'",
            "message b'\\x00\\x01'",
            "close 1005 clean",
        ]

    run(main)


def test_wait_for_returns_each_event_of_a_type_once_in_order() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        waiting = asyncio.ensure_future(ws.wait_for("message", timeout=5 * UNIT))
        await asyncio.sleep(0)
        assert not waiting.done()
        ws.handle_front_end_message(event("open", OPEN), [])
        ws.handle_front_end_message(event("message", OPEN, data="one"), [])
        ws.handle_front_end_message(event("message", OPEN, data="two"), [])
        assert (await waiting)["data"] == "one"
        assert (await ws.wait_for("message"))["data"] == "two"
        assert (await ws.wait_for("open"))["type"] == "open"  # its own cursor
        with pytest.raises(TimeoutError, match=r"events so far: open, message 'one'"):
            await ws.wait_for("message", timeout=0.05)

    run(main)


def test_without_a_front_end_wait_for_says_to_open_jupyterlab_and_does_not_hang() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError, match="open this notebook in JupyterLab"):
            await ws.wait_for("open", timeout=0.2)
        assert loop.time() - started < 5 * UNIT

    run(main)


def test_send_and_close_become_commands_for_the_front_end() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        ws.send("text")
        ws.send(b"\x01\x02")
        ws.send(bytearray(b"\x03"))
        ws.close()
        ws.close(4000, "bye")
        assert ws.widget.commands == [
            {"op": "send", "data": "text"},
            {"op": "send", "data": b"\x01\x02"},
            {"op": "send", "data": b"\x03"},
            {"op": "close", "code": None, "reason": None},
            {"op": "close", "code": 4000, "reason": "bye"},
        ]

    run(main)


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (1001, None, "1000 or 3000-4999"),
        (2999, None, "1000 or 3000-4999"),
        (5000, None, "1000 or 3000-4999"),
        (None, "why", "a reason needs a code"),
        (1000, "é" * 62, "123 UTF-8 bytes"),
    ],
)
def test_close_refuses_what_a_browser_refuses(
    code: int | None, reason: str | None, message: str
) -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        with pytest.raises(ValueError, match=message):
            ws.close(code, reason)
        assert ws.widget.commands == []

    run(main)


def test_send_refuses_other_types_and_wait_for_unknown_events() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        with pytest.raises(TypeError, match="str or bytes"):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="one of open, message, error, close"):
            await ws.wait_for("opened")

    run(main)


def test_exceptions_from_the_browser_are_kept_and_wake_no_event_waiter() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        ws.handle_front_end_message(
            {"kind": "exception", "name": "InvalidStateError", "message": "Still in CONNECTING"},
            [],
        )
        ws.handle_front_end_message({"kind": "anywidget-command", "name": "x"}, [])
        assert ws.exceptions == ["InvalidStateError: Still in CONNECTING"]
        assert ws.events == [] and ws.front_end_seen
        with pytest.raises(TimeoutError, match="events so far: none"):
            await ws.wait_for("open", timeout=0.05)

    run(main)


def test_a_message_from_another_thread_is_applied_on_the_kernel_loop() -> None:
    async def main() -> None:
        ws = BrowserSocket("ws://127.0.0.1:1/chat")
        applied_on: list[int] = []
        original = ws.handle_front_end_message

        def spy(content: dict[str, Any], buffers: Any) -> None:
            applied_on.append(threading.get_ident())
            original(content, buffers)

        ws.handle_front_end_message = spy  # type: ignore[method-assign]
        thread = threading.Thread(target=ws._on_widget_message, args=(None, event("open", 1), []))
        thread.start()
        thread.join()
        assert (await ws.wait_for("open", timeout=5 * UNIT))["type"] == "open"
        assert applied_on == [threading.get_ident()]

    run(main)


def test_no_url_means_the_shared_lesson_server_locally_and_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        try:
            local = BrowserSocket()
            server = wslab.lab.widget.shared_server()
            assert local.url == server.url == f"ws://127.0.0.1:{server.port}/chat"
            monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
            proxied = BrowserSocket()
            assert proxied.url == f"/user/ada/proxy/{server.port}/chat"
            assert proxied.widget.url == proxied.url  # the page resolves it, https -> wss
        finally:
            await wslab.lab.widget.stop_shared_server()

    run(main)


def test_it_is_exported_and_displays_as_an_anywidget() -> None:
    async def main() -> None:
        ws = wslab.BrowserSocket("ws://127.0.0.1:1/chat")
        data, _metadata = ws._repr_mimebundle_()
        assert data["text/plain"] == "BrowserSocket('ws://127.0.0.1:1/chat')"
        assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == ws.widget.model_id
        assert "export default" in ws.widget._esm

    run(main)

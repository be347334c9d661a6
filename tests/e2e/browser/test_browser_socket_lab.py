"""BrowserSocket live in JupyterLab: the page Lab runs in opens the socket, the kernel sees it.

A notebook without stored outputs (so no saved widget state can hide a bug) is
opened in a real `jupyter lab` in chromium and run with Run All Cells. Its cells
open a BrowserSocket on a ChatServer and one on an echo server, send text and
bytes, close without a code, and stop the server; the last cell prints what the
kernel saw. The test compares that with the log the widget shows in the page.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from .helpers import UNIT_MS, UNIT_S, wait_until
from .test_jupyterlab import Lab, free_port, open_and_run_all

# Lab, its kernels and chromium: each step has its own wait (up to 300 s for a Run All);
# the whole test gets a limit above their sum instead of the default 60 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600 * UNIT_S)]

NOTEBOOK = "browser_socket.ipynb"
CELL_TIMEOUT_S = 60  # a wait inside the kernel, while Lab is busy opening


def code(source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": secrets.token_hex(4),
        "metadata": {},
        "outputs": [],
        "source": source,
    }


def notebook(chat_port: int) -> dict[str, Any]:
    cells = [
        f"""import json
from websockets.asyncio.server import serve
from wslab import BrowserSocket, ChatServer

server = ChatServer(port={chat_port}, grace=0).start()
ws = BrowserSocket(server.url)
ws""",
        f"""print("open:", (await ws.wait_for("open", timeout={CELL_TIMEOUT_S}))["readyState"])
ws.send(json.dumps({{"event": "connecting", "id": "b1", "username": "Browser"}}))
connected = await ws.wait_for("message", timeout={CELL_TIMEOUT_S})
print("connected:", json.loads(connected["data"])["event"], [u["id"] for u in server.users])""",
        f"""ws.send(json.dumps({{"event": "writeMessage", "message": "<b>hi</b>",
                     "clientMessageId": "c1"}}))
written = json.loads((await ws.wait_for("message", timeout={CELL_TIMEOUT_S}))["data"])
print("written:", written["event"], written["message"]["message"])""",
        f"""ws.close()
closed = await ws.wait_for("close", timeout={CELL_TIMEOUT_S})
print("close:", closed["code"], closed["wasClean"], ws.ready_state_name)""",
        f"""async def echo(socket):
    async for data in socket:
        await socket.send(data)

echo_server = await serve(echo, "127.0.0.1", 0)
echo = BrowserSocket(f"ws://127.0.0.1:{{echo_server.sockets[0].getsockname()[1]}}")
display(echo)
await echo.wait_for("open", timeout={CELL_TIMEOUT_S})
echo.send(bytes(range(256)))
back = await echo.wait_for("message", timeout={CELL_TIMEOUT_S})
print("binary:", type(back["data"]).__name__, back["data"] == bytes(range(256)))
echo.close(1000, "done")
print("echo close:", (await echo.wait_for("close", timeout={CELL_TIMEOUT_S}))["code"])
echo_server.close()""",
        f"""leaver = BrowserSocket(server.url)
display(leaver)
await leaver.wait_for("open", timeout={CELL_TIMEOUT_S})
await server.aclose()
gone = await leaver.wait_for("close", timeout={CELL_TIMEOUT_S})
print("server stop:", gone["code"], gone["wasClean"], repr(gone["reason"]))""",
        """print("KERNEL", json.dumps({name: [e["type"] for e in s.events]
                            for name, s in [("ws", ws), ("echo", echo), ("leaver", leaver)]}))""",
    ]
    return {
        "cells": [code(source) for source in cells],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def output_of(page: Page, marker: str) -> str:
    output = page.locator(".jp-OutputArea-output").filter(has_text=marker).last
    expect(output).to_be_visible(timeout=120 * UNIT_MS)
    return output.inner_text()


def test_browser_socket_in_lab_reports_every_dom_event_to_the_kernel(
    lab: Lab, lab_context: BrowserContext
) -> None:
    """Open, send and receive, close() without a code (1005), binary data both ways,
    a server stop (1001); the kernel's events match the log shown in the page."""
    chat_port = free_port()
    (lab.root / NOTEBOOK).write_text(json.dumps(notebook(chat_port)))
    page = lab_context.new_page()
    open_and_run_all(page, lab, NOTEBOOK)

    kernel_line = output_of(page, "KERNEL")
    text = page.locator(".jp-NotebookPanel").inner_text()
    assert "open: 1" in text
    assert "connected: connected ['b1']" in text
    assert "written: messageWritten <b>hi</b>" in text
    assert "close: 1005 True CLOSED" in text
    assert "binary: bytes True" in text
    assert "echo close: 1000" in text
    assert "server stop: 1001 True 'server stopping'" in text
    assert "Error" not in text and "Traceback" not in text

    kernel = json.loads(kernel_line.split("KERNEL", 1)[1])
    assert kernel == {
        "ws": ["open", "message", "message", "close"],
        "echo": ["open", "message", "close"],
        "leaver": ["open", "close"],
    }
    # The page's log, widget by widget: every event the kernel has, plus what was sent.
    logs = page.locator(".wslab-browser-socket")
    expect(logs).to_have_count(3)
    wait_until(page, "document.querySelectorAll('.wslab-log-line').length >= 14")
    shown = [
        [
            t
            for t in log.locator(".wslab-log-line").evaluate_all(
                "els => els.map(e => e.dataset.type)"
            )
            if t in ("open", "message", "error", "close")
        ]
        for log in logs.all()
    ]
    assert shown == [kernel["ws"], kernel["echo"], kernel["leaver"]]
    # Escaped: the sent HTML shows as text, and no <b> element was made from it.
    first = logs.first
    expect(first.locator(".wslab-log-line").filter(has_text="<b>hi</b>")).to_have_count(2)
    assert first.locator("b").count() == 0
    expect(first.locator(".wslab-log-line[data-type='close']")).to_contain_text(
        re.compile(r"code=1005 wasClean=true")
    )

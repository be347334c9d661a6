"""The ChatWidget live in JupyterLab, driven in a real chromium as a learner would.

A real `jupyter lab` on loopback opens a notebook that has no stored outputs (so
no saved widget state can hide a rendering bug); Run All Cells starts a
ChatServer inside the kernel, on a port this test chose, and shows the widget.
Then the widget chats with the browser chat page of that server, both ways,
sending from the widget by clicking Send, by Enter right after fast typing, and
by Enter right after a paste: the text that arrives must be the text typed.

Every wait is a Playwright expectation or a polled condition with a timeout in
units of WSLAB_TIME_SCALE (see helpers.py); Lab and its kernels are stopped on
teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from .helpers import UNIT_MS, UNIT_S, delivered, send_message

# Lab, its kernels and chromium: each step has its own wait (up to 300 s for a Run All);
# the whole test gets a limit above their sum instead of the default 60 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600 * UNIT_S)]

REPO = pathlib.Path(__file__).resolve().parents[3]
NOTEBOOK = "chat_widget.ipynb"
LAB_START_S = 90 * UNIT_S  # Lab starts in ~2 s; a busy 2-core machine takes much longer
NOTEBOOK_OPEN_MS = 120 * UNIT_MS  # opening a notebook and starting its kernel: 5-20 s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def notebook(chat_port: int) -> dict[str, Any]:
    """The learner's notebook, without outputs: a server on `chat_port`, then chat()."""

    def code(source: str) -> dict[str, Any]:
        return {
            "cell_type": "code",
            "execution_count": None,
            "id": secrets.token_hex(4),
            "metadata": {},
            "outputs": [],
            "source": source,
        }

    return {
        "cells": [
            code(
                "from wslab import ChatServer\n"
                "from wslab.lab.widget import chat\n"
                f"server = ChatServer(port={chat_port}, grace=1.0).start()"
            ),
            # chat() displays the widget and returns it: it must still show once.
            code('chat(server.url, username="widget")'),
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@dataclass
class Lab:
    url: str
    token: str
    root: pathlib.Path
    process: subprocess.Popen[bytes]
    log: pathlib.Path

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10 * UNIT_S) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop_kernels(self) -> None:
        """End every notebook session and kernel; one already gone is fine."""
        for kind in ("sessions", "kernels"):
            for item in self.api("GET", f"/api/{kind}"):
                try:
                    self.api("DELETE", f"/api/{kind}/{item['id']}")
                except urllib.error.HTTPError as error:
                    if error.code != 404:
                        raise


def write_lab_settings(settings: pathlib.Path) -> None:
    # No "get notified about Jupyter news?" toast over the page, no update check.
    plugin = settings / "@jupyterlab" / "apputils-extension"
    plugin.mkdir(parents=True)
    (plugin / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


def write_kernelspec(data_dir: pathlib.Path) -> None:
    # The kernel runs this test's Python (with wslab importable), whatever `python` is on PATH.
    spec = data_dir / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3",
                "language": "python",
            }
        )
    )


@contextlib.contextmanager
def running_lab(base: pathlib.Path) -> Iterator[Lab]:
    """A `jupyter lab` on loopback with a token, isolated settings and runtime dirs,
    in ``base``; stopped (its kernels first) on exit."""
    root = base / "notebooks"
    root.mkdir()
    write_lab_settings(base / "settings")
    write_kernelspec(base / "data")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTER_PATH=str(base / "data"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    log = base / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                # window.jupyterapp: the tests read Lab's notebook model, which holds
                # every cell, drawn or not.
                "--LabApp.expose_app_in_browser=True",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        wait_until_serving(lab)
        yield lab
    finally:
        try:
            if process.poll() is None:
                lab.stop_kernels()
        finally:
            process.terminate()
            try:
                process.wait(timeout=20 * UNIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_serving(lab: Lab) -> None:
    deadline = time.monotonic() + LAB_START_S
    while True:
        if lab.process.poll() is not None:
            pytest.fail(f"jupyter lab exited ({lab.process.returncode}):\n{lab.log_tail()}")
        try:
            lab.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer in {LAB_START_S:.0f} s:\n{lab.log_tail()}")
        time.sleep(0.2)  # a poll interval, not a wait for an outcome


def open_and_run_all(page: Page, lab: Lab, name: str) -> None:
    """Open a notebook as a learner would, wait for its kernel, then Run > Run All Cells."""
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
    # The status bar's "Python 3 | Idle": the kernel is started and idle. (The
    # toolbar's execution indicator already says idle before any kernel exists.)
    kernel_status = page.locator(f'#jp-main-statusbar [title="Change kernel for {name}"]')
    expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=NOTEBOOK_OPEN_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()


def widget_messages(widget: Locator) -> Locator:
    """The texts of the messages the widget shows as delivered (pending ones excluded)."""
    return widget.locator(".wslab-messages li[data-message-id] .text")


def test_widget_in_lab_chats_with_the_browser_page(lab: Lab, lab_context: BrowserContext) -> None:
    """The widget renders live in Lab; a message from the browser page shows in it, and
    messages sent from it (Send clicked, Enter after fast typing, Enter after a paste)
    arrive on the page exactly as typed."""
    chat_port = free_port()
    (lab.root / NOTEBOOK).write_text(json.dumps(notebook(chat_port)))
    lab_page = lab_context.new_page()
    open_and_run_all(lab_page, lab, NOTEBOOK)

    widget = lab_page.locator(".wslab-chat")
    expect(widget.locator(".wslab-badge")).to_have_attribute(
        "data-state", "online", timeout=60 * UNIT_MS
    )
    expect(widget).to_have_count(1)  # shown once, though chat() also returned it
    expect(lab_page.get_by_text("Loading widget")).to_have_count(0)
    expect(lab_page.get_by_text("Error displaying widget")).to_have_count(0)

    chat_page = lab_context.new_page()
    chat_page.goto(f"http://127.0.0.1:{chat_port}/?username=page")
    expect(chat_page.locator("#status")).to_have_attribute("data-state", "online")
    expect(widget.locator(".wslab-users li")).to_have_text(["widget (you)", "page"])
    # chat() asks for batched presence: the join still shows as a line, as on the page.
    expect(widget.locator(".wslab-messages li.system")).to_have_text(["page joined"])

    conversation: list[str] = []

    def both_show(text: str) -> None:
        conversation.append(text)
        expect(delivered(chat_page)).to_have_text(conversation)
        expect(widget_messages(widget)).to_have_text(conversation)

    send_message(chat_page, "Hello from the page <b>not bold</b>")
    both_show("Hello from the page <b>not bold</b>")

    box = widget.locator("input.wslab-input")
    send = widget.locator("button.wslab-send")

    box.click()
    box.press_sequentially("Typed, then the Send button")
    send.click()
    both_show("Typed, then the Send button")
    expect(box).to_have_value("")

    fast = "from the widget, typed fast and sent with Enter at once"
    box.press_sequentially(fast)  # no delay between keys
    box.press("Enter")
    both_show(fast)
    expect(box).to_have_value("")

    pasted = "Pasted: the quick brown fox jumps over the lazy dog (0123456789)"
    lab_page.evaluate("(text) => navigator.clipboard.writeText(text)", pasted)
    box.focus()
    lab_page.keyboard.press("Control+V")
    box.press("Enter")
    both_show(pasted)
    expect(box).to_have_value("")
    expect(widget.locator("li.pending")).to_have_count(0)
    # The page's own rules drew the widget: the same lines in the same order.
    shown = ".author, .text"
    expect(widget.locator(f".wslab-messages li[data-message-id] :is({shown})")).to_have_text(
        chat_page.locator(f"#messages li[data-message-id] :is({shown})").all_inner_texts()
    )

    if os.environ.get("WSLAB_SCREENSHOTS") == "1":
        images = REPO / "docs" / "images"
        images.mkdir(parents=True, exist_ok=True)
        widget.screenshot(path=str(images / "widget.png"))

    chat_page.close()  # the page leaves: after the server's grace, a "left" line
    expect(widget.locator(".wslab-messages li.system")).to_have_text(["page joined", "page left"])
    expect(widget.locator(".wslab-users li")).to_have_text(["widget (you)"])

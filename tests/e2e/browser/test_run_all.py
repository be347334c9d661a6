"""Run All on the lessons that share a chat server leaves the chat up and its links live.

A learner opens lesson 00 or 08 (the student notebook, outputs stripped so that no
stored widget state can hide anything) in a real JupyterLab and picks Run > Run
All Cells. Run All must reach the last cell (the check cell a learner has not
solved yet fails, and Lab goes on past it because it is tagged
``raises-exception``), and at the end the chat must still be running: the widget
online, and the chat page link the notebook printed opens a page that goes online
too.
"""

from __future__ import annotations

import copy
import json
import re
import time
import urllib.error

import nbformat
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from .helpers import UNIT_MS, UNIT_S
from .test_jupyterlab import REPO, Lab, open_and_run_all

# Lab, its kernels and chromium: each step has its own wait (up to 300 s for a Run All);
# the whole test gets a limit above their sum instead of the default 60 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600 * UNIT_S)]

LINK = re.compile(r"http://127\.0\.0\.1:\d+/\?username=\w+")


def stripped_copy(lab: Lab, name: str) -> str:
    """Copy the student notebook `name` into Lab's folder without outputs."""
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    target = f"run_all_{name}"
    (lab.root / target).write_text(json.dumps(nb))
    return target


def printed_links(page: Page, lab: Lab, notebook: str) -> list[str]:
    """Save the notebook from Lab (Ctrl+S); the chat page links in its stream outputs."""
    page.locator(".jp-Notebook").first.click()
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30 * UNIT_S
    while True:
        try:
            saved = lab.api("GET", f"/api/contents/{notebook}")["content"]
        except urllib.error.HTTPError:  # caught mid-save: not a notebook yet
            saved = {"cells": []}
        texts = [
            "".join(output.get("text", ""))
            for cell in saved["cells"]
            for output in cell.get("outputs", [])
        ]
        links = [m.group(0) for text in texts for m in LINK.finditer(text)]
        if links or time.monotonic() > deadline:
            return links
        time.sleep(0.2)  # a poll interval, not a wait for an outcome


@pytest.mark.parametrize("name", ["00_start_here.ipynb", "08_chat.ipynb"])
def test_run_all_leaves_the_chat_online(lab: Lab, lab_context: BrowserContext, name: str) -> None:
    notebook = stripped_copy(lab, name)
    page = lab_context.new_page()
    try:
        open_and_run_all(page, lab, notebook)
        # The last code cell reports the server's state: Run All got to the end.
        last_output = page.locator(".jp-Cell").filter(has_text="STOP_THE_CHAT = False")
        expect(last_output.locator(".jp-OutputArea-output")).to_contain_text(
            re.compile(r"(the chat server is running|server running: True)"),
            timeout=180 * UNIT_MS,
        )
        widget = page.locator(".wslab-chat").first
        expect(widget.locator(".wslab-badge")).to_have_attribute("data-state", "online")

        # The link the lesson printed is live: the page it opens joins the chat. Lab
        # draws only the cells in view, so read the outputs from the saved notebook.
        links = printed_links(page, lab, notebook)
        assert links, "the notebook printed no chat page link"
        chat_page = lab_context.new_page()
        chat_page.goto(links[0])
        expect(chat_page.locator("#status")).to_have_attribute("data-state", "online")
        chat_page.close()
    finally:
        page.close()
        lab.stop_kernels()


@pytest.mark.parametrize("name", ["00_start_here.ipynb", "08_chat.ipynb"])
def test_before_its_cell_runs_a_stored_widget_shows_the_text_the_lesson_names(
    lab: Lab, lab_context: BrowserContext, name: str
) -> None:
    """Opened from disk with its stored outputs and not run, the widget's place shows the
    saved line of text the lesson describes (not a live widget), and the stored page
    link says that it is live only once its cell has run."""
    target = f"stored_{name}"
    (lab.root / target).write_bytes((REPO / "notebooks" / name).read_bytes())  # a copy
    page = lab_context.new_page()
    try:
        page.goto(f"{lab.url}/lab/tree/{target}?reset&token={lab.token}")
        kernel_status = page.locator(f'#jp-main-statusbar [title="Change kernel for {target}"]')
        expect(kernel_status).to_have_text(re.compile(r"\| Idle$"), timeout=120 * UNIT_MS)
        lesson_text = page.locator(".jp-MarkdownOutput").filter(has_text="lives in the running")
        expect(lesson_text.first).to_contain_text(
            "[chat widget: ...; run this cell to open it live]"
        )
        saved = page.locator(".jp-OutputArea-output").filter(
            has_text=re.compile(
                r"^\[chat widget: 'you' on ws://127\.0\.0\.1:\d+/chat; "
                r"run this cell to open it live\]$"
            )
        )
        expect(saved.first).to_be_visible()
        expect(page.locator(".wslab-chat")).to_have_count(0)
        note = re.compile(r"after a restart, run this cell again")
        page.get_by_text(note).first.scroll_into_view_if_needed()
        expect(page.get_by_text(note).first).to_be_visible()
    finally:
        page.close()
        lab.stop_kernels()

"""The teacher's board (static/board.js) in a real chromium.

A :class:`Board` over a real :class:`ChatClient` takes a classroom's events (no
socket: they are applied as its socket would), on a loop in a thread of its own
(Playwright's sync API holds this thread's). Its traits are what a kernel would
sync; the board's ES module draws them in a page under a stand-in for anywidget's
host, and what its buttons send is read back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from wslab import ChatClient
from wslab.classroom import Teacher
from wslab.classroom.widget import Board, _static
from wslab.protocol import Connected, Muted, ProgressEntry, ProgressReport

from .test_page_rules import WIDGET_HOST

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def verdict(user: str, exercise: str, passed: bool) -> ProgressEntry:
    return {"id": user, "username": user, "exercise": exercise, "passed": passed, "ts": "t"}


def board_state(*events: Any, role: str = "teacher") -> dict[str, Any]:
    """The traits of a board whose client received ``connected`` and then ``events``."""
    traits: dict[str, Any] = {}

    async def build() -> None:
        client = ChatClient("ws://127.0.0.1:1/services/wslab/chat", "tom")
        board = Board(Teacher(client))
        users = [{"id": name, "username": name} for name in ("tom", "ada", XSS)]
        hello = Connected("tom", "tom", None, users, [], False, "r", role=role, progress_list=[])
        for event in (hello, *events):
            await client._handle(event)
        traits.update(status=board.box.status, exercises=board.box.exercises, rows=board.box.rows)

    thread = threading.Thread(target=asyncio.run, args=(build(),))
    thread.start()
    thread.join(30)
    return traits


@pytest.fixture
def board_view(context: BrowserContext) -> Callable[[dict[str, Any]], Page]:
    def open_view(state: dict[str, Any]) -> Page:
        page = context.new_page()
        page.route(
            "http://board.test/",
            lambda route: route.fulfill(
                body="<!doctype html><body></body>", content_type="text/html"
            ),
        )
        page.goto("http://board.test/")
        page.evaluate(WIDGET_HOST, [_static("board.js"), _static("board.css"), state])
        return page

    return open_view


def test_the_board_shows_students_by_exercises_and_its_buttons_ask_the_kernel(
    board_view: Callable[[dict[str, Any]], Page],
) -> None:
    state = board_state(
        ProgressReport(verdict("ada", "check_socket_url", True)),
        ProgressReport(verdict("ada", "check_event_log", False)),
        ProgressReport(verdict(XSS, "check_socket_url", False)),
        Muted(XSS, XSS),
    )
    page = board_view(state)
    board = page.locator(".wslab-board")
    expect(board).to_have_attribute("data-state", "online")
    expect(page.locator("th.wslab-board-exercise")).to_have_text(
        ["check_socket_url", "check_event_log"]
    )
    expect(page.locator(".wslab-board-row .wslab-board-name")).to_have_text(
        ["<img src=x onerror=alert(1)> (muted)", "ada"]  # markup shown as text
    )
    assert page.locator(".wslab-board img").count() == 0
    ada = page.locator('.wslab-board-row[data-id="ada"] .wslab-board-verdict')
    expect(ada).to_have_text(["pass", "FAIL"])
    expect(ada.first).to_have_attribute("data-verdict", "pass")
    page.locator('.wslab-board-row[data-id="ada"] button', has_text="mute").click()
    page.get_by_role("button", name="kick").last.click()
    page.get_by_label("Announcement").fill("Break until 11:00")
    page.get_by_label("Announcement").press("Enter")
    page.get_by_role("button", name="Clear chat").click()
    sent = page.evaluate("window.widgetSent")
    assert sent == [
        {"kind": "action", "n": 1, "action": "mute", "id": "ada"},
        {"kind": "action", "n": 2, "action": "kick", "id": "ada"},
        {"kind": "action", "n": 3, "action": "announce", "text": "Break until 11:00"},
        {"kind": "action", "n": 4, "action": "clear"},
    ]
    # the box is cleared when the kernel took the announcement, not before
    expect(page.get_by_label("Announcement")).to_have_value("Break until 11:00")
    page.evaluate("widgetModel.receive({kind: 'done', n: 3, ok: true})")
    expect(page.get_by_label("Announcement")).to_have_value("")
    # a new verdict arrives live: the table is redrawn from the new traits
    later = board_state(ProgressReport(verdict("ada", "check_grace", True)))
    page.evaluate("(rows) => widgetModel.set('exercises', rows)", later["exercises"])
    page.evaluate("(rows) => widgetModel.set('rows', rows)", later["rows"])
    expect(page.locator("th.wslab-board-exercise")).to_have_text(["check_grace"])


def test_a_student_sees_the_board_say_so_with_its_buttons_off(
    board_view: Callable[[dict[str, Any]], Page],
) -> None:
    page = board_view(board_state(role="student"))
    expect(page.locator(".wslab-board-note")).to_contain_text("You are a student here")
    for button in page.locator(".wslab-board button").all():
        expect(button).to_be_disabled()

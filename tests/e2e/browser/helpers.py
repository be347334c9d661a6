"""Constants and small helpers shared by the browser tests."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator, Page

from tests.conftest import TIME_SCALE

UNIT_S = 1.0 * TIME_SCALE  # one time unit, in seconds
UNIT_MS = 1000 * UNIT_S  # the same, in Playwright's milliseconds
GRACE_S = 1.0 * UNIT_S  # the server's reload grace in these tests
STABLE_S = 2.0 * UNIT_S  # the page's stability window (minUptimeS) where a test needs it


def received(page: Page, event: str) -> list[dict[str, Any]]:
    """The server events named `event` that this page received, from its raw log.

    The page asks for batched presence, so `joined` and `disconnected` also list each
    user of a `presence` event's `joined` and `left` lists, as if sent one by one.
    """
    events: list[dict[str, Any]] = page.evaluate(
        """(name) => window.wslabChat.events
            .filter((e) => e.type === "message" && typeof e.data === "string")
            .map((e) => ({ ...JSON.parse(e.data), receivedAt: e.t }))
            .flatMap((m) => m.event !== "presence" ? [m] : [
                ...m.left.map((u) => ({ ...u, event: "disconnected", receivedAt: m.receivedAt })),
                ...m.joined.map((u) => ({ ...u, event: "joined", receivedAt: m.receivedAt })),
            ])
            .filter((m) => m.event === name)""",
        event,
    )
    return events


def closes(page: Page) -> list[dict[str, Any]]:
    """The close events this page's sockets saw: code, reason, wasClean."""
    found: list[dict[str, Any]] = page.evaluate(
        'window.wslabChat.events.filter((e) => e.type === "close")'
    )
    return found


def wait_until(page: Page, expression: str, arg: Any = None, timeout_units: float = 10) -> None:
    """Wait until a JavaScript condition holds in the page (polled every 50 ms)."""
    page.wait_for_function(expression, arg=arg, polling=50, timeout=timeout_units * UNIT_MS)


def send_message(page: Page, text: str) -> None:
    """Type a message and press Enter, as a person would."""
    page.locator("#message-input").fill(text)
    page.locator("#message-input").press("Enter")


def delivered(page: Page) -> Locator:
    """The texts of the delivered messages (pending ones excluded), in page order."""
    return page.locator("#messages li[data-message-id] .text")

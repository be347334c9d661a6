"""Fixtures for the browser tests: a real chromium, a real ChatServer on port 0.

One headless chromium for the package (starting it costs ~0.5 s), a fresh browser
context per test (so a fresh localStorage: every test starts with new ids), and
servers that are always stopped on teardown. Every wait is a condition with a
timeout, in units scaled by the environment variable WSLAB_TIME_SCALE (default 1):
a slow CI machine sets WSLAB_TIME_SCALE=3 instead of us sprinkling sleeps.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from wslab import ChatServer

from .helpers import GRACE_S, UNIT_MS
from .test_jupyterlab import Lab, running_lab

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Most conditions hold within milliseconds; the timeout only bounds a failure.
expect.set_options(timeout=10 * UNIT_MS)


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; repeated here so this folder runs on its own.
    config.addinivalue_line("markers", "browser: drives the chat page in a real chromium")


# Package scope, not session: Playwright's sync API keeps its asyncio loop marked
# as running on the main thread while it lives, so any later test calling
# asyncio.run() would fail. One chromium for all of tests/e2e/browser/, stopped
# before pytest moves on to the other tests.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Fail, do not skip: a skipped browser suite would look green while testing nothing.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install -y chromium); `playwright install` cannot download here.",
            pytrace=False,
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 900, "height": 600})
    context.set_default_timeout(10 * UNIT_MS)
    yield context
    context.close()


@pytest.fixture
def start_server(make_server: Callable[..., ChatServer]) -> Callable[..., ChatServer]:
    """A factory: start_server(port=0) -> a started ChatServer, stopped on teardown.

    The suite's ``make_server`` (tests/conftest.py) with this folder's grace.
    """

    def start(port: int = 0) -> ChatServer:
        return make_server(port=port, grace=GRACE_S)

    return start


@pytest.fixture
def server(start_server: Callable[..., ChatServer]) -> ChatServer:
    return start_server()


@pytest.fixture
def open_chat(context: BrowserContext, server: ChatServer) -> Callable[..., Page]:
    """A factory: open_chat("alice") -> a page joined as alice and online."""

    def open_chat(username: str, *, on: ChatServer | None = None) -> Page:
        page = context.new_page()
        page.goto(f"{(on or server).page_url}?username={quote(username)}")
        expect(page.locator("#status")).to_have_attribute("data-state", "online")
        return page

    return open_chat


# One JupyterLab for every Lab test of the package (starting one costs seconds): each
# test opens notebooks of its own name and stops its kernels when it ends.
@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab")) as started:
        yield started


@pytest.fixture
def lab_context(browser: Browser, lab: Lab) -> Iterator[BrowserContext]:
    """A browser context for one Lab test; its kernels are stopped when it ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url)
    context.set_default_timeout(10 * UNIT_MS)
    yield context
    context.close()
    lab.stop_kernels()

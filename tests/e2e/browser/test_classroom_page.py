"""The classroom's chat page in real chromium, logged in through a real JupyterHub.

One hub for the module (``JupyterHubProcess``, ``DummyAuthenticator``, the npm
``configurable-http-proxy``) runs ``python -m wslab serve --hub`` as a managed
service. A student logs in at ``/hub/login``, opens the page below the service
prefix and is online as their hub user, through the hub's proxy; a teacher (a
script with a hub token) announces, mutes and kicks, and the page shows it.

Skipped, with the install line as the reason, where the hub or its proxy is missing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from websockets.sync.client import ClientConnection, connect

from tests.helpers.hubs import ACCESS, PREFIX, SERVICE, hub_marks
from wslab.testing.hub import HubService, JupyterHubProcess

from .helpers import UNIT_S, wait_until

pytestmark = [*hub_marks(), pytest.mark.browser]

GRACE_S = 5 * UNIT_S  # a reload through the hub's proxy comes back well within it


@pytest.fixture(scope="module")
def hub() -> Iterator[JupyterHubProcess]:
    command = [sys.executable, "-m", "wslab", "serve", "--hub", "--teachers", "teachers"]
    command += ["--grace", str(GRACE_S)]
    hub = JupyterHubProcess(
        services=[
            HubService(
                SERVICE,
                command=command,
                environment={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            )
        ],
        roles=[{"name": "wslab-class", "scopes": [ACCESS], "groups": ["class", "teachers"]}],
        groups={"class": ["ada", "bob"], "teachers": ["tom"]},
    )
    with hub:
        yield hub


def logged_in_page(context: BrowserContext, hub: JupyterHubProcess, user: str) -> Page:
    """A page of ``user``, logged in at the hub's login form and sent on to the chat."""
    page = context.new_page()
    page.goto(f"{hub.public_url}hub/login?next={quote(PREFIX)}")
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    return page


@contextmanager
def teacher(hub: JupyterHubProcess) -> Iterator[ClientConnection]:
    """A teacher's script: tom's socket through the proxy, with his hub token."""
    token = hub.mint_token("tom", scopes=[ACCESS])
    url = hub.service_url(SERVICE).replace("http://", "ws://") + "chat"
    with connect(url, additional_headers={"Authorization": f"token {token}"}) as socket:
        socket.send(json.dumps({"event": "connecting", "id": "tom", "username": "tom"}))
        assert json.loads(socket.recv(timeout=10 * UNIT_S))["role"] == "teacher"
        yield socket


def send(socket: ClientConnection, event: str, **fields: Any) -> None:
    socket.send(json.dumps({"event": event, **fields}))


def test_a_student_logged_in_at_the_hub_is_online_as_their_hub_user(
    context: BrowserContext, hub: JupyterHubProcess
) -> None:
    page = logged_in_page(context, hub, "ada")
    assert page.url == hub.service_url(SERVICE)  # back on the page; no code or token in it
    assert page.evaluate("wslabChat.username") == "ada"
    expected = hub.service_url(SERVICE).replace("http://", "ws://") + "chat"
    assert page.evaluate("wslabChat.socketUrl") == expected  # below the service prefix


def test_the_page_shows_an_announcement_a_mute_a_clear_and_a_kick(
    context: BrowserContext, hub: JupyterHubProcess
) -> None:
    page = logged_in_page(context, hub, "ada")
    with teacher(hub) as tom:
        send(tom, "announce", message="exam at 10")
        expect(page.locator("li.announcement .text")).to_have_text("exam at 10")
        send(tom, "mute", id="ada")
        expect(page.locator("li.system").last).to_have_text("ada was muted by a teacher")
        send(tom, "clear")
        expect(page.locator("li.announcement")).to_have_count(0)
        expect(page.locator("li.divider").last).to_have_text("a teacher cleared the chat")
        send(tom, "kick", id="ada")
        expect(page.locator("#status")).to_have_attribute("data-state", "offline")
        wait_until(page, "wslabChat.lastClose && wslabChat.lastClose.code === 4003")
        assert page.evaluate("wslabChat.lastClose.reason") == "removed by the teacher"


def test_a_reload_through_the_proxy_is_within_the_grace(
    context: BrowserContext, hub: JupyterHubProcess
) -> None:
    page = logged_in_page(context, hub, "bob")
    with teacher(hub) as tom:
        page.reload()
        expect(page.locator("#status")).to_have_attribute("data-state", "online")
        assert page.evaluate("wslabChat.username") == "bob"
        send(tom, "writeMessage", message="still there?")
        # tom was told of no departure: the reload came back within the grace
        while (event := json.loads(tom.recv(timeout=10 * UNIT_S)))["event"] == "joined":
            pass
        assert event["event"] == "messageWritten"

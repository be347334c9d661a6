"""``python -m wslab serve --hub`` as a real JupyterHub's service, through the hub's proxy.

Two hubs for the module, each started once (``JupyterHubProcess``, ``DummyAuthenticator``,
the npm ``configurable-http-proxy``): one runs the chat as a *managed* service (the
hub starts and stops it) for most tests; the other has the proxy beside the hub and the
chat *unmanaged*, started here with the ``JUPYTERHUB_*`` variables, so that the hub can
restart while the chat keeps its sockets. Users: ada and bob (the class), tom (the
teachers' group), ida (a hub admin), out (no access to the chat).

Skipped, with the install line as the reason, where the hub or its proxy is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import TEACHER_EVENTS, unit
from tests.helpers.hubs import ACCESS, PREFIX, SERVICE, hub_marks
from wslab.testing.hub import HubService, JupyterHubProcess

T = TypeVar("T")
pytestmark = hub_marks(600)

KICK_SECONDS = 3
GRACE = 2
SERVE = [
    sys.executable, "-m", "wslab", "serve", "--hub", "--teachers", "teachers",
    "--kick-seconds", str(KICK_SECONDS), "--grace", str(GRACE),
]  # fmt: skip
ROLES = [{"name": "wslab-class", "scopes": [ACCESS], "groups": ["class", "teachers"]}]
GROUPS = {"class": ["ada", "bob"], "teachers": ["tom"]}
PRESENCE = ("joined", "disconnected", "presence")
#: Every user token the tests minted: none may appear in a log.
MINTED: list[str] = []


def mint(hub: JupyterHubProcess, name: str, **options: Any) -> str:
    token = hub.mint_token(name, **options)
    MINTED.append(token)
    return token


def assert_no_token_in(text: str) -> None:
    assert MINTED and not [token for token in MINTED if token in text]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, unit(60)))


def _environment() -> dict[str, str]:
    """What the chat's process needs besides the hub's variables: this worktree's code."""
    return {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def hub() -> Iterator[JupyterHubProcess]:
    """A hub that runs ``serve --hub`` as a managed service."""
    started = time.monotonic()
    hub = JupyterHubProcess(
        services=[HubService(SERVICE, command=SERVE, environment=_environment())],
        roles=ROLES,
        groups=GROUPS,
        admin_users=["ida"],
    )
    with hub:
        print(f"\nhub with the managed chat started in {time.monotonic() - started:.1f} s")
        hub.create_user("out")
        yield hub
        with open(hub.log_path, encoding="utf-8", errors="replace") as log:
            assert_no_token_in(log.read())  # the hub's log holds the managed chat's output


class Tokens:
    """Each user's hub token (minted once), by name."""

    def __init__(self, hub: JupyterHubProcess) -> None:
        self.hub = hub
        self._tokens: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._tokens:
            self._tokens[name] = mint(self.hub, name, scopes=[ACCESS])
        return self._tokens[name]


@pytest.fixture(scope="module")
def tokens(hub: JupyterHubProcess) -> Tokens:
    return Tokens(hub)


def chat_url(hub: JupyterHubProcess) -> str:
    """The chat's socket through the hub's public proxy."""
    return hub.service_url(SERVICE).replace("http://", "ws://") + "chat"


class Peer:
    """A raw WebSocket client of the chat: what it sent and got, nothing hidden."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    async def send(self, event: str, **fields: Any) -> None:
        await self.socket.send(json.dumps({"event": event, **fields}))

    async def next(self, event: str | None = None, *, skip: tuple[str, ...] = PRESENCE) -> Any:
        """The next event of that name (any, without one), skipping ``skip`` on the way."""
        while True:
            got = json.loads(await asyncio.wait_for(self.socket.recv(), unit(10)))
            if got["event"] == event or (event is None and got["event"] not in skip):
                return got
            if got["event"] not in skip:
                raise AssertionError(f"expected {event}, got {got}")


@asynccontextmanager
async def joined(
    hub: JupyterHubProcess, hub_token: str, **claims: Any
) -> AsyncIterator[tuple[Peer, dict[str, Any]]]:
    """A socket of the token's user through the proxy, connected; its ``connected``."""
    headers = {"Authorization": f"token {hub_token}"}
    async with connect(chat_url(hub), additional_headers=headers) as socket:
        peer = Peer(socket)
        fields = {"id": "someone", "username": "someone", **claims}
        await peer.send("connecting", **fields)
        yield peer, await peer.next("connected")


async def refused(hub: JupyterHubProcess, headers: dict[str, str]) -> tuple[int, str]:
    """The status and body of a handshake the chat refuses."""
    with pytest.raises(InvalidStatus) as caught:
        async with connect(chat_url(hub), additional_headers=headers):
            pass
    response = caught.value.response
    return response.status_code, response.body.decode()


# --------------------------------------------------------------------------- the door


def test_a_bad_token_no_login_and_a_user_without_access_get_403_before_a_socket(
    hub: JupyterHubProcess, tokens: Tokens
) -> None:
    async def scenario() -> None:
        status, body = await refused(hub, {"Authorization": "token not-a-hub-token"})
        assert status == 403 and "does not know this token" in body
        status, body = await refused(hub, {})
        assert status == 403 and "no hub credential" in body
        status, body = await refused(hub, {"Authorization": f"token {mint(hub, 'out')}"})
        assert status == 403 and ACCESS in body

    run(scenario())


def test_a_student_claiming_another_id_and_name_gets_their_hub_name(
    hub: JupyterHubProcess, tokens: Tokens
) -> None:
    async def scenario() -> None:
        async with joined(hub, tokens["ada"], id="tom", username="tom", token="forged") as (
            _,
            connected,
        ):
            assert (connected["id"], connected["username"]) == ("ada", "ada")
            assert connected["role"] == "student"
            assert "token" not in connected and "progressList" not in connected

    run(scenario())


def test_admins_and_the_teachers_group_are_teachers(hub: JupyterHubProcess, tokens: Tokens) -> None:
    async def scenario() -> None:
        for name in ("tom", "ida"):
            async with joined(hub, tokens[name]) as (_, connected):
                assert (connected["id"], connected["role"]) == (name, "teacher")
                assert isinstance(connected["progressList"], list)

    run(scenario())


@pytest.mark.parametrize(("event", "fields"), TEACHER_EVENTS)
def test_each_teacher_event_is_refused_to_a_student(
    hub: JupyterHubProcess, tokens: Tokens, event: str, fields: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with joined(hub, tokens["ada"]) as (ada, _):
            await ada.send(event, **fields)
            error = await ada.next("error")
            assert error["code"] == "forbidden" and event in error["detail"]

    run(scenario())


def test_mute_unmute_announce_and_clear_from_a_teacher(
    hub: JupyterHubProcess, tokens: Tokens
) -> None:
    async def scenario() -> None:
        async with (
            joined(hub, tokens["tom"]) as (tom, _),
            joined(hub, tokens["ada"]) as (ada, _),
            joined(hub, tokens["bob"]) as (bob, _),
        ):
            await tom.send("mute", id="bob")
            for peer in (tom, ada, bob):
                assert await peer.next("muted") == {
                    "event": "muted",
                    "id": "bob",
                    "username": "bob",
                }
            await bob.send("writeMessage", message="let me talk")
            assert (await bob.next("error"))["code"] == "muted"
            await tom.send("unmute", id="bob")
            for peer in (tom, ada, bob):
                assert (await peer.next("unmuted"))["id"] == "bob"
            await bob.send("writeMessage", message="thanks")
            for peer in (tom, ada, bob):
                assert (await peer.next("messageWritten"))["message"]["message"] == "thanks"
            await tom.send("announce", message="exam at 10")
            for peer in (tom, ada, bob):
                entry = (await peer.next("messageWritten"))["message"]
                assert (entry["message"], entry["announcement"], entry["id"]) == (
                    "exam at 10",
                    True,
                    "tom",
                )
            await tom.send("clear")
            rooms = {(await peer.next("cleared"))["roomId"] for peer in (tom, ada, bob)}
            assert len(rooms) == 1
        async with joined(hub, tokens["ada"]) as (_, connected):
            assert connected["messagesList"] == [] and connected["roomId"] in rooms

    run(scenario())


def test_a_kicked_user_is_closed_with_4003_refused_for_the_kick_time_then_let_back_in(
    hub: JupyterHubProcess, tokens: Tokens
) -> None:
    async def scenario() -> float:
        async with (
            joined(hub, tokens["tom"]) as (tom, _),
            joined(hub, tokens["bob"]) as (bob, _),
            joined(hub, tokens["bob"]) as (bob_tab, _),
        ):
            await tom.send("kick", id="bob")
            for peer in (bob, bob_tab):
                with pytest.raises(ConnectionClosed) as caught:
                    await peer.next("never")
                assert caught.value.rcvd is not None
                assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (
                    4003,
                    "removed by the teacher",
                )
            kicked = time.monotonic()
            status, body = await refused(hub, {"Authorization": f"token {tokens['bob']}"})
            assert status == 403 and "removed by the teacher" in body
        while True:  # let back in once the kick time is over, not before
            try:
                async with joined(hub, tokens["bob"]) as (_, connected):
                    assert connected["id"] == "bob"
                    return time.monotonic() - kicked
            except InvalidStatus as refusal:
                assert refusal.response.status_code == 403
                assert time.monotonic() - kicked < KICK_SECONDS + unit(10)
                await asyncio.sleep(0.2)

    waited = run(scenario())
    assert waited >= KICK_SECONDS - 0.5


def test_progress_reaches_teachers_live_and_never_students(
    hub: JupyterHubProcess, tokens: Tokens
) -> None:
    async def scenario() -> None:
        async with (
            joined(hub, tokens["tom"]) as (tom, _),
            joined(hub, tokens["bob"]) as (bob, _),
            joined(hub, tokens["ada"]) as (ada, _),
        ):
            await ada.send("progress", exercise="echo", passed=True)
            live = await tom.next("progress")
            assert {k: live[k] for k in ("id", "username", "exercise", "passed")} == {
                "id": "ada",
                "username": "ada",
                "exercise": "echo",
                "passed": True,
            }
            # what follows on each student's socket comes after the progress would have
            await ada.send("writeMessage", message="done")
            for student in (bob, ada):
                assert (await student.next())["event"] == "messageWritten"
            async with joined(hub, tokens["ida"]) as (_, teacher):
                assert {(p["id"], p["exercise"], p["passed"]) for p in teacher["progressList"]} >= {
                    ("ada", "echo", True)
                }

    run(scenario())


def test_the_page_logs_in_through_the_hub_and_opens_its_socket_with_the_cookie(
    hub: JupyterHubProcess,
) -> None:
    """The login's HTTP steps as a browser takes them (Chromium: tests/e2e/browser)."""
    browser = hub.browser_login("ada")
    to_hub = hub.follow(browser, PREFIX)  # no login cookie yet: off to the hub
    assert to_hub.startswith("/hub/api/oauth2/authorize?") and "token" not in to_hub.lower()
    callback = hub.follow(browser, to_hub)
    assert callback.startswith(f"{PREFIX}oauth_callback?")
    assert hub.follow(browser, callback) == PREFIX
    with browser.open(hub.service_url(SERVICE), timeout=unit(30)) as page:
        html = page.read().decode()
    assert f'"socketPath":"{PREFIX}chat"' in html and '"classroom":true' in html
    cookies = browser.handlers  # the jar's cookies go with the socket's handshake
    jar = next(h.cookiejar for h in cookies if hasattr(h, "cookiejar"))
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar if c.path.startswith(PREFIX))
    origin = hub.public_url.rstrip("/")

    async def scenario() -> None:
        headers = {"Cookie": cookie, "Origin": origin}
        async with connect(chat_url(hub), additional_headers=headers) as socket:
            peer = Peer(socket)
            await peer.send("connecting", id="x", username="x")
            assert (await peer.next("connected"))["id"] == "ada"
        status, _ = await refused(hub, {"Cookie": cookie, "Origin": "http://elsewhere.example"})
        assert status == 403

    run(scenario())


# --------------------------------------------------------------------------- unmanaged


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the chat did not listen (exit code {process.poll()})"
                ) from error
            time.sleep(0.05)


@pytest.fixture(scope="module")
def outside() -> Iterator[JupyterHubProcess]:
    """A hub with its proxy beside it, and the chat run here, beside the hub."""
    hub = JupyterHubProcess(
        services=[HubService(SERVICE)], roles=ROLES, groups=GROUPS, proxy_outside=True
    )
    service = hub.service(SERVICE)
    url = urllib.parse.urlsplit(str(service.url))
    env = {
        **os.environ,
        "JUPYTERHUB_SERVICE_NAME": SERVICE,
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": str(service.api_token),
        "JUPYTERHUB_CLIENT_ID": f"service-{SERVICE}",
        "JUPYTERHUB_SERVICE_URL": str(service.url),
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
    }
    chat = subprocess.Popen(SERVE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_listening(int(url.port or 0), chat, unit(30))
        started = time.monotonic()
        with hub:
            print(f"\nhub beside the unmanaged chat started in {time.monotonic() - started:.1f} s")
            yield hub
    finally:
        chat.terminate()
        try:
            output, _ = chat.communicate(timeout=unit(10))
        except subprocess.TimeoutExpired:
            chat.kill()
            output, _ = chat.communicate()
        text = output.decode(errors="replace")
        assert str(service.api_token) not in text  # no token in any log line
        assert_no_token_in(text)


def test_an_unmanaged_chat_keeps_a_reload_within_the_grace_through_the_proxy(
    outside: JupyterHubProcess,
) -> None:
    ada_token = mint(outside, "ada", scopes=[ACCESS])
    tom_token = mint(outside, "tom", scopes=[ACCESS])

    async def scenario() -> None:
        async with joined(outside, tom_token) as (tom, _):
            async with joined(outside, ada_token) as (_, first):
                assert first["wasPageReload"] is False
            assert (await tom.next("joined"))["id"] == "ada"
            async with joined(outside, ada_token) as (_, again):
                assert again["wasPageReload"] is True and again["id"] == "ada"
            await tom.send("writeMessage", message="still here?")
            # tom saw no departure of ada: the reload was within the grace
            assert (await tom.next(skip=()))["event"] == "messageWritten"

    run(scenario())


def test_the_hub_restarting_leaves_the_chat_and_its_sockets_up(
    outside: JupyterHubProcess,
) -> None:
    ada_token = mint(outside, "ada", scopes=[ACCESS])
    tom_token = mint(outside, "tom", scopes=[ACCESS])

    async def scenario() -> None:
        async with joined(outside, tom_token) as (tom, _), joined(outside, ada_token) as (ada, _):
            started = time.monotonic()
            await asyncio.to_thread(outside.restart_hub)
            print(f"\nhub restarted in {time.monotonic() - started:.1f} s")
            await ada.send("writeMessage", message="after the restart")
            assert (await tom.next("messageWritten"))["message"]["message"] == "after the restart"
            await ada.send("progress", exercise="echo", passed=True)
            assert (await tom.next("progress"))["id"] == "ada"

    run(scenario())

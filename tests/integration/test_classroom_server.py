"""A ``ChatServer(hub=True)`` in this process, with the hub's answers faked: the routes
below the service prefix, the handshake's gate, and a kick timed by a fake clock.

The same service against a real hub and its proxy: tests/system/test_classroom_service.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import unit
from wslab import ChatServer
from wslab.clock import FakeClock

pytest.importorskip("jupyterhub", reason='the classroom needs pip install "wslab[classroom]"')

PREFIX = "/services/wslab/"
ACCESS = "access:services!service=wslab"
HUB = {
    "JUPYTERHUB_SERVICE_NAME": "wslab",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",  # never asked: the look-up is faked
    "JUPYTERHUB_API_TOKEN": "service-token",
    "JUPYTERHUB_CLIENT_ID": "service-wslab",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101",
    "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
    "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{PREFIX}oauth_callback",
}
USERS = {  # token -> the hub's user model
    "ada-token": {"name": "ada", "groups": ["class"], "scopes": [ACCESS]},
    "tom-token": {"name": "tom", "groups": ["teachers"], "scopes": [ACCESS]},
}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[ChatServer]:
    for name, value in HUB.items():
        monkeypatch.setenv(name, value)
    server = ChatServer(hub=True, teachers=("teachers",), kick_seconds=30, clock=clock)
    assert server.hub is not None

    async def lookup(token: str) -> Mapping[str, Any] | None:
        return USERS.get(token)

    server.hub.gate._lookup = lookup
    server.start()
    yield server
    server.stop()


def get(
    server: ChatServer, path: str, cookie: str = "", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``GET path``, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect())
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers)
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with opener.open(request, timeout=unit(10)) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as reply:
        return reply.code, dict(reply.headers), reply.read()


@contextmanager
def join(server: ChatServer, token: str) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    """A connected socket of the token's user, and its ``connected``."""
    headers = {"Authorization": f"token {token}"}
    with connect(server.url, additional_headers=headers) as socket:
        socket.send(json.dumps({"event": "connecting", "id": "someone", "username": "someone"}))
        yield socket, json.loads(socket.recv(timeout=unit(10)))


def test_the_chat_is_served_below_the_service_prefix(server: ChatServer) -> None:
    assert server.url == f"ws://127.0.0.1:{server.port}{PREFIX}chat"
    assert get(server, "/")[0] == 404  # the hub's check that the service runs accepts it
    status, headers, _ = get(server, PREFIX.rstrip("/"))
    assert (status, headers["Location"]) == (302, PREFIX)
    assert get(server, f"{PREFIX}chat.js")[0] == 200
    assert get(server, f"{PREFIX}nothing-here")[0] == 404


def test_a_browser_without_the_login_cookie_is_sent_to_the_hub(server: ChatServer) -> None:
    status, headers, _ = get(server, f"{PREFIX}?tab=2")
    assert status == 302 and headers["Location"].startswith("/hub/api/oauth2/authorize?")
    assert "token" not in headers["Location"].lower()
    assert f"Path={PREFIX}" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert "Secure" not in headers["Set-Cookie"]
    # behind a proxy that serves HTTPS, the cookies are only sent over HTTPS
    _, headers, _ = get(server, PREFIX, **{"X-Forwarded-Proto": "https"})
    assert "; Secure" in headers["Set-Cookie"]
    # a callback whose state did not leave from here is refused
    status, _, body = get(server, f"{PREFIX}oauth_callback?code=c&state=forged")
    assert status == 403 and b"did not start here" in body


def test_a_logged_in_browser_gets_the_page_with_its_socket_path(server: ChatServer) -> None:
    from tornado.web import create_signed_value

    assert server.hub is not None
    gate = server.hub.gate
    assert gate.cookie_name is not None and gate.cookie_secret is not None
    value = create_signed_value(gate.cookie_secret, gate.cookie_name, "ada-token").decode()
    status, _, body = get(server, PREFIX, cookie=f"{gate.cookie_name}={value}")
    assert status == 200
    assert f'"socketPath":"{PREFIX}chat"'.encode() in body and b'"classroom":true' in body


def test_the_handshake_is_refused_without_a_known_token(server: ChatServer) -> None:
    for headers in ({}, {"Authorization": "token unknown"}):
        with (
            pytest.raises(InvalidStatus) as caught,
            connect(server.url, additional_headers=headers),
        ):
            pass
        assert caught.value.response.status_code == 403


def test_a_kicked_user_is_refused_until_the_kick_time_is_over(
    server: ChatServer, clock: FakeClock
) -> None:
    with join(server, "tom-token") as (tom, teacher), join(server, "ada-token") as (ada, student):
        assert teacher["role"] == "teacher"
        assert (student["id"], student["role"]) == ("ada", "student")
        tom.send(json.dumps({"event": "kick", "id": "ada"}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ada.recv(timeout=unit(10))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003
        clock.advance(29)
        with pytest.raises(InvalidStatus) as caught, join(server, "ada-token"):
            pass
        assert caught.value.response.status_code == 403
        assert b"join again in 1 s" in caught.value.response.body
        clock.advance(1)
        with join(server, "ada-token") as (_, connected):
            assert connected["id"] == "ada"

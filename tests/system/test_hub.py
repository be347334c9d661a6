"""The classroom's foundation against a real JupyterHub with its real proxy.

One hub for the module (``JupyterHubProcess``): ``DummyAuthenticator``, the npm
``configurable-http-proxy``, a managed ``wslab`` service (a stand-in that only
listens where the hub tells it), users in a class group and a teachers' group, an
admin, a user outside the class, and ``SimpleLocalProcessSpawner`` for a real
single-user server. Skipped, with the install line as the reason, where the hub or
its proxy is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from unittest import mock
from urllib.parse import urlsplit

import pytest

from tests.conftest import unit
from tests.helpers.hubs import ACCESS, READ, SERVICE, hub_marks
from wslab.classroom import HubGate, HubUser, Refusal
from wslab.clock import FakeClock
from wslab.errors import MissingProgramError
from wslab.testing.hub import HubAPIError, HubService, JupyterHubProcess

T = TypeVar("T")
pytestmark = hub_marks(600)

# Listens where the hub says, as `serve --hub` will, and answers 200 (the hub waits for
# a managed service to answer without an error before it starts).
STAND_IN = """
import os, http.server, urllib.parse
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"stand-in")
    def log_message(self, *args):
        pass
url = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
http.server.HTTPServer((url.hostname, url.port), Page).serve_forever()
"""


def test_a_missing_proxy_is_one_line_with_the_install_command() -> None:
    with pytest.raises(MissingProgramError) as caught:
        JupyterHubProcess(proxy="no-such-configurable-http-proxy")
    assert "npm install -g configurable-http-proxy@5" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module: the hub client keeps one HTTP session per loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(asyncio.wait_for(coroutine, unit(60)))


@pytest.fixture(scope="module")
def hub() -> Iterator[JupyterHubProcess]:
    started = time.monotonic()
    hub = JupyterHubProcess(
        services=[
            HubService(
                SERVICE,
                command=[sys.executable, "-c", STAND_IN],
                scopes=["admin:users", "tokens", "servers"],
            )
        ],
        roles=[
            {"name": "wslab-class", "scopes": [ACCESS, READ], "groups": ["class", "teachers"]},
            # a server's token (and so its kernels') may reach the chat, if its owner may
            {
                "name": "server",
                "scopes": ["users:activity!user", "access:servers!server", ACCESS, READ],
            },
        ],
        groups={"class": ["ada", "bob"], "teachers": ["tom"]},
        admin_users=["ida"],
        spawn=True,
    )
    with hub:
        hub.start_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        print(f"\nhub started in {hub.start_seconds:.1f} s")  # type: ignore[attr-defined]
        hub.create_user("out")
        yield hub


class CountedGate:
    """The gate the service builds from the hub's variables, its hub requests counted."""

    def __init__(
        self, hub: JupyterHubProcess, clock: FakeClock, cookie_secret: bytes | None = None
    ) -> None:
        service = hub.service(SERVICE)
        env = {
            "JUPYTERHUB_SERVICE_NAME": SERVICE,
            "JUPYTERHUB_API_URL": hub.api_url,
            "JUPYTERHUB_API_TOKEN": str(service.api_token),
            "JUPYTERHUB_CLIENT_ID": f"service-{SERVICE}",
        }
        with mock.patch.dict(os.environ, env):
            self.gate = HubGate.from_environment(
                teacher_groups=["teachers"], clock=clock, cookie_secret=cookie_secret
            )
        assert self.gate.hub_auth.oauth_client_id == f"service-{SERVICE}"
        self.seconds: list[float] = []
        real = self.gate._lookup

        async def timed(token: str) -> Any:
            started = time.perf_counter()
            try:
                return await real(token)
            finally:
                self.seconds.append(time.perf_counter() - started)

        self.gate._lookup = timed

    async def who(self, token: str | None) -> HubUser | Refusal:
        headers = {} if token is None else {"Authorization": f"token {token}"}
        return await self.gate.identify(headers)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def gate(
    hub: JupyterHubProcess, loop: asyncio.AbstractEventLoop, clock: FakeClock
) -> Iterator[CountedGate]:
    counted = CountedGate(hub, clock)
    yield counted
    run(loop, counted.gate.aclose())


def test_the_hub_its_proxy_and_its_managed_service_run(hub: JupyterHubProcess) -> None:
    with urllib.request.urlopen(f"{hub.public_url}hub/api/", timeout=unit(10)) as reply:
        assert "version" in json.loads(reply.read())
    # through the public proxy to the service the hub started
    with urllib.request.urlopen(hub.service_url(SERVICE), timeout=unit(10)) as reply:
        assert reply.read() == b"stand-in"
    assert hub.api("GET", f"/services/{SERVICE}")["pid"] > 0


def test_a_minted_user_token_is_accepted_as_that_user(
    hub: JupyterHubProcess, gate: CountedGate, loop: asyncio.AbstractEventLoop
) -> None:
    token = hub.mint_token("ada", scopes=[ACCESS])
    ada = run(loop, gate.who(token))
    assert isinstance(ada, HubUser)
    assert (ada.name, ada.role, ada.admin) == ("ada", "student", False)
    assert "class" in ada.groups and ACCESS in ada.scopes


def test_a_bad_token_and_no_credential_are_refused(
    gate: CountedGate, loop: asyncio.AbstractEventLoop
) -> None:
    bad = run(loop, gate.who("not-a-hub-token"))
    assert isinstance(bad, Refusal) and bad.status == 403
    assert "does not know this token" in bad.reason
    none = run(loop, gate.who(None))
    assert isinstance(none, Refusal) and none.status == 403


def test_a_user_without_the_access_scope_is_refused(
    hub: JupyterHubProcess, gate: CountedGate, loop: asyncio.AbstractEventLoop
) -> None:
    refusal = run(loop, gate.who(hub.mint_token("out")))
    assert isinstance(refusal, Refusal) and refusal.status == 403
    assert ACCESS in refusal.reason
    # a class member's token minted without the access scope is refused the same way
    narrow = run(loop, gate.who(hub.mint_token("bob", scopes=["read:users:name!user=bob"])))
    assert isinstance(narrow, Refusal) and narrow.status == 403


def test_admins_and_teachers_group_members_are_teachers_others_students(
    hub: JupyterHubProcess, gate: CountedGate, loop: asyncio.AbstractEventLoop
) -> None:
    roles = {}
    for name in ("ida", "tom", "bob"):
        user = run(loop, gate.who(hub.mint_token(name, scopes=[ACCESS])))
        assert isinstance(user, HubUser), user
        roles[name] = (user.role, user.admin)
    assert roles == {
        "ida": ("teacher", True),
        "tom": ("teacher", False),
        "bob": ("student", False),
    }


def test_a_class_joining_at_once_asks_the_hub_once_per_token_per_period(
    hub: JupyterHubProcess,
    gate: CountedGate,
    clock: FakeClock,
    loop: asyncio.AbstractEventLoop,
) -> None:
    tokens = [hub.mint_token(name, scopes=[ACCESS]) for name in ("ada", "bob", "tom")]

    async def everyone_joins(times: int) -> list[HubUser | Refusal]:
        joins = [gate.who(token) for token in tokens for _ in range(times)]
        return list(await asyncio.gather(*joins))

    before, asked = gate.gate.hub_requests, len(gate.seconds)
    answers = run(loop, everyone_joins(20))
    assert all(isinstance(answer, HubUser) for answer in answers)
    assert gate.gate.hub_requests - before == 3
    assert len(gate.seconds) - asked == 3  # counted around the hub call itself
    uncached = gate.seconds[-3:]
    started = time.perf_counter()
    run(loop, everyone_joins(20))  # reconnects within the period
    cached = (time.perf_counter() - started) / 60
    assert gate.gate.hub_requests - before == 3
    clock.advance(60)
    run(loop, everyone_joins(5))
    assert gate.gate.hub_requests - before == 6
    assert len(gate.seconds) - asked == 6
    print(
        f"\ntoken look-up: {1000 * max(uncached):.1f} ms from the hub (slowest of 3),"
        f" {1e6 * cached:.0f} us from the cache"
    )


def test_a_browsers_hub_login_in_the_pages_cookie_names_the_user(
    hub: JupyterHubProcess, clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    """The hub's own login and OAuth authorisation, the code exchanged as the page's
    callback will, the token in the signed cookie the page will set."""
    from jupyterhub.services.auth import HubOAuth
    from tornado.web import create_signed_value

    code = hub.oauth_code("ada", SERVICE)
    oauth = HubOAuth(
        api_url=hub.api_url,
        api_token=hub.service(SERVICE).api_token,
        oauth_client_id=f"service-{SERVICE}",
        oauth_redirect_uri=f"/services/{SERVICE}/oauth_callback",
    )
    token = run(loop, oauth.token_for_code(code, sync=False))
    secret = secrets.token_bytes(32)
    gate = CountedGate(hub, clock, cookie_secret=secret).gate
    assert gate.cookie_name == f"service-{SERVICE}"
    cookie = create_signed_value(secret, gate.cookie_name, token).decode()
    host = urlsplit(hub.public_url).netloc
    headers = {"Host": host, "Cookie": f"{gate.cookie_name}={cookie}"}
    ada = run(loop, gate.identify({**headers, "Origin": f"http://{host}"}))
    assert isinstance(ada, HubUser) and (ada.name, ada.role) == ("ada", "student")
    elsewhere = run(loop, gate.identify({**headers, "Origin": "http://elsewhere.example"}))
    assert isinstance(elsewhere, Refusal) and elsewhere.status == 403
    # the hub itself refuses to authorise the chat for a user without access
    with pytest.raises(HubAPIError) as caught:
        hub.oauth_code("out", SERVICE)
    assert caught.value.status == 403


def test_the_pages_login_through_the_hub_ends_in_a_cookie_the_gate_accepts(
    hub: JupyterHubProcess, clock: FakeClock, loop: asyncio.AbstractEventLoop
) -> None:
    """HubLogin's two steps with the real hub in between (login, authorisation, PKCE)."""
    from jupyterhub.services.auth import HubOAuth

    from wslab.classroom.login import HubLogin

    prefix = f"/services/{SERVICE}/"
    oauth = HubOAuth(
        api_url=hub.api_url,
        api_token=hub.service(SERVICE).api_token,
        oauth_client_id=f"service-{SERVICE}",
        oauth_redirect_uri=f"{prefix}oauth_callback",
        base_url=prefix,
    )
    secret = secrets.token_bytes(32)
    login = HubLogin.from_hub_auth(oauth, secret)
    location, state_cookie = login.begin(f"{prefix}?tab=2")
    callback = hub.follow(hub.browser_login("bob"), location)
    path, _, query = callback.partition("?")
    assert path == f"{prefix}oauth_callback"
    state = state_cookie.split(";")[0]
    answer = run(loop, login.finish(query, state))
    assert not isinstance(answer, Refusal), answer
    next_path, login_cookie = answer
    assert next_path == f"{prefix}?tab=2"
    assert f"Path={prefix}" in login_cookie and "HttpOnly" in login_cookie
    gate = CountedGate(hub, clock, cookie_secret=secret).gate
    host = urlsplit(hub.public_url).netloc
    cookie = login_cookie.split(";")[0]
    bob = run(loop, gate.identify({"Host": host, "Origin": f"http://{host}", "Cookie": cookie}))
    assert isinstance(bob, HubUser) and (bob.name, bob.role) == ("bob", "student")
    # another state than the one that left, or the same code twice, do not log in
    forged = run(loop, login.finish(query.replace("state=", "state=x"), state))
    assert isinstance(forged, Refusal) and forged.status == 403
    reused = run(loop, login.finish(query, state))
    assert isinstance(reused, Refusal) and reused.status == 503


def test_address_in_a_spawned_servers_environment_finds_the_hub(
    hub: JupyterHubProcess, gate: CountedGate, loop: asyncio.AbstractEventLoop
) -> None:
    started = time.monotonic()
    hub.start_server("ada", timeout=unit(120))
    print(f"\nada's server started in {time.monotonic() - started:.1f} s")
    env = hub.server_environment("ada")
    assert env["JUPYTERHUB_USER"] == "ada"
    program = (
        "import json; from wslab.classroom import address; a = address();"
        " print(json.dumps({'url': a.url, 'headers': dict(a.headers), 'user': a.user}))"
    )
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    found = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=unit(60),
        check=True,
    )
    address = json.loads(found.stdout)
    service_url = str(hub.service(SERVICE).url).replace("http://", "ws://")
    assert address["url"] == f"{service_url}/services/{SERVICE}/chat"
    assert address["user"] == "ada"
    # the server's own token, as the kernel sends it, is let in as ada
    token = address["headers"]["Authorization"].removeprefix("token ")
    assert token == env["JUPYTERHUB_API_TOKEN"]
    ada = run(loop, gate.who(token))
    assert isinstance(ada, HubUser) and ada.name == "ada" and ada.role == "student"


def test_stopping_leaves_no_process_behind_and_starting_again_works(
    hub: JupyterHubProcess,
) -> None:
    """Runs last of the module's hub: it stops it (its proxy, service and ada's server with
    it), starts it again and stops it for good."""
    hub.adopt_children()
    pids = {hub._process.pid, *hub._children}  # type: ignore[union-attr]
    assert len(pids) >= 3  # the hub, its proxy, the service (and ada's server)
    hub.stop()
    alive = [pid for pid in pids if _alive(pid)]
    assert alive == []
    # started again on the same ports, with the same database; stopping twice is harmless
    hub.start()
    assert hub.api("GET", "/users/ada")["name"] == "ada"
    hub.stop()
    hub.stop()
    assert not hub.running


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


ORPHAN = """
import json, sys
from wslab.testing.hub import HubService, JupyterHubProcess
stand_in = HubService("wslab", command=[sys.executable, "-c", {stand_in!r}])
hub = JupyterHubProcess(services=[stand_in])
hub.start()
print(json.dumps([hub.directory, hub._process.pid, *hub._children]), flush=True)
if {killed!r}:
    sys.stdin.read()  # until it is killed
"""


@pytest.mark.parametrize("killed", [True, False], ids=["killed", "exits"])
def test_a_python_that_dies_or_exits_leaves_no_hub_behind(killed: bool) -> None:
    """SIGKILLed (the watchdog ends what it started) or exiting without stopping the
    hub (the finalizer does): the hub, its proxy and its service are gone."""
    program = ORPHAN.format(stand_in=STAND_IN, killed=killed)
    with subprocess.Popen(
        [sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            assert owner.stdout is not None
            directory, *pids = json.loads(owner.stdout.readline())
            assert len(pids) >= 3  # the hub, its proxy, the service
            if killed:
                owner.kill()
            owner.wait(unit(60))
        finally:
            if owner.poll() is None:
                owner.kill()
    deadline = time.monotonic() + unit(30)
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if _alive(pid)] == []
    shutil.rmtree(directory, ignore_errors=True)  # a killed Python could not remove it


def test_a_socket_through_the_proxy_outlives_a_hub_restart() -> None:
    """With the proxy beside the hub (as Zero to JupyterHub runs it), restarting the hub
    leaves the proxy and an open WebSocket to an unmanaged service through it alone."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    service = HubService(SERVICE)  # unmanaged: it runs here, in the test
    hub = JupyterHubProcess(services=[service], proxy_outside=True)
    url = urlsplit(str(hub.service(SERVICE).url))

    async def echo(socket: ServerConnection) -> None:
        async for message in socket:
            await socket.send(f"echo {message}")

    async def scenario() -> None:
        async with serve(echo, url.hostname, url.port):
            await asyncio.to_thread(hub.start)
            proxy = hub.proxy_pid
            public = hub.service_url(SERVICE).replace("http://", "ws://")
            async with connect(f"{public}echo") as socket:
                await socket.send("before")
                assert await socket.recv() == "echo before"
                await asyncio.to_thread(hub.restart_hub)
                await socket.send("after")
                assert await socket.recv() == "echo after"
            assert hub.proxy_pid == proxy is not None
            assert hub.api("GET", "/user")["name"] == "wslab-harness"

    try:
        asyncio.run(asyncio.wait_for(scenario(), unit(180)))
    finally:
        hub.close()
    assert not hub.running and hub.proxy_pid is None

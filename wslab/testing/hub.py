"""A real JupyterHub on loopback ports, for the classroom's tests, lessons and benchmarks.

::

    hub = JupyterHubProcess(
        services=[HubService("wslab", command=[...])],  # started and stopped by the hub
        roles=[{"name": "class", "scopes": ["access:services!service=wslab"],
                "groups": ["class"]}],
        groups={"class": ["ada", "bob"]},
        spawn=True,                                     # users may start servers
    )
    with hub:
        token = hub.mint_token("ada", scopes=["access:services!service=wslab"])
        hub.start_server("bob")
        environment = hub.server_environment("bob")    # what bob's kernels get

The hub runs ``DummyAuthenticator`` (any password logs in) with its own
``configurable-http-proxy`` (``c.ConfigurableHTTPProxy.command``: the npm program)
and an SQLite database in a temporary directory. Three loopback ports are picked
free: the public proxy (:attr:`public_url`), the proxy's API and the hub itself
(:attr:`api_url`). The harness talks to the hub's REST API as a service of its own
(``wslab-harness``) whose role may manage users, groups, tokens and servers
(:class:`HubClient`). With ``proxy_outside=True`` the harness runs the proxy beside
the hub, so that :meth:`JupyterHubProcess.restart_hub` leaves it and its sockets up.

Nothing is left behind: the hub runs in a session of its own, watched like
:class:`~wslab.testing.RedisServer`; the proxy, the managed services and the users'
servers it starts (each in a session of its own) are found by process id and
stopped with it, also when the interpreter exits or is killed.

Standard library only (``urllib`` for the REST API). Every public method may be
called from any thread; calls on one object are serialised by its lock.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn

from ..errors import ClassroomError, MissingProgramError, ProcessStartError
from .processes import _end, _free_port, _read_lines, _spawn, _tell_watchdog

__all__ = [
    "HUB_INSTALL_HINT",
    "PROXY_INSTALL_HINT",
    "HubAPIError",
    "HubClient",
    "HubService",
    "JupyterHubProcess",
    "have_jupyterhub",
    "missing_hub_programs",
]

#: How to install the ``jupyterhub`` program (the hub itself, from PyPI).
HUB_INSTALL_HINT = 'install it with `pip install "wslab[classroom]"`'
#: How to install ``configurable-http-proxy`` (the hub's proxy, from the npm registry).
PROXY_INSTALL_HINT = (
    "install it with `npm install -g configurable-http-proxy@5` (Node.js and npm first:"
    " `sudo apt-get install nodejs npm`)"
)
#: The service the harness calls the REST API as.
HARNESS = "wslab-harness"
_HARNESS_SCOPES = [
    "admin:users",
    "admin:groups",
    "admin:servers",
    "tokens",
    "list:services",
    "read:services",
    "read:roles",
]
_POLL = 0.05
_STOP_TIMEOUT = 10.0


def have_jupyterhub() -> bool:
    """Whether both ``jupyterhub`` and ``configurable-http-proxy`` can be run. Any thread."""
    return shutil.which("jupyterhub") is not None and (
        shutil.which("configurable-http-proxy") is not None
    )


def missing_hub_programs() -> str | None:
    """One line saying which hub program is missing and how to install it; ``None`` if none."""
    for program, hint in (
        ("configurable-http-proxy", PROXY_INSTALL_HINT),
        ("jupyterhub", HUB_INSTALL_HINT),
    ):
        if shutil.which(program) is None:
            return str(MissingProgramError(program, hint))
    return None


@dataclass(frozen=True)
class HubService:
    """One JupyterHub service (``c.JupyterHub.services``).

    Args:
        name: its name; the proxy routes ``/services/<name>/`` to it.
        command: the program the hub starts and stops (a *managed* service: the hub
            waits until it answers HTTP without an error, and exits if it does not);
            ``None`` for a service that runs beside the hub (*unmanaged*: start it
            before the hub, or the hub waits about 30 s for it and goes on without).
        url: where it listens (``http://127.0.0.1:PORT``); a free loopback port is
            picked when omitted. ``""``: a service without a URL (an API client only).
        environment: variables the hub sets for a managed service.
        scopes: the scopes of the role given to the service (for example
            ``admin:users`` and ``tokens`` to mint users' tokens, ``servers``).
        api_token: its API token; a random one when omitted (read it back from
            :meth:`JupyterHubProcess.service`).
    """

    name: str
    command: Sequence[str] | None = None
    url: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    scopes: Sequence[str] = ()
    api_token: str | None = None


def _descendants(root: int) -> list[int]:
    """The process ids below ``root`` (Linux ``/proc``; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _environment_of(pid: int) -> dict[str, str]:
    """The environment process ``pid`` started with (Linux ``/proc``)."""
    with open(f"/proc/{pid}/environ", "rb") as file:
        pairs = file.read().split(b"\0")
    entries = (pair.decode("utf-8", "replace").partition("=") for pair in pairs if pair)
    return {name: value for name, _, value in entries}


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``); ``None`` if gone.

    A process id and its start time name one process: an id reused later does not match.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _kill_process(pid: int, started: str | None) -> None:
    """SIGKILL ``pid``'s process group if it leads one, else ``pid``, unless it is gone
    (or its id now names another process). Best effort."""
    if started is None or _started(pid) != started:
        _tell_watchdog("-", pid)
        return
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    _tell_watchdog("-", pid)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands a redirect back as an error, so its ``Location`` can be read."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HubAPIError(ClassroomError):
    """The hub's REST API answered with an error status (``.status``, ``.body``).

    A :class:`~wslab.errors.ClassroomError`, so also a ``RuntimeError``.
    """

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {body[:300]}")
        self.status = status
        self.body = body


class HubClient:
    """A hub's REST API, as the harness, a test or a lesson uses it (standard library only).

    Args:
        public_url: the proxy's public address (``http://HOST:PORT/``).
        api_url: the hub's API (``http://HOST:PORT/hub/api``).
        api_token: a token whose scopes allow what is called (a service's, an admin's).

    Any thread.
    """

    def __init__(self, public_url: str, api_url: str, api_token: str) -> None:
        self.public_url = public_url
        self.api_url = api_url
        self.api_token = api_token

    def service_url(self, name: str) -> str:
        """The service's address through the public proxy: ``.../services/<name>/``."""
        return f"{self.public_url}services/{name}/"

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        url: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Call the hub's REST API (``path`` below ``/hub/api``); the decoded JSON reply.

        ``token`` defaults to the harness's own. Raises :class:`HubAPIError` for an
        error status, :class:`OSError` when nothing answers.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{url or self.api_url}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"token {token or self.api_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise HubAPIError(method, path, error.code, error.read().decode()) from None
        return json.loads(text) if text.strip() else None

    def create_user(self, name: str, *, admin: bool = False) -> dict[str, Any]:
        """Create hub user ``name`` (a hub admin if ``admin``); its user model."""
        self.api("POST", f"/users/{name}")
        if admin:
            self.api("PATCH", f"/users/{name}", {"admin": True})
        model: dict[str, Any] = self.api("GET", f"/users/{name}")
        return model

    def create_group(self, name: str, users: Sequence[str] = ()) -> None:
        """Create hub group ``name`` (if missing) and add ``users`` to it."""
        with contextlib.suppress(HubAPIError):  # it exists already
            self.api("POST", f"/groups/{name}")
        if users:
            self.api("POST", f"/groups/{name}/users", {"users": list(users)})

    def mint_token(
        self, user: str, *, scopes: Sequence[str] | None = None, expires_in: int | None = None
    ) -> str:
        """A new API token of ``user`` (limited to ``scopes`` if given); the token itself."""
        body: dict[str, Any] = {"note": "wslab test"}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if expires_in is not None:
            body["expires_in"] = expires_in
        reply = self.api("POST", f"/users/{user}/tokens", body)
        return str(reply["token"])

    def browser_login(self, user: str) -> urllib.request.OpenerDirector:
        """Log ``user`` in at ``/hub/login`` as a browser does; that browser (its cookies),
        which hands redirects back for :meth:`follow` to read."""
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(jar), _NoRedirect()
        )
        with browser.open(f"{self.public_url}hub/login", timeout=30) as page:
            page.read()
        xsrf = next(cookie.value for cookie in jar if cookie.name == "_xsrf")
        form = {"username": user, "password": "any", "_xsrf": xsrf}
        self.follow(browser, "/hub/login", urllib.parse.urlencode(form).encode())
        return browser

    def follow(
        self, browser: urllib.request.OpenerDirector, path: str, data: bytes | None = None
    ) -> str:
        """Open ``path`` (from the root) on the public proxy with ``browser``; the
        ``Location`` of the redirect it answers. :class:`HubAPIError` for another answer."""
        try:
            with browser.open(f"{self.public_url}{path.lstrip('/')}", data=data, timeout=30) as r:
                raise HubAPIError("GET", path, r.status, r.read().decode()[:300])
        except urllib.error.HTTPError as reply:
            if reply.code not in (301, 302, 303):
                raise HubAPIError("GET", path, reply.code, reply.read().decode()) from None
            return str(reply.headers["Location"])

    def oauth_code(self, user: str, service: str) -> str:
        """Log ``user`` in and let the hub authorise ``service`` for them, as a browser
        does; the OAuth code the hub sends back to the service's callback.

        The service exchanges it for the user's token (``HubOAuth.token_for_code``).
        Raises :class:`HubAPIError` when the hub refuses (say, a user without access).
        """
        browser = self.browser_login(user)
        callback = f"/services/{service}/oauth_callback"
        query = urllib.parse.urlencode(
            {
                "client_id": f"service-{service}",
                "redirect_uri": callback,
                "response_type": "code",
                "state": secrets.token_hex(8),
            }
        )
        location = self.follow(browser, f"/hub/api/oauth2/authorize?{query}")
        codes = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("code")
        if not location.startswith(callback) or not codes:
            raise HubAPIError("GET", "/oauth2/authorize", 302, location)
        return codes[0]


class JupyterHubProcess(HubClient):
    """A JupyterHub with its proxy on free loopback ports, in a directory of its own.

    :attr:`public_url` is the proxy's public address (what a browser opens),
    :attr:`api_url` the hub's REST API (``JUPYTERHUB_API_URL``), :attr:`api_token`
    the harness's own token; the REST methods are :class:`HubClient`'s.

    Args:
        services: the hub's services (managed or not); the harness's own is added.
        roles: ``c.JupyterHub.load_roles`` entries as JupyterHub spells them
            (``{"name", "scopes", "users", "groups", "services"}``). The roles of
            the services' ``scopes`` are added.
        admin_users: users made hub admins.
        groups: hub groups and their members (``c.JupyterHub.load_groups``); the
            users are created with them.
        proxy_outside: run the proxy beside the hub rather than from it (as Zero to
            JupyterHub does): it, its routes, the users' servers and the sockets
            through it then outlive :meth:`restart_hub`.
        spawn: let users start single-user servers (``SimpleLocalProcessSpawner``,
            ``jupyterhub-singleuser`` of this Python, ``--allow-root`` when run as root).
        config: more ``jupyterhub_config.py`` lines, appended as they are.
        executable / proxy: the two programs, names on ``PATH`` or paths.

    Raises :class:`MissingProgramError` (when constructed) if either program is missing.
    """

    def __init__(
        self,
        *,
        services: Sequence[HubService] = (),
        roles: Sequence[Mapping[str, Any]] = (),
        admin_users: Sequence[str] = (),
        groups: Mapping[str, Sequence[str]] | None = None,
        spawn: bool = False,
        proxy_outside: bool = False,
        config: str = "",
        executable: str = "jupyterhub",
        proxy: str = "configurable-http-proxy",
    ) -> None:
        self.proxy = shutil.which(proxy)
        if self.proxy is None:
            raise MissingProgramError(proxy, PROXY_INSTALL_HINT)
        found = shutil.which(executable)
        if found is None:
            raise MissingProgramError(executable, HUB_INSTALL_HINT)
        self.executable = found
        # Free loopback ports now (taken by the hub when it starts), kept across restarts.
        self.public_port, self.proxy_api_port, self.hub_port = (_free_port() for _ in "abc")
        super().__init__(
            f"http://127.0.0.1:{self.public_port}/",
            f"http://127.0.0.1:{self.hub_port}/hub/api",
            secrets.token_hex(32),
        )
        harness = HubService(HARNESS, url="", scopes=_HARNESS_SCOPES, api_token=self.api_token)
        self.services = {s.name: self._complete(s) for s in (*services, harness)}
        self.roles = list(roles)
        self.admin_users = tuple(admin_users)
        self.groups = {name: list(users) for name, users in (groups or {}).items()}
        self.spawn = spawn
        self.proxy_outside = proxy_outside
        self._proxy_token = secrets.token_hex(32)
        self._outside_proxy: subprocess.Popen[bytes] | None = None
        self.extra_config = config
        self.directory = tempfile.mkdtemp(prefix="wslab-hub-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)
        self.log_path = os.path.join(self.directory, "jupyterhub.log")
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._children: dict[int, str | None] = {}
        self._reaper: weakref.finalize[..., JupyterHubProcess] | None = None

    @staticmethod
    def _complete(service: HubService) -> HubService:
        """``service`` with a URL and an API token picked where it has none."""
        url = f"http://127.0.0.1:{_free_port()}" if service.url is None else service.url
        token = service.api_token or secrets.token_hex(32)
        return HubService(
            service.name,
            command=service.command,
            url=url,
            environment=dict(service.environment),
            scopes=tuple(service.scopes),
            api_token=token,
        )

    # ------------------------------------------------------------------ state

    def service(self, name: str) -> HubService:
        """The service called ``name``, with its URL and API token filled in."""
        return self.services[name]

    @property
    def running(self) -> bool:
        """Whether the hub process is alive."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def hub_pid(self) -> int | None:
        """The hub process's id while it runs (its proxy and managed services are its
        children, unless the proxy runs beside it)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the hub's log (its stdout and stderr)."""
        return _read_lines(self.log_path, 0, lines)

    # ------------------------------------------------------------------ configuration

    def config_text(self) -> str:
        """The ``jupyterhub_config.py`` this hub runs with."""
        return _config_text(self)

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 60.0) -> JupyterHubProcess:
        """Start the hub (and so its proxy and managed services). Idempotent.

        Returns once the hub's API answers through the public proxy with the
        harness's token. Raises :class:`ProcessStartError` (ending with the hub's
        log) if it exits or does not answer within ``timeout`` seconds; nothing
        is left running then.
        """
        with self._lock:
            if self.running:
                return self
            if self.proxy_outside:
                self._start_outside_proxy(timeout)
            config_path = os.path.join(self.directory, "jupyterhub_config.py")
            with open(config_path, "w", encoding="utf-8") as file:
                file.write(self.config_text())
            env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self._proxy_token}
            with open(self.log_path, "ab") as log:
                process = _spawn(
                    [self.executable, "-f", config_path],
                    cwd=self.directory,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._process = process
            self._reaper = weakref.finalize(self, _reap, process, self._children)
            try:
                self._wait_ready(process, timeout)
            except ProcessStartError:
                self.stop()
                raise
            self.adopt_children()
            return self

    def _start_outside_proxy(self, timeout: float) -> None:
        """Start the proxy beside the hub unless it runs; return once its API listens."""
        running = self._outside_proxy
        if running is not None and running.poll() is None:
            return
        command = [
            str(self.proxy),
            "--ip", "127.0.0.1",
            "--port", str(self.public_port),
            "--api-ip", "127.0.0.1",
            "--api-port", str(self.proxy_api_port),
            "--error-target", f"http://127.0.0.1:{self.hub_port}/hub/error",
        ]  # fmt: skip
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self._proxy_token}
        with open(self.log_path, "ab") as log:
            process = _spawn(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._outside_proxy = process
        self._children[process.pid] = _started(process.pid)
        deadline = time.monotonic() + timeout
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.proxy_api_port), timeout=1.0),
            ):
                return
            if process.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                self._fail("could not start: configurable-http-proxy did not listen")
            time.sleep(_POLL)

    def restart_hub(self, timeout: float = 60.0) -> JupyterHubProcess:
        """Stop the hub process alone (SIGTERM) and start it again on the same ports and
        database. With ``proxy_outside=True`` the proxy, its routes, the users' servers
        and the sockets through the proxy stay up meanwhile; the hub restarts its
        managed services itself.
        """
        with self._lock:
            process = self._process
            if process is not None:
                self.adopt_children()
                if self._reaper is not None:
                    self._reaper.detach()
                    self._reaper = None
                _end(process, _STOP_TIMEOUT)
            return self.start(timeout)

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait until the hub answers on its own port, then through the public proxy."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        for base in (self.api_url, f"{self.public_url}hub/api"):
            while True:
                if process.poll() is not None:
                    self._fail(f"exited with code {process.returncode}")
                try:
                    self.api("GET", "/user", url=base, timeout=2.0)
                    break
                except (OSError, HubAPIError) as error:
                    last = str(error)
                if time.monotonic() >= deadline:
                    self._fail(f"did not answer within {timeout:g} s (last: {last})")
                time.sleep(_POLL)

    def _fail(self, why: str) -> NoReturn:
        """Raise :class:`ProcessStartError` with the hub's last lines (not the proxy's)."""
        lines = _read_lines(self.log_path, 0, 2000).splitlines()
        ours = [line for line in lines if line.startswith("[")][-15:]
        tail = "\n".join(ours) or "(its log is empty)"
        raise ProcessStartError(f"jupyterhub {why}; last lines of {self.log_path}:\n{tail}")

    def adopt_children(self) -> None:
        """Note every process the hub started so far (proxy, services, servers).

        They run in sessions of their own; noted ones are killed by :meth:`stop`,
        at interpreter exit, or by the watchdog if this interpreter dies.
        """
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                return
            for pid in _descendants(process.pid):
                if pid not in self._children:
                    self._children[pid] = _started(pid)
                    with contextlib.suppress(OSError):
                        if os.getpgid(pid) == pid:
                            _tell_watchdog("+", pid)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop the hub politely (it stops its proxy, services and servers), then kill
        whatever of them still runs. Its exit code; ``None`` if it never started.
        Safe to repeat.
        """
        with self._lock:
            process = self._process
            code = None
            if process is not None:
                self.adopt_children()
                if self._reaper is not None:
                    self._reaper.detach()
                    self._reaper = None
                code = _end(process, timeout)
                proxy = self._proxy_pid()
                if proxy is not None and proxy not in self._children:
                    self._children[proxy] = _started(proxy)
            _reap_children(self._children)
            if self._outside_proxy is not None:
                self._outside_proxy.wait()
                self._outside_proxy = None
            return code

    @property
    def proxy_pid(self) -> int | None:
        """The proxy's process id (beside the hub, or started by it); ``None`` if unknown."""
        outside = self._outside_proxy
        if outside is not None:
            return outside.pid
        return None if self.proxy_outside else self._proxy_pid()

    def _proxy_pid(self) -> int | None:
        path = os.path.join(self.directory, "proxy.pid")
        with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as file:
            return int(file.read().strip())
        return None

    def close(self) -> None:
        """Stop it and remove its directory. Idempotent."""
        with self._lock:
            self.stop()
            self._cleanup()

    def __enter__(self) -> JupyterHubProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<JupyterHubProcess {self.public_url} {state}>"

    def start_server(self, user: str, timeout: float = 60.0) -> dict[str, Any]:
        """Start ``user``'s default single-user server; its server model once it is ready."""
        with contextlib.suppress(HubAPIError):  # 400: it is already running
            self.api("POST", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while True:
            model: dict[str, Any] = self.api("GET", f"/users/{user}")
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                self.adopt_children()
                return dict(server)
            if time.monotonic() >= deadline:
                tail = self.log_tail(20)
                raise ProcessStartError(f"{user}'s server was not ready in {timeout:g} s:\n{tail}")
            time.sleep(_POLL * 4)

    def stop_server(self, user: str, timeout: float = 30.0) -> None:
        """Stop ``user``'s default server and wait until the hub says it stopped."""
        with contextlib.suppress(HubAPIError):
            self.api("DELETE", f"/users/{user}/server")
        deadline = time.monotonic() + timeout
        while self.api("GET", f"/users/{user}").get("servers", {}).get(""):
            if time.monotonic() >= deadline:
                raise ProcessStartError(f"{user}'s server did not stop in {timeout:g} s")
            time.sleep(_POLL * 4)

    def server_environment(self, user: str) -> dict[str, str]:
        """The environment ``user``'s running server was started with (as its kernels
        inherit it), read from its process. Linux only.

        Raises :class:`~wslab.errors.ClassroomError` when ``user`` has no running server.
        """
        with self._lock:
            process = self._process
            pids = [] if process is None else _descendants(process.pid)
        for pid in pids:
            with contextlib.suppress(OSError):
                env = _environment_of(pid)
                if env.get("JUPYTERHUB_USER") == user and "JUPYTERHUB_SERVER_NAME" in env:
                    return env
        raise ClassroomError(f"no running server of {user!r} under this hub")


def _config_text(hub: JupyterHubProcess) -> str:
    """The ``jupyterhub_config.py`` of ``hub``: its ports, services, roles, spawner."""
    services: list[dict[str, Any]] = []
    roles = list(hub.roles)
    for service in hub.services.values():
        entry: dict[str, Any] = {"name": service.name, "api_token": service.api_token}
        if service.url:
            entry["url"] = service.url
            entry["oauth_no_confirm"] = True
        if service.command is not None:
            entry["command"] = list(service.command)
            entry["environment"] = dict(service.environment)
        services.append(entry)
        if service.scopes:
            roles.append(
                {
                    "name": f"{service.name}-service",
                    "scopes": list(service.scopes),
                    "services": [service.name],
                }
            )
    directory = hub.directory
    lines = [
        f"c.JupyterHub.bind_url = {f'http://127.0.0.1:{hub.public_port}'!r}",
        "c.JupyterHub.hub_ip = '127.0.0.1'",
        f"c.JupyterHub.hub_port = {hub.hub_port}",
        f"c.JupyterHub.db_url = {'sqlite:///' + os.path.join(directory, 'hub.sqlite')!r}",
        f"c.JupyterHub.cookie_secret_file = {os.path.join(directory, 'cookie_secret')!r}",
        "c.JupyterHub.authenticator_class = 'dummy'",
        "c.Authenticator.allow_all = True",
        f"c.Authenticator.admin_users = {set(hub.admin_users)!r}",
        f"c.ConfigurableHTTPProxy.command = [{hub.proxy!r}]",
        f"c.ConfigurableHTTPProxy.api_url = {f'http://127.0.0.1:{hub.proxy_api_port}'!r}",
        f"c.ConfigurableHTTPProxy.pid_file = {os.path.join(directory, 'proxy.pid')!r}",
        f"c.JupyterHub.services = {services!r}",
        f"c.JupyterHub.load_roles = {roles!r}",
        f"c.JupyterHub.load_groups = { {g: {'users': u} for g, u in hub.groups.items()}!r}",
    ]
    if hub.proxy_outside:
        lines += [
            "c.ConfigurableHTTPProxy.should_start = False",
            "c.JupyterHub.cleanup_proxy = False",
            "c.JupyterHub.cleanup_servers = False",
        ]
    if hub.spawn:
        singleuser = os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")
        home = os.path.join(directory, "home", "{username}")
        root = hasattr(os, "geteuid") and os.geteuid() == 0
        lines += [
            "c.JupyterHub.spawner_class = 'simple'",
            f"c.Spawner.cmd = [{singleuser!r}]",
            f"c.Spawner.args = {['--allow-root'] if root else []!r}",
            f"c.SimpleLocalProcessSpawner.home_dir_template = {home!r}",
            "c.Spawner.start_timeout = 60",
            "c.Spawner.http_timeout = 60",
        ]
    return "\n".join(lines) + "\n" + hub.extra_config + "\n"


def _reap_children(children: dict[int, str | None]) -> None:
    """Kill what the hub started and left running."""
    for pid, started in children.items():
        _kill_process(pid, started)
    children.clear()


def _reap(process: subprocess.Popen[bytes], children: dict[int, str | None]) -> None:
    """A finalizer: the hub outlived its owner (garbage or interpreter exit)."""
    _end(process, 2.0)
    _reap_children(children)

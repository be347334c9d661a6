"""The classroom service's door: its routes under the hub's prefix, and who each socket is.

``python -m wslab serve --hub`` serves, below the service prefix the hub gives it
(``JUPYTERHUB_SERVICE_PREFIX``, ``/services/<name>/``)::

    <prefix>                 the chat page; a browser without the login cookie is
                             sent to the hub's login first (HubLogin.begin)
    <prefix>oauth_callback   where the hub sends it back (HubLogin.finish), then to the page
    <prefix>chat             the WebSocket: HubGate decides who it is before it exists
                             (403 or 503 with one line), and a kicked user gets 403
    <prefix>chat.js ...      the page's other files

Every other path gets 404 (the hub's check that a managed service runs accepts it).
No token is ever put in a URL or a log line: the page's login ends in a signed,
HttpOnly cookie, and the gate logs the first digits of a token's hash only.

Server thread only (the event loop the chat runs on).
"""

from __future__ import annotations

import email.utils
import http
import logging
import math
import os
import secrets
import weakref
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .. import pages
from ..errors import ConfigurationError
from ..moderation import ClassRoom
from ..room import Room
from .auth import HubGate, HubUser, Refusal
from .login import HubLogin

__all__ = ["REQUIRED_VARIABLES", "HubDoor"]

log = logging.getLogger("wslab.classroom")

#: The variables a hub gives its services that classroom mode needs.
REQUIRED_VARIABLES = (
    "JUPYTERHUB_SERVICE_NAME",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_CLIENT_ID",
    "JUPYTERHUB_SERVICE_URL",
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_OAUTH_CALLBACK_URL",
)

#: Seconds a kicked user must still wait, for a name (0: they may come in).
KickedFor = Callable[[str], float]


class HubDoor:
    """The classroom service's HTTP side: the page, its login, the socket's identity.

    Args:
        gate: decides who a handshake is (:class:`~wslab.classroom.HubGate`).
        login: the page's login through the hub (:class:`~wslab.classroom.HubLogin`).
        prefix: the service prefix, ``/services/<name>/``.
        kicked_for: seconds a kicked user must still wait (the room's rule).

    Server thread only.
    """

    def __init__(self, gate: HubGate, login: HubLogin, prefix: str, kicked_for: KickedFor) -> None:
        self.gate = gate
        self.login = login
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.kicked_for = kicked_for
        self._users: weakref.WeakKeyDictionary[ServerConnection, HubUser] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_environment(cls, teacher_groups: Iterable[str], kicked_for: KickedFor) -> HubDoor:
        """The door of the service the hub describes in its ``JUPYTERHUB_*`` variables.

        Raises :class:`~wslab.errors.ConfigurationError` naming the missing variables,
        :class:`~wslab.errors.MissingExtraError` without the ``classroom`` extra.
        """
        missing = [name for name in REQUIRED_VARIABLES if not os.environ.get(name)]
        if missing:
            raise ConfigurationError(
                f"--hub needs the variables a hub gives its services; not set: {', '.join(missing)}"
            )
        # The login cookie's secret lives as long as the service: a restart logs
        # browsers in again (the hub answers at once for a user already logged in).
        secret = secrets.token_bytes(32)
        gate = HubGate.from_environment(teacher_groups=teacher_groups, cookie_secret=secret)
        prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
        login = HubLogin.from_hub_auth(gate.hub_auth, secret)
        return cls(gate, login, prefix, kicked_for)

    @property
    def service(self) -> str:
        """The service's name on the hub."""
        return self.gate.service

    @property
    def socket_path(self) -> str:
        """The WebSocket's path: ``<prefix>chat``."""
        return self.prefix + pages.CHAT_PATH.lstrip("/")

    async def aclose(self) -> None:
        """Release the hub client's HTTP session (on the loop that used it)."""
        await self.gate.aclose()

    # ------------------------------------------------------------------ requests

    async def respond(self, connection: ServerConnection, request: Request) -> Response | None:
        """The answer to an HTTP request; ``None`` for a handshake let in (its hub user
        is then :meth:`seat`'s)."""
        path = pages.path_of(request)
        if path == self.prefix.rstrip("/"):
            return _redirect(self.prefix)
        if not path.startswith(self.prefix):
            return _plain(http.HTTPStatus.NOT_FOUND, f"Not found. The chat is at {self.prefix}.")
        rest = "/" + path[len(self.prefix) :]
        if rest == pages.CHAT_PATH:
            return await self._handshake(connection, request)
        if rest == "/oauth_callback":
            return await self._callback(request)
        if rest in ("/", "/index.html"):
            return await self._page(request)
        if rest in pages.STATIC_FILES:
            return pages.respond(rest)
        return _plain(http.HTTPStatus.NOT_FOUND, f"Not found. The chat is at {self.prefix}.")

    def seat(self, connection: ServerConnection, room: Room) -> bool:
        """Tell ``room`` (a :class:`~wslab.moderation.ClassRoom`) which hub user a socket
        let in belongs to; ``False`` if the handshake was not let in here."""
        user = self._users.pop(connection, None)
        if user is None or not isinstance(room, ClassRoom):
            return False
        room.admit(connection, user.name, "teacher" if user.is_teacher else "student")
        return True

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        user = await self.gate.identify(request.headers)
        if isinstance(user, Refusal):
            return _plain(http.HTTPStatus(user.status), user.reason)
        wait = self.kicked_for(user.name)
        if wait > 0:
            reason = f"removed by the teacher: you may join again in {math.ceil(wait)} s"
            return _plain(http.HTTPStatus.FORBIDDEN, reason)
        self._users[connection] = user
        return None

    async def _page(self, request: Request) -> Response:
        """The chat page, for a browser logged in through the hub; else to the hub's login."""
        headers = request.headers
        token = self.gate.cookie_token(headers, check_origin=False)
        if isinstance(token, str):
            user = await self.gate.identify({"Authorization": f"token {token}"})
            if isinstance(user, HubUser):
                config = {"socketPath": self.socket_path, "classroom": True}
                return pages.respond("/", config=config)
            if user.status != http.HTTPStatus.FORBIDDEN:
                return _plain(http.HTTPStatus(user.status), user.reason)
        location, state_cookie = self.login.begin(request.path, secure=_over_https(request))
        return _redirect(location, state_cookie)

    async def _callback(self, request: Request) -> Response:
        query = urlsplit(request.path).query
        cookies = _header(request, "Cookie")
        answer = await self.login.finish(query, cookies, secure=_over_https(request))
        if isinstance(answer, Refusal):
            return _plain(http.HTTPStatus(answer.status), answer.reason)
        next_path, login_cookie = answer
        return _redirect(next_path, login_cookie)


def _over_https(request: Request) -> bool:
    """Whether the browser reached the proxy over HTTPS (its cookies are then ``Secure``)."""
    return (_header(request, "X-Forwarded-Proto") or "").lower() == "https"


def _header(request: Request, name: str) -> str | None:
    """A request's header, ``None`` when it is missing or sent more than once."""
    values = request.headers.get_all(name)
    return values[0] if len(values) == 1 else None


def _headers(content_type: str, length: int) -> Headers:
    return Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
    )


def _plain(status: http.HTTPStatus, line: str) -> Response:
    """A one-line text answer."""
    body = f"{line}\n".encode()
    headers = _headers("text/plain; charset=utf-8", len(body))
    return Response(status.value, status.phrase, headers, body)


def _redirect(location: str, cookie: str | None = None) -> Response:
    """302 to ``location``, setting ``cookie`` if given."""
    status = http.HTTPStatus.FOUND
    headers = _headers("text/plain; charset=utf-8", 0)
    headers["Location"] = location
    if cookie is not None:
        headers["Set-Cookie"] = cookie
    return Response(status.value, status.phrase, headers, b"")

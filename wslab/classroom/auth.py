"""Who is at the door: a handshake's hub user, decided from its headers before a socket exists.

A chat that runs as a JupyterHub service takes its users' identity from the hub.
:meth:`HubGate.identify` reads the credential a handshake carries:

- ``Authorization: token T`` (or ``bearer T``): a kernel's or a script's hub API token;
- the hub's OAuth cookie, which the service's page sets after the hub's login
  (a browser), signed with the service's cookie secret; only accepted with an
  ``Origin`` of the same host, so another site's page cannot ride on it.

It asks the hub who the token belongs to (``GET /hub/api/user``, through
``jupyterhub.services.auth.HubAuth``) and answers a :class:`HubUser` (name, admin,
groups, scopes, ``"teacher"`` or ``"student"``) or a :class:`Refusal` (an HTTP
status and one line) for a missing or unknown credential, a credential of a
service rather than a user, or a user without ``access:services!service=<name>``.

The hub's answers are cached for :data:`CACHE_SECONDS` (60 s), at most
:data:`CACHE_SIZE` tokens, keyed by the SHA-256 of the token (never the token
itself, in memory keys or in logs). Look-ups of one token that overlap share one
hub request, so a class of 300 joining at once, reconnecting or opening tabs,
makes at most one hub request per token per cache period. A token the hub revokes
keeps working for at most that period. While the hub cannot be reached, tokens
whose answer is still in the cache keep being accepted and others get 503.

Teachers are the hub's admins and the members of the groups named in
``teacher_groups``; everyone else with access is a student.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from ..clock import Clock, SystemClock
from ..errors import MissingExtraError

__all__ = [
    "CACHE_SECONDS",
    "CACHE_SIZE",
    "HubGate",
    "HubUser",
    "Refusal",
    "TokenCache",
    "token_key",
]

#: How long the hub's answer about a token is trusted, in seconds.
CACHE_SECONDS = 60.0
#: How many tokens' answers are kept at most (the least recently used go first).
CACHE_SIZE = 10_000

log = logging.getLogger("wslab.classroom")

#: Asks the hub about a token: its user model, or ``None`` for a token it does not know.
Lookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]

_AUTHORIZATION = re.compile(r"(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)


def token_key(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what the cache and the logs know of it."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class HubUser:
    """A hub user let in, with what the chat needs to know of them."""

    name: str
    admin: bool
    groups: frozenset[str]
    scopes: frozenset[str]
    role: str  # "teacher" or "student"

    @property
    def is_teacher(self) -> bool:
        """Whether this user may moderate (a hub admin or in a teachers' group)."""
        return self.role == "teacher"


@dataclass(frozen=True)
class Refusal:
    """A handshake turned away: the HTTP status to answer and one line saying why."""

    status: int
    reason: str


class TokenCache:
    """The hub's answers by token key, each trusted for ``seconds``; at most ``size`` kept.

    Pure (time enters as ``now``); one thread at a time.
    """

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE) -> None:
        if seconds < 0 or size < 1:
            raise ValueError("a cache needs seconds >= 0 and size >= 1")
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[str, tuple[float, Mapping[str, Any] | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> tuple[bool, Mapping[str, Any] | None]:
        """``(True, model)`` for a fresh entry (``model`` ``None``: an unknown token);
        ``(False, None)`` when the hub must be asked."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        stored, model = entry
        if now - stored >= self.seconds:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, model

    def put(self, key: str, model: Mapping[str, Any] | None, now: float) -> None:
        """Keep the hub's answer about ``key`` from ``now`` on."""
        self._entries[key] = (now, model)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class HubGate:
    """Decides who a handshake is, from its headers, with the hub's help.

    Args:
        service: the chat's service name; users need ``access:services!service=<it>``.
        lookup: asks the hub about a token (see :meth:`from_environment` for the real one).
        teacher_groups: hub groups whose members are teachers (besides the hub's admins).
        cookie_name / cookie_secret: the OAuth cookie the service's page sets, and the
            secret it is signed with; cookies are ignored without them.
        cache: the token cache (:data:`CACHE_SECONDS`, :data:`CACHE_SIZE` by default).
        clock: where the cache's time comes from.
        close: releases what ``lookup`` holds (its HTTP session), for :meth:`aclose`.

    Call :meth:`identify` and :meth:`aclose` from the event loop's thread only.
    """

    def __init__(
        self,
        service: str,
        lookup: Lookup,
        *,
        teacher_groups: Iterable[str] = (),
        cookie_name: str | None = None,
        cookie_secret: bytes | None = None,
        cache: TokenCache | None = None,
        clock: Clock | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.access_scopes = frozenset({"access:services", f"access:services!service={service}"})
        self.teacher_groups = frozenset(teacher_groups)
        self.cookie_name = cookie_name
        self.cookie_secret = cookie_secret
        self.cache = cache or TokenCache()
        self.clock: Clock = clock or SystemClock()
        #: How many requests this gate made to the hub.
        self.hub_requests = 0
        #: The ``HubOAuth`` behind :meth:`from_environment`'s gate (``None`` otherwise),
        #: for :meth:`HubLogin.from_hub_auth <wslab.classroom.HubLogin.from_hub_auth>`.
        self.hub_auth: Any = None
        self._lookup = lookup
        self._close = close
        self._pending: dict[str, asyncio.Future[Mapping[str, Any] | None]] = {}

    @classmethod
    def from_environment(
        cls,
        *,
        teacher_groups: Iterable[str] = (),
        cookie_secret: bytes | None = None,
        cache: TokenCache | None = None,
        clock: Clock | None = None,
    ) -> HubGate:
        """A gate for the service the hub describes in ``JUPYTERHUB_*`` variables.

        Uses ``HubOAuth`` (``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``,
        ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_CLIENT_ID``). Raises
        :class:`MissingExtraError` without ``jupyterhub``, :class:`KeyError` naming
        the variable the hub did not set.
        """
        try:
            from jupyterhub.services.auth import HubOAuth
        except ImportError:
            raise MissingExtraError(
                "the classroom (serve --hub)", "jupyterhub", "classroom"
            ) from None
        service = os.environ["JUPYTERHUB_SERVICE_NAME"]
        hub = HubOAuth(
            api_url=os.environ["JUPYTERHUB_API_URL"],
            api_token=os.environ["JUPYTERHUB_API_TOKEN"],
            cache_max_age=0,
        )

        async def lookup(token: str) -> Mapping[str, Any] | None:
            model: Mapping[str, Any] | None = await hub.user_for_token(
                token, use_cache=False, sync=False
            )
            return model

        async def close() -> None:
            from jupyterhub.httpclient import JupyterHubHTTPClient

            await JupyterHubHTTPClient.loop_instance().close()

        gate = cls(
            service,
            lookup,
            teacher_groups=teacher_groups,
            cookie_name=str(hub.cookie_name) if os.environ.get("JUPYTERHUB_CLIENT_ID") else None,
            cookie_secret=cookie_secret,
            cache=cache,
            clock=clock,
            close=close,
        )
        gate.hub_auth = hub
        return gate

    async def aclose(self) -> None:
        """Release the hub client's HTTP session (on the loop that used it). Idempotent."""
        if self._close is not None:
            await self._close()

    # ------------------------------------------------------------------ deciding

    async def identify(self, headers: Mapping[str, str]) -> HubUser | Refusal:
        """The hub user a handshake with these headers belongs to, or why it is refused.

        ``headers`` maps names to values case-insensitively (websockets' ``Headers``,
        or a plain dict with the usual capitalisation). Never raises for bad input.
        """
        try:
            token = self._credential(headers)
        except (LookupError, ValueError):  # a header sent twice (websockets' Headers)
            token = Refusal(403, "send one Authorization header and one Cookie header at most")
        if isinstance(token, Refusal):
            return token
        key = token_key(token)
        try:
            model = await self._model(token, key)
        except Exception as error:  # the hub is down or answered 5xx: not the user's fault
            log.warning("hub look-up failed for token %s: %s", key[:8], type(error).__name__)
            return Refusal(503, "the hub cannot be reached to check who you are; try again")
        if model is None:
            return Refusal(403, "the hub does not know this token (expired or revoked?)")
        return self._decide(model)

    def _credential(self, headers: Mapping[str, str]) -> str | Refusal:
        """The token a handshake carries, or why there is none to use."""
        authorization = _header(headers, "Authorization")
        if authorization:
            match = _AUTHORIZATION.match(authorization.strip())
            if match is None:
                return Refusal(403, "Authorization must be 'token <your hub API token>'")
            return match.group(1)
        cookie = self.cookie_token(headers)
        if cookie is not None:
            return cookie
        return Refusal(
            403, "no hub credential: log in to the hub, or send 'Authorization: token ...'"
        )

    def cookie_token(
        self, headers: Mapping[str, str], *, check_origin: bool = True
    ) -> str | Refusal | None:
        """The token in the hub's OAuth cookie, if there is a valid one from this origin.

        ``check_origin=False`` for the page's own GET, which carries no ``Origin``
        (the token then only decides whether to send the browser to the login).
        """
        if self.cookie_name is None or self.cookie_secret is None:
            return None
        raw = _header(headers, "Cookie")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(self.cookie_name)
        except CookieError:
            return None
        if morsel is None:
            return None
        if check_origin and not _same_origin(_header(headers, "Origin"), _header(headers, "Host")):
            return Refusal(403, "a login cookie is only accepted from the chat's own page")
        from tornado.web import decode_signed_value

        value = decode_signed_value(self.cookie_secret, self.cookie_name, morsel.value)
        if not value:
            return Refusal(403, "the login cookie is not valid: log in to the hub again")
        return value.decode("ascii", "replace")

    async def _model(self, token: str, key: str) -> Mapping[str, Any] | None:
        """The hub's user model for ``token``: cached, or from the one look-up in flight
        for it (started if there is none). A handshake that gives up waiting (its client
        left) does not cancel the look-up the others wait for."""
        hit, model = self.cache.get(key, self.clock.monotonic())
        if hit:
            return model
        asking = self._pending.get(key)
        if asking is None:
            asking = asyncio.ensure_future(self._ask_hub(token, key))
            self._pending[key] = asking
            asking.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(asking)

    async def _ask_hub(self, token: str, key: str) -> Mapping[str, Any] | None:
        """One hub request about ``token``; its answer is cached."""
        self.hub_requests += 1
        model = await self._lookup(token)
        self.cache.put(key, model, self.clock.monotonic())
        return model

    def _settled(self, key: str, done: asyncio.Future[Mapping[str, Any] | None]) -> None:
        """A look-up ended: forget it (its failure was given to whoever waited)."""
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # read, so an unawaited failure is not reported as lost

    def _decide(self, model: Mapping[str, Any]) -> HubUser | Refusal:
        """Let a hub user with the access scope in, with their role."""
        name = model.get("name")
        if model.get("kind", "user") != "user" or not isinstance(name, str) or not name:
            return Refusal(403, "only hub users may join this chat, not services")
        scopes = frozenset(s for s in model.get("scopes") or () if isinstance(s, str))
        if not scopes & self.access_scopes:
            return Refusal(
                403,
                f"hub user {name} may not use this chat"
                f" (no access:services!service={self.service})",
            )
        groups = frozenset(g for g in model.get("groups") or () if isinstance(g, str))
        admin = model.get("admin") is True
        role = "teacher" if admin or groups & self.teacher_groups else "student"
        return HubUser(name=name, admin=admin, groups=groups, scopes=scopes, role=role)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, looked up as given and in lower case.

    Raises :class:`LookupError` when ``headers`` holds it twice (websockets' ``Headers``).
    """
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def _same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser's ``Origin`` names the host it connects to (``Host``)."""
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.strip().lower()

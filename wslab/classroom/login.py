"""The chat page's login through the hub (OAuth 2 with PKCE), for a server that is not tornado.

A browser that opens the page without a valid login cookie is sent to the hub::

    location, state_cookie = login.begin("/services/wslab/")
    # answer 302 Location: location, Set-Cookie: state_cookie

The hub logs the user in (if needed), then sends the browser back to the service's
``oauth_callback`` with a code; the service exchanges it for the user's token and
keeps that token in a signed, HttpOnly cookie, which :class:`~wslab.classroom.HubGate`
reads at the socket's handshake::

    answer = await login.finish(request_query, request_cookie_header)
    # a Refusal (answer its status), or (next_path, login_cookie):
    # answer 302 Location: next_path, Set-Cookie: login_cookie

The state (a random value, the page to return to, the PKCE verifier) travels in a
signed cookie of its own for at most ten minutes, so several servers behind one
proxy can finish each other's logins if they share the cookie secret.

Any thread for :meth:`HubLogin.begin`; :meth:`HubLogin.finish` awaits the hub on the
event loop's thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode

from .auth import Refusal

__all__ = ["STATE_SECONDS", "HubLogin"]

#: How long a login may take between leaving for the hub and coming back, in seconds.
STATE_SECONDS = 600
#: How long the login cookie is kept by the browser, in days (the hub's token may expire first).
LOGIN_DAYS = 14

#: Exchanges an OAuth code (and the PKCE verifier) for the user's hub token.
Exchange = Callable[[str, str], Awaitable[str]]


class HubLogin:
    """The two steps of the page's login through the hub.

    Args:
        authorize_url: the hub's authorisation endpoint (``/hub/api/oauth2/authorize``).
        client_id / redirect_uri: the service's OAuth client, as the hub knows it.
        cookie_name / cookie_secret: the login cookie (:class:`HubGate` reads the same).
        cookie_path: the service prefix; both cookies are sent only below it.
        exchange: asks the hub for the token of a code (see :meth:`from_hub_auth`).
        secure: mark the cookies ``Secure`` (the public proxy serves HTTPS).
    """

    def __init__(
        self,
        *,
        authorize_url: str,
        client_id: str,
        redirect_uri: str,
        cookie_name: str,
        cookie_secret: bytes,
        cookie_path: str,
        exchange: Exchange,
        secure: bool = False,
    ) -> None:
        self.authorize_url = authorize_url
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.cookie_name = cookie_name
        self.state_cookie_name = f"{cookie_name}-oauth-state"
        self.cookie_secret = cookie_secret
        self.cookie_path = cookie_path if cookie_path.endswith("/") else cookie_path + "/"
        self.secure = secure
        self._exchange = exchange

    @classmethod
    def from_hub_auth(
        cls, hub_auth: Any, cookie_secret: bytes, *, secure: bool = False
    ) -> HubLogin:
        """A login for the service ``hub_auth`` (a ``HubOAuth``) describes."""

        async def exchange(code: str, verifier: str) -> str:
            token: str = await hub_auth.token_for_code(code, code_verifier=verifier, sync=False)
            return token

        return cls(
            authorize_url=str(hub_auth.oauth_authorization_url),
            client_id=str(hub_auth.oauth_client_id),
            redirect_uri=str(hub_auth.oauth_redirect_uri),
            cookie_name=str(hub_auth.cookie_name),
            cookie_secret=cookie_secret,
            cookie_path=str(hub_auth.base_url),
            exchange=exchange,
            secure=secure,
        )

    def begin(self, next_path: str, *, secure: bool | None = None) -> tuple[str, str]:
        """Where to send a browser that must log in, and the ``Set-Cookie`` value for the
        state. ``next_path`` is where it returns to (a path below the prefix, else the
        prefix itself); ``secure`` marks the cookie ``Secure`` (``None``: as built)."""
        from tornado.web import create_signed_value

        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(32)
        challenge = hashlib.sha256(verifier.encode()).digest()
        query = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": base64.urlsafe_b64encode(challenge).decode().rstrip("="),
            "code_challenge_method": "S256",
        }
        carried = json.dumps({"state": state, "next": self._safe(next_path), "verifier": verifier})
        value = create_signed_value(self.cookie_secret, self.state_cookie_name, carried)
        cookie = self._cookie(self.state_cookie_name, value.decode(), STATE_SECONDS, secure)
        return f"{self.authorize_url}?{urlencode(query)}", cookie

    async def finish(
        self, query: str, cookie_header: str | None, *, secure: bool | None = None
    ) -> tuple[str, str] | Refusal:
        """Finish a login at the callback: ``(next_path, Set-Cookie value)`` or a refusal.

        ``query`` is the callback's query string, ``cookie_header`` the request's
        ``Cookie`` header. Never raises for bad input; a hub that cannot be reached
        gives a 503 refusal.
        """
        from tornado.web import decode_signed_value

        fields = parse_qs(query)
        code, state = fields.get("code", [""])[0], fields.get("state", [""])[0]
        raw = _cookie_value(cookie_header, self.state_cookie_name)
        carried = None
        if code and state and raw:
            carried = decode_signed_value(
                self.cookie_secret, self.state_cookie_name, raw, max_age_days=STATE_SECONDS / 86400
            )
        try:
            saved = json.loads(carried) if carried else {}
        except ValueError:
            saved = {}
        if not isinstance(saved, dict) or not secrets.compare_digest(
            str(saved.get("state", "")), state or "-"
        ):
            return Refusal(
                403, "this login did not start here or took too long: open the page again"
            )
        try:
            token = await self._exchange(code, str(saved.get("verifier", "")))
        except Exception:
            return Refusal(503, "the hub did not finish the login; open the page again")
        from tornado.web import create_signed_value

        value = create_signed_value(self.cookie_secret, self.cookie_name, token).decode()
        return self._safe(str(saved.get("next", ""))), self._cookie(
            self.cookie_name, value, LOGIN_DAYS * 86400, secure
        )

    def _safe(self, path: str) -> str:
        """``path`` if it lies below the prefix (no open redirect), else the prefix."""
        if path.startswith(self.cookie_path) and "//" not in path and "\\" not in path:
            return path
        return self.cookie_path

    def _cookie(self, name: str, value: str, seconds: int, secure: bool | None) -> str:
        """A ``Set-Cookie`` value below the prefix, HttpOnly, SameSite=Lax."""
        flag = "; Secure" if (self.secure if secure is None else secure) else ""
        return (
            f"{name}={value}; Path={self.cookie_path}; Max-Age={seconds};"
            f" HttpOnly; SameSite=Lax{flag}"
        )


def _cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, if any."""
    if not header:
        return None
    try:
        morsel = SimpleCookie(header).get(name)
    except CookieError:
        return None
    return None if morsel is None else morsel.value

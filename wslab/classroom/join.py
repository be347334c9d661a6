"""A student's kernel on the hub joins the class chat: :func:`join`, with no arguments.

Inside a user's server (and so in its kernels) the hub sets ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN`` (the server's token) and ``JUPYTERHUB_USER``. From them:

- :func:`address` finds where the chat listens and what a client sends in its
  handshake: the URL and an ``Authorization: token ...`` header (a
  :class:`ClassroomAddress`);
- :func:`join` shows the chat widget there, connected as the hub user (in a cell);
- :func:`client` makes a :class:`~wslab.client.ChatClient` there, for scripts.

Where the chat is, first found wins:

1. ``WSLAB_CLASSROOM_URL``: the chat's full URL (``wss://hub.example.org/services/wslab/chat``),
   set by the deployment (``c.Spawner.environment``, or ``singleuser.extraEnv`` in
   Zero to JupyterHub) when the kernels should go through the public proxy;
2. ``JUPYTERHUB_PUBLIC_URL`` (set by the hub when its ``public_url`` is configured):
   ``<public URL>services/<name>/chat``;
3. the hub's own description of the service, ``GET /hub/api/services/<name>``:
   ``<its url><its prefix>chat``, a direct connection from the kernel to the service.

The service's name is the ``service`` argument, else ``WSLAB_CLASSROOM_SERVICE``, else ``wslab``.

The server's token is accepted by the chat only if the deployment grants it: the hub's
``server`` role needs ``access:services!service=<name>`` (and
``read:services!service=<name>`` for step 3), and the user must hold the same scopes
through a role of their own (a token never has more than its owner). docs/classroom.md
gives the configuration.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..client import BlockingChatClient, ChatClient
from ..errors import ClassroomError

if TYPE_CHECKING:
    from ..lab.widget import ChatWidget

__all__ = ["DEFAULT_SERVICE", "ClassroomAddress", "address", "client", "join"]

#: The service name :func:`join` looks for when neither an argument nor a variable names one.
DEFAULT_SERVICE = "wslab"


@dataclass(frozen=True)
class ClassroomAddress:
    """Where a kernel's client connects to the class chat, and the headers it sends.

    ``headers`` holds the hub token: it is left out of the ``repr``, so printing
    this object in a notebook does not show it.
    """

    url: str
    headers: Mapping[str, str] = field(repr=False)
    user: str
    service: str

    def client(self, **options: Any) -> ChatClient:
        """A :class:`ChatClient` for the class chat, as the hub user; not started.

        ``options`` are :class:`ChatClient`'s (``policy``, ``features``, ...).
        Call from the loop that will run it (it starts with ``connect()``).
        """
        return ChatClient(self.url, self.user, additional_headers=self.headers, **options)

    def blocking_client(self, **options: Any) -> BlockingChatClient:
        """A :class:`BlockingChatClient` for the class chat, as the hub user; not connected.

        For plain blocking scripts; any thread.
        """
        return BlockingChatClient(self.url, self.user, additional_headers=self.headers, **options)


def join(service: str | None = None, *, show_log: bool = False) -> ChatWidget:
    """Show the class chat in a cell, connected as the hub user; return its widget.

    The widget of :func:`wslab.chat`, with the hub token in its handshake. Safe to
    re-run: the new widget replaces the last one, as the same user. Kernel loop
    only (a cell). Raises :class:`ClassroomError` with one line saying what is
    missing when the chat cannot be found (see :func:`address`).
    """
    from ..lab.widget import chat

    found = address(service)
    return chat(found.url, found.user, show_log=show_log, additional_headers=found.headers)


def client(
    service: str | None = None, *, environ: Mapping[str, str] | None = None, **options: Any
) -> ChatClient:
    """A :class:`ChatClient` for the class chat, as the hub user; not started.

    ``await client().connect()`` joins. ``options`` go to :class:`ChatClient`.
    Blocking (one hub request at most, see :func:`address`); call it from the loop
    that will run the client.
    """
    return address(service, environ=environ).client(**options)


def address(
    service: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> ClassroomAddress:
    """Find the class chat from inside a hub user's server (see the module's text).

    Blocking (one hub request at most); any thread. Raises :class:`ClassroomError`
    with one line saying what is missing: not on a hub, the service unknown to
    the hub or without a URL, or the token not allowed to read it.
    """
    env = os.environ if environ is None else environ
    name = service or env.get("WSLAB_CLASSROOM_SERVICE") or DEFAULT_SERVICE
    api_url = env.get("JUPYTERHUB_API_URL", "")
    token = env.get("JUPYTERHUB_API_TOKEN", "")
    missing = [
        n for n, v in (("JUPYTERHUB_API_URL", api_url), ("JUPYTERHUB_API_TOKEN", token)) if not v
    ]
    if missing:
        raise ClassroomError(
            f"not on a JupyterHub: {' and '.join(missing)} not set"
            " (wslab.classroom.join() runs in a notebook of a hub user's server)"
        )
    user = env.get("JUPYTERHUB_USER", "")
    headers = {"Authorization": f"token {token}"}
    url = env.get("WSLAB_CLASSROOM_URL") or _public_chat_url(env.get("JUPYTERHUB_PUBLIC_URL"), name)
    if not url:
        url = _chat_url_from_hub(api_url, token, name, timeout)
    return ClassroomAddress(url=url, headers=headers, user=user, service=name)


def _public_chat_url(public_url: str | None, service: str) -> str | None:
    """``ws(s)://<public host>/.../services/<service>/chat``, or ``None`` without a public URL."""
    if not public_url:
        return None
    base = public_url if public_url.endswith("/") else public_url + "/"
    return _websocket_scheme(f"{base}services/{quote(service)}/chat")


def _chat_url_from_hub(api_url: str, token: str, service: str, timeout: float) -> str:
    """The chat's URL from the hub's model of the service (its ``url`` and ``prefix``)."""
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/services/{quote(service)}",
        headers={"Authorization": f"token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            model = json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ClassroomError(f"the hub has no service named {service!r}") from None
        if error.code == 403:
            raise ClassroomError(
                f"this server's token may not read the hub's service {service!r}: grant"
                f" read:services!service={service} to the server role, or set WSLAB_CLASSROOM_URL"
            ) from None
        raise ClassroomError(f"the hub answered HTTP {error.code} about {service!r}") from None
    except (OSError, ValueError) as error:
        raise ClassroomError(f"the hub at {api_url} cannot be reached: {error}") from None
    url, prefix = model.get("url"), model.get("prefix")
    if not url or not prefix:
        raise ClassroomError(
            f"the hub's service {service!r} has no URL: it does not serve the chat"
            " (or set WSLAB_CLASSROOM_URL)"
        )
    return _websocket_scheme(f"{str(url).rstrip('/')}{prefix}chat")


def _websocket_scheme(url: str) -> str:
    """``url`` with ``http`` -> ``ws`` and ``https`` -> ``wss``."""
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    return url

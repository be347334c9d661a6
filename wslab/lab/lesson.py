"""The kernel's shared lesson server, and the registry of the chat views shown in it.

A notebook has one local :class:`~wslab.server.ChatServer` that every
``chat()`` without a url joins (:func:`shared_server`), and one registry of the
views shown, keyed by server url and username (:class:`Registry`): a re-run
cell finds the view it replaces there, so the new view comes back as the same
user, and :func:`stop_shared_server` closes the views on the shared server.

This module needs no widget library: the registry holds anything with a
``client`` and an ``aclose()`` (:class:`View`).

Threads: call everything from the kernel's loop thread (a cell), except
:func:`shared_server`, which any thread but the server's own may call.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from ..client import ChatClient
from ..protocol import CloseCode
from ..server import ChatServer

__all__ = ["Registry", "View", "registry", "shared_server", "stop_shared_server"]


class View(Protocol):
    """What the registry needs of a view: its client, and a way to close it."""

    @property
    def client(self) -> ChatClient: ...

    async def aclose(self, code: int = ..., reason: str = ...) -> None: ...


V = TypeVar("V", bound=View)


class Registry(Generic[V]):
    """The views of a kernel by (server url, username): the newest one for each."""

    def __init__(self) -> None:
        self._views: dict[tuple[str, str], V] = {}

    def replace(self, key: tuple[str, str], view: V) -> V | None:
        """Register ``view`` under ``key``; return the view it replaces, if any."""
        previous = self._views.get(key)
        self._views[key] = view
        return previous if previous is not view else None

    def on(self, url: str) -> list[V]:
        """The registered views whose client talks to ``url``."""
        return [view for view in self._views.values() if view.client.url == url]

    def clear(self) -> None:
        """Forget every view (a fresh kernel; tests)."""
        self._views.clear()

    def __len__(self) -> int:
        return len(self._views)


#: The kernel's views (the chat widgets register here).
registry: Registry[View] = Registry()
_shared_server: ChatServer | None = None


def shared_server() -> ChatServer:
    """The kernel's shared local :class:`ChatServer`, started if it is not running.

    ``chat()`` uses it when given no url. Any thread but the server's own.
    """
    global _shared_server
    if _shared_server is None:
        _shared_server = ChatServer()
    return _shared_server.start()  # safe twice; a stopped one restarts on its port


async def stop_shared_server() -> None:
    """Close the views on the shared server (code 1000), then stop it. Safe twice.

    A coroutine, to await in a cell (``await stop_shared_server()``): awaiting
    lets the kernel's loop answer the closing handshakes. Kernel loop only.
    """
    server = _shared_server
    if server is None or not server.running:
        return
    for view in registry.on(server.url):
        await view.aclose(CloseCode.NORMAL_CLOSURE, "notebook cleanup")
    await server.aclose()

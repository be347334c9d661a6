"""wslab: see, break and fix WebSockets inside Jupyter.

A chat server on a background thread (:class:`ChatServer`), a reconnecting
client (:class:`ChatClient`), a notebook widget (:class:`ChatWidget`) and a
browser page, all speaking one JSON protocol (:mod:`wslab.protocol`), and a relay that shows
the frames they exchange (:class:`WireTap`). :class:`Limits`, :class:`Timeouts` and
:class:`RedisOptions` group the server's options (:mod:`wslab.options`).
:class:`RedisServer` and :class:`ServerProcess` run a Redis server and chat servers in
processes of their own.
"""

from typing import TYPE_CHECKING, Any

from ._version import read_version
from .client import BlockingChatClient, ChatClient, PendingMessage, RawEvent
from .clock import FakeClock, SystemClock
from .errors import (
    BackplaneError,
    ChatConnectionError,
    CheckFailed,
    ClientProtocolError,
    ConfigurationError,
    MissingExtraError,
    MissingProgramError,
    ProcessStartError,
    ServerProtocolError,
    StoreError,
    WslabError,
)
from .options import Limits, RedisOptions, Timeouts
from .protocol import CloseCode, ErrorCode, ProtocolError, describe_close
from .retry import Reconnector, RetryPolicy, backoff, should_retry
from .room import Room
from .server import ChatServer
from .testing.processes import RedisServer, ServerProcess, have_redis_server
from .wiretap import WireRecord, WireTap

#: The distribution's version, from its metadata (``pip show wslab``); a source tree
#: that was never installed reads its ``pyproject.toml`` (:mod:`wslab._version`).
__version__ = read_version()

if TYPE_CHECKING:
    from .lab.browser import BrowserSocket
    from .lab.widget import ChatWidget, chat


def __getattr__(name: str) -> Any:
    # The widgets pull in ipywidgets and IPython: load them only when asked for,
    # so a server or a script does not pay for it.
    if name in ("ChatWidget", "chat"):
        from .lab import widget

        return getattr(widget, name)
    if name == "BrowserSocket":
        from .lab import browser

        return browser.BrowserSocket
    raise AttributeError(f"module 'wslab' has no attribute {name!r}")


__all__ = [
    "BackplaneError",
    "BlockingChatClient",
    "BrowserSocket",
    "ChatClient",
    "ChatConnectionError",
    "ChatServer",
    "ChatWidget",
    "CheckFailed",
    "ClientProtocolError",
    "CloseCode",
    "ConfigurationError",
    "ErrorCode",
    "FakeClock",
    "Limits",
    "MissingExtraError",
    "MissingProgramError",
    "PendingMessage",
    "ProcessStartError",
    "ProtocolError",
    "RawEvent",
    "Reconnector",
    "RedisOptions",
    "RedisServer",
    "RetryPolicy",
    "Room",
    "ServerProcess",
    "ServerProtocolError",
    "StoreError",
    "SystemClock",
    "Timeouts",
    "WireRecord",
    "WireTap",
    "WslabError",
    "backoff",
    "chat",
    "describe_close",
    "have_redis_server",
    "should_retry",
]

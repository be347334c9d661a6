"""wslab: see, break and fix WebSockets inside Jupyter.

A chat server on a background thread (:class:`ChatServer`), a reconnecting
client (:class:`ChatClient`), a notebook widget (:class:`ChatWidget`) and a
browser page, all speaking one JSON protocol (:mod:`wslab.protocol`).
"""

from .client import BlockingChatClient, ChatClient, PendingMessage, RawEvent
from .clock import FakeClock, SystemClock
from .protocol import CloseCode, ErrorCode, ProtocolError, describe_close
from .retry import RetryPolicy, backoff, should_retry
from .room import Room
from .server import ChatServer

__all__ = [
    "BlockingChatClient",
    "ChatClient",
    "ChatServer",
    "CloseCode",
    "ErrorCode",
    "FakeClock",
    "PendingMessage",
    "ProtocolError",
    "RawEvent",
    "RetryPolicy",
    "Room",
    "SystemClock",
    "backoff",
    "describe_close",
    "should_retry",
]

__version__ = "0.1.0"

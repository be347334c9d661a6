"""Checks for 00_start_here and 01_events: URLs, the raw event log, reading frames.

The live checks start a :class:`~wslab.server.ChatServer` on a free loopback
port and drive a :class:`~wslab.client.ChatClient` on an event loop of their
own, in a worker thread, so they work from a plain (synchronous) notebook cell
whose kernel loop is busy running that cell. They stop all they started.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...client import ChatClient, RawEvent
from ...server import ChatServer
from ._common import TIMEOUT, fail, passed, run_learner, run_scenario

__all__ = ["check_event_log", "check_parse_frame", "check_socket_url", "run_scenario"]

# ------------------------------------------------------------------ 00: the socket URL

_URL_CASES = [
    ("http://127.0.0.1:8765/", "ws://127.0.0.1:8765/chat"),
    ("https://chat.example.org/", "wss://chat.example.org/chat"),
    ("http://localhost:8000/index.html?theme=dark", "ws://localhost:8000/chat"),
    (
        "https://hub.example.org/user/ada/proxy/8765/",
        "wss://hub.example.org/user/ada/proxy/8765/chat",
    ),
    ("https://example.org/course/lesson.html#top", "wss://example.org/course/chat"),
    # "http" again inside the host and the path: only the scheme changes
    ("http://http.example.org/https/", "ws://http.example.org/https/chat"),
    ("https://example.org/http-tips/page?next=http://x", "wss://example.org/http-tips/chat"),
]


def check_socket_url(socket_url: Callable[[str], str]) -> None:
    """``socket_url(page_url)`` must give the chat socket's URL for a page URL.

    Page URLs (plain, TLS, with a query or a fragment, behind a proxy prefix, with
    "http" inside the host and the path), then a live client must join a real
    server through the URL made from its ``page_url``.
    """
    name = "check_socket_url"
    for page, expected in _URL_CASES:
        got = run_learner(name, socket_url, page)
        if got != expected:
            if "http" in expected[6:] and "http" not in str(got)[6:]:
                hint = 'change the scheme only: "http" may appear in the host or the path too'
            else:
                hint = (
                    'http becomes ws, https becomes wss, and "chat" replaces the last part '
                    "of the page's path (try urllib.parse.urljoin)"
                )
            raise fail(
                name, f"for the page {page!r} you returned {got!r}, expected {expected!r}", hint
            )

    async def join() -> str:
        server = ChatServer(port=0).start()
        try:
            url = run_learner(name, socket_url, server.page_url)
            client = ChatClient(url, "checker", reconnect=False)
            try:
                await client.connect(timeout=TIMEOUT)
                return client.status
            finally:
                await client.close()
        finally:
            await server.aclose()

    try:
        status = run_scenario(join)
    except (ConnectionError, OSError, TimeoutError) as error:
        raise fail(
            name, f"a client could not join through your URL ({error})", "end with /chat"
        ) from None
    passed(
        name, f"{len(_URL_CASES)} page URLs map to their socket URL; a live client went {status}"
    )


# ------------------------------------------------------------------ 01: the raw event log


def _reference_summary(events: list[RawEvent]) -> list[str]:
    lines = []
    for event in events:
        if event.type == "message":
            if isinstance(event.data, bytes):
                lines.append("message binary")
            else:
                lines.append("message " + json.loads(event.data or "{}")["event"])
        elif event.type == "close":
            lines.append(f"close {event.code}")
        else:
            lines.append(event.type)
    return lines


async def _session_logs() -> list[list[RawEvent]]:
    """Two real sessions: a chat that ends with close(), and one that is dropped."""
    server = ChatServer(port=0).start()
    try:
        ada = ChatClient(server.url, "Ada", reconnect=False)
        await ada.connect(timeout=TIMEOUT)
        await ada.send_message("hello")
        await ada.wait_for(lambda c: not c.pending, TIMEOUT)
        await ada.send_raw(b"\x00\x01")
        await ada.wait_for(lambda c: len(c.errors) == 1, TIMEOUT)
        bob = ChatClient(server.url, "Bob", reconnect=False)
        await bob.connect(timeout=TIMEOUT)
        await ada.wait_for(lambda c: bob.id in c.users, TIMEOUT)
        await ada.close()
        server.drop(bob.id)
        await bob.wait_for(lambda c: c.status == "offline", TIMEOUT)
        return [list(ada.events), list(bob.events)]
    finally:
        await server.aclose()


# Two logs no live session above produces: a refused handshake (a browser fires
# error, then close 1006) and a binary frame, then a close with a reason.
_MADE_UP_LOGS = [
    [
        RawEvent("error", detail="the handshake was refused: HTTP 403"),
        RawEvent("close", code=1006, was_clean=False),
    ],
    [
        RawEvent("open"),
        RawEvent("message", data=b"\x89PNG"),
        RawEvent("message", data='{"event": "joined", "id": "u2", "username": "Bo"}'),
        RawEvent("close", code=1001, reason="server shutdown", was_clean=True),
    ],
]


def check_event_log(summarize: Callable[[list[RawEvent]], list[str]]) -> None:
    """``summarize(events)`` must turn a raw event log into one short line per event.

    ``open`` -> ``"open"``; a text message -> ``"message <its event field>"``; a
    binary message -> ``"message binary"``; ``error`` -> ``"error"``;
    ``close`` -> ``"close <code>"``. Checked on the logs of two live sessions,
    and on two made-up logs with what those sessions lack (a binary frame, an
    ``error``).
    """
    name = "check_event_log"
    live = run_scenario(_session_logs)
    for events in live + _MADE_UP_LOGS:
        expected = _reference_summary(events)
        got = run_learner(name, summarize, list(events))
        if not isinstance(got, list) or got != expected:
            raise fail(
                name,
                f"for a log of {len(events)} events you returned {got!r}, expected {expected!r}",
                "one string per event, in order; json.loads a text message to read its event",
            )
    total = sum(len(events) for events in live)
    passed(name, f"two live sessions ({total} events) summarized line by line")


# ------------------------------------------------------------------ 01: reading a frame

_FRAME_CASES: list[tuple[str | bytes, bool]] = [
    ('{"event":"joined","id":"u1","username":"Ada"}', True),
    ('{"event": "messageWritten", "message": {"messageId": 1}}', True),
    ("Welcome to the chat!", False),  # the original server's greeting
    (b'{"event":"joined"}', False),  # binary: not chat protocol, even if it looks like JSON
    ("[1, 2, 3]", False),
    ('"joined"', False),
    ("null", False),
    ('{"id": "u1"}', False),
    ('{"event": 7}', False),
    ("", False),
    ('{"event": "joined"', False),
]


def check_parse_frame(parse_frame: Callable[[str | bytes], dict[str, Any] | None]) -> None:
    """``parse_frame(data)`` must return the JSON object of a chat frame, else ``None``.

    A chat frame is text holding one JSON object with a string field ``event``.
    Anything else (binary data, other JSON, not JSON) gives ``None``, never an
    exception: one bad frame must not break a client.
    """
    name = "check_parse_frame"
    for data, is_chat in _FRAME_CASES:
        hint = (
            "a binary frame arrives as bytes: return None for it before json.loads"
            if isinstance(data, bytes)
            else "never raise: catch json.JSONDecodeError (a ValueError) and return None"
        )
        got = run_learner(name, parse_frame, data, hint=hint)
        expected = json.loads(data) if is_chat else None
        if got != expected:
            raise fail(
                name,
                f"parse_frame({data!r}) returned {got!r}, expected {expected!r}",
                "text only; a dict; with a string 'event'",
            )
    passed(name, f"{len(_FRAME_CASES)} frames: chat events read, everything else None")

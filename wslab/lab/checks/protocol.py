"""Checks for 04_protocol: predict the server's answer to a frame, then ask a live one.

The check talks to the server with a bare ``websockets`` client (no ChatClient:
it must not send ``connecting`` by itself), so every frame is exactly the
learner's case.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable

from websockets.asyncio.client import connect

from ...server import ChatServer
from ._common import TIMEOUT, fail, passed, run_learner, run_scenario

__all__ = ["ERROR_CASES", "check_expected_error"]

#: (frame, whether the socket sent a valid ``connecting`` first)
ERROR_CASES: list[tuple[str, bool]] = [
    ("Welcome to the chat!", False),
    ('["connecting"]', False),
    ('{"id": "ada"}', False),
    ('{"event": "dance"}', True),
    ('{"event": "dance"}', False),  # the name is checked before the state
    ('{"event": "writeMessage"}', False),
    ('{"event": "writeMessage", "message": "hi"}', False),
    ('{"event": "writeMessage", "message": "hi", "username": "root"}', True),
    ('{"event": "writeMessage", "message": 42}', True),
    ('{"event": "connecting", "id": "no spaces!", "username": "Zed"}', False),
    ('{"event": "connecting", "id": "zed", "username": "Zed"}', False),
    ('{"event": "connecting", "id": "zed", "username": "Zed"}', True),
]


async def _live_answers() -> list[str | None]:
    """The error code (or None) a live server answers to each case."""
    server = ChatServer(port=0).start()
    answers: list[str | None] = []
    try:
        for frame, connected in ERROR_CASES:
            async with connect(server.url, open_timeout=TIMEOUT, close_timeout=1) as socket:
                if connected:
                    hello = {"event": "connecting", "id": secrets.token_hex(4), "username": "me"}
                    await socket.send(json.dumps(hello))
                    await asyncio.wait_for(socket.recv(), TIMEOUT)  # connected
                await socket.send(frame)
                reply = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
                answers.append(reply["code"] if reply["event"] == "error" else None)
    finally:
        await server.aclose()
    return answers


def check_expected_error(expected_error: Callable[[str, bool], str | None]) -> None:
    """``expected_error(frame, connected)`` must predict the server's error code, or None.

    ``connected`` tells whether the socket already sent a valid ``connecting``.
    Each prediction is compared with what a live server really answers.
    """
    name = "check_expected_error"
    answers = run_scenario(_live_answers)
    for (frame, connected), answer in zip(ERROR_CASES, answers, strict=True):
        got = run_learner(name, expected_error, frame, connected)
        if got != answer:
            state = "after connecting" if connected else "before connecting"
            raise fail(
                name,
                f"for {frame!r} {state} you predicted {got!r}, the server answered {answer!r}",
                "checks run in order: JSON shape, event name, fields, then state",
            )
    passed(name, f"{len(ERROR_CASES)} frames: every prediction matches the live server")

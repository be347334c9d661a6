"""Checks for 03_close_codes: make a live server close a socket with a given code.

The learner writes the frames; the check sends them from a fresh client to a
fresh server on loopback and reads the close code the client saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from ...client import ChatClient
from ...protocol import CloseCode, describe_close
from ...server import ChatServer
from ._common import TIMEOUT, fail, passed, run_learner, run_scenario

__all__ = ["check_message_too_big", "check_policy_violation"]

Frame = str | bytes


async def _send_and_watch(frames: Sequence[Frame], *, max_size: int) -> tuple[int | None, int]:
    """Send ``frames`` on a connected socket; return (close code or None, errors answered).

    A chat message sent after them tells when the server is done with them: it
    handles a socket's frames in order, so once that message is acknowledged every
    earlier frame has had its answer, and a close they caused would have come first.
    """
    server = ChatServer(port=0, max_size=max_size).start()
    try:
        client = ChatClient(server.url, "learner", reconnect=False)
        await client.connect(timeout=TIMEOUT)
        try:
            for frame in frames:
                if not client.online:
                    break  # closed already: later frames have nowhere to go
                await client.send_raw(frame)
            barrier = client.online
            if barrier:
                await client.send_message("are my frames answered?")
            with contextlib.suppress(TimeoutError):  # no answer in time: the socket stayed open
                await client.wait_for(
                    lambda c: c.status == "offline" or (barrier and not c.pending), TIMEOUT
                )
            if client.status != "offline" or not client.last_close:
                return None, len(client.errors)
            return client.last_close[0], len(client.errors)
        finally:
            await client.close()
    finally:
        await server.aclose()


def _frames(name: str, make: Callable[..., object], *args: object) -> list[Frame]:
    frames = run_learner(name, make, *args)
    if isinstance(frames, (str, bytes)):
        frames = [frames]
    if not isinstance(frames, (list, tuple)) or not all(
        isinstance(f, (str, bytes)) for f in frames
    ):
        raise fail(name, f"you returned {frames!r}", "return frames: str (text) or bytes (binary)")
    return list(frames)


def check_policy_violation(bad_frames: Callable[[], Sequence[Frame]]) -> None:
    """``bad_frames()`` must return frames after which the server closes with 1008."""
    name = "check_policy_violation"
    frames = _frames(name, bad_frames)
    code, errors = run_scenario(lambda: _send_and_watch(frames, max_size=64 * 1024))
    if code != CloseCode.POLICY_VIOLATION:
        seen = "the socket stayed open" if code is None else f"the close was {describe_close(code)}"
        raise fail(
            name,
            f"after your {len(frames)} frames {seen}, with {errors} error events",
            "each protocol error is one strike; how many strikes close a socket?",
        )
    passed(name, f"{len(frames)} frames, {errors} error events, then close 1008")


def check_message_too_big(big_frame: Callable[[int], Frame]) -> None:
    """``big_frame(max_size)`` must return one frame that a server with that limit refuses (1009).

    Tried with two limits, so the frame must follow ``max_size``.
    """
    name = "check_message_too_big"
    for max_size in (1000, 5000):
        frames = _frames(name, big_frame, max_size)
        if len(frames) != 1:
            raise fail(name, f"you returned {len(frames)} frames", "return one frame")
        size = len(frames[0].encode() if isinstance(frames[0], str) else frames[0])
        if size > max_size + 4:  # a UTF-8 character is at most 4 bytes
            raise fail(
                name,
                f"with max_size={max_size}, your frame has {size} bytes: too big, but not "
                "just too big",
                "make it one character over max_size, so it shows where the limit is",
            )
        code, _ = run_scenario(lambda: _send_and_watch(frames, max_size=max_size))  # noqa: B023
        if code != CloseCode.MESSAGE_TOO_BIG:
            seen = "the socket stayed open" if code is None else describe_close(code)
            raise fail(
                name,
                f"with max_size={max_size}, a frame of {len(frames[0])} gave: {seen}",
                "max_size counts bytes; one byte more is enough",
            )
    passed(name, "frames just over max_size=1000 and max_size=5000 were closed with 1009")

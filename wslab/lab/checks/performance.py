"""Check for lesson 11 (performance): predict the size of a ``messageWritten`` frame.

The learner writes ``frame_bytes(entry_sizes, seed_compatible)``: the payload
size in bytes of the ``messageWritten`` frame the server sends for a new
message, given the UTF-8 size of every entry of the history once that message
is in it (oldest first, the new one last, already cut to the history cap). The
check measures real frames from live servers in both modes and compares.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ...client import BlockingChatClient
from ...clock import FakeClock
from ...protocol import MessageEntry
from ...server import ChatServer
from ._common import fail, passed, run_learner

__all__ = ["check_frame_bytes", "entry_bytes", "measure_frames"]

CHECK = "check_frame_bytes"
WAIT = 5.0
HISTORY_CAP = 4
TEXTS = ("hi", "hello, everyone", "x" * 120, "héllo ✓", "short", "🙂 " * 10, "bye")

FrameBytes = Callable[[list[int], bool], int]


def entry_bytes(entry: MessageEntry) -> int:
    """The UTF-8 size of one entry as the server writes it (compact JSON)."""
    return len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())


def measure_frames(
    texts: tuple[str, ...], *, seed_compatible: bool, history: int
) -> list[tuple[list[int], int]]:
    """Send ``texts`` to a live server; for each, (entry sizes of the history, frame size)."""
    server = ChatServer(
        history=history, seed_compatible=seed_compatible, rate_limit=0, clock=FakeClock()
    ).start()
    writer = None
    try:
        writer = BlockingChatClient(server.url, "writer", id="writer", reconnect=False)
        writer.connect(WAIT)
        for text in texts:
            writer.send_message(text)
        writer.wait_for(lambda c: len(c.messages) == len(texts), WAIT)
        frames = [
            e.data
            for e in list(writer.events)
            if e.type == "message" and isinstance(e.data, str) and '"messageWritten"' in e.data
        ]
    finally:
        if writer is not None:
            writer.close()
        server.stop()
    measured = []
    sizes: list[int] = []
    for frame in frames:
        sizes = [*sizes, entry_bytes(json.loads(frame)["message"])][-history:]
        measured.append((sizes, len(frame.encode())))
    return measured


def check_frame_bytes(frame_bytes: FrameBytes) -> None:
    """Compare ``frame_bytes`` with real frames, without and with seed-compatible mode."""
    count = 0
    for seed in (False, True):
        for sizes, real in measure_frames(TEXTS, seed_compatible=seed, history=HISTORY_CAP):
            answer = run_learner(CHECK, frame_bytes, list(sizes), seed)
            count += 1
            if answer != real:
                hint = (
                    'seed mode adds ,"messagesList":[...] with every entry, commas between'
                    if seed
                    else "the frame is the new entry wrapped in "
                    '{"event":"messageWritten","message":...}'
                )
                raise fail(
                    CHECK,
                    f"frame_bytes({sizes}, seed_compatible={seed}) gave {answer!r}, "
                    f"the server sent {real} bytes",
                    hint,
                )
    passed(CHECK, f"{count} predictions, each equal to a frame a live server sent")

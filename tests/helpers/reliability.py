"""Helpers of the reliability suite: figures, a raw WebSocket, a server in a subprocess.

Every wait in this folder is a condition with a timeout counted in *units*
(:func:`unit`), scaled by the environment variable ``WSLAB_TIME_SCALE`` so a
slow machine raises one number instead of the tests sprinkling sleeps.

Environment knobs: ``WSLAB_TIME_SCALE`` (multiplies every timeout, default 1),
``WSLAB_SOAK_SECONDS`` (length of the chaos soak, default 18; "full mode" is 60),
``WSLAB_FUZZ_SEED`` (seed of the live fuzz), ``WSLAB_RESULTS_DIR`` (where the
figures are written as JSON).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIME_SCALE as TIME_SCALE
from tests.conftest import hello as hello
from tests.conftest import say as say
from tests.conftest import unit as unit

#: Figures printed at the end of the session (see conftest.pytest_terminal_summary).
FIGURES: dict[str, dict[str, Any]] = {}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition of another thread until it holds; fail after ``timeout`` s.

    For state that lives on a thread we cannot await (the server's room); the
    short poll interval is not a result wait, the condition is.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(0.01)


async def claim(url: str, user_id: str, **fields: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Connect as ``user_id`` without its token; return what the server said and its close code."""
    async with connect(url, open_timeout=unit(5)) as ws:
        await ws.send(hello(user_id, "Mallory", **fields))
        received = []
        try:
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), unit(5))))
        except ConnectionClosed:
            return received, ws.close_code


def results_dir() -> Path:
    path = Path(
        os.environ.get("WSLAB_RESULTS_DIR") or Path(tempfile.gettempdir()) / "wslab-reliability"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """Print the figures of a run, keep them for the summary, write them as JSON."""
    FIGURES[name] = figures
    path = results_dir() / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return path


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def expected_kind(data: str | bytes) -> str:
    """What the protocol's error table says a client frame is, from its shape alone.

    ``bad_json`` (binary, not JSON, not an object, no string ``event``),
    ``unknown_event``, or the name of a client event (whose fields decide the rest).
    """
    if isinstance(data, (bytes, bytearray)):
        return "bad_json"
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "bad_json"
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return "bad_json"
    if obj["event"] not in ("connecting", "writeMessage"):
        return "unknown_event"
    return str(obj["event"])


# --------------------------------------------------------------------------- raw socket


@dataclass
class RawFrame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False

    @property
    def close_code(self) -> int | None:
        if self.opcode != 0x8 or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    def json(self) -> Any:
        return json.loads(self.payload.decode())


@dataclass
class RawWebSocket:
    """A WebSocket client on a bare TCP socket: it sends whatever frame it is told.

    websockets refuses to send some things we need (a compressed frame we built
    by hand, a handshake with odd headers); this one does not care. Blocking.
    """

    sock: socket.socket
    status: int
    headers: dict[str, str]
    buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        path: str = "/chat",
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
    ) -> RawWebSocket:
        sock = socket.create_connection((host, port), timeout=timeout or unit(5))
        return cls.handshake(sock, host, port, path, headers)

    @classmethod
    def handshake(
        cls,
        sock: socket.socket,
        host: str,
        port: int,
        path: str = "/chat",
        headers: Iterable[tuple[str, str]] = (),
    ) -> RawWebSocket:
        """Write the opening handshake on a connected ``sock``; read the answer's head."""
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = bytearray()
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, rest = bytes(raw).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1]) if status_line else 0
        parsed: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        return cls(sock, status, parsed, bytearray(rest))

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False
    ) -> None:
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        mask = secrets.token_bytes(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, data: str | bytes) -> None:
        self.send_frame(0x1, data.encode() if isinstance(data, str) else data)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the TCP connection")
            self.buffer += chunk
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def recv_frame(self) -> RawFrame:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return RawFrame(first & 0x0F, self._read(length), bool(first & 0x80), bool(first & 0x40))

    def recv_until_close(self, limit: int = 1000) -> tuple[list[RawFrame], int | None]:
        """Read frames until the close frame (or EOF); return them and the close code."""
        frames: list[RawFrame] = []
        for _ in range(limit):
            try:
                frame = self.recv_frame()
            except (EOFError, ConnectionError, TimeoutError):
                return frames, None
            if frame.opcode == 0x8:
                return frames, frame.close_code
            frames.append(frame)
        return frames, None

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- the CLI


@dataclass
class CliServer:
    """``python -m wslab serve ...`` in a child process, read up to its first line."""

    process: Any
    url: str
    port: int
    first_line: str

    @classmethod
    def start(cls, *args: str, timeout: float | None = None) -> CliServer:
        import re
        import select
        import subprocess
        import sys

        process = subprocess.Popen(
            [sys.executable, "-m", "wslab", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout or unit(20))
        line = process.stdout.readline().rstrip("\n") if ready else ""
        match = re.fullmatch(r"wslab chat server listening on (ws://([^/]+):(\d+)/chat)", line)
        if match is None:
            process.kill()
            _, err = process.communicate(timeout=unit(10))
            raise RuntimeError(f"the CLI did not start: first line {line!r}; stderr: {err[-2000:]}")
        return cls(process, match.group(1), int(match.group(3)), line)

    def kill9(self) -> None:
        """SIGKILL: no cleanup at all, as in a power cut of the process."""
        self.process.kill()
        self.process.wait(timeout=unit(10))
        self.process.communicate()  # close the pipes

    def close(self) -> None:
        """Make sure the process is gone (teardown after a failure)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()

    def terminate(self) -> int:
        """SIGTERM: the CLI closes its clients with 1001 and exits; return its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return int(self.process.wait(timeout=unit(15)))
        finally:
            self.process.communicate()  # close the pipes

"""Attackers and a measured server: raw peers that misbehave, a server in its own process.

- :func:`raw_peer` does the WebSocket handshake by hand on a blocking socket,
  optionally from another loopback address (127.0.0.2) and with a tiny receive
  buffer, so a peer that "never reads" really never reads: the kernel holds only
  a few KiB for it and the rest stays in the server.
- :class:`ServerProcess` runs a :class:`~wslab.ChatServer` in a child process, so
  its resident memory (RSS) is the server's alone and can be read with psutil
  while this process attacks it. Its counters are asked for over stdin.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from tests.helpers.reliability import RawWebSocket, unit

MIB = 1024 * 1024


def raw_peer(
    port: int,
    *,
    source: str | None = None,
    rcvbuf: int | None = 4096,
    headers: Iterable[tuple[str, str]] = (),
    path: str = "/chat",
) -> RawWebSocket:
    """A handshake done by hand; the returned peer reads only when told to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Set before connecting, so the window is small from the start and the
        # kernel does not grow it: what the peer leaves unread stays in the server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source is not None:
        sock.bind((source, 0))
    try:
        sock.settimeout(unit(5))
        sock.connect(("127.0.0.1", port))
        return RawWebSocket.handshake(sock, "127.0.0.1", port, path, headers)
    except BaseException:
        sock.close()
        raise


def is_closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server ended this TCP connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


_SERVER_SCRIPT = textwrap.dedent(
    """
    import ctypes, gc, json, sys
    from wslab import ChatServer

    server = ChatServer(**json.loads(sys.argv[1])).start()
    print(server.port, flush=True)
    for line in sys.stdin:  # one command a line; EOF stops the server
        if line.strip() == "stats":
            stats = {
                "sockets": server.client_count,
                "connections": server.connection_count,
                "users": [u["id"] for u in server.users],
                "slow_peers_dropped": server.slow_peers_dropped,
                "join_timeouts": server.join_timeouts,
                "refused_per_address": server.refused_per_address,
                # Python objects alive (after a collection): a leak shows here.
                "live_blocks": gc.collect() * 0 + sys.getallocatedblocks(),
            }
            print(json.dumps(stats), flush=True)
        elif line.strip() == "trim":  # hand the allocator's free memory back (glibc)
            try:
                ctypes.CDLL(None).malloc_trim(0)
            except (OSError, AttributeError):
                pass
            print("{}", flush=True)
    server.stop()
    """
)


@dataclass
class ServerProcess:
    """A ChatServer alone in a child process; see the module docstring."""

    process: subprocess.Popen[str]
    port: int

    @classmethod
    def start(cls, **options: Any) -> ServerProcess:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            raise RuntimeError(f"the server process did not start: {line!r}")
        return cls(process, int(line))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/chat"

    def rss(self) -> int:
        """The server process's resident memory, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def trimmed_rss(self) -> int:
        """The RSS once the C allocator gave its free memory back to the system.

        After a burst, glibc's malloc keeps freed memory for reuse, so RSS alone
        shows what the process once needed, not what it holds. This tells the two
        apart: what remains after the trim is held by live objects.
        """
        self._command("trim")
        return self.rss()

    def stats(self) -> dict[str, Any]:
        return self._command("stats")

    def _command(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def wait_stats(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        """Ask for the counters until ``predicate(stats)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {stats}")
            time.sleep(0.02)  # polling another process, bounded by the deadline

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=unit(15))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def mib(n: int) -> float:
    return round(n / MIB, 1)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client frame (clients must mask), built fast enough to flood with."""
    mask = secrets.token_bytes(4)
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return header + mask + masked


class ReadingTalker:
    """A member that sends ``writeMessage`` frames and reads (and drops) all it gets.

    Its messages carry no ``clientMessageId``: the room keeps the entries of those
    for de-duplication, which is the room's memory, not the connection's.
    """

    def __init__(self, port: int, user_id: str = "talker") -> None:
        self.peer = raw_peer(port, rcvbuf=None)
        self.peer.send_text(json.dumps({"event": "connecting", "id": user_id, "username": "t"}))
        self.frames = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        self.peer.sock.settimeout(None)
        try:
            while self.peer.recv_frame().opcode != 0x8:
                self.frames += 1
        except (OSError, EOFError):
            pass

    def say(self, text: str) -> None:
        frame = json.dumps({"event": "writeMessage", "message": text}, ensure_ascii=False)
        self.peer.sock.sendall(masked_frame(0x1, frame.encode()))

    def close(self) -> None:
        self.peer.sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(unit(5))
        self.peer.close()

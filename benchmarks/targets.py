"""The servers under test, started as subprocesses pinned to their own core.

Every server prints ``... listening on ws://H:P/PATH`` as its first line; this module
starts one, waits for that line (never sleeps), keeps draining its output so a chatty
server never blocks on a full pipe, and stops it with SIGINT on exit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "REPO",
    "TARGETS",
    "BenchmarkError",
    "Pinning",
    "ServerProcess",
    "Target",
    "WireName",
    "child_env",
    "pinned",
    "pinning",
    "wslab_available",
]

REPO = Path(__file__).resolve().parent.parent
_URL_RE = re.compile(r"listening on (wss?://[^\s:/]+:\d+/\S*)")


#: What the load generator's clients speak: the wslab chat protocol or Socket.IO.
WireName = Literal["chat", "chat-presence", "socketio"]


class BenchmarkError(RuntimeError):
    """A server or load process misbehaved; the message says which and how."""


@dataclass(frozen=True)
class Target:
    """One server to measure: how to start it, and which wire its clients speak."""

    name: str
    argv: tuple[str, ...]
    wire: WireName
    needs_wslab: bool = False

    def with_args(self, *extra: str) -> Target:
        """The same server with more command-line options."""
        return dataclasses.replace(self, argv=self.argv + extra)


_WSLAB = (
    sys.executable, "-m", "wslab", "serve", "--port", "0", "--rate-limit", "0",
    "--max-clients", "20000",
)  # fmt: skip

TARGETS: dict[str, Target] = {
    "baseline": Target(
        "baseline", (sys.executable, "-m", "benchmarks.servers", "baseline"), "chat"
    ),
    "wslab": Target("wslab", _WSLAB, "chat", needs_wslab=True),
    # The same server; its clients announce batched presence in ``connecting``.
    "wslab-presence": Target("wslab-presence", _WSLAB, "chat-presence", needs_wslab=True),
    "wslab-seed": Target("wslab-seed", (*_WSLAB, "--seed-compatible"), "chat", needs_wslab=True),
    "socketio": Target(
        "socketio", (sys.executable, "-m", "benchmarks.servers", "socketio"), "socketio"
    ),
}


def wslab_available() -> bool:
    """Whether the kit's server and command line exist yet in this checkout."""
    try:
        return all(importlib.util.find_spec(m) for m in ("wslab.server", "wslab.__main__"))
    except ImportError:
        return False


@dataclass(frozen=True)
class Pinning:
    """The cores the server and the load generator run on."""

    server: int
    load: int


def pinning() -> Pinning | None:
    """Server on the first allowed core and load on the second, or None with one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return None
    return Pinning(server=cores[0], load=cores[1])


def pinned(argv: tuple[str, ...] | list[str], core: int | None) -> list[str]:
    """The command line prefixed with ``taskset -c core`` (taskset execs: same pid)."""
    return ["taskset", "-c", str(core), *argv] if core is not None else list(argv)


def run_load(argv: list[str], core: int | None, timeout: float, what: str) -> dict[str, Any]:
    """Run the load generator (pinned to ``core``) and return its result, its last stdout line.

    Raises:
        BenchmarkError: it hung past ``timeout``, failed, or reported a failure.
    """
    try:
        proc = subprocess.run(
            pinned(argv, core),
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{what} hung") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchmarkError(f"{what} failed:\n{tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["failure"]:
        raise BenchmarkError(f"{what}: {result['failure']}")
    return result


def child_env() -> dict[str, str]:
    """The environment for servers and load: the repository importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """A running server subprocess: ``with ServerProcess(target, core) as s: s.url``."""

    def __init__(self, target: Target, core: int | None, start_timeout: float = 20.0) -> None:
        self.target = target
        self.core = core
        self.start_timeout = start_timeout
        self.output: deque[str] = deque(maxlen=40)
        self._lines: Queue[str | None] = Queue()
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        """The server's process id (taskset execs the server in place)."""
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> ServerProcess:
        self._proc = subprocess.Popen(
            pinned(self.target.argv, self.core),
            cwd=REPO,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            self.url = self._wait_for_url()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.output.append(line.rstrip())
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_url(self) -> str:
        while True:
            try:
                line = self._lines.get(timeout=self.start_timeout)
            except Empty:
                raise BenchmarkError(
                    f"{self.target.name}: no 'listening on' line in time"
                ) from None
            if line is None:
                tail = "\n".join(self.output)
                raise BenchmarkError(f"{self.target.name} exited before listening:\n{tail}")
            if match := _URL_RE.search(line):
                return match.group(1)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

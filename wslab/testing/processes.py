"""Real programs in their own processes: a Redis server and ``python -m wslab serve``.

Lessons, soak tests and benchmarks that show several chat servers sharing one chat
start these, kill them (SIGKILL: a crash, not a polite stop) and start them again::

    with RedisServer() as redis, ServerProcess("--redis", redis.url) as server:
        ...  # redis.url is redis://127.0.0.1:PORT/0, server.url ws://127.0.0.1:PORT/chat
        redis.kill()
        redis.restart()  # same port, same directory: with persist=True the data survive

Both bind 127.0.0.1 only and never leave a process behind: a failed start kills what
it started, and whatever still runs when the interpreter exits is stopped then (each
process also runs in a session of its own, so a Ctrl+C or a kernel interrupt meant for
Python does not reach it). Standard library only: the Redis server is probed with
``PING`` over a plain socket, so this module does not need the ``redis`` package.

Every public method may be called from any thread; calls on one object are
serialised by its lock.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from types import TracebackType
from typing import IO, Any

from ..errors import MissingProgramError, ProcessStartError

__all__ = [
    "REDIS_INSTALL_HINT",
    "RedisServer",
    "ServerProcess",
    "have_redis_server",
]

#: How to install ``redis-server``, said by every error about it missing.
REDIS_INSTALL_HINT = (
    "install it with `sudo apt-get install redis-server` (Debian/Ubuntu),"
    " `brew install redis` (macOS) or `conda install -c conda-forge redis-server`;"
    " on Binder, binder/apt.txt installs it"
)

#: How often a starting program is probed, in seconds.
_POLL = 0.02
#: How many free ports ``RedisServer(port=0)`` tries when another program takes one first.
_PORT_TRIES = 5
#: How long ``stop()`` waits for a polite exit before it kills, in seconds.
_STOP_TIMEOUT = 10.0
#: How many lines of a ServerProcess's output are kept (the newest).
_KEEP_LINES = 10_000
_LISTENING = re.compile(r"wslab chat server listening on (wss?://(\S+?):(\d+)/\S*)")


def have_redis_server(executable: str = "redis-server") -> bool:
    """Whether ``executable`` (a name on ``PATH`` or a path) can be run. Any thread."""
    return shutil.which(executable) is not None


def _find_program(executable: str, hint: str) -> str:
    """The full path of ``executable``, or :class:`MissingProgramError` saying ``hint``."""
    path = shutil.which(executable)
    if path is None:
        raise MissingProgramError(executable, hint)
    return path


def _free_port() -> int:
    """A loopback port that nothing listens on right now (it may be taken before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- the watchdog
#
# A Python that dies without running its exit handlers (SIGKILL, as nbval and Jupyter
# do to a kernel they shut down "now") would leave its programs running: they are in
# sessions of their own, so nothing else ends them. One small watchdog process per
# interpreter holds the read end of a pipe; we write "+PGID" for every program started
# and "-PGID" once it is reaped. When the pipe closes (this interpreter is gone, however
# it died), the watchdog kills every group still listed.
#
# Why not the kernel's parent-death signal (prctl(PR_SET_PDEATHSIG) in preexec_fn)?
# - It fires when the *thread* that started the child ends, not the process: a program
#   started from a worker thread (a LoopThread, a ThreadPoolExecutor, a notebook's
#   background task) would be killed when that thread finishes, with Python alive.
# - preexec_fn is documented as unsafe in a process that runs threads (the child may
#   deadlock before exec), and the kit always runs some (servers, taps, clients).
# - It reaches the direct child only, not the rest of its process group; and it is
#   Linux-only. No maintained package lifts these limits (python-prctl wraps the same
#   call and needs a compiler and libcap), so a pipe-watching process stays: it works
#   wherever a pipe closes on death, for whole groups, from any thread.

_WATCHDOG = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""
_watchdog_lock = threading.Lock()
_watchdog: subprocess.Popen[bytes] | None = None
_watched: set[int] = set()


def _tell_watchdog(sign: str, group: int) -> None:
    """Add (``+``) or remove (``-``) a process group from the watchdog's list. Best effort."""
    global _watchdog
    with _watchdog_lock:
        (_watched.add if sign == "+" else _watched.discard)(group)
        for _ in range(2):  # a watchdog that died is replaced once
            if _watchdog is None or _watchdog.poll() is not None:
                if not sys.executable or sign == "-":
                    return
                _watchdog = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                lines = "".join(f"+{g}\n" for g in _watched)
            else:
                lines = f"{sign}{group}\n"
            try:
                assert _watchdog.stdin is not None
                _watchdog.stdin.write(lines.encode())
                _watchdog.stdin.flush()
                return
            except (BrokenPipeError, ValueError):
                _watchdog = None


def _forget_watchdog_in_child() -> None:
    """After a fork: the child closes its copy of the pipe (its parent's programs are not its)."""
    global _watchdog, _watchdog_lock
    _watchdog_lock = threading.Lock()
    if _watchdog is not None and _watchdog.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            _watchdog.stdin.close()
    _watchdog = None
    _watched.clear()


def _close_watchdog() -> None:
    """At a normal exit: close the pipe as a death would, and wait for the watchdog.

    It ends the groups still listed (programs their owners never stopped), then itself,
    so that no watchdog outlives this interpreter's exit. Registered before any
    ``weakref.finalize`` of a program, so it runs after them: what they end is off the
    list by then.
    """
    watchdog = _watchdog
    if watchdog is None:
        return
    if watchdog.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            watchdog.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        watchdog.wait(timeout=5)


atexit.register(_close_watchdog)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watchdog_in_child)


def _spawn(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, watched (see above)."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True, **options)
    _tell_watchdog("+", process.pid)
    return process


def _end(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Stop ``process``: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    code = process.wait()
    _tell_watchdog("-", process.pid)
    return code


def _end_at_exit(process: subprocess.Popen[bytes]) -> None:
    """A finalizer: the process outlived its owner (garbage or interpreter exit).

    Ends it and closes the pipes its owner read, which no one closes otherwise.
    """
    _end(process, 2.0)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _read_lines(path: str, offset: int, count: int) -> str:
    """The last ``count`` lines of ``path`` written after byte ``offset`` ("" if none)."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            lines = file.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-count:])


def _ping(port: int, timeout: float = 1.0) -> bytes:
    """Send ``PING`` to a Redis server on ``127.0.0.1:port``; its first reply line.

    ``+PONG`` once it serves; ``-LOADING ...`` while it reads its data back.
    Raises OSError when nothing answers.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = connection.recv(256)
            if not chunk:
                raise ConnectionResetError("the connection closed before a reply")
            reply += chunk
        return reply.rstrip(b"\r\n")


class RedisServer:
    """One ``redis-server`` on a loopback port, in a directory of its own.

    Args:
        port: the TCP port; 0 picks a free one (kept by :meth:`restart`).
        persist: ``True`` writes every change to an append-only file before it
            answers (``--appendonly yes --appendfsync always``), so the data survive
            :meth:`kill` and :meth:`restart`; ``False`` keeps them in memory only.
            RDB snapshots are off either way (``--save ""``).
        directory: where its data and ``redis.log`` go; a temporary directory,
            removed by :meth:`close`, when omitted. A given one is left in place.
        executable: the program, a name on ``PATH`` or a path.

    Raises :class:`MissingProgramError` (when constructed) if the program is not
    installed. Any thread; calls are serialised by a lock.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        persist: bool = True,
        directory: str | os.PathLike[str] | None = None,
        executable: str = "redis-server",
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, not {port}")
        self.executable = _find_program(executable, REDIS_INSTALL_HINT)
        self.persist = persist
        self._auto_port = port == 0
        self._port = port
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize[..., RedisServer] | None = None
        self._closed = False
        if directory is None:
            self.directory = tempfile.mkdtemp(prefix="wslab-redis-")
            self._cleanup: weakref.finalize[..., RedisServer] | None = weakref.finalize(
                self, shutil.rmtree, self.directory, ignore_errors=True
            )
        else:
            self.directory = os.fspath(directory)
            os.makedirs(self.directory, exist_ok=True)
            self._cleanup = None
        self.log_path = os.path.join(self.directory, "redis.log")

    # ------------------------------------------------------------------ state

    @property
    def port(self) -> int:
        """The TCP port (0 until a ``port=0`` server first started)."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``ChatServer(redis=...)`` and ``--redis``."""
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) process; ``None`` before the first start."""
        process = self._process
        return None if process is None else process.pid

    @property
    def running(self) -> bool:
        """Whether its process is alive (it may still be loading its data)."""
        process = self._process
        return process is not None and process.poll() is None

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether the server answers ``PING`` with ``PONG`` right now."""
        if not self.running:
            return False
        try:
            return _ping(self._port, timeout) == b"+PONG"
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log file (empty if there is none)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server; return once it answers ``PING`` (its data loaded). Idempotent.

        Raises:
            ProcessStartError: it exited or did not answer within ``timeout``
                seconds; the message ends with its log's last lines. Nothing is
                left running. Also when this object was closed: make a new one.
        """
        with self._lock:
            if self._closed:
                raise ProcessStartError("this RedisServer is closed; make a new one")
            if self.running:
                return self
            tries = _PORT_TRIES if self._auto_port else 1
            for attempt in range(1, tries + 1):
                if self._auto_port and (attempt > 1 or self._port == 0):
                    self._port = _free_port()
                try:
                    self._start_once(timeout)
                    return self
                except ProcessStartError as error:
                    # Another program took the free port between our probe and redis's bind.
                    if attempt == tries or "Address already in use" not in str(error):
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, timeout: float) -> None:
        log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persist
            else ["--appendonly", "no"]
        )
        command = [
            self.executable,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", self.directory,
            "--logfile", self.log_path,
            "--save", "",
            *persistence,
        ]  # fmt: skip
        process = _spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._adopt(process)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if process.poll() is not None:
                why = f"exited with code {process.returncode}"
                break
            try:
                reply = _ping(self._port, 1.0)
                if reply == b"+PONG":
                    return
                last = reply.decode("utf-8", "replace")
            except OSError as error:
                last = f"{type(error).__name__}: {error}"
            if time.monotonic() >= deadline:
                why = f"did not answer PING within {timeout:g} s (last: {last})"
                break
            time.sleep(_POLL)
        self._release(kill=True)
        tail = _read_lines(self.log_path, log_start, 10) or "(its log is empty)"
        raise ProcessStartError(
            f"redis-server on 127.0.0.1:{self._port} {why}; last lines of {self.log_path}:\n{tail}"
        )

    def _adopt(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._reaper = weakref.finalize(self, _end_at_exit, process)

    def _release(self, *, kill: bool, timeout: float = _STOP_TIMEOUT) -> int | None:
        """End the current process (SIGKILL, or SIGTERM then SIGKILL); its exit code."""
        process = self._process
        if self._reaper is not None:
            self._reaper.detach()
            self._reaper = None
        if process is None:
            return None
        if kill and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return _end(process, timeout)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Shut it down politely (SIGTERM; SIGKILL after ``timeout`` s); the exit code.

        Safe to repeat; ``None`` if it never started.
        """
        with self._lock:
            return self._release(kill=False, timeout=timeout)

    def kill(self) -> None:
        """Crash it: SIGKILL, and wait until the process is gone. Safe to repeat."""
        with self._lock:
            self._release(kill=True)

    def restart(self, timeout: float = 10.0) -> RedisServer:
        """Stop it if it runs, then start it again on the same port and directory.

        With ``persist=True`` every write it acknowledged before is back.
        Raises :class:`ProcessStartError` as :meth:`start` does (say, the port was
        taken meanwhile).
        """
        with self._lock:
            self.stop()
            if self._port == 0:
                return self.start(timeout)
            auto, self._auto_port = self._auto_port, False  # the same port or nothing
            try:
                return self.start(timeout)
            finally:
                self._auto_port = auto

    def close(self) -> None:
        """Stop it and remove its temporary directory (a given directory stays). Idempotent."""
        with self._lock:
            self.stop()
            self._closed = True
            if self._cleanup is not None:
                self._cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state} persist={self.persist}>"


class ServerProcess:
    """``python -m wslab serve`` in a process of its own (a chat server you can SIGKILL).

    Args:
        *args: extra options of ``serve``, such as ``"--redis", url`` or
            ``"--grace", "0"``. ``--port 0`` is added unless they name a port.
        python: the interpreter to run (this one by default).
        env: variables set on top of this process's environment.

    :meth:`start` returns once the server printed its listening line, and sets
    :attr:`url` (``ws://HOST:PORT/chat``), :attr:`page_url` and :attr:`port`.
    Everything it prints is kept (:meth:`output`). Any thread; calls are
    serialised by a lock.
    """

    def __init__(
        self,
        *args: str,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = tuple(args)
        self.python = python
        self.env = dict(env or {})
        self.url: str | None = None
        self.page_url: str | None = None
        self.port: int | None = None
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize[..., ServerProcess] | None = None
        self._readers: list[threading.Thread] = []
        # (stream, line) in arrival order: the newest lines, so a long run stays bounded
        self._output: deque[tuple[str, str]] = deque(maxlen=_KEEP_LINES)
        self._streams_open = 0
        self._seen = threading.Condition()

    # ------------------------------------------------------------------ state

    @property
    def command(self) -> list[str]:
        """The command line it runs (with ``--port 0`` unless a port was given)."""
        names_port = any(a == "--port" or a.startswith("--port=") for a in self.args)
        port = [] if names_port else ["--port", "0"]
        return [self.python, "-m", "wslab", "serve", *port, *self.args]

    def _command_on(self, port: int) -> list[str]:
        """The command line with ``--port port`` instead of any port it named."""
        args: list[str] = []
        skip = False
        for arg in self.args:
            if skip:
                skip = False
            elif arg == "--port":
                skip = True
            elif not arg.startswith("--port="):
                args.append(arg)
        return [self.python, "-m", "wslab", "serve", "--port", str(port), *args]

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) process; ``None`` before the first start."""
        process = self._process
        return None if process is None else process.pid

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last process once it ended (negative: killed by a signal)."""
        process = self._process
        return None if process is None else process.poll()

    def output(self, stream: str | None = None) -> str:
        """What the current (or last) process printed, in arrival order.

        ``stream="stdout"`` or ``"stderr"`` keeps one stream only. The newest
        10,000 lines are kept.
        """
        with self._seen:
            return "".join(line for name, line in self._output if stream in (None, name))

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the server; return once it listens. Idempotent.

        Raises:
            ProcessStartError: it exited first (a bad option, a port in use: the
                message holds what it wrote to stderr) or did not listen within
                ``timeout`` seconds. Nothing is left running.
            MissingProgramError: ``python`` cannot be found.
        """
        with self._lock:
            if self.running:
                return self
            self._launch(self.command)
            return self._wait_listening(timeout)

    def restart(self, timeout: float = 15.0) -> ServerProcess:
        """Stop it if it runs and start it again on the same port (a restarted server)."""
        with self._lock:
            self.stop()
            self._launch(self.command if self.port is None else self._command_on(self.port))
            return self._wait_listening(timeout)

    def _launch(self, command: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self._seen:
            self._output.clear()
            self._streams_open = 2
        try:
            process = _spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except FileNotFoundError:
            raise MissingProgramError(
                self.python, "give ServerProcess(python=...) an installed Python"
            ) from None
        self._process = process
        self._reaper = weakref.finalize(self, _end_at_exit, process)
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read,
                args=(name, pipe),
                name=f"wslab-serve-{process.pid}-{name}",
                daemon=True,
            )
            for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, pipe: IO[bytes]) -> None:
        """A reader thread: keep every line of one stream; wake whoever waits."""
        for raw in iter(pipe.readline, b""):
            with self._seen:
                self._output.append((name, raw.decode("utf-8", "replace")))
                self._seen.notify_all()
        with self._seen:
            self._streams_open -= 1
            self._seen.notify_all()

    def _wait_listening(self, timeout: float) -> ServerProcess:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for name, line in self._output:
                    match = _LISTENING.search(line) if name == "stdout" else None
                    if match:
                        self.url, host, port = match.group(1), match.group(2), match.group(3)
                        self.port = int(port)
                        scheme = "https" if self.url.startswith("wss:") else "http"
                        self.page_url = f"{scheme}://{host}:{port}/"
                        return self
                left = deadline - time.monotonic()
                if self._streams_open == 0 or left <= 0:
                    break
                self._seen.wait(min(left, 0.5))
        if self._streams_open == 0:  # its output ended: it is exiting, let it finish
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_TIMEOUT)
        code = process.poll()
        if code is not None:
            why = f"exited with code {code}"
        else:
            why = f"did not listen within {timeout:g} s"
        self._end(kill=True)
        errors = self.output("stderr").strip() or self.output().strip() or "(no output)"
        raise ProcessStartError(f"python -m wslab serve {why}:\n{errors}")

    def _end(self, *, kill: bool, timeout: float = _STOP_TIMEOUT) -> int | None:
        process = self._process
        if self._reaper is not None:
            self._reaper.detach()
            self._reaper = None
        if process is None:
            return None
        if kill and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        code = _end(process, timeout)
        for reader in self._readers:
            reader.join(2.0)  # the pipes reach their end with the process
        if not any(reader.is_alive() for reader in self._readers):
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        return code

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop it politely (SIGTERM: clients get 1001; SIGKILL after ``timeout`` s).

        Returns the exit code (0 after a clean shutdown), ``None`` if it never
        started. Safe to repeat.
        """
        with self._lock:
            return self._end(kill=False, timeout=timeout)

    def kill(self) -> None:
        """Crash it: SIGKILL (clients see 1006), and wait until it is gone. Safe to repeat."""
        with self._lock:
            self._end(kill=True)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` (say ``signal.SIGSTOP``: a frozen server) and return at once.

        Nothing happens if it is not running.
        """
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ServerProcess {self.url or ' '.join(self.command[1:])} {state}>"

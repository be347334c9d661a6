"""RedisServer and ServerProcess: real programs, started, crashed, restarted, never left behind.

Redis is spoken to in raw RESP over a plain socket (no ``redis`` package), the chat
server through its page and a real client.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import psutil
import pytest

import wslab.testing.processes
from tests.conftest import WAIT, unit
from wslab import (
    BlockingChatClient,
    MissingProgramError,
    ProcessStartError,
    RedisServer,
    ServerProcess,
    WslabError,
    have_redis_server,
)

INSTALL_LINES = [
    "sudo apt-get install redis-server",
    "brew install redis",
    "conda install -c conda-forge redis-server",
    "binder/apt.txt",
]


def resp(port: int, *args: str) -> Any:
    """One Redis command in raw RESP; its reply (bytes, int, list, or None for a nil)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(request)
        with connection.makefile("rb") as replies:
            return read_reply(replies)


def read_reply(replies: BinaryIO) -> Any:
    """One RESP2 reply from a stream; an error reply fails the test."""
    line = replies.readline()
    assert line.endswith(b"\r\n"), f"incomplete reply: {line!r}"
    kind, body = line[:1], line[1:-2]
    assert kind != b"-", body
    if kind == b"+":
        return body
    if kind == b":":
        return int(body)
    size = int(body)
    if size < 0:
        return None
    if kind == b"*":
        return [read_reply(replies) for _ in range(size)]
    assert kind == b"$", line
    return replies.read(size + 2)[:-2]


def gone(pid: int | None) -> bool:
    """Whether no live process has this pid (a zombie counts as gone: it runs nothing)."""
    assert pid is not None
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def no_redis_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH holds only an empty folder: no ``redis-server`` to be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def fake_program(tmp_path: Path, name: str, body: str) -> str:
    """An executable shell script standing in for a program."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A loopback port that a listening socket holds for the whole test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# ---------------------------------------------------------------------------- RedisServer


def test_redis_server_starts_on_a_free_port_answers_ping_and_stops(
    redis_server: RedisServer,
) -> None:
    assert redis_server.running and redis_server.port > 0
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert resp(redis_server.port, "PING") == b"PONG"
    assert redis_server.ping()
    pid = redis_server.pid
    assert redis_server.stop() == 0  # SIGTERM: a clean shutdown
    assert not redis_server.running and not redis_server.ping()
    assert gone(pid)
    assert redis_server.stop() == 0  # safe to repeat


def test_redis_server_binds_loopback_only_and_logs_in_its_directory(
    redis_server: RedisServer,
) -> None:
    connections = psutil.Process(redis_server.pid).net_connections("inet")
    listening = {c.laddr for c in connections if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", redis_server.port)}
    assert resp(redis_server.port, "CONFIG", "GET", "protected-mode") == [b"protected-mode", b"yes"]
    assert resp(redis_server.port, "CONFIG", "GET", "appendfsync") == [b"appendfsync", b"always"]
    assert resp(redis_server.port, "CONFIG", "GET", "save") == [b"save", b""]
    assert Path(redis_server.log_path).parent == Path(redis_server.directory)
    assert "Ready to accept connections" in redis_server.log_tail()


def test_a_persistent_redis_keeps_acknowledged_writes_through_a_kill_and_restart(
    redis_server: RedisServer,
) -> None:
    assert resp(redis_server.port, "SET", "greeting", "hello") == b"OK"
    port, old_pid = redis_server.port, redis_server.pid
    redis_server.kill()  # SIGKILL: no chance to save anything on the way out
    assert not redis_server.running and gone(old_pid)
    redis_server.restart(timeout=2 * WAIT)
    assert redis_server.port == port and redis_server.pid != old_pid
    assert resp(port, "GET", "greeting") == b"hello"


def test_a_redis_without_persistence_loses_its_data_in_a_kill() -> None:
    with RedisServer(persist=False) as redis:
        assert resp(redis.port, "SET", "greeting", "hello") == b"OK"
        redis.kill()
        redis.restart(timeout=2 * WAIT)
        assert resp(redis.port, "GET", "greeting") is None
        assert resp(redis.port, "CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        assert not list(Path(redis.directory).glob("appendonly*"))


def test_restart_of_a_running_redis_stops_it_first_and_keeps_the_data(
    redis_server: RedisServer,
) -> None:
    resp(redis_server.port, "SET", "k", "v")
    old_pid = redis_server.pid
    redis_server.restart(timeout=2 * WAIT)
    assert gone(old_pid) and resp(redis_server.port, "GET", "k") == b"v"


def test_two_redis_servers_run_at_once_on_different_ports_with_their_own_data() -> None:
    with RedisServer() as first, RedisServer() as second:
        assert first.port != second.port
        assert first.directory != second.directory
        resp(first.port, "SET", "who", "first")
        resp(second.port, "SET", "who", "second")
        assert resp(first.port, "GET", "who") == b"first"
        assert resp(second.port, "GET", "who") == b"second"
    assert gone(first.pid) and gone(second.pid)


def test_close_removes_the_temporary_directory_but_not_a_given_one(tmp_path: Path) -> None:
    with RedisServer() as own:
        directory = Path(own.directory)
        assert directory.is_dir()
    assert not directory.exists()

    given = tmp_path / "data"
    with RedisServer(directory=given) as kept:
        resp(kept.port, "SET", "k", "v")
    assert (given / "redis.log").exists()
    # A new server on the same directory reads the same data back.
    with RedisServer(directory=given) as again:
        assert resp(again.port, "GET", "k") == b"v"
    with pytest.raises(ProcessStartError, match="closed"):  # also a RuntimeError
        again.start()


def test_a_missing_redis_server_says_how_to_install_it(no_redis_on_path: None) -> None:
    assert not have_redis_server()
    with pytest.raises(MissingProgramError) as caught:
        RedisServer()
    error = caught.value
    assert isinstance(error, WslabError) and isinstance(error, FileNotFoundError)
    assert error.filename == "redis-server"
    for line in INSTALL_LINES:
        assert line in str(error), line
    hint = wslab.testing.processes.REDIS_INSTALL_HINT
    assert str(error) == f"redis-server is not installed (not found on PATH): {hint}"


def test_a_missing_executable_path_is_a_missing_program_error(tmp_path: Path) -> None:
    with pytest.raises(MissingProgramError, match="brew install redis"):
        RedisServer(executable=str(tmp_path / "no-such-redis-server"))
    assert have_redis_server()  # the real one is on this machine's PATH


def test_a_redis_that_cannot_bind_fails_with_its_log_and_leaves_nothing(
    occupied_port: int,
) -> None:
    redis = RedisServer(port=occupied_port)
    with pytest.raises(ProcessStartError) as caught:
        redis.start(timeout=2 * WAIT)
    assert f"127.0.0.1:{occupied_port}" in str(caught.value)
    assert "Address already in use" in str(caught.value)  # a line of its log
    assert not redis.running and gone(redis.pid)
    redis.close()


def test_port_zero_retries_when_the_free_port_is_taken_meanwhile(
    occupied_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wslab.testing.processes._free_port
    offered = iter([occupied_port])
    monkeypatch.setattr(
        wslab.testing.processes, "_free_port", lambda: next(offered, None) or real()
    )
    with RedisServer() as redis:
        assert redis.port != occupied_port and redis.ping()


def test_restart_keeps_its_port_or_fails_when_the_port_was_taken(
    redis_server: RedisServer,
) -> None:
    port = redis_server.port
    redis_server.kill()
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", port))
        thief.listen()
        with pytest.raises(ProcessStartError, match="Address already in use"):
            redis_server.restart(timeout=2 * WAIT)
    assert redis_server.port == port and not redis_server.running


def test_a_redis_that_never_answers_is_killed_after_the_timeout(tmp_path: Path) -> None:
    silent = fake_program(tmp_path, "silent-redis", "exec sleep 60")
    redis = RedisServer(executable=silent)
    with pytest.raises(ProcessStartError, match="did not answer PING within"):
        redis.start(timeout=unit(0.5))
    assert gone(redis.pid)
    redis.close()


def test_a_forgotten_redis_object_takes_its_process_with_it() -> None:
    redis = RedisServer().start(timeout=2 * WAIT)
    pid, directory = redis.pid, redis.directory
    del redis
    gc.collect()
    assert gone(pid) and not os.path.exists(directory)


# ---------------------------------------------------------------------------- ServerProcess


def test_server_process_starts_serves_its_page_and_stops_cleanly() -> None:
    server = ServerProcess().start(timeout=3 * WAIT)
    try:
        assert "--port" in server.command and "0" in server.command
        assert server.port is not None and server.port > 0
        assert server.url == f"ws://127.0.0.1:{server.port}/chat"
        assert server.page_url == f"http://127.0.0.1:{server.port}/"
        with urllib.request.urlopen(server.page_url, timeout=WAIT) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with BlockingChatClient(server.url, "ann", reconnect=False) as client:
            assert client.online
        assert f"listening on {server.url}" in server.output("stdout")
        pid = server.pid
    finally:
        code = server.stop()
    assert code == 0 and not server.running and gone(pid)
    assert server.stop() == 0  # safe to repeat


def test_a_killed_server_process_drops_its_clients_and_is_gone() -> None:
    with ServerProcess("--grace", "0") as server:
        assert server.url is not None
        client = BlockingChatClient(server.url, "ann", reconnect=False).connect(WAIT)
        try:
            server.kill()
            assert server.returncode == -signal.SIGKILL and gone(server.pid)
            client.wait_for(lambda c: c.status == "offline", WAIT)
            assert client.last_close is not None and client.last_close[0] == 1006
        finally:
            client.close()


def test_server_process_restart_comes_back_on_the_same_port() -> None:
    with ServerProcess() as server:
        port, old_pid = server.port, server.pid
        server.kill()
        server.restart(timeout=3 * WAIT)
        assert server.port == port and server.pid != old_pid and gone(old_pid)
        assert server.url is not None
        with BlockingChatClient(server.url, "ann", reconnect=False) as client:
            assert client.online


def test_a_given_port_is_used_instead_of_port_zero() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ServerProcess("--port", str(port))
    assert server.command.count("--port") == 1
    with server:
        assert server.port == port


def test_a_bad_option_fails_with_the_servers_own_error_line() -> None:
    server = ServerProcess("--grace", "soon")
    with pytest.raises(ProcessStartError) as caught:
        server.start(timeout=3 * WAIT)
    message = str(caught.value)
    assert "exited with code 2" in message
    assert "argument --grace: 'soon' is not a number" in message
    assert not server.running and gone(server.pid)


def test_a_port_in_use_fails_with_one_clear_line(occupied_port: int) -> None:
    server = ServerProcess("--port", str(occupied_port))
    with pytest.raises(ProcessStartError, match="the port is already in use") as caught:
        server.start(timeout=3 * WAIT)
    assert "exited with code 1" in str(caught.value)
    assert gone(server.pid)


def test_stopping_a_server_process_closes_its_clients_with_1001() -> None:
    with ServerProcess() as server:
        assert server.url is not None
        client = BlockingChatClient(server.url, "ann", reconnect=False).connect(WAIT)
        try:
            assert server.stop() == 0
            client.wait_for(lambda c: c.status == "offline", WAIT)
            assert client.last_close is not None and client.last_close[0] == 1001
        finally:
            client.close()


def test_sigstop_freezes_a_server_process_and_sigcont_wakes_it() -> None:
    """A frozen server accepts no handshake; once woken it completes the waiting one."""
    with ServerProcess() as server:
        assert server.url is not None
        server.send_signal(signal.SIGSTOP)
        client = BlockingChatClient(server.url, "ann", reconnect=False)
        try:
            with pytest.raises(TimeoutError):
                client.connect(timeout=unit(0.5))
            assert psutil.Process(server.pid).status() == psutil.STATUS_STOPPED
            server.send_signal(signal.SIGCONT)
            client.wait_for(lambda c: c.online, WAIT)
        finally:
            client.close()


def test_a_server_that_never_listens_is_killed_after_the_timeout(tmp_path: Path) -> None:
    silent = fake_program(tmp_path, "silent-python", "echo starting; exec sleep 60")
    server = ServerProcess(python=silent)
    with pytest.raises(ProcessStartError, match="did not listen within") as caught:
        server.start(timeout=unit(0.5))
    assert "starting" in str(caught.value)  # what it printed, for diagnosis
    assert gone(server.pid)


def test_a_missing_python_is_a_missing_program_error(tmp_path: Path) -> None:
    with pytest.raises(MissingProgramError):
        ServerProcess(python=str(tmp_path / "no-python")).start()


def test_server_process_passes_its_environment(tmp_path: Path) -> None:
    script = fake_program(tmp_path, "env-python", 'echo "GREETING=$GREETING" >&2; exit 3')
    server = ServerProcess(python=script, env={"GREETING": "hello"})
    with pytest.raises(ProcessStartError, match="GREETING=hello"):
        server.start(timeout=3 * WAIT)


# ---------------------------------------------------------------------------- nothing left

AT_EXIT = """
import json, sys
from wslab import RedisServer, ServerProcess
redis = RedisServer().start()
server = ServerProcess().start()
print(json.dumps([redis.pid, server.pid, redis.directory]), flush=True)
# exit without stopping either: the interpreter's exit must end them
"""


def test_processes_still_running_at_interpreter_exit_are_ended() -> None:
    result = subprocess.run(
        [sys.executable, "-c", AT_EXIT], capture_output=True, text=True, timeout=6 * WAIT
    )
    assert result.returncode == 0, result.stderr
    redis_pid, server_pid, directory = json.loads(result.stdout)
    assert gone(redis_pid) and gone(server_pid)
    assert not os.path.exists(directory)


CTRL_C = """
import json, os, signal, sys, threading
import psutil
from wslab import RedisServer, ServerProcess
redis = RedisServer().start()
server = ServerProcess().start()
interrupted = False
try:
    os.killpg(os.getpgrp(), signal.SIGINT)  # what a terminal's Ctrl+C sends
    threading.Event().wait(60)
except KeyboardInterrupt:
    interrupted = True
# Both would exit within a second of a SIGINT (redis shuts down, serve stops): give them
# the window, then see that neither did.
ended, alive = psutil.wait_procs(
    [psutil.Process(redis.pid), psutil.Process(server.pid)], timeout=float(sys.argv[1])
)
print(json.dumps([interrupted, len(ended), redis.ping(), server.running]), flush=True)
redis.close()
server.stop()
"""


def test_a_ctrl_c_meant_for_python_does_not_reach_its_programs() -> None:
    """Each program runs in a session of its own: the interrupt stops Python's wait only."""
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C, str(unit(2))],
        capture_output=True,
        text=True,
        timeout=6 * WAIT,
        start_new_session=True,  # a process group of its own, like a terminal's job
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, 0, True, True]


HARD_DEATH = """
import json, threading
from wslab import RedisServer, ServerProcess
redis = RedisServer().start()
server = ServerProcess().start()
print(json.dumps([redis.pid, server.pid, redis.directory]), flush=True)
threading.Event().wait(60)  # until the test kills this interpreter with SIGKILL
"""


def wait_until_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait (bounded) until none of ``pids`` runs; the ones still running."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if not gone(pid)]
    while alive and time.monotonic() < deadline:
        psutil.wait_procs([psutil.Process(pid) for pid in alive if psutil.pid_exists(pid)], 0.05)
        alive = [pid for pid in alive if not gone(pid)]
    return alive


def test_programs_of_a_python_killed_with_sigkill_are_ended_by_the_watchdog() -> None:
    """No exit handler runs in a SIGKILLed interpreter (nbval ends kernels that way)."""
    parent = subprocess.Popen([sys.executable, "-c", HARD_DEATH], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        redis_pid, server_pid, directory = json.loads(parent.stdout.readline())
        assert not gone(redis_pid) and not gone(server_pid)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
    assert wait_until_gone([redis_pid, server_pid], WAIT) == []
    shutil.rmtree(directory)  # a temporary directory is the one thing left: no handler ran


FORGOTTEN = """
import json
from wslab import ServerProcess
server = ServerProcess().start()
print(json.dumps(server.pid), flush=True)
# exits normally without stopping it
"""


def test_a_python_that_exits_normally_ends_its_watchdog_and_forgotten_programs() -> None:
    """The program is ended at exit and the watchdog with it: no process or pipe is left
    for the collector to warn about."""
    done = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", FORGOTTEN],
        capture_output=True,
        text=True,
        timeout=6 * WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert wait_until_gone([json.loads(done.stdout)], WAIT) == []


def test_a_kernel_shut_down_now_leaves_no_program_running() -> None:
    """What nbval does after a lesson: ``shutdown_kernel(now=True)``, a SIGKILL."""
    from jupyter_client.manager import start_new_kernel

    manager, kernel = start_new_kernel(kernel_name="python3", startup_timeout=6 * WAIT)
    try:
        code = (
            "from wslab import RedisServer, ServerProcess\n"
            "redis, server = RedisServer().start(), ServerProcess().start()\n"
            "print(redis.pid, server.pid, redis.directory)"
        )
        printed: list[str] = []
        reply = kernel.execute_interactive(
            code,
            timeout=6 * WAIT,
            output_hook=lambda m: printed.append(
                m["content"]["text"] if m["content"].get("name") == "stdout" else ""
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        redis_pid, server_pid, directory = "".join(printed).split()
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    assert wait_until_gone([int(redis_pid), int(server_pid)], WAIT) == []
    shutil.rmtree(directory)

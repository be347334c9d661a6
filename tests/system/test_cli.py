"""``python -m wslab serve``: the first line, the real port, a clean exit on signals, the
page served wherever it was started from."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WAIT
from wslab import ChatClient, ChatServer
from wslab.__main__ import announce
from wslab.frontend import fill_page
from wslab.options import cli_options

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wslab",
            "serve",
            "--port",
            "0",
            "--grace",
            "0",
            "--rate-limit",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.fullmatch(r"wslab chat server listening on (ws://127\.0\.0\.1:(\d+)/chat)\n", first)
    assert match, f"unexpected first line {first!r}"
    assert int(match.group(2)) > 0  # --port 0 prints the real port
    yield process, match.group(1)
    if process.poll() is None:
        process.kill()
    process.wait(WAIT)
    process.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_runs_until_a_signal_then_closes_clients_with_1001(
    cli_server: tuple[subprocess.Popen[str], str], signum: signal.Signals
) -> None:
    process, url = cli_server

    async def scenario() -> None:
        client = await ChatClient(url, "ann", reconnect=False).connect(WAIT)
        await client.send_message("hello CLI")
        await client.wait_for_message("hello CLI", WAIT)
        process.send_signal(signum)
        await client.wait_for(lambda c: c.status == "offline", 2 * WAIT)
        assert client.last_close is not None and client.last_close[0] == 1001

    asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert process.wait(2 * WAIT) == 0


def test_serve_help_lists_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in [
        "--host", "--port", "--grace", "--max-size", "--max-clients", "--history",
        "--rate-limit", "--seed-compatible", "--store",
    ]:  # fmt: skip
        assert option in result.stdout
    for derived in cli_options():  # every option defined in wslab.options, with its default
        assert derived.flag in result.stdout
    assert "(default 1.0, >= 0)" in " ".join(result.stdout.split())  # --grace


# ------------------------------------------------------------------- bad options, bad starts


def run_cli(*args: str, timeout: float = 4 * WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wslab", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line of stderr (asserting there is one, and no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "-5"], "--port: -5 is out of range: must be from 0 to 65535"),
        (["--port", "70000"], "--port: 70000 is out of range"),
        (["--port", "http"], "--port: 'http' is not an integer"),
        (["--grace", "-1"], "--grace: -1 is out of range: must be >= 0"),
        (["--grace", "inf"], "--grace: inf is out of range"),
        (["--history", "0"], "--history: 0 is out of range: must be >= 1"),
        (["--max-size", "0"], "--max-size: 0 is out of range: must be >= 1"),
        (["--max-clients", "0"], "--max-clients: 0 is out of range: must be >= 1"),
        (["--rate-limit", "-2"], "--rate-limit: -2 is out of range: must be >= 0"),
        (["--max-buffer", "0"], "--max-buffer: 0 is out of range"),
        (["--join-timeout", "0"], "--join-timeout: 0 is out of range: must be > 0"),
        (["--max-per-address", "-1"], "--max-per-address: -1 is out of range"),
        (["--max-bindings", "0"], "--max-bindings: 0 is out of range"),
        (["--store", "/no/such/dir/chat.db"], "--store: the directory /no/such/dir does not exist"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (
            ["--redis", "http://127.0.0.1:6379"],
            "--redis: 'http://127.0.0.1:6379' is not a Redis URL",
        ),
        (["--redis", "redis://127.0.0.1:port/0"], "has a bad port"),
        (["--redis", "redis:///0"], "names no host"),
        (["--redis-heartbeat", "0"], "--redis-heartbeat: 0 is out of range"),
        (["--rate-burst", "0"], "--rate-burst: 0 is out of range: must be > 0"),
        (["--open-timeout", "-1"], "--open-timeout: -1 is out of range: must be > 0"),
        (["--redis-keep", "0"], "--redis-keep: 0 is out of range: must be >= 1"),
        (["--presence-tick", "nan"], "--presence-tick: nan is out of range"),
        (
            ["--redis", "redis://127.0.0.1:6379/0", "--store", "chat.db"],
            "--redis cannot go with --store or --seed-compatible",
        ),
        (
            ["--redis", "redis://127.0.0.1:6379/0", "--seed-compatible"],
            "--redis cannot go with --store or --seed-compatible",
        ),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_2(args: list[str], says: str) -> None:
    result = run_cli("serve", *args)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("python -m wslab") and ": error: " in line and says in line
    assert result.stdout == ""


def test_a_store_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "--store", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in one_line(result)


def test_exercises_jobs_below_one_is_refused() -> None:
    result = run_cli("exercises", "--check", "--jobs", "0")
    assert result.returncode == 2
    assert "--jobs: 0 is out of range: must be >= 1" in one_line(result)


def test_a_port_in_use_is_one_line_and_exit_code_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result) == (
        f"python -m wslab serve: error: cannot listen on 127.0.0.1 port {port}:"
        " the port is already in use"
    )


def test_an_unknown_host_is_one_line_and_exit_code_1() -> None:
    result = run_cli("serve", "--port", "0", "--host", "no-such-host.invalid")
    assert result.returncode == 1
    assert "cannot listen on no-such-host.invalid port 0" in one_line(result)


def test_a_corrupt_store_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    bad = tmp_path / "chat.db"
    bad.write_bytes(b"this is not SQLite " * 100)
    result = run_cli("serve", "--port", "0", "--store", str(bad))
    assert result.returncode == 1
    assert one_line(result).endswith(f"store {bad} is not a SQLite database, or it is corrupt")


def test_a_second_server_on_the_same_store_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    first = subprocess.Popen(
        [sys.executable, "-m", "wslab", "serve", "--port", "0", "--store", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("wslab chat server listening on ")
        second = run_cli("serve", "--port", "0", "--store", str(path))
        assert second.returncode == 1
        assert one_line(second).endswith(f"store {path} is in use by another server (it is locked)")
        assert first.poll() is None  # the first one runs on, untouched
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(2 * WAIT) == 0
        assert first.stdout is not None
        first.stdout.close()
    # Once the first one stopped, the lock is free again.
    again = subprocess.Popen(
        [sys.executable, "-m", "wslab", "serve", "--port", "0", "--store", str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert again.stdout is not None
    assert again.stdout.readline().startswith("wslab chat server listening on ")
    again.send_signal(signal.SIGTERM)
    assert again.wait(2 * WAIT) == 0
    again.stdout.close()


def test_seed_compatible_mode_warns_at_start() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "wslab", "serve", "--port", "0", "--seed-compatible"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    warning = process.stderr.readline()
    assert warning.startswith("warning: --seed-compatible trusts ids without tokens")
    assert process.stdout.readline().startswith("wslab chat server listening on ")
    assert process.stdout.readline().startswith("chat page: http://127.0.0.1:")
    process.send_signal(signal.SIGTERM)
    assert process.wait(2 * WAIT) == 0
    process.stdout.close()
    process.stderr.close()


def test_help_is_plain_text() -> None:
    for args in (["--help"], ["serve", "--help"]):
        result = run_cli(*args)
        assert result.returncode == 0
        for markup in ("``", ":class:", ":func:", ":meth:", "~wslab"):
            assert markup not in result.stdout, (args, markup)
    assert "python -m wslab serve" in run_cli("--help").stdout


def test_announce_prints_every_reachable_url_and_warns_when_public() -> None:
    server = ChatServer("0.0.0.0", 8765)  # never started: nothing binds beyond loopback
    lines, warnings = announce(server)
    assert lines[0] == "wslab chat server listening on ws://127.0.0.1:8765/chat"
    assert lines[1] == "chat page: http://127.0.0.1:8765/"
    assert lines[1:] == [f"chat page: {url}" for url in server.reachable_urls]
    assert len(warnings) == 1
    assert "anyone on the network can connect" in warnings[0]


def test_announce_of_a_loopback_server_has_no_warning() -> None:
    server = ChatServer(port=8765)
    lines, warnings = announce(server)
    assert lines[1:] == ["chat page: http://127.0.0.1:8765/"]
    assert warnings == []


def test_the_page_is_served_when_started_next_to_a_folder_named_wslab(tmp_path: Path) -> None:
    # A clone of this project in the current directory is a namespace package
    # "wslab" that shadows the installed one for anything looked up by name.
    (tmp_path / "wslab").symlink_to(ROOT, target_is_directory=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "wslab", "serve", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 4 * WAIT)
        line = process.stdout.readline() if ready else ""
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/chat", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}/"
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            body = response.read()
            assert response.status == 200
        assert body == fill_page((ROOT / "wslab" / "static" / "index.html").read_bytes())
    finally:
        process.terminate()
        _, err = process.communicate(timeout=4 * WAIT)
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- --hub


@pytest.mark.parametrize(
    "other",
    [["--redis", "redis://127.0.0.1:6379/0"], ["--store", "chat.db"], ["--seed-compatible"]],
)
def test_hub_with_redis_store_or_seed_is_one_line_and_exit_code_2(other: list[str]) -> None:
    result = run_cli("serve", "--hub", *other)
    assert result.returncode == 2
    assert "--hub cannot go with --redis, --store or --seed-compatible" in one_line(result)


def _without_hub_variables(**extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    return {**kept, **extra}


def test_hub_outside_a_hub_is_one_line_and_exit_code_1() -> None:
    command = [sys.executable, "-m", "wslab", "serve", "--hub"]
    result = subprocess.run(
        command, env=_without_hub_variables(), capture_output=True, text=True, timeout=4 * WAIT
    )
    assert result.returncode == 1
    assert "JUPYTERHUB_SERVICE_URL is not set" in one_line(result)
    env = _without_hub_variables(JUPYTERHUB_SERVICE_URL="http://127.0.0.1:10101")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=4 * WAIT)
    assert result.returncode == 1
    line = one_line(result)
    assert "not set: JUPYTERHUB_SERVICE_NAME, JUPYTERHUB_API_URL" in line


def test_hub_without_the_classroom_extra_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    hidden = tmp_path / "jupyterhub"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('not installed here')\n")
    variables = {
        "JUPYTERHUB_SERVICE_NAME": "wslab",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
        "JUPYTERHUB_API_TOKEN": "secret-service-token",
        "JUPYTERHUB_CLIENT_ID": "service-wslab",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/wslab/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/wslab/oauth_callback",
    }
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = _without_hub_variables(PYTHONPATH=path, **variables)
    result = subprocess.run(
        [sys.executable, "-m", "wslab", "serve", "--hub"],
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * WAIT,
    )
    assert result.returncode == 1
    line = one_line(result)
    assert 'pip install "wslab[classroom]"' in line and "secret-service-token" not in line


def test_a_hub_server_refuses_redis_store_and_seed_as_a_configuration_error() -> None:
    from wslab.errors import ConfigurationError

    for other in ({"redis": "redis://127.0.0.1:6379/0"}, {"store": "x.db"}):
        with pytest.raises(ConfigurationError, match="a classroom is one server"):
            ChatServer(hub=True, **other)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a classroom is one server"):
        ChatServer(hub=True, seed_compatible=True)

"""``python -m wslab serve``: the first line, the real port, a clean exit on signals."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from wslab import ChatClient

from .conftest import WAIT


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

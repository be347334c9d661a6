"""Security: origins, identity, floods, size limits, compression bombs, XSS, binding.

- Cross-site WebSocket hijacking: a handshake from a foreign ``Origin`` gets
  HTTP 403; localhost, 127.0.0.1, [::1], no Origin and configured origins pass.
- Identity: claiming an online (or reloading) user's id without its token gets
  ``id_taken`` then 1008, and the real user notices nothing.
- Floods: the rate limit and ``max_clients`` (1013) hold.
- permessage-deflate is off by default; when on, a compression bomb closes
  with 1009 and the server's memory does not grow.
- The browser page renders data with textContent, never innerHTML.
- The server binds loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers.reliability import CliServer, RawWebSocket, claim, hello, say, unit
from wslab import ChatClient, ChatServer, RetryPolicy

STATIC = Path(__file__).resolve().parents[2] / "wslab" / "static"


async def handshake_status(url: str, origin: str | None) -> int:
    """The HTTP status of a WebSocket handshake with this Origin (101 if it opened)."""
    try:
        async with connect(url, origin=origin, open_timeout=unit(5)):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as error:
        return error.response.status_code


# --------------------------------------------------------------------------- origins

FOREIGN = [
    "https://evil.example",
    "http://evil.example:8080",
    "null",  # sandboxed iframes and file:// pages
    "https://localhost.evil.example",
    "https://127.0.0.1.evil.example",
    "http://127.0.0.2",
    "https://sub.ok.example",
    "chrome-extension://abcdefghijklmnop",
]
LOCAL = [
    None,
    "http://localhost",
    "http://localhost:8888",
    "https://LOCALHOST:1",
    "http://127.0.0.1",
    "http://127.0.0.1:5173",
    "http://[::1]",
    "http://[::1]:9000",
]


def test_foreign_origins_get_403_and_no_socket(chat_server: Any) -> None:
    server = chat_server()

    async def statuses(origins: list[str | None]) -> dict[str | None, int]:
        return {origin: await handshake_status(server.url, origin) for origin in origins}

    assert asyncio.run(statuses(FOREIGN)) == {o: 403 for o in FOREIGN}
    assert server.client_count == 0  # refused before any socket existed
    assert asyncio.run(statuses(LOCAL)) == {o: 101 for o in LOCAL}


def test_configured_origins_are_allowed_by_host_only(chat_server: Any) -> None:
    server = chat_server(allowed_origins=["https://ok.example"])

    async def statuses() -> list[int]:
        return [
            await handshake_status(server.url, origin)
            for origin in [
                "https://ok.example",
                "http://ok.example:444",
                "https://evil.example",
                "https://sub.ok.example",
                "http://localhost:3000",
            ]
        ]

    assert asyncio.run(statuses()) == [101, 101, 403, 403, 101]


# --------------------------------------------------------------------------- identity


def test_claiming_an_online_id_without_its_token_is_refused_and_harmless(chat_server: Any) -> None:
    server = chat_server(grace=0.5)

    async def scenario() -> dict[str, Any]:
        owner = ChatClient(server.url, "Owner", id="owner")
        witness = ChatClient(server.url, "Witness", id="witness")
        await owner.connect(unit(10))
        await witness.connect(unit(10))
        await owner.wait_for(lambda c: "witness" in c.users, unit(5))  # its "joined" is in
        mark = len(owner.events)
        no_token = await claim(server.url, "owner")
        wrong_token = await claim(server.url, "owner", token="guess-" + "0" * 22)
        # A sentinel: once the owner has it, anything the attacks caused has arrived too.
        await witness.send_message("sentinel")
        await owner.wait_for_message("sentinel", unit(5))
        seen = [e for e in list(owner.events)[mark:] if e.type != "open"]
        result = {
            "no_token": no_token,
            "wrong_token": wrong_token,
            "owner_events": [json.loads(e.data)["event"] if e.data else e.type for e in seen],
            "owner_status": owner.status,
            "owner_token_kept": owner.token,
            "users": [u["id"] for u in server.users],
        }
        await owner.close()
        await witness.close()
        return result

    result = asyncio.run(scenario())
    for attempt in ("no_token", "wrong_token"):
        received, code = result[attempt]
        assert [(e["event"], e.get("code")) for e in received] == [("error", "id_taken")], attempt
        assert code == 1008, attempt
    assert result["owner_events"] == ["messageWritten"]  # the sentinel, nothing else
    assert result["owner_status"] == "online"
    assert sorted(result["users"]) == ["owner", "witness"]


def test_claiming_an_id_inside_its_reload_grace_is_refused(chat_server: Any) -> None:
    server = chat_server(grace=unit(10))

    async def scenario() -> dict[str, Any]:
        owner = ChatClient(server.url, "Owner", id="owner", reconnect=False)
        await owner.connect(unit(10))
        await asyncio.to_thread(server.drop, "owner")  # the owner's network dies: 1006, in grace
        await owner.wait_for(lambda c: c.status == "offline", unit(5))
        stolen = await claim(server.url, "owner")
        back = ChatClient(server.url, "Owner", id="owner", token=owner.token, reconnect=False)
        await back.connect(unit(10))
        result = {
            "stolen": stolen,
            "reload": back.was_page_reload,
            "token": back.token == owner.token,
        }
        await back.close()
        return result

    result = asyncio.run(scenario())
    received, code = result["stolen"]
    assert [e.get("code") for e in received] == ["id_taken"] and code == 1008
    assert result["reload"] and result["token"]


# --------------------------------------------------------------------------- floods


def test_a_flood_is_rate_limited_and_spares_the_others(chat_server: Any) -> None:
    server = chat_server(history=10_000)

    async def scenario() -> dict[str, Any]:
        bystander = ChatClient(server.url, "Bystander", id="bystander")
        await bystander.connect(unit(10))
        async with connect(server.url, max_size=None) as flood:
            await flood.send(hello("flooder", "Flooder", lastMessageId=2**53 - 1))
            await asyncio.wait_for(flood.recv(), unit(5))
            started = time.monotonic()
            for i in range(400):
                await flood.send(say(f"flood {i}", f"f{i}"))
            # The others are not hurt: the bystander still chats.
            await bystander.send_message("still here")
            await bystander.wait_for_message("still here", unit(10))
            # A last message, resent until the bucket lets it in: once its ack is
            # back, the server has handled every frame of the flood.
            errors: list[str] = []
            for _ in range(100):
                await flood.send(say("end", "f-end"))
                if await _ack_within(flood, "f-end", unit(0.2), errors):
                    break
            elapsed = time.monotonic() - started
            still_open = flood.close_code is None
        stored = [m for m in server.history if m["id"] == "flooder" and m["message"] != "end"]
        await bystander.close()
        return {"errors": errors, "stored": len(stored), "elapsed": elapsed, "open": still_open}

    result = asyncio.run(scenario())
    assert result["errors"] and set(result["errors"]) == {"rate_limited"}, result["errors"]
    assert result["open"]
    # Burst 40 (one token went to connecting), then 20/s.
    assert 39 <= result["stored"] <= 39 + 20 * result["elapsed"] + 2
    assert server.handler_errors == 0


async def _ack_within(ws: ClientConnection, cmid: str, seconds: float, errors: list[str]) -> bool:
    """Read for at most ``seconds``: True once the ack of ``cmid`` came; collect error codes."""
    deadline = time.monotonic() + seconds
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if event["event"] == "error":
                errors.append(event["code"])
            elif (
                event["event"] == "messageWritten"
                and event["message"].get("clientMessageId") == cmid
            ):
                return True
    except (TimeoutError, ValueError):
        return False


def test_max_clients_holds_under_a_connection_flood(chat_server: Any) -> None:
    server = chat_server(max_clients=10)

    async def one(i: int) -> str:
        try:
            ws = await connect(server.url, open_timeout=unit(10))
        except (OSError, InvalidStatus) as error:
            return f"refused:{error}"
        try:
            await ws.send(hello(f"crowd{i}", "Crowd", lastMessageId=2**53 - 1))
            event = json.loads(await asyncio.wait_for(ws.recv(), unit(10)))
            kept.append(ws)
            return str(event["event"])
        except ConnectionClosed:
            return f"closed:{ws.close_code}"

    kept: list[ClientConnection] = []

    async def scenario() -> tuple[list[str], int, bool]:
        outcomes = await asyncio.gather(*(one(i) for i in range(40)))
        count = await asyncio.to_thread(lambda: server.client_count)
        for ws in kept:
            await ws.close()
        kept.clear()
        # Room again once they left: a newcomer gets in.
        late = ChatClient(server.url, "Late", reconnect=False, policy=RetryPolicy())
        await late.connect(unit(10))
        ok = late.online
        await late.close()
        return outcomes, count, ok

    outcomes, count, late_ok = asyncio.run(scenario())
    assert outcomes.count("connected") == 10
    assert outcomes.count("closed:1013") == 30, outcomes
    assert count == 10 and late_ok


# --------------------------------------------------------------------------- compression


def test_permessage_deflate_is_off_by_default(chat_server: Any) -> None:
    server = chat_server()
    raw = RawWebSocket.connect(
        "127.0.0.1", server.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]
    )
    raw.close()
    assert raw.status == 101
    assert "sec-websocket-extensions" not in raw.headers


BOMB_SERVER = """
import sys
from wslab import ChatServer
server = ChatServer(compression="deflate", max_size=65536).start()
print(server.port, flush=True)
sys.stdin.readline()
server.stop()
"""


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


def _bomb(inflated: int) -> bytes:
    """A permessage-deflate payload that inflates to ``inflated`` bytes of JSON-ish text."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"[" * 2**20
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]  # RFC 7692: the sender removes the sync flush's tail


def test_a_compression_bomb_closes_1009_without_memory_growth() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", BOMB_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        port = int(process.stdout.readline())
        bomb = _bomb(64 * 2**20)  # 64 MiB once inflated, 1000 times max_size
        assert len(bomb) < 65536, "the compressed frame itself must fit in max_size"
        raw = RawWebSocket.connect(
            "127.0.0.1", port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]
        )
        assert raw.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate")
        raw.send_frame(0x1, _deflate(hello("bomber", "Bomber")), rsv1=True)
        first = raw.recv_frame()  # "connected", compressed by the server
        assert first.opcode == 0x1 and first.rsv1
        peak_before = _peak_rss(process.pid)
        raw.send_frame(0x1, bomb, rsv1=True)
        _, code = raw.recv_until_close()
        raw.close()
        peak_after = _peak_rss(process.pid)
        # The server is still up: a new socket opens and joins.
        again = RawWebSocket.connect("127.0.0.1", port)
        again.send_text(hello("after", "After"))
        after_frame = again.recv_frame()
        again.close()
    finally:
        if process.stdin is not None:
            process.stdin.write("\n")
            process.stdin.flush()
        process.wait(timeout=unit(15))
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
    assert code == 1009
    assert peak_after - peak_before < 16 * 2**20, (peak_before, peak_after)
    assert json.loads(after_frame.payload)["event"] == "connected"


def _deflate(text: str) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


# --------------------------------------------------------------------------- XSS


def _strip_js_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    return re.sub(r"(?m)(^|[^:\\])//.*$", r"\1", source)


def test_the_page_never_renders_data_as_html() -> None:
    """chat.js builds the DOM with textContent: no innerHTML & co. (grep-style check)."""
    script = _strip_js_comments((STATIC / "chat.js").read_text())
    assert "textContent" in script
    for sink in (
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setHTMLUnsafe",
        "createContextualFragment",
    ):
        assert sink not in script, sink
    for match in re.finditer(r"innerHTML\s*(\+?=)?\s*([^;\n]*)", script):
        operator, value = match.groups()
        # Reading innerHTML, or clearing it with an empty literal, cannot inject data.
        assert operator is None or value.strip() in ('""', "''", "``"), match.group(0)
    page = (STATIC / "index.html").read_text()
    assert "innerHTML" not in page and not re.search(r"\son\w+\s*=", page)


# --------------------------------------------------------------------------- binding


def _listening(pid: int, port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }


def test_the_server_binds_loopback_by_default() -> None:
    server = ChatServer().start()
    try:
        assert server.host == "127.0.0.1"
        assert server.url == f"ws://127.0.0.1:{server.port}/chat"
        assert _listening(psutil.Process().pid, server.port) == {"127.0.0.1"}
    finally:
        server.stop()


@pytest.mark.slow
def test_the_cli_binds_loopback_by_default() -> None:
    cli = CliServer.start("--port", "0")
    try:
        assert cli.first_line == f"wslab chat server listening on ws://127.0.0.1:{cli.port}/chat"
        assert _listening(cli.process.pid, cli.port) == {"127.0.0.1"}
    finally:
        assert cli.terminate() == 0


def test_other_paths_get_404(chat_server: Any) -> None:
    server = chat_server()
    raw = RawWebSocket.connect("127.0.0.1", server.port, path="/admin")
    raw.close()
    assert raw.status == 404

"""The comparison servers: a minimal ``websockets`` broadcast chat and a python-socketio chat.

Both speak the same events as wslab (``connecting`` -> ``connected``, ``writeMessage`` ->
``messageWritten`` to everyone, the sender included) with the same message entry, so the
load generator measures the same work everywhere. Neither validates, rate-limits, keeps
history or tracks presence: they are the floor a chat server cannot go below.

Run one as its own process; like ``python -m wslab serve`` it prints its URL first::

    python -m benchmarks.servers baseline --port 0
    python -m benchmarks.servers socketio --port 0
    python -m benchmarks.servers socketio --port 0 --redis redis://127.0.0.1:6379/0

With ``--redis``, the python-socketio server shares its rooms through Redis
(``socketio.AsyncRedisManager``, its own way to run several servers): every emit is
published to Redis, and every server, this one included, sends it to its own clients.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from datetime import UTC, datetime
from typing import Any

__all__ = ["main", "message_entry", "serve_baseline", "serve_socketio"]


def _dumps(obj: dict[str, Any]) -> str:
    # The same compact form as wslab.protocol.encode, so bytes per delivery compare.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def message_entry(message_id: int, user: tuple[str, str], data: dict[str, Any]) -> dict[str, Any]:
    """Build the protocol's message entry for one ``writeMessage`` payload."""
    entry: dict[str, Any] = {
        "messageId": message_id,
        "id": user[0],
        "username": user[1],
        "message": str(data.get("message", "")),
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if "clientMessageId" in data:
        entry["clientMessageId"] = data["clientMessageId"]
    return entry


def _connected(user: tuple[str, str]) -> dict[str, Any]:
    return {
        "event": "connected",
        "id": user[0],
        "username": user[1],
        "token": "",
        "connectedUserList": [],
        "messagesList": [],
        "wasPageReload": False,
    }


async def _wait_for_signal() -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop


async def serve_baseline(host: str, port: int) -> None:
    """Serve the baseline chat on ``ws://host:port/chat`` until SIGINT or SIGTERM."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    members: set[ServerConnection] = set()
    message_ids = itertools.count(1)

    async def handler(ws: ServerConnection) -> None:
        user: tuple[str, str] | None = None
        try:
            async for raw in ws:
                data = json.loads(raw)
                if data.get("event") == "connecting" and user is None:
                    user = (str(data["id"]), str(data["username"]))
                    await ws.send(_dumps(_connected(user)))
                    members.add(ws)
                elif data.get("event") == "writeMessage" and user is not None:
                    entry = message_entry(next(message_ids), user, data)
                    broadcast(members, _dumps({"event": "messageWritten", "message": entry}))
        finally:
            members.discard(ws)

    # compression=None as in wslab: deflate would be compressed once per socket.
    async with serve(handler, host, port, compression=None, max_size=65536) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"baseline chat server listening on ws://{host}:{bound}/chat", flush=True)
        await _wait_for_signal()


async def serve_socketio(host: str, port: int, redis: str | None = None) -> None:
    """Serve the python-socketio chat (aiohttp) on ``ws://host:port/socket.io/``,
    through the Redis at ``redis`` if given."""
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(redis) if redis else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, logger=False, engineio_logger=False
    )
    users: dict[str, tuple[str, str]] = {}
    message_ids = itertools.count(1)

    @sio.on("connecting")
    async def connecting(sid: str, data: dict[str, Any]) -> None:
        user = users[sid] = (str(data["id"]), str(data["username"]))
        await sio.enter_room(sid, "chat")
        await sio.emit("connected", _connected(user), to=sid)

    @sio.on("writeMessage")
    async def write_message(sid: str, data: dict[str, Any]) -> None:
        if sid in users:
            entry = message_entry(next(message_ids), users[sid], data)
            await sio.emit("messageWritten", {"message": entry}, room="chat")

    @sio.on("disconnect")
    async def disconnect(sid: str, *_reason: object) -> None:
        users.pop(sid, None)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"socketio chat server listening on ws://{host}:{bound}/socket.io/", flush=True)
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m benchmarks.servers {baseline,socketio} [--host] [--port]
    [--redis URL]`` (``--redis``: socketio only)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=["baseline", "socketio"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", help="socketio: share the rooms through this Redis")
    args = parser.parse_args(argv)
    if args.kind == "baseline":
        if args.redis:
            parser.error("--redis is for socketio")
        asyncio.run(serve_baseline(args.host, args.port))
    else:
        asyncio.run(serve_socketio(args.host, args.port, args.redis))


if __name__ == "__main__":
    main()

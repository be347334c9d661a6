"""Several ``python -m wslab serve --redis URL`` processes on one Redis, for tests.

A :class:`Cluster` starts its servers side by side (each is a Python process that
takes a moment to import the kit) and stops whatever still runs at the end. The
raw-log helpers read what a :class:`~wslab.ChatClient` received, frame by frame,
as a browser's ``WebSocket`` would have fired it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import WAIT
from wslab import ChatClient, RedisServer, ServerProcess


@dataclass
class Cluster:
    """``count`` chat server processes sharing one chat through ``redis``.

    ``options`` are extra ``serve`` options (``"--grace", "0.5"``...), the same
    for every server. Any thread; not thread-safe itself.
    """

    redis: RedisServer
    count: int = 3
    options: tuple[str, ...] = ()
    servers: list[ServerProcess] = field(default_factory=list)

    def start(self) -> Cluster:
        """Start every server (in parallel); return once all listen."""
        self.servers = [
            ServerProcess("--redis", self.redis.url, *self.options) for _ in range(self.count)
        ]
        with ThreadPoolExecutor(self.count) as pool:
            for started in [pool.submit(s.start, 3 * WAIT) for s in self.servers]:
                started.result()
        return self

    @property
    def urls(self) -> list[str]:
        """Every server's socket URL, in server order."""
        urls = [s.url for s in self.servers]
        assert all(urls), "a server of the cluster never started"
        return [u for u in urls if u is not None]

    def url(self, index: int) -> str:
        url = self.servers[index].url
        assert url is not None
        return url

    def kill(self) -> None:
        """End every server that still runs, at once (SIGKILL). Safe to repeat."""
        for server in self.servers:
            server.kill()

    def output(self) -> str:
        """What every server printed, for a failure message."""
        return "\n".join(
            f"--- server {i}:\n{server.output()[-3000:]}" for i, server in enumerate(self.servers)
        )


def frames(client: ChatClient, *events: str) -> list[dict[str, Any]]:
    """The JSON events ``client`` received (its raw log), those named ``events`` only."""
    found = []
    for raw in client.events:
        if raw.type != "message" or not isinstance(raw.data, str):
            continue
        try:
            event = json.loads(raw.data)
        except ValueError:
            continue
        if isinstance(event, dict) and (not events or event.get("event") in events):
            found.append(event)
    return found


def since_last_open(client: ChatClient, *events: str) -> list[dict[str, Any]]:
    """Like :func:`frames`, but only what came on the client's newest connection."""
    log = list(client.events)
    opens = [i for i, raw in enumerate(log) if raw.type == "open"]
    start = opens[-1] if opens else 0
    found = []
    for raw in log[start:]:
        if raw.type == "message" and isinstance(raw.data, str):
            event = json.loads(raw.data)
            if not events or event.get("event") in events:
                found.append(event)
    return found


def presence_frames(clients: Iterable[ChatClient], user_id: str) -> list[str]:
    """Every ``joined``/``disconnected`` about ``user_id`` in these clients' raw logs."""
    return [
        f"{client.id} got {event['event']}"
        for client in clients
        for event in frames(client, "joined", "disconnected")
        if event.get("id") == user_id
    ]


def close_codes(client: ChatClient) -> list[int | None]:
    """The code of every close in the client's raw log, oldest first."""
    return [raw.code for raw in client.events if raw.type == "close"]

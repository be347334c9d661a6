"""A class at once: N students join the classroom chat through a real JupyterHub.

One run measures, side by side:

* ``plain``: ``python -m wslab serve`` without the hub, the clients connecting to it
  directly, with no credentials (the reference);
* ``hub-cold``: ``python -m wslab serve --hub`` as a managed service of a real
  JupyterHub (``DummyAuthenticator``, the npm ``configurable-http-proxy``), N users
  each with a token minted through the hub's REST API, every client connecting
  through the hub's proxy with ``Authorization: token ...``: the service asks the hub
  who each token belongs to, so this is a class joining at once with an empty cache;
* ``hub-warm``: the same N clients again, within the token cache's period (a class
  reloading): the service answers from its cache.

The load generator (:mod:`benchmarks.loadgen`, picows, at most 50 handshakes at a time)
times each join from the first connect to the last ``connected``. Then the chat: one
client writes, every client receives, through the proxy and on the plain server.

The hub's requests are counted by the hub itself: its Prometheus metrics
(``/hub/metrics``) count the requests to ``GET /hub/api/user``, which is how the
service asks who a token belongs to. Goal: joining at most 3x the plain server, and at
most one hub request per user per cache period.

``hub alone``: the hub's own floor for a cold join. A new token per student, each
asked about once straight at the hub's API (``GET /hub/api/user``, 20 at a time, as
the service asks), with no proxy, no service and no chat: what one hub request per
user costs before any socket is opened.

CPU: the chat service runs on the server core, like the plain server, and the load
on the other. The hub and its proxy are not pinned: in a deployment they run on
machines (or pods) of their own, and on two cores there is no third to give them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from .config import Sizes
from .noise import QuietPolicy
from .report import Check, at_most, fmt, table
from .stats import median
from .targets import TARGETS, BenchmarkError, Pinning, ServerProcess, run_load

__all__ = ["classroom_checks", "classroom_table", "count_requests", "run_classroom"]

SERVICE = "wslab"
GROUP = "class"
#: The hub handler behind ``GET /hub/api/user`` (who does this token belong to?).
WHO_AM_I = "jupyterhub.apihandlers.users.SelfAPIHandler"
_COUNT = re.compile(r"^jupyterhub_request_duration_seconds_count\{(?P<labels>[^}]*)\} (?P<n>\S+)$")


def _student(i: int) -> str:
    return f"student{i:04d}"


def hub_requests(public_url: str) -> int:
    """How many ``GET /hub/api/user`` requests the hub has answered so far (any status)."""
    with urllib.request.urlopen(f"{public_url}hub/metrics", timeout=10) as response:
        return count_requests(response.read().decode())


def count_requests(text: str) -> int:
    """The ``GET /hub/api/user`` requests in the hub's Prometheus ``text``."""
    total = 0.0
    for line in text.splitlines():
        match = _COUNT.match(line)
        if match and f'handler="{WHO_AM_I}"' in match["labels"]:
            total += float(match["n"])
    return int(total)


@contextlib.contextmanager
def classroom_hub(students: int, core: int | None) -> Iterator[Any]:
    """A real hub running ``serve --hub`` as a managed service, with ``students`` users;
    the chat service pinned to ``core`` when given."""
    from wslab import MissingProgramError, ProcessStartError
    from wslab.testing import HubService, JupyterHubProcess

    command = [sys.executable, "-m", "wslab", "serve", "--hub"]
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))}
    try:
        hub = JupyterHubProcess(
            services=[HubService(SERVICE, command=command, environment=env)],
            roles=[
                {
                    "name": "class",
                    "scopes": [f"access:services!service={SERVICE}"],
                    "groups": [GROUP],
                }
            ],
            groups={GROUP: [_student(i) for i in range(students)]},
            config="c.JupyterHub.authenticate_prometheus = False\n",
        )
    except MissingProgramError as error:
        raise BenchmarkError(f"classroom needs a hub: {error}") from None
    with hub:
        try:
            hub.start(timeout=120)
        except ProcessStartError as error:
            raise BenchmarkError(f"the hub did not start: {error}") from None
        if core is not None and hub.hub_pid is not None:
            root = psutil.Process(hub.hub_pid)
            for process in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "wslab" in process.cmdline() and "serve" in process.cmdline():
                        process.cpu_affinity([core])
        yield hub


def hub_alone(api_url: str, tokens: list[str], at_once: int = 20) -> float:
    """Seconds the hub takes to answer ``GET /hub/api/user`` once for each of ``tokens``
    (never used before), ``at_once`` requests at a time, straight at its API."""

    def ask(token: str) -> None:
        request = urllib.request.Request(
            f"{api_url}/user", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    with ThreadPoolExecutor(at_once) as pool:
        start = time.perf_counter()
        list(pool.map(ask, tokens))
        return time.perf_counter() - start


def _load_argv(url: str, clients: int, sizes: Sizes, headers: Path | None) -> list[str]:
    argv = [
        sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--wire", "chat",
        "--clients", str(clients), "--messages", str(sizes.messages_for(clients)),
        "--window", str(sizes.window), "--latency-messages",
        str(sizes.latency_messages_for(clients)), "--time-limit", str(sizes.time_limit),
    ]  # fmt: skip
    if headers is not None:
        argv += ["--headers-file", str(headers)]
    return argv


def _join(argv: list[str], pins: Pinning | None, what: str) -> dict[str, Any]:
    clients = int(argv[argv.index("--clients") + 1])
    return run_load([*argv, "--join-only"], pins.load if pins else None, 60 + clients / 5, what)


def _chat(argv: list[str], pins: Pinning | None, sizes: Sizes, what: str) -> dict[str, Any]:
    clients = int(argv[argv.index("--clients") + 1])
    timeout = 60 + 3 * sizes.time_limit + clients / 5
    return run_load(argv, pins.load if pins else None, timeout, what)


def _figures(result: dict[str, Any]) -> dict[str, float]:
    run = result["runs"][0]
    return {
        "deliveries_per_s": run["throughput"]["deliveries_per_s"],
        "fanout_p50_ms": run["latency"]["latency_p50_ms"],
    }


def _plain(clients: int, sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    joins = []
    for _ in range(sizes.join_runs):
        with ServerProcess(TARGETS["wslab"], pins.server if pins else None) as server:
            joins.append(_join(_load_argv(server.url, clients, sizes, None), pins, "plain join"))
    with ServerProcess(TARGETS["wslab"], pins.server if pins else None) as server:
        chat = _chat(_load_argv(server.url, clients, sizes, None), pins, sizes, "plain chat")
    return {"join_s": median([j["connect_s"] for j in joins]), "joins": joins, **_figures(chat)}


def _on_the_hub(clients: int, sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    with (
        classroom_hub(clients, pins.server if pins else None) as hub,
        tempfile.TemporaryDirectory(prefix="wslab-class-") as folder,
    ):
        tokens = [hub.mint_token(_student(i)) for i in range(clients)]
        headers = Path(folder) / "headers.json"
        headers.write_text(json.dumps([{"Authorization": f"token {t}"} for t in tokens]))
        url = hub.public_url.replace("http", "ws", 1) + f"services/{SERVICE}/chat"
        argv = _load_argv(url, clients, sizes, headers)
        before = hub_requests(hub.public_url)
        cold = _join(argv, pins, "join through the hub, empty cache")
        after_cold = hub_requests(hub.public_url)
        warm = _join(argv, pins, "join through the hub, within the cache period")
        after_warm = hub_requests(hub.public_url)
        chat = _chat(argv, pins, sizes, "chat through the hub")
        fresh = [hub.mint_token(_student(i)) for i in range(clients)]
        alone = hub_alone(hub.api_url, fresh)
        return {
            "hub_alone_s": alone,
            "cold_join_s": cold["connect_s"],
            "warm_join_s": warm["connect_s"],
            "cold_server_cpu_s": cold["server_cpu_s"],
            "hub_requests_cold": after_cold - before,
            "hub_requests_warm": after_warm - after_cold,
            **_figures(chat),
        }


def run_classroom(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy) -> dict[str, Any]:
    """Join N token-authenticated students through a real hub and its proxy, then chat;
    the same clients on a plain server; print a table; return the results."""
    points: dict[int, dict[str, Any]] = {}
    for clients in sizes.classroom_clients:
        print(f"  classroom N={clients:<4} plain ...", end="", flush=True)
        plain = _plain(clients, sizes, pins)
        print(f" {fmt(plain['join_s'], 3)} s; on the hub ...", end="", flush=True)
        hub = _on_the_hub(clients, sizes, pins)
        print(
            f" {fmt(hub['cold_join_s'], 3)} s cold, {fmt(hub['warm_join_s'], 3)} s warm,"
            f" {hub['hub_requests_cold']} + {hub['hub_requests_warm']} hub requests;"
            f" the hub alone {fmt(hub['hub_alone_s'], 3)} s"
        )
        points[clients] = {"plain": plain, "hub": hub}
    print()
    print(classroom_table(points))
    return {"points": points}


def classroom_table(points: dict[int, dict[str, Any]]) -> str:
    """One row per N: join times and their ratios, hub requests, the chat's figures."""
    rows = []
    for n, point in sorted(points.items()):
        plain, hub = point["plain"], point["hub"]
        rows.append(
            [
                str(n),
                fmt(plain["join_s"], 3),
                fmt(hub["cold_join_s"], 3),
                f"{hub['cold_join_s'] / plain['join_s']:.2f}x",
                fmt(hub["warm_join_s"], 3),
                f"{hub['warm_join_s'] / plain['join_s']:.2f}x",
                *_alone(hub, plain),
                f"{hub['hub_requests_cold']} / {hub['hub_requests_warm']}",
                f"{fmt(hub['deliveries_per_s'], 0)} vs {fmt(plain['deliveries_per_s'], 0)}",
                f"{fmt(hub['fanout_p50_ms'], 2)} vs {fmt(plain['fanout_p50_ms'], 2)}",
            ]
        )
    headers = [
        "N", "plain join s", "hub join s (cold)", "vs plain", "hub join s (warm)", "vs plain",
        "hub alone s", "vs plain", "hub requests cold / warm", "deliveries/s hub vs plain",
        "fan-out p50 ms hub vs plain",
    ]  # fmt: skip
    return table(headers, rows)


def _alone(hub: dict[str, Any], plain: dict[str, Any]) -> list[str]:
    """The hub-alone cells: its seconds and their ratio to the plain join (results
    recorded before the hub-alone figure have neither)."""
    alone = hub.get("hub_alone_s")
    if alone is None:
        return ["-", "-"]
    return [fmt(alone, 3), f"{alone / plain['join_s']:.2f}x"]


def classroom_checks(data: dict[str, Any]) -> list[Check]:
    """Joining at most 3x the plain server; at most one hub request per user per period."""
    checks = []
    for n, point in sorted(data["points"].items(), key=lambda item: int(item[0])):
        plain, hub = point["plain"], point["hub"]
        alone = hub.get("hub_alone_s")
        note = "" if alone is None else f"the hub alone: {alone / plain['join_s']:.2f}x"
        checks.append(
            at_most(
                f"classroom join N={n}: through the hub vs plain (empty cache)",
                hub["cold_join_s"] / plain["join_s"],
                3.0,
                note,
            )
        )
        checks.append(
            at_most(
                f"classroom N={n}: hub requests per user in one cache period",
                (hub["hub_requests_cold"] + hub["hub_requests_warm"]) / int(n),
                1.0,
            )
        )
    return checks

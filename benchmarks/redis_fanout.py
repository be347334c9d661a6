"""Fan-out through Redis: what sharing one chat between several servers costs.

One run measures, side by side, the same load against

* ``single``: one ``python -m wslab serve`` without Redis (the reference);
* ``redis-1``, ``redis-2``, ``redis-3``: one, two, three ``serve --redis URL`` processes
  sharing one chat through one ``redis-server``.

The load is :mod:`benchmarks.fanout`'s: the load generator opens N clients (the same N
for every configuration, spread round robin over the servers, the sender on the first)
and one of them writes; every client receives every message. With Redis, a message goes
from the sender's server into the Redis log, and every server reads it back from there
and sends it to its own clients, so the figures include that round trip.

CPU: every server process *and* the Redis server run on the server core, the load on
the other, so every configuration has the same CPU budget as the single server. On this
budget more servers cannot deliver more: the ratios show what Redis and the extra
processes cost, not how the chat scales on more cores. The Redis server keeps its data
in memory only (no append-only file), as a cache in front of the chat would.

Reported, as ratios against ``single``: deliveries per second, fan-out latency p50 and
p99 (one message in flight), latency under load, and server CPU per delivery (servers
plus Redis). Never asserted.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from typing import Any

from .config import Sizes
from .fanout import load_run
from .noise import QuietPolicy
from .report import fmt, table
from .stats import median
from .targets import TARGETS, BenchmarkError, Pinning, ServerProcess

__all__ = ["CONFIGURATIONS", "redis_fanout_table", "run_redis_fanout"]

#: The configurations measured: name -> server processes on Redis (0: no Redis at all).
CONFIGURATIONS = {"single": 0, "redis-1": 1, "redis-2": 2, "redis-3": 3}

#: The figures kept from each run; the report shows their medians.
FIGURES = {
    "deliveries_per_s": ("throughput", "deliveries_per_s"),
    "loaded_p50_ms": ("throughput", "latency_p50_ms"),
    "loaded_p99_ms": ("throughput", "latency_p99_ms"),
    "fanout_p50_ms": ("latency", "latency_p50_ms"),
    "fanout_p99_ms": ("latency", "latency_p99_ms"),
    "server_cpu_us_per_delivery": ("throughput", "server_cpu_us_per_delivery"),
    "server_cpu_percent": ("throughput", "server_cpu_percent"),
    "load_cpu_percent": ("throughput", "load_cpu_percent"),
    "other_cpu_percent": ("throughput", "other_cpu_percent"),
}


def _start_redis(core: int | None) -> Any:
    """A memory-only ``redis-server`` on a free loopback port, on ``core`` if given."""
    from wslab import MissingProgramError, ProcessStartError, RedisServer

    try:
        redis = RedisServer(persist=False).start()
    except (MissingProgramError, ProcessStartError) as error:
        raise BenchmarkError(f"redis-fanout needs a Redis server: {error}") from None
    if core is not None and redis.pid is not None:
        os.sched_setaffinity(redis.pid, {core})
    return redis


def _kill(server: ServerProcess) -> None:
    """End a server at once: its clients are gone and its Redis is thrown away next."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)


def _one_point(
    servers: int, clients: int, sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy
) -> dict[str, Any]:
    """Fresh servers (and a fresh Redis) and one load process; ``sizes.runs`` runs, medians."""
    core = pins.server if pins else None

    def attempt() -> dict[str, Any]:
        with contextlib.ExitStack() as stack:
            extra_pids: list[int] = []
            target = TARGETS["wslab"]
            if servers:
                redis = _start_redis(core)
                stack.callback(redis.close)
                extra_pids.append(redis.pid)
                target = target.with_args("--redis", redis.url)
            started = [
                stack.enter_context(ServerProcess(target, core)) for _ in range(max(1, servers))
            ]
            if servers:
                for server in started:
                    stack.callback(_kill, server)  # runs before each polite stop
            return load_run(
                started[0],
                clients,
                sizes.messages_for(clients),
                sizes,
                pins,
                latency_messages=sizes.latency_messages_for(clients),
                warmup=sizes.warmup,
                runs=sizes.runs,
                others=started[1:],
                extra_pids=extra_pids,
            )

    def noise(result: dict[str, Any]) -> float:
        return median([run["throughput"]["other_cpu_percent"] for run in result["runs"]])

    result, attempts = quiet.quietest(attempt, noise)
    runs = result["runs"]
    figures = {
        key: median([run[phase][name] for run in runs]) for key, (phase, name) in FIGURES.items()
    }
    figures["timed_out_runs"] = sum(run["throughput"]["timed_out"] for run in runs)
    figures["connect_s"] = result["connect_s"]
    figures["attempts"] = attempts
    return {"median": figures, "runs": runs}


def run_redis_fanout(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy) -> dict[str, Any]:
    """Measure every configuration at every client count; print a table; return the results."""
    points: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in CONFIGURATIONS}
    for clients in sizes.redis_clients:
        for name, servers in CONFIGURATIONS.items():
            print(f"  fan-out {name:8} N={clients:<5} ...", end="", flush=True)
            point = _one_point(servers, clients, sizes, pins, quiet)
            points[name][clients] = point
            m = point["median"]
            print(
                f" {fmt(m['deliveries_per_s'], 0)} deliveries/s,"
                f" fan-out p50 {fmt(m['fanout_p50_ms'], 2)} ms,"
                f" p99 {fmt(m['fanout_p99_ms'], 2)} ms,"
                f" servers+Redis CPU {fmt(m['server_cpu_percent'], 0)}%,"
                f" load CPU {fmt(m['load_cpu_percent'], 0)}%,"
                f" others {fmt(m['other_cpu_percent'], 0)}%"
            )
    print()
    print(redis_fanout_table(points))
    return {"window": sizes.window, "runs": sizes.runs, "points": points}


#: The table's figures (each followed by its ratio to ``single``) and their decimals.
COLUMNS = (
    ("deliveries_per_s", 0),
    ("fanout_p50_ms", 2),
    ("fanout_p99_ms", 2),
    ("loaded_p50_ms", 1),
    ("loaded_p99_ms", 1),
    ("server_cpu_us_per_delivery", 2),
)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value / base:.2f}x"


def redis_fanout_table(points: dict[str, dict[int, dict[str, Any]]]) -> str:
    """One row per (N, configuration): the figures and their ratios to ``single``."""
    rows = []
    for n in sorted({n for by_n in points.values() for n in by_n}):
        base = points.get("single", {}).get(n, {}).get("median", {})
        for name, by_n in points.items():
            if n not in by_n:
                continue
            m = by_n[n]["median"]
            row = [str(n), name]
            for key, digits in COLUMNS:
                row += [fmt(m[key], digits), _ratio(m[key], base.get(key))]
            rows.append([*row, fmt(m["load_cpu_percent"], 0), fmt(m["other_cpu_percent"], 0)])
    headers = [
        "N", "servers", "deliveries/s", "vs single",
        "fan-out p50 ms", "vs single", "fan-out p99 ms", "vs single",
        "loaded p50 ms", "vs single", "loaded p99 ms", "vs single",
        "CPU us/delivery (servers+Redis)", "vs single", "load CPU %", "others CPU %",
    ]  # fmt: skip
    return table(headers, rows)

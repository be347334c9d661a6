"""Fan-out through Redis: what sharing one chat between several servers costs.

One run measures, side by side, the same load against

* ``single``: one ``python -m wslab serve`` without Redis (the reference);
* ``redis-1``, ``redis-2``, ``redis-3``: one, two, three ``serve --redis URL`` processes
  sharing one chat through one ``redis-server``;
* ``socketio`` and ``socketio-redis``: the python-socketio chat of
  :mod:`benchmarks.servers` alone, and the same on Redis (``AsyncRedisManager``), the
  same Redis cost measured on a popular alternative.

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

Reported, as ratios against the same server alone (``single`` for wslab, ``socketio``
for ``socketio-redis``): deliveries per second, fan-out latency p50 and p99 (one message
in flight), latency under load, and server CPU per delivery (servers plus Redis); then
one line per N with the ratios the targets read: wslab on Redis against wslab alone,
python-socketio on Redis against itself alone, and wslab on Redis against
python-socketio on Redis. Never asserted.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from dataclasses import dataclass
from typing import Any

from .config import Sizes
from .fanout import load_run
from .noise import QuietPolicy
from .report import Check, at_least, fmt, table
from .stats import median
from .targets import TARGETS, BenchmarkError, Pinning, ServerProcess

__all__ = [
    "CONFIGURATIONS",
    "Setup",
    "redis_fanout_checks",
    "redis_fanout_ratios",
    "redis_fanout_table",
    "run_redis_fanout",
]


@dataclass(frozen=True)
class Setup:
    """One configuration: which server, how many processes on Redis (0: no Redis at
    all), and the configuration its ratios are taken against (the same server alone)."""

    target: str
    servers: int
    alone: str


#: The configurations measured, in this order.
CONFIGURATIONS = {
    "single": Setup("wslab", 0, "single"),
    "redis-1": Setup("wslab", 1, "single"),
    "redis-2": Setup("wslab", 2, "single"),
    "redis-3": Setup("wslab", 3, "single"),
    "socketio": Setup("socketio", 0, "socketio"),
    "socketio-redis": Setup("socketio", 1, "socketio"),
}

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
    setup: Setup, clients: int, sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy
) -> dict[str, Any]:
    """Fresh servers (and a fresh Redis) and one load process; ``sizes.runs`` runs, medians."""
    core = pins.server if pins else None
    servers = setup.servers

    def attempt() -> dict[str, Any]:
        with contextlib.ExitStack() as stack:
            extra_pids: list[int] = []
            target = TARGETS[setup.target]
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
    figures["capacity_per_s"] = _capacity(figures["server_cpu_us_per_delivery"])
    figures["timed_out_runs"] = sum(run["throughput"]["timed_out"] for run in runs)
    figures["connect_s"] = result["connect_s"]
    figures["attempts"] = attempts
    return {"median": figures, "runs": runs}


def run_redis_fanout(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy) -> dict[str, Any]:
    """Measure every configuration at every client count; print a table; return the results."""
    points: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in CONFIGURATIONS}
    for clients in sizes.redis_clients:
        for name, setup in CONFIGURATIONS.items():
            print(f"  fan-out {name:14} N={clients:<5} ...", end="", flush=True)
            point = _one_point(setup, clients, sizes, pins, quiet)
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
    print()
    ratios = redis_fanout_ratios(points)
    for n, by_name in ratios.items():
        print(_ratio_line(n, by_name))
    data = {"window": sizes.window, "runs": sizes.runs, "points": points, "ratios": ratios}
    return data | {"checks": redis_fanout_checks(data)}


def _capacity(cpu_us_per_delivery: float) -> float:
    """Deliveries per second the servers' CPU allows: 1 / (CPU per delivery)."""
    if not cpu_us_per_delivery or math.isnan(cpu_us_per_delivery):
        return math.nan
    return 1e6 / cpu_us_per_delivery


#: The ratios reported on their own line: name -> (configuration, against which).
RATIOS = {
    "wslab_redis_vs_alone": ("redis-1", "single"),
    "socketio_redis_vs_alone": ("socketio-redis", "socketio"),
    "wslab_redis_vs_socketio_redis": ("redis-1", "socketio-redis"),
}


def redis_fanout_ratios(
    points: dict[str, dict[int, dict[str, Any]]],
) -> dict[int, dict[str, dict[str, float | None]]]:
    """Per N, each of :data:`RATIOS` on deliveries/s and on capacity (1 / CPU)."""
    ratios: dict[int, dict[str, dict[str, float | None]]] = {}
    for n in sorted({n for by_n in points.values() for n in by_n}):
        ratios[n] = {}
        for name, (setup, against) in RATIOS.items():
            ratios[n][name] = {
                key: _quotient(points, setup, against, n, key)
                for key in ("deliveries_per_s", "capacity_per_s")
            }
    return ratios


def _quotient(
    points: dict[str, dict[int, dict[str, Any]]], a: str, b: str, n: int, key: str
) -> float | None:
    top = points.get(a, {}).get(n, {}).get("median", {}).get(key)
    bottom = points.get(b, {}).get(n, {}).get("median", {}).get(key)
    if top is None or not bottom or math.isnan(top) or math.isnan(bottom):
        return None
    return float(top / bottom)


def _ratio_line(n: int, by_name: dict[str, dict[str, float | None]]) -> str:
    def both(name: str) -> str:
        measured = by_name[name]
        shown = [_times(measured["deliveries_per_s"]), _times(measured["capacity_per_s"])]
        return f"{shown[0]} (capacity {shown[1]})"

    return (
        f"N={n}: wslab on Redis {both('wslab_redis_vs_alone')} of wslab alone;"
        f" python-socketio on Redis {both('socketio_redis_vs_alone')} of itself alone;"
        f" wslab on Redis {both('wslab_redis_vs_socketio_redis')} python-socketio on Redis"
    )


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def redis_fanout_checks(data: dict[str, Any]) -> list[Check]:
    """One server on Redis against one alone, at N=100 (the smallest N of a quick run)."""
    ratios: dict[int, dict[str, dict[str, float | None]]] = data["ratios"]
    n = 100 if 100 in ratios else min(ratios, default=100)
    note = "" if n == 100 else "smoke size"
    measured = ratios.get(n, {}).get("wslab_redis_vs_alone", {})
    return [
        at_least(
            f"wslab on Redis {label} >= 0.8 x wslab alone at N={n}", measured.get(key), 0.8, note
        )
        for key, label in (("deliveries_per_s", "msgs/s"), ("capacity_per_s", "capacity"))
    ]


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
    """One row per (N, configuration): the figures and their ratios to the same server
    alone (``single`` for wslab, ``socketio`` for ``socketio-redis``)."""
    rows = []
    for n in sorted({n for by_n in points.values() for n in by_n}):
        for name, by_n in points.items():
            if n not in by_n:
                continue
            alone = CONFIGURATIONS[name].alone if name in CONFIGURATIONS else "single"
            base = points.get(alone, {}).get(n, {}).get("median", {})
            m = by_n[n]["median"]
            row = [str(n), name]
            for key, digits in COLUMNS:
                row += [fmt(m[key], digits), _ratio(m[key], base.get(key))]
            rows.append([*row, fmt(m["load_cpu_percent"], 0), fmt(m["other_cpu_percent"], 0)])
    headers = [
        "N", "servers", "deliveries/s", "vs alone",
        "fan-out p50 ms", "vs alone", "fan-out p99 ms", "vs alone",
        "loaded p50 ms", "vs alone", "loaded p99 ms", "vs alone",
        "CPU us/delivery (servers+Redis)", "vs alone", "load CPU %", "others CPU %",
    ]  # fmt: skip
    return table(headers, rows)

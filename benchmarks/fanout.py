"""Fan-out: delivered messages/s, fan-out latency and bytes per delivery, per server.

For each target and each client count N, a run starts the server pinned to one core and
the load generator (:mod:`benchmarks.loadgen`) pinned to the other, lets the load open N
clients, and has one of them send messages that everyone (the sender included) receives.
Each point is the median of ``sizes.runs`` runs, each on a fresh server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .config import Sizes
from .report import Check, at_least, at_most, fmt, print_checks, table
from .stats import median
from .targets import (
    TARGETS,
    BenchmarkError,
    Pinning,
    ServerProcess,
    Target,
    child_env,
    pinned,
    REPO,
)

__all__ = ["fanout_checks", "load_run", "run_fanout"]

#: The figures kept from each run; the report shows their medians.
FIGURES = {
    "deliveries_per_s": ("throughput", "deliveries_per_s"),
    "loaded_p50_ms": ("throughput", "latency_p50_ms"),
    "loaded_p99_ms": ("throughput", "latency_p99_ms"),
    "fanout_p50_ms": ("latency", "latency_p50_ms"),
    "fanout_p99_ms": ("latency", "latency_p99_ms"),
    "bytes_per_delivery": ("throughput", "bytes_per_delivery"),
    "server_cpu_percent": ("throughput", "server_cpu_percent"),
    "load_cpu_percent": ("throughput", "load_cpu_percent"),
}


def load_run(
    server: ServerProcess,
    clients: int,
    messages: int,
    sizes: Sizes,
    pins: Pinning | None,
    *,
    window: int | None = None,
    latency_messages: int | None = None,
    time_limit: float | None = None,
    per_message: bool = False,
) -> dict[str, Any]:
    """Run the load generator once against a started server; return its JSON result."""
    limit = sizes.time_limit if time_limit is None else time_limit
    argv = [
        sys.executable, "-m", "benchmarks.loadgen",
        "--url", server.url,
        "--wire", server.target.wire,
        "--clients", str(clients),
        "--messages", str(messages),
        "--window", str(sizes.window if window is None else window),
        "--latency-messages", str(sizes.latency_messages if latency_messages is None else latency_messages),
        "--time-limit", str(limit),
        "--server-pid", str(server.pid),
    ]  # fmt: skip
    if per_message:
        argv.append("--per-message")
    try:
        proc = subprocess.run(
            pinned(argv, pins.load if pins else None),
            cwd=REPO,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60 + 2 * limit + clients / 10,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"load against {server.target.name} N={clients} hung") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchmarkError(f"load against {server.target.name} N={clients} failed:\n{tail}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["failure"]:
        raise BenchmarkError(f"{server.target.name} N={clients}: {result['failure']}")
    return result


def _one_point(target: Target, clients: int, sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    runs = []
    for _ in range(sizes.runs):
        with ServerProcess(target, pins.server if pins else None) as server:
            runs.append(load_run(server, clients, sizes.messages_for(clients), sizes, pins))
    figures = {
        key: median([run[phase][name] for run in runs]) for key, (phase, name) in FIGURES.items()
    }
    figures["timed_out_runs"] = sum(run["throughput"]["timed_out"] for run in runs)
    figures["connect_s"] = median([run["connect_s"] for run in runs])
    return {"median": figures, "runs": runs}


def run_fanout(sizes: Sizes, pins: Pinning | None, targets: list[str]) -> dict[str, Any]:
    """Measure every target at every client count; print a table; return the results."""
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in targets}
    for clients in sizes.clients:
        for name in targets:
            print(f"  fan-out {name:10} N={clients:<5} ...", end="", flush=True)
            point = _one_point(TARGETS[name], clients, sizes, pins)
            results[name][clients] = point
            m = point["median"]
            print(
                f" {fmt(m['deliveries_per_s'], 0)} deliveries/s,"
                f" fan-out p99 {fmt(m['fanout_p99_ms'], 2)} ms,"
                f" server CPU {fmt(m['server_cpu_percent'], 0)}%,"
                f" load CPU {fmt(m['load_cpu_percent'], 0)}%"
            )
    print()
    print(fanout_table(results))
    return {"window": sizes.window, "runs": sizes.runs, "points": results}


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def fanout_table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The fan-out figures, one row per (N, server), ratios against the baseline."""
    headers = [
        "N", "server", "deliveries/s", "vs baseline", "fan-out p50 ms", "fan-out p99 ms",
        "p99 vs baseline", "loaded p99 ms", "bytes/delivery", "server CPU %", "load CPU %",
    ]  # fmt: skip
    rows = []
    clients = sorted({n for points in results.values() for n in points})
    for n in clients:
        base = results.get("baseline", {}).get(n, {}).get("median")
        for name, points in results.items():
            if n not in points:
                continue
            m = points[n]["median"]
            rows.append([
                str(n), name, fmt(m["deliveries_per_s"], 0),
                _ratio(m["deliveries_per_s"], base and base["deliveries_per_s"]),
                fmt(m["fanout_p50_ms"], 2), fmt(m["fanout_p99_ms"], 2),
                _ratio(m["fanout_p99_ms"], base and base["fanout_p99_ms"]),
                fmt(m["loaded_p99_ms"], 1), fmt(m["bytes_per_delivery"], 0),
                fmt(m["server_cpu_percent"], 0), fmt(m["load_cpu_percent"], 0),
            ])  # fmt: skip
    return table(headers, rows)


def fanout_checks(fanout: dict[str, Any]) -> list[Check]:
    """The brief's fan-out targets, at N=100 and N=1000 (at the largest N in a quick run)."""
    points: dict[str, dict[int, dict[str, Any]]] = fanout["points"]
    measured = sorted(points.get("baseline", {}))
    check_ns = [n for n in (100, 1000) if n in measured] or measured[-1:]
    note = "" if any(n in measured for n in (100, 1000)) else "smoke size"

    def figure(name: str, n: int, key: str) -> float | None:
        point = points.get(name, {}).get(n)
        return None if point is None else point["median"][key]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    checks = []
    for n in check_ns:
        wslab, base = figure("wslab", n, "deliveries_per_s"), figure("baseline", n, "deliveries_per_s")
        sio = figure("socketio", n, "deliveries_per_s")
        checks.append(at_least(f"wslab msgs/s >= 0.85 x baseline at N={n}", ratio(wslab, base), 0.85, note))
        checks.append(at_least(f"wslab msgs/s >= 4 x socketio at N={n}", ratio(wslab, sio), 4.0, note))
    n = 100 if 100 in measured else check_ns[0]
    checks.append(
        at_most(
            f"wslab fan-out p99 <= 1.3 x baseline at N={n}",
            ratio(figure("wslab", n, "fanout_p99_ms"), figure("baseline", n, "fanout_p99_ms")),
            1.3,
            note,
        )
    )
    print_checks(checks)
    return checks

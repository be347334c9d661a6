"""Fan-out: delivered messages/s, fan-out latency and bytes per delivery, per server.

For each target and each client count N, a run starts the server pinned to one core and
the load generator (:mod:`benchmarks.loadgen`) pinned to the other, lets the load open N
clients, and has one of them send messages that everyone (the sender included) receives.
Each point is the median of ``sizes.runs`` runs; the runs of one point share one server
process and one load process (a fresh pair for each target and each N).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Sizes
from .noise import QuietPolicy
from .report import Check, at_least, at_most, fmt, table
from .stats import median
from .targets import TARGETS, Pinning, ServerProcess, Target, run_load

__all__ = ["fanout_checks", "load_run", "plot_fanout", "run_fanout"]

#: The figures kept from each run; the report shows their medians.
FIGURES = {
    "deliveries_per_s": ("throughput", "deliveries_per_s"),
    "loaded_p50_ms": ("throughput", "latency_p50_ms"),
    "loaded_p99_ms": ("throughput", "latency_p99_ms"),
    "fanout_p50_ms": ("latency", "latency_p50_ms"),
    "fanout_p99_ms": ("latency", "latency_p99_ms"),
    "bytes_per_delivery": ("throughput", "bytes_per_delivery"),
    "server_cpu_percent": ("throughput", "server_cpu_percent"),
    "server_cpu_us_per_delivery": ("throughput", "server_cpu_us_per_delivery"),
    "load_cpu_percent": ("throughput", "load_cpu_percent"),
    "load_cpu_us_per_delivery": ("throughput", "load_cpu_us_per_delivery"),
    "other_cpu_percent": ("throughput", "other_cpu_percent"),
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
    warmup: int = 0,
    runs: int = 1,
    per_message: bool = False,
    others: Sequence[ServerProcess] = (),
    extra_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """Run the load generator against a started server; return its JSON result.

    ``others``: more servers of the same chat; the clients are spread over all of
    them, round robin. ``extra_pids``: more processes whose CPU counts as the
    servers' (the Redis they share).

    Raises:
        BenchmarkError: the load process failed, hung, or lost a client.
    """
    limit = sizes.time_limit if time_limit is None else time_limit
    latency = sizes.latency_messages if latency_messages is None else latency_messages
    argv = [
        sys.executable, "-m", "benchmarks.loadgen",
        "--url", server.url,
        "--wire", server.target.wire,
        "--clients", str(clients),
        "--messages", str(messages),
        "--window", str(sizes.window if window is None else window),
        "--latency-messages", str(latency),
        "--warmup", str(warmup),
        "--runs", str(runs),
        "--time-limit", str(limit),
        "--server-pid", str(server.pid),
    ]  # fmt: skip
    for other in others:
        argv += ["--url", other.url, "--server-pid", str(other.pid)]
    for pid in extra_pids:
        argv += ["--server-pid", str(pid)]
    if per_message:
        argv.append("--per-message")
    return run_load(
        argv,
        pins.load if pins else None,
        timeout=60 + (2 * runs + 1) * limit + clients / 10,
        what=f"load against {server.target.name} N={clients}",
    )


def _one_point(
    target: Target, clients: int, sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy
) -> dict[str, Any]:
    """One server process and one load process; ``sizes.runs`` runs on them, medians."""

    def attempt() -> dict[str, Any]:
        with ServerProcess(target, pins.server if pins else None) as server:
            return load_run(
                server,
                clients,
                sizes.messages_for(clients),
                sizes,
                pins,
                latency_messages=sizes.latency_messages_for(clients),
                warmup=sizes.warmup,
                runs=sizes.runs,
            )

    def noise(result: dict[str, Any]) -> float:
        return median([run["throughput"]["other_cpu_percent"] for run in result["runs"]])

    result, attempts = quiet.quietest(attempt, noise)
    runs = result["runs"]
    figures = {
        key: median([run[phase][name] for run in runs]) for key, (phase, name) in FIGURES.items()
    }
    # A server that saturates one core delivers 1 / (CPU per delivery) messages per second:
    # the same ratio as deliveries/s on a quiet machine, and robust on a busy one.
    us = figures["server_cpu_us_per_delivery"]
    figures["capacity_per_s"] = 1e6 / us if us and not math.isnan(us) else math.nan
    figures["timed_out_runs"] = sum(run["throughput"]["timed_out"] for run in runs)
    figures["connect_s"] = result["connect_s"]
    figures["attempts"] = attempts
    return {"median": figures, "runs": runs}


def run_fanout(
    sizes: Sizes, pins: Pinning | None, targets: list[str], quiet: QuietPolicy
) -> dict[str, Any]:
    """Measure every target at every client count; print a table; return the results."""
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in targets}
    for clients in sizes.clients:
        for name in targets:
            print(f"  fan-out {name:10} N={clients:<5} ...", end="", flush=True)
            point = _one_point(TARGETS[name], clients, sizes, pins, quiet)
            results[name][clients] = point
            m = point["median"]
            print(
                f" {fmt(m['deliveries_per_s'], 0)} deliveries/s,"
                f" fan-out p99 {fmt(m['fanout_p99_ms'], 2)} ms,"
                f" server CPU {fmt(m['server_cpu_percent'], 0)}%,"
                f" load CPU {fmt(m['load_cpu_percent'], 0)}%,"
                f" others {fmt(m['other_cpu_percent'], 0)}%"
            )
    print()
    print(fanout_table(results))
    return {"window": sizes.window, "runs": sizes.runs, "points": results}


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


def fanout_table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    """Two tables, throughput then latency, one row per (N, server), ratios to the baseline."""
    throughput, latency = [], []
    for n in sorted({n for points in results.values() for n in points}):
        base = results.get("baseline", {}).get(n, {}).get("median", {})
        for name, points in results.items():
            if n not in points:
                continue
            m = points[n]["median"]
            throughput.append([
                str(n), name, fmt(m["deliveries_per_s"], 0),
                _ratio(m["deliveries_per_s"], base.get("deliveries_per_s")),
                fmt(m["server_cpu_us_per_delivery"], 2), fmt(m["capacity_per_s"], 0),
                _ratio(m["capacity_per_s"], base.get("capacity_per_s")),
                fmt(m["bytes_per_delivery"], 0), fmt(m["server_cpu_percent"], 0),
                fmt(m["load_cpu_percent"], 0), fmt(m["other_cpu_percent"], 0),
            ])  # fmt: skip
            latency.append([
                str(n), name, fmt(m["fanout_p50_ms"], 2), fmt(m["fanout_p99_ms"], 2),
                _ratio(m["fanout_p99_ms"], base.get("fanout_p99_ms")),
                fmt(m["loaded_p50_ms"], 1), fmt(m["loaded_p99_ms"], 1),
            ])  # fmt: skip
    throughput_headers = [
        "N", "server", "deliveries/s", "vs baseline", "server CPU us/delivery",
        "capacity/s (1/CPU)", "vs baseline",
        "bytes/delivery", "server CPU %", "load CPU %", "others CPU %",
    ]  # fmt: skip
    latency_headers = [
        "N", "server", "fan-out p50 ms", "fan-out p99 ms", "p99 vs baseline",
        "loaded p50 ms", "loaded p99 ms",
    ]  # fmt: skip
    return table(throughput_headers, throughput) + "\n\n" + table(latency_headers, latency)


def fanout_checks(fanout: dict[str, Any]) -> list[Check]:
    """The fan-out limits checked below, at N=100 and N=1000 (the largest N in a quick run).

    Throughput targets are checked twice: on measured deliveries/s, and on capacity
    (1 / server CPU per delivery), which a busy machine disturbs far less.
    """
    points: dict[str, dict[int, dict[str, Any]]] = fanout["points"]
    measured = sorted(points.get("baseline", {}))
    check_ns = [n for n in (100, 1000) if n in measured] or measured[-1:]
    note = "" if any(n in measured for n in (100, 1000)) else "smoke size"

    def ratio(name: str, other: str, n: int, key: str) -> float | None:
        a = points.get(name, {}).get(n, {}).get("median", {}).get(key)
        b = points.get(other, {}).get(n, {}).get("median", {}).get(key)
        return a / b if a is not None and b else None

    checks = []
    for n in check_ns:
        for key, label in (("deliveries_per_s", "msgs/s"), ("capacity_per_s", "capacity")):
            checks += [
                at_least(
                    f"wslab {label} >= 0.9 x baseline at N={n}",
                    ratio("wslab", "baseline", n, key),
                    0.9,
                    note,
                ),
                at_least(
                    f"wslab {label} >= 4 x socketio at N={n}",
                    ratio("wslab", "socketio", n, key),
                    4.0,
                    note,
                ),
            ]
    n = 100 if 100 in measured else check_ns[0]
    checks.append(
        at_most(
            f"wslab fan-out p99 <= 1.3 x baseline at N={n}",
            ratio("wslab", "baseline", n, "fanout_p99_ms"),
            1.3,
            note,
        )
    )
    return checks


def plot_fanout(fanout: dict[str, Any], path: Path) -> None:
    """Grouped bars per client count: deliveries/s, capacity, and fan-out p99 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict[str, dict[int, dict[str, Any]]] = fanout["points"]
    names = list(points)
    clients = sorted({n for p in points.values() for n in p})
    width = 0.8 / len(names)
    panels = [
        ("deliveries_per_s", "measured deliveries / s", "linear"),
        ("capacity_per_s", "capacity / s (1 / server CPU\nper delivery)", "linear"),
        ("fanout_p99_ms", "fan-out p99 ms\n(one message in flight)", "log"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (key, label, scale) in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            xs = [c + (i - (len(names) - 1) / 2) * width for c in range(len(clients))]
            ys = [points[name].get(n, {}).get("median", {}).get(key, 0) for n in clients]
            ax.bar(xs, ys, width, label=name)
        ax.set_ylabel(label)
        ax.set_yscale(scale)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title(
        f"Fan-out: one sender, N receivers; median of {fanout['runs']} runs,"
        f" {fanout['window']} messages in flight"
    )
    axes[-1].set_xticks(range(len(clients)), [f"N={n}" for n in clients])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

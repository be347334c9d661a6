"""Join storms: how long N clients take to get into the room, per server.

For each target and each N (100 and 1,000 in a full run), a fresh server process is
started pinned to one core, and the load generator (:mod:`benchmarks.loadgen`,
``--join-only``) on the other core opens N clients, at most 50 handshakes at a time,
each doing TCP + WebSocket handshake + ``connecting`` -> ``connected``. The time is
from the first connect to the last ``connected``; the server's CPU seconds over the
same span are read from its process CPU clock. The median of ``sizes.join_runs`` runs
(each on a fresh server) is reported.

Targets: ``baseline`` (a plain ``websockets`` server that answers ``connected`` and
tracks no presence), ``wslab`` (clients that do not announce features: one ``joined``
per newcomer to every other socket), ``wslab-presence`` (clients that announce
``"features": ["presence"]``: presence changes reach them batched, once per tick).
"""

from __future__ import annotations

import sys
from typing import Any

from .config import Sizes
from .report import Check, at_most, fmt, table
from .stats import median
from .targets import TARGETS, Pinning, ServerProcess, run_load

__all__ = ["join_checks", "join_table", "run_join"]

JOIN_TARGETS = ("baseline", "wslab", "wslab-presence")


def _join_once(target_name: str, clients: int, pins: Pinning | None) -> dict[str, Any]:
    target = TARGETS[target_name]
    with ServerProcess(target, pins.server if pins else None) as server:
        argv = [
            sys.executable, "-m", "benchmarks.loadgen", "--url", server.url,
            "--wire", target.wire, "--clients", str(clients), "--join-only",
            "--server-pid", str(server.pid),
        ]  # fmt: skip
        return run_load(
            argv,
            pins.load if pins else None,
            timeout=60 + clients / 10,
            what=f"join {target_name} N={clients}",
        )


def run_join(sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    """Time N joins per target (median of ``sizes.join_runs`` fresh servers); print a table."""
    points: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in JOIN_TARGETS}
    for clients in sizes.join_clients:
        for name in JOIN_TARGETS:
            print(f"  join {name:15} N={clients:<5} ...", end="", flush=True)
            runs = [_join_once(name, clients, pins) for _ in range(sizes.join_runs)]
            point = {
                "connect_s": median([r["connect_s"] for r in runs]),
                "server_cpu_s": median([r["server_cpu_s"] for r in runs]),
                "runs": runs,
            }
            points[name][clients] = point
            print(
                f" {point['connect_s'] * 1000:.0f} ms,"
                f" server CPU {point['server_cpu_s'] * 1000:.0f} ms"
            )
    data = {"runs": sizes.join_runs, "points": points}
    print()
    print(join_table(data))
    return data


def join_table(data: dict[str, Any]) -> str:
    """One row per (N, target): join time, server CPU, both as ratios to the baseline."""
    points: dict[str, dict[int, dict[str, Any]]] = data["points"]
    rows = []
    for n in sorted({n for p in points.values() for n in p}):
        base = points["baseline"].get(n)
        for name, by_n in points.items():
            p = by_n.get(n)
            if p is None:
                continue
            rows.append([
                str(n), name, fmt(p["connect_s"] * 1000, 0),
                f"{p['connect_s'] / base['connect_s']:.2f}x" if base else "-",
                fmt(p["server_cpu_s"] * 1000, 0),
                f"{p['server_cpu_s'] / base['server_cpu_s']:.2f}x" if base else "-",
            ])  # fmt: skip
    headers = ["N", "server", "all joined ms", "vs baseline", "server CPU ms", "vs baseline"]
    return table(headers, rows)


def join_checks(data: dict[str, Any]) -> list[Check]:
    """N clients announcing presence join within 2x the plain server's time (largest N)."""
    points: dict[str, dict[int, dict[str, Any]]] = data["points"]
    n = max(points["baseline"])
    note = "" if n >= 1000 else "smoke size"
    ratio = points["wslab-presence"][n]["connect_s"] / points["baseline"][n]["connect_s"]
    return [at_most(f"wslab (presence) join time <= 2 x baseline at N={n}", ratio, 2.0, note)]

"""Reconnect: time from a dropped socket to ``connected`` again, and the thundering herd.

*Measured*: an in-process :class:`wslab.ChatServer` drops a :class:`wslab.ChatClient`'s
socket without a close frame (``server.drop(id)``, the client sees 1006) and we time
until the client is online again, with the kit's default policy (full jitter, first
delay up to 0.3 s) and with no delay at all (the cost of the reconnect itself).

*Simulated* (pure, no sockets): N clients lose the server at t=0; it is back after
``down`` seconds and then accepts at most ``capacity`` connections per 100 ms, refusing
the rest (as 1013 would). Each client retries by its policy. We count the attempts that
reach the server per 100 ms for a fixed 300 ms delay (the original design), exponential
backoff without jitter, and exponential backoff with full jitter (wslab's).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import Sizes
from .report import fmt, table
from .stats import median, percentile

__all__ = ["measure_reconnects", "plot_herd", "run_reconnect", "simulate_herd"]

BIN = 0.1  # seconds per histogram bin
PLOT_SECONDS = 25.0  # the plot's time axis; the tables give the whole run


def herd_policies() -> dict[str, Callable[[Callable[[], float]], Iterator[float]]]:
    """The three delay policies compared, each a factory of delay sequences."""
    from wslab.retry import backoff

    return {
        "fixed 300 ms": lambda rng: backoff(0.3, 1.0, 0.3, jitter=False, rng=rng),
        "exponential, no jitter": lambda rng: backoff(0.3, 2.0, 10.0, jitter=False, rng=rng),
        "exponential, full jitter": lambda rng: backoff(0.3, 2.0, 10.0, rng=rng),
    }


def simulate_herd(
    policy: Callable[[Callable[[], float]], Iterator[float]],
    clients: int = 1000,
    down: float = 1.0,
    capacity: int = 100,
    horizon: float = 180.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Simulate one herd; return attempts per bin and when everyone was back.

    Pure and deterministic for a given ``seed``. ``capacity`` is connections accepted
    per 100 ms bin once the server is up; attempts beyond it are refused and retried.
    """
    rng = random.Random(seed).random
    delays = [policy(rng) for _ in range(clients)]
    queue = [(next(delays[c]), c) for c in range(clients)]
    heapq.heapify(queue)
    bins = [0] * int(horizon / BIN)
    accepted = [0] * len(bins)
    back_at: list[float] = []
    while queue:
        t, c = heapq.heappop(queue)
        b = int(t / BIN)
        if b >= len(bins):
            break
        bins[b] += 1
        if t >= down and accepted[b] < capacity:
            accepted[b] += 1
            back_at.append(t)
        else:
            heapq.heappush(queue, (t + next(delays[c]), c))
    last = int(max(back_at) / BIN) + 1 if len(back_at) == clients else len(bins)
    return {
        "attempts_per_bin": bins[: last + 5],
        "total_attempts": sum(bins),
        "peak_per_100ms": max(bins),
        "refused": sum(bins) - len(back_at),
        "all_back_s": max(back_at) if len(back_at) == clients else None,
        "p50_back_s": percentile(back_at, 50),
    }


def run_herd(clients: int, down: float = 1.0, capacity: int = 100) -> dict[str, Any]:
    """Simulate every policy; print a table."""
    policies = {
        name: simulate_herd(policy, clients, down, capacity)
        for name, policy in herd_policies().items()
    }
    out = {
        "clients": clients,
        "down_s": down,
        "capacity_per_100ms": capacity,
        "policies": policies,
    }
    rows = [
        [
            name,
            str(r["total_attempts"]),
            str(r["peak_per_100ms"]),
            str(r["refused"]),
            fmt(r["p50_back_s"], 2),
            fmt(r["all_back_s"], 2),
        ]
        for name, r in policies.items()
    ]
    print(f"  herd: {clients} clients, server down {down:g} s, then accepts {capacity} per 100 ms")
    headers = ["policy", "attempts", "peak / 100 ms", "refused", "half back s", "all back s"]
    print(table(headers, rows))
    return out


def plot_herd(herd: dict[str, Any], path: Path) -> None:
    """Connection attempts per 100 ms at the server, one panel per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = herd["policies"]
    fig, axes = plt.subplots(len(policies), 1, figsize=(8, 7), sharex=True, sharey=True)
    longest = min(
        int(PLOT_SECONDS / BIN), max(len(r["attempts_per_bin"]) for r in policies.values())
    )
    xs = [i * BIN for i in range(longest)]
    for ax, (name, r) in zip(axes, policies.items(), strict=True):
        ys = (r["attempts_per_bin"] + [0] * longest)[:longest]
        ax.bar(xs, ys, width=BIN, align="edge")
        ax.axhline(herd["capacity_per_100ms"], color="red", lw=0.8, ls="--")
        ax.axvline(herd["down_s"], color="gray", lw=0.8, ls=":")
        back = "never" if r["all_back_s"] is None else f"{r['all_back_s']:.1f} s"
        ax.set_title(
            f"{name}: {r['total_attempts']} attempts, peak {r['peak_per_100ms']} per 100 ms,"
            f" all back after {back}",
            fontsize=10,
        )
        ax.set_ylabel("attempts / 100 ms")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(
        "seconds after the restart (dotted: server back; dashed: accepted per 100 ms)"
    )
    fig.suptitle(f"Thundering herd: {herd['clients']} clients reconnecting")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _Timeline:
    """Status changes of a client with their times: an ``on_change`` handler."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, float | None]] = []

    def __call__(self, client: Any) -> None:
        self.changes.append((time.perf_counter(), client.status, client.next_retry_in))

    def first(self, status: str, after: float = 0.0) -> tuple[float, float | None]:
        """Time and retry delay of the first change to ``status`` after ``after``."""
        return next((t, d) for t, s, d in self.changes if s == status and t > after)


def _back_online(attempts: int) -> Callable[[Any], bool]:
    """A ``wait_for`` predicate: online again after at least ``attempts`` connections."""
    return lambda client: bool(client.online and client.attempts >= attempts)


async def measure_reconnects(drops: int, *, delay: bool) -> dict[str, Any]:
    """Drop one client's socket ``drops`` times; time each return to ``connected``.

    Each drop is split into the backoff delay the client drew, the time it took to
    start the attempt after it (timer and scheduling slack) and the reconnect itself
    (TCP + WebSocket handshake + ``connecting`` -> ``connected``).
    """
    from wslab import ChatClient, ChatServer
    from wslab.retry import RetryPolicy

    # min_uptime=0: the backoff starts over at every ``connected``; the kit's 2 s
    # guard would otherwise escalate the delays of back-to-back drops.
    policy = RetryPolicy(min_uptime=0.0) if delay else RetryPolicy(initial=0.0, cap=0.0)
    totals, backoffs, slacks, handshakes = [], [], [], []
    server = ChatServer(port=0, rate_limit=0)
    await asyncio.to_thread(server.start)
    try:
        client = ChatClient(server.url, "bench", policy=policy, rng=random.Random(7).random)
        await client.connect(timeout=10)
        for attempt in range(drops):
            timeline = client.on_change = _Timeline()
            started = time.perf_counter()
            await asyncio.to_thread(server.drop, client.id)
            await client.wait_for(_back_online(attempts=attempt + 2), 15)
            waiting, backoff = timeline.first("reconnecting")
            connecting, _ = timeline.first("connecting")
            online, _ = timeline.first("online", after=connecting)
            totals.append((online - started) * 1000)
            backoffs.append((backoff or 0.0) * 1000)
            slacks.append((connecting - waiting - (backoff or 0.0)) * 1000)
            handshakes.append((online - connecting) * 1000)
        client.on_change = None
        await client.close()
    finally:
        await server.aclose()
    return {
        "drops": drops,
        "policy": "default delays (full jitter, first ceiling 0.3 s)" if delay else "no delay",
        "median_ms": median(totals),
        "p90_ms": percentile(totals, 90),
        "median_backoff_ms": median(backoffs),
        "median_slack_ms": median(slacks),
        "median_reconnect_ms": median(handshakes),
        "p90_reconnect_ms": percentile(handshakes, 90),
        "samples_ms": totals,
    }


def run_reconnect(sizes: Sizes) -> dict[str, Any]:
    """Time reconnects (both policies) and simulate the herd; print tables."""
    timings = [
        asyncio.run(measure_reconnects(sizes.reconnect_drops, delay=delay))
        for delay in (True, False)
    ]
    rows = [
        [
            t["policy"],
            str(t["drops"]),
            fmt(t["median_ms"], 1),
            fmt(t["p90_ms"], 1),
            fmt(t["median_backoff_ms"], 1),
            fmt(t["median_slack_ms"], 2),
            fmt(t["median_reconnect_ms"], 2),
            fmt(t["p90_reconnect_ms"], 2),
        ]
        for t in timings
    ]
    headers = [
        "client policy",
        "drops",
        "drop -> connected p50 ms",
        "p90 ms",
        "backoff p50 ms",
        "timer slack p50 ms",
        "reconnect p50 ms",
        "reconnect p90 ms",
    ]
    print(table(headers, rows))
    print()
    return {"timings": timings, "herd": run_herd(sizes.herd_clients)}

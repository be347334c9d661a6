"""A real herd: N reconnecting ``ChatClient``s against a server that restarts.

Unlike the simulation in :mod:`benchmarks.reconnect`, nothing here is modelled:

* the server is ``wslab.ChatServer`` in its own process (pinned to the server core);
* the clients are the kit's :class:`wslab.ChatClient` with batched presence, split
  over a few worker processes (pinned to the other core), each joined and online;
* the server process is stopped (SIGINT: ``ChatServer.stop()`` closes every socket
  with 1001), every tenth client queues one message while it is offline, and a new
  server process is started on the same port, with the same SQLite store or without
  one;
* each client records the time of every status change (``connecting``, ``online``) on
  the machine-wide monotonic clock, so workers' timelines line up.

Reported per run: the time until every client is back (from the stop, and from the
moment the new server was up: when it printed that it listens, or when the first
client got back in, whichever came first), connection attempts and successful joins per 100 ms
as the clients saw them (the peak of the latter is the peak accept rate), queued
messages lost (never acknowledged) and duplicated (stored under two ``messageId``
values), and the new server's CPU seconds until everyone was back and every queued
message delivered. Each run is bounded by ``sizes.real_herd_limit`` seconds.

Two client policies are compared: the kit's default (exponential backoff, full jitter,
first delay up to 0.3 s) and the original design's fixed 300 ms
(:data:`wslab.retry.SEED_POLICY`; unlike the original design it also retries the
clean 1001 of a restart, or those clients would never come back at all).

Worker command line (used by the orchestrator)::

    python -m benchmarks.herd clients --url ws://... --count 250 --first 0 --policy default
    python -m benchmarks.herd serve --port 0 [--store FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import Sizes
from .loadgen import process_cpu_seconds
from .report import Check, at_least, at_most, fmt, table
from .targets import REPO, BenchmarkError, Pinning, ServerProcess, Target, child_env, pinned

__all__ = ["plot_real_herd", "real_herd_checks", "run_real_herd"]

BIN = 0.1
MESSAGE_EVERY = 10  # every tenth client queues one message while the server is down
POLICIES = ("default", "fixed 300 ms")


# --------------------------------------------------------------------------- server


async def _serve(port: int, store: str | None) -> None:
    from wslab import ChatServer

    server = ChatServer(port=port, rate_limit=0, max_clients=20_000, store=store)
    await asyncio.to_thread(server.start)
    print(f"herd server listening on {server.url}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    await server.aclose()


# --------------------------------------------------------------------------- clients


async def _clients(url: str, count: int, first: int, policy_name: str, limit: float) -> None:
    from wslab import ChatClient, RetryPolicy
    from wslab.retry import SEED_POLICY

    policy = SEED_POLICY if policy_name == "fixed 300 ms" else RetryPolicy()
    loop = asyncio.get_running_loop()
    timelines: list[list[tuple[float, str]]] = [[] for _ in range(count)]

    def recorder(i: int) -> Any:
        def on_change(client: ChatClient) -> None:
            line = timelines[i]
            if not line or line[-1][1] != client.status:
                line.append((time.monotonic(), client.status))

        return on_change

    clients = []
    for i in range(count):
        n = first + i
        client = ChatClient(
            url,
            f"herd {n}",
            id=f"herd{n}",
            policy=policy,
            rng=random.Random(n).random,
            features=("presence",),  # a large room: batched presence
        )
        client.on_change = recorder(i)
        clients.append(client)
    gate = asyncio.Semaphore(50)

    async def join(client: ChatClient) -> None:
        async with gate:
            await client.connect(timeout=30)

    await asyncio.wait_for(asyncio.gather(*(join(c) for c in clients)), 30 + count / 10)
    if not all(c.online for c in clients):
        raise SystemExit(f"only {sum(c.online for c in clients)} of {count} clients joined")
    for line in timelines:
        line.clear()
    print(json.dumps({"ready": count}), flush=True)

    # The parent writes a line once the server is stopped.
    await loop.run_in_executor(None, sys.stdin.readline)
    queued: list[tuple[ChatClient, str]] = []
    for i, client in enumerate(clients):
        if (first + i) % MESSAGE_EVERY == 0:
            text = f"offline from herd{first + i}"
            await client.send_message(text)  # queued: the client is not online
            queued.append((client, text))

    def settled() -> bool:
        return all(c.online and not c.pending for c in clients) and all(
            any(m["message"] == t for m in c.messages) for c, t in queued
        )

    deadline = time.monotonic() + limit
    while not settled() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    seen: dict[str, list[int]] = {t: [] for _, t in queued}
    for client in clients:
        for m in client.messages:
            if m["message"] in seen and m["messageId"] not in seen[m["message"]]:
                seen[m["message"]].append(m["messageId"])
    result = {
        "count": count,
        "settled": settled(),
        "settled_at": time.monotonic(),
        "timelines": timelines,
        "pending": sum(len(c.pending) for c in clients),
        "seen": seen,
    }
    print(json.dumps(result), flush=True)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# --------------------------------------------------------------------------- orchestrator


def _worker(url: str, count: int, first: int, policy: str, limit: float, core: int | None) -> Any:
    argv = [
        sys.executable, "-m", "benchmarks.herd", "clients", "--url", url,
        "--count", str(count), "--first", str(first), "--policy", policy,
        "--limit", str(limit),
    ]  # fmt: skip
    return subprocess.Popen(
        pinned(argv, core),
        cwd=REPO,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=tempfile.TemporaryFile("w+"),
        text=True,
    )


def _read_json(proc: Any, what: str) -> dict[str, Any]:
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        proc.stderr.seek(0)
        raise BenchmarkError(f"herd worker failed before {what}:\n{proc.stderr.read()[-2000:]}")
    data: dict[str, Any] = json.loads(line)
    return data


def herd_once(
    clients: int, processes: int, policy: str, store: Path | None, limit: float,
    pins: Pinning | None,
) -> dict[str, Any]:  # fmt: skip
    """One restart with ``clients`` clients in ``processes`` workers; the figures."""
    store_args = ("--store", str(store)) if store else ()
    base = (sys.executable, "-m", "benchmarks.herd", "serve", *store_args)
    core = pins.server if pins else None
    first = ServerProcess(Target("herd", (*base, "--port", "0"), "chat"), core)
    first.__enter__()
    workers = []
    try:
        url = first.url
        port = url.rsplit(":", 1)[1].split("/", 1)[0]
        share = math.ceil(clients / processes)
        for w in range(processes):
            count = min(share, clients - w * share)
            workers.append(
                _worker(url, count, w * share, policy, limit, pins.load if pins else None)
            )
        for proc in workers:
            _read_json(proc, "joining")
        stopped_at = time.monotonic()
        first.__exit__(None, None, None)
        for proc in workers:
            proc.stdin.write("down\n")
            proc.stdin.flush()
        with ServerProcess(Target("herd", (*base, "--port", port), "chat"), core) as second:
            up_at = time.monotonic()
            cpu0 = process_cpu_seconds(second.pid)
            results = [_read_json(proc, "the end of the herd") for proc in workers]
            cpu = process_cpu_seconds(second.pid) - cpu0
        for proc in workers:
            proc.wait(timeout=30)
    finally:
        first.__exit__(None, None, None)
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _figures(results, stopped_at, up_at, cpu, clients, policy, store is not None)


def _figures(
    results: list[dict[str, Any]], stopped_at: float, up_at: float, cpu: float,
    clients: int, policy: str, store: bool,
) -> dict[str, Any]:  # fmt: skip
    attempts: list[float] = []
    back: list[float] = []
    for r in results:
        for line in r["timelines"]:
            attempts += [t - stopped_at for t, s in line if s == "connecting"]
            online = [t - stopped_at for t, s in line if s == "online"]
            if online:
                back.append(online[-1])
    seen: dict[str, list[int]] = {}
    for r in results:
        for text, ids in r["seen"].items():
            seen.setdefault(text, [])
            seen[text] = sorted(set(seen[text]) | set(ids))
    horizon = max([*attempts, *back, 0.0])
    bins = int(horizon / BIN) + 1
    attempts_per_bin = [0] * bins
    accepts_per_bin = [0] * bins
    for t in attempts:
        attempts_per_bin[int(t / BIN)] += 1
    for t in back:
        accepts_per_bin[int(t / BIN)] += 1
    everyone = len(back) == clients and all(r["settled"] for r in results)
    settled_at = max(r["settled_at"] for r in results) - stopped_at
    # The new server prints its URL once it listens, but a herd at its door can keep
    # that print waiting: the first client back bounds the moment it was up too.
    up = min([up_at - stopped_at, *back])
    return {
        "policy": policy,
        "store": store,
        "clients": clients,
        "server_back_s": up,
        "all_back_s": max(back) if everyone else None,
        "all_back_after_up_s": max(back) - up if everyone else None,
        "p50_back_s": sorted(back)[len(back) // 2] if back else None,
        "settled_s": settled_at,
        "attempts": len(attempts),
        "peak_attempts_per_100ms": max(attempts_per_bin),
        "peak_accepts_per_100ms": max(accepts_per_bin),
        "attempts_per_bin": attempts_per_bin,
        "accepts_per_bin": accepts_per_bin,
        "queued": len(seen),
        # Never stored (no messageId seen anywhere) or never acknowledged to its author.
        "lost": max(sum(1 for ids in seen.values() if not ids), sum(r["pending"] for r in results)),
        "duplicated": sum(1 for ids in seen.values() if len(ids) > 1),
        "server_cpu_s": cpu,
    }


def run_real_herd(sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    """Every policy, with and without a store; a table; the raw bins for the plot."""
    from .memory import raise_file_limit

    print(f"  {raise_file_limit(2 * sizes.real_herd_clients + 200)}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for policy in POLICIES:
            for store in (False, True):
                path = Path(tmp) / f"herd-{len(runs)}.sqlite3" if store else None
                label = f"{policy}, {'store' if store else 'no store'}"
                print(f"  real herd {sizes.real_herd_clients} clients, {label} ...", end="")
                r = herd_once(
                    sizes.real_herd_clients, sizes.real_herd_processes, policy, path,
                    sizes.real_herd_limit, pins,
                )  # fmt: skip
                print(f" all back after {fmt(r['all_back_s'], 2)} s")
                runs.append(r)
    rows = [
        [
            r["policy"], "yes" if r["store"] else "no", fmt(r["server_back_s"], 2),
            fmt(r["all_back_s"], 2), fmt(r["all_back_after_up_s"], 2), str(r["attempts"]),
            str(r["peak_attempts_per_100ms"]), str(r["peak_accepts_per_100ms"]),
            f"{r['lost']}/{r['queued']}", str(r["duplicated"]), fmt(r["server_cpu_s"], 2),
        ]
        for r in runs
    ]  # fmt: skip
    headers = [
        "client policy", "store", "server up s", "all back s", "after up s", "attempts",
        "peak attempts/100 ms", "peak accepts/100 ms", "lost", "duplicated", "server CPU s",
    ]  # fmt: skip
    print(table(headers, rows))
    return {
        "clients": sizes.real_herd_clients,
        "processes": sizes.real_herd_processes,
        "runs": runs,
    }


def real_herd_checks(data: dict[str, Any]) -> list[Check]:
    """Every run: everyone back, nothing lost, nothing duplicated."""
    checks = []
    for r in data["runs"]:
        label = f"{r['policy']}, {'store' if r['store'] else 'no store'}"
        back = 1.0 if r["all_back_s"] is not None else 0.0
        checks += [
            at_least(f"real herd ({label}): every client back", back, 1.0),
            at_most(f"real herd ({label}): queued messages lost", r["lost"], 0),
            at_most(f"real herd ({label}): queued messages duplicated", r["duplicated"], 0),
        ]
    return checks


def plot_real_herd(data: dict[str, Any], path: Path) -> None:
    """Attempts and accepts per 100 ms after the stop, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.1 * len(runs)), sharex=True)
    longest = max(len(r["attempts_per_bin"]) for r in runs)
    xs = [i * BIN for i in range(longest)]
    for ax, r in zip(axes, runs, strict=True):
        pad = [0] * longest
        ax.bar(xs, (r["attempts_per_bin"] + pad)[:longest], width=BIN, align="edge",
               color="#bbb", label="attempts")  # fmt: skip
        ax.bar(xs, (r["accepts_per_bin"] + pad)[:longest], width=BIN, align="edge",
               color="#2a7", label="back online")  # fmt: skip
        ax.axvline(r["server_back_s"], color="gray", lw=0.8, ls=":")
        back = "never" if r["all_back_s"] is None else f"{r['all_back_s']:.2f} s"
        ax.set_title(
            f"{r['policy']}, {'store' if r['store'] else 'no store'}: all back after {back},"
            f" {r['attempts']} attempts, lost {r['lost']}, duplicated {r['duplicated']}",
            fontsize=9,
        )
        ax.set_ylabel("per 100 ms")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("seconds after the server was stopped (dotted: new server listening)")
    fig.suptitle(f"Real herd: {data['clients']} ChatClients, server restarted", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """The worker and server command lines (the orchestrator is :func:`run_real_herd`)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.herd")
    sub = parser.add_subparsers(dest="what", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--store")
    clients = sub.add_parser("clients")
    clients.add_argument("--url", required=True)
    clients.add_argument("--count", type=int, required=True)
    clients.add_argument("--first", type=int, default=0)
    clients.add_argument("--policy", choices=POLICIES, default="default")
    clients.add_argument("--limit", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.what == "serve":
        asyncio.run(_serve(args.port, args.store))
    else:
        asyncio.run(_clients(args.url, args.count, args.first, args.policy, args.limit))


if __name__ == "__main__":
    main()

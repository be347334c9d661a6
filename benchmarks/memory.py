"""Memory per idle connection, start-up time, and (on request) the notebooks' wall time.

* RSS per idle connection: the server runs as its own process; we read its RSS with
  psutil idle, then with N clients joined and idle (held by the load generator on the
  other core), and divide the difference by N.
* Start to listening: ``ChatServer(port=0).start()`` in this process, timed from the
  call to its return (it returns once the socket listens), many times, median.
* ``notebook_wall_time()``: ``pytest --nbval notebooks/``, timed. Not part of ``all``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from .config import Sizes
from .report import Check, at_most, fmt, table
from .stats import median, percentile
from .targets import REPO, TARGETS, BenchmarkError, Pinning, ServerProcess, child_env, pinned

__all__ = [
    "measure_start",
    "memory_checks",
    "notebook_wall_time",
    "rss_per_connection",
    "run_memory",
]


def _settled_rss(pid: int, settle: float) -> int:
    time.sleep(settle)  # idle time: the joins and their write buffers are done with
    return int(psutil.Process(pid).memory_info().rss)


def rss_per_connection(
    target_name: str, clients: int, pins: Pinning | None, settle: float = 1.0
) -> dict[str, Any]:
    """RSS of a server process idle, then with ``clients`` idle clients joined."""
    target = TARGETS[target_name]
    with ServerProcess(target, pins.server if pins else None) as server:
        idle = _settled_rss(server.pid, settle)
        argv = [
            sys.executable, "-m", "benchmarks.loadgen", "--url", server.url,
            "--wire", target.wire, "--clients", str(clients), "--hold", "--time-limit", "120",
        ]  # fmt: skip
        with tempfile.TemporaryFile("w+") as errors:
            load = subprocess.Popen(
                pinned(argv, pins.load if pins else None),
                cwd=REPO,
                env=child_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,  # a file, not a pipe: a chatty load must never block on it
                text=True,
            )
            try:
                assert load.stdout is not None and load.stdin is not None
                ready = load.stdout.readline()
                if not ready:
                    load.wait(timeout=30)
                    errors.seek(0)
                    raise BenchmarkError(f"load for {target_name} failed:\n{errors.read()[-2000:]}")
                connected = json.loads(ready)["connected"]
                loaded = _settled_rss(server.pid, settle)
                load.stdin.close()
                load.wait(timeout=30)
            finally:
                if load.poll() is None:
                    load.kill()
                    load.wait()
    return {
        "server": target_name,
        "clients": connected,
        "idle_rss_kib": idle / 1024,
        "loaded_rss_kib": loaded / 1024,
        "kib_per_connection": (loaded - idle) / 1024 / connected,
    }


def measure_start(repeats: int) -> dict[str, Any]:
    """Milliseconds from ``ChatServer.start()`` being called to its return, listening."""
    from wslab import ChatServer

    ChatServer(port=0).start().stop()  # warm up: imports, the first thread, the first loop
    samples = []
    for _ in range(repeats):
        server = ChatServer(port=0)
        started = time.perf_counter()
        server.start()
        samples.append((time.perf_counter() - started) * 1000)
        server.stop()
    return {
        "repeats": repeats,
        "median_ms": median(samples),
        "p90_ms": percentile(samples, 90),
        "min_ms": min(samples),
        "samples_ms": samples,
    }


def notebook_wall_time(timeout: float = 1800.0) -> dict[str, Any]:
    """Wall time of ``pytest --nbval notebooks/`` in the repository, and its exit code."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "notebooks/", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    summary = proc.stdout.strip().splitlines()[-1:] or [""]
    print(f"  pytest --nbval notebooks/: {seconds:.1f} s, exit {proc.returncode}: {summary[0]}")
    return {"seconds": seconds, "exit_code": proc.returncode, "summary": summary[0]}


def raise_file_limit(needed: int) -> str:
    """Raise RLIMIT_NOFILE's soft limit toward ``needed`` (at most the hard limit).

    Child processes (servers, load) inherit it. Returns a line saying what was done.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"file limit {soft} (enough for {needed})"
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return f"file limit {soft}: could not raise it to {target} ({exc})"
    if target < needed:
        return f"file limit raised from {soft} to the hard limit {target}, below {needed}"
    return f"file limit raised from {soft} to {target}"


#: Sockets besides the connections: the interpreter's files, the listener, pipes.
_SPARE_FILES = 200
#: Without batched presence every join is announced to every socket, N^2 / 2 frames:
#: that target is measured only up to this many clients.
_PLAIN_JOIN_LIMIT = 1000


def run_memory(sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    """RSS per idle connection (wslab with and without presence, baseline), start-up time."""
    largest = max(sizes.memory_clients)
    limit_note = raise_file_limit(largest + _SPARE_FILES)
    print(f"  {limit_note}")
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    rows, per_server = [], []
    for clients in sizes.memory_clients:
        if clients + _SPARE_FILES > soft:
            print(f"  memory: N={clients} skipped: the file limit is {soft}")
            continue
        for name in ("wslab-presence", "wslab", "baseline"):
            if name == "wslab" and clients > _PLAIN_JOIN_LIMIT:
                continue
            print(f"  memory {name:15} {clients} idle clients ...", end="", flush=True)
            r = rss_per_connection(name, clients, pins, sizes.memory_settle)
            per_server.append(r)
            print(f" {r['kib_per_connection']:.1f} KiB per connection")
            rows.append(
                [
                    name,
                    str(r["clients"]),
                    fmt(r["idle_rss_kib"] / 1024, 1),
                    fmt(r["loaded_rss_kib"] / 1024, 1),
                    fmt(r["kib_per_connection"], 1),
                ]
            )
    print(table(["server", "clients", "idle RSS MiB", "loaded RSS MiB", "KiB / connection"], rows))
    start = measure_start(sizes.start_repeats)
    print(
        f"  ChatServer.start() to listening: median {start['median_ms']:.2f} ms,"
        f" p90 {start['p90_ms']:.2f} ms, min {start['min_ms']:.2f} ms"
        f" ({start['repeats']} starts)"
    )
    return {"rss": per_server, "start": start, "file_limit": limit_note}


def memory_checks(results: dict[str, Any]) -> list[Check]:
    """Idle memory per connection <= 24 KiB at every N; start to listening < 5 ms."""
    checks = [
        at_most(
            f"{r['server']} idle memory per connection (KiB, {r['clients']} clients)",
            r["kib_per_connection"],
            24.0,
        )
        for r in results["rss"]
        if r["server"].startswith("wslab")
    ]
    checks.append(
        at_most("ChatServer.start() to listening, median ms", results["start"]["median_ms"], 5.0)
    )
    return checks

"""``python -m benchmarks [all|fanout|join|history|reconnect|herd|memory|redis-fanout|
classroom|notebooks] [--quick]``.

Runs the chosen benchmarks, prints their tables and a PASS/MISS line per target (never
asserted: the exit code is 1 only when a benchmark could not run), and
writes ``benchmarks/results/latest.json`` plus PNG plots (``results/quick/`` for
``--quick``). Sections not run keep their previous results in the JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import FULL, QUICK, Sizes
from .noise import NO_WAITING, QuietPolicy
from .report import Check, machine_info, print_checks, results_dir, write_json
from .targets import TARGETS, BenchmarkError, Pinning, pinning, wslab_available

SECTIONS = ("fanout", "join", "history", "reconnect", "herd", "memory", "redis-fanout", "classroom")
NEEDS_WSLAB = {"join", "history", "reconnect", "herd", "memory", "redis-fanout", "classroom"}


def _fanout(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .fanout import fanout_checks, plot_fanout, run_fanout

    # Fan-out does not depend on what a client announces: wslab-presence is the same server.
    targets = [
        n
        for n, t in TARGETS.items()
        if (wslab_available() or not t.needs_wslab) and n != "wslab-presence"
    ]
    data = run_fanout(sizes, pins, targets, quiet)
    plot_fanout(data, out / "fanout.png")
    return data | {"checks": fanout_checks(data)}


def _join(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .join import join_checks, run_join

    data = run_join(sizes, pins)
    return data | {"checks": join_checks(data)}


def _history(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .history import history_checks, plot_history, run_history

    data = run_history(sizes, pins)
    plot_history(data, out / "history.png")
    return data | {"checks": history_checks(data)}


def _reconnect(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .reconnect import plot_herd, run_reconnect

    data = run_reconnect(sizes)
    plot_herd(data["herd"], out / "herd.png")
    return data


def _herd(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .herd import plot_real_herd, real_herd_checks, run_real_herd

    data = run_real_herd(sizes, pins)
    plot_real_herd(data, out / "real-herd.png")
    return data | {"checks": real_herd_checks(data)}


def _memory(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .memory import memory_checks, run_memory

    data = run_memory(sizes, pins)
    return data | {"checks": memory_checks(data)}


def _redis_fanout(
    sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path
) -> dict[str, Any]:
    from .redis_fanout import run_redis_fanout

    return run_redis_fanout(sizes, pins, quiet)


def _classroom(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .classroom import classroom_checks, run_classroom

    data = run_classroom(sizes, pins, quiet)
    return data | {"checks": classroom_checks(data)}


def _notebooks(sizes: Sizes, pins: Pinning | None, quiet: QuietPolicy, out: Path) -> dict[str, Any]:
    from .memory import notebook_wall_time

    return notebook_wall_time()


RUNNERS: dict[str, Callable[[Sizes, Pinning | None, QuietPolicy, Path], dict[str, Any]]] = {
    "fanout": _fanout,
    "join": _join,
    "history": _history,
    "reconnect": _reconnect,
    "herd": _herd,
    "memory": _memory,
    "redis-fanout": _redis_fanout,
    "classroom": _classroom,
    "notebooks": _notebooks,
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named on the command line; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("what", nargs="?", default="all", choices=["all", *RUNNERS])
    parser.add_argument(
        "--quick", action="store_true", help="smoke sizes (a few seconds), for CI; no waiting"
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=SECTIONS,
        metavar="SECTION",
        help="leave this section out of 'all' (repeatable)",
    )
    args = parser.parse_args(argv)
    sizes, quiet = (QUICK, NO_WAITING) if args.quick else (FULL, QuietPolicy())
    sections = list(SECTIONS) if args.what == "all" else [args.what]
    sections = [s for s in sections if s not in args.without]

    pins = pinning()
    if pins:
        print(
            f"pinning: servers on CPU {pins.server}, load generator on CPU {pins.load} (taskset -c)"
        )
    else:
        print("pinning: fewer than 2 usable cores or no taskset; processes are not pinned")
    if not wslab_available():
        print("wslab's server is not importable yet: measuring the comparison servers only")
        sections = [s for s in sections if s not in NEEDS_WSLAB]

    out = results_dir(args.quick)
    path = out / "latest.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results.update(machine=machine_info(), quick=args.quick)
    checks: list[Check] = []
    failed: list[str] = []
    started = time.monotonic()
    for section in sections:
        print(f"\n== {section} ==")
        section_started = time.monotonic()
        try:
            data = RUNNERS[section](sizes, pins, quiet, out)
        except BenchmarkError as error:
            print(f"\n{section} FAILED: {error}")
            failed.append(section)
            continue
        checks.extend(data.get("checks", []))
        data["seconds"] = time.monotonic() - section_started
        data["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results[section] = data
        write_json(path, results)  # after each section: a later failure keeps the rest
    print("\n== targets (reported, not asserted) ==")
    print_checks(checks)
    print(
        f"\nwrote {path} and the plots beside it in {time.monotonic() - started:.0f} s"
        f" (waits and repeats for a quiet machine: {quiet.spent:.0f} s)"
    )
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

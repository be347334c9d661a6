"""History cost: bytes on the wire and delivery rate per message as history grows.

The kit's server runs with ``--history H`` in both modes (so its cap cannot hide the
growth), a few clients join, and the sender writes H messages: before message ``i``
the history holds ``i`` entries. The default ``messageWritten`` carries one entry, the
seed-compatible one the whole ``messagesList`` too, so its size grows with ``i``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Sizes
from .fanout import load_run
from .report import Check, at_most, fmt, table
from .targets import TARGETS, Pinning, ServerProcess

__all__ = ["history_checks", "plot_history", "run_history"]

MODES = {"default": "wslab", "seed-compatible": "wslab-seed"}


def _buckets(per_message: dict[str, list[Any]], size: int, clients: int) -> list[dict[str, float]]:
    """Per bucket of ``size`` messages: history length, bytes per delivery, deliveries/s."""
    nbytes, done = per_message["bytes_per_delivery"], per_message["done_s"]
    out = []
    for start in range(0, len(nbytes) - size + 1, size):
        chunk = range(start, start + size)
        if any(done[i] is None for i in chunk) or (start and done[start - 1] is None):
            break  # the run stopped (time limit) inside this bucket
        # Time from the previous bucket's last delivery to this one's: the bucket's share.
        began = done[start - 1] if start else done[start]
        seconds = done[chunk[-1]] - began
        count = size if start else size - 1
        out.append(
            {
                "history": start + (size - 1) / 2,
                "bytes_per_delivery": sum(nbytes[i] for i in chunk) / size,
                "deliveries_per_s": count * clients / seconds if seconds > 0 else float("nan"),
            }
        )
    return out


def run_history(sizes: Sizes, pins: Pinning | None) -> dict[str, Any]:
    """Measure both modes up to ``sizes.history`` messages; print a table."""
    results: dict[str, Any] = {
        "history": sizes.history,
        "clients": sizes.history_clients,
        "bucket": sizes.history_bucket,
        "modes": {},
    }
    for mode, target_name in MODES.items():
        target = TARGETS[target_name].with_args("--history", str(sizes.history))
        print(f"  history {mode:16} 0..{sizes.history} messages ...", end="", flush=True)
        with ServerProcess(target, pins.server if pins else None) as server:
            run = load_run(
                server,
                sizes.history_clients,
                sizes.history,
                sizes,
                pins,
                latency_messages=0,
                time_limit=6 * sizes.time_limit,
                per_message=True,
            )
        buckets = _buckets(run["per_message"], sizes.history_bucket, sizes.history_clients)
        phase = run["runs"][0]["throughput"]
        results["modes"][mode] = {
            "buckets": buckets,
            "messages_delivered": phase["messages_delivered"],
            "timed_out": phase["timed_out"],
            "seconds": phase["seconds"],
        }
        last = buckets[-1] if buckets else {}
        print(
            f" {phase['messages_delivered']} delivered in {phase['seconds']:.1f} s; last bucket"
            f" {fmt(last.get('bytes_per_delivery'), 0)} B/delivery,"
            f" {fmt(last.get('deliveries_per_s'), 0)} deliveries/s"
        )
    print()
    print(history_table(results))
    return results


def history_table(results: dict[str, Any]) -> str:
    """Bytes and rate per delivery at a few history lengths, both modes side by side."""
    modes = results["modes"]
    default, seed = modes["default"]["buckets"], modes["seed-compatible"]["buckets"]
    picks = sorted({0, len(default) // 4, len(default) // 2, len(default) - 1})
    rows = []
    for i in picks:
        if i >= len(default):
            continue
        s = seed[i] if i < len(seed) else {}
        rows.append(
            [
                f"{default[i]['history']:.0f}",
                fmt(default[i]["bytes_per_delivery"], 0),
                fmt(s.get("bytes_per_delivery"), 0),
                fmt(default[i]["deliveries_per_s"], 0),
                fmt(s.get("deliveries_per_s"), 0),
            ]
        )
    headers = [
        "history length",
        "default B/delivery",
        "seed B/delivery",
        "default deliveries/s",
        "seed deliveries/s",
    ]
    return table(headers, rows)


def history_checks(results: dict[str, Any]) -> list[Check]:
    """Default bytes per delivery flat within 10% from the first to the last bucket."""
    buckets = results["modes"]["default"]["buckets"]
    growth = None
    if len(buckets) >= 2:
        growth = buckets[-1]["bytes_per_delivery"] / buckets[0]["bytes_per_delivery"] - 1
    last = f"{buckets[-1]['history']:.0f}" if buckets else "?"
    checks = [
        at_most(f"default bytes/delivery growth from history 0 to {last}", growth, 0.10),
    ]
    return checks


def plot_history(results: dict[str, Any], path: Path) -> None:
    """Two panels: bytes per delivered message, and deliveries/s, against history length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for mode, data in results["modes"].items():
        xs = [b["history"] for b in data["buckets"]]
        top.plot(xs, [b["bytes_per_delivery"] / 1024 for b in data["buckets"]], label=mode)
        bottom.plot(xs, [b["deliveries_per_s"] for b in data["buckets"]], label=mode)
    top.set_ylabel("KiB per delivered message")
    top.set_title(
        f"wslab: cost of history ({results['clients']} clients, --history {results['history']})"
    )
    bottom.set_ylabel("deliveries / s")
    bottom.set_xlabel("messages already in history")
    bottom.set_yscale("log")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

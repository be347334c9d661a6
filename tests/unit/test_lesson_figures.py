"""Every figure a lesson's sentence cites agrees with the run it comes from.

Lesson 06 cites one recorded real herd (``benchmarks/results/latest.json``): its
sentences must quote that run's figures. Lesson 13 measures as it runs; its stored
sentences must say what its stored table of medians says: each ratio with the range
its runs allow (a tie when that range holds 1), and a winner only when its slowest
run beat every run of the others (else a tie).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
BOTH = ["solutions/{}.ipynb", "{}.ipynb"]


def cell(path: Path, cell_id: str) -> Any:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.get("id") == cell_id)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def printed(path: Path, cell_id: str) -> str:
    return "".join(o.get("text", "") for o in cell(path, cell_id).outputs)


def span(values: list[float], form: str) -> str:
    return f"{format(min(values), form)}-{format(max(values), form)}"


@pytest.mark.parametrize("where", BOTH)
def test_06_quotes_the_recorded_real_herd(where: str) -> None:
    runs = json.loads(RESULTS.read_text())["herd"]["runs"]
    fixed = [run for run in runs if run["policy"] == "fixed 300 ms"]
    jitter = [run for run in runs if run["policy"] == "default"]
    text = flat(cell(NOTEBOOKS / where.format("06_reconnect"), "7bf02ea1").source)
    assert f"up {span([r['server_back_s'] for r in runs], '.1f')} s after the stop" in text
    assert f"{span([r['all_back_s'] for r in fixed], '.1f')} s with the fixed 300 ms" in text
    assert f"{span([r['all_back_s'] for r in jitter], '.1f')} s with full jitter" in text
    assert f"at {span([r['peak_attempts_per_100ms'] for r in runs], 'd')} per 100 ms" in text
    attempts = (
        span([r["attempts"] for r in fixed], ",d"),
        span([r["attempts"] for r in jitter], ",d"),
    )
    assert f"the fixed delay made {attempts[0]} connection attempts and full jitter" in text
    assert f"full jitter {attempts[1]}: in this run the fixed delay made *fewer*" in text
    assert max(r["attempts"] for r in fixed) < min(r["attempts"] for r in jitter)


ROW = re.compile(
    r"^(\S.*?)\s{2,}([\d,]+)\s+([\d,]+)-([\d,]+)\s+([\d.]+)\s+([\d.]+)-([\d.]+)\s+([\d.]+)$", re.M
)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def most_deliveries(rows: list[dict[str, Any]]) -> str:
    best = max(rows, key=lambda x: x["rate"])
    tied = [x for x in rows if x is best or x["fastest"] >= best["slowest"]]
    names = [x["setup"].split(",")[0] for x in tied]
    if len(names) == 1:
        return f"{names[0]} (its slowest run beat every run of the others)"
    return f"a tie between {', '.join(names[:-1])} and {names[-1]} (their runs overlap)"


def table_of(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The stored table of lesson 13 and its rows: medians, and the runs' range."""
    table = printed(path, "73efb58e")
    rows = [
        {
            "setup": m[1],
            "rate": number(m[2]),
            "slowest": number(m[3]),
            "fastest": number(m[4]),
            "median": float(m[5]),
            "ms from": float(m[6]),
            "ms to": float(m[7]),
        }
        for m in ROW.finditer(table)
    ]
    return table, rows


def range_of(x: dict[str, Any], y: dict[str, Any], low: str, high: str) -> tuple[float, float]:
    """The lowest and the highest ratio of any run of ``x`` to any run of ``y``."""
    return x[low] / y[high], x[high] / y[low]


@pytest.mark.parametrize("where", BOTH)
def test_13_states_only_what_its_stored_table_of_medians_says(where: str) -> None:
    path = NOTEBOOKS / where.format("13_scaling_out")
    table, rows = table_of(path)
    assert [x["setup"] for x in rows] == [
        "1 server, no Redis",
        "1 server, Redis",
        "2 servers, Redis",
        "3 servers, Redis",
    ]
    assert all(x["slowest"] <= x["rate"] <= x["fastest"] for x in rows)
    assert all(x["ms from"] <= x["median"] <= x["ms to"] for x in rows)
    ranking = most_deliveries(rows[1:])
    assert f"the most deliveries per second: {ranking}." in table
    plain, one = rows[0], rows[1]
    summary = printed(path, "c3d2a205")
    assert f"{plain['rate']:,.0f} deliveries/s for one server alone" in summary
    assert f"(runs {plain['slowest']:,.0f}-{plain['fastest']:,.0f})," in summary
    assert f"{one['rate']:,.0f} for one server on Redis" in summary
    assert f"(runs {one['slowest']:,.0f}-{one['fastest']:,.0f}; medians of" in summary
    assert summary.rstrip().endswith(f"the most on Redis: {ranking}.")


@pytest.mark.parametrize("where", BOTH)
def test_13_gives_each_ratio_the_range_of_its_runs_or_calls_it_a_tie(where: str) -> None:
    table, rows = table_of(NOTEBOOKS / where.format("13_scaling_out"))
    plain, one = rows[0], rows[1]
    text = flat(table)
    low, high = range_of(one, plain, "slowest", "fastest")
    if low <= 1 <= high:
        assert "as many deliveries per second as one server alone: a tie" in text
    else:
        share = re.search(r"made (\d+)% of the deliveries per second of one server alone", text)
        runs = re.search(r"alone \(any run against any run: (\d+)% to (\d+)%\)", text)
        assert share is not None and runs is not None, text
        assert abs(int(share[1]) - 100 * one["rate"] / plain["rate"]) <= 1
        assert abs(int(runs[1]) - 100 * low) <= 1 and abs(int(runs[2]) - 100 * high) <= 1
    low, high = range_of(one, plain, "ms from", "ms to")
    if low <= 1 <= high:
        assert "the same median latency: a tie" in text
    else:
        slower = re.search(r"a median latency ([\d.]+) times as long", text)
        runs = re.search(r"long \(any run against any run: ([\d.]+) to ([\d.]+) times\)", text)
        assert slower is not None and runs is not None, text
        assert abs(float(slower[1]) - one["median"] / plain["median"]) <= 0.1
        assert abs(float(runs[1]) - low) <= 0.1 and abs(float(runs[2]) - high) <= 0.1

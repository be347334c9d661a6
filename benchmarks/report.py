"""Reporting: the machine description, tables, PASS/MISS checks, and the results files."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .targets import REPO

__all__ = ["RESULTS", "Check", "fmt", "machine_info", "print_checks", "results_dir", "table"]

RESULTS = Path(__file__).resolve().parent / "results"
_PACKAGES = (
    "websockets", "picows", "uvloop", "python-socketio", "aiohttp", "matplotlib", "psutil",
    "redis", "hiredis",
)  # fmt: skip


def results_dir(quick: bool) -> Path:
    """Where a run writes: ``results/`` for a full run, ``results/quick/`` (ignored by git)."""
    path = RESULTS / "quick" if quick else RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and package versions, and the commit measured."""
    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "commit": commit or None,
    }


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table: thousands separated, ``-`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in a terminal too."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


@dataclass(frozen=True)
class Check:
    """One performance target: a measured value against a limit. Reported, never asserted."""

    name: str
    value: float | None
    limit: float
    passed: bool | None  # None: not measured in this run
    note: str = ""

    @property
    def verdict(self) -> str:
        """PASS, MISS, or SKIP when the figure was not measured."""
        return "SKIP" if self.passed is None else "PASS" if self.passed else "MISS"


def at_least(name: str, value: float | None, limit: float, note: str = "") -> Check:
    """A check that ``value >= limit``."""
    ok = None if value is None or math.isnan(value) else value >= limit
    return Check(name, value, limit, ok, note)


def at_most(name: str, value: float | None, limit: float, note: str = "") -> Check:
    """A check that ``value <= limit``."""
    ok = None if value is None or math.isnan(value) else value <= limit
    return Check(name, value, limit, ok, note)


def print_checks(checks: Sequence[Check]) -> None:
    """Print one PASS/MISS/SKIP line per target."""
    for c in checks:
        value = "not measured" if c.passed is None else f"{c.value:.3g} (limit {c.limit:g})"
        note = f"  [{c.note}]" if c.note else ""
        print(f"  {c.verdict:4}  {c.name}: {value}{note}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write results as indented JSON (NaN becomes null)."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and math.isnan(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        if isinstance(obj, Check):
            return clean(asdict(obj) | {"verdict": obj.verdict})
        return obj

    path.write_text(json.dumps(clean(data), indent=1) + "\n")

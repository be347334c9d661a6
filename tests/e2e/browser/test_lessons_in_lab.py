"""Lessons 01 and 03 run in a real JupyterLab, where their `browser` cells have a browser.

Cells tagged ``browser`` use a BrowserSocket: a WebSocket in the page Lab runs in.
`pytest --nbval` skips them (no browser there) and keeps their stored outputs,
which must be what a real browser prints. This test opens a copy of each solution
notebook without outputs in `jupyter lab` in chromium, runs all cells, and asserts
that no cell failed and that every browser cell printed its stored output (after
the same sanitizing nbval does: ports, tokens, ...).

With WSLAB_RECORD_BROWSER_OUTPUTS=1 it writes what Lab printed into the browser
cells of the solution and student notebooks instead: that is how those stored
outputs are made (widget views are stored as their text, without a model id).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import time
from typing import Any

import nbformat
import pytest
from playwright.sync_api import BrowserContext, Page

from .helpers import UNIT_MS, UNIT_S
from .test_jupyterlab import REPO, Lab, open_and_run_all

# Lab, its kernels and chromium: each step has its own wait (up to 300 s for a Run All);
# the whole test gets a limit above their sum instead of the default 60 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600 * UNIT_S)]

LESSONS = ["01_events", "03_close_codes"]
BROWSER_TAG = "browser"
RECORD = os.environ.get("WSLAB_RECORD_BROWSER_OUTPUTS") == "1"
RUN_ALL_MS = 300 * UNIT_MS  # a lesson runs in ~30 s in Lab; a busy machine takes longer
SANITIZE = REPO / "notebooks" / "nbval-sanitize.cfg"


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The regex/replace pairs of nbval's sanitize file, in order."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SANITIZE)
    return [
        (re.compile(parser[section]["regex"]), parser[section]["replace"])
        for section in parser.sections()
    ]


def comparable(outputs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Outputs as nbval compares them: streams joined, plain text only, sanitized."""
    found: list[tuple[str, str]] = []
    for output in outputs:
        kind = output["output_type"]
        if kind == "stream":
            text, kind = "".join(output["text"]), output["name"]
        elif kind in ("display_data", "execute_result"):
            text = "".join(output.get("data", {}).get("text/plain", ""))
        else:  # an error
            text = f"{output.get('ename')}: {output.get('evalue')}"
        if found and kind in ("stdout", "stderr") and found[-1][0] == kind:
            found[-1] = (kind, found[-1][1] + text)
        else:
            found.append((kind, text))
    rules = sanitizers()
    cleaned = []
    for kind, text in found:
        for pattern, replace in rules:
            text = pattern.sub(replace, text)
        cleaned.append((kind, text))
    return cleaned


def is_browser_cell(cell: dict[str, Any]) -> bool:
    return cell["cell_type"] == "code" and BROWSER_TAG in cell.get("metadata", {}).get("tags", [])


def without_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(notebook))
    copy["metadata"].pop("widgets", None)
    for cell in copy["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return copy


#: Each code cell of the open notebook, from Lab's notebook model (so cells that Lab's
#: windowing has not drawn count too): its id, its execution count (null until it
#: ran), whether it is running or queued, and its outputs as Lab saves them.
CELL_STATES_JS = """(path) => {
    const panel = [...window.jupyterapp.shell.widgets("main")].find(
        (widget) => widget.context && widget.context.path === path
    );
    if (!panel || !panel.content.model) return null;
    const cells = panel.content.model.cells;
    const states = [];
    for (let index = 0; index < cells.length; index++) {
        const cell = cells.get(index);
        if (cell.type !== "code") continue;
        states.push({
            id: cell.id,
            count: cell.executionCount,
            running: cell.executionState === "running",
            outputs: cell.outputs.toJSON(),
        });
    }
    return states;
}"""
POLL_S = 0.5  # how often the page is read while Run All goes on
STOPPED_POLLS = 4  # polls in a row with no cell running or queued: Run All has stopped


def cell_states(page: Page, name: str) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] | None = page.evaluate(CELL_STATES_JS, name)
    return states or []


def run_all_report(why: str, sources: list[str], states: list[dict[str, Any]]) -> str:
    """Which cell ran, runs or never ran, and what each printed: a stalled Run All's cause."""
    lines = [why]
    for index, source in enumerate(sources):
        state = states[index] if index < len(states) else {}
        if state.get("running"):
            prompt = "[*]"
        else:
            prompt = f"[{state['count']}]" if state.get("count") is not None else "[ ]"
        head = source.strip().splitlines()[0] if source.strip() else ""
        lines.append(f"  cell {index:2} {prompt:6} {head[:70]}")
        output = "\n".join(text for _, text in comparable(state.get("outputs", []))).strip()
        if output:
            shown = output if len(output) <= 600 else "…" + output[-600:]
            lines.extend(f"           | {line}" for line in shown.splitlines())
    return "\n".join(lines)


def wait_until_all_ran(page: Page, lab: Lab, name: str, sources: list[str]) -> list[dict[str, Any]]:
    """Every code cell of notebook ``name`` has run: Run All reached the end.

    Returns the code cells as Lab's model holds them then (see ``CELL_STATES_JS``).

    Fails as soon as Run All has stopped short (a cell failed, so Lab dropped the cells
    queued after it) or after ``RUN_ALL_MS``, naming the cell that runs or failed and
    showing what every cell printed.
    """
    deadline = time.monotonic() + RUN_ALL_MS / 1000
    idle_polls = 0
    while True:
        states = cell_states(page, name)
        ran = [state["count"] is not None for state in states]
        if len(states) == len(sources) and all(ran):
            return states
        busy = any(state["running"] for state in states)
        idle_polls = 0 if busy else idle_polls + 1
        if idle_polls >= STOPPED_POLLS:
            kernels = [k["execution_state"] for k in lab.api("GET", "/api/kernels")]
            why = f"Run All stopped short (kernels: {kernels}; the cells as Lab has them):"
            pytest.fail(run_all_report(why, sources, states), pytrace=False)
        if time.monotonic() > deadline:
            running = [i for i, state in enumerate(states) if state["running"]][:1]
            why = (
                f"Run All did not finish in {RUN_ALL_MS / 1000:.0f} s; "
                f"cell running: {running or 'none'}; ran {sum(ran)} of {len(sources)}:"
            )
            pytest.fail(run_all_report(why, sources, states), pytrace=False)
        time.sleep(POLL_S)  # a poll interval, not a wait for an outcome


def recorded(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lab's outputs as stored: a widget view keeps only its text (no model id)."""
    kept = []
    for output in outputs:
        output = dict(output)
        if output["output_type"] in ("display_data", "execute_result"):
            output["data"] = {"text/plain": output["data"].get("text/plain", "")}
            output["metadata"] = {}
        kept.append(output)
    return kept


def record(stem: str, ran: dict[str, Any]) -> None:
    outputs = {c["id"]: c for c in ran["cells"] if is_browser_cell(c)}
    for path in (
        REPO / "notebooks" / "solutions" / f"{stem}.ipynb",
        REPO / "notebooks" / f"{stem}.ipynb",
    ):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            if is_browser_cell(cell):
                cell["outputs"] = recorded(outputs[cell["id"]]["outputs"])
                cell["execution_count"] = outputs[cell["id"]]["execution_count"]
        nbformat.write(nbformat.from_dict(notebook), str(path))  # its usual layout


def run_solution_in_lab(
    stem: str, lab: Lab, lab_context: BrowserContext
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run All on a lesson's solution, without its stored outputs, in a real JupyterLab.

    Returns the solution as stored and its code cells as Lab holds them after the run
    (the outputs as Lab would save them; tags and source from the solution).
    """
    solution = json.loads((REPO / "notebooks" / "solutions" / f"{stem}.ipynb").read_text())
    name = f"{stem}.ipynb"
    (lab.root / name).write_text(json.dumps(without_outputs(solution)))
    page = lab_context.new_page()
    try:
        open_and_run_all(page, lab, name)
        sources = ["".join(c["source"]) for c in solution["cells"] if c["cell_type"] == "code"]
        states = wait_until_all_ran(page, lab, name, sources)
        code = [c for c in solution["cells"] if c["cell_type"] == "code"]
        cells = [
            {**cell, "outputs": state["outputs"], "execution_count": state["count"]}
            for cell, state in zip(code, states, strict=True)
        ]
        return solution, {"cells": cells}
    finally:
        page.close()
        lab.stop_kernels()


def failed_cells(ran: dict[str, Any]) -> dict[str, Any]:
    """The code cells whose outputs hold an error, by cell id."""
    return {
        cell["id"]: comparable(cell["outputs"])
        for cell in ran["cells"]
        if cell["cell_type"] == "code" and any(o["output_type"] == "error" for o in cell["outputs"])
    }


@pytest.mark.parametrize("stem", LESSONS)
def test_lesson_runs_in_lab_and_its_browser_cells_print_their_stored_outputs(
    stem: str, lab: Lab, lab_context: BrowserContext
) -> None:
    """Run All in JupyterLab: no cell fails, and each browser cell prints what is stored."""
    solution, ran = run_solution_in_lab(stem, lab, lab_context)
    assert failed_cells(ran) == {}, "cells failed in JupyterLab"
    browser_cells = [c for c in ran["cells"] if is_browser_cell(c)]
    assert sum(bool(c["outputs"]) for c in browser_cells) >= 5, "browser cells print"

    if RECORD:
        record(stem, ran)
    stored = {c["id"]: c for c in solution["cells"] if is_browser_cell(c)}
    student = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text())
    stored_student = {c["id"]: c for c in student["cells"] if is_browser_cell(c)}
    if RECORD:
        return
    for cell in browser_cells:
        got = comparable(cell["outputs"])
        assert got == comparable(stored[cell["id"]]["outputs"]), f"solution cell {cell['id']}"
        assert got == comparable(stored_student[cell["id"]]["outputs"]), f"student {cell['id']}"


# The lessons without a widget or a browser cell (04-07, 09-13) get Run All as Lab sends
# it, every cell queued at once, in a kernel without a browser: see
# tests/system/test_lessons.py. 00 and 08 run in test_run_all.py, 02 in
# test_lesson_wire_in_lab.py, 01 and 03 above. 14 starts a real JupyterHub; nbval and
# ``exercises --check`` run it.

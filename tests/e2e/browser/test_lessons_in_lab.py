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
import math
import os
import re
import time
import urllib.error
from typing import Any

import nbformat
import pytest
from playwright.sync_api import BrowserContext, Page

from .helpers import UNIT_MS, UNIT_S
from .test_jupyterlab import REPO, Lab, lab, lab_context, open_and_run_all

__all__ = ["lab", "lab_context"]  # fixtures, shared with test_jupyterlab

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


def wait_until_all_ran(page: Page, cells: int) -> None:
    """Every code cell shows an execution count: Run All reached the end."""
    page.wait_for_function(
        """(n) => {
            const prompts = [...document.querySelectorAll(".jp-CodeCell .jp-InputPrompt")];
            return prompts.length === n && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent));
        }""",
        arg=cells,
        polling=500,
        timeout=RUN_ALL_MS,
    )


def saved_notebook(page: Page, lab: Lab, name: str) -> dict[str, Any]:
    """Save the notebook in Lab (File > Save) and read it back through Lab's API.

    Lab may have autosaved part of the run already: wait until the file on disk has
    an execution count in every code cell.
    """
    deadline = time.monotonic() + 60 * UNIT_S
    saved_at = -math.inf
    while True:
        # Two saves in flight at once (ours and an autosave, or ours twice) can fail
        # in Lab with "No such file": dismiss that dialog, and save again only when
        # the last save has had time to finish.
        if page.locator(".jp-Dialog").count():
            page.keyboard.press("Escape")
        if time.monotonic() - saved_at > 5 * UNIT_S:
            page.get_by_role("menuitem", name="File", exact=True).click()
            page.locator('.lm-Menu-item[data-command="docmanager:save"]').click()
            saved_at = time.monotonic()
        try:
            content: dict[str, Any] = lab.api("GET", f"/api/contents/{name}?content=1")["content"]
        except urllib.error.HTTPError:  # caught mid-save: read it again
            content = {"cells": [{"cell_type": "code", "execution_count": None}]}
        code = [c for c in content["cells"] if c["cell_type"] == "code"]
        if all(c["execution_count"] is not None for c in code):
            return content
        if time.monotonic() > deadline:
            dialogs = page.locator(".jp-Dialog").all_inner_texts()
            pytest.fail(f"{name} was not saved with its outputs; dialogs: {dialogs}")
        time.sleep(0.5)  # a poll interval, not a wait for an outcome


def stop_kernels(lab: Lab) -> None:
    """Shut down this test's kernel; one that is already gone is fine."""
    for kernel in lab.api("GET", "/api/kernels"):
        try:
            lab.api("DELETE", f"/api/kernels/{kernel['id']}")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise


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

    Returns the solution as stored and the notebook as Lab saved it after the run.
    """
    solution = json.loads((REPO / "notebooks" / "solutions" / f"{stem}.ipynb").read_text())
    name = f"{stem}.ipynb"
    (lab.root / name).write_text(json.dumps(without_outputs(solution)))
    page = lab_context.new_page()
    try:
        open_and_run_all(page, lab, name)
        wait_until_all_ran(page, sum(c["cell_type"] == "code" for c in solution["cells"]))
        return solution, saved_notebook(page, lab, name)
    finally:
        page.close()
        stop_kernels(lab)


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


#: The lessons without browser cells that no other Lab test runs: 00 and 08 run in
#: test_run_all.py, 02 in test_lesson_wire_in_lab.py, 01 and 03 above. 14 starts a real
#: JupyterHub; nbval and ``exercises --check`` run it, in a kernel but not in the Lab.
PLAIN_LESSONS = [
    "04_protocol",
    "05_broadcast",
    "06_reconnect",
    "07_reload_grace",
    "09_wss",
    "10_asyncio_in_jupyter",
    "11_performance",
    "12_original_design",
    "13_scaling_out",
]


@pytest.mark.parametrize("stem", PLAIN_LESSONS)
def test_lesson_runs_clean_under_run_all_in_lab(
    stem: str, lab: Lab, lab_context: BrowserContext
) -> None:
    """Run All on a solution in JupyterLab, as a learner would: no cell fails."""
    _, ran = run_solution_in_lab(stem, lab, lab_context)
    assert failed_cells(ran) == {}, "cells failed in JupyterLab"

"""Lesson 02 (on the wire) runs top to bottom in a real JupyterLab, its tap table live.

The solution notebook, stripped of its outputs (no stored widget state may hide a
rendering bug), is opened in Lab and run with Run All Cells: every cell must run
without an error, the three checks must pass, and the WireTap table, displayed
near the top, must fill in as later cells send frames.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import BrowserContext, expect

# The Lab helpers of the widget test; the package's one Lab (conftest.py).
from .helpers import UNIT_MS, UNIT_S
from .test_jupyterlab import REPO, Lab, open_and_run_all

# Lab, its kernels and chromium: each step has its own wait (up to 300 s for a Run All);
# the whole test gets a limit above their sum instead of the default 60 s.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600 * UNIT_S)]

NOTEBOOK = "02_wire.ipynb"


def without_outputs(path: str) -> str:
    notebook = json.loads((REPO / path).read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(notebook)


def test_lesson_02_runs_in_lab_and_its_tap_table_fills_in_live(
    lab: Lab,
    lab_context: BrowserContext,
) -> None:
    (lab.root / NOTEBOOK).write_text(without_outputs(f"notebooks/solutions/{NOTEBOOK}"))
    page = lab_context.new_page()
    open_and_run_all(page, lab, NOTEBOOK)

    # The last check passes, then the whole notebook finishes.
    expect(page.get_by_text("PASS check_parse_header")).to_have_count(1, timeout=120 * UNIT_MS)
    expect(page.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=120 * UNIT_MS)
    for check in ("check_accept_key", "check_unmask"):
        expect(page.get_by_text(f"PASS {check}")).to_have_count(1)
    errors = page.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
    expect(errors).to_have_count(0)
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)

    # The table shown by tap.view() near the top kept up with the later cells:
    # the close handshake of section 5 is in it.
    table = page.locator("table.wslab-wiretap-table")
    expect(table).to_have_count(1)
    expect(table).to_contain_text("1000 bye")
    expect(table.locator("tr", has_text="PONG")).to_have_count(1)
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").last).to_have_text(re.compile(r"\[\d+\]"))

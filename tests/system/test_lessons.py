"""What the lessons promise when they run in a real kernel, without a browser.

Lessons 00 and 08 leave the chat running at the end (Run All must not stop it;
the browser test runs that in JupyterLab), and their last cell stops it when the
learner sets ``STOP_THE_CHAT = True``. Here each solution notebook is run by
nbclient in a kernel of this Python with the flag set; run as stored, its last cell
says the chat is still running, which nbval checks against the stored output
(notebooks/).

The lessons without widgets or browser cells run under Run All as JupyterLab sends
it: every cell queued at once, stopping at the first error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.conftest import unit

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "notebooks" / "solutions"
FLAG = "STOP_THE_CHAT = False"

# A kernel of this Python, driven from another process (its sockets die with it).
RUN = """
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(
    nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}
).execute()
nbformat.write(nb, sys.argv[1])
"""


def run_notebook(source: Path, tmp_path: Path, *, stop: bool) -> str:
    """Run a copy of ``source`` (the flag set to ``stop``); the last code cell's output."""
    nb = nbformat.read(source, as_version=4)
    (last,) = [cell for cell in nb.cells if cell.cell_type == "code" and FLAG in cell.source]
    assert last is [c for c in nb.cells if c.cell_type == "code"][-1], "not the last cell"
    if stop:
        last.source = last.source.replace(FLAG, "STOP_THE_CHAT = True")
    path = tmp_path / source.name
    nbformat.write(nb, path)
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(path), str(SOLUTIONS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = nbformat.read(path, as_version=4)
    last_cell = [c for c in done.cells if c.cell_type == "code"][-1]
    return "".join(o.get("text", "") for o in last_cell.outputs)


@pytest.mark.parametrize(
    ("lesson", "running", "stopped"),
    [
        ("00_start_here", "the chat server is running", "the chat server is stopped"),
        (
            "08_chat",
            "server running: True | widget: online",
            "server running: False | widget: offline",
        ),
    ],
)
@pytest.mark.timeout(unit(300))
def test_the_shared_chat_runs_on_and_stops_only_when_asked(
    lesson: str, running: str, stopped: str, tmp_path: Path
) -> None:
    source = SOLUTIONS / f"{lesson}.ipynb"
    assert stored_last_output(source) == running  # what nbval compares a fresh run with
    assert run_notebook(source, tmp_path, stop=True).strip() == stopped


def stored_last_output(source: Path) -> str:
    """The stored output of the notebook's last code cell."""
    last = [c for c in nbformat.read(source, as_version=4).cells if c.cell_type == "code"][-1]
    return "".join(o.get("text", "") for o in last.outputs).strip()


# ---------------------------------------------------------------------------- Run All

#: The lessons without a widget or a browser cell. Run All in JupyterLab differs from
#: nbval's run for them only in how the cells reach the kernel: all at once, each
#: queued behind the last, as Lab sends them, where nbval waits for each cell before
#: sending the next. A front end draws their outputs but cannot make a cell fail, so
#: the kernel, sent every cell at once, shows what Lab would. The lessons with widgets
#: or browser cells (00-03, 08) run in JupyterLab itself (tests/e2e/browser/).
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
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_all(source: Path) -> list[tuple[int, str, str]]:
    """Send every code cell of ``source`` to a fresh kernel of this Python at once, with
    ``stop_on_error`` as Lab's Run All does; each cell's (index, status, error)."""
    nb = nbformat.read(source, as_version=4)
    cells = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    specs = KernelSpecManager()
    specs.ensure_native_kernel = True
    manager = KernelManager(kernel_name=NATIVE_KERNEL_NAME, kernel_spec_manager=specs)
    manager.start_kernel(cwd=str(source.parent))
    client = manager.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=unit(60))
        ids = [client.execute(code, stop_on_error=True) for code in cells]
        replies: dict[str, dict[str, Any]] = {}
        while len(replies) < len(ids):
            reply = client.get_shell_msg(timeout=unit(240))
            if reply["parent_header"].get("msg_id") in ids:  # not a kernel_info reply
                replies[reply["parent_header"]["msg_id"]] = reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    ran = []
    for index, msg_id in enumerate(ids):
        content = replies[msg_id]
        error = ANSI.sub("", "\n".join(content.get("traceback", [])[-5:]))
        ran.append((index, content["status"], error))
    return ran


@pytest.mark.parametrize("lesson", PLAIN_LESSONS)
@pytest.mark.timeout(unit(300))
def test_lesson_runs_clean_under_run_all(lesson: str) -> None:
    """Run All on a solution, every cell queued at once as Lab sends them: none fails."""
    ran = run_all(SOLUTIONS / f"{lesson}.ipynb")
    failed = [(index, status, error) for index, status, error in ran if status != "ok"]
    assert failed == [], "\n".join(f"code cell {i}: {s}\n{e}" for i, s, e in failed)

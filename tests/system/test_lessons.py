"""What the lessons promise about their shared chat server, run in a real kernel.

Lessons 00 and 08 leave the chat running at the end (Run All must not stop it;
the browser test runs that in JupyterLab), and their last cell stops it when the
learner sets ``STOP_THE_CHAT = True``. Here each solution notebook is run by
nbclient in a kernel of this Python with the flag set; run as stored, its last cell
says the chat is still running, which nbval checks against the stored output
(notebooks/).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

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
